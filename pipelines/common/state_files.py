"""The files a job reads back from its own output: loaded through one door that bounds
their size, checks their shape and types, and says in one line what to do when they are
not what the job wrote.

An output holds state earlier runs left (``_lease.json``, ``_settings.json``, records
files, output shards, evaluation caches). Anyone can edit, truncate or replace them, so
none is trusted: a file is read only up to a size limit, parsed, and checked field by field
before any value is used. What happens to a malformed one depends on what it is:

* recomputable (caches, a records file a killed run left torn): set aside or ignored, with
  a warning, and the work it stood for is redone;
* authoritative (the lease, the remembered settings): the job refuses with
  ``StateFileError``, one line naming the file and what the user can do, never a traceback.

Writes go through ``write_json_state`` (``lama_core.storage.write_atomic``: a reader or a
crash sees the old file or the new one). Values echoed in messages are cut by ``shorten``.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable

import fsspec

from lama_core.storage import write_atomic

from pipelines.common.errors import JobError

#: JSON state files are small (a lease is ~150 bytes, settings ~1 KB); 1 MiB is far above.
MAX_JSON_STATE_BYTES = 2**20
#: Characters of a value echoed in a message.
SHOWN_CHARS = 60


class StateFileError(JobError):
    """A state file of the output is malformed and cannot be recomputed; the message is one
    line naming the file, what is wrong, and what to do."""


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters (``...`` marks the cut)."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_state(data: bytes, max_bytes: int = MAX_JSON_STATE_BYTES) -> tuple[Any, str | None]:
    """``(value, None)`` for strict JSON ``data`` (no NaN/Infinity) of at most ``max_bytes``,
    else ``(None, why)``: never raises."""
    if len(data) > max_bytes:
        return None, f"{len(data)} bytes, over the limit of {max_bytes}"
    try:
        return json.loads(data, parse_constant=_reject_constant), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"not JSON: {str(exc)[:SHOWN_CHARS]}"


def number(value: Any) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: Field checks for ``object_problem``: a type, or a predicate with its description.
FIELD_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (number, "a finite number"),
}


def object_problem(value: Any, fields: dict[str, str]) -> str | None:
    """Why ``value`` is not a JSON object with ``fields`` (name -> ``FIELD_KINDS`` key), or
    None. Other keys are allowed."""
    if not isinstance(value, dict):
        return f"a JSON object was expected, it holds {shorten(value)}"
    for name, kind in fields.items():
        if name not in value:
            return f"no {name!r} field"
        check, description = FIELD_KINDS[kind]
        if not check(value[name]):
            return f"{name!r} must be {description}, it is {shorten(value[name])}"
    return None


def read_json_state(fs: fsspec.AbstractFileSystem, path: str, uri: str, problem: Callable[[Any], str | None],
                    what_to_do: str, max_bytes: int = MAX_JSON_STATE_BYTES) -> Any:
    """The JSON value of the state file at ``path`` (``uri`` names it in messages), or None
    when it does not exist. At most ``max_bytes + 1`` bytes are read. Raises
    ``StateFileError`` (``URI is malformed (WHY): WHAT_TO_DO``) when it is too large, not
    strict JSON, or ``problem(value)`` names a problem."""
    try:
        with fs.open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    value, why = parse_json_state(data, max_bytes)
    why = why or problem(value)
    if why:
        raise StateFileError(f"{uri} is malformed ({why}): {what_to_do}")
    return value


def write_json_state(fs: fsspec.AbstractFileSystem, path: str, value: Any) -> None:
    """Write ``value`` as JSON to ``path``, atomically (the old file or the new, never part)."""
    write_atomic(fs, path, json.dumps(value, indent=1, sort_keys=True).encode())


def set_aside(fs: fsspec.AbstractFileSystem, path: str, why: str, then: str) -> str:
    """Rename a malformed recomputable file ``DIR/NAME`` to ``DIR/_NAME.corrupt`` (kept for
    inspection, no longer read: the leading underscore makes Parquet readers of the folder,
    such as ``pq.read_table(OUTPUT/records)``, skip it), with one warning line on stderr:
    ``why`` it is set aside and what happens ``then``. Returns the new path."""
    parent, _, name = path.rpartition("/")
    target = f"{parent}/_{name}.corrupt" if parent else f"_{name}.corrupt"
    print(f"warning: {path} {why}; renamed it to {target} and {then}", file=sys.stderr, flush=True)
    fs.mv(path, target)
    return target
