"""Evaluation sweeps with Ray Data (``jobs/evaluate.py``): checkpoints × mask sets → Parquet.

For every (checkpoint, mask set) pair not yet in ``OUTPUT/summary/``::

    list data (driver, names only) -> read + decode images, attach masks (CPU tasks)
      -> inpaint + per-image metrics (actor pool: generator, Inpainter, LPIPS, Inception)
      -> rows back to the driver -> per-bin summary (FID per bin) -> Parquet + PNGs

One Ray Data pass per checkpoint covers all of its pending mask sets (the actors load the
generator and the metric networks once). Ground-truth Inception features depend on the
data only: the first pass over new data computes them beside the results' features, and
they are cached as ``OUTPUT/cache/real-features-<key>.npz`` (``key`` = ``content_hash`` of
the data listing — names, sizes, ETags/mtimes — and the Inception weights), so a sweep over
many checkpoints and mask sets, over any number of runs, computes them once. Per-image
features (not just the set's mean and covariance) are cached: FID per hole-area bin needs
the ground truth of each bin's images.

Protocol (docs/DESIGN.md): the generator sees ``image * (1 - mask)``; metrics compare the uint8
result with the known pixels pasted back (what ``Inpainter.inpaint`` returns, what LaMa's
``predict.py`` saves) to the ground truth, on the whole image; FID per hole-area bin.

Masks: a kind name of ``lama_core.masks.MASK_SETS`` draws mask ``i`` of image ``i`` (images
in sorted id order) with ``generate_mask(kind, mask_seed, i, H, W)``; a folder written by
``jobs/make_masks.py`` pairs image ``i`` with ``{i:06d}_mask000.png``, resized (nearest) to
the image when the sizes differ. Every (image, mask set) is one row: a file that cannot
be decoded is an error row, never lost.

Outputs: ``OUTPUT/per_image/<pair>.parquet``, ``OUTPUT/summary/<pair>.parquet`` (written
last: its presence with ``status='ok'`` marks the pair done), ``OUTPUT/samples/<pair>.png``
(input with hole | output | ground truth) and ``OUTPUT/plots/<mask set>.png`` (each metric
against training step). File names are deterministic per pair, so an interrupted pair that
is redone overwrites its files instead of duplicating rows.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from lama_core import CheckpointError, Inpainter, load_generator
from lama_core.checkpoint import GENERATOR_FILE
from lama_core.masks import MASK_SETS, generate_mask
from lama_core.metrics import (ALL, METRICS, MetricContext, compute_metrics, content_hash,
                               hole_area_bin, load_inception, load_lpips, summarize_by_hole_area)
from lama_core.storage import filesystem_for, join_uri
from lama_core.training_checkpoint import checkpoint_problem

from .codecs import RecordError, decode_image, decode_mask
from .eval_plots import metrics_plot_png, sample_grid_png, sample_strip
from .configs import EvaluateConfig
from .errors import JobError
from .records import detect_format, is_image_file, list_parquet
from .run_settings import check_settings, settings_of
from .samples import png_bytes, sample_photos
from .records_schema import UTC_TIMESTAMP, utc_now
from .stage_utils import absolute_uri, blob, cluster_plan, column_batch, read_many, reach

DEFAULT_METRICS = ("psnr", "ssim", "l1", "lpips", "fid")
DEFAULT_OUTPUT = "outputs/evaluate"
#: Where jobs/train.py puts its checkpoints by default (output/name/checkpoint_*).
DEFAULT_CHECKPOINTS = "outputs/train/lama/checkpoint_*"
#: Files a checkpoint glob may match besides directories; anything else (Ray Train's
#: ``checkpoint_manager_snapshot.json``, logs) is not a checkpoint and is skipped.
CHECKPOINT_FILE_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth")
_GLOB_CHARS = re.compile(r"[*?\[]")
# LaMa-convention mask files beside ground-truth images are not ground truth.
_MASK_STEM = re.compile(r"_mask\d*$")
_FROZEN_MASK = re.compile(r"^(\d{6})_mask000\.png$")


# ----------------------------------------------------------------------------- tables

#: Per-image metric columns of the built-in metrics; every table carries all of them (null
#: when not requested), so ``pq.read_table(OUTPUT/per_image)`` sees one schema.
PER_IMAGE_METRIC_COLUMNS = ("psnr", "psnr_hole", "ssim", "ssim_hole", "l1", "l1_hole", "lpips")
SUMMARY_METRIC_COLUMNS = PER_IMAGE_METRIC_COLUMNS + ("fid",)


def _metric_columns(metrics: Sequence[str], builtin: Sequence[str]) -> list[str]:
    """Built-in columns plus those of extra registered metrics in ``metrics``."""
    extra = []
    for name in metrics:
        if name == "fid":
            continue
        for column in METRICS[name].columns:
            if column not in builtin and column not in extra:
                extra.append(column)
    return list(builtin) + extra


def per_image_schema(metrics: Sequence[str]) -> pa.Schema:
    """Schema of ``OUTPUT/per_image/*.parquet``: one row per image × checkpoint × mask set."""
    fields = [("checkpoint", pa.string()), ("step", pa.int64()), ("mask_set", pa.string()), ("id", pa.string()),
              ("index", pa.int64()), ("source", pa.string()), ("mask_source", pa.string()), ("status", pa.string()),
              ("error", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
              ("hole_fraction", pa.float64()), ("hole_area_bin", pa.string()), ("mask_resized", pa.bool_()),
              ("converted", pa.bool_())]
    fields += [(c, pa.float64()) for c in _metric_columns(metrics, PER_IMAGE_METRIC_COLUMNS)]
    fields += [("seconds", pa.float64()), ("run", pa.string()), ("timestamp", UTC_TIMESTAMP)]
    return pa.schema(fields)


def summary_schema(metrics: Sequence[str]) -> pa.Schema:
    """Schema of ``OUTPUT/summary/*.parquet``: one row per checkpoint × mask set × non-empty
    hole-area bin, plus ``all`` (the only row of a pair whose checkpoint failed: ``status``
    ``error``, ``error`` saying why)."""
    fields = [("checkpoint", pa.string()), ("step", pa.int64()), ("mask_set", pa.string()),
              ("hole_area_bin", pa.string()),
              ("n", pa.int64()), ("n_error", pa.int64()), ("status", pa.string()), ("error", pa.string())]
    fields += [(c, pa.float64()) for c in _metric_columns(metrics, SUMMARY_METRIC_COLUMNS)]
    fields += [("data", pa.string()), ("metrics", pa.string()), ("seconds", pa.float64()), ("run", pa.string()),
               ("timestamp", UTC_TIMESTAMP)]
    return pa.schema(fields)


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    def clean(value):
        if isinstance(value, np.generic):
            value = value.item()
        return value

    return pa.Table.from_pylist([{f.name: clean(r.get(f.name)) for f in schema} for r in rows], schema=schema)


def _write_parquet(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> None:
    """Write under a temporary name, then move in place: readers never see half a file."""
    _makedirs(fs, path.rsplit("/", 1)[0])
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f)
    fs.mv(tmp, path)


def _write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    _makedirs(fs, path.rsplit("/", 1)[0])
    fs.pipe_file(path, data)


def _makedirs(fs: fsspec.AbstractFileSystem, path: str) -> None:
    if _is_local(fs):  # object stores have no folders to create
        fs.makedirs(path, exist_ok=True)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def read_summaries(fs: fsspec.AbstractFileSystem, summary_root: str) -> list[dict]:
    """All rows of ``SUMMARY/*.parquet`` as dicts. An unreadable file (a run killed while
    writing it) is skipped with a warning; its pairs count as not evaluated."""
    if not fs.exists(summary_root):
        return []
    rows: list[dict] = []
    # Listed, never globbed: the output path may hold glob characters ([, ?, *).
    for path in sorted(str(p) for p in fs.ls(summary_root.rstrip("/"), detail=False) if str(p).endswith(".parquet")):
        try:
            with fs.open(path, "rb") as f:
                for row in pq.read_table(f).to_pylist():
                    if "bin" in row:  # tables written before the column was named hole_area_bin
                        row["hole_area_bin"] = row.pop("bin")
                    rows.append(row)
        except Exception as exc:  # noqa: BLE001 - any damage means "redo"
            print(f"warning: cannot read summary file {path} ({type(exc).__name__}); its pairs will be "
                  "evaluated again", file=sys.stderr)
    return rows


def done_pairs(summary_rows: list[dict]) -> set[tuple[str, str]]:
    """``(checkpoint, mask_set)`` pairs evaluated successfully (the rerun skip key)."""
    return {(r["checkpoint"], r["mask_set"]) for r in summary_rows if r.get("status") == "ok"}


def remove_tables(plan: "_Plan") -> int:
    """Delete ``OUTPUT/per_image/*.parquet`` and ``OUTPUT/summary/*.parquet`` (nothing else:
    paths are listed, never globbed). Returns the number of files removed."""
    removed = 0
    for table in ("per_image", "summary"):
        root = f"{plan.out_root}/{table}"
        if not plan.out_fs.exists(root):
            continue
        files = [p for p in plan.out_fs.ls(root, detail=False) if str(p).endswith(".parquet")]
        for path in files:
            plan.out_fs.rm_file(path)
        removed += len(files)
    return removed


def pair_key(checkpoint: str, mask_set: str) -> str:
    """File-name stem of a pair's outputs: readable checkpoint and mask-set names plus a short
    hash of the full checkpoint URI (two runs may both have a ``checkpoint_000100``)."""
    parts = [p for p in checkpoint.rstrip("/").split("/") if p]
    if parts and parts[-1] == GENERATOR_FILE and len(parts) > 1:
        parts = parts[:-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", parts[-1] if parts else "checkpoint")[-60:]
    digest = hashlib.sha256(f"{checkpoint}\n{mask_set}".encode()).hexdigest()[:8]
    return f"{name}__{re.sub(r'[^A-Za-z0-9._-]+', '_', mask_set)}__{digest}"


# ----------------------------------------------------------------------------- checkpoints

def expand_checkpoints(spec: Any, endpoint_url: str | None = None) -> tuple[list[str], list[str]]:
    """Resolve ``checkpoints=`` (one URI, a glob such as ``runs/exp/checkpoint_*`` — local or
    ``s3://`` — or a list of either) to ``(checkpoint URIs, names skipped)``.

    Local paths become absolute. Glob matches that are neither directories nor checkpoint
    files (``.safetensors``, ``.ckpt``, ``.pt``, ``.pth``) are skipped, and so are training
    checkpoints (``checkpoint_000000120``) that are incomplete or damaged
    (``lama_core.training_checkpoint.checkpoint_problem``: no ``complete.json``, or a file
    of the wrong size); those are reported as ``"URI (reason)"``. Raises ``JobError`` for an
    explicit (non-glob) URI that does not exist or is such an incomplete checkpoint. Order:
    as given, globs sorted; duplicates dropped."""
    from .ray_filesystem import uri_of

    specs = [spec] if isinstance(spec, str) else list(spec or [])
    found: list[str] = []
    skipped: list[str] = []
    for item in specs:
        item = absolute_uri(str(item).strip())
        if not item:
            continue
        try:
            fs, path = filesystem_for(item, endpoint_url)
            if not _GLOB_CHARS.search(path):
                if not fs.exists(path):
                    raise JobError(f"checkpoint not found: {item}")
                problem = checkpoint_problem(item, endpoint_url)
                if problem:
                    raise JobError(f"checkpoint {item} cannot be evaluated: {problem}")
                found.append(item)
                continue
            matches = sorted(fs.glob(path, detail=True).items())
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"cannot reach checkpoints {item}: {type(exc).__name__}: {_first_line(exc)}") from exc
        for match, info in matches:
            match = match.rstrip("/")
            uri = uri_of(match, item) if "://" in item else match
            if info.get("type") == "directory":
                problem = checkpoint_problem(uri, endpoint_url)  # a training checkpoint caught mid-write
                if problem:
                    skipped.append(f"{match} ({problem})")
                else:
                    found.append(uri)
            elif match.lower().endswith(CHECKPOINT_FILE_EXTENSIONS):
                found.append(uri)
            else:
                skipped.append(match)
    return list(dict.fromkeys(found)), skipped


def checkpoint_step(uri: str, endpoint_url: str | None = None) -> int | None:
    """The training step a checkpoint was taken at, or None when it does not say.

    Looked up, cheapest first: the ``step`` entry of the safetensors header metadata (what
    ``pipelines/train.py`` writes: only the header is read), ``step`` in
    ``training_state.pt``, then ``step`` / ``global_step`` in ``config.json``."""
    try:
        fs, path = filesystem_for(uri, endpoint_url)
        is_dir = fs.isdir(path)
        tensors = f"{path.rstrip('/')}/{GENERATOR_FILE}" if is_dir else path
        if tensors.endswith(".safetensors") and fs.exists(tensors):
            with fs.open(tensors, "rb") as f:
                header_len = int.from_bytes(f.read(8), "little")
                if 0 < header_len < 100 * 2**20:
                    meta = json.loads(f.read(header_len)).get("__metadata__") or {}
                    if str(meta.get("step", "")).strip().lstrip("-").isdigit():
                        return int(meta["step"])
        if not is_dir:
            return None
        state_path = f"{path.rstrip('/')}/training_state.pt"
        if fs.exists(state_path):
            with fs.open(state_path, "rb") as f:
                state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "step" in state:
                return int(state["step"])
        config_path = f"{path.rstrip('/')}/config.json"
        if fs.exists(config_path):
            with fs.open(config_path, "rb") as f:
                config = json.loads(f.read())
            for key in ("step", "global_step"):
                if isinstance(config, dict) and isinstance(config.get(key), int):
                    return int(config[key])
    except Exception:  # noqa: BLE001 - a step is optional information; loading decides validity
        return None
    return None


# ----------------------------------------------------------------------------- data and mask sets

@dataclass
class EvalData:
    """The ground-truth images, in the order that pairs them with masks (sorted ids; image
    ``index`` i gets mask i). ``kind``: ``"folder"`` (``records``: ``id``, ``source``,
    ``image_path``, ``index``) or ``"parquet"`` (``shards``: filesystem paths; ``index_of``:
    id -> index). ``fingerprint``: names, sizes and ETags/mtimes of the files, the real
    features' cache key."""

    uri: str
    kind: str
    fs: fsspec.AbstractFileSystem
    ids: list[str]
    records: list[dict] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    shard_uris: dict[str, str] = field(default_factory=dict)
    index_of: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    ignored: int = 0


def _stem(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    return rel[: len(rel) - len(name) + name.rfind(".")] if "." in name else rel


def _version(info: dict) -> str:
    """What identifies a file's content in a listing: size and ETag (object stores) or mtime."""
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
    return f"{info.get('size', '')}\t{tag}"


def list_eval_data(uri: str, input_format: str = "auto", endpoint_url: str | None = None,
                   exclude: Sequence[str] = ()) -> EvalData:
    """List the ground truth at ``uri``: a folder/prefix of images (png/jpg/jpeg/webp,
    recursive; LaMa-convention ``*_mask000.png`` files beside them are ignored; an image's id
    is its relative path without extension), or Parquet shards with ``id`` and ``image``
    columns. Names only: pixels are read in Ray tasks. Image ``i`` of the sorted ids gets mask
    ``i`` of every mask set.
    Raises ``JobError`` when the data is missing, unreachable, empty or has duplicate ids."""
    fs, root, exists = reach(uri, "data", endpoint_url, reason=_first_line)
    if not exists:
        raise JobError(f"data not found: {uri}")
    try:
        if fs.isfile(root):
            infos = {root: fs.info(root)}
            rel_of = {root: root.rsplit("/", 1)[-1]}
        else:
            infos = fs.find(root, withdirs=False, detail=True)
            rel_of = {p: p.rstrip("/")[len(root.rstrip("/")) + 1:] for p in infos
                      if not any(p == e or p.startswith(e.rstrip("/") + "/") for e in exclude)}
        rel_files = sorted(rel_of.values())
        by_rel = {rel: path for path, rel in rel_of.items()}
        kind = detect_format(rel_files, input_format)
    except JobError:
        raise
    except Exception as exc:
        raise JobError(f"cannot list data {uri}: {type(exc).__name__}: {_first_line(exc)}") from exc
    lines = [f"format={kind}"]
    if kind == "parquet":
        listing = list_parquet(fs, root, uri, rel_files, set())
        shards = listing.shards_with_mask + listing.shards_without_mask
        ids: list[str] = []
        for shard in shards:
            with fs.open(shard, "rb") as f:
                ids.extend(pq.read_table(f, columns=["id"]).column("id").cast(pa.string()).to_pylist())
        ids.sort()
        for shard in sorted(shards):
            lines.append(f"{listing.shard_uris[shard]}\t{_version(infos.get(shard, {}))}")
        data = EvalData(uri, "parquet", fs, ids, shards=sorted(shards), shard_uris=listing.shard_uris,
                        index_of={i: k for k, i in enumerate(ids)}, ignored=listing.ignored)
    else:
        images = [r for r in rel_files if is_image_file(r) and not _MASK_STEM.search(_stem(r))]
        by_id: dict[str, str] = {}
        for rel in images:
            rid = _stem(rel)
            if rid in by_id:
                raise JobError(f"ambiguous data: {join_uri(uri, by_id[rid])} and {join_uri(uri, rel)} both have "
                               f"id {rid!r}")
            by_id[rid] = rel
        ids = sorted(by_id)
        records = []
        for index, rid in enumerate(ids):
            rel = by_id[rid]
            path = by_rel[rel]
            records.append({"id": rid, "source": uri if fs.isfile(root) else join_uri(uri, rel),
                            "image_path": path, "index": index})
            lines.append(f"{rel}\t{_version(infos.get(path, {}))}")
        data = EvalData(uri, "folder", fs, ids, records=records, ignored=len(rel_files) - len(images))
    if not data.ids:
        raise JobError(f"no images (png/jpg/jpeg/webp) or Parquet shards with rows under {uri}")
    data.fingerprint = "\n".join(lines)
    return data


@dataclass(frozen=True)
class MaskSet:
    """A mask set of a sweep: ``kind`` (generated with ``generate_mask``) or ``uri`` (a frozen
    folder of ``{i:06d}_mask000.png``; ``root`` its filesystem path, ``count`` its masks).
    ``name`` is the kind or the folder's basename."""

    name: str
    kind: str | None = None
    uri: str | None = None
    root: str | None = None
    count: int = 0


def resolve_mask_sets(specs: Sequence[str], endpoint_url: str | None = None
                      ) -> tuple[list[MaskSet], dict[str, fsspec.AbstractFileSystem]]:
    """``masks=`` entries -> mask sets and the filesystems of the frozen ones (by name).
    An entry that is a kind name is that kind, even if a folder of that name exists. Raises
    ``JobError`` for an entry that is neither a kind nor a folder of frozen masks, and for
    two entries with the same name."""
    sets: list[MaskSet] = []
    filesystems: dict[str, fsspec.AbstractFileSystem] = {}
    for spec in specs:
        spec = str(spec).strip()
        if spec in MASK_SETS:
            sets.append(MaskSet(spec, kind=spec))
            continue
        uri = absolute_uri(spec)
        fs, root, exists = reach(uri, "mask set", endpoint_url, reason=_first_line)
        if not exists or not fs.isdir(root):
            raise JobError(f"mask set {spec!r} is neither a mask kind ({', '.join(MASK_SETS)}) nor a folder of "
                           "frozen masks (jobs/make_masks.py)")
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
        count = sum(1 for n in names if _FROZEN_MASK.match(n))
        if not count:
            raise JobError(f"mask folder {uri} holds no 000000_mask000.png-style masks (written by jobs/make_masks.py)")
        name = root.rstrip("/").rsplit("/", 1)[-1]
        sets.append(MaskSet(name, uri=uri, root=root.rstrip("/"), count=count))
        filesystems[name] = fs
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise JobError(f"two mask sets are named {duplicates[0]!r} (a kind and a folder, or two folders with the "
                       "same basename): rename a folder")
    if not sets:
        raise JobError("masks= is empty: give kind names and/or frozen mask folders, e.g. masks=[thick_512,thin_512]")
    return sets, filesystems


def write_sample_data(uri: str, endpoint_url: str | None = None) -> str:
    """Write scikit-image's sample photos as ``URI/sample_photos.parquet`` (``id``, ``image``
    PNG bytes) unless it exists; returns the shard's URI. The zero-config ground truth."""
    target = join_uri(uri, "sample_photos.parquet")
    fs, path = filesystem_for(target, endpoint_url)
    if not fs.exists(path):
        photos = sample_photos()
        table = pa.table({"id": list(photos), "image": pa.array([png_bytes(p) for p in photos.values()], pa.binary())})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        _write_bytes(fs, path, buf.getvalue())
    return target


# ----------------------------------------------------------------------------- stage 1: decode + masks

_EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)
_EMPTY_MASK = np.zeros((0, 0), np.uint8)
_ROW = {"id": "", "source": "", "index": -1, "mask_set": "", "mask_source": "", "status": "ok", "error": "",
        "width": -1, "height": -1, "hole_fraction": math.nan, "mask_resized": False, "converted": False,
        "seconds": 0.0}


def frozen_mask_name(index: int) -> str:
    """The file of mask ``index`` in a frozen set (``jobs/make_masks.py``'s naming)."""
    return f"{index:06d}_mask000.png"


def _fit_mask(hole: np.ndarray, height: int, width: int) -> tuple[np.ndarray, bool]:
    """A {0, 1} mask resized with nearest neighbour to ``height x width`` (when it differs)."""
    if hole.shape == (height, width):
        return hole, False
    resized = Image.fromarray(hole * 255).resize((width, height), Image.NEAREST)
    return (np.asarray(resized) > 127).astype(np.uint8), True


def decode_batch(batch: dict[str, Any], image_fs: fsspec.AbstractFileSystem, mask_sets: Sequence[MaskSet],
                 mask_fs: dict[str, fsspec.AbstractFileSystem], mask_seed: int,
                 index_of: dict[str, int] | None = None, shard_uris: dict[str, str] | None = None) -> dict[str, Any]:
    """Ray Data stage: read and decode ground-truth images, then attach a mask from each of
    ``mask_sets`` (one output row per image × mask set).

    Input: folder records (``id``, ``source``, ``image_path``, ``index``) or Parquet rows
    (``id``, ``image`` bytes, ``path`` of the shard; ``index_of`` maps ids to indices).
    Output: the ``_ROW`` columns + ``image`` (uint8 H x W x 3) + ``mask`` (uint8 H x W in
    {0, 1}); a row that failed carries ``status='error'``, an ``error`` naming the file,
    and 0 x 0 arrays."""
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
        base = {**_ROW, "id": rid, "source": source, "index": index, "image": _EMPTY_IMAGE, "mask": _EMPTY_MASK}
        try:
            data = batch["image"][k] if parquet else blob(blobs, str(batch["image_path"][k]), source)
            if data is None:
                raise RecordError(f"no image bytes for {name}")
            image, base["converted"] = decode_image(bytes(data), name)
            base.update(image=image, height=image.shape[0], width=image.shape[1])
        except Exception as exc:  # RecordError, or anything unforeseen: still a row per mask set
            base.update(status="error", error=str(exc) if isinstance(exc, RecordError)
                        else f"cannot decode {name}: {type(exc).__name__}: {exc}")
        decoded = time.perf_counter() - t0 + share
        for ms in mask_sets:
            row = dict(base, seconds=decoded, mask_set=ms.name)
            row["mask_source"] = (f"{ms.uri}/{frozen_mask_name(index)}" if ms.uri
                                  else f"{ms.kind}:seed={mask_seed}:index={index}")
            if row["status"] == "ok":
                t1 = time.perf_counter()
                try:
                    row["mask"], row["mask_resized"] = _mask_for(ms, index, row["height"], row["width"],
                                                                 frozen.get(ms.name, {}), mask_seed)
                    row["hole_fraction"] = float(row["mask"].mean())
                except Exception as exc:  # noqa: BLE001 - one mask set's failure is that row's
                    row.update(status="error", error=str(exc) if isinstance(exc, RecordError)
                               else f"cannot make mask {row['mask_source']}: {type(exc).__name__}: {exc}")
                row["seconds"] += time.perf_counter() - t1
            if row["status"] != "ok":
                row.update(image=_EMPTY_IMAGE, mask=_EMPTY_MASK)
            rows.append(row)
    return column_batch(rows, {**_ROW, "image": None, "mask": None})


def _mask_for(ms: MaskSet, index: int, height: int, width: int, blobs: dict[str, Any],
              mask_seed: int) -> tuple[np.ndarray, bool]:
    """Mask ``index`` of ``ms`` for an image of ``height x width``: uint8 {0, 1}, and whether
    a frozen mask had to be resized."""
    if ms.kind:
        return generate_mask(ms.kind, mask_seed, index, height, width).astype(np.uint8), False
    uri = f"{ms.uri}/{frozen_mask_name(index)}"
    if index >= ms.count:
        raise RecordError(f"no mask {uri}: the mask set {ms.name} holds {ms.count} masks, fewer than the images")
    hole, _ = decode_mask(blob(blobs, f"{ms.root}/{frozen_mask_name(index)}", uri), uri)
    return _fit_mask(hole, height, width)


# ----------------------------------------------------------------------------- stage 2: inpaint + metrics

def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 H x W x 3 arrays (one size) -> float N x 3 x H x W in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def _by_size(indices: Sequence[int], images: Sequence[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        groups.setdefault(tuple(images[i].shape[:2]), []).append(i)
    return list(groups.values())


class EvaluateStage:
    """Ray Data actor: loads one checkpoint once, inpaints batches of ``decode_batch`` rows
    and scores them against the ground truth.

    Returns the rows without ``image``/``mask`` plus: a float64 column per per-image metric
    column (NaN where not computed), ``fid_features_fake`` (Inception features of the result,
    float32 (2048,); empty without fid or for error rows), ``fid_features_real`` (features of
    the ground truth, only for ids in ``real_missing``: those the feature cache lacks, i.e.
    every image on a sweep's first pass over new data) and ``sample`` (a uint8 strip input |
    output | ground truth for images with ``index < grid_images``, else 0 x 0). Error rows
    pass through; an image the model or a metric fails on becomes an error row. The metric
    networks load lazily from ``weights_dir`` / ``weight_paths`` (``MetricContext``)."""

    def __init__(self, checkpoint: str, metrics: Sequence[str], device: str, precision: str, batch_size: int,
                 num_threads: int, weights_dir: str, weight_paths: dict[str, str], lpips_net: str,
                 grid_images: int, real_missing: frozenset[str], endpoint_url: str | None):
        # Actors share their node's cores with the decode tasks: use only our share.
        torch.set_num_threads(max(1, num_threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.ctx = MetricContext(device=device, weights_dir=weights_dir or None, weight_paths=dict(weight_paths),
                                 lpips_net=lpips_net)
        generator = load_generator(checkpoint, endpoint_url=endpoint_url)
        # The protocol scores whole frames (docs/DESIGN.md): no context windows here.
        self.inpainter = Inpainter(generator, device=self.ctx.device, batch_size=batch_size, precision=precision,
                                   channels_last=True, hd_strategy="full")
        self.checkpoint = checkpoint
        self.fid = "fid" in metrics
        self.scalar_metrics = [m for m in metrics if m != "fid"]
        self.columns = [c for m in self.scalar_metrics for c in METRICS[m].columns]
        self.grid_images = grid_images
        self.real_missing = real_missing

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["id"])
        out = {k: np.array(v, copy=True) for k, v in batch.items() if k not in ("image", "mask")}
        for column in self.columns:
            out[column] = np.full(n, math.nan)
        empty = np.zeros(0, np.float32)
        out["fid_features_fake"] = [empty] * n
        out["fid_features_real"] = [empty] * n
        out["sample"] = [_EMPTY_IMAGE] * n
        images, masks = batch["image"], batch["mask"]
        todo = [i for i in range(n) if out["status"][i] == "ok"]
        results = self._inpaint(todo, images, masks, out)
        for group in _by_size(list(results), images):
            start = time.perf_counter()
            try:
                self._score(group, results, images, masks, out)
            except Exception:  # noqa: BLE001 - find the image that broke the group
                for i in group:
                    try:
                        self._score([i], results, images, masks, out)
                    except Exception as exc:  # noqa: BLE001
                        out["status"][i] = "error"
                        out["error"][i] = f"metrics failed for {out['source'][i]}: {type(exc).__name__}: {exc}"
                        for column in self.columns:
                            out[column][i] = math.nan
            share = (time.perf_counter() - start) / len(group)
            for i in group:
                out["seconds"][i] += share
                if out["status"][i] == "ok" and out["index"][i] < self.grid_images:
                    out["sample"][i] = sample_strip(images[i], masks[i], results[i])
        return out

    def _features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """FID Inception features (N, 2048) float32 of equal-sized uint8 images."""
        with torch.no_grad():
            return self.ctx.inception(_to_tensor(images).to(self.ctx.device)).float().cpu().numpy()

    def _inpaint(self, todo: list[int], images, masks, out: dict[str, Any]) -> dict[int, np.ndarray]:
        """uint8 results with known pixels pasted back, by row; failures become error rows."""
        if not todo:
            return {}
        start = time.perf_counter()
        try:
            done = dict(zip(todo, self.inpainter([images[i] for i in todo], [masks[i] for i in todo])))
        except Exception:  # noqa: BLE001 - find the record that broke the batch (e.g. out of memory)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            done = {}
            for i in todo:
                try:
                    done[i] = self.inpainter([images[i]], [masks[i]])[0]
                except Exception as exc:  # noqa: BLE001
                    out["status"][i] = "error"
                    out["error"][i] = (f"inpainting {out['source'][i]} with {self.checkpoint} failed: "
                                       f"{type(exc).__name__}: {exc}")
        share = (time.perf_counter() - start) / len(todo)
        for i in todo:
            out["seconds"][i] += share
        return done

    def _score(self, group: list[int], results: dict[int, np.ndarray], images, masks, out: dict[str, Any]) -> None:
        pred = _to_tensor([results[i] for i in group])
        target = _to_tensor([images[i] for i in group])
        mask = torch.from_numpy(np.stack([masks[i] for i in group])).float()[:, None]
        columns = compute_metrics(self.scalar_metrics, pred, target, mask, self.ctx) if self.scalar_metrics else {}
        fake = self._features([results[i] for i in group]) if self.fid else None
        missing = [j for j, i in enumerate(group) if self.fid and str(out["id"][i]) in self.real_missing]
        real = self._features([images[group[j]] for j in missing]) if missing else None
        for j, i in enumerate(group):
            for column in self.columns:
                out[column][i] = float(columns[column][j])
            if fake is not None:
                out["fid_features_fake"][i] = fake[j]
        for k, j in enumerate(missing):
            out["fid_features_real"][group[j]] = real[k]


# ----------------------------------------------------------------------------- the driver

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

    @property
    def failed(self) -> list[PairResult]:
        return [p for p in self.evaluated if p.status != "ok"]


@dataclass
class _Plan:
    """Everything checked before any work: storage, mask sets, metric networks."""

    cfg: Any
    endpoint: str | None
    output_uri: str
    out_fs: fsspec.AbstractFileSystem
    out_root: str
    data_uri: str
    mask_sets: list[MaskSet]
    mask_fs: dict[str, fsspec.AbstractFileSystem]
    metrics: list[str]
    inception_id: str = ""
    run_id: str = ""
    local: bool = True
    overwritten: bool = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_config(cfg: EvaluateConfig) -> list[str]:
    """The config's checks (``run_evaluation`` may be called without the parser) and the
    metric names; returns the requested metrics, de-duplicated."""
    metrics = [str(m) for m in cfg.metrics]
    problems = cfg.problems()
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        problems.append(f"unknown or no metrics {unknown}; registered: {', '.join(sorted(METRICS))}")
    if problems:
        raise JobError("bad config: " + "; ".join(problems))
    return list(dict.fromkeys(metrics))


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
                absent.append(_first_line(exc))
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
            raise JobError(_first_line(exc)) from exc
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


def eval_settings(cfg: Any, data_uri: str) -> dict[str, Any]:
    """The settings an evaluation output remembers: ``EVAL_RESULT_KEYS`` and the input URI."""
    return settings_of(cfg, EVAL_RESULT_KEYS, input=data_uri)


def prepare(cfg: Any) -> _Plan:
    """Check the config, the metric weights, the storage and the mask sets (in that order);
    every failure is a ``JobError`` with one line, before any work is done."""
    metrics, inception_id = _check_weights(cfg, _check_config(cfg))
    endpoint = cfg.endpoint_url or None
    output_uri = absolute_uri(cfg.output) or ""
    out_fs, out_root, _ = reach(output_uri, "output", endpoint, reason=_first_line)
    try:
        if _is_local(out_fs):
            out_fs.makedirs(out_root, exist_ok=True)
        elif not out_fs.exists(out_root.split("/", 1)[0]):
            raise JobError(f"output bucket of {output_uri} does not exist")
    except JobError:
        raise
    except Exception as exc:
        raise JobError(f"cannot reach output {output_uri}: {type(exc).__name__}: {_first_line(exc)}") from exc
    # input= not given: scikit-image's sample photos, written under the output only once a
    # sweep knows it has work (sweep_once), never by a run that then fails.
    data_uri = absolute_uri(cfg.input) if cfg.input else join_uri(output_uri, "sample_data")
    if cfg.input:
        _, _, data_exists = reach(data_uri, "input", endpoint, reason=_first_line)
        if not data_exists:
            raise JobError(f"input not found: {data_uri}")
    mask_sets, mask_fs = resolve_mask_sets(list(cfg.mask_kind), endpoint)
    # Pairs are keyed by (checkpoint, mask set): scores of other data or metrics must not
    # mix in (pipelines/run_settings.py). Checked here, remembered once a sweep has work.
    check_settings(out_fs, out_root, output_uri, eval_settings(cfg, data_uri), overwrite=cfg.overwrite,
                   dry_run=True, way_on=_SETTINGS_WAY_ON)
    return _Plan(cfg, endpoint, output_uri, out_fs, out_root, data_uri, mask_sets, mask_fs, metrics, inception_id)


def _ensure_sample_data(plan: _Plan) -> None:
    """Write the sample photos to ``plan.data_uri`` when ``input=`` was not given and they
    are not there yet."""
    if plan.cfg.input:
        return
    _, _, exists = reach(plan.data_uri, "input", plan.endpoint, reason=_first_line)
    if exists:
        return
    try:
        print(f"input= not given: evaluating scikit-image's sample photos "
              f"({write_sample_data(plan.data_uri, plan.endpoint)})", flush=True)
    except Exception as exc:
        raise JobError(f"cannot write the sample photos under output {plan.output_uri}: {type(exc).__name__}: "
                       f"{_first_line(exc)}") from exc


def _decoded_dataset(plan: _Plan, data: EvalData, mask_sets: Sequence[MaskSet],
                     codec_cpus: float) -> "ray.data.Dataset":
    """Read + decode (+ masks) as CPU tasks of ``codec_cpus`` CPUs each (fewer than the
    model actors', so Ray Data never fuses them into the actors)."""
    import ray

    cfg = plan.cfg
    kwargs = dict(image_fs=data.fs, mask_sets=list(mask_sets), mask_fs=plan.mask_fs, mask_seed=cfg.mask_seed)
    if data.kind == "folder":
        blocks = max(1, min(math.ceil(len(data.records) / cfg.codec_batch_size), 10_000))
        ds = ray.data.from_items(data.records, override_num_blocks=blocks)
    else:
        ds = ray.data.read_parquet(data.shards, filesystem=data.fs, include_paths=True,
                                   num_cpus=codec_cpus).select_columns(["id", "image", "path"],
                                                                        num_cpus=codec_cpus)
        kwargs.update(index_of=data.index_of, shard_uris=data.shard_uris)
    ds = ds.map_batches(decode_batch, batch_size=cfg.codec_batch_size, num_cpus=codec_cpus, fn_kwargs=kwargs)
    return ds  # no repartition: see run_inpaint (a 1-CPU repartition task starves beside the actors)


def _collect(ds: "ray.data.Dataset", columns: Sequence[str]) -> list[dict]:
    """Stream the result rows to the driver as dicts of ``columns``."""
    rows = []
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        for k in range(len(batch["id"])):
            rows.append({c: batch[c][k] for c in columns if c in batch})
    return rows


def _real_cache_uri(plan: _Plan, data: EvalData) -> str:
    """``OUTPUT/cache/real-features-<key>.npz``: ``key`` is the ``content_hash`` of the data
    listing (URI, names, sizes, ETags/mtimes) and the Inception weights' id; it does not
    depend on the checkpoint or the mask set."""
    key = content_hash(data.uri, data.fingerprint, "decode-v1", model_id=plan.inception_id)
    return join_uri(plan.output_uri, "cache", f"real-features-{key}.npz")


def load_real_features(plan: _Plan, data: EvalData) -> dict[str, np.ndarray]:
    """Cached ground-truth Inception features by image id (float32 (2048,)); empty when none
    are cached yet or the entry is unreadable (then the next pass computes them)."""
    uri = _real_cache_uri(plan, data)
    fs, path = filesystem_for(uri, plan.endpoint)
    if not fs.exists(path):
        return {}
    try:
        with np.load(io.BytesIO(fs.cat_file(path)), allow_pickle=False) as arrays:
            return {str(i): f for i, f in zip(arrays["ids"], arrays["features"])}
    except (ValueError, OSError, EOFError, KeyError) as exc:
        print(f"warning: ignoring the damaged feature cache {uri} ({type(exc).__name__}); recomputing",
              file=sys.stderr)
        return {}


def store_real_features(plan: _Plan, data: EvalData, real: dict[str, np.ndarray]) -> str:
    """Write the ground-truth features (ids sorted) to the cache, atomically. Returns its URI."""
    uri = _real_cache_uri(plan, data)
    ids = sorted(real)
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(ids, dtype=str),
             features=np.stack([real[i] for i in ids]) if ids else np.zeros((0, 2048), np.float32))
    fs, path = filesystem_for(uri, plan.endpoint)
    _makedirs(fs, path.rsplit("/", 1)[0])
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(tmp, buf.getvalue())
    fs.mv(tmp, path)
    return uri


def _summary_rows(plan: _Plan, checkpoint: str, step: int | None, mask_set: str, rows: list[dict],
                  real: dict[str, np.ndarray], seconds: float) -> list[dict]:
    """Per-bin summary rows (plus ``all``) of one pair from its per-image rows."""
    ok = [r for r in rows if r["status"] == "ok"]
    columns: dict[str, Any] = {"hole_fraction": np.array([r["hole_fraction"] for r in ok], np.float64)}
    for name in plan.metrics:
        if name == "fid":
            fake = [np.asarray(r["fid_features_fake"], np.float32) for r in ok]
            reals = [real[r["id"]] for r in ok]
            columns["fid_features_fake"] = np.stack(fake) if ok else np.zeros((0, 2048), np.float32)
            columns["fid_features_real"] = np.stack(reals) if ok else np.zeros((0, 2048), np.float32)
        else:
            for column in METRICS[name].columns:
                columns[column] = np.array([r[column] for r in ok], np.float64)
    summary = summarize_by_hole_area(columns, plan.metrics)
    errors = [r for r in rows if r["status"] != "ok"]
    error_bins = [hole_area_bin(r["hole_fraction"]) for r in errors if math.isfinite(r["hole_fraction"])]
    common = dict(checkpoint=checkpoint, step=step, mask_set=mask_set, status="ok", error=None,
                  data=plan.data_uri, metrics=",".join(plan.metrics),
                  timestamp=utc_now(), seconds=seconds, run=plan.run_id)
    for row in summary:
        row.update(common)
        row["n_error"] = len(errors) if row["hole_area_bin"] == ALL else error_bins.count(row["hole_area_bin"])
        for key, value in list(row.items()):
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
    return summary


def _failed_summary(plan: _Plan, checkpoint: str, step: int | None, mask_set: str, error: str) -> list[dict]:
    return [dict(checkpoint=checkpoint, step=step, mask_set=mask_set, hole_area_bin=ALL, n=0, n_error=0, status="error",
                 error=error, data=plan.data_uri, metrics=",".join(plan.metrics),
                 timestamp=utc_now(), seconds=0.0, run=plan.run_id)]


def _write_pair(plan: _Plan, checkpoint: str, step: int | None, ms: MaskSet, rows: list[dict],
                summary: list[dict]) -> PairResult:
    """Per-image table, sample grid, then the summary (last: it marks the pair done)."""
    key = pair_key(checkpoint, ms.name)
    fs, root = plan.out_fs, plan.out_root
    result = PairResult(checkpoint, ms.name, summary[-1]["status"], summary[-1])
    if rows:
        per_image = []
        now = utc_now()
        for r in rows:
            fraction = float(r["hole_fraction"])
            ok = r["status"] == "ok"
            per_image.append({
                **{k: r.get(k) for k in ("id", "index", "source", "mask_source", "status", "width", "height",
                                         "mask_resized", "converted", "seconds")},
                **{c: (None if r["status"] != "ok" or c not in r else float(r[c]))
                   for c in _metric_columns(plan.metrics, PER_IMAGE_METRIC_COLUMNS)},
                "error": r["error"] or None, "checkpoint": checkpoint, "step": step, "mask_set": ms.name,
                "hole_fraction": fraction if math.isfinite(fraction) else None,
                "hole_area_bin": hole_area_bin(fraction) if math.isfinite(fraction) else None,
                "width": r["width"] if r["width"] >= 0 else None, "height": r["height"] if r["height"] >= 0 else None,
                # Flags of a record that failed are unknown, not false.
                "mask_resized": bool(r["mask_resized"]) if ok else None, "converted": bool(r["converted"]) if ok else None,
                "run": plan.run_id, "timestamp": now})
        per_image.sort(key=lambda r: r["index"])
        _write_parquet(fs, f"{root}/per_image/{key}.parquet", _table(per_image, per_image_schema(plan.metrics)))
        result.per_image_uri = join_uri(plan.output_uri, "per_image", f"{key}.parquet")
        strips = [r["sample"] for r in sorted(rows, key=lambda r: r["index"]) if r.get("sample") is not None
                  and np.asarray(r["sample"]).size]
        if strips:
            title = f"{checkpoint.rstrip('/').rsplit('/', 1)[-1]} x {ms.name}: input | output | ground truth"
            _write_bytes(fs, f"{root}/samples/{key}.png", sample_grid_png(strips, title))
            result.samples_uri = join_uri(plan.output_uri, "samples", f"{key}.png")
    _write_parquet(fs, f"{root}/summary/{key}.parquet", _table(summary, summary_schema(plan.metrics)))
    result.summary_uri = join_uri(plan.output_uri, "summary", f"{key}.parquet")
    return result


def _evaluate_checkpoint(plan: _Plan, data: EvalData, checkpoint: str, mask_sets: list[MaskSet],
                         real: dict[str, np.ndarray]) -> list[PairResult]:
    """One Ray Data pass: ``checkpoint`` on every image × ``mask_sets``; writes each pair."""
    import ray

    cfg = plan.cfg
    step = checkpoint_step(checkpoint, plan.endpoint)
    try:
        load_generator(checkpoint, endpoint_url=plan.endpoint)  # fail here, clearly, not in the actors
    except Exception as exc:  # noqa: BLE001 - FileNotFoundError, CheckpointError, unpickling, ...
        message = f"cannot load checkpoint {checkpoint}: {_first_line(exc)}"
        print(f"error: {message} (skipping it; the sweep goes on)", file=sys.stderr, flush=True)
        return [_write_pair(plan, checkpoint, step, ms, [], _failed_summary(plan, checkpoint, step, ms.name, message))
                for ms in mask_sets]
    print(f"evaluating {checkpoint}" + ("" if step is None else f" (step {step})") +
          f" on {len(data.ids)} images × {', '.join(ms.name for ms in mask_sets)}", flush=True)
    plan_ = cluster_plan(cfg, local=plan.local, work_batches=math.ceil(len(data.ids) * len(mask_sets) / cfg.batch_size))
    real_missing = frozenset(i for i in data.ids if i not in real) if "fid" in plan.metrics else frozenset()
    ds = _decoded_dataset(plan, data, mask_sets, plan_.codec_cpus).map_batches(
        EvaluateStage, compute=ray.data.ActorPoolStrategy(size=plan_.actors), batch_size=cfg.batch_size,
        num_gpus=plan_.gpus, num_cpus=plan_.cpus,
        fn_constructor_kwargs=dict(checkpoint=checkpoint, metrics=plan.metrics, device=plan_.device,
                                   precision=cfg.precision, batch_size=cfg.batch_size,
                                   num_threads=plan_.threads, weights_dir=cfg.weights_dir or "",
                                   weight_paths=dict(cfg.weight_paths or {}), lpips_net=cfg.lpips_net,
                                   grid_images=cfg.grid_images, real_missing=real_missing,
                                   endpoint_url=plan.endpoint))
    columns = list(_ROW) + _metric_columns(plan.metrics, PER_IMAGE_METRIC_COLUMNS) + [
        "fid_features_fake", "fid_features_real", "sample"]
    start = time.perf_counter()
    try:
        rows = _collect(ds, columns)
    except Exception as exc:  # noqa: BLE001 - actors died (OOM, a path only the driver sees): this checkpoint only
        message = f"evaluation of {checkpoint} failed: {type(exc).__name__}: {_first_line(exc)}"
        print(f"error: {message} (skipping it; the sweep goes on)", file=sys.stderr, flush=True)
        return [_write_pair(plan, checkpoint, step, ms, [], _failed_summary(plan, checkpoint, step, ms.name, message))
                for ms in mask_sets]
    seconds = time.perf_counter() - start
    results = []
    for ms in mask_sets:
        pair_rows = [r for r in rows if r["mask_set"] == ms.name]
        for r in pair_rows:
            r["id"] = str(r["id"])
            if r["status"] == "ok" and "fid" in plan.metrics and r["id"] not in real:
                extra = np.asarray(r["fid_features_real"], np.float32)
                if extra.size:
                    real[r["id"]] = extra  # ground truth the cache lacked, computed by the actor
                else:
                    r.update(status="error", error=f"no ground-truth Inception features for {r['source']}")
        summary = _summary_rows(plan, checkpoint, step, ms.name, pair_rows, real,
                                seconds * len(pair_rows) / max(1, len(rows)))
        result = _write_pair(plan, checkpoint, step, ms, pair_rows, summary)
        print(f"  {result.line()}", flush=True)
        results.append(result)
    return results


def write_plots(plan: _Plan, mask_set_names: Sequence[str]) -> list[str]:
    """``OUTPUT/plots/<mask set>.png`` from every ``ok`` summary row (bin ``all``) of those
    mask sets: one panel per metric against training step. Returns the URIs written."""
    rows = [r for r in read_summaries(plan.out_fs, f"{plan.out_root}/summary")
            if r.get("status") == "ok" and r.get("hole_area_bin") == ALL]
    written = []
    for name in mask_set_names:
        points = [r for r in rows if r["mask_set"] == name]
        if not points:
            continue
        metrics = [c for c in _metric_columns(plan.metrics, SUMMARY_METRIC_COLUMNS)
                   if any(p.get(c) is not None for p in points)]
        png = metrics_plot_png(points, metrics, f"{name}: {len(points)} checkpoints, data {plan.data_uri}")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        _write_bytes(plan.out_fs, f"{plan.out_root}/plots/{safe}.png", png)
        written.append(join_uri(plan.output_uri, "plots", f"{safe}.png"))
    return written


def sweep_once(plan: _Plan) -> SweepReport:
    """Evaluate every (checkpoint, mask set) pair not yet in ``OUTPUT/summary/``. Checkpoints
    that fail to load are reported (error line, ``status='error'`` summary row) and retried
    by the next sweep; the others go on."""
    from .ray_setup import init_ray

    cfg = plan.cfg
    checkpoints, ignored = expand_checkpoints(cfg.model, plan.endpoint)
    for name in ignored:
        if name.endswith(")"):  # a training checkpoint caught mid-write or damaged: say why
            print(f"evaluate: skipping checkpoint {name}", flush=True)
    if not checkpoints:
        spec = cfg.model if isinstance(cfg.model, str) else list(cfg.model)
        raise JobError(f"no checkpoint matches model={spec}")
    report = SweepReport(checkpoints=len(checkpoints), ignored=ignored)
    if cfg.overwrite and not cfg.dry_run and not plan.overwritten:
        removed = remove_tables(plan)
        plan.overwritten = True  # a watcher clears the tables once, not every poll
        print(f"overwrite=true: removed {removed} earlier per_image/summary files", flush=True)
    done = set() if cfg.overwrite else done_pairs(read_summaries(plan.out_fs, f"{plan.out_root}/summary"))
    pending = [(c, [ms for ms in plan.mask_sets if (c, ms.name) not in done]) for c in checkpoints]
    pending = [(c, sets) for c, sets in pending if sets]
    report.skipped = len(checkpoints) * len(plan.mask_sets) - sum(len(s) for _, s in pending)
    if not pending:
        print(f"evaluate: nothing new: all {report.skipped} checkpoint × mask set pairs are already in "
              f"{join_uri(plan.output_uri, 'summary')} (skipped)", flush=True)
        return report
    print(f"evaluate: {sum(len(s) for _, s in pending)} pairs to evaluate ({len(pending)} checkpoints), "
          f"{report.skipped} already done (skipped)", flush=True)
    if cfg.dry_run:
        for checkpoint, sets in pending:
            print(f"  would evaluate {checkpoint} on {', '.join(ms.name for ms in sets)}")
        print("dry_run=true: nothing evaluated", flush=True)
        return report
    check_settings(plan.out_fs, plan.out_root, plan.output_uri, eval_settings(cfg, plan.data_uri),
                   overwrite=cfg.overwrite, way_on=_SETTINGS_WAY_ON)
    _ensure_sample_data(plan)
    plan.local = init_ray(verbose=cfg.verbose) == "local"
    plan.run_id = f"eval-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    # An output folder inside the data folder is not data (unless the data lives in the output).
    data_fs, data_root = filesystem_for(plan.data_uri, plan.endpoint)
    inside_output = data_root.rstrip("/").startswith(plan.out_root.rstrip("/") + "/")
    exclude = (plan.out_root,) if type(data_fs) is type(plan.out_fs) and not inside_output else ()
    data = list_eval_data(plan.data_uri, cfg.input_format, plan.endpoint, exclude=exclude)
    for ms in plan.mask_sets:
        if ms.uri and ms.count < len(data.ids):
            print(f"warning: mask set {ms.name} holds {ms.count} masks for {len(data.ids)} images: the images "
                  f"after the first {ms.count} become error rows", file=sys.stderr)
    real = load_real_features(plan, data) if "fid" in plan.metrics else {}
    if "fid" in plan.metrics:
        print(f"ground-truth Inception features: {len(real)} of {len(data.ids)} images cached" +
              ("" if len(real) >= len(data.ids) else "; the first pass computes the rest, once"), flush=True)
    for checkpoint, sets in pending:
        cached = len(real)
        report.evaluated.extend(_evaluate_checkpoint(plan, data, checkpoint, sets, real))
        if len(real) > cached:  # the pass computed ground-truth features the cache lacked
            store_real_features(plan, data, real)
    plots = write_plots(plan, sorted({p.mask_set for p in report.evaluated}))
    print(f"results: {join_uri(plan.output_uri, 'per_image')}/, {join_uri(plan.output_uri, 'summary')}/, "
          f"samples: {join_uri(plan.output_uri, 'samples')}/, plots: {', '.join(plots) or '-'}", flush=True)
    return report


def run_evaluation(cfg: Any, sleep: Callable[[float], None] = time.sleep) -> list[SweepReport]:
    """Run the sweep ``cfg`` describes (an ``EvaluateConfig`` or its OmegaConf form): once,
    or with ``watch=true`` every ``poll_seconds`` until ``max_polls`` sweeps (0 = forever,
    until interrupted). ``sleep`` waits between polls (tests pass their own). Returns one
    report per sweep. Raises ``JobError`` when the job cannot run."""
    plan = prepare(cfg)
    reports: list[SweepReport] = []
    while True:
        try:
            reports.append(sweep_once(plan))
        except (JobError, OSError) as exc:
            if not cfg.watch:
                if isinstance(exc, JobError):
                    raise
                raise JobError(f"storage error: {type(exc).__name__}: {_first_line(exc)}") from exc
            # A watcher outlives a glob that matches nothing yet (training starting) and
            # storage hiccups: report and poll again.
            print(f"watch: {_first_line(exc)}; polling again in {cfg.poll_seconds:g} s", flush=True)
            reports.append(SweepReport())
        if not cfg.watch or (cfg.max_polls and len(reports) >= cfg.max_polls):
            return reports
        print(f"watch: poll {len(reports)} done; next in {cfg.poll_seconds:g} s (Ctrl-C stops)", flush=True)
        sleep(cfg.poll_seconds)
