"""Where a job reads and writes: URIs made absolute, filesystems opened and checked.

Shared by the jobs (``inpaint.py``, ``evaluate.py``, ``train.py``): a storage that cannot be
reached, an input that does not exist or an output bucket that does not exist is one
``JobError`` line before any work starts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import fsspec

from lama_core.storage import filesystem_for

from pipelines.common.errors import JobError


#: The checkout this package runs from: a relative path missing in the working directory
#: (the shipped demo model, run from another folder) is looked up there too.
CHECKOUT = str(Path(__file__).resolve().parents[2])


def absolute_uri(uri: str | None, fallback_root: str | None = None) -> str | None:
    """Local relative paths -> absolute (Ray workers do not share the driver's cwd); empty
    or ``None`` is returned as given. With ``fallback_root``, a relative path that does not
    exist here but does under ``fallback_root`` resolves there."""
    if not uri:
        return uri
    if "://" in uri:
        return uri
    path = os.path.expanduser(uri)
    if fallback_root is not None and not os.path.isabs(path) and not os.path.exists(path) \
            and os.path.exists(os.path.join(fallback_root, path)):
        return os.path.join(fallback_root, path)
    return os.path.abspath(path)


def message_line(exc: BaseException) -> str:
    """First line of ``str(exc)``; ``''`` when the message is empty."""
    text = str(exc)
    return text.splitlines()[0] if text else ""


def first_line(exc: BaseException) -> str:
    """First line of ``str(exc)``; the exception's type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def reach(uri: str, what: str, endpoint_url: str | None,
          reason: Callable[[BaseException], str] = message_line,
          attempts: int | None = None) -> tuple[fsspec.AbstractFileSystem, str, bool]:
    """``(filesystem, path, exists)`` for ``uri``; ``JobError`` naming ``what`` and ``uri``
    (and ``reason(exc)``) when the storage cannot be reached. ``attempts``: see
    ``lama_core.storage.filesystem_for`` (1 where ``pipelines.common.retry`` retries)."""
    try:
        fs, path = filesystem_for(uri, endpoint_url, attempts)
        return fs, path.rstrip("/") or path, fs.exists(path)
    except Exception as exc:
        raise JobError(f"cannot reach {what} {uri}: {type(exc).__name__}: {reason(exc)}") from exc


def open_output(uri: str, endpoint_url: str | None, reason: Callable[[BaseException], str] = message_line,
                attempts: int | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path)`` of the output ``uri``, checked: reachable, and on an object
    store its bucket exists (an output prefix itself need not). Raises ``JobError``."""
    fs, root, _ = reach(uri, "output", endpoint_url, reason, attempts)
    try:
        bucket_missing = "s3" in fs.protocol and not fs.exists(root.split("/", 1)[0])
    except Exception as exc:
        raise JobError(f"cannot reach output {uri}: {type(exc).__name__}: {reason(exc)}") from exc
    if bucket_missing:
        raise JobError(f"output bucket of {uri} does not exist")
    return fs, root


def inside(path: str, folder: str) -> bool:
    """Whether the filesystem path ``path`` is ``folder`` or lies under it."""
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def input_exclusions(in_fs: fsspec.AbstractFileSystem, in_root: str,
                     *others: tuple[fsspec.AbstractFileSystem, str | None]) -> tuple[str, ...]:
    """Paths to leave out of the listing of the input ``in_root``: each of ``others``
    (``(filesystem, path)`` of an output or a mask folder; ``None`` paths skipped) on the
    same kind of filesystem that does not hold the input itself (an output folder inside
    the input folder is not input, but input inside the output is)."""
    return tuple(path for fs, path in others
                 if path and type(fs) is type(in_fs) and not inside(in_root, path))
