"""Connecting a job to Ray: the cluster in ``RAY_ADDRESS`` when set (``ray job submit``
sets it), else a fresh local instance sized for a laptop."""
from __future__ import annotations

import os

import ray

# The object store only buffers blocks between stages (Ray Data streams and backpressures),
# so it needs far less than Ray's default of 30% of RAM; capping it leaves memory for the
# decoded images in worker heaps and for the model.
_OBJECT_STORE_FRACTION = 0.2
_OBJECT_STORE_MIN = 512 * 2**20
_OBJECT_STORE_MAX = 8 * 2**30


def local_object_store_bytes() -> int:
    """Object store size for a local instance: 20% of RAM, clamped to [512 MiB, 8 GiB]."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(max(total * _OBJECT_STORE_FRACTION, _OBJECT_STORE_MIN), _OBJECT_STORE_MAX))


def init_ray() -> str:
    """Make sure this process is connected to Ray. Returns how: ``"existing"`` (already
    initialised, e.g. by a test session), ``"joined"`` (the cluster in ``RAY_ADDRESS``) or
    ``"local"`` (a new single-node instance without the dashboard)."""
    if ray.is_initialized():
        return "existing"
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return "joined"
    # address="local": never attach to some other instance found on this machine.
    ray.init(address="local", include_dashboard=False, object_store_memory=local_object_store_bytes())
    return "local"
