"""save/load: bitwise round trips of training states, every dtype and PRNG keys; clear errors; atomic writes."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jaxnn
from tests.helpers import examples

ROOT = Path(__file__).resolve().parents[1]
META = "__jaxnn_checkpoint__"


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    epoch: Any


def assert_bitwise_equal(actual, expected):
    """Same structure, and every leaf the same dtype, shape and bytes (NaN payloads included)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        where = jax.tree_util.keystr(path)
        assert isinstance(a, jax.Array), where
        assert a.dtype == jnp.asarray(e).dtype, where
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, e = jax.random.key_data(a), jax.random.key_data(e)
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, where
        assert a.tobytes() == e.tobytes(), where


def net_problem():
    net = jaxnn.Network.from_sizes([3, 4, 2], jaxnn.Tanh(), jaxnn.MSELoss())
    x = jax.random.normal(jax.random.key(1), (5, 3))
    t = jax.random.normal(jax.random.key(2), (5, 2))
    return net, x, t


OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-3),
    "clip_then_momentum": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9)),
    "schedule": lambda: optax.sgd(optax.exponential_decay(0.1, transition_steps=10, decay_rate=0.5)),
    "inject_hyperparams": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
}


def fresh_state(net, optimizer, seed=0):
    params = net.init(jax.random.key(seed))
    return TrainState(params, optimizer.init(params), jnp.asarray(0, jnp.int32))


def step(net, optimizer, state, x, t):
    grads = net.backprop(state.params, x, t)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.epoch + 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_train_state_round_trip_is_bitwise_and_training_continues_identically(tmp_path, name):
    net, x, t = net_problem()
    optimizer = OPTIMIZERS[name]()
    state = step(net, optimizer, fresh_state(net, optimizer), x, t)
    path = jaxnn.save(tmp_path / "state.npz", state)
    assert path == tmp_path / "state.npz"
    # the template is a different, freshly initialised state
    loaded = jaxnn.load(path, like=fresh_state(net, optimizer, seed=7))
    assert isinstance(loaded, TrainState)
    assert_bitwise_equal(loaded, state)
    assert_bitwise_equal(step(net, optimizer, loaded, x, t), step(net, optimizer, state, x, t))


@pytest.mark.slow
def test_template_of_shape_dtype_structs(tmp_path):
    net, x, t = net_problem()
    optimizer = optax.adam(1e-3)
    state = step(net, optimizer, fresh_state(net, optimizer), x, t)
    jaxnn.save(tmp_path / "s.npz", state)
    like = jax.eval_shape(lambda: fresh_state(net, optimizer))
    assert_bitwise_equal(jaxnn.load(tmp_path / "s.npz", like), state)


DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64, jnp.int8, jnp.int32, jnp.int64,
          jnp.uint8, jnp.uint32, jnp.bool_, jnp.complex64, jnp.complex128, ml_dtypes.float8_e4m3fn]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["jax", "numpy"])
def test_every_dtype_round_trips_bitwise(tmp_path, dtype, kind):
    values = np.asarray(jax.random.normal(jax.random.key(0), (2, 3)) * 100).astype(dtype)
    if np.dtype(dtype).kind == "f" or dtype is jnp.bfloat16:
        values[0, 0] = np.nan
        values[0, 1] = -0.0
    leaf = jnp.asarray(values) if kind == "jax" else values
    tree = {"a": leaf, "scalar": leaf[1, 2], "empty": leaf[:0]}
    jaxnn.save(tmp_path / "d.npz", tree)
    loaded = jaxnn.load(tmp_path / "d.npz", like=jax.tree.map(jnp.zeros_like, tree))
    assert_bitwise_equal(loaded, tree)
    # the file itself opens without pickle, bfloat16 included
    with np.load(tmp_path / "d.npz", allow_pickle=False) as npz:
        assert npz["['a']"].shape == (2, 3)


def test_python_and_numpy_scalars(tmp_path):
    tree = {"epoch": 3, "lr": 0.5, "done": True, "n": np.int32(4), "x": np.float32(1.5)}
    jaxnn.save(tmp_path / "s.npz", tree)
    loaded = jaxnn.load(tmp_path / "s.npz", like={"epoch": 0, "lr": 0.0, "done": False,
                                                  "n": np.int32(0), "x": np.float32(0)})
    assert {k: v.item() for k, v in loaded.items()} == {"epoch": 3, "lr": 0.5, "done": True, "n": 4, "x": 1.5}
    assert loaded["n"].dtype == jnp.int32 and loaded["epoch"].dtype == jnp.asarray(3).dtype


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_typed_prng_keys_round_trip(tmp_path, impl):
    key = jax.random.key(42, impl=impl)
    tree = {"key": key, "keys": jax.random.split(key, 3)}
    jaxnn.save(tmp_path / "k.npz", tree)
    loaded = jaxnn.load(tmp_path / "k.npz", like={"key": jax.random.key(0, impl=impl),
                                                  "keys": jax.random.split(jax.random.key(0, impl=impl), 3)})
    assert loaded["key"].dtype == key.dtype
    assert_bitwise_equal(loaded, tree)
    np.testing.assert_array_equal(jax.random.normal(loaded["keys"][1], (4,)),
                                  jax.random.normal(tree["keys"][1], (4,)))


def test_a_key_of_another_impl_is_a_dtype_mismatch(tmp_path):
    jaxnn.save(tmp_path / "k.npz", [jax.random.key(0, impl="rbg")])
    with pytest.raises(ValueError, match=r"at \[0\]: saved dtype key<rbg>, expected dtype key<fry>"):
        jaxnn.load(tmp_path / "k.npz", like=[jax.random.key(0)])


leaf_arrays = st.sampled_from(["float16", "bfloat16", "float32", "float64", "int32", "int64", "bool"]).flatmap(
    lambda name: hnp.arrays(np.dtype(getattr(ml_dtypes, name, name)), hnp.array_shapes(min_dims=0, max_dims=3,
                                                                                      max_side=4),
                            elements=None if name != "bfloat16" else st.floats(-1e3, 1e3, width=32))
)
trees = st.recursive(
    leaf_arrays,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=4), children,
                                                                      max_size=3),
    max_leaves=6,
)


@settings(max_examples=examples(40), deadline=None)
@given(tree=trees)
def test_random_trees_round_trip_bitwise(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("h") / "t.npz"
    jaxnn.save(path, tree)
    assert_bitwise_equal(jaxnn.load(path, like=tree), tree)


def test_file_layout_is_a_plain_npz_in_flatten_order(tmp_path):
    net, _, _ = net_problem()
    optimizer = optax.adam(1e-3)
    state = fresh_state(net, optimizer)
    jaxnn.save(tmp_path / "s.npz", state)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert npz.files == [META] + paths
        assert paths[0] == ".params[0][0]"
        meta = json.loads(str(npz[META]))
    assert meta["format"] == "jaxnn-checkpoint" and meta["version"] == 1
    assert meta["jaxnn_version"] == jaxnn.__version__
    assert meta["num_leaves"] == len(paths) == len(meta["leaves"])
    assert "ScaleByAdamState" in meta["structure"]


def test_save_writes_exactly_the_path_given_and_returns_it(tmp_path):
    assert jaxnn.save(str(tmp_path / "ckpt.bin"), [jnp.ones(2)]) == str(tmp_path / "ckpt.bin")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.bin"]
    assert jaxnn.load(str(tmp_path / "ckpt.bin"), [jnp.zeros(2)])[0].tolist() == [1, 1]
    # a new file gets the usual permissions, not a temporary file's 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "ckpt.bin").st_mode & 0o777 == 0o666 & ~umask


def test_save_overwrites_and_a_bare_array_is_a_tree(tmp_path):
    jaxnn.save(tmp_path / "a.npz", jnp.ones(3))
    jaxnn.save(tmp_path / "a.npz", jnp.arange(3.0))
    assert jaxnn.load(tmp_path / "a.npz", jnp.zeros(3)).tolist() == [0, 1, 2]


# --- errors: the tree does not fit the template ----------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    tree = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.zeros(3, jnp.float32), "step": jnp.asarray(1, jnp.int32)}
    path = jaxnn.save(tmp_path / "model.npz", tree)
    return path, tree


def test_missing_leaf(saved):
    path, tree = saved
    with pytest.raises(ValueError, match=r"model\.npz.*the leaf \['extra'\] is missing") as info:
        jaxnn.load(path, like={**tree, "extra": jnp.zeros(1)})
    assert "saved structure" in str(info.value)


def test_extra_leaf(saved):
    path, tree = saved
    like = {"w": tree["w"], "b": tree["b"]}
    with pytest.raises(ValueError, match=r"model\.npz.*the file has an extra leaf \['step'\]"):
        jaxnn.load(path, like=like)


def test_shape_mismatch(saved):
    path, tree = saved
    with pytest.raises(ValueError, match=r"model\.npz.* at \['w'\]: saved shape \(3, 2\), expected shape \(2, 3\)"):
        jaxnn.load(path, like={**tree, "w": jnp.zeros((2, 3), jnp.float32)})


def test_dtype_mismatch_is_not_cast(saved):
    path, tree = saved
    with pytest.raises(ValueError, match=r"model\.npz.* at \['b'\]: saved dtype float32, expected dtype float64"):
        jaxnn.load(path, like={**tree, "b": jnp.zeros(3, jnp.float64)})
    with pytest.raises(ValueError, match=r"at \['step'\]: saved dtype int32, expected dtype int64"):
        jaxnn.load(path, like={**tree, "step": jax.ShapeDtypeStruct((), jnp.int64)})


def test_like_must_be_a_tree_of_arrays(saved):
    path, tree = saved
    with pytest.raises(TypeError, match=r"leaf at \['b'\] is str"):
        jaxnn.load(path, like={**tree, "b": "zeros"})


@pytest.mark.parametrize("leaf, what", [("adam", "str"), (object(), "object"), (np.array(["a"]), "ndarray")])
def test_save_rejects_non_array_leaves_naming_the_key_path(tmp_path, leaf, what):
    with pytest.raises(TypeError, match=rf"leaf at \['config'\]\[1\]: expected an array or a number, got {what}"):
        jaxnn.save(tmp_path / "x.npz", {"w": jnp.ones(2), "config": [1, leaf]})
    assert os.listdir(tmp_path) == []


# --- errors: the file ------------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        jaxnn.load(tmp_path / "nope.npz", like=[jnp.zeros(1)])
    with pytest.raises(FileNotFoundError, match=r"folder .*no_such_dir.* does not exist"):
        jaxnn.save(tmp_path / "no_such_dir" / "x.npz", [jnp.zeros(1)])
    assert not (tmp_path / "no_such_dir").exists()


def test_a_folder_is_not_a_checkpoint(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match=r"d'.*is a folder"):
        jaxnn.load(tmp_path / "d", like=[jnp.zeros(1)])
    with pytest.raises(IsADirectoryError, match="is a folder"):
        jaxnn.save(tmp_path / "d", [jnp.zeros(1)])


@pytest.mark.parametrize("content, message", [
    (b"", "not a jaxnn checkpoint: the file is empty"),
    (b"step,loss\n1,0.5\n", "not a jaxnn checkpoint: it is not a .npz"),
    (np.random.default_rng(0).bytes(4096), "not a jaxnn checkpoint: it is not a .npz"),
    (b"PK", "truncated or corrupted"),
])
def test_foreign_files(tmp_path, content, message):
    (tmp_path / "f.npz").write_bytes(content)
    with pytest.raises(ValueError, match=r"f\.npz.*" + message):
        jaxnn.load(tmp_path / "f.npz", like=[jnp.zeros(1)])


def test_a_plain_npz_is_not_a_jaxnn_checkpoint(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(ValueError, match=r"plain\.npz.*not a jaxnn checkpoint: a \.npz archive without"):
        jaxnn.load(tmp_path / "plain.npz", like={"w": jnp.zeros(3)})


def test_a_truncated_file_at_any_length(tmp_path, saved):
    path, tree = saved
    data = Path(path).read_bytes()
    for length in [1, 3, 4, 30, 100, len(data) // 2, len(data) - 22, len(data) - 1]:
        (tmp_path / "cut.npz").write_bytes(data[:length])
        with pytest.raises(ValueError, match=r"cut\.npz.*(truncated or corrupted|not a jaxnn checkpoint)"):
            jaxnn.load(tmp_path / "cut.npz", like=tree)


def test_a_flipped_byte_in_the_data_is_a_crc_error(tmp_path, saved):
    path, tree = saved
    data = bytearray(Path(path).read_bytes())
    with zipfile.ZipFile(path) as zf:
        member = zf.getinfo("['w'].npy")
    # the last byte of ['w']'s array data, inside its local entry
    data[member.header_offset + 30 + len(member.filename) + member.compress_size - 1] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.npz.*truncated or corrupted \(BadZipFile: Bad CRC-32"):
        jaxnn.load(tmp_path / "bad.npz", like=tree)


def test_every_single_byte_corruption_is_a_value_error_or_harmless(tmp_path, saved):
    path, tree = saved
    data = Path(path).read_bytes()
    for offset in range(0, len(data), 7):
        bad = bytearray(data)
        bad[offset] ^= 0x55
        (tmp_path / "bad.npz").write_bytes(bytes(bad))
        try:
            loaded = jaxnn.load(tmp_path / "bad.npz", like=tree)
        except ValueError as e:
            assert "bad.npz" in str(e)
        else:  # a byte zip does not check (a timestamp, an unused field): the values are intact
            assert_bitwise_equal(loaded, tree)


# --- atomic writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch, where):
    path = jaxnn.save(tmp_path / "s.npz", {"w": jnp.ones(1000)})
    before = Path(path).read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    if where == "write":
        def half_write(f, *args, **kwargs):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError("disk full")
        monkeypatch.setattr(np.lib.format, "write_array", half_write)
    else:
        monkeypatch.setattr(os, where, fail)
    with pytest.raises(OSError, match="disk full"):
        jaxnn.save(path, {"w": jnp.zeros(1000)})
    monkeypatch.undo()
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["s.npz"]


def test_an_interrupt_while_writing_leaves_no_temporary(tmp_path, monkeypatch):
    def interrupted(f, *args, **kwargs):
        f.write(b"PK")
        raise KeyboardInterrupt
    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jaxnn.save(tmp_path / "s.npz", [jnp.ones(3)])
    assert os.listdir(tmp_path) == []


# --- sharding --------------------------------------------------------------------------------------


def test_loaded_leaves_take_the_templates_sharding(tmp_path):
    device = jax.devices()[-1]
    sharding = jax.sharding.SingleDeviceSharding(device)
    like = {"w": jax.device_put(jnp.zeros(4), sharding), "s": jax.ShapeDtypeStruct((2,), jnp.float64, sharding=sharding)}
    jaxnn.save(tmp_path / "s.npz", {"w": jnp.arange(4.0), "s": jnp.ones(2)})
    loaded = jaxnn.load(tmp_path / "s.npz", like)
    assert loaded["w"].sharding == sharding and loaded["s"].sharding == sharding


SHARDED_SCRIPT = textwrap.dedent(
    """
    import sys, jax, jax.numpy as jnp, numpy as np, optax, jaxnn
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params = {"w": jnp.arange(8.0).reshape(4, 2), "key": jax.random.key(3)}
    state = (jax.device_put(params, replicated), jax.device_put(jnp.arange(6.0), split))
    path = jaxnn.save(sys.argv[1], state)
    like = (jax.device_put(jax.tree.map(jnp.zeros_like, params), replicated),
            jax.device_put(jnp.zeros(6), split))
    loaded = jaxnn.load(path, like)
    assert loaded[0]["w"].sharding == replicated and loaded[0]["w"].sharding.is_fully_replicated
    assert loaded[0]["key"].sharding == replicated and loaded[1].sharding == split
    assert len(loaded[1].addressable_shards) == 2
    np.testing.assert_array_equal(loaded[0]["w"], params["w"])
    np.testing.assert_array_equal(jax.random.key_data(loaded[0]["key"]), jax.random.key_data(params["key"]))
    np.testing.assert_array_equal(loaded[1], np.arange(6.0))
    print("sharded ok")
    """
)


@pytest.mark.slow
@pytest.mark.mutation
def test_a_replicated_two_device_state_loads_replicated(tmp_path):
    # XLA_FLAGS must be set before jax starts, so this runs in its own process.
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(tmp_path / "sharded.npz")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sharded ok" in result.stdout


def test_empty_arrays_and_many_leaves_round_trip(tmp_path):
    """Guards against a dimension of 0 being refused as a bad shape, and against the metadata's size limit
    shrinking with the number of leaves (a template of 300 leaves must load)."""
    tree = {"empty": np.zeros((0, 3), np.float32), "leaves": [np.full(2, i, np.int32) for i in range(300)]}
    jaxnn.save(tmp_path / "c.npz", tree)
    loaded = jaxnn.load(tmp_path / "c.npz", tree)
    assert loaded["empty"].shape == (0, 3)
    assert all(np.array_equal(a, b) for a, b in zip(loaded["leaves"], tree["leaves"]))


def test_an_array_of_64_dimensions_round_trips(tmp_path):
    """Guards against the shape check refusing NumPy's largest rank (``>=`` for ``>`` against 64)."""
    tree = {"deep": np.zeros((1,) * 64, np.float32)}
    jaxnn.save(tmp_path / "c.npz", tree)
    assert jaxnn.load(tmp_path / "c.npz", tree)["deep"].shape == (1,) * 64


def test_keys_with_quotes_backslashes_and_brackets_round_trip(tmp_path):
    """Guards against the metadata's depth scan misreading escaped quotes: brackets inside a key's string
    are not nesting, whatever backslashes precede its quotes."""
    deep = "[" * 20 + "{" * 20  # counted as nesting, these would be too deep
    tree = {'a"' + deep: np.ones(2), 'b\\\\"' + deep: np.zeros(2), 'c\\"' + deep: np.arange(3), "d\\": np.ones(1),
            "\\" * 7 + '"' + deep: np.ones(1), '"' * 3 + deep: np.ones(1)}
    jaxnn.save(tmp_path / "c.npz", tree)
    loaded = jaxnn.load(tmp_path / "c.npz", tree)
    assert all(np.array_equal(loaded[k], v) for k, v in tree.items())


def test_a_long_structure_mismatch_is_quoted_clipped(tmp_path):
    """Guards against the clipping of long structures in the mismatch message."""
    tree = {f"layer_{i:03d}": np.ones(1) for i in range(60)}
    jaxnn.save(tmp_path / "c.npz", tree)
    with pytest.raises(ValueError, match=r"saved structure: +PyTreeDef\(\{.{300,}\.\.\.\n"):
        jaxnn.load(tmp_path / "c.npz", {**tree, "extra": np.ones(1)})
    exact = {"k" * 382: np.ones(1)}  # a structure of exactly 400 characters, the most quoted whole
    assert len(str(jax.tree.structure(exact))) == 400
    jaxnn.save(tmp_path / "e.npz", exact)
    with pytest.raises(ValueError, match=r"saved structure: +PyTreeDef\(\{'k{382}': \*\}\)\n"):
        jaxnn.load(tmp_path / "e.npz", {**exact, "b": np.ones(1)})
    jaxnn.save(tmp_path / "s.npz", {"a": np.ones(1)})  # a short one is quoted whole
    with pytest.raises(ValueError, match=r"saved structure: +PyTreeDef\(\{'a': \*\}\)\n"):
        jaxnn.load(tmp_path / "s.npz", {"a": np.ones(1), "b": np.ones(1)})


def test_void_dtypes_are_not_saved_as_bits(tmp_path):
    """Guards against any void dtype passing as one of ml_dtypes' (``or`` for ``and``)."""
    with pytest.raises((TypeError, ValueError)):
        jaxnn.save(tmp_path / "c.npz", {"v": np.zeros(3, "V4")})


def test_an_npy_entry_of_format_2_loads(tmp_path):
    """Guards against the .npy header reader taking version 2.0 for an unsupported one."""
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = tmp_path / "c.npz"
    jaxnn.save(path, tree)
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    rewritten = tmp_path / "v2.npz"
    with zipfile.ZipFile(rewritten, "w") as archive:
        for name, data in entries.items():
            if name.endswith(".npy") and not name.startswith("__"):
                array = np.load(__import__("io").BytesIO(data))
                with archive.open(name, "w") as entry:
                    np.lib.format.write_array(entry, array, version=(2, 0))
            else:
                archive.writestr(name, data)
    np.testing.assert_array_equal(jaxnn.load(rewritten, tree)["w"], tree["w"])
