"""Checkpoint I/O: official LaMa checkpoints in, this project's safetensors format in and out.

``load_generator(uri)`` accepts, from a local path or any fsspec URI:

(a) an official model directory: ``config.yaml`` + ``models/best.ckpt``;
(b) a bare official ``best.ckpt`` (Lightning): the generator config comes from the
    checkpoint's own hyper-parameters when it has them, else the ``big-lama`` preset;
(c) this project's format: ``generator.safetensors`` (a file, or a directory holding one,
    such as a training checkpoint). The safetensors header metadata carries the generator
    config as JSON under ``lama_core.generator_config``, so the file is self-describing and
    loading it never unpickles anything.

Only ``generator.*`` weights are read from Lightning checkpoints; discriminator, loss and
evaluator weights are ignored (``read_checkpoint`` returns the discriminator's too, for
fine-tuning). Missing or unexpected generator keys and shape mismatches raise
``CheckpointError`` with the keys named.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from .discriminator import NLayerDiscriminator
from .ffc import FFCResNetGenerator, GeneratorConfig
from .presets import generator_config, generator_config_from_dict, generator_config_to_dict
from .safe_unpickle import load_checkpoint_bytes, to_plain
from .storage import filesystem_for, join_uri, read_bytes, write_bytes

GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
CONFIG_METADATA_KEY = "lama_core.generator_config"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the generator it is loaded into."""


@dataclass
class CheckpointContents:
    """What a checkpoint holds for our purposes: generator weights and config, and the
    discriminator's weights when present (official checkpoints and training checkpoints)."""

    generator_state: dict[str, torch.Tensor]
    generator_config: GeneratorConfig
    discriminator_state: dict[str, torch.Tensor] | None
    source: str
    kind: str  # "official-dir", "official-ckpt" or "safetensors"


def _strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and torch.is_tensor(v)}


def _find_generator_config(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """Generator args from a Lightning checkpoint's hyper-parameters, if it carries them."""
    for key in ("hyper_parameters", "hparams", "config"):
        hp = to_plain(ckpt.get(key)) if key in ckpt else None
        if not isinstance(hp, dict):
            continue
        for candidate in (hp.get("config"), hp):
            if isinstance(candidate, dict) and isinstance(candidate.get("generator"), dict):
                return candidate["generator"]
    return None


def _read_lightning(data: bytes, uri: str, trusted: bool) -> tuple[dict, dict | None, dict[str, Any] | None]:
    try:
        ckpt = load_checkpoint_bytes(data, trusted=trusted)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {uri}: {type(exc).__name__}: {str(exc).splitlines()[0]} "
                              "(truncated or not a PyTorch checkpoint?)") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{uri} is not a LaMa checkpoint (top level is {type(ckpt).__name__}, not a dict)")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(f"{uri} has no state_dict")
    gen = _strip_prefix(state, "generator.")
    if not gen:
        # A bare generator state dict saved on its own.
        gen = {k: v for k, v in state.items() if k.startswith("model.") and torch.is_tensor(v)}
    if not gen:
        raise CheckpointError(f"{uri} holds no generator weights (no 'generator.*' keys in its state_dict)")
    disc = _strip_prefix(state, "discriminator.") or None
    return gen, disc, _find_generator_config(ckpt)


def _read_safetensors(data: bytes, uri: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        tensors = safetensors_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8: 8 + header_len])
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {uri}: {exc} (truncated or not a safetensors file?)") from exc
    return tensors, header.get("__metadata__", {}) or {}


def read_checkpoint(uri: str, trusted: bool = False, endpoint_url: str | None = None) -> CheckpointContents:
    """Read generator (and discriminator) weights and the generator config from ``uri``,
    in any of the three layouts of this module's docstring. ``trusted=True`` allows full
    unpickling of Lightning files you produced yourself; the default never runs pickled code.
    Raises ``CheckpointError`` (or ``FileNotFoundError`` naming the path) when unreadable."""
    fs, path = filesystem_for(uri, endpoint_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"model checkpoint not found: {uri}")
    if fs.isdir(path):
        if fs.exists(join_uri(path, GENERATOR_FILE)):
            return read_checkpoint(join_uri(uri, GENERATOR_FILE), trusted, endpoint_url)
        ckpt_uri = join_uri(uri, "models", "best.ckpt")
        config_uri = join_uri(uri, "config.yaml")
        if not fs.exists(join_uri(path, "models", "best.ckpt")):
            raise FileNotFoundError(f"{uri} is a directory without {GENERATOR_FILE} or models/best.ckpt")
        gen, disc, cfg_dict = _read_lightning(read_bytes(ckpt_uri, endpoint_url), ckpt_uri, trusted)
        if fs.exists(join_uri(path, "config.yaml")):
            yaml_cfg = OmegaConf.create(read_bytes(config_uri, endpoint_url).decode("utf-8"))
            if "generator" in yaml_cfg:
                cfg_dict = OmegaConf.to_container(yaml_cfg.generator, resolve=True)
        config = generator_config_from_dict(cfg_dict) if cfg_dict else generator_config("big-lama")
        return CheckpointContents(gen, config, disc, uri, "official-dir")
    data = read_bytes(uri, endpoint_url)
    if path.endswith(".safetensors"):
        tensors, meta = _read_safetensors(data, uri)
        if CONFIG_METADATA_KEY not in meta:
            raise CheckpointError(f"{uri} lacks the '{CONFIG_METADATA_KEY}' metadata of a lama_core checkpoint")
        config = generator_config_from_dict(json.loads(meta[CONFIG_METADATA_KEY]))
        disc = None
        if path.endswith(GENERATOR_FILE) and fs.exists(path[: -len(GENERATOR_FILE)] + DISCRIMINATOR_FILE):
            disc_uri = uri[: -len(GENERATOR_FILE)] + DISCRIMINATOR_FILE
            disc, _ = _read_safetensors(read_bytes(disc_uri, endpoint_url), disc_uri)
        return CheckpointContents(tensors, config, disc, uri, "safetensors")
    gen, disc, cfg_dict = _read_lightning(data, uri, trusted)
    config = generator_config_from_dict(cfg_dict) if cfg_dict else generator_config("big-lama")
    return CheckpointContents(gen, config, disc, uri, "official-ckpt")


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable ``CheckpointError``
    listing missing keys, unexpected keys and shape mismatches (first few of each)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    if problems:
        raise CheckpointError(f"{what} weights in {source} do not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def load_generator(uri: str, preset: str | GeneratorConfig | None = None, trusted: bool = False,
                   endpoint_url: str | None = None) -> FFCResNetGenerator:
    """Build the generator a checkpoint describes and load its weights.

    ``uri``: local path or fsspec URI (see the module docstring for layouts). ``preset``
    overrides the config found in (or assumed for) the checkpoint. Returns the generator in
    eval mode on the CPU. Raises ``FileNotFoundError`` / ``CheckpointError``.
    """
    contents = read_checkpoint(uri, trusted=trusted, endpoint_url=endpoint_url)
    config = generator_config(preset) if preset is not None else contents.generator_config
    generator = FFCResNetGenerator(config)
    load_state_checked(generator, contents.generator_state, uri, "generator")
    return generator.eval()


def _metadata(generator: FFCResNetGenerator, extra: dict[str, str] | None) -> dict[str, str]:
    meta = {CONFIG_METADATA_KEY: json.dumps(generator_config_to_dict(generator.config))}
    meta.update(extra or {})
    return meta


def generator_to_bytes(generator: FFCResNetGenerator, metadata: dict[str, str] | None = None) -> bytes:
    """Serialise a generator to safetensors bytes with its config in the header metadata."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    return safetensors_save(state, metadata=_metadata(generator, metadata))


def save_generator(generator: FFCResNetGenerator, uri: str, metadata: dict[str, str] | None = None,
                   endpoint_url: str | None = None) -> str:
    """Write ``generator`` in this project's format to ``uri`` (a ``.safetensors`` file, or a
    directory that receives ``generator.safetensors``). Returns the file URI written."""
    target = uri if uri.endswith(".safetensors") else join_uri(uri, GENERATOR_FILE)
    write_bytes(target, generator_to_bytes(generator, metadata), endpoint_url)
    return target


def save_discriminator(discriminator: NLayerDiscriminator, directory: str, endpoint_url: str | None = None) -> str:
    """Write discriminator weights as ``DIRECTORY/discriminator.safetensors`` (for fine-tuning)."""
    target = join_uri(directory, DISCRIMINATOR_FILE)
    state = {k: v.detach().to("cpu").contiguous() for k, v in discriminator.state_dict().items()}
    meta = {"lama_core.discriminator_config": json.dumps(discriminator.config.__dict__)}
    write_bytes(target, safetensors_save(state, metadata=meta), endpoint_url)
    return target


__all__ = ["CheckpointError", "CheckpointContents", "read_checkpoint", "load_generator", "save_generator",
           "save_discriminator", "generator_to_bytes", "load_state_checked", "GENERATOR_FILE", "DISCRIMINATOR_FILE"]
