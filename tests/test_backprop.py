"""The hand-written recursion against jax.grad on random architectures.

Tolerances: float64 entries agree to 1e-12 relative, with an absolute floor of
1e-12 times the largest gradient entry (entries that cancel to ~0 carry only
rounding); float32 the same with 2e-5.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnn

from tests.helpers import assert_trees_close, examples

TOL = {jnp.float64: 1e-12, jnp.float32: 2e-5}
ACTIVATIONS = [jaxnn.LeakyReLU(), jaxnn.LeakyReLU(0.3), jaxnn.ReLU(), jaxnn.Sigmoid(), jaxnn.Tanh(),
               jaxnn.Identity(), jaxnn.Softmax()]


@st.composite
def problems(draw):
    """A random network with its params, inputs and targets."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
    loss = draw(st.sampled_from([jaxnn.MSELoss(), jaxnn.CrossEntropyLoss(), jaxnn.BinaryCrossEntropyLoss()]))
    binary = isinstance(loss, jaxnn.BinaryCrossEntropyLoss)
    if binary:
        sizes[-1] = 1  # one logit
    acts = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=len(sizes) - 1, max_size=len(sizes) - 1))
    batch = draw(st.sampled_from([None, 1, 5]))
    dtype = draw(st.sampled_from([jnp.float64, jnp.float32]))
    labels = not isinstance(loss, jaxnn.MSELoss) and draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    net = jaxnn.Network.from_sizes(sizes, acts, loss)
    # NumPy draws: eager jax.random would compile a kernel for every new shape.
    rng = np.random.default_rng(seed)
    params = [
        (jnp.asarray(rng.normal(size=(o, i)) / np.sqrt(i), dtype), jnp.asarray(rng.normal(size=o) / 2, dtype))
        for i, o in zip(sizes[:-1], sizes[1:])
    ]
    lead = () if batch is None else (batch,)
    x = jnp.asarray(rng.normal(size=lead + (sizes[0],)), dtype)
    if labels:
        t = jnp.asarray(rng.integers(0, 2 if binary else sizes[-1], size=lead))
    elif binary:
        t = jnp.asarray(rng.uniform(size=lead + (1,)), dtype)
    elif isinstance(loss, jaxnn.CrossEntropyLoss):
        t = jnp.asarray(rng.dirichlet(np.ones(sizes[-1]), size=lead or None), dtype)
    else:
        t = jnp.asarray(rng.normal(size=lead + (sizes[-1],)), dtype)
    return net, params, x, t, dtype


def assert_grads_close(manual, auto, dtype):
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(auto))
    assert_trees_close(manual, auto, rtol=TOL[dtype], atol=TOL[dtype] * max(scale, 1e-30))


@functools.partial(jax.jit, static_argnums=0)
def manual_and_autodiff(net, params, x, t):
    return net.value_and_backprop(params, x, t), jax.value_and_grad(net.loss)(params, x, t)


@settings(max_examples=examples(60), deadline=None)
@given(problems())
def test_jitted_backprop_equals_jax_grad(problem):
    net, params, x, t, dtype = problem
    (loss, manual), (auto_loss, auto) = manual_and_autodiff(net, params, x, t)
    assert all(g.dtype == dtype for g in jax.tree.leaves(manual))
    assert_grads_close(manual, auto, dtype)
    np.testing.assert_allclose(loss, auto_loss, rtol=TOL[dtype])


@pytest.mark.slow
@settings(max_examples=examples(5), deadline=None)
@given(problems())
def test_backprop_equals_jax_grad_without_jit(problem):
    net, params, x, t, dtype = problem
    assert_grads_close(net.backprop(params, x, t), jax.grad(net.loss)(params, x, t), dtype)


@pytest.mark.slow
@settings(max_examples=examples(10), deadline=None)
@given(problems())
def test_trace_dxs_are_gradients_with_respect_to_each_layer_input(problem):
    net, params, x, t, dtype = problem
    trace = jax.jit(net.backprop_trace)(params, x, t)
    assert len(trace.xs) == len(trace.dxs) == len(net.layers) + 1 and len(trace.ys) == len(net.layers)
    np.testing.assert_allclose(trace.xs[-1], jax.jit(net.forward)(params, x), rtol=TOL[dtype])
    dx0 = jax.jit(jax.grad(net.loss, argnums=1))(params, x, t)
    assert_grads_close(trace.dxs[0], dx0, dtype)
    # The last entry starts the recursion: the loss's own derivative.
    scale = 1 if x.ndim == 1 else x.shape[0]
    np.testing.assert_allclose(trace.dxs[-1] * scale, net.loss_fn.dloss(trace.xs[-1], t), rtol=TOL[dtype])


@pytest.mark.slow
@settings(max_examples=examples(10), deadline=None)
@given(problems())
def test_batch_gradient_is_mean_of_per_example_gradients(problem):
    net, params, x, t, dtype = problem
    if x.ndim == 1:
        x, t = x[None], t[None]
    per_example = jax.jit(jax.vmap(net.backprop, in_axes=(None, 0, 0)))(params, x, t)
    loop = [jax.jit(net.backprop)(params, xi, ti) for xi, ti in zip(x, t)]
    assert_grads_close(per_example, jax.tree.map(lambda *g: jnp.stack(g), *loop), dtype)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example)
    assert_grads_close(jax.jit(net.backprop)(params, x, t), mean, dtype)


@pytest.mark.slow
def test_per_example_gradients_with_jit_and_vmap(getkey):
    net = jaxnn.Network.from_sizes([3, 4, 2], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(getkey())
    x, t = jax.random.normal(getkey(), (8, 3)), jnp.arange(8) % 2
    per_example = jax.jit(jax.vmap(net.backprop, in_axes=(None, 0, 0)))(params, x, t)
    expected = jax.vmap(jax.grad(net.loss), in_axes=(None, 0, 0))(params, x, t)
    assert [g.shape for g in jax.tree.leaves(per_example)] == [(8, 4, 3), (8, 4), (8, 2, 4), (8, 2)]
    assert_grads_close(per_example, expected, jnp.float64)


@pytest.mark.slow
@pytest.mark.parametrize("act", [jaxnn.ReLU(), jaxnn.LeakyReLU(0.1), jaxnn.LeakyReLU(0.3)], ids=repr)
def test_pre_activation_exactly_zero(act):
    """At the kink manual and autodiff agree exactly, because f and df share one predicate."""
    net = jaxnn.Network.from_sizes([3, 4, 2], [act, jaxnn.Identity()], jaxnn.MSELoss())
    W0 = jnp.array([[1.0, -1.0, 0.0], [2.0, 0.0, -2.0], [0.0, 0.0, 0.0], [1.0, 1.0, -2.0]])
    params = [(W0, jnp.zeros(4)), (jnp.ones((2, 4)), jnp.array([0.5, -0.5]))]
    x = jnp.ones(3)  # every hidden pre-activation is exactly 0
    trace = net.backprop_trace(params, x, jnp.zeros(2))
    assert jnp.all(trace.ys[0] == 0)
    manual, auto = trace.grads, jax.grad(net.loss)(params, x, jnp.zeros(2))
    for m, a in zip(jax.tree.leaves(manual), jax.tree.leaves(auto)):
        np.testing.assert_array_equal(m, a)
    # And the kink's slope really is used: alpha for LeakyReLU, 0 for ReLU.
    slope = float(act.df(jnp.zeros(())))
    np.testing.assert_allclose(manual[0][1], slope * (params[1][0].T @ trace.dxs[-1]))


@pytest.mark.slow
def test_large_inputs_keep_gradients_finite():
    net = jaxnn.Network.from_sizes([2, 3, 3], [jaxnn.Sigmoid(), jaxnn.Softmax()], jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0), dtype=jnp.float32)
    x = jnp.array([[1e4, -1e4], [-1e4, 1e4]], jnp.float32)
    loss, grads = net.value_and_backprop(params, x, jnp.array([0, 2]))
    assert jnp.isfinite(loss) and all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))
    logits_net = jaxnn.Network.from_sizes([2, 3], jaxnn.Identity(), jaxnn.CrossEntropyLoss())
    lp = [(jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], jnp.float32), jnp.zeros(3, jnp.float32))]
    loss, grads = logits_net.value_and_backprop(lp, x, jnp.array([0, 2]))
    assert jnp.isfinite(loss) and all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_binary_cross_entropy_with_huge_logits_keeps_exact_gradients():
    """Logits of +-1e3 and +-40: finite, and equal to jax.grad to float64's precision."""
    net = jaxnn.Network.from_sizes([2, 3, 1], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.BinaryCrossEntropyLoss())
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for scale in (1e3, 40.0):
        params = [(jnp.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]]), jnp.zeros(3)),
                  (jnp.array([[scale, scale, 0.0]]) / jnp.tanh(3.0), jnp.zeros(1))]
        t = jnp.array([1, 0, 0, 1])  # two logits of +-scale right, two wrong
        trace = net.backprop_trace(params, x, t)
        np.testing.assert_allclose(trace.xs[-1][:, 0], [scale, scale, -scale, -scale], rtol=1e-12)
        loss, auto = jax.value_and_grad(net.loss)(params, x, t)
        assert jnp.isfinite(trace.loss) and all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(trace.grads))
        np.testing.assert_allclose(trace.loss, loss, rtol=1e-12)
        np.testing.assert_allclose(trace.loss, scale / 2, rtol=1e-12)  # the wrong two cost scale each
        assert_grads_close(trace.grads, auto, jnp.float64)


def test_grads_keep_the_structure_of_params():
    net = jaxnn.Network.from_sizes([2, 3, 1], jaxnn.Tanh(), jaxnn.MSELoss())
    params = tuple(net.init(jax.random.key(0)))
    grads = net.backprop(params, jnp.ones(2), jnp.zeros(1))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert isinstance(net.backprop(list(params), jnp.ones(2), jnp.zeros(1)), list)


def test_backprop_never_calls_autodiff(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("backprop must not use JAX's autodiff")

    for name in ("grad", "vjp", "value_and_grad", "jacfwd", "jacrev"):
        monkeypatch.setattr(jax, name, forbidden)
    net = jaxnn.Network.from_sizes([2, 3, 2], [jaxnn.Sigmoid(), jaxnn.Softmax()], jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    net.backprop(params, jnp.ones((4, 2)), jnp.zeros((4, 2)))
