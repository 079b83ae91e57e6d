"""The training-checkpoint layout: names, completion marker, listing, resume choice, cleanup.

A training run lives in one folder or prefix, ``RUN = OUTPUT/NAME`` (local or any fsspec
URI). Each checkpoint is a sub-folder named by its step, zero-padded so that names sort
by step (``checkpoint_000000120``; 9 digits, wider only past step 999,999,999)::

    RUN/checkpoint_000000120/generator.safetensors      (lama_core.load_generator reads it)
    RUN/checkpoint_000000120/discriminator.safetensors
    RUN/checkpoint_000000120/training_state.pt          (optimisers and ``step``: torch.save)
    RUN/checkpoint_000000120/...                        (whatever else the trainer writes)
    RUN/checkpoint_000000120/complete.json              (written last)

A checkpoint is **complete** only when ``complete.json`` exists: it is written after every
other file and lists each file's size and SHA-256. A folder without it was caught
mid-write (or mid-delete) and is never resumed from or evaluated; the next run removes it
(``remove_incomplete``). A complete checkpoint whose files no longer match the list
(truncated, missing, altered) is skipped with a warning naming the file, and the one
before it is used (``resume_latest``). Deletion removes ``complete.json`` first, so a
crash during deletion leaves an incomplete folder, never a complete-looking partial one.

Only checkpoint folders use the ``checkpoint_`` prefix inside a run: other files of a run
(for example Ray Train's bookkeeping) go to sub-folders with other names, so the glob
``RUN/checkpoint_*`` matches checkpoints only.

Writers must be alone on a run: one training run per ``RUN`` at a time (cleanup removes
incomplete folders, which another live writer would still be filling). No Ray in here.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar

import fsspec

from .checkpoint import GENERATOR_FILE, safetensors_metadata
from .storage import filesystem_for, join_uri

CHECKPOINT_PREFIX = "checkpoint_"
#: Digits of the zero-padded step in a checkpoint's name.
STEP_DIGITS = 9
#: The completion marker: written last, lists every other file's size and SHA-256.
COMPLETE_FILE = "complete.json"
#: The trainer's state beside the weights: ``torch.save`` of a dict with ``step`` and the optimisers.
TRAINING_STATE_FILE = "training_state.pt"
_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d{{{STEP_DIGITS},}})$")
_FORMAT = 1

T = TypeVar("T")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken at ``step`` (an int >= 0): ``checkpoint_000000120``."""
    if step < 0:
        raise ValueError(f"a checkpoint step must be >= 0, got {step}")
    return f"{CHECKPOINT_PREFIX}{step:0{STEP_DIGITS}d}"


def step_of(name: str) -> int | None:
    """The step in a checkpoint folder name (the last path component of ``name``), or None
    when the name is not a training checkpoint's (``checkpoint_`` + at least 9 digits)."""
    match = _NAME.match(name.rstrip("/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class TrainingCheckpoint:
    """One checkpoint folder of a run. ``uri``: the folder (local path or URI, as the run
    was given). ``complete``: ``complete.json`` is present. ``problem``: why the checkpoint
    cannot be used (no marker, or a file that does not match it), naming the file; None when
    it is complete and every listed file has its recorded size."""

    uri: str
    step: int
    complete: bool
    problem: str | None
    sizes: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def usable(self) -> bool:
        return self.complete and self.problem is None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Delete a checkpoint folder, its completion marker first (see the module docstring)."""
    try:
        fs.rm(f"{path}/{COMPLETE_FILE}")
    except FileNotFoundError:
        pass
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def write_checkpoint(run: str, step: int, files: Mapping[str, bytes], endpoint_url: str | None = None) -> str:
    """Write ``files`` (file name -> content) as the checkpoint of ``step`` in ``run``, then
    publish it by writing ``complete.json`` last. A folder of the same name left by an
    earlier attempt is removed first. Returns the checkpoint folder's URI.

    Every ``files`` name must be a plain file name (no ``/``) other than ``complete.json``.
    """
    for name in files:
        if "/" in name or name in ("", ".", "..", COMPLETE_FILE):
            raise ValueError(f"not a checkpoint file name: {name!r}")
    uri = join_uri(run, checkpoint_name(step))
    fs, path = filesystem_for(uri, endpoint_url)
    path = path.rstrip("/")
    _remove(fs, path)
    fs.makedirs(path, exist_ok=True)
    manifest = {"format": _FORMAT, "step": int(step), "files": {}}
    for name, data in files.items():
        with fs.open(f"{path}/{name}", "wb") as f:
            f.write(data)
        manifest["files"][name] = {"size": len(data), "sha256": _sha256(data)}
    with fs.open(f"{path}/{COMPLETE_FILE}", "wb") as f:
        f.write(json.dumps(manifest, indent=1).encode())
    return uri


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> tuple[dict | None, str | None]:
    """``(manifest, None)`` or ``(None, problem)`` for the folder at ``path``."""
    marker = f"{path}/{COMPLETE_FILE}"
    try:
        with fs.open(marker, "rb") as f:
            manifest = json.loads(f.read())
        files = manifest["files"]
        if not isinstance(files, dict) or not all(isinstance(v.get("size"), int) for v in files.values()):
            raise ValueError("no file list")
    except FileNotFoundError:
        return None, f"no {COMPLETE_FILE} (incomplete: caught mid-write or mid-delete)"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"{COMPLETE_FILE} is unreadable ({type(exc).__name__}: {exc})"
    return manifest, None


def _size_problem(directory: str, manifest: dict, sizes: Mapping[str, int]) -> str | None:
    """The first file of ``manifest`` missing from ``sizes`` or of another size, named."""
    for name, entry in sorted(manifest["files"].items()):
        if name not in sizes:
            return f"{directory}/{name} is missing"
        if sizes[name] != entry["size"]:
            return (f"{directory}/{name} is {sizes[name]:,} bytes, {entry['size']:,} expected "
                    f"({'truncated' if sizes[name] < entry['size'] else 'altered'})")
    return None


def list_checkpoints(run: str, endpoint_url: str | None = None) -> list[TrainingCheckpoint]:
    """Every checkpoint folder in ``run`` (complete or not), sorted by step; [] when ``run``
    does not exist. Reads one recursive listing of ``run`` (one request on S3) plus each
    ``complete.json``; file sizes are compared with the marker's, file contents are not read
    (``verify_checkpoint`` does). Safe while a writer adds or prunes checkpoints: a folder
    deleted under the listing shows as incomplete or not at all."""
    fs, root = filesystem_for(run, endpoint_url)
    root = root.rstrip("/")
    fs.invalidate_cache(root)  # s3fs caches listings; another process may have written since
    try:
        entries = fs.find(root, withdirs=True, detail=True)
    except FileNotFoundError:
        return []
    sizes: dict[str, dict[str, int]] = {}
    for full, info in entries.items():
        rel = full.rstrip("/")[len(root) + 1:] if full.startswith(root + "/") else ""
        parts = rel.split("/")
        if not rel or step_of(parts[0]) is None:
            continue
        files = sizes.setdefault(parts[0], {})
        if len(parts) == 2 and info.get("type") == "file":
            files[parts[1]] = int(info.get("size") or 0)
    out = []
    for name, files in sizes.items():
        uri = join_uri(run, name)
        manifest, problem = None, f"no {COMPLETE_FILE} (incomplete: caught mid-write or mid-delete)"
        if COMPLETE_FILE in files:
            manifest, problem = _read_manifest(fs, f"{root}/{name}")
        if manifest is not None:
            problem = _size_problem(uri, manifest, files)
        out.append(TrainingCheckpoint(uri, step_of(name), manifest is not None, problem, files))
    return sorted(out, key=lambda c: c.step)


def checkpoint_problem(uri: str, endpoint_url: str | None = None) -> str | None:
    """Why the folder ``uri`` must not be used as a training checkpoint, or None. Only
    folders named like a training checkpoint (``checkpoint_`` + digits) are judged; any
    other path gives None. Checks the marker and the file sizes, not the contents."""
    if step_of(uri) is None:
        return None
    fs, path = filesystem_for(uri, endpoint_url)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    manifest, problem = _read_manifest(fs, path)
    if manifest is None:
        return problem
    try:
        listing = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError:
        listing = []
    sizes = {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0)
             for e in listing if e.get("type") == "file"}
    return _size_problem(uri.rstrip("/"), manifest, sizes)


def checkpoint_step(uri: str, endpoint_url: str | None = None) -> int | None:
    """The training step a checkpoint was taken at, or None when it does not say.

    ``uri``: a checkpoint folder or a ``.safetensors`` file (local path or URI). Looked up,
    cheapest first: the ``step`` entry of the generator's safetensors header metadata
    (only the header is read), ``step`` in ``training_state.pt``, then ``step`` /
    ``global_step`` in ``config.json``. Never raises: a step is optional information;
    loading the weights decides whether a checkpoint is usable."""
    import torch

    try:
        fs, path = filesystem_for(uri, endpoint_url)
        is_dir = fs.isdir(path)
        base = uri.rstrip("/")
        tensors = join_uri(base, GENERATOR_FILE) if is_dir else uri
        if tensors.endswith(".safetensors") and fs.exists(filesystem_for(tensors, endpoint_url)[1]):
            step = str(safetensors_metadata(tensors, endpoint_url).get("step", "")).strip()
            if step.lstrip("-").isdigit():
                return int(step)
        if not is_dir:
            return None
        state_path = f"{path.rstrip('/')}/{TRAINING_STATE_FILE}"
        if fs.exists(state_path):
            with fs.open(state_path, "rb") as f:
                state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "step" in state:
                return int(state["step"])
        config_path = f"{path.rstrip('/')}/config.json"
        if fs.exists(config_path):
            with fs.open(config_path, "rb") as f:
                config = json.loads(f.read())
            for key in ("step", "global_step"):
                if isinstance(config, dict) and isinstance(config.get(key), int):
                    return int(config[key])
    except Exception:  # noqa: BLE001 - a step is optional information; loading decides validity
        return None
    return None


def verify_checkpoint(checkpoint: TrainingCheckpoint | str, endpoint_url: str | None = None) -> str | None:
    """Read every file of a complete checkpoint and compare its size and SHA-256 with
    ``complete.json``. Returns None when all match, else the problem naming the file."""
    uri = checkpoint if isinstance(checkpoint, str) else checkpoint.uri
    fs, path = filesystem_for(uri, endpoint_url)
    path = path.rstrip("/")
    manifest, problem = _read_manifest(fs, path)
    if manifest is None:
        return problem
    for name, entry in sorted(manifest["files"].items()):
        try:
            with fs.open(f"{path}/{name}", "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return f"{uri.rstrip('/')}/{name} is missing"
        if len(data) != entry["size"]:
            return _size_problem(uri.rstrip("/"), {"files": {name: entry}}, {name: len(data)})
        if "sha256" in entry and _sha256(data) != entry["sha256"]:
            return f"{uri.rstrip('/')}/{name} does not match its SHA-256 in {COMPLETE_FILE} (corrupt)"
    return None


def latest_checkpoint(run: str, endpoint_url: str | None = None) -> TrainingCheckpoint | None:
    """The complete checkpoint of ``run`` with the highest step whose file sizes match its
    marker (contents unread), or None."""
    usable = [c for c in list_checkpoints(run, endpoint_url) if c.usable]
    return usable[-1] if usable else None


def remove_incomplete(run: str, endpoint_url: str | None = None) -> list[str]:
    """Delete every checkpoint folder of ``run`` without ``complete.json``; returns their
    URIs. Call only when no writer is active on ``run`` (at the start of a run)."""
    removed = []
    for ckpt in list_checkpoints(run, endpoint_url):
        if not ckpt.complete:
            fs, path = filesystem_for(ckpt.uri, endpoint_url)
            _remove(fs, path.rstrip("/"))
            removed.append(ckpt.uri)
    return removed


def prune_checkpoints(run: str, keep: int, endpoint_url: str | None = None) -> list[str]:
    """Delete all but the ``keep`` newest usable checkpoints of ``run`` (``keep`` < 1 keeps
    all), oldest first; unusable ones older than the oldest kept go too. Returns the URIs
    deleted. Newer unusable ones stay: they are overwritten when training reaches their step."""
    if keep < 1:
        return []
    checkpoints = list_checkpoints(run, endpoint_url)
    usable = [c for c in checkpoints if c.usable]
    if len(usable) <= keep:
        return []
    oldest_kept = usable[-keep].step
    removed = []
    for ckpt in checkpoints:
        if ckpt.step < oldest_kept:
            fs, path = filesystem_for(ckpt.uri, endpoint_url)
            _remove(fs, path.rstrip("/"))
            removed.append(ckpt.uri)
    return removed


def resume_latest(run: str, load: Callable[[TrainingCheckpoint], T], endpoint_url: str | None = None,
                  warn: Callable[[str], None] = print,
                  ) -> tuple[TrainingCheckpoint | None, T | None, list[str]]:
    """Load the newest checkpoint of ``run`` that verifies and loads, falling back to older ones.

    Candidates are the complete checkpoints, newest first. Each is verified
    (``verify_checkpoint``: sizes and SHA-256 of every file) and then passed to ``load``;
    a checkpoint that fails either is skipped with ``warn("skipping checkpoint ...: reason")``
    naming the file. Returns ``(checkpoint, load's result, warnings)``, or
    ``(None, None, warnings)`` when no checkpoint is usable (a fresh run has none). ``load``
    should raise on unreadable data (any ``Exception`` counts as a failed load).
    """
    warnings: list[str] = []
    for ckpt in reversed([c for c in list_checkpoints(run, endpoint_url) if c.complete]):
        problem = ckpt.problem or verify_checkpoint(ckpt, endpoint_url)
        if problem is None:
            try:
                return ckpt, load(ckpt), warnings
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint falls back to the one before
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        message = f"warning: skipping checkpoint {ckpt.uri}: {problem}"
        warnings.append(message)
        warn(message)
    return None, None, warnings


__all__ = ["CHECKPOINT_PREFIX", "COMPLETE_FILE", "STEP_DIGITS", "TRAINING_STATE_FILE", "checkpoint_step", "TrainingCheckpoint", "checkpoint_name", "step_of",
           "write_checkpoint", "list_checkpoints", "checkpoint_problem", "verify_checkpoint", "latest_checkpoint",
           "remove_incomplete", "prune_checkpoints", "resume_latest"]
