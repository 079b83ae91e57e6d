"""How a job's model stage runs on the cluster: the actor plan (actors, CPUs, threads, GPUs,
the CPUs left to the read/decode and encode/write tasks) and the actor pool strategy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.common.config_kit import WorkerOptions, device_problem
from pipelines.common.errors import JobError


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


def resolve_gpus(gpus_per_worker: float | None, cluster_gpus: float) -> float:
    """GPUs per worker (model actor or training worker): as given, or for ``null`` (auto) 1
    when the cluster has GPUs, else 0. The one resolver of ``gpus_per_worker=null``."""
    if gpus_per_worker is not None:
        return gpus_per_worker
    return 1.0 if cluster_gpus else 0.0


def check_cpu_headroom(workers: int, cpus_per_worker: float, cluster_cpus: float, fixed_cluster: bool) -> None:
    """Raise ``JobError`` (one line) when ``workers`` x ``cpus_per_worker`` leave Ray Data less
    than ``FREE_CPUS`` of the cluster's ``cluster_cpus`` for its read, decode and encode
    tasks: the job would wait forever. Where the workers do not fit yet and the cluster can
    grow (not ``fixed_cluster``), nodes added for them bring CPUs too: no refusal."""
    used = workers * cpus_per_worker
    left = cluster_cpus - used
    if left < FREE_CPUS and (fixed_cluster or cluster_cpus >= used):
        raise JobError(f"num_workers x cpus_per_worker = {workers} x {cpus_per_worker:g} CPUs leaves {max(left, 0):g} "
                       f"of the cluster's {cluster_cpus:g} CPUs for reading, decoding and encoding, which need at "
                       f"least {FREE_CPUS:g}: lower them, or leave them at their defaults")


def plan_actors(cfg: WorkerOptions, cluster_cpus: float, cluster_gpus: float, fixed_cluster: bool,
                work_batches: int | None = None) -> ActorPlan:
    """The actor plan for ``cfg`` on a cluster of ``cluster_cpus`` CPUs and ``cluster_gpus``
    GPUs. ``fixed_cluster``: a local instance that cannot grow, so a plan that does not fit
    is refused instead of waiting for nodes. ``work_batches`` caps the actor count (no idle
    actors). Raises ``JobError`` (one line) for a plan that cannot run: GPUs asked of a
    machine without any, fp16 without a GPU (``device_problem``), or actors that leave Ray
    Data less than ``FREE_CPUS`` (``check_cpu_headroom``).

    Auto (``num_workers=0``, ``cpus_per_worker=0``, ``gpus_per_worker=null``): one actor
    per GPU when the cluster has GPUs. On CPU: actors of up to 8 torch threads that
    together run one thread per core, while reserving all CPUs but ``FREE_CPUS`` in Ray's
    accounting; the codec tasks run in the CPU left free (on 2 cores: one actor, 1 CPU
    reserved, 2 threads; codec tasks of 0.5 CPU)."""
    gpus = resolve_gpus(cfg.gpus_per_worker, cluster_gpus)
    if gpus > 0 and not cluster_gpus and fixed_cluster:
        raise JobError(f"gpus_per_worker={gpus:g} but this machine has no GPU visible to Ray: use gpus_per_worker=0")
    if problem := device_problem(cfg.precision, gpus):
        raise JobError(problem)
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
    check_cpu_headroom(actors, cpus, cluster_cpus, fixed_cluster)
    codec = min(1.0, max(MIN_CODEC_CPUS, (cluster_cpus - actors * cpus) / 2))
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


def cluster_plan(cfg: WorkerOptions, local: bool, work_batches: int | None = None) -> ActorPlan:
    """``plan_actors`` for the Ray cluster this process is connected to."""
    import ray

    resources = ray.cluster_resources()
    plan = plan_actors(cfg, resources.get("CPU", 1.0), resources.get("GPU", 0.0), local, work_batches)
    if plan.gpus > 0 and not resources.get("GPU", 0.0):
        print("warning: the Ray cluster has no GPU now; the model actors wait for GPU nodes (autoscaling)")
    return plan
