"""Listing a bulk job's inputs into records, and reading back the record tables it wrote.

Listing handles names only (paths, ids): pixels and encoded bytes are read later, inside
Ray tasks, so the driver never holds a dataset's data. Two input forms (docs/DESIGN.md, "Data in
object storage"):

* a folder/prefix in LaMa's convention (``x.png`` + ``x_mask000.png``), or with a separate
  ``mask_dir`` holding one mask per image under the image's relative name;
* Parquet shards with columns ``id``, ``image`` (encoded bytes), optional ``mask``.

A record is a plain dict of strings. Folder records: ``id``, ``source`` (image URI),
``image_path`` (path inside the input filesystem), ``mask_source`` / ``mask_path`` (same for
the mask) and ``error`` (empty, or why the record cannot be processed, naming the file).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from lama_core.mask_sets import mask_image_stem
from lama_core.storage import join_uri

from pipelines.common.retry import RetryPolicy, call_with_retry
from pipelines.records.formats import IMAGE_EXTENSIONS
from pipelines.common.errors import JobError



@dataclass
class Listing:
    """What a job has to do, from the input listing and the ids already in ``records/``.

    ``kind``: ``"folder"`` or ``"parquet"``. ``records``: folder records still to do (see the
    module docstring). ``shards``: Parquet shards (filesystem paths) that still hold rows to
    do, split by whether they have a ``mask`` column; ``shard_uris`` maps each to its URI;
    ``skip_ids``: ids in those shards already done (dropped while reading); or, from
    ``pipelines.records.shard_plan``, ``skip_lists``: shard path -> file of its done ids.
    ``retryable``: error rows of earlier runs redone now. ``total``:
    records in the input; ``skipped``: those already in ``records/``; ``ignored_files``: input
    files (relative paths) that are neither images, masks nor shards (or masks that no image
    uses), ``ignored`` their count.
    """

    kind: str
    total: int = 0
    skipped: int = 0
    ignored_files: list[str] = field(default_factory=list)
    records: list[dict[str, str]] = field(default_factory=list)
    shards_with_mask: list[str] = field(default_factory=list)
    shards_without_mask: list[str] = field(default_factory=list)
    shard_uris: dict[str, str] = field(default_factory=dict)
    skip_ids: set[str] = field(default_factory=set)
    skip_lists: dict[str, str] = field(default_factory=dict)
    retryable: int = 0
    shard_count: int = 0

    def count_shard(self, path: str, uri: str, ids: list[str], done: set[str]) -> bool:
        """Account one shard's record ids against ``done``: totals, and for a shard with
        work left its URI and its ids already done (``skip_ids``). Returns whether it has
        work left (the caller files its path)."""
        pending = sum(1 for i in ids if i not in done)
        self.total += len(ids)
        self.skipped += len(ids) - pending
        if pending:
            self.shard_uris[path] = uri
            if pending < len(ids):
                self.skip_ids.update(i for i in ids if i in done)
        return pending > 0

    @property
    def ignored(self) -> int:
        return len(self.ignored_files)

    def ignored_line(self, shown: int = 5) -> str:
        """``N files ignored`` and the first ``shown`` of them by name."""
        names = ", ".join(self.ignored_files[:shown]) + (", ..." if self.ignored > shown else "")
        return f"{self.ignored} files ignored" + (f" ({names})" if names else "")

    @property
    def pending(self) -> int:
        """Records this run has to produce."""
        return self.total - self.skipped


def _ext(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""


def file_stem(rel: str) -> str:
    """Relative path without its extension: ``sub/x.png`` -> ``sub/x``."""
    ext = _ext(rel)
    return rel[: -len(ext)] if ext else rel


def is_image_file(path: str) -> bool:
    """Whether ``path`` has one of the image extensions (png, jpg, jpeg, webp; any case)."""
    return _ext(path) in IMAGE_EXTENSIONS


def list_file_infos(fs: fsspec.AbstractFileSystem, root: str,
                    exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """All files under ``root`` (recursively; just ``root`` if it is a file): ``{path
    relative to root ('/'-separated): fsspec info (size, ETag or mtime, ...)}``, sorted by
    path. Paths under any of ``exclude`` (filesystem paths, e.g. an output folder inside
    the input) are left out. The one input lister of the jobs (inpaint, evaluate, train)."""
    root = root.rstrip("/")
    if fs.isfile(root):
        return {root.rsplit("/", 1)[-1]: fs.info(root)}
    out = {}
    for path, info in fs.find(root, withdirs=False, detail=True).items():
        path = path.rstrip("/")
        if any(path == ex or path.startswith(ex.rstrip("/") + "/") for ex in exclude):
            continue
        if path.startswith(root + "/"):
            out[path[len(root) + 1:]] = info
    return dict(sorted(out.items()))


def list_files(fs: fsspec.AbstractFileSystem, root: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The sorted relative paths of ``list_file_infos`` (names only)."""
    return list(list_file_infos(fs, root, exclude))


def _abs(fs_root: str, rel: str, is_file: bool = False) -> str:
    """Filesystem path of ``rel`` under ``fs_root`` (``fs_root`` itself for a single-file input)."""
    return fs_root if is_file else f"{fs_root.rstrip('/')}/{rel}"


def detect_format(rel_files: list[str], requested: str) -> str:
    """``"folder"`` or ``"parquet"`` for ``input_format=auto|folder|parquet``; auto picks
    Parquet when the input holds ``.parquet`` files and no images. Raises ``JobError``
    when both are present under ``auto``."""
    if requested in ("folder", "parquet"):
        return requested
    if requested != "auto":
        raise JobError(f"input_format must be auto, folder or parquet, got {requested!r}")
    shards = sum(1 for f in rel_files if _ext(f) == ".parquet")
    images = sum(1 for f in rel_files if is_image_file(f))
    if shards and images:
        raise JobError(f"input holds both images ({images}) and .parquet shards ({shards}): "
                       "set input_format=folder or input_format=parquet")
    return "parquet" if shards else "folder"


def _record(rid: str, source: str, image_path: str = "", mask_source: str = "", mask_path: str = "",
            error: str = "") -> dict[str, str]:
    return {"id": rid, "source": source, "image_path": image_path, "mask_source": mask_source,
            "mask_path": mask_path, "error": error}


def _one_per_id(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """Collapse records sharing an id (``x.png`` and ``x.jpg``, ``x_mask000.png`` and
    ``x_mask000.jpg``) into one error record naming every file, so ids stay unique."""
    by_id: dict[str, list[dict[str, str]]] = {}
    for rec in records:
        by_id.setdefault(rec["id"], []).append(rec)
    out = []
    for rid, group in by_id.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        files = sorted({r[k] for r in group for k in ("source", "mask_source") if r[k]})
        out.append(_record(rid, group[0]["source"], error=f"ambiguous input: several files map to id {rid!r}: "
                                                           f"{', '.join(files)}"))
    return out


def list_folder(fs: fsspec.AbstractFileSystem, root: str, root_uri: str, rel_files: list[str],
                mask_fs: fsspec.AbstractFileSystem | None = None, mask_root: str | None = None,
                mask_uri: str | None = None, mask_rel_files: list[str] | None = None,
                draw_missing_masks: bool = False) -> tuple[list[dict], list[str]]:
    """Pair images with masks in the folder ``root``. Returns ``(records, ignored files)``
    (relative paths; ``mask_dir`` files prefixed ``MASK_DIR/``).

    Without ``mask_root``: LaMa's convention, one record per mask file ``sub/x_mask000.*``
    (id ``sub/x_mask000``) paired with ``sub/x.*``; a mask without its image is an error
    record with the mask's id; an image without masks is an error record with id ``sub/x``.
    With ``mask_root``: one record per image (id ``sub/x``), its mask ``MASK/sub/x.*`` (an
    image, or ``.json`` mask geometry); masks no image uses are counted as ignored.
    ``draw_missing_masks``: an image without a mask file is a record without ``mask_path``
    (its mask is drawn), not an error.
    """
    ignored = [f for f in rel_files if not is_image_file(f)]
    images: dict[str, list[str]] = {}
    masks: dict[str, list[str]] = {}  # LaMa convention: image stem -> mask rel paths
    for rel in rel_files:
        if not is_image_file(rel):
            continue
        stem = file_stem(rel)
        base = None if mask_root is not None else mask_image_stem(stem)
        if base is not None:
            masks.setdefault(base, []).append(rel)
        else:
            images.setdefault(stem, []).append(rel)
    records: list[dict[str, str]] = []
    image_uri = lambda rel: join_uri(root_uri, rel)  # noqa: E731
    if mask_root is None:
        for base, mask_rels in masks.items():
            candidates = images.get(base, [])
            for mrel in mask_rels:
                muri = join_uri(root_uri, mrel)
                mpath = _abs(root, mrel)
                if not candidates:
                    records.append(_record(file_stem(mrel), muri, mask_source=muri, mask_path=mpath,
                                           error=f"no image for mask {muri} (expected {base}.png, .jpg, .jpeg "
                                                 "or .webp beside it)"))
                elif len(candidates) > 1:
                    names = ", ".join(image_uri(c) for c in candidates)
                    records.append(_record(file_stem(mrel), image_uri(candidates[0]), mask_source=muri, mask_path=mpath,
                                           error=f"ambiguous input: mask {muri} matches several images: {names}"))
                else:
                    records.append(_record(file_stem(mrel), image_uri(candidates[0]), _abs(root, candidates[0]),
                                           muri, mpath))
        for stem, rels in images.items():
            if stem not in masks:
                names = ", ".join(image_uri(r) for r in rels)
                if draw_missing_masks and len(rels) == 1:
                    records.append(_record(stem, image_uri(rels[0]), _abs(root, rels[0])))
                    continue
                records.append(_record(stem, image_uri(rels[0]), _abs(root, rels[0]),
                                       error=f"no mask for image {names} (expected {stem.rsplit('/', 1)[-1]}"
                                             "_mask000.png beside it)"))
        return _one_per_id(records), ignored
    # mask_dir mode: masks under the image's relative name, any image extension.
    mask_rel_files = mask_rel_files or []
    # A mask may also be mask geometry, MASK_DIR/sub/x.json (lama_core.mask_geometry).
    is_mask = lambda rel: is_image_file(rel) or _ext(rel) == ".json"  # noqa: E731
    ignored += [f"MASK_DIR/{f}" for f in mask_rel_files if not is_mask(f)]
    by_stem: dict[str, list[str]] = {}
    for rel in mask_rel_files:
        if is_mask(rel):
            by_stem.setdefault(file_stem(rel), []).append(rel)
    for stem, rels in images.items():
        source = image_uri(rels[0])
        if len(rels) > 1:
            records.append(_record(stem, source, error="ambiguous input: several images map to id "
                                                       f"{stem!r}: {', '.join(image_uri(r) for r in rels)}"))
            continue
        found = by_stem.get(stem, [])
        if not found and draw_missing_masks:
            records.append(_record(stem, source, _abs(root, rels[0])))
        elif not found:
            records.append(_record(stem, source, _abs(root, rels[0]),
                                   error=f"no mask for image {source} (expected {join_uri(mask_uri, stem)}.png "
                                         "or another image extension)"))
        elif len(found) > 1:
            records.append(_record(stem, source, error=f"ambiguous input: several masks for image {source}: "
                                                       f"{', '.join(join_uri(mask_uri, m) for m in found)}"))
        else:
            records.append(_record(stem, source, _abs(root, rels[0]), join_uri(mask_uri, found[0]),
                                   _abs(mask_root, found[0])))
    ignored += [f"MASK_DIR/{rel}" for k, v in by_stem.items() if k not in images for rel in v]
    return records, ignored


class ShardProblem(Exception):
    """A Parquet input shard that cannot be used; the message names the shard and why."""


def read_shard_ids(fs: fsspec.AbstractFileSystem, path: str, uri: str,
                   policy: RetryPolicy | None = None) -> tuple[list[str], pa.Array]:
    """``(column names, ids as one string array)`` of the Parquet input shard at ``path``
    (``uri`` in messages): the one check of every job's Parquet input. Transient storage
    faults are retried per ``policy``. Raises ``ShardProblem``: unreadable, lacking the
    ``id`` or ``image`` column, or holding null ids."""
    def read() -> tuple[list[str], pa.ChunkedArray | None]:
        with fs.open(path, "rb") as f:
            shard = pq.ParquetFile(f)
            names = shard.schema_arrow.names
            if "id" not in names or "image" not in names:
                return names, None
            return names, shard.read(columns=["id"]).column("id")

    try:
        names, ids = call_with_retry(read, policy or RetryPolicy())
    except Exception as exc:  # noqa: BLE001 - any failure to read is the shard's problem, named
        raise ShardProblem(f"cannot read Parquet shard {uri}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if ids is None:
        raise ShardProblem(f"Parquet shard {uri} lacks the required columns id and image (has {names})")
    if ids.null_count:
        raise ShardProblem(f"Parquet shard {uri} has {ids.null_count} rows with a null id")
    return names, ids.combine_chunks().cast(pa.string())


def list_parquet(fs: fsspec.AbstractFileSystem, root: str, root_uri: str, rel_files: list[str],
                 done: set[str]) -> Listing:
    """Scan Parquet shards in this process (the evaluation's ground truth; the bulk job
    plans its shards in Ray tasks, ``pipelines.records.shard_plan``): check each
    (``read_shard_ids``) and read its ids. Shards whose rows are all in ``done`` are
    dropped. Raises ``JobError`` for an unusable shard and for duplicate ids (each id must
    name exactly one output row)."""
    single_file = len(rel_files) == 1 and fs.isfile(root)
    listing = Listing(kind="parquet")
    counts: Counter[str] = Counter()
    for rel in rel_files:
        if _ext(rel) != ".parquet":
            listing.ignored_files.append(rel)
            continue
        path = _abs(root, rel, single_file)
        uri = root_uri if single_file else join_uri(root_uri, rel)
        try:
            names, id_array = read_shard_ids(fs, path, uri)
        except ShardProblem as exc:
            raise JobError(str(exc)) from exc
        ids = id_array.to_pylist()
        counts.update(ids)
        if listing.count_shard(path, uri, ids, done):
            (listing.shards_with_mask if "mask" in names else listing.shards_without_mask).append(path)
    duplicates = [i for i, n in counts.items() if n > 1]
    if duplicates:
        raise JobError(f"Parquet input has {len(duplicates)} duplicate ids (e.g. {duplicates[:3]}): "
                       "ids must be unique, each names one output row")
    return listing
