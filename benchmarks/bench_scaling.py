"""Scaling on this machine: images/s of the Inpainter against batch size (model only, all
threads), and of the bulk pipeline for actors × threads-per-actor layouts of the cores.

    python benchmarks/bench_scaling.py [--preset big-lama] [--size 256] [--images 16]

Baselines are in the same process: batch 1 for the batch sweep, 1 actor × 1 thread for the
layouts. Weights are random (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_pipeline import make_dataset  # noqa: E402
from benchmarks.machine import print_table  # noqa: E402
from lama_core import Inpainter, build_generator, save_generator  # noqa: E402


def batch_sweep(generator, cases, batches: list[int]) -> list[list]:
    rows, base = [], None
    torch.set_num_threads(os.cpu_count() or 1)
    for batch in batches:
        inpainter = Inpainter(generator, batch_size=batch)
        n = max(batch * 2, 8)
        images, masks = [c[0] for c in cases[:n]], [c[1] for c in cases[:n]]
        inpainter(images[:batch], masks[:batch])  # warm-up
        start = time.perf_counter()
        inpainter(images, masks)
        ips = n / (time.perf_counter() - start)
        base = base or ips
        rows.append([batch, ips, ips / base])
    return rows


def layout_sweep(data: Path, model_uri: str, work: Path, layouts: list[tuple[int, int]]) -> list[list]:
    import ray

    from pipelines.inpaint.config import InpaintConfig
    from pipelines.inpaint.job import run_inpaint

    cores = os.cpu_count() or 1
    rows, base = [], None
    for actors, threads in layouts:
        # One logical CPU beyond the cores keeps the decode/encode tasks schedulable when the
        # actors take every core (they then share cores with the codecs, as on a real node).
        ray.init(address="local", num_cpus=cores + 1, include_dashboard=False, object_store_memory=512 * 2**20,
                 log_to_driver=False)
        try:
            cfg = InpaintConfig(input=str(data), output=str(work / f"out_{actors}x{threads}"), model=model_uri,
                                batch_size=4, num_workers=actors, cpus_per_worker=threads, gpus_per_worker=0)
            run_inpaint(InpaintConfig(**{**cfg.__dict__, "output": cfg.output + "_warm"}))
            ips = run_inpaint(cfg).images_per_second
        finally:
            ray.shutdown()
        base = base or ips
        rows.append([f"{actors} actor(s) × {threads} thread(s)", ips, ips / base])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    try:
        data = work / "data"
        data.mkdir()
        cases = make_dataset(data, args.images, args.size)
        torch.manual_seed(0)
        generator = build_generator(args.preset).eval()
        print_table(f"Inpainter images/s vs batch size, {args.preset} at {args.size}², all threads",
                    ["batch", "images/s", "vs batch 1"], batch_sweep(generator, cases, args.batches))
        model_uri = save_generator(generator, str(work / "model"))
        cores = os.cpu_count() or 1
        layouts = [(1, 1), (1, cores), (cores, 1)] if cores > 1 else [(1, 1)]
        print_table(f"Pipeline images/s by actor layout, {args.preset} at {args.size}², {args.images} images",
                    ["layout", "images/s", "vs 1×1"], layout_sweep(data, model_uri, work, layouts))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
