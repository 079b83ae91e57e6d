"""The Ray Data stages of an evaluation pass: decode + masks (CPU tasks), then inpaint +
metrics (``EvaluateStage``, the model actors).

Protocol (docs/DESIGN.md): the generator sees ``image * (1 - mask)``; metrics compare the
uint8 result with the known pixels pasted back (what ``Inpainter.inpaint`` returns, what
LaMa's ``predict.py`` saves) to the ground truth, on the whole image. Every (image, mask
set) is one row: a file that cannot be decoded, a mask that cannot be made, an image the
model or a metric fails on is an error row naming the file, never lost.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import fsspec
import numpy as np
import torch
from PIL import Image

from lama_core import Inpainter, load_generator
from lama_core.mask_sets import frozen_mask_name
from lama_core.masks import generate_mask
from lama_core.metrics import METRICS, MetricContext, compute_metrics, compute_references, reference_columns

from pipelines.records.codecs import RecordError, decode_mask
from pipelines.evaluate.data import MaskSet
from pipelines.evaluate.plots import sample_strip
from pipelines.records.decode import decode_record_image, drawn_mask_source, failure
from pipelines.cluster.actor_pool import ActorPlan, model_actor_pool
from pipelines.cluster.model_actor import resolve_device, run_per_record, start_model_actor
from pipelines.records.batches import EMPTY_IMAGE, EMPTY_MASK, blob, column_batch, read_many

#: Columns of a decoded row and their values when unknown (the row also carries ``image``
#: and ``mask``).
ROW_COLUMNS = {"id": "", "source": "", "index": -1, "mask_set": "", "mask_source": "", "status": "ok", "error": "",
               "width": -1, "height": -1, "hole_fraction": math.nan, "mask_resized": False, "converted": False,
               "seconds": 0.0}


def fit_mask(hole: np.ndarray, height: int, width: int) -> tuple[np.ndarray, bool]:
    """A uint8 {0, 1} mask resized with nearest neighbour to ``height x width`` (when it
    differs); returns it and whether it was resized."""
    if hole.shape == (height, width):
        return hole, False
    resized = Image.fromarray(hole * 255).resize((width, height), Image.NEAREST)
    return (np.asarray(resized) > 127).astype(np.uint8), True


def mask_source(ms: MaskSet, index: int, mask_seed: int) -> str:
    """Where mask ``index`` of ``ms`` comes from: the frozen file's URI, or
    ``KIND:seed=S:index=I`` for a drawn one."""
    return f"{ms.uri}/{frozen_mask_name(index)}" if ms.uri else drawn_mask_source(ms.kind, mask_seed, index)


def _mask_for(ms: MaskSet, index: int, height: int, width: int, blobs: dict[str, Any],
              mask_seed: int) -> tuple[np.ndarray, bool]:
    """Mask ``index`` of ``ms`` for an image of ``height x width``: uint8 {0, 1}, and whether
    a frozen mask had to be resized."""
    if ms.kind:
        return generate_mask(ms.kind, mask_seed, index, height, width).astype(np.uint8), False
    uri = mask_source(ms, index, mask_seed)
    if index >= ms.count:
        raise RecordError(f"no mask {uri}: the mask set {ms.name} holds {ms.count} masks, fewer than the images")
    hole, _ = decode_mask(blob(blobs, f"{ms.root}/{frozen_mask_name(index)}", uri), uri)
    return fit_mask(hole, height, width)


@dataclass(frozen=True)
class EvalDecodeStage:
    """The read + decode (+ masks) stage of an evaluation pass, as CPU tasks of ``num_cpus``
    over batches of ``batch_size`` images: reads and decodes ground-truth images (``image_fs``)
    and attaches a mask from each of ``mask_sets`` (frozen sets read from ``mask_fs[name]``,
    drawn ones from ``mask_seed``): one output row per image x mask set. Parquet input:
    ``index_of`` maps ids to image indices, ``shard_uris`` shard paths to URIs. An image over
    ``max_input_pixels`` (its header, before decoding; 0 = no limit) is an error row, as in
    every other job."""

    image_fs: fsspec.AbstractFileSystem
    mask_sets: tuple[MaskSet, ...]
    mask_fs: dict[str, fsspec.AbstractFileSystem]
    mask_seed: int
    batch_size: int
    num_cpus: float
    index_of: dict[str, int] | None = None
    shard_uris: dict[str, str] | None = None
    max_input_pixels: int = 0

    def apply(self, ds: Any) -> Any:
        return ds.map_batches(decode_batch, fn_kwargs={"stage": self}, batch_size=self.batch_size,
                              num_cpus=self.num_cpus)


def decode_batch(batch: dict[str, Any], stage: EvalDecodeStage) -> dict[str, Any]:
    """One batch of ``EvalDecodeStage``.

    Input: folder records (``id``, ``source``, ``image_path``, ``index``) or Parquet rows
    (``id``, ``image`` bytes, ``path`` of the shard). Output: the ``ROW_COLUMNS`` + ``image``
    (uint8 H x W x 3) + ``mask`` (uint8 H x W in {0, 1}); a row that failed carries
    ``status='error'``, an ``error`` naming the file, and 0 x 0 arrays."""
    image_fs, mask_sets, mask_fs, mask_seed = stage.image_fs, stage.mask_sets, stage.mask_fs, stage.mask_seed
    index_of, shard_uris = stage.index_of, stage.shard_uris
    n = len(batch["id"])
    start = time.perf_counter()
    parquet = "image" in batch
    blobs = {} if parquet else read_many(image_fs, [str(p) for p in batch["image_path"]])
    if parquet:
        indices = [int((index_of or {})[str(rid)]) for rid in batch["id"]]
    else:
        indices = [int(i) for i in batch["index"]]
    frozen: dict[str, dict[str, Any]] = {
        ms.name: read_many(mask_fs[ms.name], [f"{ms.root}/{frozen_mask_name(i)}" for i in indices if i < ms.count])
        for ms in mask_sets if ms.uri}
    share = (time.perf_counter() - start) / max(1, n)
    rows: list[dict] = []
    for k in range(n):
        rid, index = str(batch["id"][k]), indices[k]
        if parquet:
            shard = str(batch["path"][k])
            source = (shard_uris or {}).get(shard, shard)
            name = f"{source} (id {rid!r})"
        else:
            source = name = str(batch["source"][k])
        t0 = time.perf_counter()
        base = {**ROW_COLUMNS, "id": rid, "source": source, "index": index, "image": EMPTY_IMAGE, "mask": EMPTY_MASK}
        try:
            data = batch["image"][k] if parquet else blob(blobs, str(batch["image_path"][k]), source)
            image, base["converted"] = decode_record_image(data, name, stage.max_input_pixels)
            base.update(image=image, height=image.shape[0], width=image.shape[1])
        except Exception as exc:  # RecordError, or anything unforeseen: still a row per mask set
            base.update(status="error", error=failure(exc, "decode", name)[0])
        decoded = time.perf_counter() - t0 + share
        for ms in mask_sets:
            row = dict(base, seconds=decoded, mask_set=ms.name, mask_source=mask_source(ms, index, mask_seed))
            if row["status"] == "ok":
                t1 = time.perf_counter()
                try:
                    row["mask"], row["mask_resized"] = _mask_for(ms, index, row["height"], row["width"],
                                                                 frozen.get(ms.name, {}), mask_seed)
                    row["hole_fraction"] = float(row["mask"].mean())
                except Exception as exc:  # noqa: BLE001 - one mask set's failure is that row's
                    row.update(status="error", error=failure(exc, "make mask", row["mask_source"])[0])
                row["seconds"] += time.perf_counter() - t1
            if row["status"] != "ok":
                row.update(image=EMPTY_IMAGE, mask=EMPTY_MASK)
            rows.append(row)
    return column_batch(rows, {**ROW_COLUMNS, "image": None, "mask": None})


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 H x W x 3 arrays (one size) -> float N x 3 x H x W in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def _by_size(indices: Sequence[int], images: Sequence[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        groups.setdefault(tuple(images[i].shape[:2]), []).append(i)
    return list(groups.values())


def scalar_columns(metrics: Sequence[str]) -> list[str]:
    """Per-image number columns (float64, NaN where not computed) of the metrics ``metrics``."""
    return [c for m in metrics if METRICS[m].reduce is None for c in METRICS[m].columns]


def feature_columns(metrics: Sequence[str]) -> list[str]:
    """Per-image feature columns (float32 rows) of the set-level metrics in ``metrics``
    (fid: ``fid_features_fake``), their reference columns left out."""
    references = set(reference_columns(metrics))
    return [c for m in metrics if METRICS[m].reduce is not None for c in METRICS[m].columns if c not in references]


@dataclass(frozen=True)
class EvalModelStage:
    """The model stage of an evaluation pass and its ``map_batches`` specification: the
    ``actors`` (``ActorPlan``) run ``EvaluateStage`` over batches of ``batch_size`` rows, each
    loading ``checkpoint`` once (with ``precision``) and the ``metrics`` networks lazily
    from ``weights_dir`` / ``weight_paths`` (LPIPS backbone ``lpips_net``). ``grid_images``:
    images whose sample strip is returned; ``reference_missing``: ids whose ground-truth
    reference features the sweep's cache lacks."""

    checkpoint: str
    metrics: tuple[str, ...]
    precision: str
    batch_size: int
    weights_dir: str
    weight_paths: dict[str, str]
    lpips_net: str
    grid_images: int
    reference_missing: frozenset[str]
    endpoint_url: str | None
    actors: ActorPlan

    def apply(self, ds: Any, counter: Any = None) -> Any:
        """``ds.map_batches`` over the actor pool; ``counter``: a ``ProgressCounter`` handle
        told the rows of every batch scored (the pass's progress line)."""
        return ds.map_batches(EvaluateStage, compute=model_actor_pool(self.actors), batch_size=self.batch_size,
                              num_gpus=self.actors.gpus, num_cpus=self.actors.cpus,
                              fn_constructor_kwargs={"stage": self, "counter": counter})


class EvaluateStage:
    """Ray Data actor: loads one checkpoint once, inpaints batches of ``decode_batch`` rows
    and scores them against the ground truth with the registered ``metrics``
    (``lama_core.metrics.compute_metrics``).

    Returns the rows without ``image``/``mask`` plus: ``scalar_columns(metrics)`` (float64,
    NaN where not computed), ``feature_columns(metrics)`` (float32 rows, e.g. the Inception
    features of the result, (2048,); empty for error rows), the metrics'
    ``reference_columns`` (features of the ground truth, only for ids in
    ``reference_missing``: those the sweep's cache lacks, i.e. every image on a sweep's
    first pass over new data; else empty) and ``sample`` (a uint8 strip input | output |
    ground truth for images with ``index < grid_images``, else 0 x 0). Error rows pass
    through; an image the model or a metric fails on becomes an error row. The metric
    networks load lazily from ``weights_dir`` / ``weight_paths`` (``MetricContext``)."""

    def __init__(self, stage: EvalModelStage, counter: Any = None):
        self.counter = counter
        start_model_actor(stage.actors.threads)
        self.ctx = MetricContext(device=resolve_device(stage.actors.device), weights_dir=stage.weights_dir or None,
                                 weight_paths=dict(stage.weight_paths), lpips_net=stage.lpips_net)
        generator = load_generator(stage.checkpoint, endpoint_url=stage.endpoint_url)
        # The protocol scores whole frames (docs/DESIGN.md): no context windows here.
        self.inpainter = Inpainter(generator, device=self.ctx.device, batch_size=stage.batch_size,
                                   precision=stage.precision, channels_last=True, hd_strategy="full")
        self.checkpoint = stage.checkpoint
        self.metrics = list(stage.metrics)
        self.scalars = scalar_columns(stage.metrics)
        self.rows = feature_columns(stage.metrics) + reference_columns(stage.metrics)
        self.grid_images = stage.grid_images
        self.reference_missing = stage.reference_missing

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["id"])
        out = {k: np.array(v, copy=True) for k, v in batch.items() if k not in ("image", "mask")}
        for column in self.scalars:
            out[column] = np.full(n, math.nan)
        empty = np.zeros(0, np.float32)
        for column in self.rows:
            out[column] = [empty] * n
        out["sample"] = [EMPTY_IMAGE] * n
        images, masks = batch["image"], batch["mask"]
        results = self._inpaint([i for i in range(n) if out["status"][i] == "ok"], images, masks, out)

        def fail(i: int, exc: Exception) -> None:
            out["status"][i] = "error"
            out["error"][i] = f"metrics failed for {out['source'][i]}: {type(exc).__name__}: {exc}"

        for group in _by_size(list(results), images):
            start = time.perf_counter()
            scores = run_per_record(group, lambda rows: self._score(rows, results, images, masks, out), fail)
            share = (time.perf_counter() - start) / len(group)
            for i in group:
                out["seconds"][i] += share
                for column, value in scores.get(i, {}).items():
                    if column in self.scalars:
                        out[column][i] = float(value)
                    else:
                        out[column][i] = value
                if out["status"][i] == "ok" and out["index"][i] < self.grid_images:
                    out["sample"][i] = sample_strip(images[i], masks[i], results[i])
        if self.counter is not None:  # counted here: the driver sees rows only when a task ends
            self.counter.add.remote(n)
        return out

    def _inpaint(self, todo: list[int], images, masks, out: dict[str, Any]) -> dict[int, np.ndarray]:
        """uint8 results with known pixels pasted back, by row; failures become error rows."""
        if not todo:
            return {}

        def fail(i: int, exc: Exception) -> None:
            out["status"][i] = "error"
            out["error"][i] = (f"inpainting {out['source'][i]} with {self.checkpoint} failed: "
                               f"{type(exc).__name__}: {exc}")

        start = time.perf_counter()
        done = run_per_record(todo, lambda rows: self.inpainter([images[i] for i in rows], [masks[i] for i in rows]),
                              fail)
        share = (time.perf_counter() - start) / len(todo)
        for i in todo:
            out["seconds"][i] += share
        return done

    def _score(self, group: list[int], results: dict[int, np.ndarray], images, masks,
               out: dict[str, Any]) -> list[dict[str, Any]]:
        """``{column: value}`` per row of ``group`` (equal-sized images): the metrics' columns,
        plus the reference columns of the rows whose ids are in ``reference_missing``."""
        pred = _to_tensor([results[i] for i in group])
        target = _to_tensor([images[i] for i in group])
        mask = torch.from_numpy(np.stack([masks[i] for i in group])).float()[:, None]
        columns = compute_metrics(self.metrics, pred, target, mask, self.ctx, references=False)
        scores = [{c: values[j] for c, values in columns.items()} for j in range(len(group))]
        missing = [j for j, i in enumerate(group) if str(out["id"][i]) in self.reference_missing]
        if missing:
            references = compute_references(self.metrics, target[missing], self.ctx)
            for k, j in enumerate(missing):
                scores[j].update({c: values[k] for c, values in references.items()})
        return scores
