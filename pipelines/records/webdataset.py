"""WebDataset shards as input of the bulk inpainting job (``input_format=webdataset``).

A WebDataset shard is a ``.tar`` whose members are grouped into samples by key: the
member's path up to the first dot of its file name (``sub/0001.jpg``, ``sub/0001.json``
-> key ``sub/0001``), the rest being its suffix; a sample's members are consecutive.
A sample here holds (suffixes in any case):

* the image: ``jpg``, ``jpeg``, ``png`` or ``webp`` (exactly one);
* optionally a mask image: ``mask.png`` (or ``mask.jpg``, ``mask.jpeg``, ``mask.webp``);
* optionally ``json``: mask geometry (``lama_core.mask_geometry``: ``boxes``, ``polygons``,
  ``rle``) beside any other metadata, such as the ``url``/``caption`` img2dataset writes.

The mask is the union of the mask image and the geometry; with neither, it is drawn from
``mask_kind``/``mask_seed`` and PSNR/SSIM against the original are recorded, as for Parquet
rows without a mask. Every other member (``txt``, ``cls``, ...) is ignored. The record id
is the sample key, so keys must be unique over all shards.

``input=`` is a folder/prefix of shards, one shard, or a brace pattern
(``s3://bucket/shards-{000000..000099}.tar``, ``{a,b}``); shards are ``.tar``, or
``.tar.gz``/``.tgz`` (decompressed on the fly, so listing reads them whole). Listing reads
the tar headers only (member names, seeking past the data) to count the samples and find
the keys that earlier runs finished; read tasks (one per shard) then stream the shards,
never unpacking them to disk, and the decode stage turns each sample into the row that
``pipelines.inpaint.job`` decodes for every input form.

Damage never refuses the job nor drops a sample silently (``shard_reader.walk_shard``):
a sample with two members of one name, a key whose members are not consecutive, a key in
several shards, a sample the damage cut short: each is one error row with its key (in
the first shard that has it); what cannot be read past the damage of a shard is one error
row whose id is the shard's name (``shard-000001.tar``: never a sample key, which has no
dot in its last part), its message saying where the shard broke.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import fsspec

from lama_core.storage import join_uri

from pipelines.common.task_retries import TASK_RETRIES
from pipelines.common.errors import JobError
from pipelines.records.batches import column_batch
from pipelines.records.decode import DECODED_COLUMNS, DecodeOptions, decode_record
from pipelines.records.listing import Listing
from pipelines.records.shard_reader import SHARD_EXTENSIONS, Damage, is_shard_name, walk_shard
from pipelines.records.shard_reader import split_member  # noqa: F401  (re-exported: the member rule)

#: Suffixes read as the sample's image, and as its mask image.
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
MASK_SUFFIXES = tuple(f"mask.{ext}" for ext in IMAGE_SUFFIXES)
GEOMETRY_SUFFIX = "json"

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")

@dataclass
class WebDatasetListing(Listing):
    """A ``Listing`` (``kind="webdataset"``) whose ``shards`` (filesystem paths, in order)
    still hold samples to do; ``shard_uris`` maps each to its URI and ``skip_ids`` holds
    the keys in them that earlier runs finished. ``bad_keys``: key -> (the shard path
    whose row it is, why it is an error row); ``damaged``: shard path -> (its row id, what
    could not be read)."""

    shards: list[str] = field(default_factory=list)
    bad_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    damaged: dict[str, tuple[str, str]] = field(default_factory=dict)


def expand_braces(pattern: str) -> list[str]:
    """Every name a WebDataset brace pattern stands for, in order: ``{000..003}`` is a
    zero-padded numeric range (as wide as its first bound), ``{a,b}`` alternatives; several
    braces multiply. A string without braces is returned alone."""
    parts = _BRACE.split(pattern)
    choices: list[list[str]] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            choices.append([part])
            continue
        match = _RANGE.match(part)
        if match:
            lo, hi = match.groups()
            if int(hi) < int(lo):
                raise JobError(f"brace range {{{part}}} in {pattern} runs backwards")
            choices.append([str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1)])
        else:
            choices.append(part.split(","))
    return ["".join(combo) for combo in itertools.product(*choices)]


def is_brace_pattern(uri: str) -> bool:
    """Whether ``uri`` holds a ``{...}`` brace pattern (then it need not exist as a path)."""
    return bool(_BRACE.search(uri))


def is_webdataset_input(input_format: str, root: str, rel_files: list[str]) -> bool:
    """Whether the job's input is WebDataset shards: ``input_format=webdataset``, or
    ``auto`` with a brace pattern, a ``.tar`` file, or a folder holding ``.tar`` files and
    neither images nor ``.parquet`` shards."""
    if input_format == "webdataset":
        return True
    if input_format != "auto":
        return False
    if is_brace_pattern(root) or is_shard_name(root):
        return True
    exts = Counter(f.rsplit(".", 1)[-1].lower() for f in rel_files if "." in f.rsplit("/", 1)[-1])
    others = sum(exts[e] for e in ("parquet",) + IMAGE_SUFFIXES)
    return any(is_shard_name(f) for f in rel_files) and others == 0


@dataclass
class ShardScan:
    """One shard as its headers tell: sample ``keys`` in order (each once), ``problems``
    (key -> why its sample is an error row) and ``damage`` ('' or what cannot be read)."""

    keys: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    damage: str = ""


def scan_shard(fs: fsspec.AbstractFileSystem, path: str) -> ShardScan:
    """Sample keys of one shard in order, from the tar headers only (``walk_shard``), with
    the samples that will be error rows and the shard's damage. Raises only for storage
    errors (the shard cannot be opened)."""
    scan = ShardScan()
    with fs.open(path, "rb") as f:
        for item in walk_shard(f, with_data=False, size=fs.size(path)):
            if isinstance(item, Damage):
                scan.damage = item.description
                continue
            if item.key not in scan.problems and item.key not in scan.keys:
                scan.keys.append(item.key)
            if item.problem:
                scan.problems.setdefault(item.key, item.problem)
    return scan


def shard_record_id(rel: str) -> str:
    """Record id of a shard's damage row: its path relative to the input (a sample key
    never ends in ``.tar``)."""
    return rel


def _shard_paths(fs: fsspec.AbstractFileSystem, root: str, root_uri: str,
                 rel_files: list[str]) -> list[tuple[str, str]]:
    """``(filesystem path, URI)`` of every shard of the input, in name order."""
    if is_brace_pattern(root):
        paths = expand_braces(root)
        uris = expand_braces(root_uri)
        missing = [u for p, u in zip(paths, uris) if not fs.isfile(p)]
        if missing:
            raise JobError(f"{len(missing)} shards of the pattern {root_uri} do not exist (e.g. {missing[0]})")
        return list(zip(paths, uris))
    if fs.isfile(root):
        return [(root, root_uri)]
    return [(f"{root.rstrip('/')}/{rel}", join_uri(root_uri, rel)) for rel in rel_files if is_shard_name(rel)]


def list_webdataset(fs: fsspec.AbstractFileSystem, root: str, root_uri: str, rel_files: list[str],
                    done: set[str]) -> WebDatasetListing:
    """Scan the shards of the input (headers only) into a listing: shards whose records are
    all in ``done`` are dropped. A damaged shard, a bad sample or a key in several shards
    becomes error rows (see the module docstring). Raises ``JobError`` for an input
    without shards or a shard that cannot be opened at all."""
    listing = WebDatasetListing(kind="webdataset")
    shards = _shard_paths(fs, root, root_uri, rel_files)
    if not shards:
        raise JobError(f"no WebDataset shards ({', '.join(SHARD_EXTENSIONS)} files) in {root_uri}")
    if not (is_brace_pattern(root) or fs.isfile(root)):
        listing.ignored_files = [rel for rel in rel_files if not rel.lower().endswith(SHARD_EXTENSIONS)]
    scans: list[tuple[str, str, ShardScan]] = []
    owner: dict[str, str] = {}  # key -> the URI of the first shard that has it
    for path, uri in shards:
        try:
            scan = scan_shard(fs, path)
        except Exception as exc:  # storage: the shard cannot be opened at all
            raise JobError(f"cannot read WebDataset shard {uri}: {type(exc).__name__}: {exc}") from exc
        for key in scan.keys:
            if key in owner:
                first = owner[key]
                listing.bad_keys.setdefault(key, (shards[[u for _, u in shards].index(first)][0],
                                                  f"sample key {key!r} is in shards {first} and {uri}: keys are "
                                                  "record ids and must be unique over all shards"))
            else:
                owner[key] = uri
        for key, problem in scan.problems.items():
            listing.bad_keys.setdefault(key, (path, problem))
        scans.append((path, uri, scan))
    for path, uri, scan in scans:
        ids = [k for k in scan.keys if listing.bad_keys.get(k, (path,))[0] == path]
        if scan.damage:
            rel = uri[len(root_uri.rstrip("/")) + 1:] if uri.startswith(root_uri.rstrip("/") + "/") else \
                uri.rsplit("/", 1)[-1]
            listing.damaged[path] = (shard_record_id(rel), scan.damage)
            ids.append(listing.damaged[path][0])
        if listing.count_shard(path, uri, ids, done):
            listing.shards.append(path)
    return listing


def sample_columns(sample: dict[str, Any]) -> dict[str, Any]:
    """One sample as ``shard_samples`` reads it (``__key__``, ``__url__``, suffix -> bytes)
    -> the same columns for every sample: ``key``, ``shard`` (path), ``image``/``mask``
    (encoded bytes or None), ``image_name``/``mask_name`` (member names), ``geometry``
    (JSON bytes or None) and ``problem`` (why the sample cannot be used, or '')."""
    members = {k.lower(): k for k in sample if not k.startswith("__")}
    images = [members[s] for s in IMAGE_SUFFIXES if s in members]
    masks = [members[s] for s in MASK_SUFFIXES if s in members]
    key = str(sample["__key__"])
    problem = ""
    if not images:
        problem = (f"no image in sample {key!r} (members: {', '.join(sorted(members.values())) or 'none'}; "
                   f"expected one of {', '.join(IMAGE_SUFFIXES)})")
    elif len(images) > 1 or len(masks) > 1:
        problem = f"ambiguous sample {key!r}: several images or masks ({', '.join(images + masks)})"
    image, mask = (images[0] if images else None), (masks[0] if masks else None)
    return {"key": key, "shard": str(sample.get("__url__", "")), "problem": problem,
            "image": sample[image] if image else None, "image_name": f"{key}.{image}" if image else "",
            "mask": sample[mask] if mask else None, "mask_name": f"{key}.{mask}" if mask else "",
            "geometry": sample.get(members.get(GEOMETRY_SUFFIX, ""))}


@dataclass(frozen=True)
class WebDatasetDecodeStage:
    """The decode stage of WebDataset samples (``sample_columns`` rows), as CPU tasks of
    ``num_cpus`` over batches of ``batch_size`` samples: skips keys in ``skip_ids`` (done by
    earlier runs) and decodes the rest with ``options`` (the decode options of every input
    form). ``shard_uris``: shard path -> URI, for ``source``."""

    shard_uris: dict[str, str]
    skip_ids: frozenset[str]
    options: DecodeOptions
    batch_size: int
    num_cpus: float

    def apply(self, ds: Any) -> Any:
        return ds.map_batches(decode_webdataset_batch, fn_kwargs={"stage": self}, batch_size=self.batch_size,
                              batch_format="numpy", num_cpus=self.num_cpus,
                              max_retries=TASK_RETRIES)


def decode_webdataset_batch(batch: dict[str, Any], stage: WebDatasetDecodeStage) -> dict[str, Any]:
    """One batch of ``WebDatasetDecodeStage``: ``sample_columns`` rows -> the decoded columns
    of every input form (``pipelines.records.decode``: ``image`` uint8 H x W x 3, ``mask``
    uint8 H x W in {0, 1}, flags). ``source`` is ``SHARD_URI/KEY.SUFFIX`` of the image member
    (``mask_source`` likewise, or the JSON member for geometry-only masks), so an error names
    the shard, the sample and the member."""
    rows = []
    for i in range(len(batch["key"])):
        key = str(batch["key"][i])
        if key in stage.skip_ids:
            continue
        shard = stage.shard_uris.get(str(batch["shard"][i]), str(batch["shard"][i]))
        source = f"{shard}/{batch['image_name'][i]}" if batch["image_name"][i] else f"{shard} (sample {key!r})"
        mask_bytes, geometry = _value(batch["mask"][i]), _value(batch["geometry"][i])
        geometry_source = f"{shard}/{key}.{GEOMETRY_SUFFIX}" if geometry is not None else ""
        mask_source = f"{shard}/{batch['mask_name'][i]}" if mask_bytes is not None else geometry_source
        if batch["problem"][i]:
            rows.append({**decode_record(key, source, None, None, "", stage.options), "source": shard,
                         "error": f"{batch['problem'][i]} in WebDataset shard {shard}"})
            continue
        rows.append(decode_record(key, source, _value(batch["image"][i]), mask_bytes, mask_source, stage.options,
                                  geometry=geometry, geometry_source=geometry_source))
    return column_batch(rows, {**DECODED_COLUMNS, "image": None, "mask": None})


def _value(v: Any) -> Any:
    """A cell of an optional bytes column: None (or a pandas NaN) -> None, else bytes."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    return bytes(v)


#: Samples per batch a read task hands on (bounded memory: encoded bytes of this many).
_READ_BATCH = 16


def shard_samples(path: str, fs: fsspec.AbstractFileSystem, bad_keys: dict[str, tuple[str, str]],
                  damaged: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """The ``sample_columns`` rows of the shard at ``path``: one per sample it holds, in
    order (``walk_shard``: the bytes of each member). A key in ``bad_keys`` is one row with
    that problem in the shard that owns it and none elsewhere; a sample the walk finds
    wrong carries its own problem; a damaged shard ends with its damage row (id from
    ``damaged``, or the path's last part)."""
    emitted: set[str] = set()
    with fs.open(path, "rb") as f:
        for item in walk_shard(f, with_data=True, size=fs.size(path)):
            if isinstance(item, Damage):
                rid = damaged.get(path, (path.rsplit("/", 1)[-1], ""))[0]
                yield {**sample_columns({"__key__": rid, "__url__": path}),
                       "problem": f"the rest of the shard cannot be read: {item.description}"}
                return
            if item.key in emitted:
                continue
            owner, problem = bad_keys.get(item.key, (path, item.problem))
            if owner != path:
                continue  # a key in several shards: its one row comes from the first
            emitted.add(item.key)
            row = sample_columns({"__key__": item.key, "__url__": path, **item.members})
            if problem or item.problem:
                row["problem"] = problem or item.problem
            yield row


def read_shard_batch(batch: dict[str, Any], fs: fsspec.AbstractFileSystem, bad_keys: dict[str, tuple[str, str]],
                     damaged: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Read task: a batch of shard paths (column ``path``) -> batches of ``sample_columns``
    rows, ``_READ_BATCH`` at a time."""
    rows: list[dict[str, Any]] = []
    for path in batch["path"]:
        for row in shard_samples(str(path), fs, bad_keys, damaged):
            rows.append(row)
            if len(rows) == _READ_BATCH:
                yield _sample_batch(rows)
                rows = []
    if rows:
        yield _sample_batch(rows)


#: The read tasks' rows as Arrow (binary columns may be null: a sample without a mask).
_SAMPLE_SCHEMA = None


def _sample_batch(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    global _SAMPLE_SCHEMA
    if _SAMPLE_SCHEMA is None:
        text, blob = pa.string(), pa.binary()
        _SAMPLE_SCHEMA = pa.schema([("key", text), ("shard", text), ("problem", text), ("image", blob),
                                    ("image_name", text), ("mask", blob), ("mask_name", text), ("geometry", blob)])
    return pa.Table.from_pylist(rows, schema=_SAMPLE_SCHEMA)


def read_webdataset_records(listing: WebDatasetListing, fs: fsspec.AbstractFileSystem,
                            stage: WebDatasetDecodeStage) -> Any:
    """The read + decode part of the pipeline for WebDataset input: one read task per
    shard streams its samples (``shard_samples``: raw bytes, damage as error rows; a corrupt
    image is one row, never a failed task), then ``stage``. The read tasks take the stage's
    ``num_cpus`` (the actor plan's share; a 1-CPU default would wait forever beside actors
    that hold all but a fraction of a CPU)."""
    import ray

    ds = ray.data.from_items([{"path": p} for p in listing.shards], override_num_blocks=max(1, len(listing.shards)))
    ds = ds.map_batches(read_shard_batch, batch_size=1, num_cpus=stage.num_cpus, max_retries=TASK_RETRIES,
                        fn_kwargs={"fs": fs, "bad_keys": listing.bad_keys, "damaged": listing.damaged})
    return stage.apply(ds)
