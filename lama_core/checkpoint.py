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
evaluator weights are never read (``read_checkpoint`` returns the discriminator's too, for
fine-tuning). Missing or unexpected generator keys and shape mismatches raise
``CheckpointError`` with the keys named.

Every file is untrusted unless ``trusted=True``: its generator config is validated
(``model_limits``: field ranges, a parameter count from the config alone, capped), its
tensor names, shapes and byte sizes are checked against that config and the file before
any tensor data is read, a zip's declared uncompressed sizes are capped from the
generator's size, pickles go through ``safe_unpickle``'s restricted scan (nothing runs,
nothing allocates beyond what was checked) and ``config.yaml`` through
``untrusted_config`` (bounded YAML, no interpolation resolvers). Refusals are one-line
``CheckpointError``s naming the file.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from .discriminator import NLayerDiscriminator
from .ffc import FFCResNetGenerator, GeneratorConfig
from .model_limits import (DEFAULT_MAX_PARAMETERS, check_generator_limits, generator_state_bytes,
                           generator_state_shapes)
from .presets import generator_config, generator_config_from_dict, generator_config_to_dict
from .safe_unpickle import TensorRef, TorchArchive, UnsafePickleError, load_trusted_checkpoint, to_plain
from .storage import filesystem_for, join_uri, read_bytes, write_bytes
from .untrusted_config import MAX_CONFIG_BYTES, ConfigFileError, parse_yaml_config, resolve_references

GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
CONFIG_METADATA_KEY = "lama_core.generator_config"
#: Endings of the checkpoint files ``load_generator`` reads (besides folders).
CHECKPOINT_FILE_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth")
MAX_SAFETENSORS_HEADER = 4 * 1024 * 1024
"""Largest safetensors JSON header read: big-lama's is about 120 KB, the largest config the
limits allow about 2 MB; parsing the worst case at this size takes about 110 MB."""
ARCHIVE_SLACK_BYTES = 64 * 1024 * 1024
"""Room a Lightning checkpoint gets beyond 4x the generator's state (discriminator, loss
networks, pickle): the cap on the sum of its zip entries' uncompressed sizes."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, refused as unsafe or too large, or does not fit
    the generator it is loaded into. The message is one line naming the file: parts that
    come from the file (key names, class names) cannot break it or carry terminal controls."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


def _one_line(text: str, limit: int = 1500) -> str:
    """Whitespace runs become one space, other unprintable characters are escaped."""
    text = " ".join(str(text).split())
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse(uri: str, reason: str) -> CheckpointError:
    return CheckpointError(f"refusing {uri}: {reason}")


@dataclass
class CheckpointContents:
    """What a checkpoint holds for our purposes: generator weights and config, and the
    discriminator's weights when present (official checkpoints and training checkpoints)."""

    generator_state: dict[str, torch.Tensor]
    generator_config: GeneratorConfig
    discriminator_state: dict[str, torch.Tensor] | None
    source: str
    kind: str  # "official-dir", "official-ckpt" or "safetensors"


def _validated_config(args: Any, uri: str, max_parameters: int) -> GeneratorConfig:
    """Generator config from an untrusted dict: types, ranges and parameter count checked."""
    try:
        config = generator_config_from_dict(args)
        check_generator_limits(config, max_parameters)
    except (ValueError, TypeError) as exc:
        raise _refuse(uri, str(exc)) from exc
    return config


def _checked_preset(preset: str | GeneratorConfig | dict, uri: str, max_parameters: int) -> GeneratorConfig:
    try:
        config = generator_config(preset)
        check_generator_limits(config, max_parameters)
    except (ValueError, TypeError) as exc:
        raise _refuse(uri, str(exc)) from exc
    return config


def _shape_problems(shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[tuple[int, ...], bool]]) -> str:
    """Missing / unexpected / mismatched keys, as ``load_state_checked`` words them ('' if none)."""
    missing = [k for k in expected if k not in shapes]
    unexpected = [k[:80] for k in shapes if k not in expected]
    mismatched = [f"{k}: checkpoint {shapes[k]} vs model {shape}"
                  for k, (shape, _) in expected.items() if k in shapes and shapes[k] != shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    return "; ".join(problems)


_LOADABLE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64)


# -- Lightning / torch.save zip checkpoints -------------------------------------------------

def _find_generator_config(ckpt: dict[str, Any]) -> Any:
    """Generator args from a Lightning checkpoint's hyper-parameters, if it carries them,
    with plain ``${a.b}`` references followed (never resolvers); None when absent."""
    for key in ("hyper_parameters", "hparams", "config"):
        hp = to_plain(ckpt.get(key)) if key in ckpt else None
        if not isinstance(hp, dict):
            continue
        for candidate in (hp.get("config"), hp):
            if isinstance(candidate, dict) and isinstance(candidate.get("generator"), dict):
                return resolve_references(candidate, "generator")
    return None


def _tensor_refs(state: dict, prefix: str) -> dict[str, TensorRef]:
    return {k[len(prefix):]: v for k, v in state.items()
            if isinstance(k, str) and k.startswith(prefix) and isinstance(v, TensorRef)}


def _check_refs(archive: TorchArchive, refs: dict[str, TensorRef], uri: str, what: str, max_bytes: int) -> None:
    """Each tensor's storage entry must declare exactly the bytes the pickle gives it, and
    the distinct storages together at most ``max_bytes``: checked before reading any."""
    storages = {}
    for key, ref in refs.items():
        if ref.dtype not in _LOADABLE_DTYPES:
            raise _refuse(uri, f"{what} tensor {key} has dtype {ref.dtype}, not a float or int64")
        declared = archive.storage_declared_bytes(ref.storage)
        if declared != ref.storage.nbytes:
            raise _refuse(uri, f"{what} tensor {key}: its storage entry declares {declared} bytes, "
                               f"the pickle says {ref.storage.nbytes:,}")
        storages[ref.storage.key] = ref.storage.nbytes
    total = sum(storages.values())
    if total > max_bytes:
        raise _refuse(uri, f"{what} tensors take {total:,} bytes, above the {max_bytes:,} their shapes allow")


def _read_lightning(fs, path: str, uri: str, config: GeneratorConfig | None, trusted: bool, max_parameters: int,
                    discriminator: bool, endpoint_url: str | None) -> tuple[dict, dict | None, GeneratorConfig]:
    if trusted:
        return _read_lightning_trusted(uri, config, max_parameters, endpoint_url)
    try:
        with fs.open(path, "rb") as f:
            return _read_archive(f, uri, config, max_parameters, discriminator)
    except UnsafePickleError as exc:
        raise _refuse(uri, str(exc)) from exc
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {uri}: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0][:200]} (truncated or not a PyTorch checkpoint?)"
                              ) from exc


def _read_archive(f: BinaryIO, uri: str, config: GeneratorConfig | None, max_parameters: int,
                  discriminator: bool) -> tuple[dict, dict | None, GeneratorConfig]:
    archive = TorchArchive(f)
    root = archive.root
    if not isinstance(root, dict):
        raise CheckpointError(f"{uri} is not a LaMa checkpoint (top level is {type(root).__name__}, not a dict)")
    state = root.get("state_dict", root)
    if not isinstance(state, dict):
        raise CheckpointError(f"{uri} has no state_dict")
    gen = _tensor_refs(state, "generator.")
    if not gen:  # a bare generator state dict saved on its own
        gen = {k: v for k, v in _tensor_refs(state, "").items() if k.startswith("model.")}
    if not gen:
        raise CheckpointError(f"{uri} holds no generator weights (no 'generator.*' keys in its state_dict)")
    if config is None:
        try:
            args = _find_generator_config(root)
        except (ValueError, RecursionError) as exc:
            raise _refuse(uri, f"its hyper-parameters: {exc}") from exc
        config = (_validated_config(args, uri, max_parameters) if args is not None
                  else _checked_preset("big-lama", uri, max_parameters))
    expected = generator_state_shapes(config)
    expected_bytes = generator_state_bytes(config)
    cap = 4 * expected_bytes + ARCHIVE_SLACK_BYTES
    if archive.total_declared_bytes > cap:
        raise _refuse(uri, f"its zip entries declare {archive.total_declared_bytes:,} bytes uncompressed "
                           f"({archive.compressed_bytes:,} stored), above the cap of {cap:,} for a generator of "
                           f"{expected_bytes:,} bytes")
    problems = _shape_problems({k: v.shape for k, v in gen.items()}, expected)
    if problems:
        raise CheckpointError(f"generator weights in {uri} do not fit the model: {problems}")
    _check_refs(archive, gen, uri, "generator", 2 * expected_bytes + 2 ** 20)
    disc_refs = _tensor_refs(state, "discriminator.") if discriminator else {}
    _check_refs(archive, disc_refs, uri, "discriminator", expected_bytes + ARCHIVE_SLACK_BYTES)
    try:
        gen_state = {k: archive.materialize(v) for k, v in gen.items()}
        disc_state = {k: archive.materialize(v) for k, v in disc_refs.items()} or None
    finally:
        archive.close()
    return gen_state, disc_state, config


def _read_lightning_trusted(uri: str, config: GeneratorConfig | None, max_parameters: int,
                            endpoint_url: str | None) -> tuple[dict, dict | None, GeneratorConfig]:
    """``trusted=True``: plain ``torch.load`` (runs the file's pickles; for your own files)."""
    try:
        ckpt = load_trusted_checkpoint(read_bytes(uri, endpoint_url))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {uri}: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0][:200]} (truncated or not a PyTorch checkpoint?)"
                              ) from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict", ckpt), dict):
        raise CheckpointError(f"{uri} is not a LaMa checkpoint (no state_dict)")
    state = ckpt.get("state_dict", ckpt)
    pick = lambda prefix: {k[len(prefix):]: v for k, v in state.items()  # noqa: E731
                           if isinstance(k, str) and k.startswith(prefix) and torch.is_tensor(v)}
    gen = pick("generator.") or {k: v for k, v in pick("").items() if k.startswith("model.")}
    if not gen:
        raise CheckpointError(f"{uri} holds no generator weights (no 'generator.*' keys in its state_dict)")
    if config is None:
        try:
            args = _find_generator_config(ckpt)
        except (ValueError, RecursionError) as exc:
            raise _refuse(uri, f"its hyper-parameters: {exc}") from exc
        config = (_validated_config(args, uri, max_parameters) if args is not None
                  else _checked_preset("big-lama", uri, max_parameters))
    return gen, pick("discriminator.") or None, config


# -- safetensors ------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8}


def _safetensors_header(f: BinaryIO, size: int, uri: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Read and check a safetensors header without touching tensor data: every entry's dtype,
    shape and byte range, against each other and the file size. Returns (entries, metadata)."""
    head = f.read(8)
    if len(head) < 8:
        raise _refuse(uri, "shorter than a safetensors header (truncated?)")
    length = int.from_bytes(head, "little")
    if length > min(size - 8, MAX_SAFETENSORS_HEADER):
        raise _refuse(uri, f"its header claims {length:,} bytes; the file has {size:,} "
                           f"(limit {MAX_SAFETENSORS_HEADER:,}; truncated or not a safetensors file?)")
    try:
        header = json.loads(f.read(length))
    except (ValueError, RecursionError) as exc:
        raise _refuse(uri, f"its header is not valid JSON ({type(exc).__name__}; not a safetensors file?)") from exc
    if not isinstance(header, dict):
        raise _refuse(uri, "its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _refuse(uri, "its metadata is not a mapping of strings")
    data_size = size - 8 - length
    covered = 0
    for name, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") not in _SAFETENSORS_DTYPES:
            raise _refuse(uri, f"tensor {name[:80]} has no supported dtype (F16, BF16, F32, F64, I64)")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(type(d) is int and 0 <= d < 2 ** 40 for d in shape)):
            raise _refuse(uri, f"tensor {name[:80]} has a malformed shape")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise _refuse(uri, f"tensor {name[:80]} has a byte range outside the file (truncated?)")
        numel = 1
        for d in shape:
            numel *= d
        if offsets[1] - offsets[0] != numel * _SAFETENSORS_DTYPES[info["dtype"]]:
            raise _refuse(uri, f"tensor {name[:80]}: its byte range does not match its shape")
        covered += offsets[1] - offsets[0]
    if covered != data_size:
        raise _refuse(uri, f"its tensors cover {covered:,} of its {data_size:,} data bytes (truncated or padded?)")
    return header, meta


def safetensors_metadata(uri: str, endpoint_url: str | None = None) -> dict[str, str]:
    """The header metadata (``__metadata__``: str -> str) of the safetensors file ``uri``,
    read and checked without touching tensor data. Raises ``FileNotFoundError`` or
    ``CheckpointError`` (not a valid safetensors header) naming ``uri``."""
    fs, path = filesystem_for(uri, endpoint_url)
    try:
        size = fs.size(path)
        with fs.open(path, "rb") as f:
            return _safetensors_header(f, size, uri)[1]
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {uri}") from exc


def _read_safetensors(fs, path: str, uri: str, max_bytes: int,
                      expected: dict[str, tuple[tuple[int, ...], bool]] | None = None,
                      config_from_header=None) -> tuple[dict[str, torch.Tensor], Any]:
    """Read a safetensors file whose header passes the checks above and whose data is at
    most ``max_bytes``. ``config_from_header(metadata)`` (optional) returns the config that
    gives ``expected`` shapes, validated before any tensor byte is read."""
    try:
        size = fs.size(path)
        with fs.open(path, "rb") as f:
            header, meta = _safetensors_header(f, size, uri)
            config = None
            if config_from_header is not None:
                config = config_from_header(meta)
                expected = generator_state_shapes(config)
                max_bytes = 2 * generator_state_bytes(config) + 2 ** 20
            if expected is not None:
                problems = _shape_problems({k: tuple(v["shape"]) for k, v in header.items()}, expected)
                if problems:
                    raise CheckpointError(f"generator weights in {uri} do not fit the model: {problems}")
            data_size = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
            if data_size > max_bytes:
                raise _refuse(uri, f"its tensors take {data_size:,} bytes, above the limit of {max_bytes:,}")
            f.seek(0)
            data = f.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {uri}") from exc
    try:
        return safetensors_load(data), config
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {uri}: {(str(exc).splitlines() or [''])[0][:200]} "
                              "(truncated or not a safetensors file?)") from exc


def _generator_safetensors(fs, path: str, uri: str, preset, max_parameters: int):
    def config_from_header(meta: dict[str, str]) -> GeneratorConfig:
        if preset is not None:
            return _checked_preset(preset, uri, max_parameters)
        if CONFIG_METADATA_KEY not in meta:
            raise CheckpointError(f"{uri} lacks the '{CONFIG_METADATA_KEY}' metadata of a lama_core checkpoint")
        try:
            args = json.loads(meta[CONFIG_METADATA_KEY])
        except (ValueError, RecursionError) as exc:
            raise _refuse(uri, f"its '{CONFIG_METADATA_KEY}' metadata is not valid JSON") from exc
        return _validated_config(args, uri, max_parameters)

    return _read_safetensors(fs, path, uri, 0, config_from_header=config_from_header)


def _official_dir_config(fs, path: str, uri: str, endpoint_url: str | None, max_parameters: int):
    """The generator config of an official model folder's ``config.yaml`` (None if it has
    no file or no ``generator`` section), read as untrusted: see ``untrusted_config``."""
    config_path = join_uri(path, "config.yaml")
    config_uri = join_uri(uri, "config.yaml")
    if not fs.exists(config_path):
        return None
    if fs.size(config_path) > MAX_CONFIG_BYTES:
        raise _refuse(config_uri, f"it is {fs.size(config_path):,} bytes, above the limit of "
                                  f"{MAX_CONFIG_BYTES:,} for a config")
    try:
        root = parse_yaml_config(read_bytes(config_uri, endpoint_url))
        if "generator" not in root:
            return None
        args = resolve_references(root, "generator")
    except (ConfigFileError, RecursionError) as exc:
        raise _refuse(config_uri, str(exc) or "its YAML nests too deeply") from exc
    return _validated_config(args, config_uri, max_parameters)


def read_checkpoint(uri: str, trusted: bool = False, endpoint_url: str | None = None,
                    max_parameters: int = DEFAULT_MAX_PARAMETERS, discriminator: bool = True,
                    preset: str | GeneratorConfig | dict | None = None) -> CheckpointContents:
    """Read generator (and discriminator) weights and the generator config from ``uri``,
    in any of the three layouts of this module's docstring.

    Files are untrusted by default and cost bounded memory and time, decided before
    allocating (see "Loading untrusted model files" in the README): the config is checked
    against ``model_limits`` (``max_parameters`` raises the parameter cap), tensor shapes
    and byte sizes against the config and the file before reading any tensor data, zip
    entries' uncompressed sizes against a cap derived from the generator's size, and the
    pickle is read by ``safe_unpickle``'s restricted unpickler (no code runs, ever).
    ``trusted=True`` unpickles Lightning files fully (only for files you produced yourself).
    ``discriminator=False`` skips the discriminator's weights; ``preset`` replaces the
    file's generator config. Raises ``CheckpointError`` (one line naming the file) or
    ``FileNotFoundError`` naming the path."""
    fs, path = filesystem_for(uri, endpoint_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"model checkpoint not found: {uri}")
    if fs.isdir(path):
        if fs.exists(join_uri(path, GENERATOR_FILE)):
            return read_checkpoint(join_uri(uri, GENERATOR_FILE), trusted, endpoint_url, max_parameters,
                                   discriminator, preset)
        if not fs.exists(join_uri(path, "models", "best.ckpt")):
            raise FileNotFoundError(f"{uri} is a directory without {GENERATOR_FILE} or models/best.ckpt")
        config = (_checked_preset(preset, uri, max_parameters) if preset is not None
                  else _official_dir_config(fs, path, uri, endpoint_url, max_parameters))
        gen, disc, config = _read_lightning(fs, join_uri(path, "models", "best.ckpt"),
                                            join_uri(uri, "models", "best.ckpt"), config, trusted, max_parameters,
                                            discriminator, endpoint_url)
        return CheckpointContents(gen, config, disc, uri, "official-dir")
    if path.endswith(".safetensors"):
        tensors, config = _generator_safetensors(fs, path, uri, preset, max_parameters)
        disc = None
        disc_path = path[: -len(GENERATOR_FILE)] + DISCRIMINATOR_FILE
        if discriminator and path.endswith(GENERATOR_FILE) and fs.exists(disc_path):
            disc, _ = _read_safetensors(fs, disc_path, uri[: -len(GENERATOR_FILE)] + DISCRIMINATOR_FILE,
                                        generator_state_bytes(config) + ARCHIVE_SLACK_BYTES)
        return CheckpointContents(tensors, config, disc, uri, "safetensors")
    config = _checked_preset(preset, uri, max_parameters) if preset is not None else None
    gen, disc, config = _read_lightning(fs, path, uri, config, trusted, max_parameters, discriminator, endpoint_url)
    return CheckpointContents(gen, config, disc, uri, "official-ckpt")


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str,
                       assign: bool = False) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable ``CheckpointError``
    listing missing keys, unexpected keys and shape mismatches (first few of each).
    ``assign=True`` makes the module use the state's tensors (cast to the module's dtypes)
    instead of copying into its own: for a module built on the meta device."""
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
    if assign:
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=assign)


def load_generator(uri: str, preset: str | GeneratorConfig | None = None, trusted: bool = False,
                   endpoint_url: str | None = None, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> FFCResNetGenerator:
    """Build the generator a checkpoint describes and load its weights.

    ``uri``: local path or fsspec URI (see the module docstring for layouts). ``preset``
    overrides the config found in (or assumed for) the checkpoint. ``max_parameters``
    (default 102 M, twice big-lama) refuses larger architectures before anything is built;
    raise it for a bigger model you trust. Returns the generator in eval mode on the CPU.
    Raises ``FileNotFoundError`` / ``CheckpointError`` (one line naming the file).
    """
    contents = read_checkpoint(uri, trusted=trusted, endpoint_url=endpoint_url, max_parameters=max_parameters,
                               discriminator=False, preset=preset)
    try:
        with torch.device("meta"):  # no memory, no random init: the checkpoint's tensors are used as they are
            generator = FFCResNetGenerator(contents.generator_config)
    except (ValueError, RuntimeError) as exc:
        raise _refuse(uri, f"its generator config cannot be built: {exc}") from exc
    load_state_checked(generator, contents.generator_state, uri, "generator", assign=True)
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
           "DEFAULT_MAX_PARAMETERS",
           "save_discriminator", "generator_to_bytes", "load_state_checked", "GENERATOR_FILE", "DISCRIMINATOR_FILE"]
