"""fit from end to end: the articles' loop, manual equals autodiff, dtypes kept, zero epochs."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import (AutodiffCalled, TanhNoAutodiff, TanhWrongDerivative, adamw_loop, assert_trees_close,
                           classification, max_abs_diff, quadrant_problem, sgd_loop)


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_fit_with_float32_params_stays_float32():
    net, params, x, t = quadrant_problem(16)
    params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    state, history = jaxnn.fit(net, params32, x.astype(jnp.float32), t, optimizer=optax.sgd(0.1), batch_size=4)
    trained = state.params
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(trained))
    assert np.isfinite(history["loss"]).all()


def test_zero_epochs_returns_the_starting_state():
    net, params, x, t = classification()
    optimizer = optax.adam(1e-2)
    state, history = jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=8, epochs=0)
    assert state.epoch == 0 and history["loss"].shape == (0,) and history["epoch"].shape == (0,)
    assert_trees_close(state.params, params, rtol=0, atol=0)
    assert_trees_close(state.opt_state, optimizer.init(params), rtol=0, atol=0)
    again, _ = jaxnn.fit(net, state, x, t, optimizer=optimizer, batch_size=8, epochs=0)
    assert again.epoch == 0



def _planted(act, n=20):
    net = jaxnn.Network.from_sizes([3, 6, 2], [act, jaxnn.Identity()], jaxnn.MSELoss())
    kp, kx, kt = jax.random.split(jax.random.key(5), 3)
    return net, net.init(kp, bias_init="normal"), jax.random.normal(kx, (n, 3)), jax.random.normal(kt, (n, 2))


def _epoch_batches(x, t, key, epochs, batch_size):
    """The minibatches of fit's documented order, ``permutation(fold_in(key, e), n)``, in a plain loop."""
    n, out = x.shape[0], []
    for e in range(epochs):
        order = jax.random.permutation(jax.random.fold_in(key, e), n)
        out += [(x[order[s : s + batch_size]], t[order[s : s + batch_size]]) for s in range(0, n, batch_size)]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 6])
def test_fit_manual_runs_the_hand_written_recursion(batch_size):
    """Guards against fit's gradients="manual" computing its gradients with jax.value_and_grad.

    With a planted wrong derivative, manual fit equals a plain loop of
    ``net.backprop`` (which carries the bug) and differs from autodiff fit.
    """
    net, params, x, t = _planted(TanhWrongDerivative())
    key, lr = jax.random.key(2), 0.05
    kwargs = dict(optimizer=optax.sgd(lr), batch_size=batch_size, epochs=2, key=key, batch_split=1)
    manual, _ = jaxnn.fit(net, params, x, t, gradients="manual", **kwargs)
    auto, _ = jaxnn.fit(net, params, x, t, gradients="autodiff", **kwargs)
    batches = _epoch_batches(x, t, key, 2, batch_size)
    assert_trees_close(manual.params, sgd_loop(net, params, batches, lr), rtol=1e-11, atol=1e-13)
    assert max_abs_diff(manual.params, auto.params) > 1e-3  # the planted bug shows


@pytest.mark.slow
@pytest.mark.mutation
def test_fit_manual_never_calls_autodiff():
    """Guards against fit's manual path calling jax.grad: an activation that raises when differentiated."""
    net, params, x, t = _planted(TanhNoAutodiff())
    kwargs = dict(optimizer=optax.sgd(0.05), batch_size=5, epochs=2, key=jax.random.key(3))
    state, _ = jaxnn.fit(net, params, x, t, **kwargs)
    expected = sgd_loop(net, params, _epoch_batches(x, t, jax.random.key(3), 2, 5), 0.05)
    assert_trees_close(state.params, expected, rtol=1e-11, atol=1e-13)
    with pytest.raises(AutodiffCalled):
        jaxnn.fit(net, params, x, t, gradients="autodiff", **kwargs)


@pytest.mark.slow
def test_fit_gives_the_optimizer_the_parameters():
    """Guards against ``optimizer.update(grads, state)`` without ``params``: optax.adamw's weight decay
    reads them. Checked against AdamW written out in a plain loop."""
    net, params, x, t = _planted(jaxnn.Tanh())
    key, lr, wd = jax.random.key(4), 0.02, 0.5
    state, _ = jaxnn.fit(net, params, x, t, optimizer=optax.adamw(lr, weight_decay=wd), batch_size=8, epochs=2,
                         key=key, batch_split=1)
    expected = adamw_loop(net, params, _epoch_batches(x, t, key, 2, 8), lr, wd)
    assert_trees_close(state.params, expected, rtol=1e-10, atol=1e-12)
