"""Generator throughput: the reference path vs our fast inference paths, same process.

    python benchmarks/bench_generator.py [--preset big-lama] [--sizes 256 512] [--repeats 3]

(a) reference: fp32, one image per call, eval mode, the module exactly as built/loaded.
(b) ours, same numerics: BatchNorm folded into convs, channels-last, inference_mode, and
    the ResNet blocks' 3x3 FFCs as Winograd F(2x2,3x3) (``Inpainter``'s CPU default); the
    row without Winograd shows what folding + layout alone give. Max abs diff vs (a)
    checked <= 1e-4.
(c) ours, reduced precision: (b) with bf16 weights and activations (FFTs stay fp32), as
    ``Inpainter(precision="bf16")`` runs it on CPU; its PSNR vs (a).
Weights are random with perturbed BatchNorm statistics (no pretrained weights can be
downloaded here); speed does not depend on the values, the folding check does.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_table  # noqa: E402
from lama_core import build_generator  # noqa: E402
from lama_core.fast_inference import optimize_for_inference  # noqa: E402


def randomized_generator(preset: str) -> torch.nn.Module:
    """A generator with random weights and non-trivial BatchNorm running statistics."""
    torch.manual_seed(0)
    gen = build_generator(preset)
    with torch.no_grad():
        for name, buf in gen.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.8, 1.2)
    return gen.eval()


def time_call(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, and its output."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-bf16", action="store_true", help="skip the reduced-precision row")
    args = parser.parse_args()

    reference = randomized_generator(args.preset)
    folded = optimize_for_inference(reference, channels_last=True)
    fast = optimize_for_inference(reference, channels_last=True, winograd=True)
    fast_bf16 = optimize_for_inference(reference, channels_last=True, winograd=True).to(torch.bfloat16)
    rows = []
    for size in args.sizes:
        torch.manual_seed(size)
        x = torch.rand(1, 4, size, size)
        x[:, 3:] = (x[:, 3:] > 0.7).float()
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def run_ref():
            with torch.inference_mode():
                return reference(x)

        def run_folded():
            with torch.inference_mode():
                return folded(x_cl)

        def run_fast():
            with torch.inference_mode():
                return fast(x_cl)

        x_bf16 = x_cl.to(torch.bfloat16)

        def run_bf16():
            with torch.inference_mode():
                return fast_bf16(x_bf16).float()

        t_ref, y_ref = time_call(run_ref, args.repeats)
        rows.append([f"{size}²", "reference fp32", t_ref, 1 / t_ref, 1.0, 0.0, "inf"])
        for label, run in (("folded+NHWC fp32", run_folded), ("folded+NHWC+Winograd fp32", run_fast)):
            t, y = time_call(run, args.repeats)
            diff = (y - y_ref).abs().max().item()
            rows.append([f"{size}²", label, t, 1 / t, t_ref / t, diff, f"{psnr(y, y_ref):.1f}"])
            if diff > 1e-4:
                raise SystemExit(f"{label} differs from reference by {diff:.2e} > 1e-4 at {size}²")
        if not args.no_bf16:
            t_bf, y_bf = time_call(run_bf16, args.repeats)
            rows.append([f"{size}²", "folded+NHWC+Winograd bf16", t_bf, 1 / t_bf, t_ref / t_bf,
                         (y_bf - y_ref).abs().max().item(), f"{psnr(y_bf, y_ref):.1f}"])
    print_table(f"Generator {args.preset}, batch 1, CPU (median of {args.repeats})",
                ["size", "path", "s/image", "images/s", "speed-up vs ref", "max |diff|", "PSNR vs ref dB"], rows)


if __name__ == "__main__":
    main()
