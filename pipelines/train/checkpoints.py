"""The checkpoints of a training run, written and read the same way by both trainers.

A checkpoint is a folder of the run (``output/name/checkpoint_000000120/``, named by step,
``complete.json`` written last: ``lama_core.training_checkpoint``) holding
``generator.safetensors`` (loadable by ``lama_core.load_generator``),
``discriminator.safetensors``, ``training_state.pt`` (both optimizers and the step; plain
tensors, ``weights_only`` loadable), ``config.json``, ``metrics.json`` (the metrics reported
at its step) and ``validation.png`` (input | mask | output | target rows).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from lama_core.checkpoint import read_checkpoint, save_discriminator, save_generator
from lama_core.storage import join_uri, read_bytes
from lama_core.training import GANTrainingStep, unwrap
from lama_core.training_checkpoint import TRAINING_STATE_FILE, resume_latest
from lama_core.training_checkpoint import write_checkpoint as publish_checkpoint

from pipelines.train.config import TrainingOptions

#: The metrics reported at a checkpoint's step (JSON), kept with the checkpoint.
METRICS_FILE = "metrics.json"
VALIDATION_GRID_FILE = "validation.png"


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
    ``images`` float ``N x 3 x S x S`` in [0, 1], ``masks`` ``N x 1 x S x S`` in {0, 1},
    ``outputs`` ``N x 3 x S x S`` in [0, 1]."""
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


def write_checkpoint_files(directory: str, trainer: GANTrainingStep, cfg: TrainingOptions, grid_png: bytes) -> None:
    """Write the files of a checkpoint (see module docstring) for the trainer's current state
    into the local folder ``directory`` (``save_training_checkpoint`` publishes them)."""
    state = trainer.state_dict()
    save_generator(unwrap(trainer.generator), directory, metadata={"step": str(state["step"])})
    save_discriminator(unwrap(trainer.discriminator), directory)
    torch.save({k: state[k] for k in ("generator_optimizer", "discriminator_optimizer", "step")},
               os.path.join(directory, TRAINING_STATE_FILE))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=1)
    with open(os.path.join(directory, VALIDATION_GRID_FILE), "wb") as f:
        f.write(grid_png)


def save_training_checkpoint(run: str, trainer: GANTrainingStep, cfg: TrainingOptions, grid_png: bytes,
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
    was taken at. The optimizers keep the learning rates of the trainer's own config (a
    resumed run may lower them: training in phases). Raises (``CheckpointError``,
    ``FileNotFoundError``, ...) naming the file when a file is missing or unreadable; the
    trainer is left unchanged then."""
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
    for optimizer, lr in ((trainer.generator_optimizer, trainer.config.generator_lr),
                          (trainer.discriminator_optimizer, trainer.config.discriminator_lr)):
        for group in optimizer.param_groups:
            group["lr"] = lr
    return int(extra["step"])


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
