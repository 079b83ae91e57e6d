"""Quality cost of the reduced-precision mode on a trained generator and real photos.

    python benchmarks/bench_precision_quality.py [--model assets/lama-small-demo] [--size 512]

Random weights (``bench_generator.py``) give near-constant outputs, which flatters any
PSNR. Here the shipped trained checkpoint inpaints the bundled sample photos (resized to
``--size``², thick_512 masks): PSNR of the bf16 path (``Inpainter(precision="bf16")``'s
module: folded, CPU kernels, bf16 weights and activations, fp32 FFTs) and of the fp32 fast
path against the plain fp32 module, over the whole raw output and over the holes alone.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_table  # noqa: E402
from lama_core import load_generator  # noqa: E402
from lama_core.fast_inference import optimize_for_inference  # noqa: E402
from lama_core.masks import generate_mask  # noqa: E402
from pipelines.common.samples import sample_photos  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of ``a`` against ``b`` (values in [0, 1])."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "assets" / "lama-small-demo"))
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    reference = load_generator(args.model).eval()
    fast = optimize_for_inference(reference, cpu_kernels=True)
    reduced = optimize_for_inference(reference, cpu_kernels=True).to(torch.bfloat16)
    rows = []
    for index, (name, photo) in enumerate(sample_photos().items()):
        image = np.asarray(Image.fromarray(photo).resize((args.size, args.size), Image.Resampling.BICUBIC))
        x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
        mask = torch.from_numpy(generate_mask("thick_512", 0, index, args.size, args.size).astype(np.float32))
        mask = mask[None, None]
        net_input = torch.cat([x * (1 - mask), mask], dim=1)
        nhwc = net_input.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            expected = reference(net_input)
            same = fast(nhwc)
            low = reduced(nhwc.to(torch.bfloat16)).float()
        hole = mask.bool().expand_as(expected)
        # Each precision against the photo itself (hole pixels of the composited result): what
        # precision=auto costs in quality next to what the model gets wrong anyway.
        rows.append([name, f"{expected.std().item():.3f}", (same - expected).abs().max().item(),
                     f"{psnr(low, expected):.1f}", f"{psnr(low[hole], expected[hole]):.1f}",
                     f"{psnr(same[hole].clamp(0, 1), x.expand_as(same)[hole]):.2f}",
                     f"{psnr(low[hole].clamp(0, 1), x.expand_as(low)[hole]):.2f}"])
    worst = min(float(r[3]) for r in rows), min(float(r[4]) for r in rows)
    means = [sum(float(r[k]) for r in rows) / len(rows) for k in (5, 6)]
    rows.append(["worst / mean", "", max(r[2] for r in rows), f"{worst[0]:.1f}", f"{worst[1]:.1f}",
                 f"{means[0]:.2f}", f"{means[1]:.2f}"])
    print_table(f"bf16 vs fp32, trained {Path(args.model).name}, {args.size}² photos, thick_512 masks",
                ["photo", "output std", "fp32 fast max |diff|", "bf16 PSNR dB", "bf16 PSNR holes dB",
                 "fp32 hole PSNR vs photo dB", "bf16 hole PSNR vs photo dB"], rows)


if __name__ == "__main__":
    main()
