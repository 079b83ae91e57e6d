"""Peak memory of inpainting one image, per image size, each size in a fresh process.

    python benchmarks/bench_memory.py [--preset big-lama] [--sizes 512 2048 4096] [--max-pixels 4194304]

Reports the process's peak resident set (CPU) or peak CUDA allocation (GPU) while the
``Inpainter`` (default pixel budget ``max_pixels`` = 2048², as the inpainting job) fills
one image with a thick mask, next to an idle baseline (model loaded, nothing run) measured
the same way. Images above the budget are inpainted downscaled and pasted back, so their
peak stays near the budget's plus the full-size image buffers: that is the documented
bound for 4096² and beyond.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(preset: str, size: int, max_pixels: int, device: str) -> dict:
    """Run in this process: peak memory (MiB) of one inpainting at ``size``² (0 = idle)."""
    import numpy as np
    import torch

    from lama_core import Inpainter, build_generator
    from lama_core.masks import generate_mask

    torch.manual_seed(0)
    inpainter = Inpainter(build_generator(preset), device=device, max_pixels=max_pixels)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if size:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = (generate_mask("thick_512", 0, 0, size, size) * 255).astype(np.uint8)
        result = inpainter.inpaint([image], [mask])[0]
        resized = result.resized
    else:
        resized = False
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"size": size, "peak_mib": peak, "resized": resized}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--max-pixels", type=int, default=2048 * 2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.preset, args.child, args.max_pixels, args.device)))
        return

    from benchmarks.machine import print_table

    rows, idle = [], None
    for size in [0] + args.sizes:
        out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--max-pixels", str(args.max_pixels),
                              "--device", args.device, "--child", str(size)], capture_output=True, text=True)
        if out.returncode != 0:
            rows.append([f"{size}²", "failed", out.stderr.strip().splitlines()[-1] if out.stderr else "", ""])
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if size == 0:
            idle = result["peak_mib"]
            rows.append(["model loaded, idle", f"{idle:.0f}", "-", "-"])
        else:
            rows.append([f"{size}²", f"{result['peak_mib']:.0f}", f"{result['peak_mib'] - idle:.0f}",
                         "yes" if result["resized"] else "no"])
    print_table(f"Peak memory, {args.preset}, one image, {args.device}, pixel budget {args.max_pixels}",
                ["image", "peak MiB", "above idle MiB", "downscaled (budget)"], rows)


if __name__ == "__main__":
    main()
