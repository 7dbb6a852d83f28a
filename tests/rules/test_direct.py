"""Direct feedback alignment: exact identities with backprop in float64, and its errors.

Tolerances: 1e-12 relative, with an absolute floor of 1e-12 times the
largest entry.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

import jaxnn
from tests.helpers import examples
from jaxnn.backprop import Direct, backward, forward_trace
from jaxnn.rules import DirectFeedbackAlignment

from tests.rules.problems import TOL, assert_close, problems, reference, value_and_grad

DFA = DirectFeedbackAlignment()


@pytest.mark.slow
@pytest.mark.mutation
@settings(max_examples=examples(15), deadline=None)
@given(problems(min_layers=2, max_layers=2))
def test_one_hidden_layer_with_the_output_transpose_is_backprop(problem):
    net, params, x, t, _ = problem
    (bp_loss, bp), (_, ad) = reference(net, params, x, t)
    loss, grads, state = value_and_grad(DFA, net, params, {0: params[1][0].T}, x, t)
    assert_close(grads, bp)
    assert_close(grads, ad)
    np.testing.assert_allclose(loss, bp_loss, rtol=TOL)


@pytest.mark.slow
@settings(max_examples=examples(15), deadline=None)
@given(problems(min_layers=2))
def test_output_layer_is_backprop_and_hidden_layers_get_the_output_error(problem):
    net, params, x, t, seed = problem
    (_, bp), _ = reference(net, params, x, t)
    state = DFA.init(jax.random.key(seed), net, params)
    _, grads, _ = value_and_grad(DFA, net, params, state, x, t)
    assert_close(grads[-1], bp[-1])
    # Each hidden layer by hand: db_i = f_i'(y_i) * (B_i e), dW_i = db_i x_i^T.
    xs, ys = forward_trace(net.layers, params, x)
    scale = 1 if x.ndim == 1 else x.shape[0]
    e = net.layers[-1].activation.backward(ys[-1], net.loss_fn.dloss(xs[-1], t) / scale)
    for i, B in state.items():
        sent = B @ e if e.ndim == 1 else e @ B.T
        db = net.layers[i].activation.backward(ys[i], sent)
        dW = jnp.outer(db, xs[i]) if db.ndim == 1 else db.T @ xs[i]
        assert_close(grads[i], (dW, db if db.ndim == 1 else db.sum(0)))


def test_backward_sends_no_error_to_the_input():
    net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    _, ys = forward_trace(net.layers, params, jnp.ones(3))
    dbs, dxs = backward(net.layers, params, ys, jnp.ones(2), Direct([params[1][0].T]))
    assert dxs[0] is None and dxs[1].shape == (4,)
    assert_close(backward(net.layers, params, ys, jnp.ones(2))[0], dbs)


@pytest.mark.slow
def test_deep_tanh_network_learns_from_zero_hidden_weights(getkey):
    """Nøkland's observation: DFA trains even when the hidden weights start at zero."""
    net = jaxnn.Network.from_sizes((4,) + (16,) * 6 + (3,), [jaxnn.Tanh()] * 6 + [jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    params = [(jnp.zeros_like(W), b) if i < 6 else (W, b) for i, (W, b) in enumerate(net.init(getkey()))]
    x = jax.random.normal(getkey(), (64, 4))
    t = jnp.argmax(x[:, :3], axis=1)
    state, optimizer = DFA.init(getkey(), net, params), optax.adam(0.01)

    def step(carry, _):
        params, opt_state = carry
        loss, grads, _ = DFA.value_and_grad(net, params, state, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    _, losses = jax.jit(lambda c: jax.lax.scan(step, c, length=300))((params, optimizer.init(params)))
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])


@pytest.mark.slow
def test_one_example_batch_vmap_and_seeds(getkey):
    net = jaxnn.Network.from_sizes((3, 5, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(getkey())
    x, t = jax.random.normal(getkey(), (6, 3)), jax.random.normal(getkey(), (6, 2))
    state = DFA.init(getkey(), net, params)
    assert {i: B.shape for i, B in state.items()} == {0: (5, 2), 1: (4, 2)}
    per_example = jax.jit(jax.vmap(lambda x, t: DFA.value_and_grad(net, params, state, x, t)[1]))(x, t)
    _, batch, _ = value_and_grad(DFA, net, params, state, x, t)
    assert_close(batch, jax.tree.map(lambda g: g.mean(0), per_example))
    states = jax.vmap(DFA.init, in_axes=(0, None, None))(jax.random.split(getkey(), 3), net, params)
    losses, grads, _ = jax.jit(jax.vmap(lambda s: DFA.value_and_grad(net, params, s, x, t)))(states)
    assert losses.shape == (3,) and states[0].shape == (3, 5, 2)
    assert_close(grads[0][0][2], value_and_grad(DFA, net, params, jax.tree.map(lambda s: s[2], states), x, t)[1][0][0])


def test_bad_networks_and_states_are_named(getkey):
    one_layer = jaxnn.Network.from_sizes((3, 2), jaxnn.Identity(), jaxnn.MSELoss())
    with pytest.raises(ValueError, match=r"needs at least one hidden layer.*jaxnn.rules.Backprop\(\)"):
        DFA.init(getkey(), one_layer, one_layer.init(getkey()))
    net = jaxnn.Network.from_sizes((3, 5, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(getkey())
    good = DFA.init(getkey(), net, params)
    x, t = jnp.ones(3), jnp.zeros(2)
    with pytest.raises(ValueError, match=r"state\[1\], layer 1's feedback matrix .* shape \(4, 2\) \(\(outs_i, outs_last\)\)"):
        DFA.value_and_grad(net, params, {**good, 1: jnp.zeros((2, 4))}, x, t)
    with pytest.raises(ValueError, match=r"dtype float64.*dtype float32"):
        DFA.value_and_grad(net, params, {**good, 0: good[0].astype(jnp.float32)}, x, t)
    with pytest.raises(ValueError, match=r"layers \[0, 1\] but DirectFeedbackAlignment on this network needs exactly layers \[0\]"):
        small = jaxnn.Network.from_sizes((3, 5, 2), jaxnn.Tanh(), jaxnn.MSELoss())
        DFA.value_and_grad(small, small.init(getkey()), good, x, t)
