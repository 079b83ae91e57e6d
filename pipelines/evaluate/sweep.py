"""One sweep of an evaluation: every pending (checkpoint, mask set) pair, one Ray Data pass
per checkpoint, written to the ``EvalLayout``.

    decode + masks (CPU tasks) -> inpaint + metrics (actor pool) -> rows back to the driver
      -> per-bin summary (set-level metrics such as FID per bin) -> Parquet + PNGs

One pass per checkpoint covers all of its pending mask sets (the actors load the generator
and the metric networks once). Ground-truth reference columns (fid: Inception features of
each real image) depend on the data only: the first pass over new data computes them
beside the results' features, and they are cached per image id
(``OUTPUT/cache/real-features-<key>.npz`` through ``lama_core.metrics.load_cached_arrays``;
``key`` = ``content_hash`` of the data listing and the Inception weights), so a sweep over
many checkpoints and mask sets, over any number of runs, computes them once. Per-image
features, not just a set's statistics, are cached: FID per hole-area bin needs the
ground truth of each bin's images.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import fsspec
import numpy as np

from lama_core import load_generator
from lama_core.metrics.inception import FEATURE_DIM
from lama_core.metrics import (ALL, METRICS, content_hash, hole_area_bin, load_cached_arrays, reference_columns,
                               store_cached_arrays, summarize_by_hole_area)
from lama_core.training_checkpoint import checkpoint_step

from pipelines.evaluate.config import EvaluateConfig
from pipelines.evaluate.data import EvalData, MaskSet
from pipelines.evaluate.layout import EvalLayout, pair_key, per_image_metric_columns, per_image_schema, rows_table, summary_schema
from pipelines.evaluate.layout import summary_metric_columns
from pipelines.common.contact_sheet import contact_sheet_png
from pipelines.evaluate.plots import metrics_plot_png
from pipelines.evaluate.stage import ROW_COLUMNS, EvalDecodeStage, EvalModelStage, feature_columns, scalar_columns
from pipelines.common.storage import first_line
from pipelines.records.timestamps import utc_now
from pipelines.cluster.actor_pool import cluster_plan

#: Ground-truth reference columns by image id: ``{id: {column: float32 row}}``.
References = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Sweep:
    """What every pass of a sweep shares, checked before any work (``evaluate.prepare``):
    the job config, the storage endpoint, the output ``layout``, the data URI, the mask
    sets (and the filesystems of the frozen ones, by name), the metrics that can run and
    the Inception weights' id (part of the reference cache key)."""

    cfg: EvaluateConfig
    endpoint: str | None
    layout: EvalLayout
    data_uri: str
    mask_sets: list[MaskSet]
    mask_fs: dict[str, fsspec.AbstractFileSystem]
    metrics: list[str]
    inception_id: str = ""


@dataclass
class PairResult:
    """One evaluated (checkpoint, mask set): its ``all`` summary row and where files went."""

    checkpoint: str
    mask_set: str
    status: str
    summary: dict
    per_image_uri: str = ""
    summary_uri: str = ""
    samples_uri: str = ""

    def line(self) -> str:
        """The one-line result printed per pair."""
        if self.status != "ok":
            return f"FAILED {self.checkpoint} × {self.mask_set}: {self.summary.get('error')}"
        s = self.summary
        values = " ".join(f"{label} {s[key]:.4g}" for key, label in
                          (("fid", "FID"), ("lpips", "LPIPS"), ("psnr", "PSNR"), ("ssim", "SSIM"))
                          if s.get(key) is not None)
        step = "" if s.get("step") is None else f" (step {s['step']})"
        errors = f", {s['n_error']} error rows" if s.get("n_error") else ""
        return f"{self.checkpoint}{step} × {self.mask_set}: {s['n']} images{errors}: {values or '-'}"


@dataclass
class SweepReport:
    """What one sweep (one poll) did."""

    evaluated: list[PairResult] = field(default_factory=list)
    skipped: int = 0
    checkpoints: int = 0
    ignored: list[str] = field(default_factory=list)
    cleared: bool = False  # this sweep removed the earlier tables (overwrite=true)

    @property
    def failed(self) -> list[PairResult]:
        return [p for p in self.evaluated if p.status != "ok"]


# ----------------------------------------------------------------------------- reference cache

def _reference_cache_key(sweep: Sweep, data: EvalData) -> str:
    """``real-features-<key>``: ``key`` is the ``content_hash`` of the data listing (URI,
    names, sizes, ETags/mtimes) and the Inception weights' id; it does not depend on the
    checkpoint or the mask set."""
    key = content_hash(data.uri, data.fingerprint, "reference-columns-v2", model_id=sweep.inception_id)
    return f"real-features-{key}"


#: Bytes a reference-cache entry may take per image of the data: fid's 2048 float32
#: features are 8 KiB and its id some more; a larger entry is not one a sweep wrote.
_CACHE_BYTES_PER_IMAGE = 16 * 2**10


def _cache_problem(arrays: dict[str, np.ndarray], columns: list[str]) -> str | None:
    """Why cached reference ``arrays`` are not what ``store_references`` writes for
    ``columns``, or None: ``ids`` a 1-D text array, each column float with one row per id
    (fid features ``(N, FEATURE_DIM)``)."""
    ids = arrays.get("ids")
    if ids is None or ids.ndim != 1 or ids.dtype.kind != "U":
        return "no 1-D text array 'ids'"
    for column in columns:
        values = arrays.get(column)
        if values is None or values.dtype.kind != "f" or values.ndim != 2 or values.shape[0] != len(ids):
            return f"{column!r} is not a float array of {len(ids)} rows"
        if column == "fid_features_real" and len(ids) and values.shape[1] != FEATURE_DIM:
            return f"{column!r} rows hold {values.shape[1]} features, not {FEATURE_DIM}"
    return None


def load_references(sweep: Sweep, data: EvalData) -> References:
    """Cached ground-truth reference columns of the sweep's metrics by image id; empty when
    none are cached yet or the entry is unusable (then the next pass computes them and
    overwrites it): unreadable, larger than the data needs (``_CACHE_BYTES_PER_IMAGE`` per
    image, at least 64 MiB: checked before loading), or of the wrong shape (``_cache_problem``)."""
    columns = reference_columns(sweep.metrics)
    if not columns:
        return {}
    key = _reference_cache_key(sweep, data)
    limit = max(64 * 2**20, _CACHE_BYTES_PER_IMAGE * len(data.ids))
    arrays = load_cached_arrays(sweep.layout.cache_uri, key, sweep.endpoint, max_bytes=limit)
    problem = "unreadable or over its size bound" if arrays is None else _cache_problem(arrays, columns)
    if problem:
        if arrays is not None or _cache_exists(sweep, key):
            print(f"warning: reference cache {key}.npz under {sweep.layout.cache_uri} is {problem}: "
                  "recomputing it", file=sys.stderr, flush=True)
        return {}
    return {str(i): {c: arrays[c][k] for c in columns} for k, i in enumerate(arrays["ids"])}


def _cache_exists(sweep: Sweep, key: str) -> bool:
    from lama_core.storage import filesystem_for, join_uri

    fs, path = filesystem_for(join_uri(sweep.layout.cache_uri, f"{key}.npz"), sweep.endpoint)
    return fs.exists(path)


def store_references(sweep: Sweep, data: EvalData, references: References) -> str:
    """Write the reference columns (ids sorted) to the cache, atomically. Returns its URI."""
    ids = sorted(references)
    arrays = {"ids": np.array(ids, dtype=str)}
    for column in reference_columns(sweep.metrics):
        arrays[column] = (np.stack([references[i][column] for i in ids]) if ids
                          else np.zeros((0, 0), np.float32))
    return store_cached_arrays(sweep.layout.cache_uri, _reference_cache_key(sweep, data), arrays, sweep.endpoint)


# ----------------------------------------------------------------------------- summaries and files

def _stacked(values: list[Any]) -> np.ndarray:
    """A column of per-image values as one array: numbers (N,) float64, feature rows (N, D)."""
    if values and np.ndim(values[0]) > 0:
        return np.stack([np.asarray(v, np.float32) for v in values])
    return np.array(values, np.float64)


def summary_rows(sweep: Sweep, run_id: str, checkpoint: str, step: int | None, mask_set: str, rows: list[dict],
                 references: References, seconds: float) -> list[dict]:
    """Per-bin summary rows (plus ``all``) of one pair from its per-image rows, every metric
    reduced by its registered ``summarize`` (set-level ones from the feature rows of the
    bin's results and their ground truth's reference columns)."""
    ok = [r for r in rows if r["status"] == "ok"]
    references_of = set(reference_columns(sweep.metrics))
    columns: dict[str, Any] = {"hole_fraction": np.array([r["hole_fraction"] for r in ok], np.float64)}
    for name in sweep.metrics:
        for column in METRICS[name].columns:
            values = [references[r["id"]][column] if column in references_of else r[column] for r in ok]
            columns[column] = _stacked(values)
    summary = summarize_by_hole_area(columns, sweep.metrics)
    errors = [r for r in rows if r["status"] != "ok"]
    error_bins = [hole_area_bin(r["hole_fraction"]) for r in errors if math.isfinite(r["hole_fraction"])]
    common = dict(checkpoint=checkpoint, step=step, mask_set=mask_set, status="ok", error=None,
                  data=sweep.data_uri, metrics=",".join(sweep.metrics), timestamp=utc_now(), seconds=seconds, run=run_id)
    for row in summary:
        row.update(common)
        row["n_error"] = len(errors) if row["hole_area_bin"] == ALL else error_bins.count(row["hole_area_bin"])
        for key, value in list(row.items()):
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
    return summary


def failed_summary(sweep: Sweep, run_id: str, checkpoint: str, step: int | None, mask_set: str,
                   error: str) -> list[dict]:
    """The one summary row (bin ``all``, ``status='error'``) of a pair that could not be scored."""
    return [dict(checkpoint=checkpoint, step=step, mask_set=mask_set, hole_area_bin=ALL, n=0, n_error=0,
                 status="error", error=error, data=sweep.data_uri, metrics=",".join(sweep.metrics),
                 timestamp=utc_now(), seconds=0.0, run=run_id)]


def _per_image_row(r: dict, metric_columns: Sequence[str], checkpoint: str, step: int | None, mask_set: str,
                   run_id: str, now: Any) -> dict:
    """A row of ``OUTPUT/per_image`` from a row of the pass (unknown values null)."""
    fraction = float(r["hole_fraction"])
    ok = r["status"] == "ok"
    return {
        **{k: r.get(k) for k in ("id", "index", "source", "mask_source", "status", "seconds")},
        **{c: (float(r[c]) if ok and c in r else None) for c in metric_columns},
        "error": r["error"] or None, "checkpoint": checkpoint, "step": step, "mask_set": mask_set,
        "hole_fraction": fraction if math.isfinite(fraction) else None,
        "hole_area_bin": hole_area_bin(fraction) if math.isfinite(fraction) else None,
        "width": r["width"] if r["width"] >= 0 else None, "height": r["height"] if r["height"] >= 0 else None,
        # Flags of a record that failed are unknown, not false.
        "mask_resized": bool(r["mask_resized"]) if ok else None, "converted": bool(r["converted"]) if ok else None,
        "run": run_id, "timestamp": now}


def write_pair(sweep: Sweep, run_id: str, checkpoint: str, step: int | None, ms: MaskSet, rows: list[dict],
               summary: list[dict]) -> PairResult:
    """Per-image table, sample grid, then the summary (last: it marks the pair done)."""
    layout, key = sweep.layout, pair_key(checkpoint, ms.name)
    for row in summary:
        row["mask_set_id"] = ms.content_id
    result = PairResult(checkpoint, ms.name, summary[-1]["status"], summary[-1])
    if rows:
        now = utc_now()
        metric_columns = per_image_metric_columns(sweep.metrics)
        per_image = sorted((_per_image_row(r, metric_columns, checkpoint, step, ms.name, run_id, now) for r in rows),
                           key=lambda r: r["index"])
        layout.write_table(layout.per_image_path(key), rows_table(per_image, per_image_schema(sweep.metrics)))
        result.per_image_uri = layout.per_image_uri(key)
        strips = [r["sample"] for r in sorted(rows, key=lambda r: r["index"]) if r.get("sample") is not None
                  and np.asarray(r["sample"]).size]
        if strips:
            title = f"{checkpoint.rstrip('/').rsplit('/', 1)[-1]} x {ms.name}: input | output | ground truth"
            layout.write_bytes(layout.samples_path(key), contact_sheet_png(strips, title))
            result.samples_uri = layout.samples_uri(key)
    layout.write_table(layout.summary_path(key), rows_table(summary, summary_schema(sweep.metrics)))
    result.summary_uri = layout.summary_uri(key)
    return result


def write_plots(sweep: Sweep, mask_set_names: Sequence[str]) -> list[str]:
    """``OUTPUT/plots/<mask set>.png`` from every ``ok`` summary row (bin ``all``) of those
    mask sets: one panel per metric against training step. Returns the URIs written."""
    layout = sweep.layout
    rows = [r for r in layout.read_summaries() if r.get("status") == "ok" and r.get("hole_area_bin") == ALL]
    written = []
    for name in mask_set_names:
        points = [r for r in rows if r["mask_set"] == name]
        if not points:
            continue
        metrics = [c for c in summary_metric_columns(sweep.metrics) if any(p.get(c) is not None for p in points)]
        png = metrics_plot_png(points, metrics, f"{name}: {len(points)} checkpoints, data {sweep.data_uri}")
        layout.write_bytes(layout.plot_path(name), png)
        written.append(layout.plot_uri(name))
    return written


# ----------------------------------------------------------------------------- one pass per checkpoint

def _decoded_dataset(sweep: Sweep, data: EvalData, mask_sets: Sequence[MaskSet], codec_cpus: float) -> Any:
    """Read + decode (+ masks) as CPU tasks of ``codec_cpus`` CPUs each (fewer than the
    model actors', so Ray Data never fuses them into the actors)."""
    import ray

    cfg = sweep.cfg
    if data.kind == "folder":
        blocks = max(1, min(math.ceil(len(data.records) / cfg.codec_batch_size), 10_000))
        ds = ray.data.from_items(data.records, override_num_blocks=blocks)
        stage = EvalDecodeStage(data.fs, tuple(mask_sets), sweep.mask_fs, cfg.mask_seed, cfg.codec_batch_size,
                                codec_cpus, max_input_pixels=cfg.max_input_pixels)
    else:
        ds = ray.data.read_parquet(data.shards, filesystem=data.fs, include_paths=True,
                                   num_cpus=codec_cpus).select_columns(["id", "image", "path"],
                                                                        num_cpus=codec_cpus)
        stage = EvalDecodeStage(data.fs, tuple(mask_sets), sweep.mask_fs, cfg.mask_seed, cfg.codec_batch_size,
                                codec_cpus, data.index_of, data.shard_uris, cfg.max_input_pixels)
    # No repartition: a 1-CPU repartition task starves beside the actors (see pipelines/inpaint/job.py).
    return stage.apply(ds)


def _collect(ds: "ray.data.Dataset", columns: Sequence[str]) -> list[dict]:
    """Stream the result rows to the driver as dicts of ``columns``."""
    rows = []
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        for k in range(len(batch["id"])):
            rows.append({c: batch[c][k] for c in columns if c in batch})
    return rows


def evaluate_checkpoint(sweep: Sweep, run_id: str, local: bool, data: EvalData, checkpoint: str,
                        mask_sets: list[MaskSet], references: References) -> list[PairResult]:
    """One Ray Data pass: ``checkpoint`` on every image × ``mask_sets``; writes each pair, with a
    progress line per image x mask set scored. ``local``: Ray runs on this machine only (a
    fixed cluster for the actor plan). ``references`` gains the reference columns the pass
    computed for images it lacked."""
    from pipelines.cluster.progress import JobProgress, ProgressCounter

    cfg = sweep.cfg
    step = checkpoint_step(checkpoint, sweep.endpoint)

    def failed(message: str) -> list[PairResult]:
        print(f"error: {message} (skipping it; the sweep goes on)", file=sys.stderr, flush=True)
        return [write_pair(sweep, run_id, checkpoint, step, ms, [],
                           failed_summary(sweep, run_id, checkpoint, step, ms.name, message)) for ms in mask_sets]

    try:
        load_generator(checkpoint, endpoint_url=sweep.endpoint)  # fail here, clearly, not in the actors
    except Exception as exc:  # noqa: BLE001 - FileNotFoundError, CheckpointError, unpickling, ...
        return failed(f"cannot load checkpoint {checkpoint}: {first_line(exc)}")
    print(f"evaluating {checkpoint}" + ("" if step is None else f" (step {step})") +
          f" on {len(data.ids)} images × {', '.join(ms.name for ms in mask_sets)}", flush=True)
    plan = cluster_plan(cfg, local=local, work_batches=math.ceil(len(data.ids) * len(mask_sets) / cfg.batch_size))
    missing = frozenset(i for i in data.ids if i not in references) if reference_columns(sweep.metrics) else frozenset()
    model = EvalModelStage(checkpoint, tuple(sweep.metrics), cfg.precision, cfg.batch_size, cfg.weights_dir or "",
                           dict(cfg.weight_paths or {}), cfg.lpips_net, cfg.grid_images, missing, sweep.endpoint, plan)
    counter = ProgressCounter.remote()  # image x mask set rows scored, counted by the actors
    ds = model.apply(_decoded_dataset(sweep, data, mask_sets, plan.codec_cpus), counter)
    reference_names = reference_columns(sweep.metrics)
    columns = (list(ROW_COLUMNS) + scalar_columns(sweep.metrics) + feature_columns(sweep.metrics)
               + reference_names + ["sample"])
    start = time.perf_counter()
    try:
        with JobProgress("evaluate", len(data.ids) * len(mask_sets), counter):
            rows = _collect(ds, columns)
    except Exception as exc:  # noqa: BLE001 - actors died (OOM, a path only the driver sees): this checkpoint only
        return failed(f"evaluation of {checkpoint} failed: {type(exc).__name__}: {first_line(exc)}")
    seconds = time.perf_counter() - start
    results = []
    for ms in mask_sets:
        pair_rows = [r for r in rows if r["mask_set"] == ms.name]
        for r in pair_rows:
            r["id"] = str(r["id"])
            if r["status"] == "ok" and reference_names and r["id"] not in references:
                computed = {c: np.asarray(r[c], np.float32) for c in reference_names}
                if all(v.size for v in computed.values()):
                    references[r["id"]] = computed  # ground truth the cache lacked, computed by the actor
                else:
                    r.update(status="error", error=f"no ground-truth reference features "
                                                   f"({', '.join(reference_names)}) for {r['source']}")
        summary = summary_rows(sweep, run_id, checkpoint, step, ms.name, pair_rows, references,
                               seconds * len(pair_rows) / max(1, len(rows)))
        result = write_pair(sweep, run_id, checkpoint, step, ms, pair_rows, summary)
        print(f"  {result.line()}", flush=True)
        results.append(result)
    return results
