"""``OUTPUT/preview.png``: a contact sheet of what a bulk run did, for a person to look at.

One row per record: the input with its hole painted white | the output, for the first
``preview`` ok records of the run by id (a deterministic choice: the same run draws the same
sheet). Known pixels of an output are the input's own, so the input with its hole is drawn
from the output and the record's mask (``OUTPUT/masks/ID.png``); without a mask
(``write_masks=false``, WebDataset output) the row shows the output alone. Read from storage
after the pipeline, by the driver: a few images, whatever the job's size.
"""
from __future__ import annotations

import io
import tarfile

import fsspec
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from lama_core.storage import write_atomic

from pipelines.common.contact_sheet import contact_sheet_png, strip, with_hole
from pipelines.common.retry import RetryPolicy, call_with_retry

PREVIEW_FILE = "preview.png"


def first_ok_records(fs: fsspec.AbstractFileSystem, records_files: list[str], n: int) -> list[dict]:
    """The ``n`` ok rows with the smallest ids over ``records_files`` (``id``, ``output``,
    ``mask_output``), read one file at a time (memory bounded by a file's rows)."""
    best: list[dict] = []
    for path in records_files:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["id", "status", "output", "mask_output"])
        rows = [r for r in table.to_pylist() if r["status"] == "ok" and r["output"]]
        best = sorted(best + rows, key=lambda r: r["id"])[:n]
    return best


def _read_image(fs: fsspec.AbstractFileSystem, out_root: str, output_uri: str, rid: str, uri: str) -> np.ndarray:
    """uint8 ``H x W x 3`` of an output: a file under the output, or ``SHARD#ID`` (its PNG member)."""
    if "#" in uri:
        shard = uri.split("#", 1)[0].rsplit("/", 1)[-1]
        with fs.open(f"{out_root}/shards/{shard}", "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            data = tar.extractfile(f"{rid}.png").read()
    else:
        data = fs.cat_file(out_root + uri[len(output_uri.rstrip("/")):] if uri.startswith(output_uri) else uri)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def write_preview(fs: fsspec.AbstractFileSystem, out_root: str, output_uri: str, records_files: list[str], n: int,
                  policy: RetryPolicy) -> str:
    """Draw the contact sheet of the run whose ``records_files`` are given (see the module
    docstring) to ``OUTPUT/preview.png`` (written whole: ``write_atomic``). Returns its URI,
    or ``""`` when ``n`` is 0 or the run wrote no ok record. A record whose files cannot be
    read is left out of the sheet (its row in ``records/`` says what happened)."""
    if n <= 0:
        return ""
    rows = []
    for record in first_ok_records(fs, records_files, n):
        try:
            result = call_with_retry(lambda: _read_image(fs, out_root, output_uri, record["id"], record["output"]),
                                     policy)
            panels = [result]
            if record["mask_output"]:
                mask = call_with_retry(lambda: _read_image(fs, out_root, output_uri, record["id"],
                                                           record["mask_output"]), policy)[:, :, 0]
                panels = [with_hole(result, mask), result]
            rows.append(strip(panels))
        except Exception:  # noqa: BLE001 - a picture of the run, not part of its results
            continue
    if not rows:
        return ""
    write_atomic(fs, f"{out_root}/{PREVIEW_FILE}", contact_sheet_png(rows, "input with the hole | output"))
    return f"{output_uri.rstrip('/')}/{PREVIEW_FILE}"
