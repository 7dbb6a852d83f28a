"""make_train_step and fit: the same numbers as a plain loop, manual equal to autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn

from tests.helpers import assert_trees_close


def quadrant_problem(n=64, seed=0):
    net = jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.LeakyReLU()), jaxnn.Layer(3, 2, jaxnn.LeakyReLU())], jaxnn.MSELoss())
    kp, kx = jax.random.split(jax.random.key(seed))
    x = jax.random.uniform(kx, (n, 2), minval=-2, maxval=2)
    t = jax.nn.one_hot((x[:, 0] * x[:, 1] > 0).astype(jnp.int32), 2)
    return net, net.init(kp), x, t


def test_fit_with_batch_size_1_is_the_articles_per_example_loop():
    net, params, x, t = quadrant_problem()
    lr = 0.05
    state, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(lr), batch_size=1)
    trained = state.params
    # The articles' loop: forward, backprop, W -= lr * dW, one example at a time.
    expected, losses = params, []
    for xi, ti in zip(x, t):
        losses.append(net.loss(expected, xi, ti))
        grads = net.backprop(expected, xi, ti)
        expected = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(expected, grads)]
    assert_trees_close(trained, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history["loss"], [np.mean(losses)], rtol=1e-12)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.adam(1e-2), optax.sgd(0.1, momentum=0.9)])
@pytest.mark.parametrize("batch", [None, 16])
def test_manual_and_autodiff_train_steps_give_the_same_parameters(optimizer, batch):
    net = jaxnn.Network.from_sizes([4, 8, 8, 3], [jaxnn.Tanh(), jaxnn.Sigmoid(), jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0))
    kx, kt = jax.random.split(jax.random.key(1))
    lead = () if batch is None else (batch,)
    x, t = jax.random.normal(kx, lead + (4,)), jax.random.randint(kt, lead, 0, 3)
    results = {}
    for mode in ("manual", "autodiff"):
        step = jaxnn.make_train_step(net, optimizer, gradients=mode)
        p, state = params, optimizer.init(params)
        for _ in range(20):
            p, state, loss = step(p, state, x, t)
        results[mode] = (p, loss)
    assert_trees_close(results["manual"][0], results["autodiff"][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results["manual"][1], results["autodiff"][1], rtol=1e-10)


@pytest.mark.parametrize("n, batch_size", [(10, 3), (10, 4), (10, 10), (3, 8)])
def test_fit_keeps_every_example_when_batches_do_not_divide(n, batch_size):
    net, params, x, t = quadrant_problem(n)
    lr = 0.1
    state, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(lr), batch_size=batch_size)
    trained = state.params
    expected, weighted = params, 0.0
    for start in range(0, n, batch_size):
        xb, tb = x[start : start + batch_size], t[start : start + batch_size]
        loss, grads = net.value_and_backprop(expected, xb, tb)
        weighted += loss * len(xb)
        expected = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(expected, grads)]
    assert_trees_close(trained, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history["loss"], [weighted / n], rtol=1e-12)


def test_fit_shuffles_with_a_key_and_is_deterministic():
    net, params, x, t = quadrant_problem(32)
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=4, epochs=3)
    a_state, ha = jaxnn.fit(net, params, x, t, key=jax.random.key(7), **kwargs)
    a = a_state.params
    b_state, hb = jaxnn.fit(net, params, x, t, key=jax.random.key(7), **kwargs)
    b = b_state.params
    c_state, _ = jaxnn.fit(net, params, x, t, key=jax.random.key(8), **kwargs)
    c = c_state.params
    d_state, _ = jaxnn.fit(net, params, x, t, key=None, **kwargs)
    d = d_state.params
    assert_trees_close(a, b, rtol=0, atol=0)
    assert ha["loss"].shape == (3,)
    assert not np.allclose(a[0][0], c[0][0]) and not np.allclose(a[0][0], d[0][0])


def test_fit_manual_equals_autodiff_and_learns():
    net = jaxnn.Network.from_sizes([2, 16, 2], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    kx, kp = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (256, 2))
    t = (x[:, 0] * x[:, 1] > 0).astype(jnp.int32)
    params = net.init(kp)
    kwargs = dict(optimizer=optax.adam(0.02), batch_size=32, epochs=30, key=jax.random.key(0))
    manual_state, hm = jaxnn.fit(net, params, x, t, gradients="manual", **kwargs)
    manual = manual_state.params
    auto_state, ha = jaxnn.fit(net, params, x, t, gradients="autodiff", **kwargs)
    auto = auto_state.params
    assert_trees_close(manual, auto, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(hm["loss"], ha["loss"], rtol=1e-9)
    assert hm["loss"][-1] < 0.3 * hm["loss"][0]
    accuracy = jnp.mean(jnp.argmax(net.forward(manual, x), -1) == t)
    assert accuracy > 0.9


def test_fit_leaves_the_given_params_untouched():
    net, params, x, t = quadrant_problem(16)
    before = jax.tree.map(np.array, params)
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=4, epochs=2)
    assert_trees_close(params, before, rtol=0, atol=0)


def test_fit_with_float32_params_stays_float32():
    net, params, x, t = quadrant_problem(16)
    params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    state, history = jaxnn.fit(net, params32, x.astype(jnp.float32), t, optimizer=optax.sgd(0.1), batch_size=4)
    trained = state.params
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(trained))
    assert np.isfinite(history["loss"]).all()


def test_train_step_is_jitted_and_loss_is_before_the_update():
    net, params, x, t = quadrant_problem(8)
    optimizer = optax.sgd(0.1)
    step = jaxnn.make_train_step(net, optimizer)
    new, _, loss = step(params, optimizer.init(params), x, t)
    np.testing.assert_allclose(loss, net.loss(params, x, t), rtol=1e-12)
    assert net.loss(new, x, t) < loss
    assert hasattr(step, "lower")  # a jax.jit-wrapped function


def test_fit_with_progress_bar_and_zero_epochs(capsys):
    net, params, x, t = quadrant_problem(16)
    with pytest.warns(DeprecationWarning, match="callbacks=\\[jaxnn.ProgressBar\\(\\)\\]"):
        state, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=4, epochs=2,
                                     progress=True)
    trained = state.params
    assert history["loss"].shape == (2,)
    assert "fit" in capsys.readouterr().err
    same_state, empty = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=4, epochs=0)
    same = same_state.params
    assert empty["loss"].shape == (0,)
    assert_trees_close(same, params, rtol=0, atol=0)
