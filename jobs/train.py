"""Train LaMa's FFC GAN with Ray Train: ``python jobs/train.py [key=value ...]``.

Locally it starts a Ray instance and trains on the CPU; on a cluster, run it with
``ray job submit -- python jobs/train.py input=s3://... output=s3://... num_workers=8
gpus_per_worker=1 model=big-lama``. A rerun with the same ``output`` and ``name`` resumes from
the latest complete checkpoint (``output/name/checkpoint_000000120``: named by step, with
``complete.json`` written last), whatever killed the previous run.
The last line printed names the latest checkpoint (``lama_core.load_generator`` loads it).
``--help`` lists every key with its type, default and description.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.common.cli import run_job  # noqa: E402
from pipelines.train.config import TrainConfig  # noqa: E402  (light: parsing never waits for torch/Ray)


def main(cfg: TrainConfig) -> None:
    from pipelines.train.ray_job import run_training

    outcome = run_training(cfg)
    # Checkpoints skipped on resume (damaged: the file is named); the workers' own log
    # lines stay in Ray's logs unless verbose=true.
    for warning in outcome.metrics.get("resume_warnings") or []:
        print(warning, file=sys.stderr)
    print(outcome.summary())


if __name__ == "__main__":
    run_job(main, TrainConfig)
