"""Compile once per configuration, not once per optimizer object.

optax transformations are NamedTuples of closures, which compare by identity,
so ``optax.sgd(0.05)`` written twice would be two different static arguments
to ``jax.jit`` and compile twice. Here a transformation is identified by what
decides its behaviour: the code of its functions, the values in their
closures, defaults and the globals they read, recursively. Anything that
cannot be compared by value (an arbitrary object, a large array) is
identified by identity and kept alive with the entry, so two configurations
that could behave differently never share a compiled function: at worst
they compile twice. The cache holds at most ``MAX_ENTRIES`` configurations,
so a sweep over many optimizers does not grow memory without bound.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import threading
import types
from collections.abc import Callable, Hashable

import numpy as np

__all__ = ["MAX_ENTRIES", "cached", "fingerprint"]

MAX_ENTRIES = 32
_SMALL_ARRAY = 4096  # entries; larger arrays are identified by identity
_SCALARS = (type(None), bool, int, str, bytes, type(Ellipsis))
_SCALAR_TYPES = frozenset(_SCALARS)  # exactly these types: told apart without isinstance


class _Fingerprint:
    def __init__(self):
        self.keep = []  # objects identified by id(): kept alive so ids are not reused
        self.active = {}

    def by_identity(self, obj) -> tuple:
        self.keep.append(obj)
        return ("id", type(obj).__qualname__, id(obj))

    def __call__(self, obj) -> Hashable:
        kind = type(obj)
        if kind in _SCALAR_TYPES:
            return (kind.__name__, obj)
        if kind is not tuple and kind is not types.FunctionType:  # what optimizers are made of: no leaf checks
            if isinstance(obj, _SCALARS):
                return (kind.__name__, obj)
            if isinstance(obj, (float, complex)):
                return (kind.__name__, repr(obj))  # repr tells -0.0 from 0.0 and keeps nan equal
            if isinstance(obj, types.ModuleType):
                return ("module", obj.__name__)
        active, key = self.active, id(obj)
        if key in active:  # a cycle: refer to the enclosing object by depth
            return ("cycle", active[key])
        active[key] = len(active)
        try:
            if kind is types.FunctionType:
                return self._function(obj)
            return self._compound(obj)
        finally:
            del active[key]

    def _compound(self, obj) -> Hashable:
        if isinstance(obj, (tuple, list)):
            return (type(obj).__qualname__, id(type(obj)), tuple([self(v) for v in obj]))
        if isinstance(obj, dict):
            return ("dict", tuple((self(k), self(v)) for k, v in obj.items()))
        if isinstance(obj, functools.partial):
            return ("partial", self(obj.func), self(obj.args), self(obj.keywords))
        if isinstance(obj, types.MethodType):
            return ("method", self(obj.__func__), self(obj.__self__))
        if isinstance(obj, (np.ndarray, np.generic)) or type(obj).__module__.startswith("jax"):
            return self._array(obj)
        if isinstance(obj, enum.Enum):
            return ("enum", self.by_identity(type(obj)), obj.name)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            params = getattr(type(obj), "__dataclass_params__", None)
            if params is not None and params.frozen:
                fields = tuple(self(getattr(obj, f.name)) for f in dataclasses.fields(obj))
                return ("dataclass", self.by_identity(type(obj)), fields)
        return self.by_identity(obj)

    def _array(self, obj) -> Hashable:
        try:
            if getattr(obj, "size", _SMALL_ARRAY + 1) > _SMALL_ARRAY:
                return self.by_identity(obj)
            a = np.asarray(obj)  # raises for tracers: then identity below
        except Exception:
            return self.by_identity(obj)
        if a.dtype == object:
            return self.by_identity(obj)
        return ("array", type(obj).__qualname__, a.dtype.str, a.shape, a.tobytes())

    def _function(self, fn: types.FunctionType) -> Hashable:
        code, names = fn.__code__, fn.__globals__
        cells = tuple([self(c.cell_contents) if _filled(c) else ("empty",) for c in fn.__closure__ or ()])
        read = tuple([(name, self(names[name])) for name in _global_names(code) if name in names])
        return ("function", code, self(fn.__defaults__), self(fn.__kwdefaults__), cells, read)


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name ``code`` and the functions defined in it may read as a global, sorted.

    Cached: code objects are immutable, so their names never change.
    """
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(_global_names(const))
    return tuple(sorted(names))


def fingerprint(obj) -> tuple[Hashable, list]:
    """A hashable key equal for objects that behave the same, and the objects it identifies by id."""
    fp = _Fingerprint()
    return fp(obj), fp.keep


_lock = threading.Lock()
_entries: collections.OrderedDict = collections.OrderedDict()


def cached(kind: str, static: Hashable, optimizer, build: Callable[[], object]):
    """``build()`` once per ``(kind, static, fingerprint(optimizer))``, least recently used first out."""
    key, keep = fingerprint(optimizer)
    full = (kind, static, key)
    with _lock:
        if full in _entries:
            _entries.move_to_end(full)
            return _entries[full][0]
    value = build()
    with _lock:
        _entries[full] = (value, keep)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return value
