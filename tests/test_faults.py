"""save/load under faults: hostile or damaged files, interrupted and killed saves, full disks, 64-bit leaves.

Each test's docstring names the fault it guards against. The loops marked ``slow`` repeat the fast
cases many times (``pytest -m slow``); every subprocess runs under a timeout.
"""

import contextlib
import errno
import gc
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
import jaxnn.checkpoint as checkpoint

ROOT = Path(__file__).resolve().parents[1]
META = "__jaxnn_checkpoint__"
TREE = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}

if sys.platform != "linux":
    pytest.skip("these faults are provoked with Linux facilities (/proc, FIFOs, rlimits)", allow_module_level=True)


def npy(array=None, *, header=None, data=b""):
    """The bytes of an .npy file: of ``array``, or ``header`` (a dict) followed by ``data``."""
    out = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(data)
    return out.getvalue()


def meta_of(tree=TREE):
    """The metadata save writes for ``tree``."""
    leaves = [{"path": jax.tree_util.keystr(p), "dtype": str(np.asarray(v).dtype), "shape": list(np.shape(v)),
               "encoding": "raw"} for p, v in jax.tree_util.tree_leaves_with_path(tree)]
    return {"format": "jaxnn-checkpoint", "version": 1, "jaxnn_version": jaxnn.__version__,
            "num_leaves": len(leaves), "structure": str(jax.tree.structure(tree)), "leaves": leaves}


def write_archive(path, meta, entries, compression=zipfile.ZIP_STORED):
    """A .npz at ``path`` with the metadata ``meta`` (a dict, or text as it is) and ``entries`` (name -> bytes)."""
    text = meta if isinstance(meta, str) else json.dumps(meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name; some tests want one
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            zf.writestr(META + ".npy", npy(np.asarray(text)))
            for name, data in entries:
                zf.writestr(name, data)
    return path


def good_entries(tree=TREE):
    return [(jax.tree_util.keystr(p) + ".npy", npy(v)) for p, v in jax.tree_util.tree_leaves_with_path(tree)]


def set_declared_size(data: bytes, name: str, size: int) -> bytes:
    """``data`` (a zip) with the uncompressed size that the central directory declares for ``name`` set to ``size``."""
    data = bytearray(data)
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        length = int.from_bytes(data[start + 28:start + 30], "little")
        if data[start + 46:start + 46 + length] == name.encode():
            data[start + 24:start + 28] = size.to_bytes(4, "little")
            return bytes(data)
        start += 4
    raise AssertionError(f"no entry {name}")


def load_error(path, like=TREE):
    """The ValueError that loading ``path`` raises; it must name the file."""
    with pytest.raises(ValueError) as info:
        jaxnn.load(path, like)
    assert os.fspath(path) in str(info.value)
    return str(info.value)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def subprocess_env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


# --- hostile and damaged files ---------------------------------------------------------------------


def test_a_sound_archive_built_here_loads(tmp_path):
    """The archives below differ from this one in one fault each, so each error comes from that fault."""
    path = write_archive(tmp_path / "ok.npz", meta_of(), good_entries())
    loaded = jaxnn.load(path, TREE)
    assert all(np.array_equal(loaded[k], TREE[k]) for k in TREE)


def test_an_npy_header_declaring_80_gb_is_refused_before_allocating(tmp_path):
    """Guards against the bare MemoryError (no file name) from an entry whose header declares 80 GB."""
    huge = npy(header={"descr": "<f8", "fortran_order": False, "shape": (10**10,)}, data=b"\0" * 8)
    entries = [("['b'].npy", npy(TREE["b"])), ("['w'].npy", huge)]
    message = load_error(write_archive(tmp_path / "h.npz", meta_of(), entries))
    assert "['w'].npy" in message and "(10000000000,)" in message
    meta = meta_of()
    meta["leaves"][1].update(dtype="float64", shape=[10**10])  # the metadata agrees with the header
    message = load_error(write_archive(tmp_path / "h2.npz", meta, entries))
    assert "does not fit `like` at ['w']: saved shape (10000000000,), expected shape (2, 3)" in message


def test_a_zip_directory_declaring_4_gb_is_refused(tmp_path):
    """Guards against trusting the size an archive declares for an entry (a zip header)."""
    path = write_archive(tmp_path / "z.npz", meta_of(), good_entries(), zipfile.ZIP_DEFLATED)
    path.write_bytes(set_declared_size(path.read_bytes(), "['w'].npy", 0xFFFFFFF0))
    assert "the entry \"['w'].npy\" declares 4294967280 bytes" in load_error(path)


def zip_bomb(declared_shape, megabytes=8):
    """An .npy of ``megabytes`` MB of zeros, deflated to a few KB; its header says ``declared_shape``."""
    return npy(header={"descr": "<f4", "fortran_order": False, "shape": declared_shape},
               data=bytes(megabytes << 20))


@pytest.mark.parametrize("variant", ["honest header", "header fits the template", "declared size fits"])
def test_a_zip_bomb_is_never_decompressed(tmp_path, variant):
    """Guards against decompressing a 600 MB zip bomb before its shape is checked against the template."""
    bomb = zip_bomb((2 << 20,) if variant == "honest header" else (2, 3))
    meta = meta_of()
    if variant == "honest header":
        meta["leaves"][1]["shape"] = [2 << 20]
    path = write_archive(tmp_path / "bomb.npz", meta, [("['b'].npy", npy(TREE["b"])), ("['w'].npy", bomb)],
                         zipfile.ZIP_DEFLATED)
    if variant == "declared size fits":  # the directory lies too: the size of a (2, 3) float32 .npy
        path.write_bytes(set_declared_size(path.read_bytes(), "['w'].npy", len(npy(TREE["w"]))))
    assert path.stat().st_size < 64 << 10
    tracemalloc.start()
    try:
        message = load_error(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"load allocated {peak} bytes for a 8 MB bomb"
    assert "['w']" in message


def test_an_entry_the_metadata_does_not_list_is_refused(tmp_path):
    """Guards against an archive entry not listed in the metadata loading silently."""
    path = write_archive(tmp_path / "x.npz", meta_of(), good_entries() + [("payload.npy", npy(np.ones(3)))])
    assert "has an entry 'payload.npy' that its metadata does not list" in load_error(path)


def test_an_entry_the_metadata_lists_must_be_there(tmp_path):
    """Guards against a missing entry surfacing as a KeyError."""
    path = write_archive(tmp_path / "m.npz", meta_of(), good_entries()[:1])
    assert "the entry \"['w'].npy\" listed in its metadata is missing" in load_error(path)


def test_an_entry_twice_is_refused(tmp_path):
    """Guards against a duplicated entry, of which zipfile would silently read the last."""
    path = write_archive(tmp_path / "d.npz", meta_of(), good_entries() + good_entries()[1:])
    assert "holds the entry \"['w'].npy\" twice" in load_error(path)


def with_leaf(**changes):
    meta = meta_of()
    meta["leaves"][0].update(changes)
    return meta


def without(record, key):
    return {k: v for k, v in record.items() if k != key}


MALFORMED = {
    "not JSON": ("{format: jaxnn", "not a jaxnn checkpoint: its metadata entry is not jaxnn's"),
    "a JSON list": ("[]", "not a jaxnn checkpoint"),
    "lists 100000 deep": ("[" * 100_000 + "]" * 100_000, "nests 100000 levels deep"),
    "objects 20000 deep": ('{"a":' * 20_000 + "1" + "}" * 20_000, "nests 20000 levels deep"),
    "an unclosed deep list": ("[" * 200_000, "nests 200000 levels deep"),
    "lists 8 deep (the limit)": ("[" * 8 + "]" * 8, "not a jaxnn checkpoint: its metadata entry is not jaxnn's"),
    "lists 9 deep": ("[" * 9 + "]" * 9, "nests 9 levels deep (at most 8)"),
    "another format": ({**meta_of(), "format": "other"}, "not a jaxnn checkpoint"),
    "a duplicate key": ('{"format": "jaxnn-checkpoint", "format": "jaxnn-checkpoint"}', "a key appears twice"),
    "a 5000-digit int": ('{"format": "jaxnn-checkpoint", "version": ' + "1" * 5000 + "}", "not a jaxnn checkpoint"),
    "version as text": ({**meta_of(), "version": "1"}, "bad format version '1'"),
    "version true": ({**meta_of(), "version": True}, "bad format version True"),
    "version 0": ({**meta_of(), "version": 0}, "bad format version 0"),
    "version 1.0": ({**meta_of(), "version": 1.0}, "bad format version 1.0"),
    "a newer version": ({**meta_of(), "version": 2}, "has format version 2; this jaxnn"),
    "no structure": (without(meta_of(), "structure"), "its metadata has no field 'structure'"),
    "num_leaves as text": ({**meta_of(), "num_leaves": "2"}, "field 'num_leaves' is str '2', expected int"),
    "num_leaves wrong": ({**meta_of(), "num_leaves": 3}, "says num_leaves 3 but lists 2 leaves"),
    "leaves an object": ({**meta_of(), "leaves": {}, "num_leaves": 0}, "field 'leaves' is dict"),
    "a leaf a list": ({**meta_of(), "leaves": [[], meta_of()["leaves"][1]]}, "leaf 0 is list, not an object"),
    "an unknown field": ({**meta_of(), "pickle": "yes"}, "unknown fields ['pickle']"),
    "a leaf without path": ({**meta_of(), "leaves": [without(meta_of()["leaves"][0], "path"),
                                                      meta_of()["leaves"][1]]}, "leaf 0 has no field 'path'"),
    "path a number": (with_leaf(path=3), "field 'path' is int 3, expected str"),
    "dtype a number": (with_leaf(dtype=4), "field 'dtype' is int 4, expected str"),
    "an unknown dtype": (with_leaf(dtype="float33"), "saved dtype float33, expected dtype float32"),
    "shape as text": (with_leaf(shape="(3,)"), "field 'shape' is str '(3,)', expected list"),
    "a negative dim": (with_leaf(shape=[-3]), "bad shape [-3]"),
    "a bool dim": (with_leaf(shape=[True, 3]), "bad shape [True, 3]"),
    "a nested dim": (with_leaf(shape=[[3]]), "bad shape [[3]]"),
    "a float dim": (with_leaf(shape=[3.0]), "bad shape [3.0]"),
    "65 dims": (with_leaf(shape=[1] * 65), "bad shape"),
    "a huge dim": (with_leaf(shape=[2**70]), "saved shape (1180591620717411303424,), expected shape (3,)"),
    "an unknown encoding": (with_leaf(encoding="pickle"), "unknown encoding 'pickle'"),
    "an encoding of 60 characters": (with_leaf(encoding="e" * 58), "unknown encoding '" + "e" * 58 + "'"),
    "an encoding of 61 characters": (with_leaf(encoding="e" * 59), "unknown encoding '" + "e" * 56 + "..."),
    "the wrong encoding": (with_leaf(encoding="bits"), "of dtype float32 has encoding 'bits', expected 'raw'"),
    "a key without impl": (with_leaf(encoding="prng_key"), "leaf 0 has no field 'impl'"),
    "a leaf twice": ({**meta_of(), "leaves": [meta_of()["leaves"][0]] * 2}, "lists the leaf \"['b']\" twice"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_metadata_is_a_value_error_naming_the_file(tmp_path, case):
    """Guards against RecursionError, TypeError and KeyError from inside checkpoint.py on bad metadata."""
    meta, expected = MALFORMED[case]
    path = write_archive(tmp_path / "meta.npz", meta, good_entries())
    assert expected in load_error(path)


@pytest.mark.parametrize("entry, expected", [
    (npy(np.ones(3)), "metadata entry '__jaxnn_checkpoint__.npy' is not a string (it holds float64 (3,))"),
    (npy(np.asarray(["a", "b"])), "is not a string"),
    (npy(np.float64(1.0)), "is not a string (it holds float64 ())"),
    (npy(header={"descr": "<U9999999", "fortran_order": False, "shape": ()}), "declares 128 bytes; its .npy"),
    (b"\x93NUMPY garbage", "has no valid .npy header"),
])
def test_a_malformed_metadata_entry(tmp_path, entry, expected):
    """Guards against a metadata entry that is not one string, or declares more than it holds."""
    path = tmp_path / "e.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(META + ".npy", entry)
        for name, data in good_entries():
            zf.writestr(name, data)
    assert expected in load_error(path)


def test_a_huge_metadata_entry_is_refused_before_reading(tmp_path):
    """Guards against a metadata entry that would decompress to far more than any checkpoint of the template."""
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(META + ".npy", npy(np.asarray(" " * (4 << 20))))
    assert path.stat().st_size < 64 << 10
    assert "declares 16777344 bytes, more than the" in load_error(path)


def test_brackets_and_quotes_inside_key_names_are_not_nesting(tmp_path):
    """Guards against the depth limit refusing a sound file whose key names hold brackets and escapes."""
    tree = {'[[[[[[[[[[{{{{{{{{': np.ones(2, np.float32), 'a"\\"[[[[[[[[[': np.zeros(1, np.int32)}
    jaxnn.save(tmp_path / "k.npz", tree)
    loaded = jaxnn.load(tmp_path / "k.npz", tree)
    assert all(np.array_equal(loaded[k], tree[k]) for k in tree)


@pytest.mark.parametrize("stored", [np.float64, np.dtype(">f4"), np.int32])
def test_the_stored_dtype_must_agree_with_the_metadata(tmp_path, stored):
    """Guards against load trusting the metadata's dtype when the stored array disagrees."""
    entries = [("['b'].npy", npy(TREE["b"])), ("['w'].npy", npy(TREE["w"].astype(stored)))]
    message = load_error(write_archive(tmp_path / "t.npz", meta_of(), entries))
    assert f"the entry \"['w'].npy\" holds {np.dtype(stored)} of shape (2, 3); its metadata says float32" in message


def test_the_stored_shape_must_agree_with_the_metadata(tmp_path):
    """Guards against a stored array of another shape with the same number of bytes (a reshape)."""
    entries = [("['b'].npy", npy(TREE["b"])), ("['w'].npy", npy(TREE["w"].reshape(3, 2)))]
    assert "holds float32 of shape (3, 2); its metadata says float32 of shape (2, 3)" in load_error(
        write_archive(tmp_path / "s.npz", meta_of(), entries))


def test_fortran_ordered_leaves_round_trip(tmp_path):
    """Guards against the header-only reader mishandling a column-major array that np.save writes as such."""
    tree = {"w": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    jaxnn.save(tmp_path / "f.npz", tree)
    np.testing.assert_array_equal(jaxnn.load(tmp_path / "f.npz", tree)["w"], tree["w"])


def test_a_file_cut_anywhere_is_a_value_error(tmp_path):
    """Guards against a truncated file surfacing as EOFError, struct.error or a short array."""
    path = jaxnn.save(tmp_path / "full.npz", TREE)
    data = path.read_bytes()
    for length in range(1, len(data), 5):
        (tmp_path / "cut.npz").write_bytes(data[:length])
        load_error(tmp_path / "cut.npz")


def load_in_thread(path):
    """Load ``path`` in a thread; return what it raised, or None if it is still blocked after 20 s."""
    outcome = []

    def run():
        try:
            jaxnn.load(path, TREE)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    return outcome[0] if outcome else None


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """Guards against load blocking forever on a FIFO at the path (open waits for a writer)."""
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    error = load_in_thread(fifo)
    if error is None:  # unblock the reader so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load blocked on a FIFO")
    assert isinstance(error, ValueError) and "pipe.npz" in str(error) and "not a regular file (a FIFO)" in str(error)


def test_devices_and_sockets_are_refused(tmp_path):
    """Guards against reading a device (endless /dev/zero) or a socket as a checkpoint."""
    os.symlink("/dev/zero", tmp_path / "zero.npz")
    assert "not a regular file (a character device)" in load_error(tmp_path / "zero.npz")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(os.fspath(tmp_path / "sock.npz"))
        assert "not a regular file" in load_error(tmp_path / "sock.npz")


# --- 64-bit leaves with 64-bit JAX off -------------------------------------------------------------


@pytest.mark.parametrize("leaf", [np.ones(2), np.int64(3), np.ones(2, np.complex128), np.arange(2, dtype=np.uint64)])
def test_with_x64_off_save_refuses_what_load_could_not_restore(tmp_path, leaf):
    """Guards against save accepting int64/float64 NumPy leaves that load then refuses in the same session."""
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"leaf at \['n'\]\[1\]: its dtype \w+ needs 64-bit JAX, which is off"):
            jaxnn.save(tmp_path / "x.npz", {"n": [np.ones(1, np.float32), leaf]})
        assert os.listdir(tmp_path) == []
        tree = {"w": np.ones(2, np.float32), "n": 3, "x": 0.5, "k": jax.random.key(1)}
        jaxnn.save(tmp_path / "ok.npz", tree)  # what is saved in a session loads in it
        loaded = jaxnn.load(tmp_path / "ok.npz", tree)
        assert loaded["n"].dtype == jnp.int32 and loaded["x"].dtype == jnp.float32


# --- leaked file descriptors -----------------------------------------------------------------------


def test_no_file_descriptor_leaks_on_success_or_error(tmp_path, monkeypatch):
    """Guards against save or load leaving a file open, on success and on every error path."""
    jaxnn.save(tmp_path / "warm.npz", TREE)  # first calls open library files once
    jaxnn.load(tmp_path / "warm.npz", TREE)
    os.mkfifo(tmp_path / "fifo.npz")
    bad = write_archive(tmp_path / "bad.npz", meta_of(), good_entries() + [("x.npy", npy(np.ones(1)))])
    before = open_fds()
    for _ in range(3):
        jaxnn.save(tmp_path / "s.npz", TREE)
        jaxnn.load(tmp_path / "s.npz", TREE)
        for path in [bad, tmp_path / "fifo.npz", tmp_path / "s.npz"]:
            with pytest.raises(ValueError):
                jaxnn.load(path, {"other": np.ones(1)} if path.name == "s.npz" else TREE)
        for error in [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]:
            def fail(*args, error=error, **kwargs):
                raise error
            monkeypatch.setattr(np.lib.format, "write_array", fail)
            with pytest.raises(type(error)):
                jaxnn.save(tmp_path / "s.npz", TREE)
            monkeypatch.undo()
    gc.collect()
    assert open_fds() == before
    assert temporaries(tmp_path) == []


def _tracked_files(monkeypatch):
    """Every file object ``os.fdopen`` or ``open`` makes from now on, to check that each one gets closed."""
    made = []
    for module, name in [(os, "fdopen"), (io, "open"), (__import__("builtins"), "open")]:
        real = getattr(module, name)

        def tracking(*args, real=real, **kwargs):
            f = real(*args, **kwargs)
            made.append(f)
            return f

        monkeypatch.setattr(module, name, tracking)
    return made


def test_save_and_load_close_every_file_they_open_before_returning(tmp_path, monkeypatch):
    """Guards against save or load leaving a file object open for the garbage collector to close (a
    ResourceWarning at some later, unrelated point, or never): every file object they make is closed when
    they return or raise, and no descriptor stays open even before any collection."""
    jaxnn.save(tmp_path / "warm.npz", TREE)
    jaxnn.load(tmp_path / "warm.npz", TREE)
    gc.collect()
    real_write = np.lib.format.write_array
    failures = [None, OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for error in failures:
            gc.disable()  # a leak must show in the count, not be tidied away by a collection
            try:
                made = _tracked_files(monkeypatch)
                if error is not None:
                    def fail(*args, error=error, **kwargs):
                        raise error
                    monkeypatch.setattr(np.lib.format, "write_array", fail)
                before = open_fds()
                with pytest.raises(type(error)) if error is not None else contextlib.nullcontext():
                    jaxnn.save(tmp_path / "s.npz", TREE)
                assert open_fds() == before, f"save leaked a descriptor ({error!r})"
                assert made and all(f.closed for f in made), f"save left a file open ({error!r})"
                monkeypatch.setattr(np.lib.format, "write_array", real_write)
                made.clear()
                jaxnn.load(tmp_path / "s.npz", TREE)
                with pytest.raises(ValueError):
                    jaxnn.load(tmp_path / "s.npz", {"other": np.ones(1)})
                assert open_fds() == before, "load leaked a descriptor"
                assert made and all(f.closed for f in made), "load left a file open"
            finally:
                gc.enable()
                monkeypatch.undo()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# --- interrupted saves -----------------------------------------------------------------------------


def test_an_interrupt_between_opening_an_entry_and_writing_it_is_raised_as_itself(tmp_path, monkeypatch):
    """Guards against np.savez's cleanup replacing a KeyboardInterrupt with ValueError ("Can't close the ZIP
    file while there is an open writing handle"), and the abandoned archive writing when collected."""
    jaxnn.save(tmp_path / "s.npz", TREE)
    before = (tmp_path / "s.npz").read_bytes()
    real_open = zipfile.ZipFile.open

    def open_then_interrupt(self, name, mode="r", **kwargs):
        handle = real_open(self, name, mode, **kwargs)
        if mode == "w" and "['w']" in str(name):
            raise KeyboardInterrupt  # the handle is open and never closed
        return handle

    monkeypatch.setattr(zipfile.ZipFile, "open", open_then_interrupt)
    with pytest.raises(BaseException) as info:
        jaxnn.save(tmp_path / "s.npz", {k: v + 1 for k, v in TREE.items()})
    monkeypatch.undo()
    assert type(info.value) is KeyboardInterrupt
    del info
    gc.collect()  # the abandoned archive and entry are collected here, with warnings as errors
    assert (tmp_path / "s.npz").read_bytes() == before
    assert temporaries(tmp_path) == []


def interrupt_saves(tmp_path, rounds, seed=0):
    """Save two trees in turn while SIGINT arrives at random moments; return how the rounds ended."""
    trees = [{"w": np.full((256, 256), float(i), np.float32), "k": np.arange(64, dtype=np.int32) + i}
             for i in range(2)]
    path = tmp_path / "s.npz"
    jaxnn.save(path, trees[0])
    start = time.perf_counter()
    for _ in range(5):
        jaxnn.save(path, trees[1])
    duration = (time.perf_counter() - start) / 5
    rng = random.Random(seed)
    main = threading.main_thread().ident
    counts = {"during save": 0, "after save": 0, "other": 0}
    for i in range(rounds):
        sender = (lambda: signal.pthread_kill(main, signal.SIGINT)) if i % 2 else (lambda: os.kill(os.getpid(), signal.SIGINT))
        timer = threading.Timer(rng.uniform(0, 1.3 * duration), sender)
        returned = False
        try:
            timer.start()
            jaxnn.save(path, trees[i % 2])
            returned = True
            timer.join()
            time.sleep(0.05)  # the signal arrives here at the latest
            counts["other"] += 1  # never reached: the interrupt was lost
        except KeyboardInterrupt as e:
            assert type(e) is KeyboardInterrupt
            counts["after save" if returned else "during save"] += 1
        timer.join()
        assert temporaries(tmp_path) == [], f"round {i}"
        loaded = jaxnn.load(path, trees[0])
        assert any(all(np.asarray(loaded[k]).tobytes() == t[k].tobytes() for k in t) for t in trees)
    return counts


def test_interrupted_saves_leave_no_temporary_and_the_file_loads(tmp_path):
    """Guards against Ctrl-C just after the temporary is created leaving an empty .tmp behind, and against
    an interrupt surfacing as anything but KeyboardInterrupt; the file at the path always loads bitwise."""
    counts = interrupt_saves(tmp_path, rounds=30)
    assert counts["other"] == 0 and counts["during save"] > 0, counts


@pytest.mark.slow
def test_500_interrupted_saves(tmp_path):
    """The loop above, 500 times (the measured fault: 4 to 60 temporaries left per 500)."""
    counts = interrupt_saves(tmp_path, rounds=500, seed=1)
    print(counts)
    assert counts["other"] == 0 and counts["during save"] > 100, counts


# --- temporaries of killed saves -------------------------------------------------------------------


def make_temporary(folder, name, age_s=0.0, data=b"PK\x03\x04 half"):
    path = folder / name
    path.write_bytes(data)
    os.utime(path, (time.time() - age_s,) * 2)
    return path


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW and flock")
def test_save_reclaims_only_stale_unlocked_temporaries_of_its_own_target(tmp_path):
    """Guards against temporaries of killed saves piling up forever, and against removing a temporary that
    a live save is writing (it holds an flock, or is under a minute old) or a file that is not ours."""
    import fcntl

    stale = make_temporary(tmp_path, ".s.npz.0123456789ab.tmp", age_s=120)
    fresh = make_temporary(tmp_path, ".s.npz.aaaaaaaaaaaa.tmp", age_s=5)
    locked = make_temporary(tmp_path, ".s.npz.bbbbbbbbbbbb.tmp", age_s=120)
    others = [make_temporary(tmp_path, name, age_s=120) for name in [
        ".s.npz.0123456789AB.tmp", ".s.npz.0123456789abc.tmp", ".s.npz.0123456789ab.tmp.bak",
        ".t.npz.0123456789ab.tmp", "s.npz.0123456789ab.tmp", ".s.npz.0123456789ab.npz"]]
    os.symlink(others[0], tmp_path / ".s.npz.cccccccccccc.tmp")
    holder = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        jaxnn.save(tmp_path / "s.npz", TREE)
    finally:
        os.close(holder)
    left = set(os.listdir(tmp_path))
    assert stale.name not in left
    assert {fresh.name, locked.name, ".s.npz.cccccccccccc.tmp", "s.npz"} | {p.name for p in others} == left


# Forks, for each line read, a process that saves in a loop: the rounds share one interpreter start.
# Nothing here starts JAX's runtime, so forking is safe; each saver tells its pid once its first save is
# done, and the parent hears "killed" once it has been reaped.
KILLED_SCRIPT = textwrap.dedent(
    """
    import os, sys, numpy as np, jaxnn
    path = sys.argv[1]
    trees = [{"w": np.full((1024, 1024), float(i), np.float32)} for i in range(2)]
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            jaxnn.save(path, trees[0])
            os.write(1, b"ready %d\\n" % os.getpid())
            i = 1
            while True:
                jaxnn.save(path, trees[i % 2])
                i += 1
        os.waitpid(pid, 0)
        print("killed", flush=True)
    """
)


def kill_saves(tmp_path, rounds, seed=0):
    """Kill a process that saves in a loop, at random moments; return how many temporaries were left."""
    rng = random.Random(seed)
    path = tmp_path / "s.npz"
    trees = [{"w": np.full((1024, 1024), float(i), np.float32)} for i in range(2)]
    left = 0
    forks = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(path)], env=subprocess_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(rounds):
            forks.stdin.write("go\n")
            forks.stdin.flush()
            ready = forks.stdout.readline()
            assert ready.startswith("ready "), ready + forks.stderr.read()
            time.sleep(rng.uniform(0, 0.3))
            os.kill(int(ready.split()[1]), signal.SIGKILL)
            assert forks.stdout.readline() == "killed\n"
            loaded = jaxnn.load(path, trees[0])  # the previous file, or the new one, whole
            assert any(np.asarray(loaded["w"]).tobytes() == t["w"].tobytes() for t in trees)
            orphans = temporaries(tmp_path)
            left += len(orphans)
            for name in orphans:  # the killed save was over a minute ago
                os.utime(tmp_path / name, (time.time() - 120,) * 2)
            jaxnn.save(path, trees[0])
            assert temporaries(tmp_path) == []
    finally:
        forks.kill()
        forks.communicate(timeout=60)
    return left


@pytest.mark.slow
def test_a_killed_saves_temporary_is_reclaimed_by_the_next_save(tmp_path):
    """Guards against SIGKILL leaving full-size temporaries that no later save removes."""
    kill_saves(tmp_path, rounds=1)


@pytest.mark.slow
def test_20_killed_saves(tmp_path):
    """The kill above, 20 times; most kills land mid-write and leave a temporary, which the next save removes."""
    left = kill_saves(tmp_path, rounds=20, seed=1)
    print(f"temporaries left by 20 kills: {left}")
    assert left > 0


# --- full disks and file size limits ---------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs, where mounting is permitted (root on Linux); the test is skipped elsewhere."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("mount is not available")
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


def test_a_full_disk_names_the_file_and_keeps_the_previous_one(small_tmpfs):
    """Guards against "OSError: [Errno 28] No space left on device" with no path, and a damaged previous file."""
    path = jaxnn.save(small_tmpfs / "s.npz", TREE)
    before = path.read_bytes()
    with pytest.raises(OSError) as info:
        jaxnn.save(path, {"w": np.ones((1024, 1024), np.float32), "b": TREE["b"]})
    assert info.value.errno == errno.ENOSPC
    assert f"cannot save checkpoint {os.fspath(path)!r}: No space left on device" in str(info.value)
    assert path.read_bytes() == before and os.listdir(small_tmpfs) == ["s.npz"]


EFBIG_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys, numpy as np, jaxnn
    path = sys.argv[1]
    jaxnn.save(path, {"w": np.ones(10, np.float32)})
    before = open(path, "rb").read()
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
    try:
        jaxnn.save(path, {"w": np.ones(1 << 20, np.float32)})
    except OSError as e:
        print(e.errno, e, sep="|")
    assert open(path, "rb").read() == before
    print(sorted(os.listdir(os.path.dirname(path))))
    """
)


@pytest.mark.slow
def test_a_file_size_limit_names_the_file_and_keeps_the_previous_one(tmp_path):
    """Guards against RLIMIT_FSIZE (EFBIG; Python ignores SIGXFSZ) giving an error without the path."""
    path = tmp_path / "s.npz"
    result = subprocess.run([sys.executable, "-c", EFBIG_SCRIPT, str(path)], env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    code, message = result.stdout.splitlines()[0].split("|")
    assert int(code) == errno.EFBIG
    assert message == f"[Errno 27] cannot save checkpoint {str(path)!r}: File too large; the previous file is untouched"
    assert result.stdout.splitlines()[1] == "['s.npz']"


def test_ctrl_c_as_the_temporary_is_created_waits_until_it_is_registered(tmp_path, monkeypatch):
    """Guards against the deferral of SIGINT around creating the temporary being skipped: an interrupt
    landing just after ``os.open`` returns must not leave the new file unowned (nothing would remove it)."""
    path = tmp_path / "s.npz"
    jaxnn.save(path, TREE)
    before = path.read_bytes()
    real_open = os.open

    def open_then_interrupt(name, flags, *args):
        fd = real_open(name, flags, *args)
        if str(name).endswith(".tmp") and flags & os.O_CREAT:
            signal.raise_signal(signal.SIGINT)  # handled at the next bytecode: still inside this call
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        jaxnn.save(path, {k: v + 1 for k, v in TREE.items()})
    monkeypatch.undo()
    assert temporaries(tmp_path) == []
    assert path.read_bytes() == before


def test_an_entry_longer_than_its_array_is_named_with_both_sizes(tmp_path):
    """Guards against the size message's arithmetic: 4 bytes past an array of 3 float32 after a 128-byte header."""
    entries = dict(good_entries())
    entries["['b'].npy"] += b"\0" * 4
    path = write_archive(tmp_path / "m.npz", meta_of(), list(entries.items()))
    assert "the entry \"['b'].npy\" declares 144 bytes; its .npy header (128 bytes) and shape need 140" in load_error(path)


def test_long_names_make_room_for_their_metadata(tmp_path):
    """Guards against the metadata's size limit not growing with the tree structure's text and the leaves'
    paths (such files were saved and then refused by ``load``): 40 keys of 60,000 characters (a zip entry's
    name holds 65,535 bytes) make 19 MB of stored metadata; keys of non-ASCII characters, escaped in JSON,
    six times as many characters."""
    for char, length in (("k", 60_000), ("é", 30_000)):
        tree = {f"{i}" + char * length: np.full(1, i, np.int32) for i in range(40)}
        jaxnn.save(tmp_path / "c.npz", tree)
        loaded = jaxnn.load(tmp_path / "c.npz", tree)
        assert all(np.array_equal(loaded[k], v) for k, v in tree.items())


def test_a_temporary_that_cannot_be_opened_does_not_stop_the_reclaiming(tmp_path):
    """Guards against the reclaiming loop stopping (``break`` for ``continue``) at a leftover it cannot open
    or must keep: dangling links and fresh temporaries (a live save's, perhaps) named like temporaries are
    skipped, and the stale temporary beside them is still removed (whatever order the folder lists them in)."""
    for i in range(20):
        os.symlink(tmp_path / "nowhere", tmp_path / f".c.npz.{i:012x}.tmp")
        (tmp_path / f".c.npz.{i + 100:012x}.tmp").write_bytes(b"fresh")
    stale = tmp_path / ".c.npz.ffffffffffff.tmp"
    stale.write_bytes(b"left by a killed save")
    os.utime(stale, (0, 0))
    jaxnn.save(tmp_path / "c.npz", TREE)
    assert not stale.exists()
    assert len(temporaries(tmp_path)) == 40  # the links and the fresh files are not ours to remove


def test_the_temporary_is_locked_while_it_is_written(tmp_path, monkeypatch):
    """Guards against the temporary being written without its ``flock`` (another save would take it for a
    crashed one's and remove it)."""
    import fcntl  # Linux only, like this module (skipped elsewhere after its imports)

    write, tried = checkpoint._write_npz, []

    def write_while_another_tries_the_lock(out, entries):
        (name,) = temporaries(tmp_path)
        fd = os.open(tmp_path / name, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            tried.append(name)
        finally:
            os.close(fd)
        return write(out, entries)

    monkeypatch.setattr(checkpoint, "_write_npz", write_while_another_tries_the_lock)
    jaxnn.save(tmp_path / "c.npz", TREE)
    assert len(tried) == 1 and temporaries(tmp_path) == []


def test_the_output_after_close_only_counts(tmp_path):
    """Guards against the closed output writing, flushing or seeking for real (an archive abandoned by an
    exception is finished by the garbage collector; it must find a sink that only moves its position)."""
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    out = checkpoint._Output(fd)
    out.write(b"abc")
    out.close()
    os.close(fd)
    assert out.tell() == 3
    assert out.write(b"de") == 2 and out.tell() == 5
    out.flush()
    assert out.seek(1) == 1 and out.seek(4, os.SEEK_CUR) == 5
    assert (tmp_path / "f").read_bytes() == b"abc"


def test_an_entry_of_objects_is_refused_before_anything_is_read(tmp_path):
    """Guards against the entry check letting an object dtype through unless it also has too many axes
    (``and`` for ``or``): a pickle must never be what decides."""
    entries = dict(good_entries())
    entries["['b'].npy"] = npy(header={"descr": "|O", "fortran_order": False, "shape": (3,)}, data=b"\0" * 24)
    path = write_archive(tmp_path / "m.npz", meta_of(), list(entries.items()))
    assert "the entry \"['b'].npy\" holds object of shape (3,), not an array of numbers" in load_error(path)


def test_a_missing_file_is_file_not_found(tmp_path):
    """Guards against ``load`` checking the path as one that must exist in its own words: a missing
    checkpoint is the ``FileNotFoundError`` every Python caller already handles."""
    with pytest.raises(FileNotFoundError):
        jaxnn.load(tmp_path / "missing.npz", TREE)


def test_a_root_leaf_is_named_as_the_root(tmp_path):
    """Guards against the encoding message naming a tree that is one array by an empty string."""
    tree = np.arange(3, dtype=np.float32)
    meta = meta_of(tree)
    meta["leaves"][0]["encoding"] = "bits"
    path = write_archive(tmp_path / "r.npz", meta, good_entries(tree))
    assert "the leaf (root) of dtype float32 has encoding 'bits', expected 'raw'" in load_error(path, like=tree)


def test_entries_past_zip64s_limit_are_written_as_zip64(tmp_path, monkeypatch):
    """Guards against the entries being opened without ``force_zip64``: zipfile cannot know an entry's size
    before writing it, and one past the limit (4 GiB; lowered here to 1000 bytes) would then fail."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    tree = {"w": np.arange(1000, dtype=np.float32)}
    jaxnn.save(tmp_path / "z.npz", tree)
    np.testing.assert_array_equal(jaxnn.load(tmp_path / "z.npz", tree)["w"], tree["w"])
