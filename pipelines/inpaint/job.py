"""Bulk inpainting of a dataset in object storage with Ray Data (``jobs/inpaint.py``).

    list (driver, names only) -> read + decode (CPU tasks) -> inpaint (actor pool, GPU or
    CPU) -> encode + write OUTPUT/images/ID.png (CPU tasks) -> write_parquet OUTPUT/records/

Every record flows through every stage as one row with a ``status``: a stage that fails on
one record turns it into an error row (``status='error'``, ``error`` naming the file) and
later stages pass error rows through untouched, so one bad file never stops a job and
every input id appears in ``records/`` exactly once. Error rows carry an ``error_kind``
(``pipelines.common.error_kinds``); storage faults are retried with bounded backoff first
(``pipelines.common.retry``). Rerunning with the same output skips ids done and redoes
retryable error rows, which leave their records files first (``pipelines.records.resume``;
Parquet input: ``pipelines.records.shard_plan``, records partitioned by input shard);
``overwrite=true`` redoes everything. One run writes an output at a time
(``pipelines.common.output_lease``), with the settings it was started with
(``pipelines.common.run_settings``).

Each stage owns its options and its ``map_batches`` specification (``*Stage.apply``):
``pipelines.records`` (read + decode, with one ``DecodeOptions`` for every input form),
``model_stage`` (the model), ``record_writer`` / ``webdataset_writer`` (encode + write).
``inputs`` finds the storage, the model and the work; this module composes the stages.
"""
from __future__ import annotations

import math
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow.parquet as pq

from lama_core.storage import join_uri

from pipelines.cluster.actor_pool import ActorPlan, cluster_plan
from pipelines.cluster.progress import JobProgress, ProgressCounter
from pipelines.cluster.ray_setup import RAY_CONNECTION, init_ray, init_ray_during
from pipelines.common.config_kit import check_config
from pipelines.common.errors import JobError
from pipelines.cluster.filesystems import fenced_filesystem
from pipelines.common.task_retries import worker_crash_line
from pipelines.common.output_lease import acquire_lease, lost_lease_line
from pipelines.common.retry import is_transient
from pipelines.common.run_settings import check_settings, settings_of
from pipelines.common.storage import message_line
from pipelines.inpaint.config import RESULT_KEYS, RESULT_KEYS_BEFORE, InpaintConfig
from pipelines.inpaint.inputs import (ModelRef, Storage, check_model, list_inputs, model_uri, open_storage,
                                     retry_policy)
from pipelines.inpaint.preview import write_preview
from pipelines.inpaint.record_writer import ImageWriteStage
from pipelines.inpaint.webdataset_writer import ShardWriteStage, reconcile_shards
from pipelines.records.decode import DecodeOptions, FolderDecodeStage, ParquetDecodeStage
from pipelines.records.listing import Listing
from pipelines.records.resume import records_files, remove_records
from pipelines.records.shard_plan import PARTITION, remove_plan


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
    preview: str = ""  # URI of OUTPUT/preview.png, when drawn

    @property
    def images_per_second(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary a job prints last."""
        warning = " [model has RANDOM weights]" if self.random_weights else ""
        preview = f" / preview {self.preview}" if self.preview else ""
        return (f"inpaint: {self.ok} ok / {self.failed} failed / {self.skipped} skipped (resumed) / "
                f"{self.ignored} ignored files / {self.images_per_second:.2f} images/s / output {self.output}"
                f"{preview}{warning}")


@dataclass
class _Run:
    """One run's fixed facts: its id, storage and model."""

    run_id: str
    storage: Storage
    model: ModelRef
    fence: Any = None  # the lease's LeaseFence, once taken: every writer checks it

    @property
    def plan_root(self) -> str:
        """Skip lists of partly done Parquet shards live here for the run only."""
        return f"{self.storage.out_root}/_plan/{self.run_id}"

    def summary(self, listing: Listing) -> InpaintSummary:
        return InpaintSummary(0, 0, listing.skipped, listing.ignored, 0.0, self.storage.output_uri, self.run_id,
                              self.model.model_id, self.model.random_weights)


def run_inpaint(cfg: InpaintConfig) -> InpaintSummary:
    """Run the bulk inpainting job described by ``cfg`` and return its summary. Raises
    ``JobError`` when the job cannot run: bad config (``cfg.problems()``, checked again for
    callers that skip the parser), input missing, storage unreachable (also mid-run, after
    the retries), model missing or incompatible, output held by another run, settings that
    differ from the output's (``run_settings``). ``dry_run``: print the plan only."""
    check_config(cfg)
    model_uri(cfg)  # a missing local model fails now, not after Ray's start-up
    run_id = f"run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"

    def prepare() -> _Run:
        storage = open_storage(cfg)
        return _Run(run_id, storage, check_model(cfg, storage))

    if cfg.dry_run:
        return _plan_only(cfg, prepare())
    # Ray's start-up is mostly waiting on its processes: open the storage and load the
    # model (torch's import included) meanwhile. A bad input or model still fails before
    # the pipeline runs, once Ray is up (and the local Ray started for it is stopped).
    _, run = init_ray_during(prepare, verbose=cfg.verbose)
    st = run.storage
    # One writer per output: nothing below touches it without the lease (output_lease.py).
    try:
        lease = acquire_lease(st.out_fs, st.out_root, st.output_uri, run_id, cfg.lease_seconds)
    except JobError:
        raise
    except Exception as exc:  # storage down or access refused at the start: one line
        raise JobError(f"cannot take the lease on output {st.output_uri}: {type(exc).__name__}: "
                       f"{message_line(exc)[:300]}") from exc
    run.fence = lease.fence(retry_policy(cfg))
    try:
        summary = _run_with_lease(cfg, run)
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


def _plan_only(cfg: InpaintConfig, run: _Run) -> InpaintSummary:
    """``dry_run=true``: check settings and print the plan; write nothing, run no model."""
    st = run.storage
    check_settings(st.out_fs, st.out_root, st.output_uri, settings_of(cfg, RESULT_KEYS, model=run.model.model_id),
                   cfg.overwrite, dry_run=True, before=RESULT_KEYS_BEFORE)
    try:
        listing = list_inputs(cfg, st, run.plan_root, drop_retryable=False)
    finally:
        remove_plan(st.out_fs, run.plan_root)
    shards = f"{len(listing.shards_with_mask) + len(listing.shards_without_mask)} of {listing.shard_count} shards " \
        "to read; " if listing.kind == "parquet" else ""
    print(f"dry run: {listing.total} records in {st.input_uri} ({listing.kind}): {listing.skipped} done, "
          f"{listing.pending} to do (of which {listing.retryable} retryable error rows); {shards}"
          f"{listing.ignored_line()}; output {st.output_uri}", flush=True)
    print("dry run: nothing written", flush=True)
    return run.summary(listing)


def _run_with_lease(cfg: InpaintConfig, run: _Run) -> InpaintSummary:
    st = run.storage
    if cfg.overwrite and (removed := remove_records(st.out_fs, st.records_root)):
        print(f"overwrite=true: removed {removed} earlier records files")
    # After removing old records (overwrite), so old rows never sit under new settings.
    check_settings(st.out_fs, st.out_root, st.output_uri, settings_of(cfg, RESULT_KEYS, model=run.model.model_id),
                   cfg.overwrite, before=RESULT_KEYS_BEFORE)
    reconcile_shards(st.out_fs, st.out_root)  # output_format=webdataset after a killed run
    try:
        return _run_planned(cfg, run)
    finally:
        remove_plan(st.out_fs, run.plan_root)


def _decoded(cfg: InpaintConfig, run: _Run, listing: Listing, plan: ActorPlan) -> Any:
    """The read + decode part of the pipeline for the listing's input form: a dataset of
    decoded rows, every form decoded with the same ``DecodeOptions``."""
    import ray

    from pipelines.records.parquet_geometry import split_by_geometry
    from pipelines.records.webdataset import WebDatasetDecodeStage, read_webdataset_records

    st, policy = run.storage, retry_policy(cfg)
    # A folder image without a mask file is an error row unless mask_kind is set; a Parquet
    # row or WebDataset sample without a mask gets the default mask set.
    options = DecodeOptions(cfg.max_input_pixels, cfg.mask_kind if listing.kind == "folder" else cfg.drawn_mask_kind,
                            cfg.mask_seed, cfg.mask_dilate, cfg.resize_over_limit)
    batch, cpus = cfg.codec_batch_size, plan.codec_cpus
    if listing.kind == "webdataset":
        stage = WebDatasetDecodeStage(listing.shard_uris, frozenset(listing.skip_ids), options, batch, cpus)
        return read_webdataset_records(listing, st.in_fs, stage)
    if listing.kind == "folder":
        # Records are a few strings each; blocks of codec_batch_size records spread the reads
        # over all decode tasks from the start.
        blocks = max(1, min(math.ceil(len(listing.records) / batch), 10_000))
        ds = ray.data.from_items(listing.records, override_num_blocks=blocks)
        return FolderDecodeStage(st.in_fs, st.mask_fs, policy, options, batch, cpus).apply(ds)
    stage = ParquetDecodeStage(listing.shard_uris, listing.skip_lists, st.out_fs, options, batch, cpus)
    parts = []
    # Shards with a geometry column, with a mask column and with neither are read apart
    # (one read needs one schema); the column selection is pushed down into the reader.
    for shards, columns in split_by_geometry(st.in_fs, ((listing.shards_with_mask, ["id", "image", "mask"]),
                                                        (listing.shards_without_mask, ["id", "image"]))):
        part = ray.data.read_parquet(shards, filesystem=st.in_fs, include_paths=True,
                                     num_cpus=cpus).select_columns(columns + ["path"], num_cpus=cpus)
        parts.append(stage.apply(part))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _writer(cfg: InpaintConfig, run: _Run, listing: Listing, plan: ActorPlan) -> ImageWriteStage | ShardWriteStage:
    """The writer stage of ``cfg.output_format``."""
    st, partitioned = run.storage, listing.kind == "parquet"
    if cfg.output_format == "webdataset":  # shards of ID.png + ID.json (webdataset_writer.py)
        return ShardWriteStage(st.out_fs, f"{st.out_root}/shards", join_uri(st.output_uri, "shards"),
                               cfg.png_compress_level, run.model.model_id, run.run_id, retry_policy(cfg), partitioned,
                               cfg.records_per_shard, plan.codec_cpus, run.fence)
    return ImageWriteStage(st.out_fs, f"{st.out_root}/images", join_uri(st.output_uri, "images"),
                           f"{st.out_root}/masks" if cfg.write_masks else None, join_uri(st.output_uri, "masks"),
                           cfg.output_format, cfg.png_compress_level, cfg.jpeg_quality, run.model.model_id, run.run_id,
                           retry_policy(cfg), partitioned, cfg.codec_batch_size, plan.codec_cpus, run.fence)


def _allow_storage_retries_in_ray_writes() -> None:
    """Ray Data retries a records-file write whose error text matches
    ``DataContext.retried_io_errors`` (its defaults name pyarrow's S3 errors only): add the
    fsspec/botocore/aiohttp forms of the transient failures of ``pipelines.common.retry``."""
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


def _run_planned(cfg: InpaintConfig, run: _Run) -> InpaintSummary:
    import ray
    from ray.data.datasource import FilenameProvider

    from pipelines.inpaint.model_stage import ModelStage

    st = run.storage
    # Retryable error rows leave their files here, before they are redone (records/resume.py).
    listing = list_inputs(cfg, st, run.plan_root, drop_retryable=True)
    print(f"inpaint: {listing.total} records in {st.input_uri} ({listing.kind}), {listing.pending} to do, "
          f"{listing.skipped} already done, {listing.ignored_line()}; run {run.run_id}", flush=True)
    summary = run.summary(listing)
    if listing.pending == 0:
        return summary

    how = init_ray(verbose=cfg.verbose)
    plan = cluster_plan(cfg, local=how == "local", work_batches=math.ceil(listing.pending / cfg.batch_size))
    print(f"inpaint: {RAY_CONNECTION[how]}; {plan.line()}", flush=True)
    _allow_storage_retries_in_ray_writes()
    ds = _decoded(cfg, run, listing, plan)
    # No repartition between decode and model: Ray Data runs a streaming repartition as
    # tasks of 1 CPU, which never get scheduled while the actors hold all but a fraction
    # of a CPU (the job hung). The codec tasks' fractional CPUs differ from the actors',
    # so Ray Data does not fuse decoding into the actors either; map_batches re-bundles rows.
    counter = ProgressCounter.remote()  # the model stage counts rows as it finishes them
    model = ModelStage(run.model.uri, cfg.seed, cfg.precision, cfg.max_pixels, cfg.hd_strategy, cfg.batch_size,
                       cfg.endpoint_url, cfg.write_masks, plan, cfg.backend, run.model.graph_uri)
    ds = _writer(cfg, run, listing, plan).apply(model.apply(ds, counter))
    start = time.perf_counter()
    try:
        # Run-unique file names: a rerun never overwrites the records of an earlier run.
        # Every stage names its CPUs: one left at Ray's default of 1 CPU never runs beside
        # actors that hold all but a fraction of a CPU (the job waits forever). Parquet
        # input: records partitioned by input shard, each partition the shard's completion
        # manifest (records/shard_plan.py).
        with warnings.catch_warnings(), JobProgress("inpaint", listing.pending, counter):
            warnings.simplefilter("ignore", DeprecationWarning)  # min_rows_per_file with partition_cols
            # The records files are the commits: each is opened only after its task proves
            # this run still holds the lease (output_lease.LeaseFence).
            records_fs = fenced_filesystem(st.out_fs, run.fence) if run.fence is not None else st.out_fs
            ds.write_parquet(st.records_root, filesystem=records_fs, min_rows_per_file=cfg.records_per_file,
                             ray_remote_args={"num_cpus": plan.codec_cpus},
                             filename_provider=FilenameProvider(dataset_uuid=run.run_id, file_format="parquet"),
                             partition_cols=[PARTITION] if listing.kind == "parquet" else None)
    except ray.exceptions.ActorDiedError as exc:
        # Typically the model cannot be loaded where the actors run (a path that exists on
        # the driver's machine only, no GPU memory): one line here, Ray logged the details.
        cause = [line.strip() for line in str(exc).splitlines() if line.strip()][-1]
        raise JobError(f"the model actors could not start: {cause} (records written so far are kept; "
                       "rerun to resume)") from exc
    except Exception as exc:  # a writer found the lease gone, a record crashed its workers: one line
        line = lost_lease_line(exc) or worker_crash_line(exc, "decoding or writing records")
        if line is None:
            raise
        raise JobError(line) from None
    summary.seconds = time.perf_counter() - start
    # The files were written by other processes: what this process listed before is stale.
    st.out_fs.invalidate_cache(st.records_root)
    summary.records_files = records_files(st.out_fs, st.records_root, prefix=f"{run.run_id}_", recursive=True)
    summary.ok, summary.failed = _count_statuses(st.out_fs, summary.records_files)
    summary.preview = write_preview(st.out_fs, st.out_root, st.output_uri, summary.records_files, cfg.preview,
                                    retry_policy(cfg))
    return summary
