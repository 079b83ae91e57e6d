"""Distributed LaMa GAN training with Ray Train (TorchTrainer, DDP over gloo or NCCL).

The driver (``run_training``) lists the training images, builds a Ray Data pipeline that
decodes them and cuts random crops, fixes a validation batch, and starts a ``TorchTrainer``
whose workers run ``train_loop``. Each worker:

- builds G and D (optionally fine-tuning from an official or our own checkpoint), wraps both
  with DDP through ``prepare_model``, and trains them with ``lama_core.training.GANTrainingStep``;
- takes its shard of the crops (``get_dataset_shard``: equal split, full batches only, so
  every rank takes the same number of steps) and draws masks on the fly, each rank its own
  index range of the seeded mask set;
- at each checkpoint, scores the whole validation batch (held-out images, never trained on:
  ``validation_input`` or the last images of ``data``; the same batch on every rank).
- reports metrics every ``log_every`` steps, and a checkpoint (rank 0) every
  ``checkpoint_every`` steps and at the end. ``ray.train.report`` is a barrier: all ranks call
  it at the same steps.

Checkpoints are ours, not Ray Train's: rank 0 writes them straight to the run folder
``output/name`` in the layout of ``lama_core.training_checkpoint`` (``checkpoint_000000120/``
named by step, ``complete.json`` written last). A checkpoint holds ``generator.safetensors``
(loadable by ``lama_core.load_generator``), ``discriminator.safetensors``,
``training_state.pt`` (both optimizers and the step counter; plain tensors, ``weights_only``
loadable), ``config.json`` and ``validation.png`` (input | mask | output | target rows).
Ray Train's own files (storage marker, snapshot) go to ``output/name/ray_train/``, outside
the ``checkpoint_*`` namespace; Ray never sees our checkpoints.

Resume: every start of the worker group (a rerun with the same ``output`` and ``name`` after
any crash, or Ray's restart after a worker failure, up to ``max_failures`` times) continues
from the newest complete checkpoint that verifies and loads; a corrupt one is skipped with a
warning naming the file (``training_checkpoint.resume_latest``). Rank 0 chooses and every
rank loads the same one. The driver removes incomplete checkpoints before starting.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from lama_core.augment import Distortions, distorted_crop, random_crop
from lama_core.checkpoint import (load_state_checked, read_checkpoint, save_discriminator,
                                  save_generator)
from lama_core.losses import loss_config
from lama_core.models import build_discriminator, build_generator, discriminator_config_from_state
from lama_core.storage import filesystem_for, join_uri, read_bytes
from lama_core.training import GANTrainingStep, TrainingConfig, make_mask_batch, unwrap
from lama_core.training_checkpoint import (TRAINING_STATE_FILE, latest_checkpoint, prune_checkpoints,
                                           remove_incomplete, resume_latest)
from lama_core.training_checkpoint import write_checkpoint as publish_checkpoint

from pipelines.records.codecs import RecordError, decode_image
from pipelines.common.configs import PRESETS, TrainConfig
from pipelines.cluster.progress import ReportLog, follow_reports, report_printer
from pipelines.records.listing import is_image_file, list_files
from pipelines.common.samples import TRAINING_PHOTOS, VALIDATION_PHOTOS, png_bytes, sample_photos

#: The metrics reported at a checkpoint's step (JSON), kept with the checkpoint.
METRICS_FILE = "metrics.json"
VALIDATION_GRID_FILE = "validation.png"
#: Ray Train's own run folder inside ``output/name`` (kept out of the ``checkpoint_*`` namespace).
RAY_TRAIN_DIR = "ray_train"
# Mask indices of the validation batch live far from the training ranges.
VALIDATION_MASK_OFFSET = 10**9


# -- data -------------------------------------------------------------------------------

def list_training_inputs(data: str, endpoint_url: str | None = None) -> tuple[str, list[str]]:
    """``("images" | "parquet", [filesystem paths])`` for the training data at ``data``.
    Raises ``FileNotFoundError`` naming ``data`` when it holds neither images nor shards."""
    fs, root = filesystem_for(data, endpoint_url)
    if not fs.exists(root):
        raise FileNotFoundError(f"training data not found: {data}")
    rel = list_files(fs, root)
    is_file = fs.isfile(root)
    paths = [root if is_file else f"{root.rstrip('/')}/{r}" for r in rel]
    shards = [p for p in paths if p.endswith(".parquet")]
    if shards:
        return "parquet", shards
    images = [p for p in paths if is_image_file(p)]
    if not images:
        raise FileNotFoundError(f"no images (png/jpg/webp) or Parquet shards under {data}")
    return "images", images


def split_held_out(cfg: TrainConfig) -> tuple[str, list[str], list[str]]:
    """``(kind, training paths, held-out paths)`` of ``cfg.input`` (``list_training_inputs``).
    Without ``validation_input`` the last ``validation_images`` images (sorted), or the last
    Parquet shard, are held out for validation and never trained on; with it nothing is.
    Raises ``ValueError`` when nothing would be left to train on."""
    kind, paths = list_training_inputs(cfg.input, cfg.endpoint_url or None)
    paths = sorted(paths)
    if cfg.validation_input:
        return kind, paths, []
    held = 1 if kind == "parquet" else min(cfg.validation_images, len(paths))
    if held >= len(paths):
        raise ValueError(f"{cfg.input} has {len(paths)} {'shards' if kind == 'parquet' else 'images'}: too few to "
                         f"hold out {held} for validation and train on the rest (give validation_input=)")
    return kind, paths[:len(paths) - held], paths[len(paths) - held:]


def decode_and_crop(batch: dict[str, np.ndarray], crop_size: int, crops_per_image: int = 1,
                    augmentation: str = "crop", grayscale_probability: float = 0.0) -> dict[str, np.ndarray]:
    """Ray Data batch function: encoded ``bytes`` column (and optional ``path``) -> ``image``
    column of uint8 ``crop x crop x 3`` training crops, ``crops_per_image`` of them per image
    (decode once, crop many: small datasets then fill an epoch with full batches instead of
    paying a pipeline restart per step). ``augmentation``: ``"crop"``
    (``lama_core.augment.random_crop``) or ``"distortions"`` (``distorted_crop``, with
    ``grayscale_probability``).

    Undecodable images are dropped and logged: a training set tolerates a few bad files, an
    inference job does not. Crops come from fresh OS entropy, so every epoch (the stream
    re-executes this stage) sees new crops; runs are therefore not bit-reproducible.
    """
    rng = np.random.default_rng()
    if augmentation == "distortions":
        params = Distortions(grayscale_probability=grayscale_probability)
        cut = lambda image: distorted_crop(image, crop_size, rng, params)  # noqa: E731
    elif augmentation == "crop":
        cut = lambda image: random_crop(image, crop_size, rng)  # noqa: E731
    else:
        raise ValueError(f"augmentation must be 'distortions' or 'crop', got {augmentation!r}")
    crops = []
    names = batch["path"] if "path" in batch else [""] * len(batch["bytes"])
    for data, name in zip(batch["bytes"], names):
        try:
            image, _ = decode_image(bytes(data), str(name))
        except RecordError as exc:
            print(f"skipping training image: {exc}")
            continue
        crops.extend(cut(image) for _ in range(crops_per_image))
    if not crops:
        return {"image": np.zeros((0, crop_size, crop_size, 3), np.uint8)}
    return {"image": np.stack(crops)}


def build_training_dataset(cfg: TrainConfig):
    """The Ray Dataset of training crops (column ``image``: uint8 ``crop x crop x 3``)."""
    import ray.data

    from pipelines.cluster.filesystems import pyarrow_filesystem

    if cfg.augmentation not in ("distortions", "crop"):
        raise ValueError(f"augmentation must be 'distortions' or 'crop', got {cfg.augmentation!r}")
    if not cfg.input:
        items = [{"bytes": png_bytes(img), "path": f"sample:{name}"}
                 for name, img in sample_photos(TRAINING_PHOTOS).items()]
        ds = ray.data.from_items(items)
    else:
        kind, paths, _ = split_held_out(cfg)
        filesystem = pyarrow_filesystem(cfg.input, cfg.endpoint_url or None)
        if kind == "parquet":
            ds = ray.data.read_parquet(paths, filesystem=filesystem, columns=["image"])
            ds = ds.rename_columns({"image": "bytes"})
        else:
            ds = ray.data.read_binary_files(paths, filesystem=filesystem, include_paths=True)
    # Half a CPU per decode task: the stage still runs when the training workers hold all
    # but half a core of a node (a hang, not an error, if the data stage gets no CPU at all).
    return ds.map_batches(decode_and_crop, fn_kwargs={"crop_size": cfg.crop_size,
                                                      "crops_per_image": cfg.crops_per_image,
                                                      "augmentation": cfg.augmentation,
                                                      "grayscale_probability": cfg.grayscale_probability},
                          batch_size=8, num_cpus=0.5)


def validation_batch(cfg: TrainConfig) -> dict[str, np.ndarray]:
    """A fixed validation batch of held-out images (never trained on): the first
    ``validation_images`` of ``validation_input``, else of the images ``split_held_out``
    keeps out of training, else (default data) ``samples.VALIDATION_PHOTOS``; centre crops,
    with masks of fixed indices. The driver builds it once and every rank scores all of it.
    ``{"images": N x 3 x S x S float32 [0,1], "masks": N x 1 x S x S float32 {0,1}}``."""
    size = cfg.crop_size
    if not cfg.input and not cfg.validation_input:
        sources = list(sample_photos(VALIDATION_PHOTOS).values())[: cfg.validation_images]
    else:
        import pyarrow.parquet as pq

        source_uri = cfg.validation_input or cfg.input
        if cfg.validation_input:
            kind, paths = list_training_inputs(cfg.validation_input, cfg.endpoint_url or None)
        else:
            kind, _, paths = split_held_out(cfg)
        fs, _ = filesystem_for(source_uri, cfg.endpoint_url or None)
        sources = []
        for path in paths:
            if len(sources) >= cfg.validation_images:
                break
            try:
                if kind == "parquet":
                    with fs.open(path, "rb") as f:
                        column = pq.read_table(f, columns=["image"]).column("image").to_pylist()
                    for data in column[: cfg.validation_images - len(sources)]:
                        sources.append(decode_image(data, path)[0])
                else:
                    with fs.open(path, "rb") as f:
                        sources.append(decode_image(f.read(), path)[0])
            except RecordError:
                continue
    if not sources:
        raise FileNotFoundError("no decodable validation image in "
                                f"{cfg.validation_input or cfg.input or 'the sample photos'}")
    rng = np.random.default_rng(cfg.seed)
    crops = []
    for image in sources:
        h, w = image.shape[:2]
        if min(h, w) >= size:  # centre crop; random_crop handles upscaling of small ones
            y, x = (h - size) // 2, (w - size) // 2
            crops.append(np.ascontiguousarray(image[y:y + size, x:x + size]))
        else:
            crops.append(random_crop(image, size, rng, flip=False))
    images = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    masks = make_mask_batch(cfg.mask_kind, cfg.seed, VALIDATION_MASK_OFFSET, len(crops), size, size).numpy()
    return {"images": images, "masks": masks}


# -- checkpoints ------------------------------------------------------------------------

def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes and bytes): equal digests mean
    identical weights and buffers."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def validation_grid_png(images: np.ndarray, masks: np.ndarray, outputs: np.ndarray) -> bytes:
    """A PNG with one row per validation image: input (holes grey) | mask | output | target.
    Arrays as in ``validation_batch``; ``outputs`` ``N x 3 x S x S`` in [0, 1]."""
    from PIL import Image

    rows = []
    for img, mask, out in zip(images, masks, outputs):
        hole = mask[0] > 0
        masked = img.copy()
        masked[:, hole] = 0.5
        panels = [masked, np.repeat(mask, 3, 0), out, img]
        rows.append(np.concatenate([p.transpose(1, 2, 0) for p in panels], axis=1))
    grid = np.clip(np.concatenate(rows, axis=0) * 255 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return buf.getvalue()


def write_checkpoint_files(directory: str, trainer: GANTrainingStep, cfg: TrainConfig, grid_png: bytes) -> None:
    """Write the files of a checkpoint (see module docstring) for the trainer's current state
    into the local folder ``directory`` (``save_training_checkpoint`` publishes them)."""
    state = trainer.state_dict()
    save_generator(unwrap(trainer.generator), directory, metadata={"step": str(state["step"])})
    save_discriminator(unwrap(trainer.discriminator), directory)
    torch.save({k: state[k] for k in ("generator_optimizer", "discriminator_optimizer", "step")},
               os.path.join(directory, TRAINING_STATE_FILE))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(asdict(cfg) if not isinstance(cfg, dict) else cfg, f, indent=1)
    with open(os.path.join(directory, VALIDATION_GRID_FILE), "wb") as f:
        f.write(grid_png)


def save_training_checkpoint(run: str, trainer: GANTrainingStep, cfg: TrainConfig, grid_png: bytes,
                             metrics: dict[str, Any], endpoint_url: str | None = None) -> str:
    """Write the trainer's current state (and ``metrics``, JSON-serialisable, as
    ``metrics.json``) as the checkpoint of its step in the run folder ``run`` (local or
    URI), published with ``complete.json`` last; returns its URI."""
    with tempfile.TemporaryDirectory() as directory:
        write_checkpoint_files(directory, trainer, cfg, grid_png)
        files = {}
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                files[name] = f.read()
    files[METRICS_FILE] = json.dumps(metrics, indent=1).encode()
    return publish_checkpoint(run, trainer.global_step, files, endpoint_url)


def restore_checkpoint(directory: str, trainer: GANTrainingStep, endpoint_url: str | None = None) -> int:
    """Load a checkpoint folder (local path or URI) into the trainer; returns the step it
    was taken at. Raises (``CheckpointError``, ``FileNotFoundError``, ...) naming the file
    when a file is missing or unreadable; the trainer is left unchanged then."""
    contents = read_checkpoint(directory, endpoint_url=endpoint_url)
    state_uri = join_uri(directory, TRAINING_STATE_FILE)
    try:
        extra = torch.load(io.BytesIO(read_bytes(state_uri, endpoint_url)), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load raises several types for damaged files
        raise ValueError(f"cannot read {state_uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    device = trainer.device
    trainer.load_state_dict({
        "generator": {k: v.to(device) for k, v in contents.generator_state.items()},
        "discriminator": {k: v.to(device) for k, v in (contents.discriminator_state or {}).items()},
        "generator_optimizer": extra["generator_optimizer"],
        "discriminator_optimizer": extra["discriminator_optimizer"],
        "step": extra["step"],
    })
    return int(extra["step"])


# -- the worker loop --------------------------------------------------------------------

LOSS_WEIGHT_KEYS = ("l1_weight_known", "l1_weight_missing", "adversarial_weight", "feature_matching_weight",
                    "hrf_weight", "r1_gamma")


def training_config(cfg: TrainConfig) -> TrainingConfig:
    """The ``TrainingConfig`` of a job config: the named loss recipe, with the weight keys
    that are set overriding it."""
    overrides = {key: float(getattr(cfg, key)) for key in LOSS_WEIGHT_KEYS if getattr(cfg, key) is not None}
    losses = loss_config(cfg.recipe, **overrides)
    return TrainingConfig(losses=losses, generator_lr=cfg.generator_lr, discriminator_lr=cfg.discriminator_lr,
                          accum_steps=cfg.accum_steps, precision=cfg.precision, mask_kind=cfg.mask_kind,
                          perceptual_weights=cfg.perceptual_weights or cfg.weights_dir or None,
                          gradient_clip_norm=cfg.gradient_clip_norm if cfg.gradient_clip_norm > 0 else None)


def build_models(cfg: TrainConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D for ``cfg.model``: a preset name builds fresh ones; a checkpoint URI builds G
    from the checkpoint's own config and D from its discriminator weights (their shapes
    give its config; big-lama's when the checkpoint has none) and loads both."""
    if cfg.model in PRESETS:
        return build_generator(cfg.model), build_discriminator(cfg.model)
    contents = read_checkpoint(cfg.model, endpoint_url=cfg.endpoint_url or None)
    generator = build_generator(contents.generator_config)
    load_state_checked(generator, contents.generator_state, cfg.model, "generator")
    if not contents.discriminator_state:
        return generator, build_discriminator("big-lama")
    discriminator = build_discriminator(discriminator_config_from_state(contents.discriminator_state))
    load_state_checked(discriminator, contents.discriminator_state, cfg.model, "discriminator")
    return generator, discriminator


def resume_from_run(run: str, trainer: GANTrainingStep, rank: int, world: int, endpoint_url: str | None,
            ) -> tuple[int, str, list[str]]:
    """Load the newest usable checkpoint of ``run`` into ``trainer`` on every rank:
    ``(start step, checkpoint URI or "", warnings about skipped checkpoints)``. Rank 0
    chooses (``resume_latest``: corrupt ones are skipped with a warning naming the file)
    and tells the others, so all ranks start from the same checkpoint. Raises when
    checkpoints exist but none loads (starting over would silently discard the run)."""
    chosen: list[Any] = [None, []]
    step = 0
    if rank == 0:
        ckpt, step, warnings = resume_latest(run, lambda c: restore_checkpoint(c.uri, trainer, endpoint_url),
                                             endpoint_url)
        if ckpt is None and warnings:
            raise RuntimeError(f"no checkpoint of {run} could be loaded; {warnings[0].removeprefix('warning: ')} "
                               "(remove the damaged checkpoints to start over, or use another name=)")
        chosen = [ckpt.uri if ckpt else None, warnings]
    if world > 1 and torch.distributed.is_initialized():
        # device: NCCL sends only CUDA tensors; gloo's workers train on the CPU.
        torch.distributed.broadcast_object_list(chosen, src=0, device=torch.device(trainer.device))
    uri, warnings = chosen
    if uri is None:
        return 0, "", warnings
    if rank != 0:
        step = restore_checkpoint(uri, trainer, endpoint_url)
    return step, uri, warnings


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry point. ``loop_config``: ``{"cfg": TrainConfig as dict,
    "validation": validation_batch(...), "run": the run folder (absolute path or URI)}``."""
    import ray.train
    from ray.train.torch import prepare_model  # also moves each model to this worker's device

    cfg = TrainConfig(**loop_config["cfg"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(cfg.seed * 1000 + rank)

    generator, discriminator = build_models(cfg)
    if (cfg.gpus_per_worker or 0) > 0 and cfg.sync_batchnorm and world > 1:
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    generator, discriminator = prepare_model(generator), prepare_model(discriminator)
    trainer = GANTrainingStep(generator, discriminator, training_config(cfg))

    run, endpoint = loop_config["run"], cfg.endpoint_url or None
    start_step, resumed_from, resume_warnings = resume_from_run(run, trainer, rank, world, endpoint)
    # Reported, so a resume can be checked against the checkpoint it came from.
    start_digest = state_digest(unwrap(trainer.generator))
    val_images = torch.from_numpy(loop_config["validation"]["images"])
    val_masks = torch.from_numpy(loop_config["validation"]["masks"])

    shard = ray.train.get_dataset_shard("train")
    # Metrics are means over the micro-batches since the last report.
    step, window_start, window_images, window_batches = start_step, time.perf_counter(), 0, 0
    sums: dict[str, float] = {}
    while step < cfg.steps:
        batches_this_epoch = 0
        for batch in shard.iter_torch_batches(batch_size=cfg.batch_size, drop_last=True):
            batches_this_epoch += 1
            images = batch["image"].permute(0, 3, 1, 2).float().div_(255.0)
            masks = make_mask_batch(cfg.mask_kind, cfg.seed, (trainer.micro_step + step * cfg.accum_steps)
                                    * world * cfg.batch_size + rank * cfg.batch_size, images.shape[0],
                                    images.shape[2], images.shape[3])
            parts = trainer.step(images, masks)
            window_images += images.shape[0] * world
            window_batches += 1
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
            if trainer.micro_step != 0:
                continue  # inside an accumulation window
            step = trainer.global_step
            if cfg.fail_at_step == step and not resumed_from and rank == world - 1:
                raise RuntimeError(f"fail_at_step={step}: simulated worker failure (testing aid)")
            is_ckpt = step % cfg.checkpoint_every == 0 or step >= cfg.steps
            if step % cfg.log_every == 0 or is_ckpt:
                elapsed = time.perf_counter() - window_start
                metrics = {name: value / window_batches for name, value in sums.items()}
                metrics.update(step=step, images_per_s=window_images / max(elapsed, 1e-9),
                               generator_lr=trainer.generator_optimizer.param_groups[0]["lr"],
                               discriminator_lr=trainer.discriminator_optimizer.param_groups[0]["lr"])
                metrics.update(start_step=start_step, start_generator_digest=start_digest,
                               resumed_from=resumed_from, resume_warnings=resume_warnings)
                sums, window_start, window_images, window_batches = {}, time.perf_counter(), 0, 0
                if is_ckpt:
                    metrics["validation_l1"] = trainer.evaluate_l1(val_images, val_masks)
                    if rank == 0:  # published before the report: a crash after it loses nothing
                        outputs = validation_outputs(trainer, val_images, val_masks)
                        grid = validation_grid_png(val_images.numpy(), val_masks.numpy(), outputs)
                        metrics["checkpoint"] = save_training_checkpoint(run, trainer, cfg, grid, metrics, endpoint)
                        prune_checkpoints(run, cfg.keep_checkpoints, endpoint)
                ray.train.report(metrics)
            if step >= cfg.steps:
                break
        if batches_this_epoch == 0:
            raise RuntimeError(f"worker {rank} received no full batch of {cfg.batch_size}: the training set is "
                               f"smaller than batch_size x num_workers ({cfg.batch_size} x {world})")


@torch.no_grad()
def validation_outputs(trainer: GANTrainingStep, images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    generator = unwrap(trainer.generator)
    was_training = generator.training
    generator.eval()
    try:
        out = generator(torch.cat([images * (1 - masks), masks], 1).to(trainer.device)).float().cpu()
    finally:
        generator.train(was_training)
    return (masks * out + (1 - masks) * images).numpy()


# -- the driver -------------------------------------------------------------------------

@dataclass
class TrainingOutcome:
    """What a finished run left: the latest complete checkpoint's URI and the metrics
    reported at its step (``metrics.json``; with ``start_step``, ``resumed_from`` and
    ``resume_warnings`` of the attempt that wrote it)."""

    checkpoint: str
    metrics: dict[str, Any]


def run_training(cfg: TrainConfig) -> TrainingOutcome:
    """Train per ``cfg`` on the Ray cluster this process is connected to (see
    ``pipelines.cluster.ray_setup.init_ray``). Returns the latest complete checkpoint (a directory
    URI that ``lama_core.load_generator`` accepts) and its metrics. Raises ``RuntimeError``
    whose first line names the failed worker's error when training failed for good."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    from pipelines.cluster.filesystems import storage_location
    from pipelines.common.storage import absolute_uri

    if problems := cfg.problems():
        raise ValueError("bad config: " + "; ".join(problems))
    import ray

    if cfg.gpus_per_worker is None:  # auto: a GPU per worker when the cluster has GPUs
        cfg = replace(cfg, gpus_per_worker=1.0 if ray.cluster_resources().get("GPU", 0) else 0.0)
    use_gpu = cfg.gpus_per_worker > 0

    total, needed = ray.cluster_resources().get("CPU", 0), cfg.num_workers * cfg.cpus_per_worker
    spare = total - needed
    # Only when the workers fit now: an autoscaling cluster adds nodes for them later.
    if total >= needed and spare < 0.5:
        raise ValueError(f"num_workers x cpus_per_worker = {cfg.num_workers} x {cfg.cpus_per_worker} leaves "
                         f"{spare:g} of the cluster's CPUs for the data stage; it needs at least 0.5 "
                         "(lower cpus_per_worker)")
    dataset = build_training_dataset(cfg)
    validation = validation_batch(cfg)
    endpoint = cfg.endpoint_url or None
    run = join_uri(absolute_uri(cfg.output), cfg.name)  # absolute: workers do not share our cwd
    # No writer is active on the run now: what a crash left half-written goes.
    for uri in remove_incomplete(run, endpoint):
        print(f"removed incomplete checkpoint {uri}")
    storage_path, storage_fs = storage_location(run, endpoint)
    reports = ReportLog.remote()  # one console line per report, printed by the driver
    trainer = TorchTrainer(
        train_loop,
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
        with follow_reports(reports):
            result = trainer.fit()
    except TrainingFailedError as exc:  # raised once max_failures restarts are used up
        raise RuntimeError(f"training failed: {failure_cause(exc)}") from exc
    if result.error is not None:
        raise RuntimeError(f"training failed: {failure_cause(result.error)}")
    latest = latest_checkpoint(run, endpoint)
    if latest is None:
        raise RuntimeError(f"training finished without a complete checkpoint in {run}")
    # Ray's result carries metrics only for checkpoints reported to Ray, and we report none:
    # the metrics of the step the latest checkpoint was taken at are stored with it.
    metrics = json.loads(read_bytes(join_uri(latest.uri, METRICS_FILE), endpoint))
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
