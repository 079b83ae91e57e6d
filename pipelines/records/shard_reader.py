"""Walking one WebDataset shard sample by sample, telling damage apart from the end.

A shard is a ``.tar`` (or ``.tar.gz``/``.tgz``, decompressed on the fly) whose members are
grouped into samples by key (``pipelines.records.webdataset.split_member``). Python's
``tarfile`` stops quietly at a header it cannot read, so a shard cut inside a member's
header, or inside the last member's data, would look like a shorter, healthy shard and
its last samples would vanish. ``walk_shard`` checks how the shard ends instead: after the
last member a healthy tar holds its end-of-archive marker (zero blocks) and nothing else.

What it yields for each sample is what a reader needs to make one row per record:

* ``Sample(key, members, problem)``: ``members`` maps each suffix to its bytes (``None``
  when walking headers only); ``problem`` is why the sample cannot be used (two members of
  one name, members of a key that are not consecutive, a sample the damage cut short), or
  ``""``;
* at the end, for a damaged shard, one ``Damage(description)``: what could not be read
  (the rest of the shard is unknown, so it stands for every sample lost there).
"""
from __future__ import annotations

import re
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Iterator

#: Compressed shard file names read as gzip tars.
COMPRESSED_SHARD_EXTENSIONS = (".tar.gz", ".tgz")
#: Every shard file name the job reads.
SHARD_EXTENSIONS = (".tar",) + COMPRESSED_SHARD_EXTENSIONS
_BLOCK = tarfile.BLOCKSIZE

# The WebDataset member rule as Ray's reader applies it: a key of one or more non-dots after
# the last slash that precedes them, then a dot and the suffix (no slash in it).
_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


@dataclass
class Sample:
    """One sample of a shard: ``key``, ``members`` (suffix -> bytes, or None when walking
    headers only) and ``problem`` ('' when usable)."""

    key: str
    members: dict[str, bytes | None] = field(default_factory=dict)
    problem: str = ""


@dataclass
class Damage:
    """The shard could not be read to its end: ``description`` says where and why."""

    description: str


def split_member(name: str) -> tuple[str, str] | tuple[None, None]:
    """``(key, suffix)`` of a tar member name by the WebDataset rule, exactly as Ray Data's
    reader groups members (key: up to the first dot of the file name); ``(None, None)``
    for names it skips (no dot, ``.hidden``)."""
    match = _MEMBER.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)


def is_shard_name(name: str) -> bool:
    """Whether a file name is a shard the job reads (``SHARD_EXTENSIONS``, any case)."""
    return name.lower().endswith(SHARD_EXTENSIONS)


def _end_problem(tar: tarfile.TarFile, size: int | None, last: str) -> str:
    """'' when the tar ends as a healthy one does (zero blocks after the last member), else
    what is wrong. ``tar.offset`` is where the header after the last member would start."""
    fileobj = tar.fileobj
    try:
        fileobj.seek(tar.offset)
        rest = fileobj.read(64 * _BLOCK)
    except (OSError, EOFError, zlib.error) as exc:
        return f"it ends inside the data of member {last!r} ({type(exc).__name__})"
    if size is not None and tar.offset > size:
        return f"it ends inside the data of member {last!r}"
    if not rest:
        return f"it ends after member {last!r} without the end-of-archive marker (cut short)"
    if rest.strip(b"\0"):
        return f"it ends inside the header of the member after {last!r}"
    return ""


def walk_shard(f: IO[bytes], with_data: bool, size: int | None = None) -> Iterator[Sample | Damage]:
    """The samples of the shard open in ``f`` (seekable, binary; gzip detected from its
    bytes), in order, then a ``Damage`` if it is damaged. ``with_data``: read each member's
    bytes (else ``Sample.members`` values are None and data is skipped by seeking).
    ``size``: the file's size when known (an uncompressed tar cut inside a member's data is
    then found without reading it). Never raises for damage inside the shard; an open that
    fails at once (not a tar at all) is a ``Damage`` too."""
    current: Sample | None = None
    seen: set[str] = set()
    last = ""
    try:
        tar = tarfile.open(fileobj=f, mode="r:*")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        yield Damage(f"it is not a readable tar: {type(exc).__name__}: {str(exc)[:120]}")
        return
    compressed = tar.fileobj is not f
    try:
        for info in tar:
            if not info.isreg():
                continue
            key, suffix = split_member(info.name)
            if key is None:
                continue
            if current is None or key != current.key:
                if current is not None:
                    yield current
                current = Sample(key)
                if key in seen:
                    current.problem = f"the members of sample {key!r} are not consecutive in the shard"
                seen.add(key)
            if suffix in current.members and not current.problem:
                current.problem = f"sample {key!r} has two members {info.name!r}"
            current.members[suffix] = tar.extractfile(info).read() if with_data else None
            last = info.name
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        where = f"after member {last!r}" if last else "at its start"
        if current is not None:
            current.problem = f"sample {current.key!r} is cut short: the shard is damaged {where}"
            yield current
        yield Damage(f"it cannot be read {where}: {type(exc).__name__}: {str(exc)[:120]}")
        return
    end = _end_problem(tar, None if compressed else size, last) if last or current else ""
    if current is not None:
        if end:
            current.problem = current.problem or f"sample {current.key!r} may be incomplete: {end}"
        yield current
    if end:
        yield Damage(end)
