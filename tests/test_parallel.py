"""Scaling paths of fit: a mesh of 8 CPU devices, batch_split="auto", data streamed from the host."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn

MESH_TOLERANCE = 1e-5  # float32: the devices' partial gradients are summed in another order


def _problem(dtype=np.float32, n=200):
    net = jaxnn.Network.from_sizes((20, 32, 4), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 20)).astype(dtype)
    t = rng.integers(0, 4, n).astype(np.int32)
    return net, net.init(jax.random.key(0), dtype=dtype), x, t


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_eight_cpu_devices_equal_one_device():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax, jaxnn
        from jax.sharding import Mesh
        assert len(jax.devices()) == 8
        net = jaxnn.Network.from_sizes((20, 32, 4), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
        rng = np.random.default_rng(0)
        x = rng.standard_normal((200, 20)).astype(np.float32); t = rng.integers(0, 4, 200).astype(np.int32)
        params = net.init(jax.random.key(0), dtype=np.float32)
        kw = dict(optimizer=optax.adam(1e-2), batch_size=32, epochs=2, key=jax.random.key(3))
        one, h1 = jaxnn.fit(net, params, x, t, **kw)
        diff = lambda a: max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a.params),
                                                                           jax.tree.leaves(one.params)))
        devs = jax.devices()
        cases = {
            "list": dict(devices=devs),
            "mesh data axis": dict(devices=Mesh(np.array(devs).reshape(2, 4), ("model", "data"))),
            "mesh first axis": dict(devices=Mesh(np.array(devs).reshape(4, 2), ("rows", "replicas"))),
            "list, streamed": dict(devices=devs, stream=jaxnn.HostStream(steps_per_chunk=2)),
        }
        for name, extra in cases.items():
            s, h = jaxnn.fit(net, params, x, t, **kw, **extra)
            assert s.params[0][0].sharding.device_set == {devs[0]}, s.params[0][0].sharding
            d = diff(s)
            assert d <= 1e-5 and np.allclose(h["loss"], h1["loss"], rtol=1e-6), (name, d)
            print(name, d)
        xs = jaxnn.training.global_rows(x)  # split by rows over the 8 devices
        assert len(xs.sharding.device_set) == 8 and xs.addressable_shards[0].data.shape == (25, 20)
        try:
            jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=12, devices=devs)
        except ValueError as e:
            assert "multiple of the number of devices" in str(e), e
        else:
            raise AssertionError("no error for a batch the devices do not divide")
        print("ok")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


def test_auto_batch_split_rule():
    mnist = [(784, 128), (128, 128), (128, 10)]
    rule = jaxnn.training.auto_batch_split
    assert rule(128, mnist, platform="cpu", cores=2) == 2
    assert rule(128, mnist, platform="cpu", cores=1) == 1
    assert rule(128, mnist, platform="gpu", cores=64) == 1
    assert rule(128, mnist, platform="cpu", cores=16) == 2  # parts of 64 rows; 32-row parts are too small
    assert rule(1024, mnist, platform="cpu", cores=16) == 8
    assert rule(128, mnist, platform="cpu", cores=8, devices=8) == 1  # 8 devices share the cores
    assert rule(128, [(2, 3), (3, 2)], platform="cpu", cores=64) == 1  # a tiny net is never split
    assert rule(96, mnist, platform="cpu", cores=4) == 2  # only powers of two that divide the batch


def test_auto_batch_split_trains_like_unsplit():
    net = jaxnn.Network.from_sizes((784, 128, 128, 10), [jaxnn.ReLU(), jaxnn.ReLU(), jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 784)).astype(np.float32)
    t = rng.integers(0, 10, 256).astype(np.int32)
    params = net.init(jax.random.key(0), dtype=np.float32)
    kw = dict(optimizer=optax.sgd(0.01), batch_size=128, epochs=2, key=jax.random.key(3))
    auto, h_auto = jaxnn.fit(net, params, x, t, **kw)
    plain, h_plain = jaxnn.fit(net, params, x, t, batch_split=1, **kw)
    two, _ = jaxnn.fit(net, params, x, t, batch_split=2, **kw)
    assert _max_diff(auto.params, plain.params) <= 1e-5
    np.testing.assert_allclose(h_auto["loss"], h_plain["loss"], rtol=1e-5)
    chosen = jaxnn.training.auto_batch_split(128, [(784, 128), (128, 128), (128, 10)], platform="cpu")
    if chosen == 2:  # the default is then exactly the explicit split
        assert _max_diff(auto.params, two.params) == 0
    step = jaxnn.make_train_step(net, optax.sgd(0.01))  # "auto" too
    p, _, loss = step(params, optax.sgd(0.01).init(params), x[:128], t[:128])
    q, _, loss1 = jaxnn.make_train_step(net, optax.sgd(0.01), batch_split=1)(
        params, optax.sgd(0.01).init(params), x[:128], t[:128])
    assert _max_diff(p, q) <= 1e-6 and abs(float(loss) - float(loss1)) <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_fit_is_bitwise_the_in_memory_fit(tmp_path, dtype):
    net, params, x, t = _problem(dtype, n=203)  # 12 full batches of 16 and a last one of 11
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    xm, tm = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "t.npy", mmap_mode="r")
    for key in (jax.random.key(3), None) if dtype == np.float32 else (jax.random.key(3),):
        kw = dict(optimizer=optax.adam(1e-2), batch_size=16, epochs=2, key=key)
        ref, h_ref = jaxnn.fit(net, params, x, t, **kw)
        runs = [jaxnn.fit(net, params, xm, tm, **kw)]  # a memmap streams by itself
        if key is not None:
            runs.append(jaxnn.fit(net, params, x, t, stream=jaxnn.HostStream(steps_per_chunk=5), **kw))
        for state, history in runs:
            assert _max_diff(state.params, ref.params) == 0
            assert state.epoch == 2
            np.testing.assert_allclose(history["loss"], h_ref["loss"], rtol=1e-6)
    if dtype == np.float64:
        return
    # per-example steps (batch 1), and resuming a streamed run
    kw = dict(optimizer=optax.sgd(0.05), batch_size=1, key=jax.random.key(4))
    ref, _ = jaxnn.fit(net, params, x[:40], t[:40], epochs=2, **kw)
    half, _ = jaxnn.fit(net, params, x[:40], t[:40], stream=jaxnn.HostStream(7), epochs=1, **kw)
    full, _ = jaxnn.fit(net, half, x[:40], t[:40], stream=jaxnn.HostStream(7), epochs=1, **kw)
    assert _max_diff(full.params, ref.params) == 0


def test_streamed_fit_checks_its_data():
    net, params, x, t = _problem()
    x[150, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=10, stream=jaxnn.HostStream())
    with pytest.raises(TypeError, match="NumPy arrays"):
        jaxnn.fit(net, params, jnp.asarray(x), t, optimizer=optax.sgd(0.1), batch_size=10, stream=jaxnn.HostStream())
    with pytest.raises(TypeError, match="HostStream"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=10, stream=64)
    with pytest.raises(ValueError, match="steps_per_chunk"):
        jaxnn.HostStream(0)
