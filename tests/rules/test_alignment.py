"""jaxnn.rules.alignment (angles to backprop) and jaxnn.plotting.alignment_angles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.rules import Backprop, DirectFeedbackAlignment, FeedbackAlignment, KolenPollack, SignSymmetry, alignment

angles = jax.jit(alignment, static_argnums=(0, 1))


@pytest.fixture
def problem(getkey):
    net = jaxnn.Network.from_sizes((4, 6, 5, 3), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    params = net.init(getkey())
    return net, params, jax.random.normal(getkey(), (8, 4)), jnp.arange(8) % 3


def degrees(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))


def test_backprop_and_feedback_through_transposes_are_aligned(problem):
    net, params, x, t = problem
    got = angles(Backprop(), net, params, (), x, t)
    np.testing.assert_allclose(got.update, 0, atol=1e-5)
    assert jnp.all(jnp.isnan(got.feedback))  # backprop has no matrices of its own
    fa = angles(FeedbackAlignment(), net, params, {i: W.T for i, (W, _) in enumerate(params) if i}, x, t)
    np.testing.assert_allclose(fa.update, 0, atol=1e-5)
    assert jnp.isnan(fa.feedback[0]) and np.allclose(fa.feedback[1:], 0, atol=1e-5)
    assert fa.update.dtype == params[0][0].dtype


def test_angles_are_those_of_the_updates_and_matrices(problem, getkey):
    net, params, x, t = problem
    grads = jax.grad(net.loss)(params, x, t)
    for rule in (FeedbackAlignment(), KolenPollack(), SignSymmetry(), DirectFeedbackAlignment()):
        state = rule.init(getkey(), net, params)
        got = angles(rule, net, params, state, x, t)
        _, updates, _ = rule.value_and_grad(net, params, state, x, t)
        want = [degrees(u[0], g[0]) for u, g in zip(updates, grads)]
        np.testing.assert_allclose(got.update[:-1], want[:-1], rtol=1e-9)
        assert got.update[-1] < 1e-5  # the output layer is backprop's
        W1, W2 = params[1][0], params[2][0]
        if isinstance(rule, SignSymmetry):
            want_fb = [np.nan, degrees(jnp.sign(W1), W1), degrees(jnp.sign(W2), W2)]
        elif isinstance(rule, KolenPollack):  # it keeps B_i^T, in W's layout
            want_fb = [np.nan, degrees(state[1], W1), degrees(state[2], W2)]
        elif isinstance(rule, DirectFeedbackAlignment):  # only B_1 stands where a W^T would: W_2^T
            want_fb = [np.nan, np.nan, degrees(state[1], W2.T)]
        else:
            want_fb = [np.nan, degrees(state[1], W1.T), degrees(state[2], W2.T)]
        np.testing.assert_allclose(got.feedback, want_fb, rtol=1e-9)


def test_one_example_and_a_zero_update(problem):
    net, params, x, t = problem
    got = alignment(Backprop(), net, params, (), x[0], t[0])
    assert got.update.shape == got.feedback.shape == (3,)
    zero = [(jnp.zeros_like(W), b) for W, b in params]  # zero weights: the hidden layers' dW are 0
    assert jnp.isnan(alignment(Backprop(), net, zero, (), x, t).update[1])
    with pytest.raises(TypeError, match="GradientSource"):
        alignment("manual", net, params, (), x, t)


def test_alignment_angles_plot():
    import matplotlib.figure

    from jaxnn.plotting import alignment_angles

    history = {"loss": np.ones(4), "align_update/0": np.array([80.0, 70.0, 60.0, 50.0]),
               "align_update/1": np.zeros(4), "align_feedback/0": np.full(4, np.nan),
               "align_feedback/1": np.array([90.0, np.nan, 40.0, 30.0])}
    ax = matplotlib.figure.Figure().add_subplot()
    assert alignment_angles(history, ax=ax) is ax
    labels = [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]
    assert labels == ["update, layer 0", "update, layer 1", "feedback, layer 1"]  # all-NaN left out
    assert ax.get_legend() is not None and ax.get_ylim()[1] >= 90
    np.testing.assert_array_equal(ax.lines[2].get_xdata(), [1, 3, 4])
    with pytest.raises(ValueError, match="no alignment keys"):
        alignment_angles({"loss": np.ones(3)}, ax=ax)
    with pytest.raises(TypeError, match="one run"):
        alignment_angles({"a": history}, ax=ax)
    with pytest.raises(TypeError, match="Axes"):
        alignment_angles(history, ax="left")
