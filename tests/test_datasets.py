"""The IDX reader on tiny files written here, byte by byte, by an independent encoder."""

import gzip
import struct

import numpy as np
import pytest

from jaxnn.datasets import load_mnist, parse_idx, read_idx

TYPE_CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def idx_bytes(array, code):
    """IDX encoding of ``array`` written from the format's definition with struct."""
    header = struct.pack(">BBBB", 0, 0, TYPE_CODES[code], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(code).tobytes()


def write(path, data, gzipped):
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("code", list(TYPE_CODES))
def test_round_trip(tmp_path, code, gzipped):
    offset = 0 if code == "u1" else -7  # negative entries for the signed and float types
    array = (np.arange(24).reshape(2, 3, 4) + offset).astype(code)
    got = read_idx(write(tmp_path / "a.idx", idx_bytes(array, code), gzipped))
    assert got.shape == (2, 3, 4)
    assert got.dtype == np.dtype(code).newbyteorder("=")
    np.testing.assert_array_equal(got, array)


def test_big_endian_entries_are_decoded():
    # 0x0102 big-endian is 258, whatever the machine's byte order.
    assert parse_idx(bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 0x01, 0x02])).tolist() == [258]


def test_zero_dimensional_and_empty_arrays():
    assert parse_idx(bytes([0, 0, 0x08, 0, 42])).tolist() == 42
    assert parse_idx(idx_bytes(np.zeros((0, 5), "u1"), "u1")).shape == (0, 5)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "not an IDX file"),
        (b"\x89PNG\r\n\x1a\n", "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "not an IDX file"),  # unknown type code
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "truncated.*header"),
    ],
)
def test_bad_headers(tmp_path, data, match):
    path = write(tmp_path / "bad-idx3-ubyte", data, gzipped=False)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncated_and_overlong_data(tmp_path, gzipped):
    data = idx_bytes(np.ones((4, 3, 3), "u1"), "u1")
    path = write(tmp_path / "short.gz", data[:-1], gzipped)
    with pytest.raises(ValueError, match=r"short.gz is truncated: .*shape \(4, 3, 3\).*52 bytes.*51"):
        read_idx(path)
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(write(tmp_path / "long", data + b"\0", gzipped))


def test_cut_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.ones((50, 5), "u1"), "u1"))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="cut.gz is not a complete gzip file"):
        read_idx(path)


@pytest.mark.parametrize("gzipped", [False, True])
def test_load_mnist_standard_names(tmp_path, gzipped):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype="u1")
    labels = rng.integers(0, 10, 5, dtype="u1")
    gz = ".gz" if gzipped else ""
    write(tmp_path / f"t10k-images-idx3-ubyte{gz}", idx_bytes(images, "u1"), gzipped)
    write(tmp_path / f"t10k-labels-idx1-ubyte{gz}", idx_bytes(labels, "u1"), gzipped)
    got_images, got_labels = load_mnist(tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(tmp_path, split="train")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, split="test")


def test_load_mnist_mismatched_files(tmp_path):
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 2, 2), "u1"), "u1"), False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, "u1"), "u1"), False)
    with pytest.raises(ValueError, match=r"\(5, 2, 2\) and \(4,\)"):
        load_mnist(tmp_path)
