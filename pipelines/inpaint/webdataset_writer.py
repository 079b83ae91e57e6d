"""WebDataset shards as output of the bulk inpainting job (``output_format=webdataset``).

Instead of ``OUTPUT/images/ID.png``, each batch of ``records_per_shard`` rows becomes one
shard ``OUTPUT/shards/RUN_UUID_nCOUNT.tar`` holding, per inpainted record, ``ID.png`` (the
result) and ``ID.json`` (its row of ``records/``), so a cleaned set drops back into a
WebDataset training pipeline. Error rows are in ``records/`` only. The ``output`` column of
a record is ``SHARD_URI#ID``.

Exactly once, also after a killed run: a shard is written before the rows naming it reach
``records/``, so at the start of every run ``reconcile_shards`` deletes shards that no
record names and rewrites in place those only some records name (``COUNT`` in the file
name says how many samples a shard was written with), keeping just the samples
``records/`` has.

A sample's key is the record id, and WebDataset readers cut keys at the first dot of the
file name: ids whose last part holds a dot (a folder image ``photo.v2.jpg``) make shards
that such readers group wrongly; the ``json`` member still holds the full id.
"""
from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from lama_core.storage import join_uri

from pipelines.common.task_retries import TASK_RETRIES
from pipelines.records.codecs import encode_image
from pipelines.common.error_kinds import MODEL, STORAGE
from pipelines.inpaint.record_writer import record_table, writer_columns
from pipelines.records.resume import read_records_file, records_files
from pipelines.common.storage import message_line
from pipelines.common.retry import RetryPolicy, write_file

_SHARD_NAME = re.compile(r"_n(\d+)\.tar$")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _json_value(value: Any) -> Any:
    """JSON form of a record value that ``json`` cannot write itself: NumPy scalars as
    Python numbers, timestamps as ISO 8601 text."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@dataclass(frozen=True)
class ShardWriteStage:
    """The writer stage of ``output_format=webdataset`` (instead of
    ``record_writer.ImageWriteStage``), as CPU tasks of ``num_cpus``: each batch of
    ``records_per_shard`` rows becomes one shard under ``shards_root`` (``shards_uri``) on
    ``out_fs``, its PNGs at ``png_compress_level``; writes retried per ``retry``. Rows carry
    ``model_id`` and ``run_id``; ``partitioned``: add the records' ``shard`` partition column
    (Parquet input). ``fence``: as ``record_writer.ImageWriteStage``'s, checked before a
    shard is written."""

    out_fs: fsspec.AbstractFileSystem
    shards_root: str
    shards_uri: str
    png_compress_level: int
    model_id: str
    run_id: str
    retry: RetryPolicy
    partitioned: bool
    records_per_shard: int
    num_cpus: float
    fence: Any = None

    def apply(self, ds: Any) -> Any:
        return ds.map_batches(write_shard_batch, fn_kwargs={"stage": self}, batch_size=self.records_per_shard,
                              num_cpus=self.num_cpus,
                              max_retries=TASK_RETRIES)


def write_shard_batch(batch: dict[str, Any], stage: ShardWriteStage) -> pa.Table:
    """One batch of ``ShardWriteStage``: encode each ``result`` as PNG, write the batch's ok
    rows as one shard (``ID.png`` + ``ID.json``), return the ``RECORD_SCHEMA`` rows. When the
    shard cannot be written, its rows become ``storage`` error rows naming it (redone by
    the next run)."""
    n = len(batch["id"])
    status, error, kind, seconds = writer_columns(batch)
    pngs: dict[int, bytes] = {}
    for i in range(n):
        if status[i] != "ok":
            continue
        start = time.perf_counter()
        try:
            pngs[i] = encode_image(batch["result"][i], "png", stage.png_compress_level)
        except Exception as exc:
            status[i], kind[i] = "error", MODEL
            error[i] = f"cannot encode output for {batch['source'][i]}: {type(exc).__name__}: {exc}"
        seconds[i] += time.perf_counter() - start
    ok = sorted(pngs)
    name = f"{stage.run_id}_{uuid.uuid4().hex[:12]}_n{len(ok)}.tar"
    uri = join_uri(stage.shards_uri, name)
    output: list[str | None] = [f"{uri}#{batch['id'][i]}" if i in pngs else None for i in range(n)]
    table = record_table(batch, status, error, kind, output, seconds, stage.model_id, stage.run_id,
                         stage.partitioned)
    if not ok:
        return table
    if stage.fence is not None:
        stage.fence.check()  # raises LeaseLost: this run may write nothing more
    start = time.perf_counter()
    try:
        rows = table.to_pylist()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for i in ok:
                rid = str(batch["id"][i])
                _add(tar, f"{rid}.png", pngs[i])
                _add(tar, f"{rid}.json", json.dumps(rows[i], default=_json_value).encode())
        write_file(stage.out_fs, f"{stage.shards_root}/{name}", buf.getvalue(), stage.retry)
    except Exception as exc:
        for i in ok:
            status[i], output[i], kind[i] = "error", None, STORAGE
            error[i] = (f"cannot write output shard {uri} for {batch['source'][i]}: {type(exc).__name__}: "
                        f"{message_line(exc)}")
        return record_table(batch, status, error, kind, output, seconds, stage.model_id, stage.run_id,
                            stage.partitioned)
    share = (time.perf_counter() - start) / len(ok)
    return table.set_column(table.schema.get_field_index("seconds"), "seconds",
                            pa.array([s + (share if i in pngs else 0.0) for i, s in enumerate(seconds)],
                                     pa.float64()))


def reconcile_shards(fs: fsspec.AbstractFileSystem, out_root: str) -> tuple[int, int]:
    """Make ``OUTPUT/shards/`` hold exactly the samples that ``OUTPUT/records/`` names (see
    the module docstring). Returns ``(shards deleted, shards rewritten)``."""
    shards_root = f"{out_root}/shards"
    if not fs.exists(shards_root):
        return 0, 0
    named: dict[str, set[str]] = {}
    for path in records_files(fs, f"{out_root}/records", recursive=True):
        # A torn records file is set aside here already (its ids are redone, so its shard
        # samples go too); the resume scan then no longer sees it.
        table = read_records_file(fs, path, ["output"])
        if table is None or "output" not in table.column_names:
            continue
        for output in table.column("output").to_pylist():
            if output and "#" in output:
                shard, rid = output.split("#", 1)
                named.setdefault(shard.rsplit("/", 1)[-1], set()).add(rid)
    deleted = rewritten = 0
    for path in sorted(fs.glob(f"{shards_root}/*.tar")):
        name = path.rsplit("/", 1)[-1]
        match = _SHARD_NAME.search(name)
        keep = named.get(name, set())
        if match and len(keep) == int(match.group(1)):
            continue
        if not keep:
            fs.rm(path)
            deleted += 1
            continue
        rewritten += _rewrite(fs, path, keep)
    if deleted or rewritten:
        print(f"output shards: removed {deleted} and rewrote {rewritten} shards of an interrupted run "
              "(their samples are redone)", file=sys.stderr)
    return deleted, rewritten


def _rewrite(fs: fsspec.AbstractFileSystem, path: str, keep: set[str]) -> bool:
    """Rewrite the shard at ``path`` in place with only the samples whose id is in ``keep``
    (the records name it, so it keeps its name). Returns False when it held no others."""
    buf = io.BytesIO()
    dropped = 0
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as src, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for info in src:
            if not info.isreg():
                continue
            if info.name.rsplit(".", 1)[0] in keep:
                dst.addfile(info, src.extractfile(info))
            else:
                dropped += 1
    if dropped:
        fs.pipe_file(path, buf.getvalue())
    return bool(dropped)
