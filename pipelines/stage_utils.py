"""Helpers shared by the Ray Data stages of the jobs (``inpaint.py``, ``evaluate.py``):
rows -> column batches, batched reads, storage checks and the model actor plan."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import fsspec
import numpy as np

from lama_core.inpainter import PRECISION_DTYPES
from lama_core.storage import filesystem_for

from .codecs import RecordError
from .job_config import JobError
from .storage_retry import RetryPolicy, read_files


@dataclass
class ModelActorOptions:
    """The compute settings every job with a model actor pool takes (``key=value``): images
    per forward (``batch_size``) and per decode/encode task (``codec_batch_size``), actor
    count (0 = auto), GPUs and CPUs per actor (-1 GPUs = auto), ``device``
    (auto/cpu/cuda), ``precision`` (fp32/bf16/fp16), and an S3 ``endpoint_url``."""

    batch_size: int = 4
    codec_batch_size: int = 8
    num_actors: int = 0
    num_gpus: float = -1.0
    num_cpus_per_actor: float = 1.0
    device: str = "auto"
    precision: str = "fp32"
    endpoint_url: Optional[str] = None


def actor_option_problems(cfg: ModelActorOptions) -> list[str]:
    """What is wrong with ``cfg``'s ``ModelActorOptions`` fields, one sentence each."""
    problems = []
    if cfg.precision not in PRECISION_DTYPES:
        problems.append(f"precision must be fp32, bf16 or fp16, got {cfg.precision!r}")
    if cfg.batch_size < 1 or cfg.codec_batch_size < 1:
        problems.append("batch_size and codec_batch_size must be >= 1")
    return problems


def column_batch(rows: list[dict[str, Any]], defaults: dict[str, Any]) -> dict[str, Any]:
    """Rows -> a column batch with fixed dtypes (so blocks of error rows keep the schema).

    ``defaults`` maps each column to its value when unknown, whose type picks the dtype:
    bool, int64, float64, or object for strings; any other default (``None`` for images
    and masks) keeps the column a plain list (arrays of varying shapes)."""
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        values = [r[key] for r in rows]
        if isinstance(default, bool):
            out[key] = np.array(values, dtype=bool)
        elif isinstance(default, int):
            out[key] = np.array(values, dtype=np.int64)
        elif isinstance(default, float):
            out[key] = np.array(values, dtype=np.float64)
        elif isinstance(default, str):
            out[key] = np.array(values, dtype=object)
        else:
            out[key] = values
    return out


def read_many(fs: fsspec.AbstractFileSystem, paths: list[str], policy: RetryPolicy | None = None) -> dict[str, Any]:
    """``{path: bytes or the exception}`` for literal paths (never glob-expanded), fetched
    concurrently on s3fs; transient failures are retried per ``policy`` (default
    ``RetryPolicy()``); a failed read is returned as its exception instead of raised."""
    if not paths:
        return {}
    try:
        return read_files(fs, paths, policy or RetryPolicy())
    except Exception as exc:  # noqa: BLE001 - e.g. the event loop went away: every file fails
        return {p: exc for p in paths}


def blob(blobs: dict[str, Any], path: str, uri: str) -> bytes:
    """The bytes ``read_many`` got for ``path``; ``RecordError`` naming ``uri`` when it failed."""
    data = blobs.get(path)
    if data is None or isinstance(data, BaseException):
        if data is None or isinstance(data, FileNotFoundError):
            raise RecordError(f"cannot read {uri}: file not found")
        # Anything but a missing file is the storage's failure, not the record's: retryable.
        raise RecordError(f"cannot read {uri}: {type(data).__name__}: {message_line(data)}", kind="storage")
    return data


def absolute_uri(uri: str | None, fallback_root: str | None = None) -> str | None:
    """Local relative paths -> absolute (Ray workers do not share the driver's cwd); empty
    or ``None`` is returned as given. With ``fallback_root``, a relative path that does not
    exist here but does under ``fallback_root`` resolves there."""
    if not uri:
        return uri
    if "://" in uri:
        return uri
    path = os.path.expanduser(uri)
    if fallback_root is not None and not os.path.isabs(path) and not os.path.exists(path) \
            and os.path.exists(os.path.join(fallback_root, path)):
        return os.path.join(fallback_root, path)
    return os.path.abspath(path)


def message_line(exc: BaseException) -> str:
    """First line of ``str(exc)``; ``''`` when the message is empty."""
    text = str(exc)
    return text.splitlines()[0] if text else ""


def reach(uri: str, what: str, endpoint_url: str | None,
          reason: Callable[[BaseException], str] = message_line,
          attempts: int | None = None) -> tuple[fsspec.AbstractFileSystem, str, bool]:
    """``(filesystem, path, exists)`` for ``uri``; ``JobError`` naming ``what`` and ``uri``
    (and ``reason(exc)``) when the storage cannot be reached. ``attempts``: see
    ``lama_core.storage.filesystem_for`` (1 where ``pipelines.storage_retry`` retries)."""
    try:
        fs, path = filesystem_for(uri, endpoint_url, attempts)
        return fs, path.rstrip("/") or path, fs.exists(path)
    except Exception as exc:
        raise JobError(f"cannot reach {what} {uri}: {type(exc).__name__}: {reason(exc)}") from exc


def cluster_device(cfg: Any) -> tuple[float, float, float, str]:
    """``(cluster GPUs, cluster CPUs, num_gpus per actor, device)`` from the config
    (``num_gpus=-1`` / ``device=auto``: a GPU per actor when the cluster has GPUs)."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    num_gpus = cfg.num_gpus if cfg.num_gpus >= 0 else (1.0 if gpus else 0.0)
    device = cfg.device if cfg.device != "auto" else ("cuda" if num_gpus > 0 else "cpu")
    if device.startswith("cuda") and num_gpus <= 0:
        raise JobError(f"device={device} needs num_gpus > 0 (Ray hides GPUs from actors that request none)")
    return gpus, cpus, num_gpus, device


def actor_count(cfg: Any, gpus: float, cpus: float, num_gpus: float) -> int:
    """``cfg.num_actors`` when set; else one actor per GPU, or on CPU one actor per two
    CPUs (half the cores stay free for the other stages), each using
    ``num_cpus_per_actor`` threads."""
    if cfg.num_actors > 0:
        return cfg.num_actors
    if num_gpus > 0:
        return max(1, int(gpus // num_gpus))
    return max(1, int(cpus // (2 * max(cfg.num_cpus_per_actor, 1e-3))))
