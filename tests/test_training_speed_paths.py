"""The fast paths of training: compiled once, no host syncs, safe donation, data parallelism."""

import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn

from tests.helpers import assert_trees_close

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRACES = []


@dataclasses.dataclass(frozen=True)
class CountingTanh(jaxnn.Tanh):
    """Tanh that records each time it is traced (Python runs only while tracing)."""

    def f(self, y):
        TRACES.append(y.shape)
        return super().f(y)


def small_problem(n=40, seed=0):
    net = jaxnn.Network.from_sizes([3, 5, 2], [CountingTanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    kp, kx, kt = jax.random.split(jax.random.key(seed), 3)
    return net, net.init(kp), jax.random.normal(kx, (n, 3)), jax.random.randint(kt, (n,), 0, 2)


def test_a_second_fit_with_the_same_shapes_does_not_trace_again():
    net, params, x, t = small_problem()
    optimizer = optax.adam(1e-2)
    before = len(TRACES)
    jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=8, epochs=2)
    traced = len(TRACES)
    assert traced > before
    # New values, more epochs: the compiled epoch is reused.
    _, other_params, other_x, other_t = small_problem(seed=1)
    jaxnn.fit(net, other_params, other_x, other_t, optimizer=optimizer, batch_size=8, epochs=3)
    assert len(TRACES) == traced
    # A fresh optimizer with the same hyperparameters is the same configuration.
    jaxnn.fit(net, other_params, other_x, other_t, optimizer=optax.adam(1e-2), batch_size=8, epochs=1)
    assert len(TRACES) == traced
    # The counter does see a real change of static configuration.
    jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=4)
    assert len(TRACES) > traced


def test_an_epoch_never_talks_to_the_host():
    net, params, x, t = small_problem()
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8, epochs=2, key=jax.random.key(0), check_data=False)
    # Compile first (constants move then), then run again with every implicit
    # device-to-host transfer forbidden: only fit's explicit read of each epoch's loss remains.
    jaxnn.fit(net, params, x, t, **kwargs)
    with jax.transfer_guard_device_to_host("disallow"):
        state, _ = jaxnn.fit(net, params, x, t, **kwargs)
    jax.block_until_ready(state)


def test_fit_leaves_the_callers_params_alive_and_unchanged():
    net, params, x, t = small_problem()
    saved = jax.tree.map(np.array, params)
    as_numpy = jax.tree.map(np.array, params)
    for start in (params, as_numpy):
        state, _ = jaxnn.fit(net, start, x, t, optimizer=optax.adam(1e-2), batch_size=8, epochs=3)
        trained = state.params
        assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(params))
        assert_trees_close(start, saved, rtol=0, atol=0)
        assert not np.allclose(trained[0][0], saved[0][0])
    # A second fit from the same params gives the same result: nothing was overwritten.
    again_state, _ = jaxnn.fit(net, params, x, t, optimizer=optax.adam(1e-2), batch_size=8, epochs=3)
    again = again_state.params
    assert_trees_close(again, trained, rtol=0, atol=0)


def test_make_train_step_donates_only_when_asked():
    net, params, x, t = small_problem()
    optimizer = optax.sgd(0.1, momentum=0.9)
    kept = jaxnn.make_train_step(net, optimizer)
    expected = kept(params, optimizer.init(params), x, t)
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(params))

    donated = jaxnn.make_train_step(net, optimizer, donate=True)
    mine = jax.tree.map(jnp.copy, params)
    state = optimizer.init(mine)
    got = donated(mine, state, x, t)
    assert_trees_close(got, expected, rtol=0, atol=0)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves((mine, state)))


def test_fit_manual_and_autodiff_train_identically():
    net, params, x, t = small_problem(n=50)
    kwargs = dict(optimizer=optax.adam(1e-2), batch_size=8, epochs=4, key=jax.random.key(3))
    manual_state, h_manual = jaxnn.fit(net, params, x, t, gradients="manual", **kwargs)
    manual = manual_state.params
    auto_state, h_auto = jaxnn.fit(net, params, x, t, gradients="autodiff", **kwargs)
    auto = auto_state.params
    assert_trees_close(manual, auto, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(h_manual["loss"], h_auto["loss"], rtol=1e-12)


@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
def test_batch_split_trains_like_the_whole_batch(gradients):
    net, params, x, t = small_problem(n=45)  # 5 batches of 8, then a last batch of 5 that is not split
    kwargs = dict(optimizer=optax.adam(1e-2), batch_size=8, epochs=2, key=jax.random.key(2), gradients=gradients)
    whole_state, h_whole = jaxnn.fit(net, params, x, t, **kwargs)
    whole = whole_state.params
    for parts in (2, 4):
        split_state, h_split = jaxnn.fit(net, params, x, t, batch_split=parts, **kwargs)
        split = split_state.params
        assert_trees_close(split, whole, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(h_split["loss"], h_whole["loss"], rtol=1e-12)


def test_batch_split_makes_independent_parts():
    net, params, x, t = small_problem(n=8)
    optimizer = optax.sgd(0.1)
    state = optimizer.init(params)

    def products(batch_split):
        step = jaxnn.make_train_step(net, optimizer, batch_split=batch_split)
        jaxpr = jax.make_jaxpr(step)(params, state, x, t)
        return str(jaxpr).count("dot_general")

    assert products(2) == 2 * products(1) > 0
    step = jaxnn.make_train_step(net, optimizer, batch_split=2)
    assert_trees_close(step(params, state, x, t), jaxnn.make_train_step(net, optimizer)(params, state, x, t),
                       rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_split, match", [(3, "batch_size must be a multiple of batch_split"),
                                                 (0, "batch_split must be a positive int"),
                                                 (2.0, "batch_split must be a positive int")])
def test_batch_split_is_checked(batch_split, match):
    net, params, x, t = small_problem()
    with pytest.raises(ValueError, match=match):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, batch_split=batch_split)


def test_one_device_in_devices_is_the_default_path():
    net, params, x, t = small_problem()
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8, epochs=2)
    plain_state, h_plain = jaxnn.fit(net, params, x, t, **kwargs)
    plain = plain_state.params
    placed_state, h_placed = jaxnn.fit(net, params, x, t, devices=jax.devices()[:1], **kwargs)
    placed = placed_state.params
    assert_trees_close(placed, plain, rtol=0, atol=0)
    np.testing.assert_array_equal(h_placed["loss"], h_plain["loss"])


@pytest.mark.parametrize("devices", [["cpu"], [], 3])
def test_devices_must_be_jax_devices(devices):
    net, params, x, t = small_problem()
    with pytest.raises(TypeError, match="devices must be a non-empty sequence of jax devices"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, devices=devices)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax, pytest, warnings
    import jaxnn
    warnings.simplefilter("error")
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert len(jax.devices()) == 2, jax.devices()
    net = jaxnn.Network.from_sizes([6, 16, 16, 4], [jaxnn.ReLU(), jaxnn.Tanh(), jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    kp, kx, kt = jax.random.split(jax.random.key(0), 3)
    params = net.init(kp)
    x, t = jax.random.normal(kx, (70, 6)), jax.random.randint(kt, (70,), 0, 4)
    for gradients in ("manual", "autodiff"):
        kwargs = dict(optimizer=optax.adam(1e-2), batch_size=16, epochs=3, key=jax.random.key(1),
                      gradients=gradients)
        one_state, h_one = jaxnn.fit(net, params, x, t, **kwargs)
        one = one_state.params
        two_state, h_two = jaxnn.fit(net, params, x, t, devices=jax.devices(), **kwargs)
        two = two_state.params
        assert all(leaf.devices() == {jax.devices()[0]} for leaf in jax.tree.leaves(two))
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(h_two["loss"], h_one["loss"], rtol=1e-12)
        assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(params))
    # The split must be even.
    with pytest.raises(ValueError, match="batch_size must be a multiple of the number of devices"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=15, devices=jax.devices())
    print("sharded ok")
    """
)


def test_fit_split_over_two_devices_equals_one_device():
    # XLA_FLAGS must be set before jax starts, so this runs in its own process.
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sharded ok" in result.stdout
