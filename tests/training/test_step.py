"""One training step: manual equals autodiff, jitted, donation, the batch split."""


import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
import jaxnn.training._step as step_module
from tests.helpers import (AutodiffCalled, TanhNoAutodiff, TanhWrongDerivative, adamw_loop, assert_trees_close,
                           max_abs_diff, quadrant_problem, sgd_loop, small_problem)


@pytest.mark.slow
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


@pytest.mark.slow
def test_train_step_is_jitted_and_loss_is_before_the_update():
    net, params, x, t = quadrant_problem(8)
    optimizer = optax.sgd(0.1)
    step = jaxnn.make_train_step(net, optimizer)
    new, _, loss = step(params, optimizer.init(params), x, t)
    np.testing.assert_allclose(loss, net.loss(params, x, t), rtol=1e-12)
    assert net.loss(new, x, t) < loss
    assert hasattr(step, "lower")  # a jax.jit-wrapped function


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


@pytest.mark.slow
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



def _planted_problem(act, n=16, seed=0):
    net = jaxnn.Network.from_sizes([3, 6, 2], [act, jaxnn.Identity()], jaxnn.MSELoss())
    kp, kx, kt = jax.random.split(jax.random.key(seed), 3)
    return net, net.init(kp, bias_init="normal"), jax.random.normal(kx, (n, 3)), jax.random.normal(kt, (n, 2))


@pytest.mark.parametrize("batch", [None, 8])
def test_the_manual_step_runs_the_hand_written_recursion(batch):
    """Guards against gradients="manual" computing its gradients with jax.value_and_grad.

    A planted wrong derivative (f' = 1 - tanh instead of 1 - tanh^2) is seen
    only by the hand-written recursion: the manual step must follow a plain
    loop over ``net.backprop`` with that bug, and so differ from autodiff.
    """
    net, params, x, t = _planted_problem(TanhWrongDerivative())
    x, t = (x[0], t[0]) if batch is None else (x[:batch], t[:batch])
    lr, steps = 0.1, 5
    optimizer = optax.sgd(lr)
    results = {}
    for mode in ("manual", "autodiff"):
        step = jaxnn.make_train_step(net, optimizer, gradients=mode, batch_split=1)
        p, state = params, optimizer.init(params)
        for _ in range(steps):
            p, state, _ = step(p, state, x, t)
        results[mode] = p
    assert_trees_close(results["manual"], sgd_loop(net, params, [(x, t)] * steps, lr), rtol=1e-12, atol=1e-14)
    autodiff_loop = sgd_loop(net, params, [(x, t)] * steps, lr, grad=jax.grad(net.loss))
    assert_trees_close(results["autodiff"], autodiff_loop, rtol=1e-12, atol=1e-14)
    assert max_abs_diff(results["manual"], results["autodiff"]) > 1e-3  # the planted bug shows


@pytest.mark.parametrize("batch_split", [1, 2])
def test_the_manual_step_never_calls_autodiff(batch_split):
    """Guards against gradients="manual" calling jax.grad: an activation that raises when differentiated.

    The manual step traces and trains (equal to a plain ``net.backprop``
    loop); the autodiff step, which must differentiate it, raises.
    """
    net, params, x, t = _planted_problem(TanhNoAutodiff())
    optimizer = optax.sgd(0.1)
    step = jaxnn.make_train_step(net, optimizer, gradients="manual", batch_split=batch_split)
    p, _, loss = step(params, optimizer.init(params), x, t)
    assert_trees_close(p, sgd_loop(net, params, [(x, t)], 0.1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss, net.loss(params, x, t), rtol=1e-12)
    with pytest.raises(AutodiffCalled):
        jaxnn.make_train_step(net, optimizer, gradients="autodiff")(params, optimizer.init(params), x, t)


@pytest.mark.slow
@pytest.mark.mutation
@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
def test_optimizers_that_read_the_parameters_get_them(gradients):
    """Guards against the step calling ``optimizer.update(grads, state)`` without ``params``.

    Weight decay (``optax.add_decayed_weights``, ``optax.adamw``) reads the
    parameters; each is checked against the update written out by hand.
    """
    net, params, x, t = _planted_problem(jaxnn.Tanh())
    batches = [(x[:8], t[:8]), (x[8:], t[8:])] * 3
    lr, wd = 0.05, 0.3
    cases = [
        (optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr)),
         lambda: sgd_loop(net, params, batches, lr, grad=lambda p, x, t: jax.tree.map(
             lambda g, w: g + wd * w, net.backprop(p, x, t), p))),
        (optax.adamw(lr, weight_decay=wd), lambda: adamw_loop(net, params, batches, lr, wd)),
    ]
    for optimizer, expected in cases:
        step = jaxnn.make_train_step(net, optimizer, gradients=gradients, batch_split=1)
        p, state = params, optimizer.init(params)
        for xb, tb in batches:
            p, state, _ = step(p, state, xb, tb)
        assert_trees_close(p, expected(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("optimizer, fix", [(0.1, r"; to use 0.1 as a learning rate pass optax.sgd\(0.1\)$"),
                                            (optax.sgd, r"; call it first, e.g. optax.sgd\(0.1\) rather than optax.sgd$"),
                                            ("adam", r", e.g. optax.sgd\(0.1\) or optax.adam\(1e-3\)$")])
def test_an_optimizer_that_is_no_transformation_is_named_with_the_fix(optimizer, fix):
    """Guards against the optimizer check letting anything through (its first test inverted)."""
    net, _, _, _ = small_problem()
    with pytest.raises(TypeError, match=r"^optimizer must be an optax GradientTransformation \(with init and update\), "
                                        r"got .*" + fix):
        jaxnn.make_train_step(net, optimizer)


def test_the_step_has_jits_ahead_of_time_methods():
    """Guards against the step losing ``lower``/``trace``/``eval_shape`` (compiling ahead of time, or reading the
    output shapes without running it)."""
    net, params, x, t = small_problem()
    optimizer = optax.sgd(0.1)
    step = jaxnn.make_train_step(net, optimizer)
    opt_state = optimizer.init(params)
    compiled = step.lower(params, opt_state, x, t).compile()
    new_params, _, loss = compiled(params, opt_state, x, t)
    assert_trees_close(new_params, step(params, opt_state, x, t)[0], 0, 0)
    assert step.eval_shape(params, opt_state, x, t)[2].shape == () == loss.shape
    assert step.trace(params, opt_state, x, t).jaxpr is not None


def test_an_optimizer_needs_both_init_and_update():
    """Guards against ``or`` for ``and`` in the duck-typed optimizer check."""
    net, _, _, _ = small_problem()
    for half in (types.SimpleNamespace(init=lambda p: ()), types.SimpleNamespace(update=lambda g, s, p=None: (g, s))):
        with pytest.raises(TypeError, match=r"optimizer must be an optax GradientTransformation"):
            jaxnn.make_train_step(net, half)


@pytest.mark.parametrize("batch_split", ["four", "", 0, 2.0])
def test_batch_split_is_auto_or_a_positive_int(batch_split):
    """Guards against any string passing for ``"auto"`` (``or`` for ``and`` in the check)."""
    net, _, _, _ = small_problem()
    with pytest.raises((TypeError, ValueError), match="batch_split must be a positive int"):
        jaxnn.make_train_step(net, optax.sgd(0.1), batch_split=batch_split)


def test_auto_asks_auto_batch_split_with_the_batchs_rows(monkeypatch):
    """Guards against ``"auto"`` never consulting :func:`jaxnn.training.auto_batch_split` for a batch (the
    test of the batch's rank inverted), and a batch split ``k`` ways equal to k parts averaged by hand."""
    asked = []
    monkeypatch.setattr(step_module, "auto_batch_split", lambda rows, *a, **k: asked.append(rows) or 2)
    net = jaxnn.Network.from_sizes([3, 7, 2], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    _, _, x, t = small_problem(n=8)
    params = net.init(jax.random.key(1))
    optimizer = optax.sgd(0.5)
    new, _, loss = jaxnn.make_train_step(net, optimizer)(params, optimizer.init(params), x, t)
    assert asked == [8]
    halves = [net.value_and_backprop(params, x[i:i + 4], t[i:i + 4]) for i in (0, 4)]
    grads = jax.tree.map(lambda a, b: (a + b) / 2, halves[0][1], halves[1][1])
    assert_trees_close(new, jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), 1e-14, 1e-14)
    np.testing.assert_allclose(loss, (halves[0][0] + halves[1][0]) / 2, rtol=1e-14)


def test_a_batch_that_does_not_divide_is_not_split():
    """Guards against ``and`` for ``or`` in the split's condition: 8 rows in 3 parts cannot be split evenly,
    so the step computes the whole batch's gradient (as with ``batch_split=1``)."""
    net, params, x, t = small_problem(n=8)
    optimizer = optax.sgd(0.5)
    state = optimizer.init(params)
    whole = jaxnn.make_train_step(net, optimizer, batch_split=1)(params, state, x, t)
    three = jaxnn.make_train_step(net, optimizer, batch_split=3)(params, state, x, t)
    assert_trees_close(three, whole, 0, 0)


def test_the_step_converts_lists_and_names_boolean_data():
    """Guards against the data conversion: Python lists train like arrays; boolean inputs and targets are
    refused with the fix for each (targets may be labels, inputs must be cast)."""
    net, params, x, t = small_problem(n=8)
    optimizer = optax.sgd(0.5)
    state = optimizer.init(params)
    step = jaxnn.make_train_step(net, optimizer, batch_split=1)
    assert_trees_close(step(params, state, np.asarray(x).tolist(), np.asarray(t).tolist()),
                       step(params, state, x, t), 0, 0)
    with pytest.raises(TypeError, match=r"^x must hold numbers, got dtype bool; cast it, e\.g\. x\.astype\(float\)$"):
        step(params, state, np.ones((8, 3), bool), t)
    with pytest.raises(TypeError, match=r"^t must hold numbers, got dtype bool; give integer labels"):
        step(params, state, x, np.ones(8, bool))


def test_without_donate_a_step_with_state_leaves_its_inputs_alive():
    """Guards against buffers donated when ``donate`` is off: the caller's params, optimizer state and
    gradient state must stay readable after the step."""
    net, params, x, t = small_problem(n=8)
    optimizer = optax.adam(0.1)
    source = jaxnn.rules.FeedbackAlignment()
    grad_state = source.init(jax.random.key(0), net, params)
    opt_state = optimizer.init(params)
    step = jaxnn.make_train_step(net, optimizer, gradients=source, batch_split=1)
    step(params, opt_state, x, t, grad_state)
    for leaf in jax.tree.leaves((params, opt_state, grad_state)):
        assert not leaf.is_deleted()
        np.asarray(leaf)
