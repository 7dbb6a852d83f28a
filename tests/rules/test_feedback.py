"""Feedback alignment, sign symmetry and Kolen-Pollack: exact identities with backprop, in float64.

Tolerances: 1e-12 relative, with an absolute floor of 1e-12 times the
largest entry (entries that cancel to ~0 carry only rounding).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

import jaxnn
from tests.helpers import examples
from jaxnn.rules import FeedbackAlignment, KolenPollack, SignSymmetry

from tests.rules.problems import TOL, assert_close, problems, reference, value_and_grad

FA, SS, KP = FeedbackAlignment(), SignSymmetry(), KolenPollack(decay=0.01)


def transposes(params):
    return {i: W.T for i, (W, _) in enumerate(params) if i > 0}


def weights(params):
    """Kolen-Pollack's state that is backprop: ``B_i^T = W_i``, kept in W's layout."""
    return {i: W for i, (W, _) in enumerate(params) if i > 0}


@pytest.mark.slow
@pytest.mark.mutation
@settings(max_examples=examples(15), deadline=None)
@given(problems())
def test_feedback_alignment_with_transposes_is_backprop(problem):
    net, params, x, t, _ = problem
    (bp_loss, bp), (ad_loss, ad) = reference(net, params, x, t)
    for rule, exact in ((FA, transposes(params)), (KP, weights(params))):
        loss, grads, state = value_and_grad(rule, net, params, exact, x, t)
        assert_close(grads, bp)
        assert_close(grads, ad)
        np.testing.assert_allclose(loss, ad_loss, rtol=TOL)  # the true loss
        assert_close(state, exact)  # value_and_grad leaves the matrices alone


@pytest.mark.slow
@settings(max_examples=examples(15), deadline=None)
@given(problems())
def test_sign_symmetry_is_feedback_alignment_through_signs(problem):
    net, params, x, t, _ = problem
    signs = {i: jnp.sign(W).T for i, (W, _) in enumerate(params) if i > 0}
    loss, grads, state = value_and_grad(SS, net, params, (), x, t)
    fa_loss, fa_grads, _ = value_and_grad(FA, net, params, signs, x, t)
    assert state == ()
    assert_close(grads, fa_grads)
    np.testing.assert_allclose(loss, fa_loss, rtol=TOL)


@pytest.mark.slow
@settings(max_examples=examples(15), deadline=None)
@given(problems())
def test_last_layer_is_backprop_and_only_the_transport_differs(problem):
    net, params, x, t, seed = problem
    (_, bp), _ = reference(net, params, x, t)
    for rule in (FA, SS, KP):
        state = rule.init(jax.random.key(seed), net, params)
        _, grads, _ = value_and_grad(rule, net, params, state, x, t)
        assert_close(grads[-1], bp[-1])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.adam(0.01)], ids=["sgd", "adam"])
@settings(max_examples=examples(8), deadline=None)
@given(problem=problems(min_layers=2))
def test_kolen_pollack_step_gives_the_feedback_the_transposed_update(problem, optimizer):
    net, params, x, t, seed = problem
    state = KP.init(jax.random.key(seed), net, params)

    @jax.jit
    def step(params, state, opt_state):  # one training step, written out
        loss, grads, state = KP.value_and_grad(net, params, state, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        raw = updates
        updates, state = KP.after_update(net, params, state, updates)
        return optax.apply_updates(params, updates), state, raw, grads

    opt_state = optimizer.init(params)
    new_params, new_state, raw, grads = step(params, state, opt_state)
    # The optimizer saw the rule's gradients: its updates are those of a plain optax step.
    assert_close(raw, optimizer.update(grads, opt_state, params)[0])
    d = KP.decay
    for i, ((W, b), (W_new, b_new), (U, u)) in enumerate(zip(params, new_params, raw)):
        assert_close(W_new, W + U - d * W)
        assert_close(b_new, b + u)  # biases do not decay
        if i > 0:  # KP keeps B_i^T, in W's layout
            assert_close(new_state[i], state[i] + U - d * state[i])
            assert_close(W_new - new_state[i], (1 - d) * (W - state[i]))
            assert_close(KP.transport_matrices(net, new_params, new_state)[i], new_state[i].T)
    assert set(new_state) == set(state)


@pytest.mark.slow
def test_kolen_pollack_feedback_converges_to_transposes(getkey):
    net = jaxnn.Network.from_sizes((4, 8, 8, 3), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    params = net.init(getkey())
    rule, optimizer = KolenPollack(decay=0.05), optax.adam(0.01)
    x, t = jax.random.normal(getkey(), (32, 4)), jnp.arange(32) % 3

    def step(carry, _):
        params, state, opt_state = carry
        _, grads, state = rule.value_and_grad(net, params, state, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        updates, state = rule.after_update(net, params, state, updates)
        return (optax.apply_updates(params, updates), state, opt_state), None

    state = rule.init(getkey(), net, params)
    before = jaxnn.rules.alignment(rule, net, params, state, x, t).feedback
    (params, state, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, length=200))(
        (params, state, optimizer.init(params)))
    after = jaxnn.rules.alignment(rule, net, params, state, x, t).feedback
    assert jnp.all(before[1:] > 60) and jnp.all(after[1:] < 1), (before, after)


@pytest.mark.slow
def test_one_example_batch_vmap_and_seeds(getkey):
    net = jaxnn.Network.from_sizes((3, 5, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(getkey())
    x, t = jax.random.normal(getkey(), (6, 3)), jax.random.normal(getkey(), (6, 2))
    for rule in (FA, SS, KP):
        state = rule.init(getkey(), net, params)
        per_example = jax.jit(jax.vmap(lambda x, t: rule.value_and_grad(net, params, state, x, t)[1]))(x, t)
        assert [g.shape for g in jax.tree.leaves(per_example)] == [(6, 5, 3), (6, 5), (6, 4, 5), (6, 4), (6, 2, 4), (6, 2)]
        _, batch, _ = value_and_grad(rule, net, params, state, x, t)
        assert_close(batch, jax.tree.map(lambda g: g.mean(0), per_example))
        if rule is SS:  # no state to draw
            continue
        states = jax.vmap(rule.init, in_axes=(0, None, None))(jax.random.split(getkey(), 3), net, params)
        losses, grads, _ = jax.jit(jax.vmap(lambda s: rule.value_and_grad(net, params, s, x, t)))(states)
        assert losses.shape == (3,) and grads[0][0].shape == (3, 5, 3)
        assert states[1].shape == ((3, 4, 5) if rule is KP else (3, 5, 4))
        assert_close(grads[0][0][1], value_and_grad(rule, net, params, jax.tree.map(lambda s: s[1], states), x, t)[1][0][0])


@pytest.mark.slow
def test_initial_feedback_has_the_shapes_dtype_and_scale_of_transposes(getkey):
    net = jaxnn.Network.from_sizes((100, 200, 50, 10), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(getkey(), dtype=jnp.float32)
    state = FA.init(getkey(), net, params)
    assert {i: (B.shape, B.dtype) for i, B in state.items()} == {
        1: ((200, 50), jnp.float32), 2: ((50, 10), jnp.float32)}
    # Kolen-Pollack draws the same matrices and keeps their transposes, in W's layout.
    key = getkey()
    assert_close(KP.init(key, net, params), {i: B.T for i, B in FA.init(key, net, params).items()})
    for i, B in state.items():  # LeCun normal, like W: variance 1 / ins of layer i
        np.testing.assert_allclose(float(jnp.std(B)), float(jnp.std(params[i][0])), rtol=0.15)
    assert FA.init(jax.random.key(3), net, params)[1][0, 0] == FA.init(jax.random.key(3), net, params)[1][0, 0]


def test_wrong_feedback_matrices_are_named(getkey):
    net = jaxnn.Network.from_sizes((3, 5, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(getkey())
    x, t = jnp.ones(3), jnp.zeros(2)
    good = FA.init(getkey(), net, params)
    with pytest.raises(ValueError, match=r"state\[2\], layer 2's feedback matrix .* shape \(4, 2\) .*float64.* got shape \(2, 4\)"):
        FA.value_and_grad(net, params, {**good, 2: good[2].T}, x, t)
    with pytest.raises(ValueError, match=r"state\[1\].*dtype float64.*got shape \(5, 4\) and dtype float32"):
        jax.jit(FA.value_and_grad, static_argnums=0)(net, params, {**good, 1: good[1].astype(jnp.float32)}, x, t)
    other = jaxnn.Network.from_sizes((3, 5, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    kp = KP.init(getkey(), net, params)
    with pytest.raises(ValueError, match=r"state\[2\], layer 2's feedback matrix for KolenPollack, must have shape \(2, 4\) \(KolenPollack keeps B_i\^T, in W_i's layout"):
        KP.value_and_grad(net, params, {**kp, 2: kp[2].T}, x, t)
    with pytest.raises(ValueError, match=r"layers \[1\] but KolenPollack on this network needs exactly layers \[1, 2\].*another network"):
        KP.value_and_grad(net, params, KP.init(getkey(), other, other.init(getkey())), x, t)
    with pytest.raises(TypeError, match="dict"):
        FA.check_state(net, params, [good[1], good[2]], "grad_state")
    with pytest.raises(TypeError, match=r"must be \(\) for SignSymmetry"):
        SS.value_and_grad(net, params, good, x, t)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        KolenPollack(decay=1.0)
    with pytest.raises(TypeError, match="decay must be a real number"):
        KolenPollack(decay="0.1")
    with pytest.raises(TypeError, match="PRNG key"):
        FA.init(0, net, params)


def test_rules_are_hashable_sources_that_compare_by_settings():
    assert jaxnn.rules.as_source(KolenPollack(0.01)) == KP and hash(KolenPollack(0.01)) == hash(KP)
    assert KolenPollack(0.02) != KP and FeedbackAlignment() == FA
