"""Reading PyTorch/Lightning checkpoints without running the pickles inside them.

Official LaMa ``best.ckpt`` files hold tensors plus pickled non-tensor objects (an
OmegaConf config, Lightning's ``AttributeDict``, callback states) written by library
versions we cannot import. ``torch.load(weights_only=True)`` refuses classes it does not
know; plain ``torch.load`` would import and run them. This module sits in between: tensors
and plain containers are rebuilt, every other class becomes an inert placeholder that
records its constructor arguments and state but never executes anything.
"""
from __future__ import annotations

import collections
import copyreg
import io
import pickle
from typing import Any

import torch

# Callables that pickle may invoke, limited to ones that build data and run no user code.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}
for _name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes",
              "bytearray", "slice", "range", "object"):
    _ALLOWED[("builtins", _name)] = getattr(__import__("builtins"), _name)
for _name in dir(torch):
    if isinstance(getattr(torch, _name, None), torch.dtype):
        _ALLOWED[("torch", _name)] = getattr(torch, _name)


class InertObject(dict):
    """Stand-in for a pickled object of a class we will not import.

    Behaves as a dict for ``SETITEMS`` (dict subclasses such as ``AttributeDict``), keeps
    ``__setstate__`` state in ``.state``, list items in ``.items_list`` and constructor
    arguments in ``.args``. Nothing of the original class runs.
    """

    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        obj.items_list = []
        return obj

    def __init__(self, *args, **kwargs):  # noqa: D401 - deliberately runs nothing
        pass

    def __setstate__(self, state):
        self.state = state

    def append(self, item):
        self.items_list.append(item)

    def extend(self, items):
        self.items_list.extend(items)

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


_placeholders: dict[str, type] = {}


def _placeholder(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _placeholders:
        _placeholders[key] = type(f"Inert_{name}", (InertObject,), {"qualified_name": key})
    return _placeholders[key]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = _ALLOWED.get((module, name))
        return allowed if allowed is not None else _placeholder(module, name)


class _RestrictedPickleModule:
    """The ``pickle_module`` protocol that ``torch.load`` expects."""

    Unpickler = _RestrictedUnpickler
    __name__ = "lama_core.safe_unpickle"

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def _omegaconf_globals() -> list:
    """The globals a checkpoint holding an OmegaConf DictConfig needs (omegaconf 2.4)."""
    import typing

    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    return [DictConfig, ListConfig, AnyNode, ContainerMetadata, Metadata, typing.Any, collections.defaultdict,
            dict, list, int, float, str, bool]


def load_checkpoint_bytes(data: bytes, trusted: bool = False) -> Any:
    """Unpickle a ``torch.save`` payload held in memory.

    ``trusted=False`` (the default) never executes code from the file: first the stock
    ``weights_only`` loader with OmegaConf's classes allowlisted (gives real DictConfigs),
    then, if the file holds classes outside that list, the restricted unpickler above
    (unknown objects become ``InertObject`` placeholders). ``trusted=True`` is plain
    ``torch.load(weights_only=False)``: only for files you produced yourself.
    Raises ``pickle.UnpicklingError`` / ``RuntimeError`` for corrupt or truncated files.
    """
    if trusted:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(_omegaconf_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc) and "Unsupported global" not in str(exc):
            raise
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)


def to_plain(obj: Any) -> Any:
    """Turn a loaded config (real DictConfig, or inert placeholders of one) into plain
    dicts/lists/scalars. Placeholders of OmegaConf containers are walked through their
    pickled ``_content``; anything else unknown becomes ``None``."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(obj, InertObject):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:
            return to_plain(state["_content"])
        if "_val" in state:
            return to_plain(state["_val"])
        if len(obj):
            return {k: to_plain(v) for k, v in obj.items()}
        return None
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
