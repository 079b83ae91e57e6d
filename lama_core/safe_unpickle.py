"""Reading PyTorch/Lightning checkpoints from untrusted files, with bounded cost.

Official LaMa ``best.ckpt`` files are ``torch.save`` zip archives: ``<name>/data.pkl`` (a
pickle of the checkpoint dict, tensors as references to storages) and one
``<name>/data/<key>`` entry per storage. They also pickle objects of libraries we cannot
import (an OmegaConf config, Lightning's ``AttributeDict``, callback states).

``TorchArchive`` reads such a file in two steps, so that every cost is decided
before it is paid:

1. The zip's central directory (entry count, declared sizes, compression) and the pickle
   alone are read: ``data.pkl`` (at most ``MAX_PICKLE_BYTES``) is unpickled by a
   restricted unpickler in which tensors become ``TensorRef`` (dtype, shape, which storage)
   and no storage data is touched. Plain containers and scalars are rebuilt; classes of
   other libraries become inert ``InertObject`` placeholders that are never imported or run.
2. The caller checks the structure (shapes against the config, declared sizes against a
   cap) and only then ``materialize``s the tensors it needs, each read at exactly its
   checked size.

What the unpickler allows (every global audited for allocation and code execution):
``builtins`` data types (``dict list tuple set frozenset int float complex bool str slice
object``), ``collections.OrderedDict`` / ``defaultdict``, ``torch.Size``, torch dtypes and
storage types, and torch's tensor/parameter rebuild functions (replaced by ones that
only record references). Calls are further restricted: only ``set``/``frozenset`` of a
list, ``OrderedDict()``, ``defaultdict(factory)``, ``torch.Size`` of a few ints, slice,
complex, the rebuild functions and placeholders may be called (so ``str(huge nested
list)`` or ``int(...)`` cannot run); state may be set only on placeholders and on a
state dict's ``OrderedDict`` (its ``_metadata``); ``bytes``, ``bytearray`` and
``range`` (which allocate or iterate on demand), and every global of ``builtins``,
``functools``, ``operator``, ``copyreg``, ``pickle``, ``types``, ``importlib``, ``runpy``,
``marshal``, ``ctypes``, ``sys``, ``gc``, ``inspect`` and ``io`` (the modules that call,
look up or build other objects, never found in a genuine checkpoint) refuse the file.
Hashing work (tuples as dict keys) and the pickle size are capped, so time is bounded too.
Every refusal is an ``UnsafePickleError`` with a one-line reason.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import torch

MAX_PICKLE_BYTES = 2 * 1024 * 1024
"""Largest ``data.pkl`` accepted. A state dict pickles to about 120 bytes per tensor (big-lama's
whole checkpoint well under 1 MiB). Worst case measured at this size: 1 M empty dicts,
about 80 MB and a few seconds."""
MAX_CALLS = 100_000
"""Objects the pickle may create by calls (tensors, placeholders, containers): a genuine
checkpoint makes a few per tensor and per config value (big-lama: about 10,000)."""
MAX_ZIP_ENTRIES = 100_000
MAX_HASH_WORK = 10_000_000
"""Elements hashed while building dict keys and sets, summed over the whole pickle."""
MAX_TENSOR_DIMS = 8
MAX_PLAIN_NODES = 1_000_000


class UnsafePickleError(ValueError):
    """The pickle or archive does something a checkpoint never needs; one-line reason."""


class ArchiveError(ValueError):
    """The file is not a readable ``torch.save`` zip archive (truncated, corrupt, legacy)."""


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


@dataclass(frozen=True)
class StorageRef:
    """A storage named by the pickle: zip entry ``data/<key>`` holding ``numel`` elements of ``dtype``."""

    key: str
    dtype: torch.dtype
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the pickle describes it, without its data: a strided view of a storage."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n

    def extent(self) -> int:
        """Storage elements the view reaches: offset + last element + 1 (0 if empty)."""
        if self.numel == 0:
            return 0
        return self.offset + sum((d - 1) * s for d, s in zip(self.shape, self.stride)) + 1


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


_STORAGE_TYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


def _int_tuple(value: Any, what: str, max_len: int = MAX_TENSOR_DIMS) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list, torch.Size)) or len(value) > max_len:
        raise UnsafePickleError(f"tensor {what} is not a short tuple of integers")
    if not all(type(v) is int and 0 <= v < 2 ** 62 for v in value):
        raise UnsafePickleError(f"tensor {what} holds a negative, huge or non-integer value")
    return tuple(value)


def _tensor_ref(storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype | None = None) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise UnsafePickleError("a tensor is rebuilt from something that is not a storage of the archive")
    if type(offset) is not int or offset < 0:
        raise UnsafePickleError("a tensor has a negative or non-integer storage offset")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise UnsafePickleError("a tensor's size and stride differ in length")
    ref = TensorRef(storage, offset, shape, strides, dtype or storage.dtype)
    if ref.dtype != storage.dtype:
        raise UnsafePickleError("a tensor's dtype differs from its storage's")
    if ref.extent() > storage.numel:
        raise UnsafePickleError(f"a tensor of shape {shape} reaches beyond its storage of {storage.numel} elements")
    return ref


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _tensor_ref(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, *unused):
    if not isinstance(dtype, torch.dtype):
        raise UnsafePickleError("a tensor names no valid dtype")
    if storage.dtype == torch.uint8 and dtype != torch.uint8:  # untyped storage viewed as dtype
        itemsize = _itemsize(dtype)
        storage = StorageRef(storage.key, dtype, storage.numel // itemsize)
    return _tensor_ref(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    if not isinstance(data, TensorRef):
        raise UnsafePickleError("a parameter wraps something that is not a tensor")
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("torch", "Size"): torch.Size,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_DATA_TYPES = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "slice",
               "object")
for _name in _DATA_TYPES:
    ALLOWED_GLOBALS[("builtins", _name)] = getattr(builtins, _name)
for _name in dir(torch):
    if isinstance(getattr(torch, _name, None), torch.dtype):
        ALLOWED_GLOBALS[("torch", _name)] = getattr(torch, _name)
for _name, _dtype in _STORAGE_TYPES.items():
    ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_dtype)

# Modules whose globals exist to call, look up or build other objects: a pickle naming one
# is crafted (no checkpoint needs them), so the file is refused rather than loaded inert.
_REFUSED_MODULES = {"builtins", "functools", "operator", "_operator", "copyreg", "pickle",
                    "_pickle", "types", "importlib", "runpy", "marshal", "ctypes", "sys", "gc", "inspect", "io",
                    "_io", "code", "codeop"}

_SAFE_CALLS = {collections.OrderedDict, set, frozenset, torch.Size, slice, complex, _rebuild_tensor,
               _rebuild_tensor_v3, _rebuild_parameter, collections.defaultdict}
_NEWOBJ_CLASSES = {dict, list, set, object, collections.OrderedDict, collections.defaultdict}
_SCALARS = (str, int, float, bool, type(None), bytes)


def _qualname(obj: Any) -> str:
    if isinstance(obj, type) and issubclass(obj, InertObject):
        return obj.qualified_name
    return f"{getattr(obj, '__module__', None) or 'builtins'}.{getattr(obj, '__name__', type(obj).__name__)}"


class _ScanUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """Restricted unpickler of ``data.pkl``: storages become ``StorageRef`` and tensors
    ``TensorRef``; see the module docstring for what is allowed."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self._tuple_weight: dict[int, int] = {}
        self._keep: list[Any] = []  # tuples whose id() is a key above stay alive
        self._hash_work = 0
        self._calls = 0

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol 2 writes __builtin__, copy_reg): map as pickle itself does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        root = module.split(".", 1)[0]
        if module in _REFUSED_MODULES or root in {"importlib", "ctypes", "functools", "operator"}:
            raise UnsafePickleError(f"the pickle references {module}.{name}, which checkpoints never need "
                                    "(refused: it can call or allocate arbitrary things)")
        return _placeholder(module, name)

    def persistent_load(self, pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError("the pickle holds a persistent id that is not a torch storage")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or len(key) > 64:
            raise UnsafePickleError("the pickle names a storage of an unknown type")
        if type(numel) is not int or not 0 <= numel < 2 ** 62:
            raise UnsafePickleError("the pickle gives a storage a negative or non-integer size")
        return StorageRef(key, storage_type.dtype, numel)

    # -- calls ---------------------------------------------------------------------------
    def _count_call(self) -> None:
        self._calls += 1
        if self._calls > MAX_CALLS:
            raise UnsafePickleError(f"the pickle creates over {MAX_CALLS:,} objects by calls")

    def _check_call(self, func: Any, args: Any) -> None:
        self._count_call()
        if isinstance(func, type) and issubclass(func, InertObject):
            return  # a placeholder records its arguments and runs nothing
        if not (_hashable(func) and func in _SAFE_CALLS):
            raise UnsafePickleError(f"the pickle calls {_qualname(func)}, which checkpoints never need")
        if not isinstance(args, tuple) or len(args) > 8:
            raise UnsafePickleError(f"the pickle calls {_qualname(func)} with malformed arguments")
        if func is collections.OrderedDict and args:  # pickles fill it with SETITEMS, which is metered
            raise UnsafePickleError("the pickle calls collections.OrderedDict with initial items")
        if func in (set, frozenset) and args:
            if not isinstance(args[0], list) or len(args) > 1:
                raise UnsafePickleError(f"the pickle calls {_qualname(func)} on something other than a list")
            for item in args[0]:
                self._charge(item)
        if func is torch.Size:
            _int_tuple(args[0] if args else (), "size")
        if func is collections.defaultdict and len(args) > 1:  # initial items would be hashed uncounted
            raise UnsafePickleError("the pickle calls collections.defaultdict with initial items")

    def load_reduce(self):
        args = self.stack.pop()
        self._check_call(self.stack[-1], args)
        self.stack[-1] = self.stack[-1](*args)

    def _instantiate(self, klass, args):
        self._check_call(klass, tuple(args))
        self.append(klass(*args))

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self._check_newobj(cls, args)
        self.append(cls.__new__(cls, *args))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._check_newobj(cls, args)
        if kwargs:
            raise UnsafePickleError(f"the pickle creates {_qualname(cls)} with keyword arguments")
        self.append(cls.__new__(cls, *args))

    def _check_newobj(self, cls: Any, args: Any) -> None:
        self._count_call()
        if isinstance(cls, type) and issubclass(cls, InertObject):
            return
        if not (_hashable(cls) and cls in _NEWOBJ_CLASSES):
            raise UnsafePickleError(f"the pickle creates an object of {_qualname(cls)}, which checkpoints never need")

    def load_build(self):
        state, target = self.stack[-1], self.stack[-2]
        if isinstance(target, InertObject):
            self.stack.pop()
            target.__setstate__(state)
            return
        # torch's state_dict() is an OrderedDict carrying a ``_metadata`` attribute (module
        # versions): its pickle sets the instance dict. Only string attribute names, no slots.
        if type(target) is collections.OrderedDict and isinstance(state, dict) and all(
                isinstance(k, str) for k in state):
            self.stack.pop()
            target.__dict__.update(state)
            return
        raise UnsafePickleError(f"the pickle sets the state of a {type(target).__name__}")

    # -- hashing work ----------------------------------------------------------------------
    def _charge(self, key: Any) -> None:
        """Count the elements hashing ``key`` visits (tuples do not cache their hash)."""
        self._hash_work += self._tuple_weight.get(id(key), 1) if isinstance(key, tuple) else 1
        if self._hash_work > MAX_HASH_WORK:
            raise UnsafePickleError(f"the pickle needs over {MAX_HASH_WORK:,} hash steps (nested tuple keys?)")

    def _after_tuple(self):
        value = self.stack[-1]
        weight = 1 + sum(self._tuple_weight.get(id(v), 1) if isinstance(v, tuple) else 1 for v in value)
        self._tuple_weight[id(value)] = weight
        self._keep.append(value)

    def load_setitem(self):
        self._charge(self.stack[-2])
        super().load_setitem()

    def load_setitems(self):
        items = self.pop_mark()
        for key in items[0::2]:
            self._charge(key)
        target = self.stack[-1]
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        for item in items:
            self._charge(item)
        target = self.stack[-1]
        if not isinstance(target, set):
            raise UnsafePickleError("the pickle adds set items to something that is not a set")
        target.update(items)

    def load_frozenset(self):
        items = self.pop_mark()
        for item in items:
            self._charge(item)
        self.append(frozenset(items))


def _wrap_tuple_op(opcode: bytes):
    original = pickle._Unpickler.dispatch[opcode[0]]

    def handler(self):
        original(self)
        self._after_tuple()

    _ScanUnpickler.dispatch[opcode[0]] = handler


for _op in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.EMPTY_TUPLE):
    _wrap_tuple_op(_op)
for _op, _method in ((pickle.REDUCE, "load_reduce"), (pickle.NEWOBJ, "load_newobj"),
                     (pickle.NEWOBJ_EX, "load_newobj_ex"), (pickle.BUILD, "load_build"),
                     (pickle.SETITEM, "load_setitem"), (pickle.SETITEMS, "load_setitems"),
                     (pickle.ADDITEMS, "load_additems"), (pickle.FROZENSET, "load_frozenset")):
    _ScanUnpickler.dispatch[_op[0]] = getattr(_ScanUnpickler, _method)


def _hashable(obj: Any) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def scan_pickle(data: bytes) -> Any:
    """Unpickle ``data`` (at most ``MAX_PICKLE_BYTES``) with the restricted unpickler:
    storages become ``StorageRef``, tensors ``TensorRef``. Raises ``UnsafePickleError``
    (refused) or ``pickle.UnpicklingError`` (corrupt), each with a one-line message."""
    if len(data) > MAX_PICKLE_BYTES:
        raise UnsafePickleError(f"its pickle is {len(data):,} bytes, above the limit of {MAX_PICKLE_BYTES:,}")
    try:
        return _ScanUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except RecursionError as exc:
        raise UnsafePickleError("the pickle nests too deeply") from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a crafted or truncated pickle
        first = (str(exc).splitlines() or [""])[0][:120]
        raise pickle.UnpicklingError(f"corrupt pickle ({type(exc).__name__}: {first})") from exc


class TorchArchive:
    """A ``torch.save`` zip archive opened for bounded reading: ``root`` is the unpickled
    structure (tensors as ``TensorRef``), ``total_declared_bytes`` the sum of all entries'
    declared uncompressed sizes; ``materialize`` reads one tensor's data."""

    def __init__(self, fileobj: BinaryIO):
        try:
            endrec = zipfile._EndRecData(fileobj)  # the end record only: count before parsing entries
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"unreadable zip end record ({exc})") from exc
        if not endrec:
            raise ArchiveError("not a zip-format PyTorch checkpoint (legacy or truncated file; "
                                    "pass trusted=True for a legacy file you produced yourself)")
        if endrec[zipfile._ECD_ENTRIES_TOTAL] > MAX_ZIP_ENTRIES:
            raise UnsafePickleError(f"its zip holds over {MAX_ZIP_ENTRIES:,} entries")
        try:
            self._zip = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
            raise ArchiveError(f"unreadable zip ({exc})") from exc
        infos = self._zip.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise UnsafePickleError(f"its zip holds over {MAX_ZIP_ENTRIES:,} entries")
        file_size = fileobj.seek(0, io.SEEK_END)
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsafePickleError(f"zip entry {info.filename[:80]} uses compression method {info.compress_type}")
            if info.header_offset + info.compress_size > file_size:
                raise ArchiveError(f"zip entry {info.filename[:80]} extends beyond the file (truncated?)")
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise UnsafePickleError(f"stored zip entry {info.filename[:80]} declares {info.file_size:,} bytes "
                                        f"but holds {info.compress_size:,}")
            # Deflate expands at most ~1032:1; a larger claim is a forged size.
            if info.file_size > 1032 * info.compress_size + 1024:
                raise UnsafePickleError(f"zip entry {info.filename[:80]} declares {info.file_size:,} bytes from "
                                        f"{info.compress_size:,} compressed, more than deflate can produce")
        self.total_declared_bytes = sum(info.file_size for info in infos)
        self.compressed_bytes = sum(info.compress_size for info in infos)
        self._infos = {info.filename: info for info in infos}
        pickles = [name for name in self._infos if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise ArchiveError("not a PyTorch checkpoint archive (no single <name>/data.pkl)")
        self._prefix = pickles[0][: -len("data.pkl")]
        order = self._infos.get(self._prefix + "byteorder")
        if order is not None and (order.file_size > 16 or self._read(order, order.file_size).strip() != b"little"):
            raise UnsafePickleError("big-endian checkpoints are not supported")
        pickle_info = self._infos[pickles[0]]
        if pickle_info.file_size > MAX_PICKLE_BYTES:
            raise UnsafePickleError(f"its pickle is {pickle_info.file_size:,} bytes, above the limit of "
                                    f"{MAX_PICKLE_BYTES:,}")
        self.root = scan_pickle(self._read(pickle_info, pickle_info.file_size))

    def _read(self, info: zipfile.ZipInfo, nbytes: int) -> bytes:
        try:
            with self._zip.open(info) as f:
                data = f.read(nbytes)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # CRC, truncation, bad header
            raise ArchiveError(f"zip entry {info.filename}: {exc}") from exc
        if len(data) != nbytes:
            raise ArchiveError(f"zip entry {info.filename} is shorter than declared")
        return data

    def storage_declared_bytes(self, storage: StorageRef) -> int | None:
        """Declared uncompressed size of a storage's zip entry, or None if it is absent."""
        info = self._infos.get(f"{self._prefix}data/{storage.key}")
        return None if info is None else info.file_size

    def materialize(self, ref: TensorRef) -> torch.Tensor:
        """Read one tensor (a fresh, contiguous CPU tensor). The storage's zip entry must
        declare exactly ``numel * itemsize`` bytes; only that many are read and decompressed."""
        info = self._infos.get(f"{self._prefix}data/{ref.storage.key}")
        if info is None:
            raise ArchiveError(f"storage data/{ref.storage.key} is missing from the archive")
        if info.file_size != ref.storage.nbytes:
            raise UnsafePickleError(f"storage data/{ref.storage.key} holds {info.file_size:,} bytes, the pickle "
                                    f"says {ref.storage.nbytes:,}")
        if ref.numel == 0:
            return torch.empty(ref.shape, dtype=ref.dtype)
        buffer = bytearray(info.file_size)
        try:
            with self._zip.open(info) as f:
                got = f.readinto(buffer)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # CRC, truncation, bad header
            raise ArchiveError(f"zip entry {info.filename}: {exc}") from exc
        if got != info.file_size:
            raise ArchiveError(f"zip entry {info.filename} is shorter than declared")
        flat = torch.frombuffer(buffer, dtype=ref.dtype)  # shares the buffer: no copy
        contiguous = ref.offset == 0 and ref.numel == ref.storage.numel and \
            ref.stride == tuple(torch.empty(ref.shape, device="meta").stride())
        return flat.view(ref.shape) if contiguous else flat.as_strided(ref.shape, ref.stride, ref.offset).clone()

    def close(self) -> None:
        self._zip.close()


def load_trusted_checkpoint(data: bytes) -> Any:
    """Plain ``torch.load(weights_only=False)`` of a file you produced yourself: runs its pickles."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def to_plain(obj: Any, budget: list[int] | None = None) -> Any:
    """Turn a loaded config (real DictConfig, or inert placeholders of one) into plain
    dicts/lists/scalars, never resolving interpolations. Placeholders of OmegaConf
    containers are walked through their pickled ``_content``; anything else unknown
    becomes ``None``. Visits at most ``MAX_PLAIN_NODES`` nodes (shared references count
    each time), else ``UnsafePickleError``; entries whose key is not a scalar are dropped."""
    budget = [MAX_PLAIN_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise UnsafePickleError(f"its config expands to over {MAX_PLAIN_NODES:,} nodes")
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(obj, InertObject):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:
            return to_plain(state["_content"], budget)
        if "_val" in state:
            return to_plain(state["_val"], budget)
        if len(obj):
            return {k: to_plain(v, budget) for k, v in obj.items() if isinstance(k, _SCALARS)}
        return None
    if isinstance(obj, dict):
        return {k: to_plain(v, budget) for k, v in obj.items() if isinstance(k, _SCALARS)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, budget) for v in obj]
    return obj if isinstance(obj, _SCALARS) else None
