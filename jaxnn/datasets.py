"""Reading the IDX files that MNIST is distributed in, gzipped or not.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 dimensions, then the entries in C order,
big-endian. The type byte is one of ``0x08`` (uint8), ``0x09`` (int8),
``0x0B`` (int16), ``0x0C`` (int32), ``0x0D`` (float32), ``0x0E`` (float64).
Data loading is NumPy: arrays are made once and handed to JAX by the caller.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from jaxnn._checks import file_path

__all__ = ["load_mnist", "parse_idx", "read_idx"]

_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array held in the bytes of an (uncompressed) IDX file.

    Args:
        data: the file's bytes.
        name: what to call the data in error messages (e.g. the file name).

    Returns:
        A NumPy array of the shape and type the header gives, in native byte order.

    Raises:
        ValueError: if the magic number is not IDX's, or the data is shorter
            or longer than the header says.

    >>> header = [0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]  # uint8, 2 dimensions: 2 and 3
    >>> parse_idx(bytes(header + [1, 2, 3, 4, 5, 6])).tolist()
    [[1, 2, 3], [4, 5, 6]]
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_idx data must be bytes (a file's contents), got {type(data).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"parse_idx name must be a str, got {type(name).__name__}")
    data = bytes(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(
            f"{name} is not an IDX file: expected the magic number 0x00 0x00 <type> <ndim> with "
            f"type one of {', '.join(f'0x{k:02X}' for k in _TYPES)}, "
            f"got {data[:4].hex(' ') or 'no bytes'}"
        )
    dtype, ndim = _TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name} is truncated: its header promises {ndim} dimensions ({header} header bytes), "
            f"but the file has only {len(data)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "is truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{name} {state}: an IDX array of shape {shape} and type {dtype.name} needs "
            f"{expected} bytes, the file has {len(data)}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not (told apart by the gzip magic bytes, not the name).

    Raises:
        TypeError: if ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError, IsADirectoryError: if ``path`` is not an existing file.
        ValueError: for a file that is not IDX, is truncated, or is a broken gzip stream.
    """
    path = Path(file_path("read_idx path", path))
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError) as err:
            raise ValueError(f"{path} is not a complete gzip file: {err}") from err
    return parse_idx(data, name=str(path))


def _find(directory: Path, stem: str) -> Path:
    names = [f"{stem}{sep}idx{n}-ubyte{gz}" for sep in ("-", ".") for n in (1, 3) for gz in ("", ".gz")]
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"no MNIST file {stem}-idx?-ubyte[.gz] in {directory} (looked for {', '.join(names)})"
    )


def load_mnist(directory: str | os.PathLike, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """MNIST images and labels of one split from the standard file names in ``directory``.

    Looks for ``{split}-images-idx3-ubyte`` and ``{split}-labels-idx1-ubyte``,
    each optionally gzipped (``.gz``).

    Args:
        directory: folder holding the files.
        split: ``"train"`` or ``"t10k"`` (the test set).

    Returns:
        ``(images, labels)``: uint8 arrays of shapes (n, rows, cols) and (n,).

    Raises:
        FileNotFoundError: if a file is missing, naming the names tried.
        ValueError: for a bad split name, a bad file, or images and labels that do not match.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or os.PathLike, got {type(directory).__name__}")
    if split not in ("train", "t10k"):
        raise ValueError(f"split must be 'train' or 't10k', got {split!r}")
    directory = Path(directory)
    images_path, labels_path = _find(directory, f"{split}-images"), _find(directory, f"{split}-labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"expected images of shape (n, rows, cols) in {images_path} and labels of shape (n,) in "
            f"{labels_path}, got {images.shape} and {labels.shape}"
        )
    return images, labels
