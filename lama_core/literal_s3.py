"""An s3fs filesystem that reads every key literally.

s3fs treats ``?versionId=...`` in a path as a version query (and switches to
version-aware mode when a URL holds one): the key ``photos/a?versionId=1.png`` could not
be read at all. Object keys may hold any character, and this project never asks for
object versions, so here a path is bucket + key, nothing else.
"""
from __future__ import annotations

import s3fs


class LiteralS3FileSystem(s3fs.S3FileSystem):
    """``s3fs.S3FileSystem`` whose paths are ``bucket/key`` with the key taken as is."""

    protocol = ("s3", "s3a")

    def __init__(self, *args, retries: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if retries is not None:  # s3fs's own retry loop (a class attribute there)
            self.retries = retries

    @staticmethod
    def _get_kwargs_from_urls(urlpath):
        return {}  # never version-aware because of a "?versionId=" in a name

    def split_path(self, path) -> tuple[str, str, None]:
        trail = path[len(path.rstrip("/")):]
        path = self._strip_protocol(path).lstrip("/")
        if "/" not in path:
            return path, "", None
        bucket, key = self._find_bucket_key(path)
        return bucket, key + trail, None
