"""The output layout of an evaluation (``jobs/evaluate.py``), and its two Parquet tables.

Under ``OUTPUT`` (docs/DESIGN.md, "Job interfaces")::

    OUTPUT/per_image/<pair>.parquet   one row per image x checkpoint x mask set
    OUTPUT/summary/<pair>.parquet     one row per checkpoint x mask set x hole-area bin, plus ``all``
                                      (written last: its ``status='ok'`` rows mark the pair done)
    OUTPUT/samples/<pair>.png         input with hole | output | ground truth, a few images
    OUTPUT/plots/<mask set>.png       each metric against training step
    OUTPUT/cache/real-features-<key>.npz   ground-truth features per image (``eval_references``)

``<pair>`` is ``pair_key(checkpoint, mask_set)``: deterministic, so a pair that is redone
overwrites its files instead of duplicating rows. ``EvalLayout`` owns these paths.
"""
from __future__ import annotations

import hashlib
import io
import re
import sys
from dataclasses import dataclass
from typing import Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lama_core.checkpoint import GENERATOR_FILE
from lama_core.metrics import METRICS
from lama_core.storage import join_uri, write_atomic

from pipelines.records.timestamps import UTC_TIMESTAMP

#: Per-image metric columns of the built-in metrics; every table carries all of them (null
#: when not requested), so ``pq.read_table(OUTPUT/per_image)`` sees one schema.
PER_IMAGE_METRIC_COLUMNS = ("psnr", "psnr_hole", "ssim", "ssim_hole", "l1", "l1_hole", "lpips")
SUMMARY_METRIC_COLUMNS = PER_IMAGE_METRIC_COLUMNS + ("fid",)


def per_image_metric_columns(metrics: Sequence[str]) -> list[str]:
    """Float columns of ``OUTPUT/per_image``: the built-in ones plus those of other
    registered per-image metrics in ``metrics`` (set-level metrics such as fid carry
    feature rows, not per-image numbers)."""
    extra = [c for name in metrics if METRICS[name].reduce is None for c in METRICS[name].columns]
    return list(dict.fromkeys(list(PER_IMAGE_METRIC_COLUMNS) + extra))


def summary_metric_columns(metrics: Sequence[str]) -> list[str]:
    """Float columns of ``OUTPUT/summary``: the built-in ones plus the per-image columns of
    other registered per-image metrics and the names of set-level ones in ``metrics``."""
    extra = [c for name in metrics
             for c in (METRICS[name].columns if METRICS[name].reduce is None else (name,))]
    return list(dict.fromkeys(list(SUMMARY_METRIC_COLUMNS) + extra))


def per_image_schema(metrics: Sequence[str]) -> pa.Schema:
    """Schema of ``OUTPUT/per_image/*.parquet``: one row per image × checkpoint × mask set."""
    fields = [("checkpoint", pa.string()), ("step", pa.int64()), ("mask_set", pa.string()), ("id", pa.string()),
              ("index", pa.int64()), ("source", pa.string()), ("mask_source", pa.string()), ("status", pa.string()),
              ("error", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
              ("hole_fraction", pa.float64()), ("hole_area_bin", pa.string()), ("mask_resized", pa.bool_()),
              ("converted", pa.bool_())]
    fields += [(c, pa.float64()) for c in per_image_metric_columns(metrics)]
    fields += [("seconds", pa.float64()), ("run", pa.string()), ("timestamp", UTC_TIMESTAMP)]
    return pa.schema(fields)


def summary_schema(metrics: Sequence[str]) -> pa.Schema:
    """Schema of ``OUTPUT/summary/*.parquet``: one row per checkpoint × mask set × non-empty
    hole-area bin, plus ``all`` (the only row of a pair whose checkpoint failed: ``status``
    ``error``, ``error`` saying why)."""
    fields = [("checkpoint", pa.string()), ("step", pa.int64()), ("mask_set", pa.string()),
              ("mask_set_id", pa.string()), ("hole_area_bin", pa.string()),
              ("n", pa.int64()), ("n_error", pa.int64()), ("status", pa.string()), ("error", pa.string())]
    fields += [(c, pa.float64()) for c in summary_metric_columns(metrics)]
    fields += [("data", pa.string()), ("metrics", pa.string()), ("seconds", pa.float64()), ("run", pa.string()),
               ("timestamp", UTC_TIMESTAMP)]
    return pa.schema(fields)


def rows_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Row dicts -> a table of ``schema`` (missing keys null; NumPy scalars made plain)."""
    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    return pa.Table.from_pylist([{f.name: plain(r.get(f.name)) for f in schema} for r in rows], schema=schema)


def pair_key(checkpoint: str, mask_set: str) -> str:
    """File-name stem of a pair's outputs: readable checkpoint and mask-set names plus a short
    hash of the full checkpoint URI (two runs may both have a ``checkpoint_000100``)."""
    parts = [p for p in checkpoint.rstrip("/").split("/") if p]
    if parts and parts[-1] == GENERATOR_FILE and len(parts) > 1:
        parts = parts[:-1]
    name = _safe_name(parts[-1] if parts else "checkpoint")[-60:]
    digest = hashlib.sha256(f"{checkpoint}\n{mask_set}".encode()).hexdigest()[:8]
    return f"{name}__{_safe_name(mask_set)}__{digest}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@dataclass(frozen=True)
class EvalLayout:
    """The evaluation output at ``uri`` (as given, local paths absolute): ``fs`` and its
    path ``root``. Methods give each file's filesystem path (``*_path``) and URI (``*_uri``),
    write them atomically and read the summary table back."""

    uri: str
    fs: fsspec.AbstractFileSystem
    root: str

    TABLES = ("per_image", "summary")

    def per_image_path(self, key: str) -> str:
        """``OUTPUT/per_image/KEY.parquet`` on ``fs`` (``key``: ``pair_key``)."""
        return f"{self.root}/per_image/{key}.parquet"

    def per_image_uri(self, key: str) -> str:
        """The URI of ``per_image_path(key)``."""
        return join_uri(self.uri, "per_image", f"{key}.parquet")

    def summary_path(self, key: str) -> str:
        """``OUTPUT/summary/KEY.parquet`` on ``fs``."""
        return f"{self.root}/summary/{key}.parquet"

    def summary_uri(self, key: str = "") -> str:
        """A pair's summary file, or (no ``key``) the summary folder."""
        return join_uri(self.uri, "summary", f"{key}.parquet" if key else "")

    def samples_path(self, key: str) -> str:
        """``OUTPUT/samples/KEY.png`` on ``fs``."""
        return f"{self.root}/samples/{key}.png"

    def samples_uri(self, key: str = "") -> str:
        """A pair's sample grid, or (no ``key``) the samples folder."""
        return join_uri(self.uri, "samples", f"{key}.png" if key else "")

    def plot_path(self, mask_set: str) -> str:
        """``OUTPUT/plots/<mask set>.png`` on ``fs`` (the name made file-safe)."""
        return f"{self.root}/plots/{_safe_name(mask_set)}.png"

    def plot_uri(self, mask_set: str) -> str:
        """The URI of ``plot_path(mask_set)``."""
        return join_uri(self.uri, "plots", f"{_safe_name(mask_set)}.png")

    @property
    def cache_uri(self) -> str:
        """The folder of cached ground-truth features (``OUTPUT/cache``)."""
        return join_uri(self.uri, "cache")

    def table_uri(self, table: str) -> str:
        """The folder of one of ``TABLES``."""
        return join_uri(self.uri, table)

    def write_table(self, path: str, table: pa.Table) -> None:
        """Write ``table`` as Parquet to ``path``, atomically (readers never see half a file)."""
        buf = io.BytesIO()
        pq.write_table(table, buf)
        write_atomic(self.fs, path, buf.getvalue())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` (a PNG) to ``path``, atomically."""
        write_atomic(self.fs, path, data)

    def read_summaries(self) -> list[dict]:
        """All rows of ``OUTPUT/summary/*.parquet`` as dicts. An unreadable file (a run killed
        while writing it) is skipped with a warning; its pairs count as not evaluated."""
        root = f"{self.root}/summary"
        if not self.fs.exists(root):
            return []
        rows: list[dict] = []
        # Listed, never globbed: the output path may hold glob characters ([, ?, *).
        for path in sorted(str(p) for p in self.fs.ls(root, detail=False) if str(p).endswith(".parquet")):
            try:
                with self.fs.open(path, "rb") as f:
                    for row in pq.read_table(f).to_pylist():
                        if "bin" in row:  # tables written before the column was named hole_area_bin
                            row["hole_area_bin"] = row.pop("bin")
                        rows.append(row)
            except Exception as exc:  # noqa: BLE001 - any damage means "redo"
                print(f"warning: cannot read summary file {path} ({type(exc).__name__}); its pairs will be "
                      "evaluated again", file=sys.stderr)
        return rows

    def remove_tables(self) -> int:
        """Delete ``OUTPUT/per_image/*.parquet`` and ``OUTPUT/summary/*.parquet`` (nothing else:
        paths are listed, never globbed). Returns the number of files removed."""
        removed = 0
        for table in self.TABLES:
            root = f"{self.root}/{table}"
            if not self.fs.exists(root):
                continue
            files = [p for p in self.fs.ls(root, detail=False) if str(p).endswith(".parquet")]
            for path in files:
                self.fs.rm_file(path)
            removed += len(files)
        return removed


def done_pairs(summary_rows: list[dict]) -> set[tuple[str, str, str | None]]:
    """``(checkpoint, mask set name, mask set content id)`` of the pairs evaluated
    successfully: the rerun skip key (a mask folder rewritten with other masks has another
    id, so its pairs are scored again)."""
    return {(r["checkpoint"], r["mask_set"], r.get("mask_set_id")) for r in summary_rows if r.get("status") == "ok"}
