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

``input=`` is a folder/prefix of shards, one ``.tar``, or a brace pattern
(``s3://bucket/shards-{000000..000099}.tar``, ``{a,b}``). Listing reads the tar headers
only (member names, seeking past the data) to count the samples and find the keys that
earlier runs finished; Ray Data's ``read_webdataset`` then streams the shards in read
tasks, never unpacking them to disk, and the decode stage turns each sample into the row
that ``pipelines.inpaint.job`` decodes for every input form.
"""
from __future__ import annotations

import itertools
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec

from lama_core.storage import join_uri

from pipelines.common.errors import JobError
from pipelines.records.batches import column_batch
from pipelines.records.decode import DECODED_COLUMNS, DecodeOptions, decode_record
from pipelines.records.listing import Listing

#: Suffixes read as the sample's image, and as its mask image.
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
MASK_SUFFIXES = tuple(f"mask.{ext}" for ext in IMAGE_SUFFIXES)
GEOMETRY_SUFFIX = "json"
SHARD_EXTENSION = ".tar"

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
# The WebDataset member rule as Ray's reader applies it: a key of one or more non-dots after
# the last slash that precedes them, then a dot and the suffix (no slash in it).
_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


@dataclass
class WebDatasetListing(Listing):
    """A ``Listing`` (``kind="webdataset"``) whose ``shards`` (filesystem paths, in order)
    still hold samples to do; ``shard_uris`` maps each to its URI and ``skip_ids`` holds
    the keys in them that earlier runs finished."""

    shards: list[str] = field(default_factory=list)


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
    if is_brace_pattern(root) or root.lower().endswith(SHARD_EXTENSION):
        return True
    exts = Counter(f.rsplit(".", 1)[-1].lower() for f in rel_files if "." in f.rsplit("/", 1)[-1])
    others = sum(exts[e] for e in ("parquet",) + IMAGE_SUFFIXES)
    return exts["tar"] > 0 and others == 0


def split_member(name: str) -> tuple[str, str] | tuple[None, None]:
    """``(key, suffix)`` of a tar member name by the WebDataset rule, exactly as Ray Data's
    reader groups members (key: up to the first dot of the file name); ``(None, None)``
    for names it skips (no dot, ``.hidden``)."""
    match = _MEMBER.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)


def scan_shard(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Sample keys of one shard in order, from the tar headers only. Raises ``ValueError``
    for what would fail or split a sample in the reader: members of a key that are not
    consecutive, or two members with the same name."""
    keys: list[str] = []
    seen: set[str] = set()
    suffixes: set[str] = set()
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for info in tar:
            if not info.isreg():
                continue
            key, suffix = split_member(info.name)
            if key is None:
                continue
            if keys and keys[-1] == key:
                if suffix in suffixes:
                    raise ValueError(f"sample {key!r} has two members {info.name!r}")
                suffixes.add(suffix)
                continue
            if key in seen:
                raise ValueError(f"the members of sample {key!r} are not consecutive")
            seen.add(key)
            keys.append(key)
            suffixes = {suffix}
    return keys


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
    return [(f"{root.rstrip('/')}/{rel}", join_uri(root_uri, rel)) for rel in rel_files
            if rel.lower().endswith(SHARD_EXTENSION)]


def list_webdataset(fs: fsspec.AbstractFileSystem, root: str, root_uri: str, rel_files: list[str],
                    done: set[str]) -> WebDatasetListing:
    """Scan the shards of the input (headers only) into a listing: shards whose samples are
    all in ``done`` are dropped. Raises ``JobError`` for an unreadable shard, samples whose
    members are split, duplicate keys, or an input without shards."""
    listing = WebDatasetListing(kind="webdataset")
    shards = _shard_paths(fs, root, root_uri, rel_files)
    if not shards:
        raise JobError(f"no WebDataset shards ({SHARD_EXTENSION} files) in {root_uri}")
    listing.ignored = 0 if is_brace_pattern(root) or fs.isfile(root) else len(rel_files) - len(shards)
    counts: Counter[str] = Counter()
    for path, uri in shards:
        try:
            keys = scan_shard(fs, path)
        except Exception as exc:
            raise JobError(f"cannot read WebDataset shard {uri}: {type(exc).__name__}: {exc}") from exc
        counts.update(keys)
        if listing.count_shard(path, uri, keys, done):
            listing.shards.append(path)
    duplicates = [k for k, n in counts.items() if n > 1]
    if duplicates:
        raise JobError(f"WebDataset input has {len(duplicates)} duplicate sample keys (e.g. {duplicates[:3]}): "
                       "keys are record ids and must be unique over all shards")
    return listing


def sample_columns(sample: dict[str, Any]) -> dict[str, Any]:
    """``read_webdataset`` decoder: one sample (``__key__``, ``__url__``, suffix -> bytes)
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
                              batch_format="numpy", num_cpus=self.num_cpus)


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


def read_webdataset_records(listing: WebDatasetListing, fs: fsspec.AbstractFileSystem,
                            stage: WebDatasetDecodeStage) -> Any:
    """The read + decode part of the pipeline for WebDataset input: Ray Data's
    ``read_webdataset`` streams the shards (raw bytes: its own decoder would turn images
    into arrays, and a corrupt image would fail the whole read task instead of one row),
    ``sample_columns`` gives every sample one schema, then ``stage``. The read tasks take the
    stage's ``num_cpus`` (the actor plan's share; a 1-CPU default would wait forever beside
    actors that hold all but a fraction of a CPU)."""
    import ray

    ds = ray.data.read_webdataset(listing.shards, filesystem=fs, decoder=sample_columns, num_cpus=stage.num_cpus)
    return stage.apply(ds)
