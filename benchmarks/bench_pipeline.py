"""Bulk-inpainting pipeline efficiency: end-to-end images/s of ``jobs/inpaint.py``'s
pipeline over the model-only images/s of the same Inpainter at the same batch size and
thread count, in one process on one machine; plus the per-image cost of each CPU stage
(decode, encode, write) that a GPU node must hide behind the model.

    python benchmarks/bench_pipeline.py [--preset big-lama] [--size 256] [--images 24] [--batch 4]

On a CPU-only machine the model and the codecs share the same cores, so the ratio shows
the pipeline's overhead (scheduling, serialisation, I/O) rather than overlap; on a GPU
node the CPU stages run beside the model. Model weights are random (speed does not depend
on them).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_table  # noqa: E402
from lama_core import Inpainter, build_generator, save_generator  # noqa: E402
from lama_core.masks import generate_mask  # noqa: E402
from pipelines.records.codecs import decode_image, decode_mask, encode_image  # noqa: E402
from pipelines.common.samples import png_bytes, sample_photos  # noqa: E402


def make_dataset(folder: Path, n: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Write ``n`` photo crops with thick masks in LaMa's naming; return the arrays too."""
    from PIL import Image

    photos = list(sample_photos().values())
    cases = []
    for i in range(n):
        photo = Image.fromarray(photos[i % len(photos)]).resize((size, size))
        image = np.asarray(photo)
        mask = (generate_mask("thick_512", 0, i, size, size) * 255).astype(np.uint8)
        (folder / f"img{i:04d}.png").write_bytes(png_bytes(image))
        (folder / f"img{i:04d}_mask000.png").write_bytes(png_bytes(mask))
        cases.append((image, mask))
    return cases


def stage_costs(folder: Path, cases, repeats: int = 3) -> list[list]:
    """Seconds per image of decode (image+mask), PNG encode (level 1) and JPEG encode on one core."""
    torch.set_num_threads(1)
    files = sorted(p for p in folder.iterdir() if "_mask" not in p.name)
    rows = []
    for name, fn in [
        ("decode image+mask (PNG)", lambda i: (decode_image(files[i].read_bytes(), str(files[i])),
                                               decode_mask(files[i].with_name(files[i].stem + "_mask000.png")
                                                           .read_bytes(), "m"))),
        ("encode PNG level 1", lambda i: encode_image(cases[i][0], "png", png_compress_level=1)),
        ("encode JPEG q95", lambda i: encode_image(cases[i][0], "jpg", jpeg_quality=95)),
    ]:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(len(cases)):
                fn(i)
            best = min(best, (time.perf_counter() - start) / len(cases))
        rows.append([name, best * 1000, 1 / best])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="big-lama")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    import ray

    from pipelines.inpaint.config import InpaintConfig
    from pipelines.inpaint.job import run_inpaint

    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        data = work / "data"
        data.mkdir()
        cases = make_dataset(data, args.images, args.size)
        torch.manual_seed(0)
        generator = build_generator(args.preset).eval()
        model_uri = save_generator(generator, str(work / "model"))

        # The actor gets 2 CPUs (all of this machine) and torch threads to match, so the
        # model-only baseline below uses the same thread count.
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=512 * 2**20,
                 log_to_driver=False)
        cfg = InpaintConfig(input=str(data), output=str(work / "out"), model=model_uri, batch_size=args.batch,
                            num_workers=1, cpus_per_worker=1, gpus_per_worker=0)
        warm = run_inpaint(InpaintConfig(**{**cfg.__dict__, "output": str(work / "warm")}))
        summary = run_inpaint(cfg)
        ray.shutdown()
        assert summary.ok == args.images, summary.line()
        end_to_end = summary.images_per_second

        torch.set_num_threads(1)  # the actor above ran with cpus_per_worker=1 -> 1 torch thread
        inpainter = Inpainter(generator, batch_size=args.batch)
        inpainter([c[0] for c in cases[: args.batch]], [c[1] for c in cases[: args.batch]])  # warm-up
        start = time.perf_counter()
        inpainter([c[0] for c in cases], [c[1] for c in cases])
        model_only = args.images / (time.perf_counter() - start)

        rows = [["model only (Inpainter, 1 thread)", args.batch, model_only, 1.0],
                ["end-to-end pipeline (1 actor, 1 CPU)", args.batch, end_to_end, end_to_end / model_only],
                ["  (first run, incl. actor start)", args.batch, warm.images_per_second,
                 warm.images_per_second / model_only]]
        print_table(f"Pipeline efficiency: {args.preset} at {args.size}², {args.images} images",
                    ["path", "batch", "images/s", "ratio vs model-only"], rows)
        print_table(f"CPU stage cost per {args.size}² image (1 core)", ["stage", "ms/image", "images/s/core"],
                    stage_costs(data, cases))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
