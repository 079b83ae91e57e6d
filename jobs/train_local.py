"""Train LaMa's FFC GAN in one CPU process, without Ray: ``python jobs/train_local.py [key=value ...]``.

The recipe, data, held-out validation, training loop and checkpoint format are those of
``jobs/train.py`` (``pipelines/train/``); its keys are the ones that apply to one process
(``--help``). Meant for small shared CPU machines, where Ray's own processes outweigh one
training worker. A rerun with the same ``output`` and ``name`` resumes, with the learning
rates given on its own command line.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.common.cli import run_job  # noqa: E402
from pipelines.train.config import LocalTrainConfig  # noqa: E402  (light: parsing never waits for torch)


def main(cfg: LocalTrainConfig) -> None:
    from pipelines.train.local import run_local_training

    outcome = run_local_training(cfg)
    print(outcome.summary())


if __name__ == "__main__":
    run_job(main, LocalTrainConfig)
