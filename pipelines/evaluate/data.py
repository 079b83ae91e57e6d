"""The data of an evaluation: ground-truth images and the mask sets they are paired with.

Image ``i`` of the sorted ids gets mask ``i`` of every mask set: a kind name of
``lama_core.masks.MASK_SETS`` draws it (``generate_mask(kind, mask_seed, i, H, W)``); a
frozen folder (``jobs/make_masks.py``) holds it as ``lama_core.mask_sets.frozen_mask_name(i)``.
Listing reads names only; pixels are read in Ray tasks (``eval_stage``).
"""
from __future__ import annotations

import hashlib

from dataclasses import dataclass, field
from typing import Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from lama_core.mask_sets import is_frozen_mask_name, mask_image_stem
from lama_core.masks import MASK_SETS
from lama_core.storage import join_uri

from pipelines.common.errors import JobError
from pipelines.common.storage import absolute_uri, first_line, reach
from pipelines.records.listing import detect_format, file_stem, is_image_file, list_file_infos, list_parquet


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
    fs, root, exists = reach(uri, "data", endpoint_url, reason=first_line)
    if not exists:
        raise JobError(f"data not found: {uri}")
    try:
        single = fs.isfile(root)
        infos = list_file_infos(fs, root, tuple(exclude))
        rel_files = list(infos)
        by_rel = {rel: root if single else f"{root.rstrip('/')}/{rel}" for rel in rel_files}
        kind = detect_format(rel_files, input_format)
    except JobError:
        raise
    except Exception as exc:
        raise JobError(f"cannot list data {uri}: {type(exc).__name__}: {first_line(exc)}") from exc
    lines = [f"format={kind}"]
    if kind == "parquet":
        listing = list_parquet(fs, root, uri, rel_files, set())
        shards = listing.shards_with_mask + listing.shards_without_mask
        info_of = {by_rel[rel]: info for rel, info in infos.items()}
        ids: list[str] = []
        for shard in shards:
            with fs.open(shard, "rb") as f:
                ids.extend(pq.read_table(f, columns=["id"]).column("id").cast(pa.string()).to_pylist())
        ids.sort()
        for shard in sorted(shards):
            lines.append(f"{listing.shard_uris[shard]}\t{_version(info_of.get(shard, {}))}")
        data = EvalData(uri, "parquet", fs, ids, shards=sorted(shards), shard_uris=listing.shard_uris,
                        index_of={i: k for k, i in enumerate(ids)}, ignored=listing.ignored)
    else:
        images = [r for r in rel_files if is_image_file(r) and mask_image_stem(file_stem(r)) is None]
        by_id: dict[str, str] = {}
        for rel in images:
            rid = file_stem(rel)
            if rid in by_id:
                raise JobError(f"ambiguous data: {join_uri(uri, by_id[rid])} and {join_uri(uri, rel)} both have "
                               f"id {rid!r}")
            by_id[rid] = rel
        ids = sorted(by_id)
        records = []
        for index, rid in enumerate(ids):
            rel = by_id[rid]
            path = by_rel[rel]
            records.append({"id": rid, "source": uri if single else join_uri(uri, rel),
                            "image_path": path, "index": index})
            lines.append(f"{rel}\t{_version(infos[rel])}")
        data = EvalData(uri, "folder", fs, ids, records=records, ignored=len(rel_files) - len(images))
    if not data.ids:
        raise JobError(f"no images (png/jpg/jpeg/webp) or Parquet shards with rows under {uri}")
    data.fingerprint = "\n".join(lines)
    return data


@dataclass(frozen=True)
class MaskSet:
    """A mask set of a sweep: ``kind`` (generated with ``generate_mask``) or ``uri`` (a frozen
    folder of ``{i:06d}_mask000.png``; ``root`` its filesystem path, ``count`` its masks).
    ``name`` is the kind or the folder's basename; ``content_id`` identifies its content
    (a kind: its name, drawn the same way everywhere; a folder: ``mask_folder_id``), so a
    folder rewritten with other masks is scored again."""

    name: str
    kind: str | None = None
    uri: str | None = None
    root: str | None = None
    count: int = 0
    content_id: str = ""


def mask_folder_id(fs: fsspec.AbstractFileSystem, root: str) -> str:
    """16 hex digits identifying the masks of a frozen folder by content: SHA-256 over each
    mask file's name and its own content hash (an object store's ETag when it gives one,
    else the SHA-256 of the bytes), in name order."""
    digest = hashlib.sha256()
    for info in sorted(fs.ls(root, detail=True), key=lambda i: i["name"]):
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if not is_frozen_mask_name(name):
            continue
        etag = info.get("ETag") or info.get("etag")
        content = str(etag) if etag else hashlib.sha256(fs.cat_file(info["name"])).hexdigest()
        digest.update(f"{name}\n{content}\n".encode())
    return digest.hexdigest()[:16]


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
            sets.append(MaskSet(spec, kind=spec, content_id=spec))
            continue
        uri = absolute_uri(spec)
        fs, root, exists = reach(uri, "mask set", endpoint_url, reason=first_line)
        if not exists or not fs.isdir(root):
            raise JobError(f"mask set {spec!r} is neither a mask kind ({', '.join(MASK_SETS)}) nor a folder of "
                           "frozen masks (jobs/make_masks.py)")
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
        count = sum(1 for n in names if is_frozen_mask_name(n))
        if not count:
            raise JobError(f"mask folder {uri} holds no 000000_mask000.png-style masks (written by jobs/make_masks.py)")
        name = root.rstrip("/").rsplit("/", 1)[-1]
        sets.append(MaskSet(name, uri=uri, root=root.rstrip("/"), count=count,
                            content_id=mask_folder_id(fs, root.rstrip("/"))))
        filesystems[name] = fs
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise JobError(f"two mask sets are named {duplicates[0]!r} (a kind and a folder, or two folders with the "
                       "same basename): rename a folder")
    if not sets:
        raise JobError("masks= is empty: give kind names and/or frozen mask folders, e.g. masks=[thick_512,thin_512]")
    return sets, filesystems
