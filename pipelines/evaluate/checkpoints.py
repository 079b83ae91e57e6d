"""Which checkpoints an evaluation sweep scores: ``model=`` (a URI, a glob, or a list of
either) resolved to checkpoint URIs, leaving out what is not a checkpoint and training
checkpoints that are incomplete or damaged (``lama_core.training_checkpoint``)."""
from __future__ import annotations

import re
from typing import Any

from lama_core.checkpoint import CHECKPOINT_FILE_EXTENSIONS
from lama_core.storage import filesystem_for
from lama_core.training_checkpoint import checkpoint_problem

from pipelines.common.errors import JobError
from pipelines.common.storage import CHECKOUT, absolute_uri, first_line

_GLOB_CHARS = re.compile(r"[*?\[]")


def expand_checkpoints(spec: Any, endpoint_url: str | None = None) -> tuple[list[str], list[str]]:
    """Resolve ``checkpoints=`` (one URI, a glob such as ``runs/exp/checkpoint_*`` — local or
    ``s3://`` — or a list of either) to ``(checkpoint URIs, names skipped)``.

    Local paths become absolute (a relative one missing here is looked up in the checkout:
    the shipped demo model). Glob matches that are neither directories nor checkpoint
    files (``.safetensors``, ``.ckpt``, ``.pt``, ``.pth``) are skipped, and so are training
    checkpoints (``checkpoint_000000120``) that are incomplete or damaged
    (``lama_core.training_checkpoint.checkpoint_problem``: no ``complete.json``, or a file
    of the wrong size); those are reported as ``"URI (reason)"``. Raises ``JobError`` for an
    explicit (non-glob) URI that does not exist or is such an incomplete checkpoint. Order:
    as given, globs sorted; duplicates dropped."""
    from pipelines.cluster.filesystems import uri_of

    specs = [spec] if isinstance(spec, str) else list(spec or [])
    found: list[str] = []
    skipped: list[str] = []
    for item in specs:
        item = absolute_uri(str(item).strip(), CHECKOUT)
        if not item:
            continue
        try:
            fs, path = filesystem_for(item, endpoint_url)
            if not _GLOB_CHARS.search(path):
                if not fs.exists(path):
                    raise JobError(f"checkpoint not found: {item}")
                problem = checkpoint_problem(item, endpoint_url)
                if problem:
                    raise JobError(f"checkpoint {item} cannot be evaluated: {problem}")
                found.append(item)
                continue
            matches = sorted(fs.glob(path, detail=True).items())
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"cannot reach checkpoints {item}: {type(exc).__name__}: {first_line(exc)}") from exc
        for match, info in matches:
            match = match.rstrip("/")
            uri = uri_of(match, item) if "://" in item else match
            if info.get("type") == "directory":
                problem = checkpoint_problem(uri, endpoint_url)  # a training checkpoint caught mid-write
                if problem:
                    skipped.append(f"{match} ({problem})")
                else:
                    found.append(uri)
            elif match.lower().endswith(CHECKPOINT_FILE_EXTENSIONS):
                found.append(uri)
            else:
                skipped.append(match)
    return list(dict.fromkeys(found)), skipped
