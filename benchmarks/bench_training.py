"""Training throughput: the GAN step in one process (baseline) and under Ray Train with
1 and 2 workers, same preset, crop and per-worker batch, same machine.

    python benchmarks/bench_training.py [--preset small] [--crop 128] [--batch 4] [--steps 30]

Ray Train rows use the ``images_per_s`` the workers report over their last logging
window (the data stream and DDP all-reduce included, Ray's start-up excluded).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_table  # noqa: E402
from lama_core import build_discriminator, build_generator  # noqa: E402
from lama_core.training import GANTrainingStep, TrainingConfig, make_mask_batch  # noqa: E402


def single_process(preset: str, crop: int, batch: int, steps: int, threads: int) -> float:
    """Steps per second of ``GANTrainingStep`` on random images with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    trainer = GANTrainingStep(build_generator(preset), build_discriminator(preset), TrainingConfig())
    images = torch.rand(batch, 3, crop, crop)
    masks = make_mask_batch("wide_256", 0, 0, batch, crop, crop)
    trainer.step(images, masks)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(images, masks)
    return steps / (time.perf_counter() - start)


def ray_train(preset: str, crop: int, batch: int, steps: int, workers: int, output: str) -> float:
    """Images per second reported by Ray Train workers over the run's last logging window."""
    from pipelines.train.config import TrainConfig
    from pipelines.train.ray_job import run_training

    cfg = TrainConfig(model=preset, recipe="no-perceptual", crop_size=crop, batch_size=batch, steps=steps, num_workers=workers,
                      cpus_per_worker=1.0 / workers, crops_per_image=16, log_every=steps // 2,
                      checkpoint_every=steps, validation_images=2, output=output, name=f"w{workers}")
    return float(run_training(cfg).metrics["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    rows = []
    for threads in (1, 2):
        sps = single_process(args.preset, args.crop, args.batch, args.steps, threads)
        rows.append([f"one process, {threads} thread(s)", sps, sps * args.batch])
    base = rows[-1][2]
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=512 * 2**20,
             log_to_driver=False)
    with tempfile.TemporaryDirectory() as out:
        for workers in (1, 2):
            ips = ray_train(args.preset, args.crop, args.batch, args.steps, workers, out)
            rows.append([f"Ray Train, {workers} worker(s) (gloo)", ips / (args.batch * workers), ips])
    ray.shutdown()
    print_table(f"Training step, {args.preset} preset, {args.crop}² crops, batch {args.batch} per worker, CPU",
                ["path", "steps/s", "images/s", "images/s vs one process (2 threads)"],
                [[*r, r[2] / base] for r in rows])


if __name__ == "__main__":
    main()
