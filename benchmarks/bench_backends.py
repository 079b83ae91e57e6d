"""Inference backends on CPU: our torch path against the exported ONNX graph on ONNX Runtime
and OpenVINO, same process, same weights, same inputs.

    python benchmarks/bench_backends.py [--preset big-lama] [--sizes 512 1024] [--batches 1 4]
        [--repeats 2] [--dft matmul onnx]

Every row runs one batch through ``Inpainter.predict`` (padding, generator, compositing),
so the rows do the same work:
- reference module: the generator as built (unfolded, eager fp32) behind the official
  TorchScript interface (``benchmarks/bench_peer.OfficialJitInterface``: what the official
  big-lama export computes; the official code itself is not installed here);
- torch fp32 / bf16: the Inpainter's default CPU path (folded, CPU kernels); bf16 only on a
  CPU with native bf16;
- onnxruntime fp32 with each ``--dft`` form of the graph (``lama_core.onnx_export``);
- openvino fp32, and bf16 (``INFERENCE_PRECISION_HINT``) where the CPU has native bf16.
Each row: seconds per image (median of ``--repeats`` after one warm-up), its time relative to
torch fp32 (< 1 = faster) and the max abs difference of its output to torch fp32's.
Weights: big-lama-shaped, random, with perturbed BatchNorm statistics
(``bench_generator.randomized_generator``); speed does not depend on the values.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_generator import randomized_generator  # noqa: E402
from benchmarks.bench_peer import OfficialJitInterface  # noqa: E402
from benchmarks.machine import print_table  # noqa: E402
from lama_core import Inpainter  # noqa: E402
from lama_core.inpainter import native_bf16_cpu  # noqa: E402
from lama_core.onnx_export import export_onnx_bytes  # noqa: E402


def alternating_medians(fns: list, warmup: int, repeats: int) -> list[tuple[float, torch.Tensor]]:
    """Median seconds of each ``fns[i]()`` and its output. Each is warmed up ``warmup``
    times (oneDNN and the runtimes build their kernels on the first calls: the torch path
    took 12.8, 6.9, 4.5, then 2.1 s on its first four 512² calls here), then the timed calls
    go round-robin, so that load from outside (shared cores) spreads over all rows alike."""
    outs = [None] * len(fns)
    for i, fn in enumerate(fns):
        for _ in range(warmup):
            outs[i] = fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), out) for t, out in zip(times, outs)]


def inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch: random pixels, a box hole covering a quarter of each image."""
    g = torch.Generator().manual_seed(size * 10 + batch)
    image = torch.rand(batch, 3, size, size, generator=g)
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dft", nargs="+", default=["matmul", "onnx"], choices=["matmul", "onnx"])
    parser.add_argument("--no-reference", action="store_true", help="skip the unfolded reference-module row")
    args = parser.parse_args()

    generator = randomized_generator(args.preset)
    bf16 = native_bf16_cpu()
    paths: list[tuple[str, Inpainter]] = [("torch fp32", Inpainter(generator))]
    if bf16:
        paths.append(("torch bf16", Inpainter(generator, precision="bf16")))
    for dft in args.dft:
        start = time.perf_counter()
        graph = export_onnx_bytes(generator, dft=dft).data
        print(f"exported dft={dft} in {time.perf_counter() - start:.0f} s ({len(graph) / 2 ** 20:.0f} MiB)", flush=True)
        paths.append((f"onnxruntime fp32 dft={dft}", Inpainter(generator, backend="onnxruntime", onnx_model=graph)))
        if dft == args.dft[0]:
            paths.append((f"openvino fp32 dft={dft}", Inpainter(generator, backend="openvino", onnx_model=graph)))
            if bf16:
                paths.append((f"openvino bf16 dft={dft}",
                              Inpainter(generator, backend="openvino", precision="bf16", onnx_model=graph)))
    reference = OfficialJitInterface(generator)

    rows = []
    for size in args.sizes:
        for batch in args.batches:
            image, mask = inputs(batch, size)
            labels = [label for label, _ in paths]
            fns = [lambda p=inpainter: p.predict(image, mask) for _, inpainter in paths]
            if not args.no_reference:
                def run_reference():
                    with torch.inference_mode():
                        return torch.cat([reference(image[i: i + 1], mask[i: i + 1]) for i in range(batch)])
                labels.append("reference module fp32 (unfolded, 1 image/call)")
                fns.append(run_reference)
            timed = [(label, seconds, out) for label, (seconds, out)
                     in zip(labels, alternating_medians(fns, args.warmup, args.repeats))]
            base_t, base = timed[0][1], timed[0][2]
            for label, seconds, out in timed:
                rows.append([f"{size}²", batch, label, seconds / batch, seconds / base_t,
                             f"{(out - base).abs().max().item():.1e}"])
            print(f"done {size}² batch {batch}", flush=True)
    print_table(f"Backends, {args.preset} random weights, CPU (median of {args.repeats}, after {args.warmup} warm-up calls)",
                ["size", "batch", "path", "s/image", "time vs torch fp32", "max |diff| vs torch fp32"], rows)


if __name__ == "__main__":
    main()
