"""Bulk inpainting of a dataset in object storage with Ray Data (``jobs/inpaint.py``).

    list (driver, names only) -> read + decode (CPU tasks) -> inpaint (actor pool, GPU or
    CPU) -> encode + write OUTPUT/images/ID.png (CPU tasks) -> write_parquet OUTPUT/records/

Every record flows through every stage as one row with a ``status``: a stage that fails on
one record turns it into an error row (``status='error'``, ``error`` naming the file) and
later stages pass error rows through untouched, so one bad file never stops a job and
every input id appears in ``records/`` exactly once. Error rows carry an ``error_kind``
(``error_kinds``); storage faults are retried with bounded backoff first
(``storage_retry``). Rerunning with the same output skips ids done and redoes retryable
error rows, which leave their records files first (``resume_state``; Parquet input:
``shard_plan``, records partitioned by input shard); ``overwrite=true`` redoes
everything. One run writes an output at a time (``output_lease``), with the settings it
was started with (``run_settings``).

The stages: ``record_decode`` (read + decode), ``inpaint_stage`` (the model),
``inpaint_records`` (encode + write, the records' schema); this module lists the input
and runs the pipeline.
"""
from __future__ import annotations

import math
import os
import time
import uuid
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow.parquet as pq

from lama_core.storage import join_uri

from pipelines.common.configs import InpaintConfig
from pipelines.common.errors import JobError
from pipelines.inpaint.record_writer import encode_batch
from pipelines.common.storage import absolute_uri, input_exclusions, message_line, open_output, reach
from pipelines.common.output_lease import acquire_lease
from pipelines.cluster.progress import JobProgress, ProgressCounter
from pipelines.cluster.ray_setup import RAY_CONNECTION, init_ray_during
from pipelines.records.decode import decode_folder_batch, decode_parquet_batch
from pipelines.records.listing import Listing, detect_format, list_files, list_folder
from pipelines.records.resume import ResumeState, read_resume_state, records_files, remove_records
from pipelines.common.run_settings import check_settings, settings_of
from pipelines.common.samples import INPAINT_PHOTOS, write_sample_shard
from pipelines.records.shard_plan import PARTITION, plan_shards, remove_plan
from pipelines.cluster.actor_pool import ActorPlan, cluster_plan, model_actor_pool
from pipelines.common.retry import RetryPolicy, is_transient
from pipelines.records.webdataset import is_brace_pattern, is_webdataset_input, list_webdataset
from pipelines.inpaint.webdataset_writer import reconcile_shards, write_shard_batch

# DEFAULT_MODEL (pipelines/common/configs.py): the demo checkpoint shipped in this repository (see
# README). A relative path is looked up in the working directory, then in the checkout.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
#: Default input: scikit-image's bundled photos, written there as a Parquet shard on first use.
DEFAULT_INPUT = "outputs/samples"
DEFAULT_OUTPUT = "outputs/inpaint"
#: Generated mask set for Parquet and WebDataset records without a mask when ``mask_kind`` is unset.
DEFAULT_MASK_KIND = "thick_512"


# ----------------------------------------------------------------------------- the driver

@dataclass
class InpaintSummary:
    """What a run did: records written ok / as errors, skipped (already done), input files
    ignored, seconds the pipeline ran, where the results are."""

    ok: int
    failed: int
    skipped: int
    ignored: int
    seconds: float
    output: str
    run_id: str
    model_id: str
    random_weights: bool
    records_files: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary a job prints last."""
        warning = " [model has RANDOM weights]" if self.random_weights else ""
        return (f"inpaint: {self.ok} ok / {self.failed} failed / {self.skipped} skipped (resumed) / "
                f"{self.ignored} ignored files / {self.images_per_second:.2f} images/s / output {self.output}{warning}")


#: Options that change the pixels or numbers written: remembered in OUTPUT/_settings.json
#: (``pipelines.common.run_settings``) with the model id; a rerun with other values is refused.
#: Input locations (``input``, ``mask_dir``) are not settings: fixing a forgotten
#: ``mask_dir`` and rerunning with ``retry_errors=true`` is the way to repair records.
RESULT_KEYS = ("mask_kind", "mask_seed", "precision", "max_pixels", "max_input_pixels", "output_format",
               "jpeg_quality", "hd_strategy", "mask_dilate")


def retry_policy(cfg: Any) -> RetryPolicy:
    """The storage retry policy of a job config (``storage_attempts`` tries, backoff from
    ``storage_backoff_seconds`` doubling up to ``storage_backoff_max_seconds``)."""
    return RetryPolicy(cfg.storage_attempts, cfg.storage_backoff_seconds, cfg.storage_backoff_max_seconds)


def _check_config(cfg: InpaintConfig) -> None:
    """The config's own checks again (``run_inpaint`` may be called without the parser)."""
    if problems := cfg.problems():
        raise JobError("bad config: " + "; ".join(problems))


def _announce_random_weights(model: str, seed: int) -> None:
    bar = "!" * 100
    print(f"{bar}\n!!! WARNING: model={model!r} is a preset name, not a checkpoint: its weights are RANDOM "
          f"(seed {seed}).\n!!! The output images are NOT real inpaintings. Pass model=PATH_OR_URI of a big-lama "
          f"folder, a best.ckpt or a generator.safetensors.\n{bar}", flush=True)


def _build_dataset(cfg: InpaintConfig, listing: Listing, in_fs: fsspec.AbstractFileSystem,
                   mask_fs: fsspec.AbstractFileSystem, out_fs: fsspec.AbstractFileSystem, plan: ActorPlan,
                   policy: RetryPolicy) -> "ray.data.Dataset":
    """The read + decode part of the pipeline: a dataset of decoded rows."""
    import ray

    from pipelines.records.parquet_geometry import split_by_geometry
    from pipelines.records.webdataset import read_webdataset_records

    mask_kind = cfg.mask_kind or DEFAULT_MASK_KIND
    if listing.kind == "webdataset":  # issue 17: WebDataset shards (pipelines/records/webdataset.py)
        return read_webdataset_records(listing, in_fs, cfg.codec_batch_size, plan.codec_cpus, mask_kind,
                                       cfg.mask_seed, cfg.mask_dilate)
    if listing.kind == "folder":
        # Records are a few strings each; blocks of codec_batch_size records spread the reads
        # over all decode tasks from the start.
        blocks = max(1, min(math.ceil(len(listing.records) / cfg.codec_batch_size), 10_000))
        ds = ray.data.from_items(listing.records, override_num_blocks=blocks)
        return ds.map_batches(decode_folder_batch, batch_size=cfg.codec_batch_size, num_cpus=plan.codec_cpus,
                              fn_kwargs=dict(image_fs=in_fs, mask_fs=mask_fs, retry=policy,
                                             max_input_pixels=cfg.max_input_pixels, mask_kind=cfg.mask_kind,
                                             mask_seed=cfg.mask_seed, mask_dilate=cfg.mask_dilate))
    parts = []
    # issue 17: shards with a geometry column are read as a group of their own.
    for shards, columns in split_by_geometry(in_fs, ((listing.shards_with_mask, ["id", "image", "mask"]),
                                                     (listing.shards_without_mask, ["id", "image"]))):
        # Shards with and without a mask column are read apart (one read needs one schema);
        # the column selection is pushed down into the Parquet reader.
        part = ray.data.read_parquet(shards, filesystem=in_fs, include_paths=True,
                                     num_cpus=plan.codec_cpus).select_columns(
                                         columns + ["path"], num_cpus=plan.codec_cpus)
        parts.append(part.map_batches(
            decode_parquet_batch, batch_size=cfg.codec_batch_size, num_cpus=plan.codec_cpus,
            fn_kwargs=dict(shard_uris=listing.shard_uris, skip_lists=listing.skip_lists, out_fs=out_fs,
                           mask_kind=mask_kind, mask_seed=cfg.mask_seed, max_input_pixels=cfg.max_input_pixels,
                           mask_dilate=cfg.mask_dilate)))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


@dataclass
class _Storage:
    """Where a run reads and writes: URIs as given (local paths made absolute) and their
    fsspec filesystems and paths."""

    input_uri: str
    output_uri: str
    mask_uri: str | None
    in_fs: fsspec.AbstractFileSystem
    in_root: str
    out_fs: fsspec.AbstractFileSystem
    out_root: str
    mask_fs: fsspec.AbstractFileSystem
    mask_root: str | None


def _open_storage(cfg: Any, endpoint: str | None) -> _Storage:
    # Relative paths missing here resolve under the repo too (e.g. the shipped demo model, run from another folder).
    input_uri, output_uri, mask_uri = (absolute_uri(uri, _REPO_ROOT) for uri in (cfg.input, cfg.output, cfg.mask_dir))
    if cfg.input == DEFAULT_INPUT and not os.path.exists(input_uri):
        shard = write_sample_shard(input_uri, "samples.parquet", INPAINT_PHOTOS, rgb=False)
        print(f"writing sample photos to {shard} (first run with the default input)")
    in_fs, in_root, in_exists = reach(input_uri, "input", endpoint, attempts=1)
    if not in_exists and not is_brace_pattern(input_uri):  # issue 17: shards-{000..009}.tar
        raise JobError(f"input not found: {input_uri}")
    mask_fs, mask_root = in_fs, None
    if mask_uri:
        mask_fs, mask_root, mask_exists = reach(mask_uri, "mask_dir", endpoint, attempts=1)
        if not mask_exists:
            raise JobError(f"mask_dir not found: {mask_uri}")
    # attempts=1: botocore and s3fs do not retry inside a call; storage_retry.py does, bounded by the config.
    out_fs, out_root = open_output(output_uri, endpoint, attempts=1)
    return _Storage(input_uri, output_uri, mask_uri, in_fs, in_root, out_fs, out_root, mask_fs, mask_root)


def _check_model(cfg: Any, endpoint: str | None) -> tuple[str, str, bool]:
    """Load the model once here, so a missing or incompatible one fails before the pipeline
    runs (and the id of its weights is known). Returns ``(model URI or preset for the
    actors, model id, random_weights)``."""
    # Imported here: torch is the slowest import of the job, and run_inpaint overlaps this
    # call with Ray's start-up.
    from lama_core import CheckpointError, GENERATOR_PRESETS

    from pipelines.inpaint.model_stage import load_model

    model = cfg.model if cfg.model in GENERATOR_PRESETS else absolute_uri(cfg.model, _REPO_ROOT)
    try:
        loaded = load_model(model, cfg.seed, endpoint)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        hint = "" if "://" in cfg.model or os.path.sep in cfg.model else f" (presets: {', '.join(GENERATOR_PRESETS)})"
        raise JobError(f"cannot load model {cfg.model}: {str(exc).splitlines()[0]}{hint}") from exc
    if loaded.random_weights:
        _announce_random_weights(cfg.model, cfg.seed)
    return model, loaded.model_id, loaded.random_weights


def _plan_parquet(cfg: Any, st: _Storage, rel_files: list[str], plan_root: str, drop_retryable: bool) -> Listing:
    """Parquet input: plan every shard in parallel Ray tasks (``shard_plan``); the driver
    keeps per-shard numbers and paths, never the ids."""
    from pipelines.cluster.ray_setup import init_ray

    init_ray(verbose=cfg.verbose)
    single = len(rel_files) == 1 and st.in_fs.isfile(st.in_root)
    shards = [(st.in_root if single else f"{st.in_root}/{rel}", st.input_uri if single else join_uri(st.input_uri, rel))
              for rel in rel_files if rel.lower().endswith(".parquet")]
    planned = plan_shards(st.in_fs, shards, st.out_fs, f"{st.out_root}/records", plan_root, cfg.retry_errors,
                          drop_retryable and not cfg.overwrite, retry_policy(cfg))
    listing = Listing("parquet", total=planned.total, skipped=planned.done_ok + planned.done_failed,
                      ignored=len(rel_files) - len(shards), retryable=planned.retryable,
                      shard_count=planned.shard_count)
    for plan in planned.shards:
        (listing.shards_with_mask if plan.has_mask else listing.shards_without_mask).append(plan.path)
        listing.shard_uris[plan.path] = plan.uri
        if plan.skip_list:
            listing.skip_lists[plan.path] = plan.skip_list
    return listing


def _list_inputs(cfg: Any, st: _Storage, plan_root: str, drop_retryable: bool) -> Listing:
    """What this run has to do. Folder input: listed here, against the ids of earlier
    records (``resume_state``); Parquet input: ``_plan_parquet``. ``drop_retryable``:
    remove the error rows to redo from the records first (not in a dry run)."""
    # An output or mask folder inside the input folder is not input.
    exclude = input_exclusions(st.in_fs, st.in_root, (st.out_fs, st.out_root), (st.mask_fs, st.mask_root))
    try:
        rel_files = [] if is_brace_pattern(st.in_root) else list_files(st.in_fs, st.in_root, exclude)
        if is_webdataset_input(cfg.input_format, st.in_root, rel_files):  # issue 17
            if st.mask_uri:
                raise JobError("mask_dir applies to folder input only; WebDataset samples carry their masks")
            state = ResumeState() if cfg.overwrite else read_resume_state(
                st.out_fs, f"{st.out_root}/records", cfg.retry_errors, drop_retryable, retry_policy(cfg))
            listing = list_webdataset(st.in_fs, st.in_root, st.input_uri, rel_files, state.done)
            listing.retryable = state.retryable
            return listing
        if detect_format(rel_files, cfg.input_format) == "parquet":
            if st.mask_uri:
                raise JobError("mask_dir applies to folder input only; Parquet input carries masks in a mask column")
            return _plan_parquet(cfg, st, rel_files, plan_root, drop_retryable)
        state = ResumeState() if cfg.overwrite else read_resume_state(
            st.out_fs, f"{st.out_root}/records", cfg.retry_errors, drop_retryable, retry_policy(cfg))
        done = state.done
        if st.in_fs.isfile(st.in_root):
            raise JobError(f"input {st.input_uri} is a file: give a folder of images, or a .parquet shard")
        mask_rel = list_files(st.mask_fs, st.mask_root) if st.mask_root else None
        records, ignored = list_folder(st.in_fs, st.in_root, st.input_uri, rel_files, st.mask_fs, st.mask_root,
                                       st.mask_uri, mask_rel, draw_missing_masks=cfg.mask_kind is not None)
    except JobError:
        raise
    except Exception as exc:
        raise JobError(f"cannot list input {st.input_uri}: {type(exc).__name__}: {exc}") from exc
    todo = [r for r in records if r["id"] not in done]
    return Listing("folder", total=len(records), skipped=len(records) - len(todo), ignored=ignored, records=todo,
                   retryable=state.retryable)


def _allow_storage_retries_in_ray_writes() -> None:
    """Ray Data retries a records-file write whose error text matches
    ``DataContext.retried_io_errors`` (its defaults name pyarrow's S3 errors only): add the
    fsspec/botocore/aiohttp forms of the transient failures of ``storage_retry``."""
    import ray

    ctx = ray.data.DataContext.get_current()
    extra = ["Connection refused", "Connection reset", "Could not connect", "EndpointConnectionError",
             "ConnectionClosedError", "ServerDisconnectedError", "ReadTimeoutError", "SlowDown", "ServiceUnavailable"]
    ctx.retried_io_errors = list(dict.fromkeys(list(ctx.retried_io_errors) + extra))


def _count_statuses(fs: fsspec.AbstractFileSystem, files: list[str]) -> tuple[int, int]:
    """``(ok, error)`` rows in the given records files."""
    ok = failed = 0
    for path in files:
        with fs.open(path, "rb") as f:
            status = pq.read_table(f, columns=["status"]).column("status").to_pylist()
        ok += status.count("ok")
        failed += len(status) - status.count("ok")
    return ok, failed


def run_inpaint(cfg: Any) -> InpaintSummary:
    """Run the bulk inpainting job described by ``cfg`` (an ``InpaintConfig`` or its
    OmegaConf form) and return its summary. Raises ``JobError`` when the job cannot run:
    bad config, input missing, storage unreachable (also mid-run, after the retries),
    model missing or incompatible, output held by another run, settings that differ
    from the output's (``run_settings``). ``dry_run``: print the plan only."""
    _check_config(cfg)
    endpoint = cfg.endpoint_url or None
    run_id = f"run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"

    def prepare() -> tuple[_Storage, tuple[str, str, bool]]:
        return _open_storage(cfg, endpoint), _check_model(cfg, endpoint)

    if cfg.dry_run:
        st, (_, model_id, random_weights) = prepare()
        return _plan_only(cfg, st, model_id, run_id, random_weights)
    # Ray's start-up is mostly waiting on its processes: open the storage and load the
    # model (torch's import included) meanwhile. A bad input or model still fails before
    # the pipeline runs, once Ray is up (and the local Ray started for it is stopped).
    _, (st, (model, model_id, random_weights)) = init_ray_during(prepare, verbose=cfg.verbose)
    # One writer per output: nothing below touches it without the lease (output_lease.py).
    try:
        lease = acquire_lease(st.out_fs, st.out_root, st.output_uri, run_id, cfg.lease_seconds)
    except JobError:
        raise
    except Exception as exc:  # storage down or access refused at the start: one line
        raise JobError(f"cannot take the lease on output {st.output_uri}: {type(exc).__name__}: "
                       f"{message_line(exc)[:300]}") from exc
    try:
        summary = _run_with_lease(cfg, st, model, model_id, run_id, random_weights)
    except Exception as exc:
        if isinstance(exc, JobError) or not is_transient(exc):
            raise
        # Retries exhausted on storage the whole job needs (a records file, a shard): stop
        # with one line. Records files are whole or absent, so what was written stays valid.
        raise JobError(f"storage unavailable for {st.output_uri} or {st.input_uri} after {cfg.storage_attempts} "
                       f"tries: {type(exc).__name__}: {message_line(exc)[:300]}; records written so far stay valid: "
                       "rerun to resume") from exc
    finally:
        lease.release()
    if lease.lost.is_set():
        print(f"warning: the lease on {st.output_uri} was taken over by another run while this one ran", flush=True)
    return summary


def _plan_only(cfg: Any, st: _Storage, model_id: str, run_id: str, random_weights: bool) -> InpaintSummary:
    """``dry_run=true``: check settings and print the plan; write nothing, run no model."""
    check_settings(st.out_fs, st.out_root, st.output_uri, settings_of(cfg, RESULT_KEYS, model=model_id),
                   cfg.overwrite, dry_run=True)
    plan_root = f"{st.out_root}/_plan/{run_id}"
    try:
        listing = _list_inputs(cfg, st, plan_root, drop_retryable=False)
    finally:
        remove_plan(st.out_fs, plan_root)
    shards = f"{len(listing.shards_with_mask) + len(listing.shards_without_mask)} of {listing.shard_count} shards " \
        "to read; " if listing.kind == "parquet" else ""
    print(f"dry run: {listing.total} records in {st.input_uri} ({listing.kind}): {listing.skipped} done, "
          f"{listing.pending} to do (of which {listing.retryable} retryable error rows); {shards}"
          f"{listing.ignored} files ignored; output {st.output_uri}; nothing written", flush=True)
    return InpaintSummary(0, 0, listing.skipped, listing.ignored, 0.0, st.output_uri, run_id, model_id, random_weights)


def _run_with_lease(cfg: Any, st: _Storage, model: str, model_id: str, run_id: str,
                    random_weights: bool) -> InpaintSummary:
    endpoint = cfg.endpoint_url or None
    policy = retry_policy(cfg)
    records_root = f"{st.out_root}/records"
    if cfg.overwrite and (removed := remove_records(st.out_fs, records_root)):
        print(f"overwrite=true: removed {removed} earlier records files")
    # After removing old records (overwrite), so old rows never sit under new settings.
    check_settings(st.out_fs, st.out_root, st.output_uri, settings_of(cfg, RESULT_KEYS, model=model_id),
                   cfg.overwrite)
    reconcile_shards(st.out_fs, st.out_root)  # issue 17: output_format=webdataset after a killed run
    # Skip lists of partly done shards (shard_plan.py) live here for the run only.
    plan_root = f"{st.out_root}/_plan/{run_id}"
    try:
        return _run_planned(cfg, st, model, model_id, run_id, random_weights, plan_root, endpoint, policy)
    finally:
        remove_plan(st.out_fs, plan_root)


def _run_planned(cfg: Any, st: _Storage, model: str, model_id: str, run_id: str, random_weights: bool,
                 plan_root: str, endpoint: str | None, policy: RetryPolicy) -> InpaintSummary:
    import ray
    from ray.data.datasource import FilenameProvider

    from pipelines.inpaint.model_stage import InpaintStage
    from pipelines.cluster.ray_setup import init_ray

    records_root = f"{st.out_root}/records"
    # Retryable error rows leave their files here, before they are redone (resume_state.py).
    listing = _list_inputs(cfg, st, plan_root, drop_retryable=True)
    print(f"inpaint: {listing.total} records in {st.input_uri} ({listing.kind}), {listing.pending} to do, "
          f"{listing.skipped} already done, {listing.ignored} files ignored; run {run_id}", flush=True)
    summary = InpaintSummary(0, 0, listing.skipped, listing.ignored, 0.0, st.output_uri, run_id, model_id,
                             random_weights)
    if listing.pending == 0:
        return summary

    how = init_ray(verbose=cfg.verbose)
    plan = cluster_plan(cfg, local=how == "local", work_batches=math.ceil(listing.pending / cfg.batch_size))
    print(f"inpaint: {RAY_CONNECTION[how]}; {plan.line()}", flush=True)
    _allow_storage_retries_in_ray_writes()
    ds = _build_dataset(cfg, listing, st.in_fs, st.mask_fs, st.out_fs, plan, policy)
    # No repartition between decode and model: Ray Data runs a streaming repartition as
    # tasks of 1 CPU, which never get scheduled while the actors hold all but a fraction
    # of a CPU (the job hung). The codec tasks' fractional CPUs differ from the actors',
    # so Ray Data does not fuse decoding into the actors either; map_batches re-bundles rows.
    counter = ProgressCounter.remote()  # the model stage counts rows as it finishes them
    ds = ds.map_batches(
        InpaintStage, compute=model_actor_pool(plan), batch_size=cfg.batch_size,
        num_gpus=plan.gpus, num_cpus=plan.cpus,
        fn_constructor_kwargs=dict(model=model, seed=cfg.seed, device=plan.device, precision=cfg.precision,
                                   max_pixels=cfg.max_pixels, batch_size=cfg.batch_size,
                                   num_threads=plan.threads, endpoint_url=endpoint, keep_masks=cfg.write_masks,
                                   hd_strategy=cfg.hd_strategy, counter=counter))
    if cfg.output_format == "webdataset":  # issue 17: shards of ID.png + ID.json (pipelines/inpaint/webdataset_writer.py)
        ds = ds.map_batches(write_shard_batch, batch_size=cfg.records_per_shard, num_cpus=plan.codec_cpus,
                            fn_kwargs=dict(out_fs=st.out_fs, shards_root=f"{st.out_root}/shards",
                                           shards_uri=join_uri(st.output_uri, "shards"),
                                           png_compress_level=cfg.png_compress_level, model_id=model_id,
                                           run_id=run_id, retry=policy))
    else:
        ds = ds.map_batches(
            encode_batch, batch_size=cfg.codec_batch_size, num_cpus=plan.codec_cpus,
            fn_kwargs=dict(out_fs=st.out_fs, images_root=f"{st.out_root}/images",
                           images_uri=join_uri(st.output_uri, "images"), output_format=cfg.output_format,
                           png_compress_level=cfg.png_compress_level, jpeg_quality=cfg.jpeg_quality,
                           model_id=model_id, run_id=run_id, retry=policy, partitioned=listing.kind == "parquet",
                           masks_root=f"{st.out_root}/masks" if cfg.write_masks else None,
                           masks_uri=join_uri(st.output_uri, "masks")))
    start = time.perf_counter()
    try:
        # Run-unique file names: a rerun never overwrites the records of an earlier run.
        # Every stage names its CPUs: one left at Ray's default of 1 CPU never runs beside
        # actors that hold all but a fraction of a CPU (the job waits forever). Parquet
        # input: records partitioned by input shard, each partition the shard's completion
        # manifest (shard_plan.py).
        with warnings.catch_warnings(), JobProgress("inpaint", listing.pending, counter):
            warnings.simplefilter("ignore", DeprecationWarning)  # min_rows_per_file with partition_cols
            ds.write_parquet(records_root, filesystem=st.out_fs, min_rows_per_file=cfg.records_per_file,
                             ray_remote_args={"num_cpus": plan.codec_cpus},
                             filename_provider=FilenameProvider(dataset_uuid=run_id, file_format="parquet"),
                             partition_cols=[PARTITION] if listing.kind == "parquet" else None)
    except ray.exceptions.ActorDiedError as exc:
        # Typically the model cannot be loaded where the actors run (a path that exists on
        # the driver's machine only, no GPU memory): one line here, Ray logged the details.
        cause = [line.strip() for line in str(exc).splitlines() if line.strip()][-1]
        raise JobError(f"the model actors could not start: {cause} (records written so far are kept; "
                       "rerun to resume)") from exc
    summary.seconds = time.perf_counter() - start
    summary.records_files = records_files(st.out_fs, records_root, prefix=f"{run_id}_", recursive=True)
    summary.ok, summary.failed = _count_statuses(st.out_fs, summary.records_files)
    return summary
