"""The bulk job's images/s per GPU on 512² inputs: the last row of the GPU table
(``benchmarks/device_check.sh``). Runs ``jobs/inpaint.py``'s pipeline on a local Ray over a
LaMa folder of photo crops with thick masks, one model actor per GPU, big-lama-shaped random
weights (speed does not depend on them); prints one table row per precision.

    python benchmarks/bench_bulk_gpu.py [--images 256] [--batch 16] [--precisions fp32 bf16]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_pipeline import make_dataset  # noqa: E402
from benchmarks.machine import print_table  # noqa: E402
from lama_core import build_generator, save_generator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    gpus = torch.cuda.device_count()
    if not gpus:
        print("bulk job on GPU: skipped (no CUDA device)")
        return

    from pipelines.inpaint.config import InpaintConfig
    from pipelines.inpaint.job import run_inpaint

    work = Path(tempfile.mkdtemp(prefix="bench_bulk_gpu_"))
    try:
        data = work / "data"
        data.mkdir()
        make_dataset(data, args.images, args.size)
        torch.manual_seed(0)
        model = save_generator(build_generator("big-lama").eval(), str(work / "model"))
        rows = []
        for precision in args.precisions:
            cfg = InpaintConfig(input=str(data), output=str(work / f"out-{precision}"), model=model,
                                batch_size=args.batch, precision=precision, preview=0, write_masks=False)
            summary = run_inpaint(cfg)
            rows.append([f"bulk job, {precision}", args.batch, summary.ok, summary.images_per_second / gpus])
        print_table(f"Bulk job on {gpus} GPU(s) ({torch.cuda.get_device_name(0)}): {args.size}² inputs",
                    ["path", "batch", "records ok", "images/s per GPU"], rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
