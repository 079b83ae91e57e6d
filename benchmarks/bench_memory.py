"""Peak memory of inpainting one image, per image size, each size in a fresh process.

    python benchmarks/bench_memory.py [--preset big-lama] [--sizes 512 2048 4096] [--max-pixels 4194304]
        [--hd-strategy windows]

Reports the process's peak resident set (CPU) or peak CUDA allocation (GPU) while the
``Inpainter`` (default pixel budget ``max_pixels`` = 2048², as the inpainting job) fills
one image with a thick mask, next to an idle baseline (model loaded, nothing run) measured
the same way. Images above the budget are inpainted downscaled and pasted back, so their
peak stays near the budget's plus the full-size image buffers: that is the documented
bound for 4096² and beyond. The last column divides the growth of the peak over the
previous size by the growth in pixels: the bytes each input pixel costs outside the model.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(preset: str, size: int, max_pixels: int, device: str, hd_strategy: str) -> dict:
    """Run in this process: peak memory (MiB) of one inpainting at ``size``² (0 = idle)."""
    import numpy as np
    import torch

    from lama_core import Inpainter, build_generator
    from lama_core.masks import generate_mask

    torch.manual_seed(0)
    kwargs = {"hd_strategy": hd_strategy} if hd_strategy else {}  # the option is newer than this benchmark
    inpainter = Inpainter(build_generator(preset), device=device, max_pixels=max_pixels, **kwargs)
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
    parser.add_argument("--hd-strategy", default="", help="the Inpainter's hd_strategy (default: its default)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.preset, args.child, args.max_pixels, args.device, args.hd_strategy)))
        return

    from benchmarks.machine import print_table

    rows, idle, previous = [], None, None
    for size in [0] + args.sizes:
        out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--max-pixels", str(args.max_pixels),
                              "--device", args.device, "--hd-strategy", args.hd_strategy, "--child", str(size)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            rows.append([f"{size}²", "failed", out.stderr.strip().splitlines()[-1] if out.stderr else "", "", ""])
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if size == 0:
            idle = result["peak_mib"]
            rows.append(["model loaded, idle", f"{idle:.0f}", "-", "-", "-"])
        else:
            per_pixel = "-" if previous is None else \
                f"{(result['peak_mib'] - previous[1]) * 2**20 / (size**2 - previous[0]**2):.1f}"
            rows.append([f"{size}²", f"{result['peak_mib']:.0f}", f"{result['peak_mib'] - idle:.0f}",
                         "yes" if result["resized"] else "no", per_pixel])
            previous = (size, result["peak_mib"])
    print_table(f"Peak memory, {args.preset}, one image, {args.device}, pixel budget {args.max_pixels}, "
                f"hd_strategy {args.hd_strategy or 'default'}",
                ["image", "peak MiB", "above idle MiB", "downscaled (budget)", "bytes / extra input pixel"], rows)


if __name__ == "__main__":
    main()
