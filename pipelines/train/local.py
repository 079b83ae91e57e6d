"""Single-process CPU training without Ray: the same recipe, data, validation and checkpoint
format as ``pipelines.train.ray_job`` (``jobs/train.py``), for one machine with a few cores.

Why it exists: on a small shared CPU machine, Ray's data stage, controller and stats actors
took more CPU than the training worker itself, and Ray runs workers at a low priority
(nice 15), so a loaded 2-core machine gave the worker a tenth of a core. Here one process
decodes the images once, cuts the crops itself (``lama_core.augment``) and trains with
``lama_core.training.GANTrainingStep``; intra-op threads as ``cpus_per_worker``.

Checkpoints: ``OUTPUT/NAME/checkpoint_000000120/``, the layout of ``lama_core.training_checkpoint``
(``complete.json`` last), with the files of ``pipelines.train.ray_job`` (the
generator loads with ``lama_core.load_generator``); a rerun with the same ``output`` and
``name`` resumes from the latest one, with the learning rates of its own config (so a
schedule can be run as phases). Local paths only.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from lama_core.augment import Distortions, distorted_crop, random_crop
from lama_core.training import GANTrainingStep, images_to_batch, make_mask_batch, unwrap

from pipelines.records.codecs import RecordError, decode_image
from pipelines.common.configs import TrainConfig
from pipelines.common.samples import TRAINING_PHOTOS, sample_photos
from lama_core.training_checkpoint import prune_checkpoints, remove_incomplete

from pipelines.train.ray_job import (TrainingOutcome, build_models, resume_from_run, training_config, validation_outputs,
                    save_training_checkpoint, split_held_out, validation_batch, validation_grid_png)


def training_images(cfg: TrainConfig) -> list[np.ndarray]:
    """The decoded training images (uint8 ``H x W x 3``): ``samples.TRAINING_PHOTOS`` for the
    default data, else the images of ``cfg.input`` that ``split_held_out`` keeps for training."""
    if not cfg.input:
        return list(sample_photos(TRAINING_PHOTOS).values())
    kind, paths, _ = split_held_out(cfg)
    if kind != "images":
        raise ValueError("local training reads image folders; use jobs/train.py for Parquet shards")
    images = []
    for path in paths:
        with open(path, "rb") as f:
            try:
                images.append(decode_image(f.read(), path)[0])
            except RecordError as exc:
                print(f"skipping training image: {exc}")
    if not images:
        raise FileNotFoundError(f"no decodable training image in {cfg.input}")
    return images


def run_local_training(cfg: TrainConfig) -> TrainingOutcome:
    """Train per ``cfg`` in this process (``num_workers`` must be 1, CPU only). Prints one
    JSON line of mean losses every ``log_every`` steps; checkpoints every
    ``checkpoint_every`` steps and at the end, keeping the newest ``keep_checkpoints``.
    Returns the latest checkpoint folder and the last metrics."""
    if cfg.num_workers != 1 or (cfg.gpus_per_worker or 0) > 0:
        raise ValueError("local training runs one CPU process: num_workers=1, gpus_per_worker=0")
    if problems := cfg.problems():
        raise ValueError("bad config: " + "; ".join(problems))
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    run_dir = os.path.join(cfg.output, cfg.name)
    os.makedirs(run_dir, exist_ok=True)
    photos = training_images(cfg)
    validation = validation_batch(cfg)
    val_images, val_masks = torch.from_numpy(validation["images"]), torch.from_numpy(validation["masks"])
    generator, discriminator = build_models(cfg)
    trainer = GANTrainingStep(generator, discriminator, training_config(cfg))
    for uri in remove_incomplete(run_dir):
        print(f"removed incomplete checkpoint {uri}")
    # The one checkpoint layout (lama_core/training_checkpoint.py): newest complete one that loads.
    step, resumed, warnings = resume_from_run(run_dir, trainer, 0, 1, None)
    for line in warnings:
        print(line)
    if resumed:
        # The learning rates are the config's, not the checkpoint's: a resumed run may lower them.
        for optimizer, lr in ((trainer.generator_optimizer, cfg.generator_lr),
                              (trainer.discriminator_optimizer, cfg.discriminator_lr)):
            for group in optimizer.param_groups:
                group["lr"] = lr
        print(f"resumed from {resumed} (step {step}); learning rates {cfg.generator_lr:g} / {cfg.discriminator_lr:g}")
    # A fresh crop stream per (seed, start step): a resumed run does not repeat its crops.
    rng = np.random.default_rng([cfg.seed, step])
    params = Distortions(grayscale_probability=cfg.grayscale_probability)
    cut = ((lambda im: distorted_crop(im, cfg.crop_size, rng, params)) if cfg.augmentation == "distortions"
           else (lambda im: random_crop(im, cfg.crop_size, rng)))
    sums: dict[str, float] = {}
    window, started = 0, time.perf_counter()
    metrics: dict = {}
    start_step, latest = step, ""
    while step < cfg.steps:
        for _ in range(cfg.accum_steps):
            picks = rng.integers(len(photos), size=cfg.batch_size)
            images = images_to_batch([cut(photos[i]) for i in picks])
            index = (step * cfg.accum_steps + trainer.micro_step) * cfg.batch_size
            masks = make_mask_batch(cfg.mask_kind, cfg.seed, index, cfg.batch_size, cfg.crop_size, cfg.crop_size)
            for name, value in trainer.step(images, masks).items():
                sums[name] = sums.get(name, 0.0) + value
            window += 1
        step = trainer.global_step
        is_ckpt = step % cfg.checkpoint_every == 0 or step >= cfg.steps
        if step % cfg.log_every == 0 or is_ckpt:
            elapsed = time.perf_counter() - started
            metrics = {name: round(value / window, 5) for name, value in sums.items()}
            metrics.update(step=step, start_step=start_step,
                           generator_lr=trainer.generator_optimizer.param_groups[0]["lr"],
                           images_per_s=round(window * cfg.batch_size / max(elapsed, 1e-9), 3))
            sums, window, started = {}, 0, time.perf_counter()
            if is_ckpt:
                metrics["validation_l1"] = round(trainer.evaluate_l1(val_images, val_masks), 5)
                grid = validation_grid_png(val_images.numpy(), val_masks.numpy(),
                                           validation_outputs(trainer, val_images, val_masks))
                latest = save_training_checkpoint(run_dir, trainer, cfg, grid, metrics)
                prune_checkpoints(run_dir, cfg.keep_checkpoints)
            print(json.dumps(metrics), flush=True)
    if step == start_step and resumed:
        latest = resumed  # nothing left to train: the run was already at cfg.steps
    if not latest:
        raise RuntimeError("training finished without a checkpoint")
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=1)
    unwrap(trainer.generator).eval()
    return TrainingOutcome(latest, metrics)
