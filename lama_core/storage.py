"""Uniform access to local paths and fsspec URIs (s3://, gs://, file://, memory://).

Every path the project reads or writes goes through here, so an S3-compatible endpoint
set with ``AWS_ENDPOINT_URL`` (or passed explicitly) works the same everywhere.
"""
from __future__ import annotations

import os
import uuid
from typing import Any

import fsspec


def storage_options(uri: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """Return fsspec storage options for ``uri``.

    For ``s3://`` URIs the endpoint is ``endpoint_url`` when given, else the
    ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` environment variable, else AWS itself.
    Other protocols get no options.
    """
    protocol = fsspec.utils.get_protocol(uri)
    if protocol not in ("s3", "s3a"):
        return {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def filesystem_for(uri: str, endpoint_url: str | None = None,
                   attempts: int | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve ``uri`` to ``(filesystem, path_inside_filesystem)``.

    A plain local path becomes the local filesystem and an absolute path. ``s3://`` keys
    are literal (``lama_core.literal_s3``: ``?versionId=`` is part of a name). ``attempts``
    (S3 only): tries per request inside botocore and s3fs, for callers that retry
    themselves (``None``: the libraries' defaults). Raises ``ValueError`` for an empty URI.
    """
    if not uri:
        raise ValueError("empty path/URI")
    options = storage_options(uri, endpoint_url)
    protocol = fsspec.utils.get_protocol(uri)
    if protocol in ("s3", "s3a"):
        from .literal_s3 import LiteralS3FileSystem

        if attempts is not None:
            options.update(retries=attempts, config_kwargs={"retries": {"max_attempts": attempts, "mode": "standard"}})
        fs = LiteralS3FileSystem(**options)
        return fs, fs._strip_protocol(uri)
    fs, path = fsspec.core.url_to_fs(uri, **options)
    return fs, path


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with '/' (never the OS separator for URIs)."""
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def read_bytes(uri: str, endpoint_url: str | None = None) -> bytes:
    """Read a whole file from a local path or URI. Raises ``FileNotFoundError`` naming ``uri``."""
    fs, path = filesystem_for(uri, endpoint_url)
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {uri}") from exc


def write_bytes(uri: str, data: bytes, endpoint_url: str | None = None) -> None:
    """Write ``data`` to a local path or URI, creating parent folders where the filesystem has them."""
    fs, path = filesystem_for(uri, endpoint_url)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local filesystem (folders exist, files are renamed in place)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Replace the file ``path`` on ``fs`` with ``data`` so that a reader (or a crash) sees
    the old file or the new one, never a partial one: locally a temporary file beside it,
    flushed to disk and renamed in place (parent folders made); on object stores one PUT,
    which replaces a key atomically."""
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
