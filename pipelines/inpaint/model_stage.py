"""The model stage of the bulk inpainting job (``pipelines/inpaint/job.py``).

    decoded rows (``record_decode``) -> ``InpaintStage`` (actor pool: the model)
      -> ``inpaint_records.encode_batch`` (CPU tasks: encode + write ``OUTPUT/images/ID.png``)
      -> ``RECORD_SCHEMA`` rows

Rows carry plain NumPy between stages: uint8 ``H x W x 3`` images, uint8 ``H x W`` masks in
{0, 1} (1 = hole); missing numbers travel as -1 / NaN and become nulls in ``records/``.
Error rows pass through every stage untouched; a record the model or the writer fails on
becomes an error row (``error_kind`` ``model`` or ``storage``: retried by the next run).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lama_core import GENERATOR_PRESETS, Inpainter
from lama_core.model_source import generator_for, model_id
from lama_core.storage import read_bytes
from lama_core.metrics.pixel import psnr as _psnr, ssim as _ssim

from pipelines.common.error_kinds import INPUT, kind_of_exception
from pipelines.inpaint.record_writer import METRIC_COLUMNS
from pipelines.cluster.actor_pool import ActorPlan, model_actor_pool
from pipelines.cluster.model_actor import resolve_device, run_per_record, start_model_actor
from pipelines.records.batches import EMPTY_IMAGE



# ----------------------------------------------------------------------------- the model

@dataclass
class LoadedModel:
    """A generator ready for inference, its id for the ``model`` column, and whether its
    weights are random (a preset name was given instead of a checkpoint)."""

    generator: torch.nn.Module
    model_id: str
    random_weights: bool


def load_model(model: str, seed: int = 0, endpoint_url: str | None = None) -> LoadedModel:
    """The generator ``model`` names (``lama_core.model_source.generator_for``) with its id
    for the ``model`` column (``model_id``: the same weights give the same id in any format).
    The driver needs the id; the actors, which only run the model, call ``generator_for``
    and skip the hash."""
    generator = generator_for(model, seed, endpoint_url)
    return LoadedModel(generator, model_id(model, generator, seed), model in GENERATOR_PRESETS)


# ----------------------------------------------------------------------------- stage 2: inpaint

@dataclass(frozen=True)
class ModelStage:
    """The model stage's options and its ``map_batches`` specification: ``actors`` (the
    ``ActorPlan``) run ``InpaintStage`` over batches of ``batch_size`` decoded rows, each
    actor loading ``model`` (a checkpoint URI or a preset drawn with ``seed``) once, with
    ``precision``, ``max_pixels`` (0: no budget) and ``hd_strategy``, on ``backend``
    (onnxruntime/openvino: the exported graph at ``graph_uri``, read once per actor).
    ``keep_masks``: pass the ``mask`` column on for the writer. Small values only: the
    actors are built from them (a restarted actor on another node rebuilds itself)."""

    model: str
    seed: int
    precision: str
    max_pixels: int
    hd_strategy: str
    batch_size: int
    endpoint_url: str | None
    keep_masks: bool
    actors: ActorPlan
    backend: str = "torch"
    graph_uri: str = ""

    def apply(self, ds: Any, counter: Any = None) -> Any:
        """``ds.map_batches`` over the actor pool; ``counter``: a ``ProgressCounter`` handle
        told the rows of every batch done."""
        return ds.map_batches(InpaintStage, compute=model_actor_pool(self.actors), batch_size=self.batch_size,
                              num_gpus=self.actors.gpus, num_cpus=self.actors.cpus,
                              fn_constructor_kwargs={"stage": self, "counter": counter})


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

    def __init__(self, stage: ModelStage, counter: Any = None):
        self.keep_masks = stage.keep_masks  # pass ``mask`` on, for the encode stage to write
        self.counter = counter
        start_model_actor(stage.actors.threads)
        generator = generator_for(stage.model, stage.seed, stage.endpoint_url)
        graph = read_bytes(stage.graph_uri, stage.endpoint_url) if stage.graph_uri else None
        # channels_last: oneDNN and cuDNN pick faster NHWC kernels (benchmarks/RESULTS.md).
        self.inpainter = Inpainter(generator, device=resolve_device(stage.actors.device), batch_size=stage.batch_size,
                                   precision=stage.precision, max_pixels=stage.max_pixels or None, channels_last=True,
                                   hd_strategy=stage.hd_strategy, backend=stage.backend, onnx_model=graph)
        self.backend, self.precision = stage.backend, self.inpainter.precision  # auto: what it resolved to

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
        out["backend"] = np.array([self.backend] * n, dtype=object)
        out["precision"] = np.array([self.precision] * n, dtype=object)
        out["precision_fallback"] = np.zeros(n, bool)
        for name in METRIC_COLUMNS:
            out[name] = np.full(n, math.nan)
        todo = [i for i in range(n) if out["status"][i] == "ok"]
        if not todo:
            return out
        start = time.perf_counter()

        def fail(i: int, exc: Exception) -> None:  # the record failed when run alone
            out["status"][i] = "error"
            kind = kind_of_exception(exc, "inpaint")
            hint = (f" ({out['processed_width'][i]}x{out['processed_height'][i]} px, hole "
                    f"{out['hole_fraction'][i]:.0%}: lower max_pixels or use a larger device, then rerun with "
                    "retry_errors=true)") if kind == INPUT else ""
            out["error"][i] = f"inpainting failed for {out['source'][i]}: {type(exc).__name__}: {exc}{hint}"
            out["error_kind"][i] = kind

        done = run_per_record(todo, lambda rows: self.inpainter.inpaint([batch["image"][i] for i in rows],
                                                                        [batch["mask"][i] for i in rows]), fail)
        share = (time.perf_counter() - start) / len(todo)
        for i, result in done.items():
            out["result"][i] = result.image
            out["resized"][i] = result.resized or bool(batch["reduced"][i])
            out["hd_strategy"][i], out["windows"][i] = result.strategy, result.windows
            out["precision_fallback"][i] = result.precision_fallback
            out["seconds"][i] += share
            if out["mask_generated"][i]:
                metrics_start = time.perf_counter()
                values = self._metrics(result.image, batch["image"][i], batch["mask"][i])
                for name, value in zip(METRIC_COLUMNS, values):
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
