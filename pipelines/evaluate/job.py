"""Evaluation sweeps with Ray Data (``jobs/evaluate.py``): checkpoints × mask sets → Parquet.

For every (checkpoint, mask set) pair not yet in ``OUTPUT/summary/``, score the checkpoint's
inpaintings of the ground truth with the registered metrics (``lama_core.metrics``), per
image and per hole-area bin. This module is the driver: it checks everything before any
work (``prepare``: config, metric weights, storage, mask sets, remembered settings), runs
one sweep or watches for new checkpoints (``run_evaluation``). The parts:

* ``eval_checkpoints``: ``model=`` -> checkpoint URIs;
* ``eval_data``: the ground truth and the mask sets;
* ``eval_stage``: the Ray Data stages (decode + masks, inpaint + metrics);
* ``eval_sweep``: one pass per checkpoint, summaries, the reference-feature cache, plots;
* ``eval_layout``: the output layout (``OUTPUT/per_image``, ``summary``, ``samples``,
  ``plots``, ``cache``) and its tables.
"""
from __future__ import annotations

import sys
import time
import uuid
from typing import Any, Callable

from lama_core import CheckpointError
from lama_core.metrics import load_inception, load_lpips, reference_columns
from lama_core.storage import is_local, join_uri

from pipelines.evaluate.config import EvaluateConfig
from pipelines.common.config_kit import check_config
from pipelines.common.errors import JobError
from pipelines.evaluate.checkpoints import expand_checkpoints
from pipelines.evaluate.data import list_eval_data, resolve_mask_sets
from pipelines.evaluate.layout import EvalLayout, done_pairs
from pipelines.evaluate.sweep import Sweep, SweepReport, evaluate_checkpoint, load_references, store_references, write_plots
from pipelines.common.storage import absolute_uri, first_line, input_exclusions, open_output, reach
from pipelines.common.run_settings import check_settings, settings_of
from pipelines.common.samples import EVALUATION_PHOTOS, write_sample_shard


def _check_config(cfg: EvaluateConfig) -> list[str]:
    """The config's checks (``run_evaluation`` may be called without the parser) and the
    metric names; returns the requested metrics, de-duplicated."""
    check_config(cfg)
    return list(dict.fromkeys(str(m) for m in cfg.metrics))


def _weight_files(cfg: EvaluateConfig, metric: str) -> list[tuple[str, str | None]]:
    """``[(weight name, explicit path or None)]`` that ``metric`` needs."""
    paths = dict(cfg.weight_paths or {})
    if metric == "fid":
        return [("inception", paths.get("inception"))]
    if metric == "lpips":
        backbone = "vgg16" if cfg.lpips_net == "vgg" else "alexnet"
        return [(backbone, paths.get(backbone)), (f"lpips_{cfg.lpips_net}", paths.get(f"lpips_{cfg.lpips_net}"))]
    return []


def _check_weights(cfg: EvaluateConfig, metrics: list[str]) -> tuple[list[str], str]:
    """Load the metric networks once on the driver, so an unreadable weight file fails
    before any work. Metrics whose weight files are missing are dropped with one line
    naming every missing file (all at once); if no metric is left, ``JobError``.
    Returns ``(metrics to run, Inception model id or "")``."""
    from lama_core.metrics.weights import resolve_weight

    inception_id, kept, missing = "", [], []
    for metric in metrics:
        files, absent = _weight_files(cfg, metric), []
        for name, path in files:
            try:
                resolve_weight(name, cfg.weights_dir or None, path)
            except FileNotFoundError as exc:
                absent.append(first_line(exc))
        if absent:  # every missing file of the metric, not just the first
            missing.append((metric, "; ".join(absent)))
            continue
        try:
            if metric == "fid":
                ((_, inception_path),) = files
                inception_id = load_inception(cfg.weights_dir or None, inception_path).model_id
            elif metric == "lpips":
                (_, backbone_path), (_, head_path) = files
                load_lpips(cfg.lpips_net, cfg.weights_dir or None, backbone_path, head_path)
        except (CheckpointError, ValueError) as exc:
            raise JobError(first_line(exc)) from exc
        kept.append(metric)
    if not kept:
        raise JobError("no metric can run: " + "; ".join(f"{m}: {why}" for m, why in missing))
    if missing:
        print("evaluate: skipping metrics whose weights are missing (set weights_dir= or weight_paths.NAME=): "
              + "; ".join(f"{m}: {why}" for m, why in missing), file=sys.stderr, flush=True)
    return kept, inception_id


#: Options that change the scores written (besides the data): remembered in the output.
EVAL_RESULT_KEYS = ("metrics", "mask_seed", "lpips_net", "precision")
_SETTINGS_WAY_ON = "write to another output, or pass overwrite=true to score every pair again with these"


def eval_settings(cfg: EvaluateConfig, data_uri: str) -> dict[str, Any]:
    """The settings an evaluation output remembers: ``EVAL_RESULT_KEYS`` and the input URI."""
    return settings_of(cfg, EVAL_RESULT_KEYS, input=data_uri)


def prepare(cfg: EvaluateConfig) -> Sweep:
    """Check the config, the metric weights, the storage and the mask sets (in that order);
    every failure is a ``JobError`` with one line, before any work is done. Returns the
    checked ``Sweep``."""
    metrics, inception_id = _check_weights(cfg, _check_config(cfg))
    endpoint = cfg.endpoint_url or None
    output_uri = absolute_uri(cfg.output) or ""
    out_fs, out_root = open_output(output_uri, endpoint, reason=first_line)
    if is_local(out_fs):
        try:
            out_fs.makedirs(out_root, exist_ok=True)
        except Exception as exc:
            raise JobError(f"cannot reach output {output_uri}: {type(exc).__name__}: {first_line(exc)}") from exc
    # input= not given: scikit-image's sample photos, written under the output only once a
    # sweep knows it has work (sweep_once), never by a run that then fails.
    data_uri = absolute_uri(cfg.input) if cfg.input else join_uri(output_uri, "sample_data")
    if cfg.input:
        _, _, data_exists = reach(data_uri, "input", endpoint, reason=first_line)
        if not data_exists:
            raise JobError(f"input not found: {data_uri}")
    mask_sets, mask_fs = resolve_mask_sets(list(cfg.mask_kind), endpoint)
    # Pairs are keyed by (checkpoint, mask set): scores of other data or metrics must not
    # mix in (pipelines/common/run_settings.py). Checked here, remembered once a sweep has work.
    check_settings(out_fs, out_root, output_uri, eval_settings(cfg, data_uri), overwrite=cfg.overwrite,
                   dry_run=True, way_on=_SETTINGS_WAY_ON)
    return Sweep(cfg, endpoint, EvalLayout(output_uri, out_fs, out_root), data_uri, mask_sets, mask_fs, metrics,
                 inception_id)


def _ensure_sample_data(sweep: Sweep) -> None:
    """Write the sample photos to ``sweep.data_uri`` when ``input=`` was not given and they
    are not there yet."""
    if sweep.cfg.input:
        return
    _, _, exists = reach(sweep.data_uri, "input", sweep.endpoint, reason=first_line)
    if exists:
        return
    try:
        shard = write_sample_shard(sweep.data_uri, "sample_photos.parquet", EVALUATION_PHOTOS,
                                   endpoint_url=sweep.endpoint)
    except Exception as exc:
        raise JobError(f"cannot write the sample photos under output {sweep.layout.uri}: {type(exc).__name__}: "
                       f"{first_line(exc)}") from exc
    print(f"input= not given: evaluating scikit-image's photos held out from the default model's training "
          f"({shard})", flush=True)


def sweep_once(sweep: Sweep, clear_tables: bool = False) -> SweepReport:
    """Evaluate every (checkpoint, mask set) pair not yet in ``OUTPUT/summary/``. Checkpoints
    that fail to load are reported (error line, ``status='error'`` summary row) and retried
    by the next sweep; the others go on. ``clear_tables`` (``overwrite=true``, first sweep
    of a run only): remove the earlier per_image/summary tables first."""
    from pipelines.cluster.ray_setup import init_ray

    cfg, layout = sweep.cfg, sweep.layout
    checkpoints, ignored = expand_checkpoints(cfg.model, sweep.endpoint)
    for name in ignored:
        if name.endswith(")"):  # a training checkpoint caught mid-write or damaged: say why
            print(f"evaluate: skipping checkpoint {name}", flush=True)
    if not checkpoints:
        spec = cfg.model if isinstance(cfg.model, str) else list(cfg.model)
        raise JobError(f"no checkpoint matches model={spec}")
    report = SweepReport(checkpoints=len(checkpoints), ignored=ignored)
    if clear_tables and not cfg.dry_run:
        removed = layout.remove_tables()
        report.cleared = True
        print(f"overwrite=true: removed {removed} earlier per_image/summary files", flush=True)
    done = set() if cfg.overwrite else done_pairs(layout.read_summaries())
    pending = [(c, [ms for ms in sweep.mask_sets if (c, ms.name, ms.content_id) not in done]) for c in checkpoints]
    pending = [(c, sets) for c, sets in pending if sets]
    report.skipped = len(checkpoints) * len(sweep.mask_sets) - sum(len(s) for _, s in pending)
    if not pending:
        print(f"evaluate: nothing new: all {report.skipped} checkpoint × mask set pairs are already in "
              f"{layout.summary_uri()} (skipped)", flush=True)
        return report
    print(f"evaluate: {sum(len(s) for _, s in pending)} pairs to evaluate ({len(pending)} checkpoints), "
          f"{report.skipped} already done (skipped)", flush=True)
    if cfg.dry_run:
        for checkpoint, sets in pending:
            print(f"  would evaluate {checkpoint} on {', '.join(ms.name for ms in sets)}")
        print("dry_run=true: nothing evaluated", flush=True)
        return report
    check_settings(layout.fs, layout.root, layout.uri, eval_settings(cfg, sweep.data_uri),
                   overwrite=cfg.overwrite, way_on=_SETTINGS_WAY_ON)
    _ensure_sample_data(sweep)
    local = init_ray(verbose=cfg.verbose) == "local"
    run_id = f"eval-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    # An output folder inside the data folder is not data (unless the data lives in the output).
    data_fs, data_root, _ = reach(sweep.data_uri, "input", sweep.endpoint, reason=first_line)
    exclude = input_exclusions(data_fs, data_root, (layout.fs, layout.root))
    data = list_eval_data(sweep.data_uri, cfg.input_format, sweep.endpoint, exclude=exclude)
    for ms in sweep.mask_sets:
        if ms.uri and ms.count < len(data.ids):
            print(f"warning: mask set {ms.name} holds {ms.count} masks for {len(data.ids)} images: the images "
                  f"after the first {ms.count} become error rows", file=sys.stderr)
    references = load_references(sweep, data)
    if reference_columns(sweep.metrics):
        print(f"ground-truth Inception features: {len(references)} of {len(data.ids)} images cached" +
              ("" if len(references) >= len(data.ids) else "; the first pass computes the rest, once"), flush=True)
    for checkpoint, sets in pending:
        cached = len(references)
        report.evaluated.extend(evaluate_checkpoint(sweep, run_id, local, data, checkpoint, sets, references))
        if len(references) > cached:  # the pass computed ground-truth features the cache lacked
            store_references(sweep, data, references)
    plots = write_plots(sweep, sorted({p.mask_set for p in report.evaluated}))
    print(f"results: {layout.table_uri('per_image')}/, {layout.table_uri('summary')}/, "
          f"samples: {layout.samples_uri()}/, plots: {', '.join(plots) or '-'}", flush=True)
    return report


def run_evaluation(cfg: EvaluateConfig, sleep: Callable[[float], None] = time.sleep) -> list[SweepReport]:
    """Run the sweep ``cfg`` describes: once,
    or with ``watch=true`` every ``poll_seconds`` until ``max_polls`` sweeps (0 = forever,
    until interrupted). ``sleep`` waits between polls (tests pass their own). Returns one
    report per sweep. Raises ``JobError`` when the job cannot run."""
    sweep = prepare(cfg)
    reports: list[SweepReport] = []
    cleared = False  # overwrite=true clears the tables once per run, not on every poll of a watcher
    while True:
        try:
            reports.append(sweep_once(sweep, clear_tables=cfg.overwrite and not cleared))
            cleared = cleared or reports[-1].cleared
        except (JobError, OSError) as exc:
            if not cfg.watch:
                if isinstance(exc, JobError):
                    raise
                raise JobError(f"storage error: {type(exc).__name__}: {first_line(exc)}") from exc
            # A watcher outlives a glob that matches nothing yet (training starting) and
            # storage hiccups: report and poll again.
            print(f"watch: {first_line(exc)}; polling again in {cfg.poll_seconds:g} s", flush=True)
            reports.append(SweepReport())
        if not cfg.watch or (cfg.max_polls and len(reports) >= cfg.max_polls):
            return reports
        print(f"watch: poll {len(reports)} done; next in {cfg.poll_seconds:g} s (Ctrl-C stops)", flush=True)
        sleep(cfg.poll_seconds)
