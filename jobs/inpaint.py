"""Inpaint a whole dataset: ``python jobs/inpaint.py input=URI output=URI model=URI-or-preset``.

Runs unchanged under ``ray job submit -- python jobs/inpaint.py ...`` (joins the cluster in
``RAY_ADDRESS``; otherwise starts a local Ray). ``--help`` lists every key with its type,
default and description. With no arguments it inpaints scikit-image's sample photos into
``outputs/inpaint``. Writes ``OUTPUT/images/ID.png``, ``OUTPUT/masks/ID.png`` and
``OUTPUT/records/*.parquet`` (one row per input record) and prints a one-line summary.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.inpaint.config import InpaintConfig  # noqa: E402  (light: parsing never waits for torch/Ray)
from pipelines.common.cli import run_job  # noqa: E402


def main(cfg: InpaintConfig) -> None:
    from pipelines.inpaint.job import run_inpaint

    summary = run_inpaint(cfg)
    if cfg.dry_run:
        return  # the plan is printed; there is no run to sum up
    if summary.records_files:
        where = "shards" if cfg.output_format == "webdataset" else "images"
        print(f"run {summary.run_id}: {where} under {summary.output}/{where}/, records under "
              f"{summary.output}/records/ ({len(summary.records_files)} files named {summary.run_id}_*.parquet)")
    print(summary.line())


if __name__ == "__main__":
    run_job(main, InpaintConfig)
