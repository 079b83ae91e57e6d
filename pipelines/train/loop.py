"""The one training loop: both trainers (the Ray Train worker, ``pipelines.train.ray_job``,
and the single-process one, ``pipelines.train.local``) build a ``GANTrainingStep`` and run
``run_training_loop``, which steps, averages the losses, scores the validation batch,
writes checkpoints and reports, and calls back for what differs between them: where the
image batches come from, where a report goes, and (Ray's testing aid) what happens after
each optimizer step.

The loss arithmetic lives in ``lama_core.training``; this module schedules it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import torch

from lama_core.checkpoint import load_state_checked, read_checkpoint
from lama_core.losses import loss_config
from lama_core.models import build_discriminator, build_generator, discriminator_config_from_state
from lama_core.training import GANTrainingStep, TrainingConfig, make_mask_batch, unwrap
from lama_core.training_checkpoint import prune_checkpoints

from pipelines.common.errors import ConfigError
from pipelines.train.checkpoints import save_training_checkpoint, validation_grid_png
from pipelines.train.config import LOSS_WEIGHT_KEYS, TrainingOptions

T = TypeVar("T", bound=TrainingOptions)


def training_config(cfg: TrainingOptions) -> TrainingConfig:
    """The ``TrainingConfig`` of a job config: the named loss recipe, with the weight keys
    that are set overriding it; the HRF encoder weights are ``cfg.perceptual_weights`` as
    ``with_perceptual_weights`` resolved them (empty: no HRF loss)."""
    overrides = {key: float(getattr(cfg, key)) for key in LOSS_WEIGHT_KEYS if getattr(cfg, key) is not None}
    losses = loss_config(cfg.recipe, **overrides)
    return TrainingConfig(losses=losses, generator_lr=cfg.generator_lr, discriminator_lr=cfg.discriminator_lr,
                          accum_steps=cfg.accum_steps, precision=cfg.precision, mask_kind=cfg.mask_kind,
                          perceptual_weights=cfg.perceptual_weights or None,
                          gradient_clip_norm=cfg.gradient_clip_norm if cfg.gradient_clip_norm > 0 else None)


def with_perceptual_weights(cfg: T, endpoint_url: str | None = None) -> T:
    """``cfg`` with ``perceptual_weights`` resolved, once, on the driver: empty when the
    recipe's HRF weight is 0 (``no-perceptual``), else the encoder file (the given one, or
    ``ENCODER_FILE`` under ``weights_dir``, default ``$TORCH_HOME/hub/checkpoints``).
    Raises ``ConfigError`` (one line: the file it looked for, and the two ways on) when that
    file is missing: the official recipe without it silently learns one mean colour."""
    from lama_core.metrics.weights import default_weights_dir
    from lama_core.perceptual import ENCODER_FILE, encoder_weights_uri
    from lama_core.storage import filesystem_for, join_uri

    overrides = {key: float(getattr(cfg, key)) for key in LOSS_WEIGHT_KEYS if getattr(cfg, key) is not None}
    if loss_config(cfg.recipe, **overrides).hrf_weight <= 0:
        return replace(cfg, perceptual_weights="")
    given = cfg.perceptual_weights or cfg.weights_dir or default_weights_dir()
    uri = encoder_weights_uri(given, endpoint_url)
    try:
        fs, path = filesystem_for(uri, endpoint_url)
        found = fs.isfile(path)
    except Exception:  # noqa: BLE001 - unreachable storage reads as missing, with the URI named
        found = False
    if not found:
        expected = uri if cfg.perceptual_weights or uri.endswith(".pth") else join_uri(given, ENCODER_FILE)
        raise ConfigError(f"recipe={cfg.recipe} trains the hole with the HRF perceptual loss, whose ADE20k encoder "
                          f"weights are missing: {expected} not found; pass weights_dir=FOLDER (holding "
                          f"{ENCODER_FILE}) or perceptual_weights=FILE, or train with recipe=no-perceptual")
    return replace(cfg, perceptual_weights=uri)


def build_models(model: str, endpoint_url: str | None = None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D for ``model``: a preset name builds fresh ones; a checkpoint URI builds G from
    the checkpoint's own config and D from its discriminator weights (their shapes give its
    config; big-lama's when the checkpoint has none) and loads both."""
    from lama_core.choices import PRESETS

    if model in PRESETS:
        return build_generator(model), build_discriminator(model)
    contents = read_checkpoint(model, endpoint_url=endpoint_url)
    generator = build_generator(contents.generator_config)
    load_state_checked(generator, contents.generator_state, model, "generator")
    if not contents.discriminator_state:
        return generator, build_discriminator("big-lama")
    discriminator = build_discriminator(discriminator_config_from_state(contents.discriminator_state))
    load_state_checked(discriminator, contents.discriminator_state, model, "discriminator")
    return generator, discriminator


@torch.no_grad()
def validation_outputs(trainer: GANTrainingStep, images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """The composited generator outputs of a validation batch (``images`` float ``N x 3 x S x S``
    in [0, 1], ``masks`` ``N x 1 x S x S`` in {0, 1}): float32 ``N x 3 x S x S`` numpy, with
    the generator in eval mode for the call only."""
    generator = unwrap(trainer.generator)
    was_training = generator.training
    generator.eval()
    try:
        out = generator(torch.cat([images * (1 - masks), masks], 1).to(trainer.device)).float().cpu()
    finally:
        generator.train(was_training)
    return (masks * out + (1 - masks) * images).numpy()


@dataclass
class TrainingOutcome:
    """What a finished run left: the latest complete checkpoint's URI and the metrics
    reported at its step (with ``start_step``, ``resumed_from`` and ``resume_warnings`` of
    the attempt that wrote it)."""

    checkpoint: str
    metrics: dict[str, Any]

    def summary(self) -> str:
        """The two lines a trainer prints last; the second names the checkpoint."""
        m = self.metrics
        start = f"from {m['resumed_from']}" if m.get("resumed_from") else "from scratch"
        return (f"trained {start} (step {m.get('start_step', '?')}) to step {m.get('step', '?')}; "
                f"validation L1 {m.get('validation_l1', float('nan')):.4f}\nlatest checkpoint: {self.checkpoint}")


@dataclass
class LoopRun:
    """Where a loop runs and where it started: ``run`` (the run folder, local or URI),
    this worker's ``rank`` of ``world``, the ``start_step`` resumed from (``resumed_from``:
    that checkpoint's URI, ``resume_warnings``: checkpoints skipped on the way), and the
    fixed ``validation`` batch (``images`` float ``N x 3 x S x S`` in [0, 1], ``masks``
    ``N x 1 x S x S`` in {0, 1})."""

    run: str
    validation: dict[str, torch.Tensor]
    rank: int = 0
    world: int = 1
    start_step: int = 0
    resumed_from: str = ""
    resume_warnings: list[str] = field(default_factory=list)
    endpoint_url: str | None = None


@dataclass
class LoopCallbacks:
    """What differs between the trainers.

    ``epoch()``: one pass over this worker's data, as float ``N x 3 x S x S`` image batches in
    [0, 1] (the loop asks for another until it reaches ``steps``; a pass without a batch is
    an error). ``report(metrics)``: every ``log_every`` steps and at each checkpoint, on every
    rank (under Ray a barrier). ``after_step(step)``: after each optimizer step (Ray's
    simulated-failure aid), optional."""

    epoch: Callable[[], Iterable[torch.Tensor]]
    report: Callable[[dict[str, Any]], None]
    after_step: Callable[[int], None] | None = None


def run_training_loop(cfg: TrainingOptions, trainer: GANTrainingStep, where: LoopRun,
                      callbacks: LoopCallbacks, start_digest: str = "") -> dict[str, Any]:
    """Train ``trainer`` from ``where.start_step`` to ``cfg.steps`` and return the metrics of
    the last report (``{}`` when there was nothing left to train).

    Each step takes ``cfg.accum_steps`` micro-batches; a micro-batch's masks are drawn from
    ``cfg.mask_kind`` with ``cfg.seed`` at indices that no other rank or step uses. Metrics
    are the mean losses over the micro-batches since the last report, with ``step``,
    ``images_per_s`` (all ranks), both learning rates and where the run started. At a
    checkpoint step (every ``cfg.checkpoint_every`` and the last), the validation L1 is
    added and rank 0 writes the checkpoint (``metrics["checkpoint"]``: its URI) and prunes
    old ones before the report: a crash after it loses nothing."""
    val_images, val_masks = where.validation["images"], where.validation["masks"]
    step, world, rank, batch = where.start_step, where.world, where.rank, cfg.batch_size
    sums: dict[str, float] = {}
    window_images = window_batches = 0
    window_start = time.perf_counter()
    metrics: dict[str, Any] = {}
    while step < cfg.steps:
        batches_this_epoch = 0
        for images in callbacks.epoch():
            batches_this_epoch += 1
            index = ((step * cfg.accum_steps + trainer.micro_step) * world + rank) * batch
            masks = make_mask_batch(cfg.mask_kind, cfg.seed, index, images.shape[0], images.shape[2], images.shape[3])
            for name, value in trainer.step(images, masks).items():
                sums[name] = sums.get(name, 0.0) + value
            window_images += images.shape[0] * world
            window_batches += 1
            if trainer.micro_step != 0:
                continue  # inside an accumulation window
            step = trainer.global_step
            if callbacks.after_step is not None:
                callbacks.after_step(step)
            is_checkpoint = step % cfg.checkpoint_every == 0 or step >= cfg.steps
            if step % cfg.log_every == 0 or is_checkpoint:
                elapsed = time.perf_counter() - window_start
                metrics = {name: value / window_batches for name, value in sums.items()}
                metrics.update(step=step, images_per_s=window_images / max(elapsed, 1e-9),
                               generator_lr=trainer.generator_optimizer.param_groups[0]["lr"],
                               discriminator_lr=trainer.discriminator_optimizer.param_groups[0]["lr"],
                               start_step=where.start_step, start_generator_digest=start_digest,
                               resumed_from=where.resumed_from, resume_warnings=where.resume_warnings)
                sums, window_images, window_batches, window_start = {}, 0, 0, time.perf_counter()
                if is_checkpoint:
                    metrics["validation_l1"] = trainer.evaluate_l1(val_images, val_masks)
                    if rank == 0:
                        grid = validation_grid_png(val_images.numpy(), val_masks.numpy(),
                                                   validation_outputs(trainer, val_images, val_masks))
                        metrics["checkpoint"] = save_training_checkpoint(where.run, trainer, cfg, grid, metrics,
                                                                         where.endpoint_url)
                        prune_checkpoints(where.run, cfg.keep_checkpoints, where.endpoint_url)
                callbacks.report(metrics)
            if step >= cfg.steps:
                break
        if batches_this_epoch == 0:
            raise RuntimeError(f"worker {rank} received no full batch of {batch}: the training set is "
                               f"smaller than batch_size x workers ({batch} x {world})")
    return metrics
