"""What a bulk inpainting run works on, found before the pipeline starts: its storage
(``open_storage``: input, mask folder and output, reachable), its model (``check_model``:
loaded once on the driver, so a missing or incompatible one fails before Ray's work, and
its id known), and what is left to do (``list_inputs``: folder records listed against the
ids of earlier records; Parquet shards planned in Ray tasks; WebDataset shards from their
tar headers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import fsspec

from lama_core.storage import join_uri

from pipelines.common.errors import ConfigError, JobError
from pipelines.common.retry import RetryPolicy
from pipelines.common.samples import INPAINT_PHOTOS, write_sample_shard
from pipelines.common.storage import CHECKOUT, absolute_uri, input_exclusions, open_output, reach
from pipelines.inpaint.config import DEFAULT_INPUT, InpaintConfig
from pipelines.records.listing import Listing, detect_format, list_files, list_folder
from pipelines.records.resume import ResumeState, read_resume_state
from pipelines.records.shard_plan import PlanRequest, plan_shards
from pipelines.records.webdataset import is_brace_pattern, is_webdataset_input, list_webdataset

if TYPE_CHECKING:
    from pipelines.inpaint.model_stage import LoadedModel



#: Folder of the output holding the exported graphs of non-torch backends.
GRAPHS_DIR = "_models"


def retry_policy(cfg: InpaintConfig) -> RetryPolicy:
    """The storage retry policy of a job config (``storage_attempts`` tries, backoff from
    ``storage_backoff_seconds`` doubling up to ``storage_backoff_max_seconds``)."""
    return RetryPolicy(cfg.storage_attempts, cfg.storage_backoff_seconds, cfg.storage_backoff_max_seconds)


@dataclass
class Storage:
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

    @property
    def records_root(self) -> str:
        return f"{self.out_root}/records"


def open_storage(cfg: InpaintConfig) -> Storage:
    """The run's ``Storage``, checked: input (and ``mask_dir``) exist, output reachable.
    The default input (scikit-image's photos) is written on first use. Raises ``JobError``."""
    input_uri, output_uri, mask_uri = (absolute_uri(uri, CHECKOUT) for uri in (cfg.input, cfg.output, cfg.mask_dir))
    if cfg.input == DEFAULT_INPUT and not os.path.exists(input_uri):
        shard = write_sample_shard(input_uri, "samples.parquet", INPAINT_PHOTOS, rgb=False)
        print(f"writing sample photos to {shard} (first run with the default input)")
    in_fs, in_root, in_exists = reach(input_uri, "input", cfg.endpoint_url, attempts=1)
    if not in_exists and not is_brace_pattern(input_uri):  # shards-{000..009}.tar names no one path
        raise JobError(f"input not found: {input_uri}")
    mask_fs, mask_root = in_fs, None
    if mask_uri:
        mask_fs, mask_root, mask_exists = reach(mask_uri, "mask_dir", cfg.endpoint_url, attempts=1)
        if not mask_exists:
            raise JobError(f"mask_dir not found: {mask_uri}")
    # attempts=1: botocore and s3fs do not retry inside a call; pipelines.common.retry does,
    # bounded by the config.
    out_fs, out_root = open_output(output_uri, cfg.endpoint_url, attempts=1)
    return Storage(input_uri, output_uri, mask_uri, in_fs, in_root, out_fs, out_root, mask_fs, mask_root)


@dataclass
class ModelRef:
    """The model as the run knows it: ``uri`` (absolute, or a preset name) for the actors to
    load, ``model_id`` for the records (``pipelines.inpaint.model_stage.load_model``),
    whether its weights are random (a preset name), and for a backend other than torch the
    URI of its exported graph (``graph_uri``; empty for torch or in a dry run)."""

    uri: str
    model_id: str
    random_weights: bool
    graph_uri: str = ""


def model_uri(cfg: InpaintConfig) -> str:
    """``cfg.model`` as the actors load it: a preset name as given, else an absolute URI
    (a relative path missing here is looked up in the checkout). Raises ``JobError`` at once,
    before Ray starts, for a local path that does not exist."""
    from lama_core.choices import PRESETS

    if cfg.model in PRESETS:
        return cfg.model
    uri = absolute_uri(cfg.model, CHECKOUT)
    if "://" not in uri and not os.path.exists(uri):
        raise ConfigError(f"cannot load model {cfg.model}: {uri} does not exist (presets: {', '.join(PRESETS)})")
    return uri


def check_model(cfg: InpaintConfig, st: Storage) -> ModelRef:
    """Load the model once here, so a missing or incompatible one fails before the pipeline
    runs (and the id of its weights is known); for ``backend`` onnxruntime/openvino, export
    its graph once (``exported_graph``; not in a dry run). Raises ``JobError``."""
    # Imported here: torch is the slowest import of the job, and run_inpaint overlaps this
    # call with Ray's start-up.
    from lama_core import CheckpointError, GENERATOR_PRESETS

    from pipelines.inpaint.model_stage import load_model

    model = model_uri(cfg)
    try:
        loaded = load_model(model, cfg.seed, cfg.endpoint_url)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        hint = "" if "://" in cfg.model or os.path.sep in cfg.model else f" (presets: {', '.join(GENERATOR_PRESETS)})"
        raise JobError(f"cannot load model {cfg.model}: {str(exc).splitlines()[0]}{hint}") from exc
    if loaded.random_weights:
        _announce_random_weights(cfg.model, cfg.seed)
    graph = exported_graph(st, loaded) if cfg.backend != "torch" and not cfg.dry_run else ""
    return ModelRef(model, loaded.model_id, loaded.random_weights, graph)


def exported_graph(st: Storage, loaded: LoadedModel) -> str:
    """The ONNX graph (``lama_core.onnx_export``) the actors of a non-torch backend run:
    ``OUTPUT/_models/KEY.onnx``, KEY a hash of the model id (its weights) and the export
    form, exported here once per model (about a minute for big-lama on 2 cores) and reused by
    later runs on the output; every actor reads the file instead of exporting again.
    Written whole (``write_atomic``). Returns its URI; ``JobError`` without the onnx extra."""
    import hashlib

    from lama_core import MissingExtraError
    from lama_core.onnx_export import DEFAULT_DFT, export_onnx_bytes
    from lama_core.storage import write_atomic

    key = hashlib.sha256(f"{loaded.model_id}|{DEFAULT_DFT}".encode()).hexdigest()[:16]
    path = f"{st.out_root}/{GRAPHS_DIR}/{key}.onnx"
    if not st.out_fs.exists(path):
        print(f"exporting {loaded.model_id} to ONNX for the model actors (once per model): {path}", flush=True)
        try:
            graph = export_onnx_bytes(loaded.generator, model_id=loaded.model_id)
        except MissingExtraError as exc:
            raise JobError(str(exc)) from exc
        write_atomic(st.out_fs, path, graph.data)
    return join_uri(st.output_uri, f"{GRAPHS_DIR}/{key}.onnx")


def _announce_random_weights(model: str, seed: int) -> None:
    bar = "!" * 100
    print(f"{bar}\n!!! WARNING: model={model!r} is a preset name, not a checkpoint: its weights are RANDOM "
          f"(seed {seed}).\n!!! The output images are NOT real inpaintings. Pass model=PATH_OR_URI of a big-lama "
          f"folder, a best.ckpt or a generator.safetensors.\n{bar}", flush=True)


def list_inputs(cfg: InpaintConfig, st: Storage, plan_root: str, drop_retryable: bool) -> Listing:
    """What this run has to do. Folder and WebDataset input: listed here, against the ids of
    earlier records (``pipelines.records.resume``); Parquet input: ``_plan_parquet``.
    ``plan_root``: where this run's skip lists go. ``drop_retryable``: remove the error rows
    to redo from the records first (not in a dry run). Raises ``JobError``."""
    # An output or mask folder inside the input folder is not input.
    exclude = input_exclusions(st.in_fs, st.in_root, (st.out_fs, st.out_root), (st.mask_fs, st.mask_root))
    try:
        rel_files = [] if is_brace_pattern(st.in_root) else list_files(st.in_fs, st.in_root, exclude)
        if is_webdataset_input(cfg.input_format, st.in_root, rel_files):
            if st.mask_uri:
                raise JobError("mask_dir applies to folder input only; WebDataset samples carry their masks")
            state = _resume_state(cfg, st, drop_retryable)
            listing = list_webdataset(st.in_fs, st.in_root, st.input_uri, rel_files, state.done)
            listing.retryable = state.counts.retryable
            return listing
        if detect_format(rel_files, cfg.input_format) == "parquet":
            if st.mask_uri:
                raise JobError("mask_dir applies to folder input only; Parquet input carries masks in a mask column")
            return _plan_parquet(cfg, st, rel_files, plan_root, drop_retryable)
        state = _resume_state(cfg, st, drop_retryable)
        if st.in_fs.isfile(st.in_root):
            raise JobError(f"input {st.input_uri} is a file: give a folder of images, or a .parquet shard")
        mask_rel = list_files(st.mask_fs, st.mask_root) if st.mask_root else None
        records, ignored = list_folder(st.in_fs, st.in_root, st.input_uri, rel_files, st.mask_fs, st.mask_root,
                                       st.mask_uri, mask_rel, draw_missing_masks=cfg.mask_kind is not None)
    except JobError:
        raise
    except Exception as exc:
        raise JobError(f"cannot list input {st.input_uri}: {type(exc).__name__}: {exc}") from exc
    todo = [r for r in records if r["id"] not in state.done]
    return Listing("folder", total=len(records), skipped=len(records) - len(todo), ignored_files=ignored, records=todo,
                   retryable=state.counts.retryable)


def _resume_state(cfg: InpaintConfig, st: Storage, drop_retryable: bool) -> ResumeState:
    if cfg.overwrite:
        return ResumeState()
    return read_resume_state(st.out_fs, st.records_root, cfg.retry_errors, drop_retryable, retry_policy(cfg))


def _plan_parquet(cfg: InpaintConfig, st: Storage, rel_files: list[str], plan_root: str,
                  drop_retryable: bool) -> Listing:
    """Parquet input: plan every shard in parallel Ray tasks (``pipelines.records.shard_plan``);
    the driver keeps per-shard numbers and paths, never the ids."""
    from pipelines.cluster.ray_setup import init_ray

    init_ray(verbose=cfg.verbose)
    single = len(rel_files) == 1 and st.in_fs.isfile(st.in_root)
    shards = [(st.in_root if single else f"{st.in_root}/{rel}", st.input_uri if single else join_uri(st.input_uri, rel))
              for rel in rel_files if rel.lower().endswith(".parquet")]
    request = PlanRequest(st.in_fs, st.out_fs, st.records_root, plan_root, cfg.retry_errors,
                          drop_retryable and not cfg.overwrite, retry_policy(cfg))
    planned = plan_shards(request, shards)
    listing = Listing("parquet", total=planned.total, skipped=planned.counts.done,
                      ignored_files=[rel for rel in rel_files if not rel.lower().endswith(".parquet")],
                      retryable=planned.counts.retryable,
                      shard_count=planned.shard_count)
    for plan in planned.shards:
        (listing.shards_with_mask if plan.has_mask else listing.shards_without_mask).append(plan.path)
        listing.shard_uris[plan.path] = plan.uri
        if plan.skip_list:
            listing.skip_lists[plan.path] = plan.skip_list
    return listing
