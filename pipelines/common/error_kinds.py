"""What kind of failure an error row records, and which kinds a rerun retries.

Every error row of ``OUTPUT/records/`` carries ``error_kind``:

* ``input``: the record itself is bad (corrupt or missing file, no mask, size mismatch,
  over the pixel or geometry limits, too large for memory: a ``MemoryError`` while
  decoding it, or out of memory when the model ran on it alone). Retrying changes nothing
  until the user fixes files or options: redone only with ``retry_errors=true``.
* ``storage``: reading or writing failed for a reason outside the record (the endpoint
  was unreachable, timed out, throttled, refused access) after the retries of
  ``pipelines.common.retry``. Redone by any rerun.
* ``model``: the model or the processing around it failed for a reason other than the
  record's size (a kernel error, a device fault). Redone by any rerun.

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


#: How allocators word running out of memory: CUDA and oneDNN ("out of memory"), torch's
#: CPU allocator ("DefaultCPUAllocator: can't allocate memory"), errno 12's strerror.
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """A ``MemoryError``, torch's ``OutOfMemoryError``, or an error whose message says an
    allocation failed (``_OUT_OF_MEMORY``)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" \
        or any(phrase in text for phrase in _OUT_OF_MEMORY)


def kind_of_exception(exc: BaseException, doing: str = "decode") -> str:
    """Kind of an unforeseen exception raised while ``doing`` one record alone: decoding it
    (``"decode"``, or making its mask) is ``input`` whatever the exception, out of memory
    included (the record's own bytes decided what was allocated); the model on it alone
    (``"inpaint"``) is ``input`` when out of memory (its size, at these settings: every
    rerun would fail the same way, so it is not retried forever) and ``model`` otherwise."""
    if doing == "inpaint" and not is_out_of_memory(exc):
        return MODEL
    return INPUT
