"""The stage kit of the Ray Data jobs (``inpaint.py``, ``evaluate.py``): rows -> column
batches, batched reads of record files, the model actor plan, and what every model actor
does (device resolution, its share of the node's threads, the per-record fallback)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import fsspec
import numpy as np

from .codecs import RecordError
from .errors import JobError
from .job_storage import message_line
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


#: An empty image and mask: the arrays of a row that failed (uint8 0 x 0 x 3, 0 x 0).
EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)
EMPTY_MASK = np.zeros((0, 0), np.uint8)


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


def model_actor_pool(plan: ActorPlan) -> Any:
    """The ``compute=`` of a model stage's ``map_batches``: ``plan.actors`` actors that run
    each batch in the actor's own thread. By default Ray Data hands every batch of an actor
    to a second thread and waits for it; there the same big-lama batches kept 1.65-1.69 of
    2 cores busy instead of 1.86-1.87 and took 10-13% longer (benchmarks/RESULTS.md). An
    actor takes one call at a time (Ray's default concurrency of 1), so that second thread
    overlapped nothing."""
    import ray

    return ray.data.ActorPoolStrategy(size=plan.actors, enable_true_multi_threading=True)


def cluster_plan(cfg: Any, local: bool, work_batches: int | None = None) -> ActorPlan:
    """``plan_actors`` for the Ray cluster this process is connected to."""
    import ray

    resources = ray.cluster_resources()
    plan = plan_actors(cfg, resources.get("CPU", 1.0), resources.get("GPU", 0.0), local, work_batches)
    if plan.gpus > 0 and not resources.get("GPU", 0.0):
        print("warning: the Ray cluster has no GPU now; the model actors wait for GPU nodes (autoscaling)")
    return plan


# ----------------------------------------------------------------------------- model actors

T = TypeVar("T")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other device name
    as given. The one resolver of ``device="auto"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def start_model_actor(num_threads: int) -> None:
    """What a model actor does first: ask for normal priority (Ray starts workers at nice
    15; on a shared machine that starves the model) and use ``num_threads`` torch threads,
    its share of the node's cores (decode/encode tasks run beside it)."""
    import torch

    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except (OSError, AttributeError):
        pass  # lowering niceness needs privileges: keep Ray's
    torch.set_num_threads(max(1, num_threads))


def run_per_record(todo: Sequence[int], run: Callable[[list[int]], list[T]],
                   fail: Callable[[int, Exception], None]) -> dict[int, T]:
    """``{row: result}`` of ``run`` over the rows ``todo`` of a batch: one call for them
    all; when that raises, cached GPU memory is freed and every row is run alone, so only
    a row that fails by itself is lost, reported as ``fail(row, exception)``. ``run(rows)``
    returns one result per row, in order."""
    import torch

    if not todo:
        return {}
    try:
        return dict(zip(todo, run(list(todo))))
    except Exception:  # noqa: BLE001 - find the record that broke the batch (e.g. out of memory on one)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    done: dict[int, T] = {}
    for i in todo:
        try:
            done[i] = run([i])[0]
        except Exception as exc:  # noqa: BLE001 - that record's failure, reported by the caller
            fail(i, exc)
    return done
