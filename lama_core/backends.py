"""Names of the Inpainter's inference backends and the one-line error for a missing extra.

Light on purpose (no torch, no runtime imports): the job configs import ``BACKENDS`` to
validate ``backend=`` before anything heavy loads.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .choices import BACKENDS, choice_problem

#: The ``pyproject.toml`` extra that installs what each non-torch backend needs.
BACKEND_EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


class MissingExtraError(ImportError):
    """An optional package a backend or the exporter needs is not installed."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` with one line naming the extra:
    ``what`` says who needs it (e.g. ``"backend='openvino'"``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs the Python package {module!r}, which is not installed: "
                                f"pip install -e '.[{extra}]'") from exc


def check_backend(backend: str) -> str:
    """``backend`` if it is one of ``BACKENDS``; else ``ValueError`` listing them."""
    if problem := choice_problem("backend", backend, BACKENDS):
        raise ValueError(problem)
    return backend
