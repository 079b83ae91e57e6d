"""What earlier runs left in ``OUTPUT/records/``: which ids are final, which are to be
retried, and making the retried ones disappear before they are redone.

Every id appears at most once under ``records/``; after a run that finished, exactly once.
A rerun redoes ids that are absent (never done, or lost with a killed run's unwritten
files) and ids whose error row is retryable (``pipelines.common.error_kinds.retried``). A
retried row is *replaced*, not shadowed: before the run starts, each records file that
holds retryable rows is rewritten without them, atomically (a local file is written
beside it and renamed over it; an object store replaces a key in one PUT), so at every
moment, even if the run is killed, each id is in one file or in none. Readers need no
"latest row wins" rule: ``pq.read_table(OUTPUT/records)`` is the answer.

Records files are listed literally (``ls``), never with a glob: an output path holding
``*``, ``?`` or ``[...]`` names only itself. Every reader of them goes through
``read_records_file``, which sets aside (``_NAME.corrupt``) a file that is torn, too large, or
lacks the ``id``/``status`` columns, so its ids are redone instead of the job failing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from lama_core.storage import write_atomic

from pipelines.common.error_kinds import retried
from pipelines.common.retry import RetryPolicy, call_with_retry, is_transient
from pipelines.common.state_files import set_aside

#: A records file holds ``records_per_file`` rows of ~1 KB (1000 by default): one over
#: this size is not one a run wrote, and is set aside rather than read.
MAX_RECORDS_FILE_BYTES = 2**30
#: Columns a records file must have, with the Arrow types they may have.
_REQUIRED = {"id": (pa.string(), pa.large_string()), "status": (pa.string(), pa.large_string())}


def records_files(fs: fsspec.AbstractFileSystem, records_root: str, prefix: str = "",
                  recursive: bool = False) -> list[str]:
    """Sorted paths of ``RECORDS/<prefix>*.parquet`` (literal listing, no glob); with
    ``recursive``, also those in partition folders (``RECORDS/shard=KEY/``)."""
    root = records_root.rstrip("/")
    try:
        if recursive:
            entries = [{"name": p, "type": "file"} for p in fs.find(root, withdirs=False)]
        else:
            entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        path = entry["name"].rstrip("/")
        name = path.rsplit("/", 1)[-1]
        if entry.get("type") == "file" and name.endswith(".parquet") and name.startswith(prefix) \
                and (path == root or path.startswith(root + "/")):
            out.append(path)
    return sorted(out)


def write_table_atomically(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> None:
    """Replace ``path`` with ``table`` (Parquet) so that a reader (or a crash) sees the old
    file or the new one, never a partial one (``lama_core.storage.write_atomic``)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_atomic(fs, path, sink.getvalue().to_pybytes())


@dataclass
class RecordCounts:
    """Rows earlier runs left in ``records/``, by what a rerun does with them: ``ok`` and
    ``failed`` (error rows that stay: input errors without ``retry_errors``) are done;
    ``retryable`` error rows are redone."""

    ok: int = 0
    failed: int = 0
    retryable: int = 0

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def add(self, other: RecordCounts) -> None:
        """Add ``other``'s counts to these."""
        self.ok += other.ok
        self.failed += other.failed
        self.retryable += other.retryable


@dataclass
class FileState:
    """One records file: ids whose rows stay (final), and counts by outcome."""

    final_ids: list[str] = field(default_factory=list)
    counts: RecordCounts = field(default_factory=RecordCounts)
    unreadable: bool = False


def _records_problem(schema: pa.Schema) -> str | None:
    for name, types in _REQUIRED.items():
        if schema.get_field_index(name) < 0:
            return f"has no {name!r} column"
        if schema.field(name).type not in types:
            return f"has a {name!r} column of type {schema.field(name).type}, not strings"
    return None


def read_records_file(fs: fsspec.AbstractFileSystem, path: str, columns: list[str] | None,
                      policy: RetryPolicy = RetryPolicy()) -> pa.Table | None:
    """``columns`` (those of them it has; None: all) of the records file at ``path``, or
    None when it is not a records file a run wrote: torn (a run killed while writing it
    locally), over ``MAX_RECORDS_FILE_BYTES``, or without string ``id``/``status``
    columns. Such a file is set aside (``_NAME.corrupt``, one warning line) and its ids count
    as not done. Transient storage errors are retried per ``policy`` and then raised."""
    def read():
        size = fs.size(path)
        if size is not None and size > MAX_RECORDS_FILE_BYTES:
            raise ValueError(f"{size} bytes, over the limit of {MAX_RECORDS_FILE_BYTES}")
        with fs.open(path, "rb") as f:
            schema = pq.read_schema(f)
        problem = _records_problem(schema)
        if problem:
            raise ValueError(problem)
        wanted = None if columns is None else [c for c in columns if schema.get_field_index(c) >= 0]
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=wanted)

    try:
        return call_with_retry(read, policy)
    except Exception as exc:
        if is_transient(exc):
            raise
        why = str(exc).splitlines()[0][:80] if str(exc) else ""
        set_aside(fs, path, f"is not a readable records file ({type(exc).__name__}: {why})", "its records are redone")
        return None


def scan_records_file(fs: fsspec.AbstractFileSystem, path: str, retry_errors: bool, drop_retryable: bool,
                      policy: RetryPolicy = RetryPolicy()) -> FileState:
    """Read ``id``/``status``/``error_kind`` of one records file (``read_records_file``: a
    malformed file is set aside and its ids count as not done). With ``drop_retryable``,
    rewrite it without its retryable rows (atomically; a file left empty is deleted).
    Transient storage errors are retried per ``policy`` and then raised."""
    state = FileState()

    def read(columns):
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)

    table = read_records_file(fs, path, ["id", "status", "error_kind"], policy)
    if table is None:
        state.unreadable = True
        return state
    names = table.column_names
    ids = table.column("id").cast(pa.string()).to_pylist()
    status = table.column("status").to_pylist()
    kinds = table.column("error_kind").to_pylist() if "error_kind" in names else [None] * len(ids)
    keep = [s == "ok" or not retried(k, retry_errors) for s, k in zip(status, kinds)]
    counts = state.counts
    for rid, s, k in zip(ids, status, keep):
        if k:
            state.final_ids.append(rid)
            if s == "ok":
                counts.ok += 1
            else:
                counts.failed += 1
        else:
            counts.retryable += 1
    if drop_retryable and counts.retryable:
        full = call_with_retry(lambda: read(None), policy)
        kept = full.filter(pa.array(keep))
        if kept.num_rows:
            call_with_retry(lambda: write_table_atomically(fs, path, kept), policy)
        else:
            call_with_retry(lambda: fs.rm_file(path), policy)
    return state


@dataclass
class ResumeState:
    """What earlier runs did: ids final under ``records/`` and counts."""

    done: set[str] = field(default_factory=set)
    counts: RecordCounts = field(default_factory=RecordCounts)
    files: int = 0


def read_resume_state(fs: fsspec.AbstractFileSystem, records_root: str, retry_errors: bool, drop_retryable: bool,
                      policy: RetryPolicy = RetryPolicy()) -> ResumeState:
    """Scan every records file (``scan_records_file``) and gather the final ids."""
    state = ResumeState()
    for path in records_files(fs, records_root):
        got = scan_records_file(fs, path, retry_errors, drop_retryable, policy)
        state.done.update(got.final_ids)
        state.counts.add(got.counts)
        state.files += 1
    return state


def remove_records(fs: fsspec.AbstractFileSystem, records_root: str) -> int:
    """Delete ``RECORDS/**.parquet`` (for ``overwrite=true``; partitions too), listed
    literally. Returns how many."""
    files = records_files(fs, records_root, recursive=True)
    for path in files:
        fs.rm_file(path)
    return len(files)
