"""What kind of failure an error row records, and which kinds a rerun retries.

Every error row of ``OUTPUT/records/`` carries ``error_kind``:

* ``input``: the record itself is bad (corrupt or missing file, no mask, size mismatch,
  over the pixel limit). Retrying changes nothing until the user fixes files or options:
  redone only with ``retry_errors=true``.
* ``storage``: reading or writing failed for a reason outside the record (the endpoint
  was unreachable, timed out, throttled, refused access) after the retries of
  ``pipelines.common.retry``. Redone by any rerun.
* ``model``: the model or the processing around it failed (out of memory, a kernel
  error). Redone by any rerun.

Rows written before error kinds existed have a null ``error_kind``; they are treated as
retryable, so a rerun classifies them.
"""
from __future__ import annotations

INPUT = "input"
STORAGE = "storage"
MODEL = "model"
KINDS = (INPUT, STORAGE, MODEL)


def retried(kind: str | None, retry_errors: bool) -> bool:
    """Whether an error row of ``kind`` is redone by a rerun (``retry_errors``: also
    ``input`` errors). ``None`` (rows older than error kinds) is retried."""
    return retry_errors or kind != INPUT


def kind_of_exception(exc: BaseException) -> str:
    """Kind of an unforeseen exception raised while processing one record: ``model`` for
    out-of-memory (the record may fit on a rerun with other settings), else ``input``."""
    text = str(exc).lower()
    if isinstance(exc, MemoryError) or "out of memory" in text:
        return MODEL
    return INPUT
