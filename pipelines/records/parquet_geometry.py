"""Parquet input with mask geometry: an optional ``geometry`` column (JSON text or bytes
per row: ``boxes``, ``polygons``, ``rle`` as ``lama_core.mask_geometry`` reads them; null
= no geometry) beside ``id``, ``image`` and the optional ``mask``."""
from __future__ import annotations

import fsspec
import pyarrow.parquet as pq

#: Name of the Parquet column holding a row's mask geometry as JSON.
GEOMETRY_COLUMN = "geometry"


def split_by_geometry(fs: fsspec.AbstractFileSystem,
                      groups: tuple[tuple[list[str], list[str]], ...]) -> list[tuple[list[str], list[str]]]:
    """``(shards, columns)`` read groups -> the same groups split by whether each shard has
    a ``geometry`` column (then it is added to the columns), since one Ray read takes one
    column selection. Reads each shard's footer only. Empty groups are dropped."""
    out = []
    for shards, columns in groups:
        with_geometry, without = [], []
        for path in shards:
            with fs.open(path, "rb") as f:
                names = pq.ParquetFile(f).schema_arrow.names
            (with_geometry if GEOMETRY_COLUMN in names else without).append(path)
        out += [(s, c) for s, c in ((with_geometry, columns + [GEOMETRY_COLUMN]), (without, columns)) if s]
    return out
