"""GPU throughput of the inference backends: images/s per size, batch, backend and precision.

    python benchmarks/bench_gpu.py [--preset big-lama] [--sizes 512 1024] [--batches 1 8 32]
        [--repeats 3] [--onnx FILE.onnx] [--trt-sizes 512] [--trt-batches 1 8] [--budget-s 420]

Rows, each through ``Inpainter.predict`` on ``cuda`` (padding, generator, compositing; inputs
already on the GPU, timed with the device synchronised):
- torch fp32 (TF32 off), bf16 and fp16: the folded generator in channels-last, cuDNN
  autotuned; the Fourier units' FFTs stay fp32 in every precision (``FourierUnit``), so
  fp16 runs at any size: cuFFT's half-precision power-of-two restriction never applies;
- onnxruntime CUDA EP (fp32 graph, I/O bound to torch's GPU memory);
- onnxruntime TensorRT EP (fp32), only at ``--trt-sizes`` x ``--trt-batches``: TensorRT
  builds an engine per input shape (minutes for big-lama), which the warm-up absorbs.
A row whose provider is missing, or that runs out of memory or time (``--budget-s`` for
the whole table), is printed with the reason instead of a number. Each row's max abs
difference to torch fp32 is printed too. Weights: big-lama-shaped random
(``bench_generator.randomized_generator``). ``--onnx``: where the exported graph of those
weights is kept: read when the file exists, else exported here (~1 min for big-lama) and
written there, so a rerun skips the export.
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
from benchmarks.machine import print_table  # noqa: E402
from lama_core import Inpainter  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, synchronised."""
    out = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def trt_providers(cache: str) -> list:
    """TensorRT EP in fp32 with an engine cache (a rerun reuses built engines), CUDA EP and
    CPU behind it for anything TensorRT does not take."""
    options = {"device_id": 0, "trt_fp16_enable": False, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": cache, "trt_max_workspace_size": 8 * 2 ** 30}
    return [("TensorrtExecutionProvider", options), ("CUDAExecutionProvider", {"device_id": 0}),
            "CPUExecutionProvider"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx", default=None, help="cache file of the exported graph "
                        "(default /tmp/lama-bench-gpu-PRESET.onnx)")
    parser.add_argument("--trt-sizes", type=int, nargs="*", default=[512])
    parser.add_argument("--trt-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--trt-cache", default="/tmp/lama-trt-cache")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop timing new rows after this")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    started = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    generator = randomized_generator(args.preset)

    paths: list[tuple[str, object]] = []
    for precision in ("fp32", "bf16", "fp16"):
        paths.append((f"torch {precision}", Inpainter(generator, device=device, precision=precision,
                                                      channels_last=True)))
    graph_path = Path(args.onnx or f"/tmp/lama-bench-gpu-{args.preset}.onnx")
    graph: str | None = str(graph_path) if graph_path.exists() else None
    try:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        print(f"onnxruntime {ort.__version__}: {', '.join(sorted(available))}", flush=True)
    except ImportError:
        available = set()
        print("onnxruntime not installed: its rows are skipped (pip install -e '.[onnx]' onnxruntime-gpu)")
    if available & {"CUDAExecutionProvider", "TensorrtExecutionProvider"} and graph is None:
        from lama_core.onnx_export import export_onnx_bytes

        t0 = time.perf_counter()
        graph_path.write_bytes(export_onnx_bytes(generator).data)
        graph = str(graph_path)
        print(f"exported the ONNX graph in {time.perf_counter() - t0:.0f} s to {graph_path}", flush=True)
    for label, provider in (("onnxruntime CUDA EP fp32", "CUDAExecutionProvider"),
                            ("onnxruntime TensorRT EP fp32", "TensorrtExecutionProvider")):
        if provider not in available:
            paths.append((label, f"skipped: onnxruntime has no {provider}"))
            continue
        providers = trt_providers(args.trt_cache) if provider.startswith("Tensorrt") else None
        try:
            paths.append((label, Inpainter(generator, device=device, backend="onnxruntime", onnx_model=graph,
                                           ort_providers=providers)))
        except Exception as exc:  # a provider that fails to load must not cost the other rows
            paths.append((label, f"skipped: {str(exc).splitlines()[0][:120]}"))

    rows = []
    for size in args.sizes:
        for batch in args.batches:
            g = torch.Generator(device=device).manual_seed(size + batch)
            image = torch.rand(batch, 3, size, size, device=device, generator=g)
            mask = torch.zeros(batch, 1, size, size, device=device)
            mask[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
            base = None
            for label, inpainter in paths:
                cell = None
                if isinstance(inpainter, str):
                    cell = inpainter
                elif "TensorRT" in label and (size not in args.trt_sizes or batch not in args.trt_batches):
                    cell = "skipped: not in --trt-sizes/--trt-batches"
                elif time.perf_counter() - started > args.budget_s:
                    cell = f"skipped: past --budget-s {args.budget_s:.0f}"
                if cell is not None:
                    rows.append([f"{size}²", batch, label, cell, "", ""])
                    continue
                try:
                    seconds, out = timed(lambda p=inpainter: p.predict(image, mask), args.repeats)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    rows.append([f"{size}²", batch, label, "out of memory", "", ""])
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. ORT's own out-of-memory: report and go on
                    rows.append([f"{size}²", batch, label, f"failed: {str(exc).splitlines()[0][:80]}", "", ""])
                    continue
                if base is None and label == "torch fp32":
                    base = out
                diff = f"{(out.float() - base.float()).abs().max().item():.1e}" if base is not None else ""
                rows.append([f"{size}²", batch, label, batch / seconds, seconds / batch, diff])
                del out
            del image, mask
            torch.cuda.empty_cache()
            print(f"done {size}² batch {batch} at {time.perf_counter() - started:.0f} s", flush=True)
    print_table(f"GPU backends, {args.preset} random weights (median of {args.repeats})",
                ["size", "batch", "path", "images/s", "s/image", "max |diff| vs torch fp32"], rows)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
