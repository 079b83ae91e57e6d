"""Connecting a job to Ray: the cluster in ``RAY_ADDRESS`` when set (``ray job submit``
sets it), else a fresh local instance sized for a laptop."""
from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Callable, TypeVar

import ray

T = TypeVar("T")

# The object store only buffers blocks between stages (Ray Data streams and backpressures),
# so it needs far less than Ray's default of 30% of RAM; capping it leaves memory for the
# decoded images in worker heaps and for the model.
_OBJECT_STORE_FRACTION = 0.2
_OBJECT_STORE_MIN = 512 * 2**20
_OBJECT_STORE_MAX = 8 * 2**30


#: What ``init_ray``'s answer means, for the job's console line.
RAY_CONNECTION = {"existing": "on this process's Ray", "joined": "joined the Ray cluster in RAY_ADDRESS",
                  "local": "started a local Ray"}


def local_object_store_bytes() -> int:
    """Object store size for a local instance: 20% of RAM, clamped to [512 MiB, 8 GiB]."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(max(total * _OBJECT_STORE_FRACTION, _OBJECT_STORE_MIN), _OBJECT_STORE_MAX))


def quiet_ray(verbose: bool = False) -> None:
    """Keep Ray's own console output (worker log lines, Ray Data's per-operator progress
    bars and its execution banners) off the user's console unless ``verbose``; it still
    goes to Ray's log files (``/tmp/ray/session_latest/logs``)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        # ERROR: Ray's warnings here are about its own set-up (token auth of a local
        # instance, progress bars being off), not about the user's job.
        for name in ("ray", "ray.data", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # Ray's notices about its own API's future, not about the user's job.
        from ray.util.annotations import RayDeprecationWarning

        warnings.filterwarnings("ignore", category=RayDeprecationWarning)


#: How this process's own ``init_ray`` connected ("" until it did), and whether quietly.
_connected = ""
_quiet = True


def init_ray(verbose: bool = False) -> str:
    """Make sure this process is connected to Ray. Returns how: ``"existing"`` (already
    initialised, e.g. by a test session), ``"joined"`` (the cluster in ``RAY_ADDRESS``) or
    ``"local"`` (a new single-node instance without the dashboard). Unless ``verbose``,
    Ray's own log lines stay in its log files (``quiet_ray``)."""
    global _connected, _quiet
    quiet_ray(verbose)
    _quiet = not verbose
    if ray.is_initialized():
        # Started by an earlier call of this process (same answer again), or by someone else.
        return _connected or "existing"
    address = os.environ.get("RAY_ADDRESS")
    quiet = {} if verbose else {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **quiet)
        _connected = "joined"
    else:
        # address="local": never attach to some other instance found on this machine.
        ray.init(address="local", include_dashboard=False, object_store_memory=local_object_store_bytes(), **quiet)
        _connected = "local"
    return _connected


def init_ray_during(work: Callable[[], T], verbose: bool = False) -> tuple[str, T]:
    """``init_ray(verbose)`` in this thread while ``work()`` runs in another; returns
    ``(init_ray's answer, work's result)``.

    Starting a local Ray takes seconds that are mostly waits on its processes (its API
    server, the raylet's registration); a job's own preparation (importing torch, loading
    a model) fits into them: on 2 cores, 3-4 s less before the first batch
    (benchmarks/RESULTS.md). Ray is initialised here, in the calling (main) thread, because
    a Ray initialised from another thread hangs on its first remote call (Ray 2.60).

    When ``work`` raises, its exception is raised once Ray is up, after a local Ray started
    here is stopped again (``release_local_ray``); when only ``init_ray`` raises, its
    exception is raised once ``work`` has finished.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            outcome["error"] = exc

    # daemon: a second Ctrl-C, during the join below, ends the process without waiting for
    # the model load (the first one still waits: the join runs on every way out).
    helper = threading.Thread(target=run, name="job-prepare", daemon=True)
    helper.start()
    try:
        how = init_ray(verbose)
    finally:
        helper.join()
        if "error" in outcome:
            release_local_ray()
            raise outcome["error"]  # type: ignore[misc]
    return how, outcome["value"]  # type: ignore[return-value]


def release_local_ray() -> None:
    """Stop the local Ray instance this process's ``init_ray`` started, if any, now instead
    of in Ray's exit hook, which first waits 0.5 s for worker log lines that a quiet run
    never forwards (a verbose run keeps the wait). Anything else is left running: a joined
    cluster, or a Ray someone else started (a test session)."""
    global _connected
    if _connected == "local" and _quiet and ray.is_initialized():
        ray.shutdown()
        _connected = ""
