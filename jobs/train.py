"""Train LaMa's FFC GAN with Ray Train: ``python jobs/train.py [key=value ...]``.

Locally it starts a Ray instance and trains on the CPU; on a cluster, run it with
``ray job submit -- python jobs/train.py data=s3://... output=s3://... use_gpu=true
num_workers=8 preset=big-lama``. A rerun with the same ``output`` and ``name`` resumes from
the latest complete checkpoint (``output/name/checkpoint_000000120``: named by step, with
``complete.json`` written last), whatever killed the previous run.
The last line printed names the latest checkpoint (``lama_core.load_generator`` loads it).
See ``pipelines/train.py`` for every key (``--help`` prints them with their defaults).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python jobs/train.py` from a plain checkout
    sys.path.insert(0, str(REPO))

from omegaconf import OmegaConf  # noqa: E402

from pipelines.job_config import JobError, run_job  # noqa: E402
from pipelines.ray_setup import init_ray  # noqa: E402
from pipelines.train import TrainJobConfig, run_training  # noqa: E402


def main(cfg: TrainJobConfig) -> None:
    plain = TrainJobConfig(**OmegaConf.to_container(cfg))
    try:
        init_ray()
        outcome = run_training(plain)
    except (FileNotFoundError, ValueError, PermissionError) as exc:
        raise JobError(str(exc)) from exc
    except RuntimeError as exc:
        raise JobError(str(exc).splitlines()[0]) from exc
    metrics = outcome.metrics
    start = f"from {metrics['resumed_from']}" if metrics.get("resumed_from") else "from scratch"
    print(f"trained {start} (step {metrics.get('start_step', '?')}) to step {metrics.get('step', '?')}; "
          f"validation L1 {metrics.get('validation_l1', float('nan')):.4f}")
    print(f"latest checkpoint: {outcome.checkpoint}")


if __name__ == "__main__":
    run_job(main, TrainJobConfig, defaults_yaml=REPO / "jobs" / "configs" / "train.yaml")
