"""Retrying storage calls that failed for a transient reason, and telling those apart.

Object stores fail in two ways: the request was wrong (no such key, access denied: retrying
changes nothing) or the service was briefly unavailable (connection refused or reset,
timeouts, HTTP 5xx, throttling: the same request succeeds later). ``is_transient`` tells
which by walking the exception and its causes (s3fs wraps botocore/aiohttp errors in
``OSError``); ``call_with_retry`` retries transient failures with bounded exponential
backoff and re-raises the last one, so a caller can record a *retryable* failure instead
of a final one. Paths are handed to single-file calls (``cat_file``), never to fsspec's
multi-path ``cat``, which expands ``*``, ``?`` and ``[...]`` in names as glob patterns.
"""
from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import fsspec

T = TypeVar("T")

# Exception class names (anywhere in the cause chain) that mean "the service or network
# failed, not the request". Matched by name so this module imports neither botocore nor aiohttp.
_TRANSIENT_TYPES = {
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ConnectTimeout", "ReadTimeout", "ProxyConnectionError", "ClientConnectorError", "ServerDisconnectedError",
    "ClientOSError", "ClientPayloadError", "ServerTimeoutError", "IncompleteReadError", "ResponseStreamingError",
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError",
    "BrokenPipeError", "TimeoutError", "IncompleteRead", "RemoteDisconnected",
}
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN}
# S3 error codes of throttling and server-side failures (botocore ClientError codes).
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                    "InternalError", "ServiceUnavailable", "503", "500", "502", "504", "RequestLimitExceeded"}
# Last resort for wrappers that keep only the text (pyarrow, Ray task errors).
_TRANSIENT_TEXT = ("connection refused", "connection reset", "could not connect", "timed out", "timeout",
                   "server disconnected", "connection aborted", "broken pipe", "slow down", "slowdown",
                   "service unavailable", "internal error", "connection closed", "endpointconnectionerror",
                   "http status 5", "throttl", "network_connection", "cannot connect to host")
# Never transient, whatever the text says.
_FINAL_TYPES = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a storage failure that the
    same request may not hit later: network errors, timeouts, HTTP 5xx, throttling. Not
    found / permission denied / bad request are final."""
    chain = _chain(exc)
    if isinstance(chain[0], _FINAL_TYPES):
        return False
    for e in chain:
        names = {t.__name__ for t in type(e).__mro__}
        if names & _TRANSIENT_TYPES:
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in _TRANSIENT_CODES or int(status) >= 500 or int(status) == 429:
                return True
    text = " ".join(str(e).lower() for e in chain)
    return any(t in text for t in _TRANSIENT_TEXT)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a storage call is retried: ``attempts`` tries in all (>= 1), sleeping
    ``base_seconds * 2**k`` (capped at ``max_seconds``) between tries. The worst-case
    wait before giving up is ``total_wait()`` seconds."""

    attempts: int = 6
    base_seconds: float = 1.0
    max_seconds: float = 30.0

    def delays(self) -> list[float]:
        """Sleeps between the tries, in seconds (``attempts - 1`` values)."""
        return [min(self.max_seconds, self.base_seconds * 2 ** k) for k in range(max(0, self.attempts - 1))]

    def total_wait(self) -> float:
        return sum(self.delays())


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, retried while it raises a transient error (``is_transient``) and tries are
    left; the last exception is re-raised (check it with ``is_transient``)."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt >= len(delays) or not is_transient(exc):
                raise
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def _cat_once(fs: fsspec.AbstractFileSystem, paths: Sequence[str]) -> list[Any]:
    """Bytes or the exception for each path, concurrently on async filesystems (s3fs)."""
    if getattr(fs, "async_impl", False) and hasattr(fs, "_cat_file"):
        async def gather():
            return await asyncio.gather(*(fs._cat_file(p) for p in paths), return_exceptions=True)
        return list(fsspec.asyn.sync(fs.loop, gather))
    out: list[Any] = []
    for p in paths:
        try:
            out.append(fs.cat_file(p))
        except Exception as exc:  # noqa: BLE001 - returned to the caller per path
            out.append(exc)
    return out


def read_files(fs: fsspec.AbstractFileSystem, paths: Sequence[str], policy: RetryPolicy,
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """``{path: bytes or exception}`` for literal ``paths`` (no glob expansion). Paths that
    failed transiently are fetched again after each backoff delay, up to ``policy.attempts``
    tries; what still fails is returned as its last exception."""
    result: dict[str, Any] = {}
    todo = list(dict.fromkeys(paths))
    delays = policy.delays()
    for attempt in range(policy.attempts):
        for path, value in zip(todo, _cat_once(fs, todo)):
            result[path] = value
        todo = [p for p in todo if isinstance(result[p], BaseException) and is_transient(result[p])]
        if not todo or attempt >= len(delays):
            break
        sleep(delays[attempt])
    return result


def write_file(fs: fsspec.AbstractFileSystem, path: str, data: bytes, policy: RetryPolicy,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Write ``data`` to the literal ``path`` (parent folders made on local filesystems),
    retrying transient failures; raises the last exception."""
    local = "file" in fs.protocol or "local" in fs.protocol

    def put() -> None:
        if local:  # object stores have no folders to create
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)

    call_with_retry(put, policy, sleep)
