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


#: The precisions each backend runs (the torch path: every one of ``choices.PRECISIONS``).
BACKEND_PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}


def backend_problem(backend: str, precision: str, device: str = "cpu") -> str | None:
    """``None`` when ``backend`` runs ``precision`` on ``device`` (``"cpu"`` / ``"cuda"``),
    else the one-sentence problem: the rule the Inpainter and the bulk job's config share."""
    if problem := choice_problem("backend", backend, BACKENDS):
        return problem
    if backend in BACKEND_PRECISIONS and precision not in BACKEND_PRECISIONS[backend] + ("auto",):
        runs = " or ".join(BACKEND_PRECISIONS[backend])
        return (f"backend={backend} runs precision {runs}, got {precision!r} (reduced precision: backend=torch"
                + (", or backend=openvino with bf16)" if backend == "onnxruntime" else ")"))
    if backend == "openvino" and device != "cpu":
        return f"backend=openvino runs on the CPU here, got device {device}"
    return None
