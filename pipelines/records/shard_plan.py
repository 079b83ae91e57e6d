"""Planning and resuming a job over Parquet shards without holding its ids in one process.

Records of Parquet input are written partitioned by input shard:
``OUTPUT/records/shard=<key>/*.parquet``, ``key = shard_key(shard URI)``. The records of
a shard are then its *completion manifest*: which of its ids are done. Planning runs one
Ray task per input shard, in parallel (``plan_shard``): it reads the shard's ``id`` column
and its records partition, drops the partition's retryable rows (``resume_state``),
and returns counts only. A shard partly done also gets a skip list (its done ids,
``OUTPUT/_plan/<run>/<key>.parquet``) that the decode stage reads, once per process, to
drop those rows. The driver holds a few numbers and paths per shard: its memory grows
with the shard count, not the record count (``benchmarks/bench_planning.py``).

Duplicate ids across shards are found without gathering them in the driver: each
planning task hashes its ids to 64 bits and sends each of up to ``DUP_BUCKETS`` hash classes
to its bucket actor (``HashBucket``); each bucket then finds hashes seen twice and the
shards that hold them; only the ids behind those (few) hashes are compared exactly. The
hashes never pass through the driver (small task results are stored in their owner's
memory: returned to the driver, 8 bytes per id would have grown it with the record count).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lama_core.storage import is_local

from pipelines.common.errors import JobError
from pipelines.records.listing import ShardProblem, read_shard_ids
from pipelines.records.resume import RecordCounts, records_files, scan_records_file, write_table_atomically
from pipelines.common.retry import RetryPolicy, call_with_retry

#: Name of the records partition column (``records/shard=<key>/``).
PARTITION = "shard"
DUP_BUCKETS = 16
_MAX_REPORTED = 3


def shard_key(uri: str) -> str:
    """Partition value of an input shard: 16 hex digits of ``sha256(URI)`` (stable, and a
    safe folder name whatever characters the URI holds)."""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]


def id_hashes(ids: pa.Array) -> np.ndarray:
    """uint64 hashes of string ids (pandas' vectorised SipHash), for duplicate detection."""
    from pandas.util import hash_array

    return hash_array(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object))


@dataclass
class ShardPlan:
    """One input shard: its counts and what the decode stage needs to know."""

    path: str
    uri: str
    has_mask: bool = False
    total: int = 0
    counts: RecordCounts = field(default_factory=RecordCounts)
    skip_list: str = ""  # path of the done ids to drop while decoding ("" when none are done)
    problem: str = ""  # why the shard cannot be used (missing columns, null or repeated ids, unreadable)

    @property
    def todo(self) -> int:
        return self.total - self.counts.done


class HashBucket:
    """Ray actor holding the id hashes of one bucket (``hash % bucket count``) of every shard."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.owners: list[int] = []

    def add(self, shard_index: int, hashes: np.ndarray) -> None:
        self.parts.append(hashes)
        self.owners.append(shard_index)

    def repeated(self) -> list[tuple[int, list[int]]]:
        """``repeated_hashes`` over everything added; frees the hashes."""
        by_shard: dict[int, list[np.ndarray]] = {}
        for i, part in zip(self.owners, self.parts):
            by_shard.setdefault(i, []).append(part)
        self.parts, self.owners = [], []
        if not by_shard:
            return []
        indices = sorted(by_shard)
        hits = repeated_hashes(*[np.concatenate(by_shard[i]) for i in indices])
        return [(h, [indices[k] for k in owners]) for h, owners in hits]


@dataclass(frozen=True)
class PlanRequest:
    """What planning a run's Parquet shards needs besides the shards: the input and output
    filesystems, the records folder (``OUTPUT/records``), the folder of this run's skip
    lists, which error rows count as done (``retry_errors``), whether retryable rows leave
    their records files now (``drop_retryable``; not in a dry run), and the storage retry
    ``policy``."""

    in_fs: fsspec.AbstractFileSystem
    out_fs: fsspec.AbstractFileSystem
    records_root: str
    plan_root: str
    retry_errors: bool
    drop_retryable: bool
    policy: RetryPolicy


def plan_shard(request: PlanRequest, index: int, path: str, uri: str, buckets: list[Any] | None = None) -> ShardPlan:
    """Plan the shard ``index`` at ``path`` (``uri``; see the module docstring) and send its
    id hashes, split by ``hash % len(buckets)``, to the ``buckets`` actors (none when the
    shard has a problem: ``ShardPlan.problem`` says which)."""
    plan = ShardPlan(path, uri)
    try:
        names, ids = read_shard_ids(request.in_fs, path, uri, request.policy)
    except ShardProblem as exc:  # reported by the driver, with the shard's name
        plan.problem = str(exc)
        return plan
    plan.has_mask, plan.total = "mask" in names, len(ids)
    hashes = id_hashes(ids)
    out_fs, plan_root = request.out_fs, request.plan_root
    partition = f"{request.records_root.rstrip('/')}/{PARTITION}={shard_key(uri)}"
    done: list[str] = []
    for records_file in records_files(out_fs, partition):
        got = scan_records_file(out_fs, records_file, request.retry_errors, request.drop_retryable, request.policy)
        done.extend(got.final_ids)
        plan.counts.add(got.counts)
    if done and plan.todo > 0:
        plan.skip_list = f"{plan_root.rstrip('/')}/{shard_key(uri)}.parquet"
        if is_local(out_fs):
            os.makedirs(plan_root, exist_ok=True)
        table = pa.table({"id": pa.array(done, pa.string())})
        call_with_retry(lambda: write_table_atomically(out_fs, plan.skip_list, table), request.policy)
    if buckets:
        import ray

        # Wait for the adds: the driver asks the buckets for repeats once every task returned.
        n = len(buckets)
        ray.get([bucket.add.remote(index, hashes[hashes % n == b]) for b, bucket in enumerate(buckets)])
    return plan


def repeated_hashes(*buckets: np.ndarray) -> list[tuple[int, list[int]]]:
    """``[(hash, [shard indices])]`` for hashes that occur more than once over the given
    arrays (array ``i`` holds the hashes of shard ``i``), at most 1000."""
    if not buckets:
        return []
    values = np.concatenate(buckets)
    owners = np.concatenate([np.full(len(b), i, np.int32) for i, b in enumerate(buckets)])
    order = np.argsort(values, kind="stable")
    values, owners = values[order], owners[order]
    repeated = np.nonzero(values[1:] == values[:-1])[0]
    out: dict[int, set[int]] = {}
    for k in repeated[:1000]:
        out.setdefault(int(values[k]), set()).update((int(owners[k]), int(owners[k + 1])))
    return [(h, sorted(s)) for h, s in out.items()]


def ids_with_hashes(in_fs: fsspec.AbstractFileSystem, path: str, wanted: list[int]) -> list[str]:
    """Ids of one shard whose hash is in ``wanted`` (the exact check behind a repeated hash)."""
    with in_fs.open(path, "rb") as f:
        ids = pq.read_table(f, columns=["id"]).column("id").combine_chunks().cast(pa.string())
    mask = np.isin(id_hashes(ids), np.array(wanted, np.uint64))
    return [str(x) for x in ids.filter(pa.array(mask)).to_pylist()]


@dataclass
class ShardListing:
    """The plan over all shards: per-shard plans of shards with work left, and totals."""

    shards: list[ShardPlan] = field(default_factory=list)
    total: int = 0
    counts: RecordCounts = field(default_factory=RecordCounts)
    shard_count: int = 0


def plan_shards(request: PlanRequest, shards: list[tuple[str, str]]) -> ShardListing:
    """Plan every ``(path, uri)`` shard in parallel Ray tasks (Ray must be initialised).
    Raises ``JobError`` for unusable shards and for ids repeated within or across shards."""
    import ray

    # One bucket actor per 256 shards, at most DUP_BUCKETS: 10^8 ids in 10^4 shards are
    # 16 actors of ~50 MB of hashes each; a small job starts one.
    buckets = [ray.remote(num_cpus=0)(HashBucket).remote() for _ in range(min(DUP_BUCKETS, 1 + len(shards) // 256))]
    try:
        return _plan_with_buckets(request, shards, buckets)
    finally:
        for bucket in buckets:
            ray.kill(bucket)


def _plan_with_buckets(request: PlanRequest, shards: list[tuple[str, str]], buckets: list[Any]) -> ShardListing:
    import ray

    task = ray.remote(num_cpus=0.5)(plan_shard)
    refs = [task.remote(request, i, path, uri, buckets) for i, (path, uri) in enumerate(shards)]
    listing = ShardListing(shard_count=len(shards))
    problems = []
    for plan in ray.get(refs):
        if plan.problem:
            problems.append(plan.problem)
            continue
        listing.total += plan.total
        listing.counts.add(plan.counts)
        if plan.todo > 0:
            listing.shards.append(plan)
    if problems:
        raise JobError(f"{len(problems)} unusable Parquet shards: {problems[0]}")
    # Duplicate ids: each bucket actor reduces its hashes; exact check only behind repeats.
    found = [hit for hits in ray.get([b.repeated.remote() for b in buckets]) for hit in hits]
    del refs
    if found:
        by_shard: dict[int, list[int]] = {}
        for h, owners in found:
            for i in owners:
                by_shard.setdefault(i, []).append(h)
        seen: dict[str, int] = {}
        for i, wanted in by_shard.items():
            for rid in ids_with_hashes(request.in_fs, shards[i][0], wanted):
                seen[rid] = seen.get(rid, 0) + 1
        duplicates = sorted(rid for rid, n in seen.items() if n > 1)
        if duplicates:
            raise JobError(f"Parquet input has {len(duplicates)}{'+' if len(found) >= 1000 else ''} duplicate ids "
                           f"(e.g. {duplicates[:_MAX_REPORTED]}): ids must be unique, each names one output row")
    return listing


_SKIP_CACHE: dict[str, frozenset] = {}


def done_ids(out_fs: fsspec.AbstractFileSystem, skip_list: str) -> frozenset:
    """The ids of a skip list, read once per process (the decode stage calls this for every
    batch of a partly done shard)."""
    if skip_list not in _SKIP_CACHE:
        if len(_SKIP_CACHE) > 64:  # a worker moves on through the shards: keep memory bounded
            _SKIP_CACHE.clear()
        with out_fs.open(skip_list, "rb") as f:
            _SKIP_CACHE[skip_list] = frozenset(pq.read_table(f).column("id").to_pylist())
    return _SKIP_CACHE[skip_list]


def remove_plan(out_fs: fsspec.AbstractFileSystem, plan_root: str) -> None:
    """Delete a run's skip lists (literal paths, no glob)."""
    try:
        if is_local(out_fs):
            shutil.rmtree(plan_root, ignore_errors=True)
        else:
            for path in out_fs.find(plan_root):
                out_fs.rm_file(path)
    except Exception:  # noqa: BLE001 - leftovers are harmless: the next run writes its own
        pass
