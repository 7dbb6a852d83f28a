"""Save a pytree of arrays to one ``.npz`` file and load it back into a template.

The file is a plain NumPy ``.npz`` archive, readable with
``np.load(path, allow_pickle=False)``: one entry per leaf, named by its key
path (``jax.tree_util.keystr``) in flatten order, and one metadata entry
(format name and version, jaxnn's version, the leaf count, the tree structure,
and each leaf's dtype, shape and encoding). Most leaves are stored as they
are; ``bfloat16`` and the other ``ml_dtypes`` types as their raw bits
(unsigned integers of the same width); typed PRNG keys as
``jax.random.key_data`` plus the name of their implementation.

Loading needs a template, ``like``, with the structure, shapes and dtypes
expected (a freshly initialised state, or ``jax.ShapeDtypeStruct`` leaves), as
in Equinox's ``tree_deserialise_leaves``: nothing about the tree's Python
types is read from the file, so no pickle is ever involved.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn._validation import file_path

__all__ = ["load", "save"]

FORMAT_NAME = "jaxnn-checkpoint"
FORMAT_VERSION = 1
# keystr paths start with "[" or "." (or are empty for a bare array), so this never clashes with a leaf.
_META_KEY = "__jaxnn_checkpoint__"
_ZIP_MAGIC = b"PK\x03\x04"
_STRUCTURE_CHARS = 400  # how much of a tree structure an error message quotes

# encodings of a leaf in the file
_RAW, _BITS, _KEY = "raw", "bits", "prng_key"


def save(path: str | os.PathLike, tree: Any) -> str | os.PathLike:
    """Write ``tree``'s leaves to ``path`` atomically, as one ``.npz`` file.

    The file is first written to a temporary file in the same folder, flushed
    and fsynced, then moved onto ``path`` with ``os.replace``: a reader sees
    the old file or the new one, never half of one, and a failure leaves the
    old file untouched and no temporary file behind. ``path`` is used exactly
    as given (no ``.npz`` is appended).

    Args:
        path: the file to write (str or ``os.PathLike``); its folder must exist.
        tree: any pytree whose leaves are arrays: ``jax.Array`` (typed PRNG
            keys included), NumPy arrays, NumPy or Python scalars, of boolean,
            integer, floating (``bfloat16`` and the other ``ml_dtypes`` types
            included) or complex dtype. Example: a ``(params, opt_state, epoch)``
            NamedTuple with any optax state.

    Returns:
        ``path``, as given.

    Raises:
        TypeError: a leaf is not an array of numbers (a string, an object);
            the message names its key path. Or ``path`` is not a str or ``os.PathLike``.
        ValueError: two leaves have the same key path string.
        FileNotFoundError: the folder of ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.

    >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn
    >>> tree = {"w": jnp.ones((2, 3)), "step": jnp.asarray(7, jnp.int32), "key": jax.random.key(0)}
    >>> path = jaxnn.save(os.path.join(tempfile.mkdtemp(), "state.npz"), tree)
    >>> back = jaxnn.load(path, like=tree)
    >>> back["w"].shape, int(back["step"]), bool((jax.random.key_data(back["key"]) ==
    ...                                           jax.random.key_data(tree["key"])).all())
    ((2, 3), 7, True)
    """
    target = file_path(path, "save path", must_exist=False)
    entries, meta = _encode(tree)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot save checkpoint {target!r}: its folder {folder!r} does not exist "
            "(create it first, e.g. os.makedirs(folder, exist_ok=True))"
        )
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot save checkpoint {target!r}: it is a folder, not a file")
    _write_atomically(target, folder, {_META_KEY: np.asarray(json.dumps(meta)), **entries})
    return path


def load(path: str | os.PathLike, like: Any) -> Any:
    """Read a file written by :func:`save` into a tree with the structure of ``like``.

    Every leaf must be in the file under ``like``'s key path, with ``like``'s
    shape and dtype; nothing is cast. A leaf comes back as a ``jax.Array``,
    placed with ``like``'s sharding when ``like``'s leaf has one (so a
    replicated state loads replicated).

    Args:
        path: the file (str or ``os.PathLike``).
        like: the template: a pytree of arrays (a freshly initialised state)
            or of ``jax.ShapeDtypeStruct``; only structure, shapes, dtypes and
            shardings are read from it.

    Returns:
        A pytree with ``like``'s structure holding the saved values.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        ValueError: the file is not a jaxnn checkpoint, is truncated or
            corrupted, or does not fit ``like`` (a missing or extra leaf, a
            shape or dtype mismatch); the message names the file and the first
            key path that does not fit, with the saved and expected values.
        TypeError: a leaf of ``like`` is not an array (the message names its key
            path), or ``path`` is not a str or ``os.PathLike``.

    >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn
    >>> path = jaxnn.save(os.path.join(tempfile.mkdtemp(), "w.npz"), [jnp.arange(3.0)])
    >>> jaxnn.load(path, like=[jax.ShapeDtypeStruct((3,), jnp.arange(3.0).dtype)])[0].tolist()
    [0.0, 1.0, 2.0]
    >>> jaxnn.load(path, like=[jnp.zeros(4)])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: checkpoint '...w.npz' does not fit `like` at [0]: saved shape (3,), expected shape (4,)
    """
    target = file_path(path, "load path", must_exist=False)
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot load checkpoint {target!r}: it is a folder, not a file")
    specs, treedef = _template(like)
    with open(target, "rb") as f:  # FileNotFoundError names the path
        arrays, meta = _read(f, target)
    values = _decode(arrays, meta, specs, treedef, target)
    return jax.tree_util.tree_unflatten(treedef, values)


# --- saving -----------------------------------------------------------------------------------------


def _encode(tree: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The npz entries of ``tree``'s leaves (key path -> array) and the metadata describing them."""
    leaves, treedef = _flatten(tree)
    entries: dict[str, np.ndarray] = {}
    described = []
    for key_path, leaf in leaves:
        name = jax.tree_util.keystr(key_path)
        if name in entries:
            raise ValueError(f"cannot save: two leaves have the same key path {name!r}")
        entries[name], info = _encode_leaf(leaf, name)
        described.append({"path": name, **info})
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "jaxnn_version": jaxnn.__version__,
        "num_leaves": len(described),
        "structure": str(treedef),
        "leaves": described,
    }
    return entries, meta


def _encode_leaf(leaf: Any, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One leaf as an array NumPy stores without pickle, and how to read it back."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if not leaf.is_fully_replicated:
            raise ValueError(
                f"cannot save the leaf at {name or 'the root'}: it is split over several processes' devices "
                f"({leaf.sharding}); save replicated arrays, or each process's part"
            )
        leaf = leaf.addressable_data(0)  # a replicated global array: this process's copy is the whole value
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(leaf))
        info = {"dtype": str(leaf.dtype), "shape": list(leaf.shape), "encoding": _KEY,
                "impl": str(jax.random.key_impl(leaf))}
        return data, info
    array = _as_numeric_array(leaf)
    if array is None:
        raise TypeError(
            f"cannot save the leaf at {name or 'the root'}: expected an array or a number, "
            f"got {type(leaf).__name__} {_short_repr(leaf)}"
        )
    info = {"dtype": str(array.dtype), "shape": list(array.shape)}
    if _is_builtin_numeric(array.dtype):
        return array, {**info, "encoding": _RAW}
    # ml_dtypes (bfloat16, float8, int4): np.load cannot rebuild them without pickle; store the bits.
    return array.view(np.dtype(f"u{array.dtype.itemsize}")), {**info, "encoding": _BITS}


def _flatten(tree: Any):
    """``tree``'s leaves with their key paths; an iterator (a generator) is a leaf, refused as not an array."""
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda v: isinstance(v, Iterator))


def _as_numeric_array(leaf: Any) -> np.ndarray | None:
    """``leaf`` as a NumPy array of numbers, or None when it is anything else."""
    if isinstance(leaf, (bool, int, float, complex)):
        try:
            leaf = jnp.asarray(leaf)  # a Python number gets the dtype JAX gives it
        except OverflowError:  # an int beyond 64 bits
            return None
    if not isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return None
    array = np.asarray(leaf)
    if _is_builtin_numeric(array.dtype) or _is_ml_dtype(array.dtype):
        return array
    return None


def _is_builtin_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biufc" and dtype.type.__module__ == "numpy"


def _is_ml_dtype(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and dtype.type.__module__.startswith("ml_dtypes") and dtype.itemsize in (1, 2, 4, 8)


def _write_atomically(target: str, folder: str, entries: dict[str, np.ndarray]) -> None:
    """Write the npz to a fresh file in ``folder``, fsync it, then ``os.replace`` it onto ``target``."""
    tmp, fd = _create_temporary(folder, os.path.basename(target))
    try:
        with os.fdopen(fd, "wb") as f:
            # a file object, so np.savez appends no ".npz"; every entry is numeric, so no pickle
            np.savez(f, allow_pickle=False, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _create_temporary(folder: str, base: str) -> tuple[str, int]:
    """A new, uniquely named file in ``folder``; mode 0o666 so the umask applies as for any new file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue


def _fsync_folder(folder: str) -> None:
    """Make the rename durable where the OS lets a folder be fsynced (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- loading ----------------------------------------------------------------------------------------


def _template(like: Any) -> tuple[list[tuple[str, tuple[int, ...], np.dtype, Any]], Any]:
    """For each leaf of ``like``: (key path, shape, dtype, sharding or None), and the tree structure."""
    leaves, treedef = _flatten(like)
    specs = []
    for key_path, leaf in leaves:
        name = jax.tree_util.keystr(key_path)
        if isinstance(leaf, jax.ShapeDtypeStruct):
            specs.append((name, tuple(leaf.shape), leaf.dtype, leaf.sharding))
        elif isinstance(leaf, jax.Array):
            specs.append((name, tuple(leaf.shape), leaf.dtype, _sharding(leaf)))
        else:
            array = _as_numeric_array(leaf)
            if array is None:
                raise TypeError(
                    f"`like` must be a pytree of arrays or jax.ShapeDtypeStruct; the leaf at "
                    f"{name or 'the root'} is {type(leaf).__name__} {_short_repr(leaf)}"
                )
            specs.append((name, array.shape, array.dtype, None))
    return specs, treedef


def _sharding(leaf: jax.Array) -> Any:
    try:
        return leaf.sharding
    except Exception:  # a tracer or a deleted array has none
        return None


def _read(f, target: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every entry of the npz in ``f`` (read fully, so a CRC error shows here) and its metadata."""
    head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        if not head:
            raise ValueError(f"{target!r} is not a jaxnn checkpoint: the file is empty")
        if _ZIP_MAGIC.startswith(head):
            raise ValueError(f"checkpoint {target!r} is truncated or corrupted: only {len(head)} bytes")
        raise ValueError(f"{target!r} is not a jaxnn checkpoint: it is not a .npz (zip) archive")
    f.seek(0)
    try:
        with np.load(f, allow_pickle=False) as npz:
            if _META_KEY not in npz.files:
                raise _Foreign("a .npz archive without jaxnn's metadata entry")
            arrays = {name: npz[name] for name in npz.files}
    except _Foreign as e:
        raise ValueError(f"{target!r} is not a jaxnn checkpoint: {e}") from None
    except MemoryError:
        raise
    except Exception as e:  # zipfile.BadZipFile, zlib.error, ValueError from a garbled .npy header, EOFError
        raise ValueError(
            f"checkpoint {target!r} is truncated or corrupted ({type(e).__name__}: {e})"
        ) from e
    meta = _parse_meta(arrays.pop(_META_KEY), target)
    return arrays, meta


class _Foreign(Exception):
    pass


def _parse_meta(entry: np.ndarray, target: str) -> dict[str, Any]:
    try:
        meta = json.loads(str(entry[()]))
        ok = isinstance(meta, dict) and meta.get("format") == FORMAT_NAME
    except (ValueError, TypeError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"{target!r} is not a jaxnn checkpoint: its metadata entry is not jaxnn's")
    if not isinstance(meta.get("version"), int) or meta["version"] > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {target!r} has format version {meta.get('version')!r}; this jaxnn "
            f"({jaxnn.__version__}) reads version {FORMAT_VERSION} and older"
        )
    leaves = meta.get("leaves")
    if not isinstance(leaves, list) or len(leaves) != meta.get("num_leaves"):
        raise ValueError(f"checkpoint {target!r} is truncated or corrupted: its leaf list is malformed")
    return meta


def _decode(arrays, meta, specs, treedef, target: str) -> list[Any]:
    """Check the file against the template leaf by leaf and build the leaves."""
    saved = {info["path"]: info for info in meta["leaves"]}
    expected_names = {name for name, *_ in specs}
    structures = (
        f"\n  saved structure:    {_clip(meta.get('structure', '?'))}"
        f"\n  expected structure: {_clip(str(treedef))}"
    )
    for name, *_ in specs:
        if name not in saved:
            raise ValueError(
                f"checkpoint {target!r} does not fit `like`: the leaf {name or '(root)'} is missing "
                f"from the file{structures}"
            )
    for info in meta["leaves"]:
        if info["path"] not in expected_names:
            raise ValueError(
                f"checkpoint {target!r} does not fit `like`: the file has an extra leaf "
                f"{info['path'] or '(root)'}{structures}"
            )
    values = []
    for name, shape, dtype, sharding in specs:
        info = saved[name]
        where = f"checkpoint {target!r} does not fit `like` at {name or '(root)'}"
        if tuple(info["shape"]) != shape:
            raise ValueError(f"{where}: saved shape {tuple(info['shape'])}, expected shape {shape}")
        if info["dtype"] != str(dtype):
            raise ValueError(f"{where}: saved dtype {info['dtype']}, expected dtype {dtype}")
        if name not in arrays:
            raise ValueError(f"checkpoint {target!r} is truncated or corrupted: no entry for {name}")
        value = _decode_leaf(arrays[name], info, shape, dtype, target, name)
        values.append(jax.device_put(value, sharding) if sharding is not None else jax.device_put(value))
    return values


def _decode_leaf(array, info, shape, dtype, target, name):
    encoding = info.get("encoding")
    if encoding == _KEY:
        data = jnp.asarray(array)
        key = jax.random.wrap_key_data(data, impl=info["impl"])
        if key.shape != shape:
            raise ValueError(f"checkpoint {target!r} is truncated or corrupted: bad key data at {name}")
        return key
    if encoding == _BITS:
        if array.dtype != np.dtype(f"u{np.dtype(dtype).itemsize}"):
            raise ValueError(f"checkpoint {target!r} is truncated or corrupted: bad bits at {name}")
        array = array.view(dtype)
    elif encoding != _RAW or array.dtype != dtype:
        raise ValueError(f"checkpoint {target!r} is truncated or corrupted: bad entry at {name}")
    if array.shape != shape:
        raise ValueError(f"checkpoint {target!r} is truncated or corrupted: bad shape at {name}")
    if jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype:
        raise ValueError(
            f"cannot load {name} from {target!r} as {array.dtype}: JAX has 64-bit types off; "
            "set jax.config.update('jax_enable_x64', True) before loading"
        )
    return array


def _clip(text: str) -> str:
    return text if len(text) <= _STRUCTURE_CHARS else text[:_STRUCTURE_CHARS] + " ..."


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
