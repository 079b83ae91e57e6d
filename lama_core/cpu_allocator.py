"""Keep large freed buffers in the process instead of handing them back to the OS.

glibc's malloc serves requests above its mmap threshold (128 KiB at start, adapting up to
32 MiB) with fresh pages from the OS and returns them on free, and it trims freed memory
at the top of the heap above twice that threshold. PyTorch's CPU allocator sits directly
on malloc, so an inference pass that allocates and frees the same tens-of-MiB activations
and Winograd tiles every layer pays a page fault per 4 KiB, every call: on big-lama at
512² in batches of 4 this cost as much as the Winograd convolutions saved, and it slows
the plain module by ~12% (``benchmarks/RESULTS.md``). Serving every size from the heap
(no per-allocation mmap) and trimming only above ``TRIM_THRESHOLD`` makes those buffers
come back from the heap's free lists.

The price is that freed memory stays mapped to the process (its resident size stays near
its peak; free memory above ``TRIM_THRESHOLD`` at the top of the heap is still returned),
which suits a long-running inference worker. Threads other than the main one keep glibc's
own fallback to mmap for requests their arenas cannot hold. Only glibc is touched;
elsewhere (macOS, musl, Windows) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Freed memory at the top of the heap kept for reuse before any is returned to the OS.
TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large buffers from glibc's heap and keep them (module docstring), once per process.

    Returns True when they are in force (now or from an earlier call), False where the C
    library is not glibc or refused them. Safe to call from any number of places.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _applied = False
    return _applied
