"""Command-line parsing shared by every job: a typed dataclass schema
(``pipelines/*/config.py``, built with ``pipelines/common/config_kit.py``), an optional YAML file, and OmegaConf ``key=value`` overrides.

    cfg = parse_job_config(InpaintConfig, sys.argv[1:])

``--help`` prints every key with its type, default and description, and exits 0;
``--version`` prints the project version. A bad key, a value of the wrong type or out of
range exits 2 with one line on stderr, before anything heavy (torch, Ray) is imported.
``--config FILE.yaml`` (or ``config=FILE.yaml``) merges a YAML file of ``key: value``
pairs under the command-line overrides.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipelines.common.errors import ConfigError, JobError

__all__ = ["JobError", "parse_job_config", "run_job", "help_text", "project_version"]

T = TypeVar("T")


def project_version() -> str:
    """The installed ``lama-at-scale`` version, else the one in ``pyproject.toml``."""
    try:
        from importlib.metadata import version
        return version("lama-at-scale")
    except Exception:  # noqa: BLE001 - a plain checkout that was never installed
        text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
        for line in text.splitlines():
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
        return "unknown"


def _format_default(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value) if value == "" else value
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def help_text(schema: type, prog: str) -> str:
    """The ``--help`` page of a config dataclass: usage, the schema's docstring, and one
    line per key: ``key (type, default DEFAULT): description``."""
    from pipelines.common.config_kit import describe

    import textwrap

    lines = [f"usage: python {prog} [key=value ...] [--config FILE.yaml] [--help] [--version]", ""]
    summary = (schema.__doc__ or "").strip().split("\n\n", 1)[0]  # the first paragraph, whole
    if summary:
        lines += textwrap.wrap(" ".join(summary.split()), 96) + [""]

    for name, type_name, default, description in describe(schema):
        if type_name.startswith("Optional["):
            type_name = "null or " + type_name[len("Optional["):-1]
        lines.append(f"  {name}  ({type_name}, default {_format_default(default)})")
        lines += textwrap.wrap(description, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    lines += ["", "Lists in OmegaConf syntax: key=[a,b]. Paths are local folders or fsspec URIs (s3://...)."]
    return "\n".join(lines)


def _fail(message: str) -> None:
    print(f"error: {message} (see --help)", file=sys.stderr)
    raise SystemExit(2)


def parse_job_config(schema: type[T], argv: list[str], defaults_yaml: str | Path | None = None) -> T:
    """Build the job config: ``schema`` defaults <- ``defaults_yaml`` <- ``--config FILE``
    <- ``argv`` dotlist overrides, then check ``schema.problems()``.

    Returns a plain instance of ``schema`` (a dataclass). Exits 0 after ``--help`` /
    ``--version``, 2 with one line on stderr for any bad key or value.
    """
    if any(a in ("-h", "--help") for a in argv):
        print(help_text(schema, Path(sys.argv[0]).name))
        raise SystemExit(0)
    if "--version" in argv:
        print(f"lama-at-scale {project_version()}")
        raise SystemExit(0)
    files = [] if defaults_yaml is None else [Path(defaults_yaml)]
    overrides = []
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            files.append(Path(next(args, "")))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
        elif arg.startswith("config="):
            files.append(Path(arg.split("=", 1)[1]))
        elif "=" not in arg or arg.startswith("-"):
            _fail(f"arguments must be key=value, got {arg!r}")
        else:
            overrides.append(arg)

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = OmegaConf.structured(schema)
    where = ""  # where the values being merged come from, for the error line
    try:
        for path in files:
            where = f" in {path}"
            if not path.is_file():
                _fail(f"config file not found: {path}")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        where = ""
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(_bare_values_as_lists(schema, overrides)))
        plain = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        if "Key '" in msg and "not in" in msg:
            key = msg.split("Key '", 1)[1].split("'", 1)[0]
            from pipelines.common.config_kit import RENAMED_KEYS

            close = [n for n in _keys(schema) if _similar(n, key)]
            if RENAMED_KEYS.get(key) in _keys(schema):
                close = [RENAMED_KEYS[key]]
            elif key == "seed" and "mask_seed" in _keys(schema):
                close = ["mask_seed"]
            hint = f"; did you mean {close[0]}?" if close else ""
            _fail(f"unknown key {key!r}{where} for {Path(sys.argv[0]).name}{hint}")
        key = getattr(exc, "full_key", None)
        _fail(f"bad config{where}: {key}: {msg}" if key else f"bad config{where}: {msg}")
    except Exception as exc:  # a config file that is not YAML
        _fail(f"cannot read config file {where.removeprefix(' in ')}: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:200]}")
    problems = plain.problems() if hasattr(plain, "problems") else []
    if problems:
        _fail("bad config: " + "; ".join(problems))
    return plain  # type: ignore[return-value]


def _bare_values_as_lists(schema: type, overrides: list[str]) -> list[str]:
    """``key=value`` overrides with a bare value for a list-typed key written as a one-item
    list (``mask_kind=thick_512`` -> ``mask_kind=[thick_512]``): OmegaConf would refuse it
    with a message about its own node types."""
    from dataclasses import fields

    lists = {f.name for f in fields(schema) if str(f.type).split("[", 1)[0].lower() in ("list", "typing.list")}
    out = []
    for item in overrides:
        key, value = item.split("=", 1)
        bare = value.strip() and not value.lstrip().startswith("[") and value.strip() not in ("null", "None")
        out.append(f"{key}=[{value}]" if key in lists and bare else item)
    return out


def _keys(schema: type) -> list[str]:
    from dataclasses import fields

    return [f.name for f in fields(schema)]


def _similar(a: str, b: str) -> bool:
    """Whether two key names are near (a typo, or the old name of a renamed key)."""
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def run_job(main: Callable[[T], Any], schema: type[T], defaults_yaml: str | Path | None = None) -> None:
    """Parse ``sys.argv`` into ``schema`` and call ``main(cfg)``; a ``JobError`` (or an
    unreachable-storage ``OSError``) becomes one line on stderr and exit code 1 (2 for a
    ``ConfigError``: a bad setting found before any work), Ctrl-C
    (SIGINT) one line and exit code 130. A local
    Ray the job started is stopped when ``main`` returns (``ray_setup.release_local_ray``),
    and the heap is frozen (``gc.freeze``) so that the interpreter's exit is quick."""
    cfg = parse_job_config(schema, sys.argv[1:], defaults_yaml)
    try:
        main(cfg)
    except (JobError, OSError) as exc:  # OSError: unreachable storage, permissions, ...
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        # Records and checkpoints are written whole or not at all: what is there stays valid.
        print("interrupted: rerun the same command to continue", file=sys.stderr, flush=True)
        raise SystemExit(130)
    finally:
        # Only a job that connected to Ray imported this (parsing and --help never import Ray).
        ray_setup = sys.modules.get("pipelines.cluster.ray_setup")
        if ray_setup is not None:
            ray_setup.release_local_ray()
        # The interpreter's exit runs full garbage collections over every object of torch,
        # Ray and the job (~1 s of one core after a bulk job); objects frozen here are left
        # to the process's end instead. Only garbage in reference cycles loses its
        # finaliser that way; the job's files are closed by now.
        gc.freeze()
