"""One writer per output: an expiring lease in ``OUTPUT/_lease.json``.

A run takes the lease before it touches the output and holds it until it ends, renewing
it every ``seconds / 3``; the file names the run, host and process, and when the lease
expires. A second run on the same output finds a live lease and stops with a message
naming the run that holds it. A lease left by a killed run is taken over once it has
expired (at most ``lease_seconds`` after the kill, 120 s by default), or at once when it
names a process on this host that no longer exists, so resuming after a crash needs no
manual cleanup.

Taking the lease is a compare-and-swap: on S3, a conditional PUT (``If-None-Match: *`` to
create, ``If-Match: <ETag>`` to renew or take over an expired one), on a local
filesystem an exclusive create (``O_EXCL``) of the lease, and a short-lived ``.lock``
file around take-overs and renewals. A holder that finds its lease taken (it was
paused longer than the lease lasts) stops writing: ``lost`` is set.

The lease file is state the job reads back (``pipelines.common.state_files``): one that is
not a lease this code writes (not JSON, a field missing or of the wrong type, an expiry
more than ``MAX_LEASE_SECONDS`` ahead) stops the run with one line naming it, rather than
being taken over or trusted. Our own writes are whole: a new local lease is written beside
and linked into place, a renewal renamed over it, an S3 lease is one PUT.

Fencing: the renewals only tell the driver, every ``seconds / 3``, that the lease is gone.
The writers must not commit after that, nor in between: every writer task checks a
``LeaseFence`` (the lease file itself, read again) right before it commits a records file,
an output image batch or a shard, and raises ``LeaseLost`` when the file no longer names
its run with an expiry still ahead. What it committed before stays valid (whole files
whose ids no later run redoes: its resume scan sees them), so the run that took over, or a
plain rerun, finishes the rest. What this cannot fence: a take-over that lands between a
writer's check and its commit (milliseconds on local disk, one PUT on S3), and a writer
whose clock runs behind the other hosts' by more than the lease.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec

from lama_core.storage import is_local, join_uri

from pipelines.common.errors import JobError
from pipelines.common.retry import RetryPolicy, call_with_retry
from pipelines.common.state_files import (MAX_JSON_STATE_BYTES, StateFileError, object_problem, parse_json_state,
                                          shorten)

LEASE_FILE = "_lease.json"
#: Longest lease a run may take (``lease_seconds``); an expiry further ahead than this is
#: not one of ours: a lease file claiming it would hold the output for good.
MAX_LEASE_SECONDS = 86400.0
# A take-over lock older than this was left by a killed process.
_LOCK_STALE_SECONDS = 30.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(holder.get("expires", 0))))
    return (f"run {holder.get('run', '?')} (host {holder.get('host', '?')}, pid {holder.get('pid', '?')}), "
            f"lease valid until {expires}")


class LeaseLost(Exception):
    """A writer found that its run no longer holds the output's lease: nothing more may be
    written. The message is the job's one line."""


@dataclass(frozen=True)
class LeaseFence:
    """What a writer task needs to prove, right before a commit, that run ``run_id`` still
    holds the lease in ``path`` on ``fs`` (``output_uri`` names the output in messages).
    Small and picklable: the writer stages carry it into Ray tasks."""

    fs: fsspec.AbstractFileSystem
    path: str
    output_uri: str
    run_id: str
    retry: RetryPolicy = RetryPolicy()

    def check(self) -> None:
        """Return when the lease file names this run and has not expired; else raise
        ``LeaseLost``, whose message says to whom the lease went. Transient storage errors
        are retried per ``retry``, then raised as they are (the job stops as on any storage
        outage: what was written stays valid)."""
        store = _Store(self.fs, self.path, join_uri(self.output_uri, LEASE_FILE))
        try:
            holder, _ = call_with_retry(store.read, self.retry)
        except StateFileError as exc:
            raise LeaseLost(f"lost the lease on {self.output_uri}: {exc}; nothing more was written; "
                            "rerun to continue") from None
        if holder is not None and holder["run"] == self.run_id and holder["expires"] > time.time():
            return
        to = (f"to run {holder['run']}" if holder is not None and holder["run"] != self.run_id
              else "(it expired)" if holder is not None else "(its lease file is gone)")
        raise LeaseLost(f"lost the lease on {self.output_uri} {to}; nothing more was written; rerun to continue")


def lost_lease_line(exc: BaseException) -> str | None:
    """The ``LeaseLost`` line inside ``exc`` (a Ray task error wraps it, in its cause chain
    or its text), or None."""
    seen = 0
    while exc is not None and seen < 10:
        # (No isinstance shortcut: Ray's RayTaskError(LeaseLost) is a LeaseLost too, and its
        # text is the whole traceback.) A Ray error's text is the task's traceback, in which the raise statement's source
        # line (an f-string) precedes the message; pyarrow may re-wrap the message when the
        # fence stopped a file open, so only the words are looked for.
        for line in reversed(str(exc).splitlines()):
            if "lost the lease on " in line and "{" not in line:
                return line[line.index("lost the lease on "):].strip()
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        seen += 1
    return None


def lease_problem(holder: Any, now: float | None = None) -> str | None:
    """Why ``holder`` (a parsed ``_lease.json``) is not a lease this code writes, or None:
    ``run``/``host`` strings, ``pid`` an integer, ``expires`` a finite time at most
    ``MAX_LEASE_SECONDS`` (plus a minute of clock skew) from ``now``."""
    problem = object_problem(holder, {"run": "str", "host": "str", "pid": "int", "expires": "number"})
    if problem:
        return problem
    now = time.time() if now is None else now
    if holder["expires"] > now + MAX_LEASE_SECONDS + 60:
        return f"'expires' {shorten(holder['expires'])} is more than {MAX_LEASE_SECONDS:.0f} s ahead"
    return None


#: Run ids holding a lease in this process now (a run that ended, even if deleting its
#: lease file failed, is over: its lease need not be waited for by the next run here).
_ACTIVE_RUNS: set[str] = set()


def _expired(holder: dict[str, Any], now: float) -> bool:
    if float(holder.get("expires", 0)) < now:
        return True
    if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid() \
            and holder.get("run") not in _ACTIVE_RUNS:
        return True
    # A holder on this host whose process is gone was killed: no need to wait for expiry.
    return holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1)))


class _Store:
    """Atomic create / compare-and-swap of one small JSON file on a filesystem; ``uri``
    names it in messages."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, uri: str):
        self.fs, self.path, self.uri, self.local = fs, path, uri, is_local(fs)

    def read(self) -> tuple[dict[str, Any] | None, str | None]:
        """``(content, version)``; ``(None, None)`` when absent. The version is the S3 ETag
        (read before the content, so a CAS with it fails if the content changed since).
        Raises ``StateFileError`` when the file is not a lease (``lease_problem``)."""
        if self.local:
            try:
                with open(self.path, "rb") as f:
                    data = f.read(MAX_JSON_STATE_BYTES + 1)
            except FileNotFoundError:
                return None, None
            return self._parse(data), data.decode("utf-8", "replace")
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
            if int(head.get("ContentLength", 0)) > MAX_JSON_STATE_BYTES:
                return self._parse(b"x" * (MAX_JSON_STATE_BYTES + 1)), head["ETag"]  # refused by size, unread
            body = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        return self._parse(body), head["ETag"]

    def _parse(self, data: bytes) -> dict[str, Any]:
        holder, why = parse_json_state(data)
        why = why or lease_problem(holder)
        if why:
            raise StateFileError(f"{self.uri} is malformed ({why}): delete it if no run is writing to this output, "
                                 "then rerun")
        return holder

    def create(self, content: dict[str, Any]) -> bool:
        data = json.dumps(content).encode()
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            # Written whole beside it, then linked into place: link fails if the lease
            # exists (an exclusive create), and a kill never leaves a torn lease behind.
            tmp = f"{self.path}.new-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        return self._put(data, IfNoneMatch="*")

    def swap(self, content: dict[str, Any], version: str) -> bool:
        """Replace the file if it is still at ``version``."""
        data = json.dumps(content).encode()
        if not self.local:
            return self._put(data, IfMatch=version)
        lock = self.path + ".lock"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(lock) > _LOCK_STALE_SECONDS:
                    os.unlink(lock)
            except FileNotFoundError:
                pass
            return False
        try:
            try:
                with open(self.path, "rb") as f:
                    current = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                current = None
            if current != version:
                return False
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
            return True
        finally:
            os.close(fd)
            os.unlink(lock)

    def delete(self, version: str) -> None:
        if self.local:
            if self.read()[1] == version:
                os.unlink(self.path)
            return
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=version)
        except Exception:  # noqa: BLE001 - taken over meanwhile, or storage down: it expires anyway
            pass

    def _put(self, data: bytes, **condition: str) -> bool:
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except Exception as exc:  # noqa: BLE001 - botocore ClientError, translated by s3fs to OSError
            text = f"{type(exc).__name__} {exc}"
            # s3fs turns a failed precondition into FileExistsError ("At least one of the
            # pre-conditions you specified did not hold").
            if "PreconditionFailed" in text or "412" in text or "ConditionalRequestConflict" in text \
                    or "NoSuchKey" in text or isinstance(exc, (FileNotFoundError, FileExistsError)):
                return False
            raise
        finally:
            self.fs.invalidate_cache(self.path)
        return True


@dataclass
class OutputLease:
    """The lease a run holds on its output; ``release()`` when done (also on failure)."""

    store: _Store
    run_id: str
    seconds: float
    output_uri: str
    version: str | None = None
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def fence(self, retry: RetryPolicy = RetryPolicy()) -> LeaseFence:
        """The ``LeaseFence`` of this lease, for the writer stages (``retry``: the job's
        policy for transient storage errors)."""
        return LeaseFence(self.store.fs, self.store.path, self.output_uri, self.run_id, retry)

    def _content(self) -> dict[str, Any]:
        now = time.time()
        return {"run": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "renewed": now,
                "expires": now + self.seconds}

    def _refresh_version(self) -> None:
        self.version = self.store.read()[1]

    def renew(self) -> bool:
        """Extend the lease by ``seconds``; False (and ``lost`` set) when another run took it."""
        if self.lost.is_set():
            return False
        if self.store.swap(self._content(), self.version):
            self._refresh_version()
            return True
        holder, _ = self.store.read()
        if not holder or holder.get("run") != self.run_id:
            self.lost.set()
            return False
        return True  # local lock busy this time: try again next beat

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.renew():
                    print(f"warning: lost the lease on {self.output_uri}: another run took it over", flush=True)
                    return
            except Exception as exc:  # noqa: BLE001 - storage down for a beat: the lease still runs
                print(f"warning: cannot renew the lease on {self.output_uri}: {type(exc).__name__}", flush=True)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        _ACTIVE_RUNS.discard(self.run_id)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.lost.is_set() and self.version is not None:
            try:
                self.store.delete(self.version)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass

    def __enter__(self) -> "OutputLease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def acquire_lease(fs: fsspec.AbstractFileSystem, out_root: str, output_uri: str, run_id: str,
                  seconds: float) -> OutputLease:
    """Take the lease on the output at ``out_root`` for ``run_id`` and start renewing it
    in a daemon thread. Raises ``JobError`` naming the holder when another live run has it."""
    store = _Store(fs, f"{out_root.rstrip('/')}/{LEASE_FILE}", join_uri(output_uri, LEASE_FILE))
    lease = OutputLease(store, run_id, seconds, output_uri)
    for _ in range(5):
        if store.create(lease._content()):
            break
        holder, version = store.read()
        if holder is None:
            continue  # released meanwhile
        if not _expired(holder, time.time()):
            raise JobError(f"output {output_uri} is in use by {_describe(holder)}; wait for that run to end, "
                           f"or write to another output (a killed run's lease expires by itself)")
        if store.swap(lease._content(), version):
            print(f"taking over the expired lease of run {holder.get('run', '?')} on {output_uri}", flush=True)
            break
    else:
        raise JobError(f"cannot take the lease on {output_uri}: other runs keep taking it")
    holder, lease.version = store.read()
    if not holder or holder.get("run") != run_id:
        raise JobError(f"output {output_uri} was taken by {_describe(holder or {})} at the same moment")
    _ACTIVE_RUNS.add(run_id)
    lease._thread = threading.Thread(target=lease._beat, name="output-lease", daemon=True)
    lease._thread.start()
    return lease
