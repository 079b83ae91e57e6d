"""The settings that change a job's results, remembered in the output.

The first run on an output writes ``OUTPUT/_settings.json``: the model id (URI + weight
hash, see ``pipelines.inpaint.model_stage.load_model``) and every option that changes the pixels or
numbers written. A later run on the same output must use the same ones, else its rows
would silently mix with rows of other settings (and resume would skip ids done with
those). It stops instead with a message naming each difference and the two ways on:
another output, or ``overwrite=true`` (redo everything with the new settings).
"""
from __future__ import annotations

from typing import Any, Iterable

import fsspec

from pipelines.common.errors import JobError
from pipelines.common.state_files import read_json_state, shorten, write_json_state

SETTINGS_FILE = "_settings.json"


def settings_of(cfg: Any, keys: Iterable[str], **extra: Any) -> dict[str, Any]:
    """``{key: value}`` for the ``keys`` present in ``cfg`` (others are skipped, so a key a
    job does not have yet costs nothing), plus ``extra`` (e.g. ``model=<model id>``). Values
    are made JSON-plain (lists for sequences, strings for anything unusual)."""
    out: dict[str, Any] = dict(extra)
    for key in keys:
        if key in cfg if hasattr(cfg, "__contains__") else hasattr(cfg, key):
            out[key] = _plain(getattr(cfg, key))
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return str(value)


def _plain_value(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value)


def settings_problem(value: Any) -> str | None:
    """Why ``value`` (a parsed ``_settings.json``) is not what ``check_settings`` writes, or
    None: a JSON object of plain values (null, booleans, numbers, strings, lists of them)."""
    if not isinstance(value, dict):
        return f"a JSON object was expected, it holds {shorten(value)}"
    for key, item in value.items():
        if not _plain_value(item):
            return f"{shorten(key)} holds {shorten(item)}, not a plain value"
    return None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: 'old' (output) vs 'new' (this run)`` for every key whose value differs (a
    key only one side has counts when its value is not null)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} in the output vs {new.get(key)!r} now")
    return out


def check_settings(fs: fsspec.AbstractFileSystem, out_root: str, output_uri: str, settings: dict[str, Any],
                   overwrite: bool, dry_run: bool = False,
                   way_on: str = "write to another output, or pass overwrite=true to redo every record with these",
                   before: dict[str, Any] | None = None) -> None:
    """Compare ``settings`` with the output's remembered ones and remember them when the
    output has none (or ``overwrite``). Raises ``JobError`` naming the differences and
    ``way_on`` (what the user can do). ``dry_run``: compare only, write nothing.
    ``before``: the value a key had in effect in outputs written before it was remembered
    (a remembered file without the key is compared as if it held that value)."""
    path = f"{out_root.rstrip('/')}/{SETTINGS_FILE}"
    old = None
    if not overwrite:  # overwrite=true replaces the file unread, so it also repairs a broken one
        old = read_json_state(fs, path, f"{output_uri.rstrip('/')}/{SETTINGS_FILE}", settings_problem,
                              f"delete {output_uri.rstrip('/')}/{SETTINGS_FILE} to start over (the next run "
                              "remembers its own settings), or pass overwrite=true to redo every record")
    if old is not None:
        diff = differences({**(before or {}), **old}, settings)
        if diff:
            raise JobError(f"output {output_uri} holds results made with other settings ({'; '.join(diff)}): "
                           f"{way_on}")
        return
    if not dry_run:
        if "file" in fs.protocol or "local" in fs.protocol:
            fs.makedirs(out_root, exist_ok=True)
        write_json_state(fs, path, settings)
