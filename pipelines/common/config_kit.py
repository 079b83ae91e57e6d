"""The kit every job's typed config is built from: ``setting`` (a field with its ``--help``
line), ``describe`` (the rows of ``--help``), the range checks, and ``WorkerOptions`` (the
compute keys of the jobs that run a pool of model actors).

Key names follow one name per concept across jobs (``docs/DESIGN.md``, "Job interfaces"):
``input``, ``output``, ``model``, ``mask_dir``, ``mask_kind``, ``mask_seed``, ``num_workers``,
``cpus_per_worker``, ``gpus_per_worker``, ``endpoint_url``, ``overwrite``, ``retry_errors``,
``dry_run``, ``weights_dir``, ``precision``, ``preview``. Every setting is defaulted here or
in its job's ``config.py`` and checked once, by the config's ``problems()`` on the driver
before Ray starts; the stages then trust it.

This module and the configs import nothing heavy (no torch, no Ray): ``python jobs/NAME.py
--help`` and a mistyped key answer in well under a second.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Optional

from lama_core.choices import PRECISION_CHOICES, choice_problem

from pipelines.common.errors import ConfigError

#: The demo checkpoint shipped in this repository (README, "The default model").
DEFAULT_MODEL = "assets/lama-small-demo"
#: Keys of earlier versions -> today's name, so an old script gets a pointed error.
RENAMED_KEYS = {
    "data": "input", "checkpoints": "model", "masks": "mask_kind", "kind": "mask_kind", "preset": "model",
    "init_from": "model", "num_actors": "num_workers", "num_cpus_per_actor": "cpus_per_worker",
    "num_gpus": "gpus_per_worker", "use_gpu": "gpus_per_worker", "device": "gpus_per_worker",
}


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its ``--help`` description (``default`` may be a list or dict:
    it is copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def describe(schema: type) -> list[tuple[str, str, Any, str]]:
    """``[(key, type name, default, description)]`` of a config dataclass: the job's own
    keys first, then those it inherits (the shared worker options), each in field order."""
    own = [f for f in fields(schema) if f.name in vars(schema).get("__annotations__", {})]
    rows = []
    for f in own + [f for f in fields(schema) if f not in own]:
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append((f.name, str(type_name).replace("typing.", ""), default, f.metadata.get("help", "")))
    return rows


def check_config(cfg: Any) -> None:
    """Raise ``ConfigError`` (``bad config: ...``, every problem in one line) when ``cfg.problems()``
    finds any: the check of a job function called without the parser (which exits 2 on
    the same problems instead)."""
    if problems := cfg.problems():
        raise ConfigError("bad config: " + "; ".join(problems))


def non_negative(cfg: Any, *names: str) -> list[str]:
    """One problem per key of ``cfg`` among ``names`` whose value is below 0."""
    return [f"{n} must be >= 0, got {getattr(cfg, n)}" for n in names if getattr(cfg, n) < 0]


def at_least_one(cfg: Any, *names: str) -> list[str]:
    """One problem per key of ``cfg`` among ``names`` whose value is below 1."""
    return [f"{n} must be >= 1, got {getattr(cfg, n)}" for n in names if getattr(cfg, n) < 1]


def choices(cfg: Any, **allowed: tuple[str, ...]) -> list[str]:
    """One problem per key whose value is not among its allowed names
    (``choices(cfg, hd_strategy=HD_STRATEGIES)``)."""
    return [p for name, names in allowed.items() if (p := choice_problem(name, getattr(cfg, name), names))]


def finite(cfg: Any, *names: str) -> list[str]:
    """One problem per key whose value is infinite or NaN."""
    return [f"{n} must be finite, got {getattr(cfg, n)}" for n in names
            if getattr(cfg, n) in (float("inf"), float("-inf")) or getattr(cfg, n) != getattr(cfg, n)]


@dataclass
class WorkerOptions:
    """Compute settings shared by the jobs that run a pool of model actors (inpaint, evaluate)."""

    batch_size: int = setting(4, "images per model forward pass (per actor call)")
    codec_batch_size: int = setting(8, "records per read/decode and encode/write task batch")
    num_workers: int = setting(0, "model actors; 0 = auto: one per GPU, or on CPU one per 8 cores, together "
                                  "one torch thread per core")
    cpus_per_worker: float = setting(0.0, "CPUs Ray reserves per model actor (and its torch threads when set); "
                                          "0 = auto: all CPUs but one, shared by the actors")
    gpus_per_worker: Optional[float] = setting(None, "GPUs per model actor; 0 = run on CPU; null = 1 when the "
                                                     "cluster has GPUs, else 0")
    precision: str = setting("fp32", "auto (bf16 where the hardware computes bf16 natively, else fp32) | fp32 | "
                                     "bf16 (CPUs with AVX512-BF16/AMX, GPUs) | fp16 (GPUs); FFTs stay fp32")
    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint; null = AWS_ENDPOINT_URL, else AWS")
    verbose: bool = setting(False, "true: show Ray's own log lines and progress bars on the console")

    def worker_problems(self) -> list[str]:
        """Problems of the worker keys, one sentence each (``gpus_per_worker=null`` is resolved
        by ``pipelines.cluster.actor_pool.plan_actors``, which applies ``device_problem`` then)."""
        problems = at_least_one(self, "batch_size", "codec_batch_size")
        problems += non_negative(self, "num_workers", "cpus_per_worker")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            problems.append(f"gpus_per_worker must be >= 0 or null, got {self.gpus_per_worker}")
        problems += choices(self, precision=PRECISION_CHOICES)
        if self.gpus_per_worker is not None and (problem := device_problem(self.precision, self.gpus_per_worker)):
            problems.append(problem)
        return problems


def device_problem(precision: str, gpus: float) -> str | None:
    """The one rule between precision and device: fp16 runs on GPUs only. ``gpus``: GPUs per
    worker as given, or as ``pipelines.cluster.actor_pool.plan_actors`` resolved ``null``."""
    if precision == "fp16" and gpus <= 0:
        return "precision=fp16 needs a GPU (gpus_per_worker > 0); use fp32 or bf16 on CPU"
    return None
