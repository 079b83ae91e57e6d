"""Column batches of the Ray Data stages: rows -> columns with fixed dtypes, batched reads of
record files (bytes or the exception, per path), and the empty arrays of an error row."""
from __future__ import annotations

from typing import Any

import fsspec
import numpy as np

from pipelines.common.retry import RetryPolicy, read_files
from pipelines.common.storage import message_line
from pipelines.records.codecs import RecordError


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

