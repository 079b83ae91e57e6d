"""Single-process CPU training without Ray: the same recipe, data, validation, loop and
checkpoints as ``pipelines.train.ray_job`` (``jobs/train.py``), for one machine with a few
cores (``jobs/train_local.py``).

Why it exists: on a small shared CPU machine, Ray's data stage, controller and stats actors
took more CPU than the training worker itself, and Ray runs workers at a low priority
(nice 15), so a loaded 2-core machine gave the worker a tenth of a core. Here one process
decodes the images once (``pipelines.train.data.training_images``), cuts the crops itself
and runs ``pipelines.train.loop.run_training_loop``; intra-op threads as ``cpus_per_worker``.
A rerun with the same ``output`` and ``name`` resumes from the latest checkpoint, with the
learning rates of its own config (so a schedule can be run as phases). Local paths only.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Iterator

import numpy as np
import torch

from lama_core.augment import crop_function
from lama_core.checkpoint import CheckpointError
from lama_core.training import GANTrainingStep, images_to_batch, unwrap
from lama_core.training_checkpoint import remove_incomplete

from pipelines.cluster.progress import training_report_line
from pipelines.common.config_kit import check_config
from pipelines.common.errors import JobError
from pipelines.train.checkpoints import resume_from_run
from pipelines.train.config import LocalTrainConfig
from pipelines.train.data import training_images, validation_batch
from pipelines.train.loop import (LoopCallbacks, LoopRun, TrainingOutcome, build_models, run_training_loop,
                                  training_config, with_perceptual_weights)


def run_local_training(cfg: LocalTrainConfig) -> TrainingOutcome:
    """Train per ``cfg`` in this process, on the CPU. Prints the same report line as the Ray
    job every ``log_every`` steps and at each checkpoint (every ``checkpoint_every`` steps
    and at the end, keeping the newest ``keep_checkpoints``). Returns the latest checkpoint
    folder and the last metrics. Raises ``JobError`` (one line) when the data cannot be
    read or nothing was trained."""
    check_config(cfg)
    cfg = with_perceptual_weights(cfg)
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    run_dir = os.path.join(cfg.output, cfg.name)
    os.makedirs(run_dir, exist_ok=True)
    try:
        photos = training_images(cfg)
        validation = validation_batch(cfg)
        generator, discriminator = build_models(cfg.model)
    except (FileNotFoundError, ValueError, PermissionError, CheckpointError) as exc:
        raise JobError(str(exc).splitlines()[0]) from exc
    trainer = GANTrainingStep(generator, discriminator, training_config(cfg))
    for uri in remove_incomplete(run_dir):
        print(f"removed incomplete checkpoint {uri}")
    step, resumed, warnings = resume_from_run(run_dir, trainer, 0, 1, None)
    for line in warnings:
        print(line)
    if resumed:
        print(f"resumed from {resumed} (step {step}); learning rates {cfg.generator_lr:g} / {cfg.discriminator_lr:g}")
    # A fresh crop stream per (seed, start step): a resumed run does not repeat its crops.
    rng = np.random.default_rng([cfg.seed, step])
    cut = crop_function(cfg.augmentation, cfg.crop_size, rng, cfg.grayscale_probability)

    def epoch() -> Iterator[torch.Tensor]:
        while True:  # random photos with replacement: one endless pass
            yield images_to_batch([cut(photos[i]) for i in rng.integers(len(photos), size=cfg.batch_size)])

    where = LoopRun(run_dir, {name: torch.from_numpy(a) for name, a in validation.items()}, 0, 1, step, resumed,
                    warnings)
    metrics = run_training_loop(cfg, trainer, where, LoopCallbacks(
        epoch, lambda m: print(training_report_line(m, cfg.steps)
                               + ("  (checkpoint)" if m.get("checkpoint") else ""), flush=True)))
    latest = metrics.get("checkpoint") or resumed  # nothing left to train: the run was already at cfg.steps
    if not latest:
        raise JobError("training finished without a checkpoint")
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=1)
    unwrap(trainer.generator).eval()
    return TrainingOutcome(latest, metrics)
