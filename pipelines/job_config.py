"""Command-line parsing shared by every job: a typed dataclass schema, an optional YAML
file of defaults, and OmegaConf ``key=value`` overrides.

    cfg = parse_job_config(InpaintConfig, sys.argv[1:], defaults_yaml="jobs/configs/inpaint.yaml")

``--help`` prints the merged config with its defaults and exits 0. A bad key or a value
of the wrong type exits 2 with one line on stderr.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class JobError(RuntimeError):
    """A job could not run (bad config, unreachable storage, missing model): the job prints
    the message as one line on stderr and exits 1."""


def parse_job_config(schema: type[T], argv: list[str], defaults_yaml: str | Path | None = None) -> T:
    """Build the job config: ``schema`` defaults <- YAML file <- ``argv`` dotlist overrides.

    Returns an OmegaConf structured config that behaves like an instance of ``schema``
    (attribute access, type-checked on assignment).
    """
    if any(a in ("-h", "--help") for a in argv):
        base = OmegaConf.structured(schema)
        if defaults_yaml and Path(defaults_yaml).exists():
            base = OmegaConf.merge(base, OmegaConf.load(defaults_yaml))
        print(f"usage: python {Path(sys.argv[0]).name} [key=value ...]\n\nconfig and defaults:\n")
        print(OmegaConf.to_yaml(base))
        raise SystemExit(0)
    bad = [a for a in argv if "=" not in a]
    if bad:
        print(f"error: arguments must be key=value, got {bad[0]!r} (see --help)", file=sys.stderr)
        raise SystemExit(2)
    try:
        cfg = OmegaConf.structured(schema)
        if defaults_yaml and Path(defaults_yaml).exists():
            cfg = OmegaConf.merge(cfg, OmegaConf.load(defaults_yaml))
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(argv))
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        print(f"error: bad config: {msg} (see --help)", file=sys.stderr)
        raise SystemExit(2)
    return cfg  # type: ignore[return-value]


def run_job(main, schema: type[T], defaults_yaml: str | Path | None = None) -> None:
    """Parse ``sys.argv`` into ``schema`` and call ``main(cfg)``; a ``JobError`` (or an
    unreachable-storage ``OSError``) becomes one line on stderr and exit code 1."""
    cfg = parse_job_config(schema, sys.argv[1:], defaults_yaml)
    try:
        main(cfg)
    except (JobError, OSError) as exc:  # OSError: unreachable storage, permissions, ...
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1)
