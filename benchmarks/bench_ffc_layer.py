"""One FFC layer of big-lama's ResNet blocks: direct (folded) vs Winograd, by map size.

    python benchmarks/bench_ffc_layer.py [--maps 1x64 4x64 1x96 1x128] [--repeats 5] [--system-malloc]

Each map is ``NxS``: N images of an S×S bottleneck (S = image side / 8), 128 local + 384
global channels. ``--system-malloc`` skips ``lama_core.cpu_allocator.keep_freed_memory``
to show what glibc's default thresholds cost (fresh pages for every large buffer).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_generator import randomized_generator  # noqa: E402
from benchmarks.machine import print_table  # noqa: E402
from lama_core.cpu_allocator import keep_freed_memory  # noqa: E402
from lama_core.fast_inference import WinogradFFC, fold_batchnorm  # noqa: E402


def mean_ms(fn, repeats: int) -> float:
    """Mean milliseconds of ``fn()`` over ``repeats`` runs after two warm-ups."""
    fn()
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", nargs="+", default=["1x64", "4x64", "1x96", "1x128"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--system-malloc", action="store_true")
    args = parser.parse_args()
    if not args.system_malloc:
        keep_freed_memory()
    layer = fold_batchnorm(randomized_generator("big-lama")).to(memory_format=torch.channels_last).model[5].conv1
    winograd = WinogradFFC(layer)
    rows = []
    for spec in args.maps:
        n, side = (int(v) for v in spec.split("x"))
        x = (torch.rand(n, 128, side, side).contiguous(memory_format=torch.channels_last),
             torch.rand(n, 384, side, side).contiguous(memory_format=torch.channels_last))
        with torch.inference_mode():
            direct = mean_ms(lambda: layer(x), args.repeats)
            tiled = mean_ms(lambda: winograd(x), args.repeats)
        rows.append([f"{n} x {side}²", direct, tiled, direct / tiled])
    allocator = "glibc defaults" if args.system_malloc else "keep_freed_memory"
    print_table(f"One big-lama block FFC layer, fp32 CPU, {allocator} (mean of {args.repeats})",
                ["map", "direct ms", "Winograd ms", "speed-up"], rows)


if __name__ == "__main__":
    main()
