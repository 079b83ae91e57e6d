"""Helpers shared by the Ray Data stages of the jobs (``inpaint.py``, ``evaluate.py``):
rows -> column batches, batched reads, storage checks and the model actor plan."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import fsspec
import numpy as np

from lama_core.storage import filesystem_for

from .codecs import RecordError
from .job_config import JobError
from .storage_retry import RetryPolicy, read_files


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


@dataclass
class ActorPlan:
    """How a job's model stage runs: ``actors`` actors of ``cpus`` CPUs (``threads`` torch
    threads) and ``gpus`` GPUs each on ``device``; ``codec_cpus`` CPUs per read/decode and
    encode/write task."""

    actors: int
    cpus: float
    threads: int
    gpus: float
    device: str
    codec_cpus: float

    def line(self) -> str:
        return (f"{self.actors} model actor(s) x {self.cpus:g} CPU ({self.threads} threads)"
                + (f" x {self.gpus:g} GPU" if self.gpus else "") + f" on {self.device}; "
                f"codec tasks {self.codec_cpus:g} CPU each")


#: CPUs per read/decode and encode/write task at the least.
MIN_CODEC_CPUS = 0.25
#: CPUs that must stay free of model actors: Ray Data runs some of its own operators
#: (e.g. the file listing of ``read_parquet``) as tasks of exactly 1 CPU that no argument
#: changes; with less than that free beside the actors, a job waits forever.
FREE_CPUS = 1.0
#: Torch threads beyond which one more CPU actor beats more threads in one actor.
MAX_THREADS_PER_CPU_ACTOR = 8


def plan_actors(cfg: Any, cluster_cpus: float, cluster_gpus: float, fixed_cluster: bool,
                work_batches: int | None = None) -> ActorPlan:
    """The actor plan for ``cfg`` (a ``WorkerOptions``) on a cluster of ``cluster_cpus``
    CPUs and ``cluster_gpus`` GPUs. ``fixed_cluster``: a local instance that cannot grow, so
    a plan that does not fit is refused instead of waiting for nodes. ``work_batches`` caps
    the actor count (no idle actors). Raises ``JobError`` (one line) for a plan that cannot
    run: GPUs asked of a machine without any, or actors that leave Ray Data less than
    ``FREE_CPUS`` (it would wait forever).

    Auto (``num_workers=0``, ``cpus_per_worker=0``, ``gpus_per_worker=null``): one actor
    per GPU when the cluster has GPUs. On CPU: actors of up to 8 torch threads that
    together run one thread per core, while reserving all CPUs but ``FREE_CPUS`` in Ray's
    accounting; the codec tasks run in the CPU left free (on 2 cores: one actor, 1 CPU
    reserved, 2 threads; codec tasks of 0.5 CPU)."""
    gpus = cfg.gpus_per_worker if cfg.gpus_per_worker is not None else (1.0 if cluster_gpus else 0.0)
    if gpus > 0 and not cluster_gpus and fixed_cluster:
        raise JobError(f"gpus_per_worker={gpus:g} but this machine has no GPU visible to Ray: use gpus_per_worker=0")
    if gpus <= 0 and cfg.precision == "fp16":
        raise JobError("precision=fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    if gpus > 0:
        actors = cfg.num_workers or max(1, int(cluster_gpus // gpus))
        cpus = cfg.cpus_per_worker or 1.0
        threads = max(1, round(cpus))
    elif cfg.cpus_per_worker:
        actors = cfg.num_workers or max(1, int(max(cluster_cpus - FREE_CPUS, 0) // cfg.cpus_per_worker))
        cpus = cfg.cpus_per_worker
        threads = max(1, round(cpus))
    else:
        actors = cfg.num_workers or max(1, round(cluster_cpus / MAX_THREADS_PER_CPU_ACTOR))
        cpus = max(cluster_cpus - FREE_CPUS, 0.0) / actors
        threads = max(1, round(cluster_cpus / actors))
    if work_batches is not None and not cfg.num_workers:
        actors = max(1, min(actors, work_batches))
    left = cluster_cpus - actors * cpus
    if left < FREE_CPUS and (fixed_cluster or cluster_cpus >= actors * cpus):
        raise JobError(f"num_workers x cpus_per_worker = {actors} x {cpus:g} CPUs leaves {max(left, 0):g} of the "
                       f"cluster's {cluster_cpus:g} CPUs for reading, decoding and encoding, which need at least "
                       f"{FREE_CPUS:g}: lower them, or leave both at 0 (auto)")
    codec = min(1.0, max(MIN_CODEC_CPUS, left / 2))
    return ActorPlan(actors, cpus, threads, gpus, "cuda" if gpus > 0 else "cpu", codec)


def cluster_plan(cfg: Any, local: bool, work_batches: int | None = None) -> ActorPlan:
    """``plan_actors`` for the Ray cluster this process is connected to."""
    import ray

    resources = ray.cluster_resources()
    plan = plan_actors(cfg, resources.get("CPU", 1.0), resources.get("GPU", 0.0), local, work_batches)
    if plan.gpus > 0 and not resources.get("GPU", 0.0):
        print("warning: the Ray cluster has no GPU now; the model actors wait for GPU nodes (autoscaling)")
    return plan
