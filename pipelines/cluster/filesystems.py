"""fsspec URIs as the pyarrow filesystems that Ray's readers, writers and Ray Train's
storage take, with the S3 endpoint resolved the same way as everywhere else."""
from __future__ import annotations

import pyarrow.fs as pafs

from lama_core.storage import filesystem_for


def pyarrow_filesystem(uri: str, endpoint_url: str | None = None) -> pafs.FileSystem:
    """A pyarrow ``FileSystem`` for ``uri``: the local one for local paths, otherwise the
    fsspec filesystem (s3fs with the configured endpoint, ...) wrapped for pyarrow."""
    fs, _ = filesystem_for(uri, endpoint_url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


class _FencedHandler(pafs.FSSpecHandler):
    """``FSSpecHandler`` whose every open for writing first calls ``fence.check()``."""

    def __init__(self, fs, fence) -> None:
        super().__init__(fs)
        self.fence = fence

    def open_output_stream(self, path, metadata):
        self.fence.check()
        return super().open_output_stream(path, metadata)

    def open_append_stream(self, path, metadata):
        self.fence.check()
        return super().open_append_stream(path, metadata)


def fenced_filesystem(fs, fence) -> pafs.FileSystem:
    """The fsspec filesystem ``fs`` as a pyarrow ``FileSystem`` (for Ray's writers) that
    calls ``fence.check()`` (e.g. ``output_lease.LeaseFence``: raises when the run lost its
    output's lease) before it opens any file for writing: a writer task that may no longer
    write fails before its file exists. Picklable into Ray tasks."""
    return pafs.PyFileSystem(_FencedHandler(fs, fence))


def storage_location(uri: str, endpoint_url: str | None = None) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for ``ray.train.RunConfig``: an absolute local
    path with no filesystem, or the path inside the bucket with a wrapped fsspec filesystem."""
    fs, path = filesystem_for(uri, endpoint_url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return path, None
    return path, pyarrow_filesystem(uri, endpoint_url)


def uri_of(path: str, like: str) -> str:
    """Turn a filesystem path that Ray returns (``bucket/prefix/...``) back into a URI with
    the scheme of ``like`` (``s3://bucket/prefix/...``); local paths stay as they are."""
    if "://" in like and not like.startswith("file://"):
        scheme = like.split("://", 1)[0]
        return path if path.startswith(scheme + "://") else f"{scheme}://{path.lstrip('/')}"
    return path
