"""Distributed LaMa GAN training with Ray Train (TorchTrainer, DDP over gloo or NCCL).

The driver (``run_training``) lists the training images, builds a Ray Data pipeline that
decodes them and cuts random crops (``pipelines.train.data``), fixes a validation batch, and
starts a ``TorchTrainer`` whose workers run ``train_worker``. Each worker:

- builds G and D (optionally fine-tuning from an official or our own checkpoint), wraps both
  with DDP through ``prepare_model``, and trains them with ``lama_core.training.GANTrainingStep``
  in the one training loop (``pipelines.train.loop.run_training_loop``);
- takes its shard of the crops (``get_dataset_shard``: equal split, full batches only, so
  every rank takes the same number of steps); masks are drawn on the fly, each rank its own
  index range of the seeded mask set;
- reports through ``ray.train.report`` (a barrier: all ranks call it at the same steps);
  rank 0 writes the checkpoints (``pipelines.train.checkpoints``) before its report.

Checkpoints are ours, not Ray Train's: rank 0 writes them straight to the run folder
``output/name``. Ray Train's own files (storage marker, snapshot) go to
``output/name/ray_train/``, outside the ``checkpoint_*`` namespace; Ray never sees our
checkpoints.

Resume: every start of the worker group (a rerun with the same ``output`` and ``name`` after
any crash, or Ray's restart after a worker failure, up to ``max_failures`` times) continues
from the newest complete checkpoint that verifies and loads; a corrupt one is skipped with a
warning naming the file (``lama_core.training_checkpoint.resume_latest``). Rank 0 chooses and
every rank loads the same one. The driver removes incomplete checkpoints before starting.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import torch

from lama_core.storage import join_uri, read_bytes
from lama_core.training import GANTrainingStep, unwrap
from lama_core.training_checkpoint import latest_checkpoint, remove_incomplete

from pipelines.cluster.actor_pool import check_cpu_headroom, resolve_gpus
from pipelines.common.config_kit import check_config
from pipelines.common.errors import JobError
from pipelines.train.checkpoints import METRICS_FILE, resume_from_run, state_digest
from pipelines.train.config import TrainConfig
from pipelines.train.data import build_training_dataset, validation_batch
from pipelines.train.loop import (LoopCallbacks, LoopRun, TrainingOutcome, build_models, run_training_loop,
                                  training_config, with_perceptual_weights)

#: Ray Train's own run folder inside ``output/name`` (kept out of the ``checkpoint_*`` namespace).
RAY_TRAIN_DIR = "ray_train"


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry point. ``loop_config``: ``{"cfg": TrainConfig as dict,
    "validation": validation_batch(...), "run": the run folder (absolute path or URI)}``."""
    import ray.train
    from ray.train.torch import prepare_model  # also moves each model to this worker's device

    cfg = TrainConfig(**loop_config["cfg"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(cfg.seed * 1000 + rank)

    generator, discriminator = build_models(cfg.model, cfg.endpoint_url)
    if (cfg.gpus_per_worker or 0) > 0 and cfg.sync_batchnorm and world > 1:
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    generator, discriminator = prepare_model(generator), prepare_model(discriminator)
    trainer = GANTrainingStep(generator, discriminator, training_config(cfg))

    run = loop_config["run"]
    start_step, resumed_from, resume_warnings = resume_from_run(run, trainer, rank, world, cfg.endpoint_url)
    where = LoopRun(run, {name: torch.from_numpy(a) for name, a in loop_config["validation"].items()}, rank, world,
                    start_step, resumed_from, resume_warnings, cfg.endpoint_url)
    shard = ray.train.get_dataset_shard("train")

    def epoch():
        for batch in shard.iter_torch_batches(batch_size=cfg.batch_size, drop_last=True):
            yield batch["image"].permute(0, 3, 1, 2).float().div_(255.0)

    def after_step(step: int) -> None:
        if cfg.fail_at_step == step and not resumed_from and rank == world - 1:
            raise RuntimeError(f"fail_at_step={step}: simulated worker failure (testing aid)")

    # Reported, so a resume can be checked against the checkpoint it came from.
    digest = state_digest(unwrap(trainer.generator))
    run_training_loop(cfg, trainer, where, LoopCallbacks(epoch, ray.train.report, after_step), digest)


def run_training(cfg: TrainConfig) -> TrainingOutcome:
    """Train per ``cfg`` (checked again: ``check_config``; the perceptual weights resolved:
    ``with_perceptual_weights``) on the Ray cluster in ``RAY_ADDRESS`` or a local one
    (``pipelines.cluster.ray_setup.init_ray``). Returns the latest complete
    checkpoint (a directory URI that ``lama_core.load_generator`` accepts) and its metrics.
    Raises ``JobError`` with one line: a plan that cannot run, data that cannot be read,
    or training that failed for good (naming the failed worker's error)."""
    check_config(cfg)
    cfg = with_perceptual_weights(cfg, cfg.endpoint_url)  # before Ray: a missing file fails at once
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    from pipelines.cluster.filesystems import storage_location
    from pipelines.cluster.progress import ReportLog, SkippedInputs, follow_reports, report_printer
    from pipelines.cluster.ray_setup import init_ray
    from pipelines.common.storage import absolute_uri

    init_ray(verbose=cfg.verbose)
    resources = ray.cluster_resources()
    cfg = replace(cfg, gpus_per_worker=resolve_gpus(cfg.gpus_per_worker, resources.get("GPU", 0.0)))
    use_gpu = cfg.gpus_per_worker > 0
    check_cpu_headroom(cfg.num_workers, cfg.cpus_per_worker, resources.get("CPU", 0.0), fixed_cluster=False)
    skipped = SkippedInputs.remote()  # images the decode tasks skip, named on this console
    try:
        dataset = build_training_dataset(cfg, skipped)
        validation = validation_batch(cfg, cfg.endpoint_url)
    except (FileNotFoundError, ValueError, PermissionError) as exc:
        raise JobError(str(exc)) from exc
    run = join_uri(absolute_uri(cfg.output), cfg.name)  # absolute: workers do not share our cwd
    # No writer is active on the run now: what a crash left half-written goes.
    for uri in remove_incomplete(run, cfg.endpoint_url):
        print(f"removed incomplete checkpoint {uri}")
    storage_path, storage_fs = storage_location(run, cfg.endpoint_url)
    reports = ReportLog.remote()  # one console line per report, printed by the driver
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": asdict(cfg), "validation": validation, "run": run},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker,
                                                           **({"GPU": cfg.gpus_per_worker} if use_gpu else {})}),
        run_config=RunConfig(name=RAY_TRAIN_DIR, storage_path=storage_path, storage_filesystem=storage_fs,
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             callbacks=[report_printer(reports, cfg.steps)]),
        datasets={"train": dataset},
    )
    try:
        with follow_reports(reports, skipped=skipped):
            result = trainer.fit()
    except TrainingFailedError as exc:  # raised once max_failures restarts are used up
        raise JobError(f"training failed: {failure_cause(exc)}") from exc
    if result.error is not None:
        raise JobError(f"training failed: {failure_cause(result.error)}")
    latest = latest_checkpoint(run, cfg.endpoint_url)
    if latest is None:
        raise JobError(f"training finished without a complete checkpoint in {run}")
    # Ray's result carries metrics only for checkpoints reported to Ray, and we report none:
    # the metrics of the step the latest checkpoint was taken at are stored with it.
    metrics = json.loads(read_bytes(join_uri(latest.uri, METRICS_FILE), cfg.endpoint_url))
    return TrainingOutcome(latest.uri, {**dict(result.metrics or {}), **metrics})


def failure_cause(exc: BaseException) -> str:
    """One line naming why training failed: the first failed worker's rank and its error
    (Ray's ``WorkerGroupError`` puts the workers' tracebacks after a generic first line)."""
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        rank, error = min(failures.items(), key=lambda item: item[0])
        return f"worker rank {rank}: {_error_line(error)}"
    return _error_line(getattr(exc, "controller_failure", None) or exc)


def _error_line(error: BaseException) -> str:
    """``Type: message`` of the innermost error, first line of the message only."""
    cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError wraps the user's error
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # A traceback text ends with the "Type: message" line; a plain message starts with it.
    line = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else "")
    return line if line.startswith(type(error).__name__) else f"{type(error).__name__}: {line}"
