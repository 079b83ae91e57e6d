"""Train LaMa's FFC GAN in one CPU process, without Ray: ``python jobs/train_local.py [key=value ...]``.

The keys, recipe, data, held-out validation and checkpoint format are those of
``jobs/train.py`` (``pipelines/common/configs.py`` ``TrainConfig``); ``num_workers`` must be 1 and
outputs are local. Meant for small shared CPU machines, where Ray's own processes outweigh
one training worker (``pipelines/train/local.py``). A rerun with the same ``output`` and
``name`` resumes, with the learning rates given on its own command line.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipelines.common.configs import TrainConfig  # noqa: E402
from pipelines.common.cli import JobError, run_job  # noqa: E402


def main(cfg: TrainConfig) -> None:
    from pipelines.train.local import run_local_training

    try:
        outcome = run_local_training(cfg)
    except (FileNotFoundError, ValueError, PermissionError) as exc:
        raise JobError(str(exc)) from exc
    print(f"trained to step {outcome.metrics.get('step', '?')}; "
          f"validation L1 {outcome.metrics.get('validation_l1', float('nan')):.4f}")
    print(f"latest checkpoint: {outcome.checkpoint}")


if __name__ == "__main__":
    run_job(main, TrainConfig)
