"""The model and output stages of the bulk inpainting job (``pipelines/inpaint.py``).

    decoded rows (``record_decode``) -> ``InpaintStage`` (actor pool: the model)
      -> ``encode_batch`` (CPU tasks: encode + write ``OUTPUT/images/ID.png``) -> ``RECORD_SCHEMA`` rows

Rows carry plain NumPy between stages: uint8 ``H x W x 3`` images, uint8 ``H x W`` masks in
{0, 1} (1 = hole); missing numbers travel as -1 / NaN and become nulls in ``records/``.
Error rows pass through every stage untouched; a record the model or the writer fails on
becomes an error row (``error_kind`` ``model`` or ``storage``: retried by the next run).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import torch

from lama_core import GENERATOR_PRESETS, Inpainter, build_generator, load_generator
from lama_core.masks import mask_png
from lama_core.metrics.pixel import psnr as _psnr, ssim as _ssim
from lama_core.metrics.summary import hole_area_bin
from lama_core.storage import join_uri

from .codecs import encode_image, output_extension
from .error_kinds import INPUT, MODEL, STORAGE
from .job_storage import message_line
from .records_schema import UTC_TIMESTAMP, utc_now
from .shard_plan import PARTITION, shard_key
from .stage_utils import EMPTY_IMAGE, resolve_device, run_per_record, start_model_actor
from .storage_retry import RetryPolicy, write_file


#: One row per record in OUTPUT/records/*.parquet (nulls where a value is unknown).
RECORD_SCHEMA = pa.schema([
    ("id", pa.string()), ("status", pa.string()), ("error", pa.string()), ("error_kind", pa.string()),
    ("source", pa.string()), ("mask_source", pa.string()), ("output", pa.string()), ("mask_output", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("hole_fraction", pa.float64()), ("hole_area_bin", pa.string()),
    ("mask_generated", pa.bool_()), ("mask_index", pa.int64()), ("mask_binarized", pa.bool_()),
    ("mask_clipped", pa.bool_()), ("converted", pa.bool_()), ("resized", pa.bool_()),
    ("psnr", pa.float64()), ("ssim", pa.float64()), ("psnr_hole", pa.float64()), ("ssim_hole", pa.float64()),
    ("hd_strategy", pa.string()), ("windows", pa.int32()),
    ("model", pa.string()), ("model_hash", pa.string()), ("seconds", pa.float64()), ("run", pa.string()),
    ("timestamp", UTC_TIMESTAMP),
])
#: Flag columns: null on error rows (a record that failed may not have got that far).
_FLAGS = ("mask_generated", "mask_binarized", "mask_clipped", "converted", "resized")


def split_model_id(model_id: str) -> tuple[str, str | None]:
    """``URI@sha256:abc`` -> ``(URI, "sha256:abc")``; a preset id has no hash."""
    model, _, digest = model_id.partition("@sha256:")
    return model, (f"sha256:{digest}" if digest else None)


_METRICS = ("psnr", "ssim", "psnr_hole", "ssim_hole")


# ----------------------------------------------------------------------------- the model

@dataclass
class LoadedModel:
    """A generator ready for inference, its id for the ``model`` column, and whether its
    weights are random (a preset name was given instead of a checkpoint)."""

    generator: torch.nn.Module
    model_id: str
    random_weights: bool


def model_generator(model: str, seed: int = 0, endpoint_url: str | None = None) -> torch.nn.Module:
    """The eval-mode generator ``model`` names: a preset (``small``, ``lama-fourier``,
    ``big-lama``: weights drawn with ``torch.manual_seed(seed)``) or a checkpoint URI that
    ``lama_core.load_generator`` reads. Raises ``FileNotFoundError`` / ``CheckpointError``."""
    if model in GENERATOR_PRESETS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_generator(model).eval()
    return load_generator(model, endpoint_url=endpoint_url)


def load_model(model: str, seed: int = 0, endpoint_url: str | None = None) -> LoadedModel:
    """``model_generator(model, seed, endpoint_url)`` with its id for the ``model`` column:
    ``preset:NAME:random-seed-S``, or ``URI@sha256:`` + the first 12 hex digits of a hash of
    the weights (the same weights give the same id in any format). The driver needs the id;
    the actors, which only run the model, call ``model_generator`` and skip the hash."""
    generator = model_generator(model, seed, endpoint_url)
    if model in GENERATOR_PRESETS:
        return LoadedModel(generator, f"preset:{model}:random-seed-{seed}", True)
    digest = hashlib.sha256()
    for key, value in sorted(generator.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return LoadedModel(generator, f"{model}@sha256:{digest.hexdigest()[:12]}", False)


# ----------------------------------------------------------------------------- stage 2: inpaint

class InpaintStage:
    """Ray Data actor: loads the model once, then inpaints batches of decoded rows.

    Takes the decoded columns, returns them without ``image``/``mask`` but with ``result``
    (uint8 H x W x 3, 0x0 for error rows), ``resized`` (pixel budget hit) and, for rows
    with generated masks (ground truth known), ``psnr``, ``ssim``, ``psnr_hole``,
    ``ssim_hole`` of the result against the original (NaN otherwise). Error rows pass
    through untouched; a record the model fails on becomes an error row. ``counter``: a
    ``ProgressCounter`` handle told the number of rows of every batch done here. The count is
    taken here, not where records are written: Ray Data hands an actor task's outputs on in
    one block when the task ends, so on a small job the writer saw no row until the last.
    """

    def __init__(self, model: str, seed: int, device: str, precision: str, max_pixels: int, batch_size: int,
                 num_threads: int, endpoint_url: str | None, keep_masks: bool = False, hd_strategy: str = "windows",
                 counter: Any = None):
        self.keep_masks = keep_masks  # pass ``mask`` on, for the encode stage to write
        self.counter = counter
        start_model_actor(num_threads)
        generator = model_generator(model, seed, endpoint_url)
        # channels_last: oneDNN and cuDNN pick faster NHWC kernels (benchmarks/RESULTS.md).
        self.inpainter = Inpainter(generator, device=resolve_device(device), batch_size=batch_size,
                                   precision=precision, max_pixels=max_pixels or None, channels_last=True,
                                   hd_strategy=hd_strategy)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = self._inpaint_rows(batch)
        if self.counter is not None:
            self.counter.add.remote(len(batch["id"]))
        return out

    def _inpaint_rows(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["id"])
        dropped = ("image",) if self.keep_masks else ("image", "mask")
        out = {k: (list(v) if k == "mask" else np.array(v, copy=True)) for k, v in batch.items() if k not in dropped}
        out["result"] = [EMPTY_IMAGE] * n
        out["resized"] = np.zeros(n, bool)
        out["hd_strategy"] = np.array([""] * n, dtype=object)
        out["windows"] = np.full(n, -1, np.int64)
        for name in _METRICS:
            out[name] = np.full(n, math.nan)
        todo = [i for i in range(n) if out["status"][i] == "ok"]
        if not todo:
            return out
        start = time.perf_counter()

        def fail(i: int, exc: Exception) -> None:
            out["status"][i] = "error"
            out["error"][i] = f"inpainting failed for {out['source'][i]}: {type(exc).__name__}: {exc}"
            out["error_kind"][i] = MODEL  # out of memory, a kernel error: not the record's fault

        done = run_per_record(todo, lambda rows: self.inpainter.inpaint([batch["image"][i] for i in rows],
                                                                        [batch["mask"][i] for i in rows]), fail)
        share = (time.perf_counter() - start) / len(todo)
        for i, result in done.items():
            out["result"][i] = result.image
            out["resized"][i] = result.resized or bool(batch["reduced"][i])
            out["hd_strategy"][i], out["windows"][i] = result.strategy, result.windows
            out["seconds"][i] += share
            if out["mask_generated"][i]:
                metrics_start = time.perf_counter()
                values = self._metrics(result.image, batch["image"][i], batch["mask"][i])
                for name, value in zip(_METRICS, values):
                    out[name][i] = value
                out["seconds"][i] += time.perf_counter() - metrics_start
        return out

    def _metrics(self, result: np.ndarray, original: np.ndarray, hole: np.ndarray) -> tuple[float, ...]:
        """PSNR, SSIM, hole PSNR, hole SSIM of the uint8 result against the uint8 original
        (as saved; data range 1), on the model's device. NaN where undefined (no hole,
        images under 11 px for SSIM)."""
        device = self.inpainter.device
        pred = torch.tensor(result, device=device).permute(2, 0, 1)[None].float() / 255
        target = torch.tensor(original, device=device).permute(2, 0, 1)[None].float() / 255
        mask = torch.tensor(hole, device=device)[None, None].float()
        values = []
        for fn, m in ((_psnr, None), (_ssim, None), (_psnr, mask), (_ssim, mask)):
            try:
                values.append(float(fn(pred, target, m)[0]))
            except ValueError:
                values.append(math.nan)
        return tuple(values)


# ----------------------------------------------------------------------------- stage 3: encode + write

def encode_batch(batch: dict[str, Any], out_fs: fsspec.AbstractFileSystem, images_root: str, images_uri: str,
                 output_format: str, png_compress_level: int, jpeg_quality: int, model_id: str,
                 run_id: str, retry: RetryPolicy | None = None, partitioned: bool = False,
                 masks_root: str | None = None, masks_uri: str | None = None) -> pa.Table:
    """Ray Data stage: encode each ``result`` and write it to ``images_root/ID.png`` (or
    ``.jpg``), then return the final rows as a ``RECORD_SCHEMA`` table. Writes are retried
    per ``retry``; one that still fails makes a ``storage`` error row naming the output
    file (retried by the next run). ``partitioned``: add the ``shard`` column (the key of
    the row's input shard) that the records are partitioned by. ``masks_root``/``masks_uri``:
    also write each ok record's mask (0/255 PNG, from the ``mask`` column) there."""
    n = len(batch["id"])
    ext = output_extension(output_format)
    status = list(batch["status"])
    error = [str(e) if e else None for e in batch["error"]]
    kind = [str(k) if s != "ok" and k else (INPUT if s != "ok" else None)
            for s, k in zip(batch["status"], batch["error_kind"])]
    output: list[str | None] = [None] * n
    mask_output: list[str | None] = [None] * n
    seconds = np.array(batch["seconds"], dtype=np.float64)
    for i in range(n):
        if status[i] != "ok":
            continue
        rid = str(batch["id"][i])
        uri = join_uri(images_uri, rid + ext)
        start = time.perf_counter()
        try:
            data = encode_image(batch["result"][i], output_format, png_compress_level, jpeg_quality)
        except Exception as exc:
            status[i], kind[i] = "error", MODEL
            error[i] = f"cannot encode output {uri} for {batch['source'][i]}: {type(exc).__name__}: {exc}"
            continue
        try:
            write_file(out_fs, f"{images_root}/{rid}{ext}", data, retry or RetryPolicy())
            output[i] = uri
            if masks_root and "mask" in batch:
                mask_uri = join_uri(masks_uri, rid + ".png")
                write_file(out_fs, f"{masks_root}/{rid}.png", mask_png(batch["mask"][i]), retry or RetryPolicy())
                mask_output[i] = mask_uri
        except Exception as exc:
            status[i], kind[i] = "error", STORAGE
            error[i] = f"cannot write output {uri} for {batch['source'][i]}: {type(exc).__name__}: {message_line(exc)}"
        seconds[i] += time.perf_counter() - start
    return record_table(batch, status, error, kind, output, seconds, model_id, run_id, partitioned, mask_output)


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
        "hole_fraction": fractions, "hole_area_bin": [None if f is None else hole_area_bin(f) for f in fractions],
        "mask_index": nullable(batch["mask_index"].tolist(), -1),
        **{flag: [bool(v) if s == "ok" else None for v, s in zip(batch[flag].tolist(), status)] for flag in _FLAGS},
        **{name: nullable(batch[name].tolist(), None) for name in _METRICS},
        "hd_strategy": nullable([str(x) for x in batch["hd_strategy"]], "") if "hd_strategy" in batch else [None] * n,
        "windows": nullable(batch["windows"].tolist(), -1) if "windows" in batch else [None] * n,
        "model": [model] * n, "model_hash": [model_hash] * n, "seconds": seconds.tolist(), "run": [run_id] * n,
        "timestamp": [utc_now()] * n,
    }
    table = pa.table(columns, schema=RECORD_SCHEMA)
    if partitioned:
        table = table.append_column(PARTITION, pa.array([shard_key(src) for src in columns["source"]], pa.string()))
    return table
