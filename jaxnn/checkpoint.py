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
types is read from the file, so no pickle is ever involved. The file is
checked against its metadata and the template before anything is
decompressed, so a hostile or damaged file costs no more memory than the
template describes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import file_path
from jaxnn._version import __version__

try:
    import fcntl
except ImportError:  # Windows: no flock, so no temporary is ever reclaimed
    fcntl = None

__all__ = ["load", "save"]

FORMAT_NAME = "jaxnn-checkpoint"
FORMAT_VERSION = 1
# keystr paths start with "[" or "." (or are empty for a bare array), so this never clashes with a leaf.
_META_KEY = "__jaxnn_checkpoint__"
_ZIP_MAGIC = b"PK\x03\x04"
_STRUCTURE_CHARS = 400  # how much of a tree structure an error message quotes

# encodings of a leaf in the file
_RAW, _BITS, _KEY = "raw", "bits", "prng_key"

# Limits on what a file may declare before it is read.
_NPY_HEADER_BYTES = 10_000  # numpy.lib.format's own limit on an .npy header
_META_BASE_BYTES = 1 << 20  # the metadata may take this much, plus a share per leaf of the template
_META_LEAF_BYTES = 4096
_META_DEPTH = 8  # nesting of JSON lists and objects; version 1 needs 4
_MAX_DIMS = 64  # NumPy's limit
_READ_CHUNK = 1 << 24
_STALE_SECONDS = 60  # an unlocked temporary of the same target this old is a crashed save's: reclaimed


def save(path: str | os.PathLike, tree: Any) -> str | os.PathLike:
    """Write ``tree``'s leaves to ``path`` atomically, as one ``.npz`` file.

    The file is first written to a temporary file ``.{name}.{12 hex digits}.tmp``
    in the same folder, flushed and fsynced, then moved onto ``path`` with
    ``os.replace``: a reader sees the old file or the new one, never half of
    one. A failure or a ``KeyboardInterrupt`` (raised as itself) leaves the old
    file untouched and no temporary file behind. A save killed outright
    (``SIGKILL``, power loss) can leave its temporary; the next save to the
    same ``path`` removes such leftovers, recognised by their name, once they
    are a minute old and no process holds their lock (a save holds an
    ``flock`` on its temporary while writing it). ``path`` is used exactly as
    given (no ``.npz`` is appended).

    A file saved in a session loads in that session: with 64-bit JAX off (the
    default), a 64-bit NumPy leaf (``float64``, ``int64``, ...), which
    :func:`load` could not restore as a ``jax.Array``, is refused here.

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
        ValueError: two leaves have the same key path string, or a leaf is
            64-bit while 64-bit JAX is off (the message names its key path).
        FileNotFoundError: the folder of ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        OSError: writing failed (disk full, a file size limit); the message
            names ``path``, and the previous file at ``path`` is untouched.

    >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn
    >>> tree = {"w": jnp.ones((2, 3)), "step": jnp.asarray(7, jnp.int32),
    ...         "key": jax.random.key(0)}
    >>> path = jaxnn.save(os.path.join(tempfile.mkdtemp(), "state.npz"), tree)
    >>> back = jaxnn.load(path, like=tree)
    >>> back["w"].shape, int(back["step"]), bool((jax.random.key_data(back["key"]) ==
    ...                                           jax.random.key_data(tree["key"])).all())
    ((2, 3), 7, True)
    """
    target = file_path("save path", path, must_exist=False)
    entries, meta = _encode(tree)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot save checkpoint {target!r}: its folder {folder!r} does not exist "
            "(create it first, e.g. os.makedirs(folder, exist_ok=True))"
        )
    _reclaim_temporaries(folder, os.path.basename(target))
    _write_atomically(target, folder, {_META_KEY: np.asarray(json.dumps(meta)), **entries})
    return path


def load(path: str | os.PathLike, like: Any) -> Any:
    """Read a file written by :func:`save` into a tree with the structure of ``like``.

    Every leaf must be in the file under ``like``'s key path, with ``like``'s
    shape and dtype; nothing is cast. A leaf comes back as a ``jax.Array``,
    placed with ``like``'s sharding when ``like``'s leaf has one (so a
    replicated state loads replicated).

    Before any array is decompressed the file is checked: it must be a regular
    file (a FIFO or a device is refused without blocking); its metadata must
    follow the format's schema; the archive must hold exactly the entries the
    metadata lists; and each entry's declared size and ``.npy`` header (shape
    and dtype) must agree with the metadata and with ``like``. So a file can
    make ``load`` allocate no more than ``like`` describes.

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
        ValueError: the file is not a regular file, not a jaxnn checkpoint, is
            truncated or corrupted, or does not fit ``like`` (a missing or extra
            leaf, a shape or dtype mismatch); the message names the file and
            the first key path or archive entry at fault.
        TypeError: a leaf of ``like`` is not an array (the message names its key
            path), or ``path`` is not a str or ``os.PathLike``.

    >>> import os, tempfile, jax, jax.numpy as jnp, jaxnn
    >>> path = jaxnn.save(os.path.join(tempfile.mkdtemp(), "w.npz"), [jnp.arange(3.0)])
    >>> like = [jax.ShapeDtypeStruct((3,), jnp.arange(3.0).dtype)]
    >>> jaxnn.load(path, like=like)[0].tolist()
    [0.0, 1.0, 2.0]
    >>> jaxnn.load(path, like=[jnp.zeros(4)])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: checkpoint '...w.npz' does not fit `like` at [0]: saved shape (3,), expected shape (4,)
    """
    target = file_path("load path", path, must_exist=False)
    specs, treedef = _template(like)
    with _open_regular(target) as f:
        arrays = _read(f, target, specs, treedef)
    values = [jax.device_put(arrays[name], sharding) if sharding is not None else jax.device_put(arrays[name])
              for name, _, _, sharding in specs]
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
        "jaxnn_version": __version__,
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
    if jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype:
        raise ValueError(
            f"cannot save the leaf at {name or 'the root'}: its dtype {array.dtype} needs 64-bit JAX, which is "
            f"off, so load could not restore it; cast it first (e.g. .astype(np.{_narrower(array.dtype)})) or "
            "enable 64-bit JAX with jax.config.update('jax_enable_x64', True)"
        )
    info = {"dtype": str(array.dtype), "shape": list(array.shape)}
    if _is_builtin_numeric(array.dtype):
        return array, {**info, "encoding": _RAW}
    # ml_dtypes (bfloat16, float8, int4): np.load cannot rebuild them without pickle; store the bits.
    return array.view(np.dtype(f"u{array.dtype.itemsize}")), {**info, "encoding": _BITS}


def _narrower(dtype: np.dtype) -> str:
    return np.dtype(jax.dtypes.canonicalize_dtype(dtype)).name


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
    """Write the npz to a fresh, locked file in ``folder``, fsync it, then ``os.replace`` it onto ``target``.

    The temporary's name is bound before the file is created and the
    creation runs with SIGINT deferred, so an interrupt at any point finds
    both the name and the descriptor in hand and the cleanup removes the file.
    """
    base = os.path.basename(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp = fd = None
    try:
        while fd is None:
            candidate = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
            with contextlib.suppress(FileExistsError), _sigint_deferred():  # a name taken: it is not ours
                fd = os.open(candidate, flags, 0o666)
                tmp = candidate
        _lock(fd)
        with _Output(fd) as out:
            _write_npz(out, entries)
            out.flush()
            os.fsync(fd)
        with _sigint_deferred():
            os.replace(tmp, target)
            tmp = None
            os.close(fd)
            fd = None
    except BaseException as e:
        with _sigint_deferred():  # a second Ctrl-C waits until the temporary is gone
            if fd is not None:
                os.close(fd)
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # ENOSPC, EFBIG, EDQUOT, EIO: name the file
            message = f"cannot save checkpoint {target!r}: {e.strerror or e}; the previous file is untouched"
            raise (OSError(e.errno, message) if e.errno is not None else OSError(message)) from e
        raise
    _fsync_folder(folder)


def _write_npz(out: _Output, entries: dict[str, np.ndarray]) -> None:
    """The archive ``np.savez`` writes (stored, zip64 entries), written here so that an exception is raised
    as itself: ``np.savez`` closes the archive in a ``finally``, which can replace a ``KeyboardInterrupt``
    with its own ``ValueError``. On an exception the archive is abandoned, not closed."""
    archive = zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
    try:
        for name, array in entries.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
        archive.close()
    except BaseException:
        archive.fp = None  # abandoned: ZipFile.__del__ must not try to finish it
        raise


class _Output:
    """The temporary file as ``zipfile`` writes it. After :meth:`close` writes go nowhere (only the
    position moves, so zipfile's arithmetic stays sound): an archive or entry abandoned by an exception
    cannot write to a closed file when it is garbage-collected."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "wb", closefd=False)
        self._position = 0

    def write(self, data) -> int:
        if self._file is not None:
            return self._file.write(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._file.tell() if self._file is not None else self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self._file is not None:
            return self._file.seek(offset, whence)
        self._position = offset if whence == os.SEEK_SET else self._position + offset
        return self._position

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._position = file.tell()
            with contextlib.suppress(OSError):  # a failed flush: the write already raised
                file.close()

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back a SIGINT (Ctrl-C, ``os.kill``, ``_thread.interrupt_main``) until the block is done.

    Python raises ``KeyboardInterrupt`` between any two bytecodes, so between
    ``os.open`` returning and its result being stored; deferring it makes the
    create-and-register step indivisible. Only the main thread receives
    ``KeyboardInterrupt`` and only it may change handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # SIG_IGN, SIG_DFL or a handler installed outside Python: nothing to defer
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(*caught[0])


def _lock(fd: int) -> None:
    """Hold an exclusive ``flock`` on the temporary while writing, so no other save reclaims it."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: it is simply never reclaimed
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _reclaim_temporaries(folder: str, base: str) -> None:
    """Remove the temporaries that crashed saves to ``folder/base`` left behind.

    Only files named exactly ``.{base}.{12 hex digits}.tmp``, at least
    ``_STALE_SECONDS`` old and not locked: a live save holds an ``flock`` on
    its temporary from a moment after creating it until the rename, and the
    age covers that moment. Where locks are not available nothing is removed.
    """
    if fcntl is None:
        return
    pattern = re.compile(re.escape(f".{base}.") + r"[0-9a-f]{12}\.tmp")
    try:
        # listdir, not scandir: no open iterator for an interrupt to leave behind
        names = [name for name in os.listdir(folder) if pattern.fullmatch(name)]
    except OSError:
        return
    for name in names:
        candidate = os.path.join(folder, name)
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < _STALE_SECONDS:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a live save holds it
            if os.stat(candidate, follow_symlinks=False).st_ino == info.st_ino:
                os.unlink(candidate)
        except OSError:
            continue
        finally:
            os.close(fd)


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


# --- loading: the template --------------------------------------------------------------------------


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


def _stored_form(shape: tuple[int, ...], dtype: Any, encoding: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the ``.npy`` entry that holds a leaf of ``shape`` and ``dtype``."""
    if encoding == _KEY:
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
        return tuple(data.shape), np.dtype(data.dtype)
    if encoding == _BITS:
        return shape, np.dtype(f"u{np.dtype(dtype).itemsize}")
    return shape, np.dtype(dtype)


# --- loading: the file ------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_regular(target: str):
    """``target`` opened for reading, if it is a regular file; a FIFO, device or socket is refused at once.

    ``O_NONBLOCK`` makes opening a FIFO return instead of waiting for a
    writer; ``fstat`` on the open file then says what it is.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(target, flags)  # FileNotFoundError names the path
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket, or a FIFO on a system that refuses O_NONBLOCK opens
            raise ValueError(f"cannot load checkpoint {target!r}: it is not a regular file") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"cannot load checkpoint {target!r}: it is not a regular file ({_file_kind(mode)})")
        f = os.fdopen(fd, "rb", closefd=False)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield f
    finally:
        f.close()
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, kind in [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]:
        if test(mode):
            return kind
    return "not a file"


def _read(f, target: str, specs, treedef) -> dict[str, np.ndarray]:
    """Every leaf of the template read from the archive in ``f``, after checking the archive against its
    metadata and the template."""
    head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        if not head:
            raise ValueError(f"{target!r} is not a jaxnn checkpoint: the file is empty")
        if _ZIP_MAGIC.startswith(head):
            raise ValueError(f"checkpoint {target!r} is truncated or corrupted: only {len(head)} bytes")
        raise ValueError(f"{target!r} is not a jaxnn checkpoint: it is not a .npz (zip) archive")
    f.seek(0)
    size = os.fstat(f.fileno()).st_size
    try:
        with zipfile.ZipFile(f) as archive:
            return _read_archive(archive, size, target, specs, treedef)
    except _Foreign as e:
        raise ValueError(f"{target!r} is not a jaxnn checkpoint: {e}") from None
    except _Corrupt as e:
        raise ValueError(f"checkpoint {target!r} is truncated or corrupted: {e}") from None
    except _Misfit as e:
        raise ValueError(f"checkpoint {target!r} does not fit `like`{e}") from None
    except _Newer as e:
        raise ValueError(f"checkpoint {target!r} {e}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError) as e:  # a damaged central directory or entry, found by zipfile or zlib
        raise ValueError(f"checkpoint {target!r} is truncated or corrupted ({type(e).__name__}: {e})") from e


class _Foreign(Exception):
    """Not a jaxnn checkpoint."""


class _Corrupt(Exception):
    """A jaxnn checkpoint that is damaged or does not agree with itself."""


class _Misfit(Exception):
    """A sound checkpoint of another tree."""


class _Newer(Exception):
    """A checkpoint in a format newer than this jaxnn reads."""


def _read_archive(archive: zipfile.ZipFile, size: int, target: str, specs, treedef) -> dict[str, np.ndarray]:
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.filename in entries:
            raise _Corrupt(f"the archive holds the entry {info.filename!r} twice")
        entries[info.filename] = info
    meta_entry = _META_KEY + ".npy"
    if meta_entry not in entries:
        raise _Foreign("a .npz archive without jaxnn's metadata entry")
    for info in entries.values():
        _check_entry_bounds(info, size)
    meta = _read_meta(archive, entries[meta_entry], _meta_limit(specs, treedef))
    listed = {leaf["path"] + ".npy" for leaf in meta["leaves"]} | {meta_entry}
    for name in entries:
        if name not in listed:
            raise _Corrupt(f"the archive has an entry {name!r} that its metadata does not list")
    for name in listed:
        if name not in entries:
            raise _Corrupt(f"the entry {name!r} listed in its metadata is missing from the archive")
    saved = _check_fit(meta, specs, treedef)
    arrays = {}
    for name, shape, dtype, _ in specs:
        encoding = saved[name]["encoding"]
        stored_shape, stored_dtype = _stored_form(shape, dtype, encoding)
        array = _read_entry(archive, entries[name + ".npy"], stored_shape, stored_dtype)
        arrays[name] = _decode_leaf(array, saved[name], shape, dtype, name)
    return arrays


def _check_entry_bounds(info: zipfile.ZipInfo, size: int) -> None:
    """An entry must lie inside the file and be stored or deflated (whose output ``zipfile`` bounds)."""
    if info.flag_bits & 0x1:
        raise _Corrupt(f"the entry {info.filename!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Corrupt(f"the entry {info.filename!r} uses compression method {info.compress_type}; "
                       "checkpoints are stored or deflated")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _Corrupt(f"the entry {info.filename!r} is stored uncompressed but declares "
                       f"{info.compress_size} bytes in the file and {info.file_size} bytes of content")
    if info.header_offset + info.compress_size > size:
        raise _Corrupt(f"the entry {info.filename!r} declares {info.compress_size} bytes at offset "
                       f"{info.header_offset}, past the end of the {size}-byte file")


def _meta_limit(specs, treedef) -> int:
    """How many bytes the metadata of a file that fits this template can need, with room to spare.

    The structure's text and every leaf's path are in it: a character takes at most 12 in JSON (an
    escaped surrogate pair, ``\\ud83d\\ude00``) and 4 bytes each in the stored string.
    """
    text = len(str(treedef)) + sum(len(name) for name, *_ in specs)
    return _META_BASE_BYTES + _META_LEAF_BYTES * len(specs) + 48 * (text + 1)


def _read_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> dict[str, Any]:
    """The metadata entry, read within ``limit`` bytes, parsed and checked against the schema."""
    name = info.filename
    if info.file_size > limit + _NPY_HEADER_BYTES:
        raise _Corrupt(f"the metadata entry {name!r} declares {info.file_size} bytes, more than the "
                       f"{limit} bytes a checkpoint of this template needs")
    with archive.open(info) as stream:
        shape, dtype, fortran = _read_npy_header(stream, name)
        if shape != () or dtype.kind != "U" or dtype.byteorder == ">":
            raise _Foreign(f"its metadata entry {name!r} is not a string (it holds {dtype} {shape})")
        _check_declared_size(info, stream.tell(), dtype.itemsize)
        text = str(np.frombuffer(_read_exactly(stream, dtype.itemsize, name), dtype)[0])
        _check_end(stream, name)
    depth = _json_depth(text)
    if depth > _META_DEPTH:  # json.loads would recurse once per level
        raise _Corrupt(f"its metadata nests {depth} levels deep (at most {_META_DEPTH})")
    try:
        meta = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as e:  # json.JSONDecodeError, a duplicate key, an int too long to convert
        raise _Foreign(f"its metadata entry is not jaxnn's ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _Foreign("its metadata entry is not jaxnn's")
    return _check_schema(meta)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return result


def _json_depth(text: str) -> int:
    """How deeply lists and objects nest in the JSON ``text``, counted in linear time without parsing it.

    A quote opens or closes a string unless an odd number of backslashes
    precede it; brackets inside strings do not count. (UTF-8 never puts these
    ASCII bytes inside a multi-byte character.)
    """
    codes = np.frombuffer(text.encode("utf-8", "replace"), np.uint8)
    index = np.arange(codes.size)
    backslash = codes == ord("\\")
    last_other = np.maximum.accumulate(np.where(backslash, -1, index))  # the last non-backslash at or before i
    run = np.concatenate(([0], index[:-1] - last_other[:-1]))  # backslashes just before i
    quote = (codes == ord('"')) & (run % 2 == 0)
    outside = np.cumsum(quote) % 2 == 0
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(np.where(outside, steps, 0)).max(initial=0))


_TOP_FIELDS = {"format": str, "version": int, "jaxnn_version": str, "num_leaves": int, "structure": str,
               "leaves": list}
_LEAF_FIELDS = {"path": str, "dtype": str, "shape": list, "encoding": str}


def _check_schema(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` if every field of format version 1 is there with its type, and nothing else."""
    version = meta.get("version")
    if _is_int(version) and version > FORMAT_VERSION:
        raise _Newer(f"has format version {version}; this jaxnn ({__version__}) reads version "
                     f"{FORMAT_VERSION} and older")
    if not _is_int(version) or version < 1:
        raise _Corrupt(f"its metadata has a bad format version {_short_repr(version)}")
    _check_fields(meta, _TOP_FIELDS, "its metadata")
    leaves = meta["leaves"]
    if meta["num_leaves"] != len(leaves):
        raise _Corrupt(f"its metadata says num_leaves {meta['num_leaves']} but lists {len(leaves)} leaves")
    paths = set()
    for i, leaf in enumerate(leaves):
        where = f"its metadata's leaf {i}"
        if not isinstance(leaf, dict):
            raise _Corrupt(f"{where} is {type(leaf).__name__}, not an object")
        encoding = leaf.get("encoding")
        _check_fields(leaf, {**_LEAF_FIELDS, "impl": str} if encoding == _KEY else _LEAF_FIELDS, where)
        if encoding not in (_RAW, _BITS, _KEY):
            raise _Corrupt(f"{where} has an unknown encoding {_short_repr(encoding)}")
        shape = leaf["shape"]
        if len(shape) > _MAX_DIMS or not all(_is_int(n) and n >= 0 for n in shape):
            raise _Corrupt(f"{where} has a bad shape {_short_repr(shape)}")
        if leaf["path"] in paths:
            raise _Corrupt(f"its metadata lists the leaf {leaf['path']!r} twice")
        paths.add(leaf["path"])
    return meta


def _check_fields(record: dict[str, Any], fields: dict[str, type], where: str) -> None:
    for key, kind in fields.items():
        if key not in record:
            raise _Corrupt(f"{where} has no field {key!r}")
        value = record[key]
        if not isinstance(value, kind) or (kind is int and not _is_int(value)):
            raise _Corrupt(f"{where}'s field {key!r} is {type(value).__name__} {_short_repr(value)}, "
                           f"expected {kind.__name__}")
    extra = sorted(set(record) - set(fields))
    if extra:
        raise _Corrupt(f"{where} has unknown fields {_short_repr(extra)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fit(meta, specs, treedef) -> dict[str, dict[str, Any]]:
    """The metadata of each leaf by key path, once every leaf fits the template: raises :class:`_Misfit`."""
    saved = {info["path"]: info for info in meta["leaves"]}
    expected_names = {name for name, *_ in specs}
    structures = (
        f"\n  saved structure:    {_clip(meta['structure'])}"
        f"\n  expected structure: {_clip(str(treedef))}"
    )
    for name, *_ in specs:
        if name not in saved:
            raise _Misfit(f": the leaf {name or '(root)'} is missing from the file{structures}")
    for info in meta["leaves"]:
        if info["path"] not in expected_names:
            raise _Misfit(f": the file has an extra leaf {info['path'] or '(root)'}{structures}")
    for name, shape, dtype, _ in specs:
        info = saved[name]
        where = f" at {name or '(root)'}"
        if tuple(info["shape"]) != shape:
            raise _Misfit(f"{where}: saved shape {tuple(info['shape'])}, expected shape {shape}")
        if info["dtype"] != str(dtype):
            raise _Misfit(f"{where}: saved dtype {info['dtype'][:60]}, expected dtype {dtype}")
        expected = _KEY if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) else (
            _RAW if _is_builtin_numeric(np.dtype(dtype)) else _BITS)
        if info["encoding"] != expected:
            raise _Corrupt(f"the leaf {name or '(root)'} of dtype {dtype} has encoding {info['encoding']!r}, "
                           f"expected {expected!r}")
        if expected != _KEY and jax.dtypes.canonicalize_dtype(dtype) != dtype:
            raise _Misfit(
                f"{where}: it is {dtype}, which needs 64-bit JAX, which is off; "
                "set jax.config.update('jax_enable_x64', True) before loading"
            )
    return saved


def _read_npy_header(stream, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and order from the ``.npy`` header at the start of ``stream``: a few hundred bytes read."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=_NPY_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=_NPY_HEADER_BYTES)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as e:
        raise _Corrupt(f"the entry {name!r} has no valid .npy header ({e})") from None
    if dtype.hasobject or len(shape) > _MAX_DIMS:
        raise _Corrupt(f"the entry {name!r} holds {dtype} of shape {shape}, not an array of numbers")
    return tuple(shape), dtype, bool(fortran)


def _check_declared_size(info: zipfile.ZipInfo, header_bytes: int, data_bytes: int) -> None:
    if info.file_size != header_bytes + data_bytes:
        raise _Corrupt(f"the entry {info.filename!r} declares {info.file_size} bytes; its .npy header "
                       f"({header_bytes} bytes) and shape need {header_bytes + data_bytes}")


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtype: np.dtype) -> np.ndarray:
    """The array in entry ``info``, which must have ``shape`` and ``dtype``; checked before it is read."""
    name = info.filename
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not nbytes <= info.file_size <= nbytes + _NPY_HEADER_BYTES + 16:
        raise _Corrupt(f"the entry {name!r} declares {info.file_size} bytes, but {dtype} of shape {shape} "
                       f"takes {nbytes} bytes plus a header")
    with archive.open(info) as stream:
        stored_shape, stored_dtype, fortran = _read_npy_header(stream, name)
        if stored_shape != shape or stored_dtype != dtype:
            raise _Corrupt(f"the entry {name!r} holds {stored_dtype} of shape {stored_shape}; its metadata "
                           f"says {dtype} of shape {shape}")
        _check_declared_size(info, stream.tell(), nbytes)
        data = _read_exactly(stream, nbytes, name)
        _check_end(stream, name)
    flat = np.frombuffer(data, dtype)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _read_exactly(stream, nbytes: int, name: str) -> bytearray:
    """``nbytes`` from ``stream`` into one buffer, in chunks (no second copy of a large entry)."""
    buffer = bytearray(nbytes)
    view = memoryview(buffer)
    done = 0
    while done < nbytes:
        chunk = stream.read(min(_READ_CHUNK, nbytes - done))
        if not chunk:
            raise _Corrupt(f"the entry {name!r} ends after {done} of its {nbytes} data bytes")
        view[done:done + len(chunk)] = chunk
        done += len(chunk)
    return buffer


def _check_end(stream, name: str) -> None:
    """The entry ends here (and ``zipfile`` has checked its CRC)."""
    if stream.read(1):
        raise _Corrupt(f"the entry {name!r} holds more data than its header describes")


def _decode_leaf(array: np.ndarray, info: dict[str, Any], shape, dtype, name: str) -> Any:
    """The leaf from its stored array, whose shape and dtype are already checked."""
    encoding = info["encoding"]
    if encoding == _KEY:
        try:
            key = jax.random.wrap_key_data(jnp.asarray(array), impl=info["impl"])
        except Exception as e:  # an unknown impl name, key data of the wrong width
            raise _Corrupt(f"bad key data at {name} ({type(e).__name__}: {e})") from None
        if key.shape != shape or key.dtype != dtype:
            raise _Corrupt(f"bad key data at {name}: {key.dtype} of shape {key.shape}")
        return key
    if encoding == _BITS:
        return array.view(dtype)
    return array


def _clip(text: str) -> str:
    return text if len(text) <= _STRUCTURE_CHARS else text[:_STRUCTURE_CHARS] + " ..."


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
