"""How often a task whose worker dies is run again, and telling such a failure apart.

Ray Data runs map tasks with ``max_retries=-1`` by default: a task whose worker process
dies (a segfault or abort in native code, an out-of-memory kill) is retried forever, so
one record that crashes its decoder makes the job hang. The record stages of the bulk job
(decoding, reading shards, writing outputs) run with ``TASK_RETRIES`` instead: a transient
death (a node lost, a worker killed by the memory monitor while others were busy) is
retried, a record that kills every worker it meets stops the job after a bounded number of
tries, with one line (``worker_crash_line``) instead of a hang.
"""
from __future__ import annotations

#: Retries of a record-stage task whose worker died (so at most 1 + 3 runs).
TASK_RETRIES = 3

# Ray's words for a task whose worker process died while running it.
_CRASH_PHRASES = ("WorkerCrashedError", "The worker died unexpectedly", "worker died or was killed")


def worker_crash_line(exc: BaseException, stage: str = "a record stage") -> str | None:
    """One line for ``exc`` when it is (or wraps) a worker that died while running a task
    of ``stage`` after its retries, else None."""
    seen, error = 0, exc
    while error is not None and seen < 10:
        if type(error).__name__ == "WorkerCrashedError" or any(p in str(error) for p in _CRASH_PHRASES):
            return (f"a task of {stage} crashed its worker {1 + TASK_RETRIES} times (killed by a signal or a crash "
                    "in native code, e.g. a record a decoder cannot survive); records written so far stay valid: "
                    "rerun with codec_batch_size=1 to narrow it down, and look for the crash in Ray's worker logs")
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
        seen += 1
    return None
