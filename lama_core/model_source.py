"""Where a generator comes from, and the id results name it by.

``model`` is either a checkpoint URI that ``lama_core.load_generator`` reads (the official
``big-lama`` folder, ``best.ckpt``, ``generator.safetensors``, a training checkpoint) or a
preset name (``lama_core.choices.PRESETS``), whose weights are random, drawn with a seed.
Every job and the exporter resolve and name models through these two functions, so a
record, an ONNX file's metadata and an evaluation row carry the same id for the same weights.
"""
from __future__ import annotations

import hashlib

import torch

from .choices import PRESETS


def generator_for(model: str, seed: int = 0, endpoint_url: str | None = None) -> torch.nn.Module:
    """The eval-mode generator ``model`` names: a preset (weights drawn with
    ``torch.manual_seed(seed)``, without touching the caller's random state) or a checkpoint
    URI. Raises ``FileNotFoundError`` / ``CheckpointError`` for a missing or incompatible one."""
    from .checkpoint import load_generator
    from .models import build_generator

    if model in PRESETS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_generator(model).eval()
    return load_generator(model, endpoint_url=endpoint_url)


def model_id(model: str, generator: torch.nn.Module, seed: int = 0) -> str:
    """``preset:NAME:random-seed-S`` for a preset, else ``URI@sha256:`` + 12 hex digits of a
    hash over the sorted state dict (the same weights give the same id in any file format)."""
    if model in PRESETS:
        return f"preset:{model}:random-seed-{seed}"
    digest = hashlib.sha256()
    for key, value in sorted(generator.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return f"{model}@sha256:{digest.hexdigest()[:12]}"
