"""Keep freed buffers of up to 32 MiB in the process instead of handing them back to the OS.

glibc's malloc serves requests above its mmap threshold (128 KiB at start, adapting up to
32 MiB) with fresh pages from the OS and returns them on free, and it trims freed memory
at the top of the heap above twice that threshold. PyTorch's CPU allocator sits directly
on malloc, so an inference pass that allocates and frees the same multi-MiB activations
and Winograd tiles every layer can pay a page fault per 4 KiB on every call. Fixing the
mmap threshold at its maximum (32 MiB) and trimming only above ``TRIM_THRESHOLD`` makes
those buffers come back from the heap's free lists.

Why not more (``benchmarks/bench_allocator.py``: big-lama, 24 images of 200–1100 px):
glibc defaults 100.5 s and 2264 MiB peak; this setting 96.3 s, 2349 MiB; mmap switched
off altogether 94.3 s but 2990 MiB, since a heap that never hands memory back fragments
over varied sizes (an earlier trial with mmap off and a 1 GiB trim peaked at 5.3 GiB).
Buffers above 32 MiB still come fresh from the OS, which is why ``WinogradFFC`` works in
bands of at most ~25 MiB. One malloc arena for the whole process (``M_ARENA_MAX``): a
thread's own arena hands freed memory back to the OS regardless (1.4-1.8x the page faults
per batch when Ray Data ran a model actor's batches in a worker thread; the model stages
now ask for the actor's main thread, but any caller may run the model in a thread). Only
glibc is touched; elsewhere (macOS, musl, Windows) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: The largest mmap threshold glibc accepts on 64-bit; larger requests still get fresh pages.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Freed memory at the top of the heap kept for reuse before any is returned to the OS.
TRIM_THRESHOLD = 256 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring) once per process.

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
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(libc.mallopt(_M_ARENA_MAX, 1))
    except (OSError, AttributeError):
        _applied = False
    return _applied
