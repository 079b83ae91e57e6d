"""Where the model stage's batches run inside a Ray Data actor, and what it costs.

    python benchmarks/bench_actor_thread.py [--model big-lama] [--images 24] [--size 512] [--rounds 2]

Runs the same ``Inpainter`` (the job's model actor: ``InpaintStage``'s plan, 2 threads on
a 2-core machine, batches of 4) over the same images three ways, alternating each round:
a plain process loop (baseline), a Ray Data actor pool with Ray's default (each batch
handed to a second thread of the actor: ``enable_true_multi_threading=False``), and the
pool the jobs use (``stage_utils.model_actor_pool``: the batch runs in the actor's own
thread). Prints seconds per image of the model call itself and the cores it kept busy
(process CPU time / wall time during the call). Ray Data's decode/encode stages are left
out: rows come from ``from_items``.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_table  # noqa: E402
from lama_core.masks import generate_mask  # noqa: E402


class TimedModel:
    """The job's model stage in miniature: ``InpaintStage``'s actor set-up, then one timed
    ``Inpainter.inpaint`` per batch; returns ``sec`` (wall) and ``cpu`` (process CPU)."""

    def __init__(self, model: str, threads: int):
        from pipelines.cluster.actor_pool import ActorPlan
        from pipelines.inpaint.model_stage import InpaintStage, ModelStage

        plan = ActorPlan(actors=1, cpus=float(threads), threads=threads, gpus=0.0, device="cpu", codec_cpus=0.5)
        self.stage = InpaintStage(ModelStage(model=model, seed=0, precision="fp32", max_pixels=0, hd_strategy="windows",
                                             batch_size=4, endpoint_url=None, keep_masks=False, actors=plan))

    def __call__(self, batch: dict) -> dict:
        start, cpu = time.perf_counter(), time.process_time()
        self.stage.inpainter.inpaint(list(batch["image"]), list(batch["mask"]))
        return {"sec": np.array([time.perf_counter() - start]), "cpu": np.array([time.process_time() - cpu])}


def data(images: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seeded noise photos ``size x size x 3`` uint8 with ``thick_512`` holes (uint8 0/1)."""
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(images)]
    masks = [generate_mask("thick_512", 0, i, size, size).astype(np.uint8) for i in range(images)]
    return photos, masks


def run_plain(model: str, threads: int, photos, masks) -> tuple[float, float]:
    stage = TimedModel(model, threads)
    out = [stage({"image": photos[i:i + 4], "mask": masks[i:i + 4]}) for i in range(0, len(photos), 4)]
    return summarize(out, len(photos))


def run_ray_data(model: str, threads: int, photos, masks, own_thread: bool) -> tuple[float, float]:
    import ray

    pool = ray.data.ActorPoolStrategy(size=1, enable_true_multi_threading=own_thread)
    ds = ray.data.from_items([{"image": p, "mask": m} for p, m in zip(photos, masks)])
    out = ds.map_batches(TimedModel, compute=pool, batch_size=4, num_cpus=1,
                         fn_constructor_kwargs=dict(model=model, threads=threads)).take_all()
    return summarize([{"sec": [r["sec"]], "cpu": [r["cpu"]]} for r in out], len(photos))


def summarize(batches: list[dict], images: int) -> tuple[float, float]:
    """(seconds per image, cores busy) over all batches."""
    sec = sum(float(b["sec"][0]) for b in batches)
    cpu = sum(float(b["cpu"][0]) for b in batches)
    return sec / images, cpu / sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="big-lama", help="preset (random weights) or checkpoint URI")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the model (the job's plan)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray

    from pipelines.cluster.ray_setup import quiet_ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    quiet_ray()
    photos, masks = data(args.images, args.size)
    ways = {"plain process": lambda: run_plain(args.model, args.threads, photos, masks),
            "Ray Data, second thread (Ray's default)": lambda: run_ray_data(args.model, args.threads, photos, masks,
                                                                            own_thread=False),
            "Ray Data, actor's own thread (the jobs)": lambda: run_ray_data(args.model, args.threads, photos, masks,
                                                                            own_thread=True)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for round_ in range(args.rounds):
        for name in (list(ways) if round_ % 2 == 0 else list(ways)[::-1]):
            results[name].append(ways[name]())
            print(f"  round {round_ + 1}: {name}: {results[name][-1][0]:.2f} s/image, "
                  f"{results[name][-1][1]:.2f} cores", flush=True)
    base = statistics.median(s for s, _ in results["plain process"])
    rows = [[name, args.images, ", ".join(f"{s:.2f}" for s, _ in runs), statistics.median(s for s, _ in runs),
             ", ".join(f"{c:.2f}" for _, c in runs), round(statistics.median(s for s, _ in runs) / base, 3)]
            for name, runs in results.items()]
    print_table(f"Model stage, {args.model} fp32 {args.size}², batches of 4, {args.threads} threads",
                ["where the batch runs", "images", "s/image per round", "s/image (median)", "cores busy per round",
                 "time vs plain"], rows)


if __name__ == "__main__":
    main()
