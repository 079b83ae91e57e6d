"""Time and peak memory of CPU inpainting under three malloc settings, each in a fresh process.

    python benchmarks/bench_allocator.py [--preset big-lama] [--images 24] [--min-side 200] [--max-side 1100]

The same stream of images of varied sizes (seeded) goes through an ``Inpainter``, one at a
time, with (1) glibc's defaults, (2) ``keep_freed_memory`` (what the ``Inpainter`` sets
on CPU: mmap threshold fixed at 32 MiB, trim above 256 MiB) and (3) mmap switched off
altogether (every size from the heap). Varied sizes are what a bulk job sees, and where a
heap that never returns memory fragments.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = ("glibc defaults", "keep_freed_memory", "mmap off")


def run(setting: str, preset: str, images: int, min_side: int, max_side: int) -> dict:
    """In this process: seconds and peak RSS (MiB) of inpainting the image stream."""
    import ctypes
    import resource
    import time

    import numpy as np

    import lama_core.cpu_allocator as allocator
    from lama_core import Inpainter, build_generator

    if setting == "glibc defaults":
        allocator._applied = False  # the Inpainter's call then leaves malloc alone
    elif setting == "mmap off":
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX
        libc.mallopt(-1, allocator.TRIM_THRESHOLD)
        allocator._applied = True
    inpainter = Inpainter(build_generator(preset), batch_size=1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(images):
        h, w = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2, w // 4: w // 2] = 255
        inpainter([image], [mask])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--min-side", type=int, default=200)
    parser.add_argument("--max-side", type=int, default=1100)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.preset, args.images, args.min_side, args.max_side)))
        return
    from benchmarks.machine import print_table

    rows, base = [], None
    for setting in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--child", setting, "--preset", args.preset,
                              "--images", str(args.images), "--min-side", str(args.min_side),
                              "--max-side", str(args.max_side)], check=True, capture_output=True, text=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or got
        rows.append([setting, got["seconds"], base["seconds"] / got["seconds"], round(got["peak_mib"])])
    print_table(f"{args.preset}, {args.images} images of {args.min_side}-{args.max_side} px, one at a time, CPU",
                ["malloc setting", "seconds", "speed vs defaults", "peak MiB"], rows)


if __name__ == "__main__":
    main()
