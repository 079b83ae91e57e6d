"""A package's public names, each imported from its submodule on first use (PEP 562).

``lama_core`` and ``lama_core.metrics`` export this way, so that importing a light module
of theirs (``lama_core.image_arrays``, ``lama_core.metrics.hole_area``: what the jobs'
decode and encode workers need) does not load torch, or torchvision, through the
package's own ``__init__``.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` for the package named ``package`` (its ``__name__``):
    ``exports`` maps each submodule (relative name, e.g. ``"checkpoint"``) to the names it
    defines; ``__getattr__`` imports that submodule when one of them is first looked up and
    raises ``AttributeError`` for any other name."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    return list(module_of), __getattr__
