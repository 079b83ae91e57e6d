"""The output stage of the bulk inpainting job (``pipelines/inpaint/job.py``): encode each
result, write ``OUTPUT/images/ID.png``, and the rows of ``OUTPUT/records/`` (their schema).

Runs in Ray's CPU tasks beside the model actors; it imports neither torch nor the model,
so a codec worker starts in a fraction of a second instead of loading torch (~2.4 s of
CPU taken from the model on a small machine).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from lama_core.masks import mask_png
from lama_core.metrics.hole_area import hole_area_bin
from lama_core.storage import join_uri

from pipelines.common.task_retries import TASK_RETRIES
from pipelines.records.codecs import encode_image, output_extension
from pipelines.common.error_kinds import INPUT, MODEL, STORAGE
from pipelines.common.storage import message_line
from pipelines.records.timestamps import UTC_TIMESTAMP, utc_now
from pipelines.records.shard_plan import PARTITION, shard_key
from pipelines.common.retry import RetryPolicy, write_file


#: One row per record in OUTPUT/records/*.parquet (nulls where a value is unknown).
RECORD_SCHEMA = pa.schema([
    ("id", pa.string()), ("status", pa.string()), ("error", pa.string()), ("error_kind", pa.string()),
    ("source", pa.string()), ("mask_source", pa.string()), ("output", pa.string()), ("mask_output", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("processed_width", pa.int32()), ("processed_height", pa.int32()),
    ("hole_fraction", pa.float64()), ("hole_area_bin", pa.string()),
    ("mask_generated", pa.bool_()), ("mask_index", pa.int64()), ("mask_binarized", pa.bool_()),
    ("mask_clipped", pa.bool_()), ("converted", pa.bool_()), ("resized", pa.bool_()),
    ("psnr", pa.float64()), ("ssim", pa.float64()), ("psnr_hole", pa.float64()), ("ssim_hole", pa.float64()),
    ("hd_strategy", pa.string()), ("windows", pa.int32()),
    ("backend", pa.string()), ("precision", pa.string()), ("precision_fallback", pa.bool_()),
    ("model", pa.string()), ("model_hash", pa.string()), ("seconds", pa.float64()), ("run", pa.string()),
    ("timestamp", UTC_TIMESTAMP),
])
#: Flag columns: null on error rows (a record that failed may not have got that far).
_FLAGS = ("mask_generated", "mask_binarized", "mask_clipped", "converted", "resized", "precision_fallback")


def split_model_id(model_id: str) -> tuple[str, str | None]:
    """``URI@sha256:abc`` -> ``(URI, "sha256:abc")``; a preset id has no hash."""
    model, _, digest = model_id.partition("@sha256:")
    return model, (f"sha256:{digest}" if digest else None)


#: The quality columns the model stage fills for records with a known original (NaN otherwise).
METRIC_COLUMNS = ("psnr", "ssim", "psnr_hole", "ssim_hole")


@dataclass(frozen=True)
class ImageWriteStage:
    """The writer stage of ``output_format=png|jpg``, as CPU tasks of ``num_cpus`` over
    batches of ``batch_size`` rows: encodes each ``result`` (``output_format``,
    ``png_compress_level``, ``jpeg_quality``) and writes it to ``images_root/ID.png`` on
    ``out_fs`` (its URI under ``images_uri``), and with ``masks_root`` each ok record's mask
    (0/255 PNG) under ``masks_root`` (``masks_uri``); writes retried per ``retry``. Rows
    carry ``model_id`` and ``run_id``; ``partitioned``: add the records' ``shard`` partition
    column (Parquet input). ``fence`` (an ``output_lease.LeaseFence``, or None): checked
    before a batch writes anything, so a run that lost the output's lease stops there."""

    out_fs: fsspec.AbstractFileSystem
    images_root: str
    images_uri: str
    masks_root: str | None
    masks_uri: str
    output_format: str
    png_compress_level: int
    jpeg_quality: int
    model_id: str
    run_id: str
    retry: RetryPolicy
    partitioned: bool
    batch_size: int
    num_cpus: float
    fence: Any = None

    def apply(self, ds: Any) -> Any:
        return ds.map_batches(encode_batch, fn_kwargs={"stage": self}, batch_size=self.batch_size,
                              num_cpus=self.num_cpus,
                              max_retries=TASK_RETRIES)


def encode_batch(batch: dict[str, Any], stage: ImageWriteStage) -> pa.Table:
    """One batch of ``ImageWriteStage``: the final rows as a ``RECORD_SCHEMA`` table. A write
    that still fails after its retries makes a ``storage`` error row naming the output file
    (retried by the next run)."""
    n = len(batch["id"])
    ext = output_extension(stage.output_format)
    if stage.fence is not None:
        stage.fence.check()  # raises LeaseLost: this run may write nothing more
    status, error, kind, seconds = writer_columns(batch)
    output: list[str | None] = [None] * n
    mask_output: list[str | None] = [None] * n
    for i in range(n):
        if status[i] != "ok":
            continue
        rid = str(batch["id"][i])
        uri = join_uri(stage.images_uri, rid + ext)
        start = time.perf_counter()
        try:
            data = encode_image(batch["result"][i], stage.output_format, stage.png_compress_level,
                                stage.jpeg_quality)
        except Exception as exc:
            status[i], kind[i] = "error", MODEL
            error[i] = f"cannot encode output {uri} for {batch['source'][i]}: {type(exc).__name__}: {exc}"
            continue
        try:
            write_file(stage.out_fs, f"{stage.images_root}/{rid}{ext}", data, stage.retry)
            output[i] = uri
            if stage.masks_root and "mask" in batch:
                mask_uri = join_uri(stage.masks_uri, rid + ".png")
                write_file(stage.out_fs, f"{stage.masks_root}/{rid}.png", mask_png(batch["mask"][i]), stage.retry)
                mask_output[i] = mask_uri
        except Exception as exc:
            status[i], kind[i] = "error", STORAGE
            error[i] = f"cannot write output {uri} for {batch['source'][i]}: {type(exc).__name__}: {message_line(exc)}"
        seconds[i] += time.perf_counter() - start
    return record_table(batch, status, error, kind, output, seconds, stage.model_id, stage.run_id,
                        stage.partitioned, mask_output)


def writer_columns(batch: dict[str, Any]) -> tuple[list[str], list[str | None], list[str | None], np.ndarray]:
    """What a writer stage (``encode_batch``, ``webdataset_output.write_shard_batch``)
    starts from, one entry per row of ``batch``, to update for the rows it fails on:
    ``status``, ``error`` (None when empty), ``error_kind`` (None on ok rows; an error row
    without one is an ``input`` error) and ``seconds`` (float64 array)."""
    status = [str(s) for s in batch["status"]]
    error = [str(e) if e else None for e in batch["error"]]
    kind = [None if s == "ok" else (str(k) if k else INPUT) for s, k in zip(status, batch["error_kind"])]
    return status, error, kind, np.array(batch["seconds"], dtype=np.float64)


def record_table(batch: dict[str, Any], status: list[str], error: list[str | None], kind: list[str | None],
                 output: list[str | None], seconds: np.ndarray, model_id: str, run_id: str,
                 partitioned: bool = False, mask_output: list[str | None] | None = None) -> pa.Table:
    """The final ``RECORD_SCHEMA`` rows of an inpainted batch, with the writer's
    ``status``/``error``/``error_kind``/``output``/``mask_output``/``seconds`` per row (one
    list entry per row); ``partitioned`` adds the ``shard`` partition column (Parquet
    input)."""
    n = len(batch["id"])

    def nullable(values, missing):
        return [None if (v == missing or (isinstance(v, float) and math.isnan(v))) else v for v in values]

    fractions = nullable(batch["hole_fraction"].tolist(), None)
    model, model_hash = split_model_id(model_id)
    columns = {
        "id": [str(x) for x in batch["id"]], "status": status, "error": error, "error_kind": kind,
        "source": [str(x) for x in batch["source"]], "mask_source": nullable([str(x) for x in batch["mask_source"]], ""),
        "output": output, "mask_output": mask_output if mask_output is not None else [None] * n,
        "width": nullable(batch["width"].tolist(), -1), "height": nullable(batch["height"].tolist(), -1),
        **{k: nullable(batch[k].tolist(), -1) if k in batch else [None] * n
           for k in ("processed_width", "processed_height")},
        "hole_fraction": fractions, "hole_area_bin": [None if f is None else hole_area_bin(f) for f in fractions],
        "mask_index": nullable(batch["mask_index"].tolist(), -1),
        **{flag: [bool(v) if s == "ok" else None for v, s in zip(batch[flag].tolist(), status)] for flag in _FLAGS},
        **{name: nullable(batch[name].tolist(), None) for name in METRIC_COLUMNS},
        "hd_strategy": nullable([str(x) for x in batch["hd_strategy"]], "") if "hd_strategy" in batch else [None] * n,
        "windows": nullable(batch["windows"].tolist(), -1) if "windows" in batch else [None] * n,
        # What ran the model (null on error rows: the model may not have run).
        **{name: [str(v) if s == "ok" else None for v, s in zip(batch[name], status)] if name in batch else [None] * n
           for name in ("backend", "precision")},
        "model": [model] * n, "model_hash": [model_hash] * n, "seconds": seconds.tolist(), "run": [run_id] * n,
        "timestamp": [utc_now()] * n,
    }
    table = pa.table(columns, schema=RECORD_SCHEMA)
    if partitioned:
        table = table.append_column(PARTITION, pa.array([shard_key(src) for src in columns["source"]], pa.string()))
    return table
