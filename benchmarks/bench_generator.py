"""Generator throughput: the reference path vs our fast inference paths, same process.

    python benchmarks/bench_generator.py [--preset big-lama] [--sizes 256 512] [--repeats 3]

(a) reference: fp32, one image per call, eval mode, the module exactly as built/loaded.
(b) ours, same numerics: BatchNorm folded into convs, channels-last, inference_mode, and
    the CPU kernels (``Inpainter``'s CPU default): the ResNet blocks' 3x3 FFCs as Winograd
    F(4x4,3x3) (F(2x2,3x3) in bf16) and the output conv in space-to-depth form; the row without them shows what
    folding + layout alone give. Max abs diff vs (a)
    checked <= 1e-4.
The CPU run keeps freed buffers in the process (``lama_core.cpu_allocator``), as the
``Inpainter`` does, for every row including the reference.
(c) ours, reduced precision: (b) with bf16 weights and activations (FFTs stay fp32), as
    ``Inpainter(precision="bf16")`` runs it on CPU; its PSNR vs (a).
``--device cuda`` (default when a GPU is visible) times the same reference on the GPU with
TF32 off, against folded + channels-last fp32 and fp16 (cuDNN picks its own Winograd/FFT
kernels there), optionally in batches (``--batch``). The script needs no Ray.
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
from lama_core.cpu_allocator import keep_freed_memory  # noqa: E402
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


def time_call(fn, repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, and its output
    (the device is synchronised around each run, so GPU times are complete)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def inference_paths(reference: torch.nn.Module, device: torch.device, batch: int) -> list[tuple]:
    """(label, module, dtype, batch) of our paths: on CPU the ``Inpainter``'s (CPU kernels,
    bf16 for reduced precision); on GPU folded + NHWC with cuDNN's own algorithms, fp32
    (TF32 off) and fp16 for reduced precision, in batches of ``batch``."""
    folded = optimize_for_inference(reference, channels_last=True).to(device)
    if device.type == "cuda":
        return [("folded+NHWC fp32", folded, torch.float32, batch),
                ("folded+NHWC fp16", optimize_for_inference(reference).to(device, torch.float16), torch.float16,
                 batch)]
    fast = optimize_for_inference(reference, channels_last=True, cpu_kernels=True)
    return [("folded+NHWC fp32", folded, torch.float32, batch),
            ("folded+NHWC+CPU kernels fp32", fast, torch.float32, batch),
            ("folded+NHWC+CPU kernels bf16", optimize_for_inference(reference, cpu_kernels=True).to(torch.bfloat16),
             torch.bfloat16, batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1, help="images per call on our paths (reference: always 1)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the reduced-precision row")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        # As the Inpainter does on CPU; process-wide, so the reference gains from it too.
        keep_freed_memory()
    if device.type == "cuda":
        # The reference path is plain fp32: no TF32 anywhere.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True

    reference = randomized_generator(args.preset)
    paths = inference_paths(reference, device, args.batch)
    if args.no_bf16:
        paths = [p for p in paths if p[2] == torch.float32]
    reference = reference.to(device)
    rows, violations = [], []
    for size in args.sizes:
        torch.manual_seed(size)
        x = torch.rand(1, 4, size, size)
        x[:, 3:] = (x[:, 3:] > 0.7).float()
        x = x.to(device)

        def run_ref():
            with torch.inference_mode():
                return reference(x)

        t_ref, y_ref = time_call(run_ref, args.repeats, device)
        rows.append([f"{size}²", "reference fp32", 1, t_ref, 1 / t_ref, 1.0, 0.0, "inf"])
        for label, module, dtype, batch in paths:
            xb = x.repeat(batch, 1, 1, 1).contiguous(memory_format=torch.channels_last).to(dtype)

            def run(module=module, xb=xb):
                with torch.inference_mode():
                    return module(xb)[:1].float()

            t, y = time_call(run, args.repeats, device)
            diff = (y - y_ref).abs().max().item()
            per_image = t / batch
            rows.append([f"{size}²", label, batch, per_image, 1 / per_image, t_ref / per_image, diff,
                         f"{psnr(y, y_ref):.1f}"])
            if dtype == torch.float32 and diff > 1e-4:
                violations.append(f"{label} differs from reference by {diff:.2e} > 1e-4 at {size}²")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print_table(f"Generator {args.preset}, {where} (median of {args.repeats})",
                ["size", "path", "batch", "s/image", "images/s", "speed-up vs ref", "max |diff|", "PSNR vs ref dB"],
                rows)
    if violations:  # after the table, so a long GPU run still reports its timings
        raise SystemExit("; ".join(violations))


if __name__ == "__main__":
    main()
