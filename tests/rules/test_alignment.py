"""jaxnn.rules.alignment (angles to backprop), jaxnn.AlignmentMonitor (them during fit) and the plot of them."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


@pytest.mark.slow
def test_backprop_and_feedback_through_transposes_are_aligned(problem):
    net, params, x, t = problem
    got = angles(Backprop(), net, params, (), x, t)
    np.testing.assert_allclose(got.update, 0, atol=1e-5)
    assert jnp.all(jnp.isnan(got.feedback))  # backprop has no matrices of its own
    fa = angles(FeedbackAlignment(), net, params, {i: W.T for i, (W, _) in enumerate(params) if i}, x, t)
    np.testing.assert_allclose(fa.update, 0, atol=1e-5)
    assert jnp.isnan(fa.feedback[0]) and np.allclose(fa.feedback[1:], 0, atol=1e-5)
    assert fa.update.dtype == params[0][0].dtype


@pytest.mark.slow
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


@pytest.mark.slow
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


TRACES = []


@dataclasses.dataclass(frozen=True)
class CountedFA(FeedbackAlignment):
    """Feedback alignment that counts its traces of ``transport_matrices``, which only the angles use."""

    def transport_matrices(self, net, params, state):
        TRACES.append(1)
        return super().transport_matrices(net, params, state)


class States(jaxnn.Callback):
    """Keeps the state after every epoch."""

    def __init__(self):
        self.states = {}

    def on_epoch_end(self, state, logs):
        self.states[int(state.epoch)] = state


@pytest.fixture
def digits_like(getkey):
    net = jaxnn.Network.from_sizes((6, 10, 8, 3), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    x = jax.random.normal(getkey(), (96, 6))
    t = jnp.argmax(x[:, :3], axis=1)
    return net, net.init(getkey()), x, t


@pytest.mark.slow
def test_monitor_logs_the_angles_of_the_state_every_n_epochs(digits_like, getkey):
    net, params, x, t = digits_like
    rule = CountedFA()
    state = rule.init(getkey(), net, params)
    monitor, states = jaxnn.AlignmentMonitor(net, x[:40], t[:40], every=2), States()
    TRACES.clear()
    final, history = jaxnn.fit(net, jaxnn.TrainState(params, optax.adam(1e-2).init(params), 0, state),
                               x, t, optimizer=optax.adam(1e-2), batch_size=16, epochs=5, key=getkey(),
                               gradients=rule, callbacks=[monitor, states])
    assert len(TRACES) == 1  # one trace (and compile) of the angles for the whole run
    assert set(monitor.logs) <= set(history)
    measured = ~np.isnan(history["align_update/0"])
    np.testing.assert_array_equal(measured, [False, True, False, True, True])  # 2, 4 and the last, 5
    for epoch in (2, 4, 5):
        s = states.states[epoch]
        want = angles(rule, net, s.params, s.grad_state, x[:40], t[:40])
        for i in range(3):
            assert history[f"align_update/{i}"][epoch - 1] == pytest.approx(float(want.update[i]), rel=1e-12)
            got_fb = history[f"align_feedback/{i}"][epoch - 1]
            assert np.isnan(got_fb) if i == 0 else got_fb == pytest.approx(float(want.feedback[i]), rel=1e-12)
    for epoch in (1, 3):
        assert all(np.isnan(history[name][epoch - 1]) for name in monitor.logs)
    TRACES.clear()  # and none in a second run with the same shapes
    jaxnn.fit(net, final, x, t, optimizer=optax.adam(1e-2), batch_size=16, epochs=3, key=getkey(),
              gradients=rule, callbacks=[jaxnn.AlignmentMonitor(net, x[:40], t[:40], every=1)])
    assert TRACES == []


@pytest.mark.slow
def test_monitor_with_backprop_early_stopping_and_the_plot(digits_like, getkey):
    import matplotlib.figure

    from jaxnn.plotting import alignment_angles

    net, params, x, t = digits_like
    monitor = jaxnn.AlignmentMonitor(net, x[:40], t[:40], every=1)
    stop = jaxnn.EarlyStopping(monitor="align_update/0", patience=10, restore_best=False)
    _, history = jaxnn.fit(net, params, x, t, optimizer=optax.adam(1e-2), batch_size=16, epochs=3,
                           key=getkey(), callbacks=[monitor, stop])
    np.testing.assert_allclose([history[f"align_update/{i}"] for i in range(3)], 0, atol=1e-5)
    assert np.all(np.isnan([history[f"align_feedback/{i}"] for i in range(3)]))  # backprop has no matrices
    assert stop.best is not None
    _, history = jaxnn.fit(net, params, x, t, optimizer=optax.adam(1e-2), batch_size=16, epochs=4,
                           key=getkey(), gradients=KolenPollack(0.01),
                           callbacks=[jaxnn.AlignmentMonitor(net, x[:40], t[:40], every=3)])
    ax = alignment_angles(history, ax=matplotlib.figure.Figure().add_subplot())  # fit's history as it is
    lines = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    assert set(lines) == {f"update, layer {i}" for i in range(3)} | {"feedback, layer 1", "feedback, layer 2"}
    np.testing.assert_array_equal(lines["update, layer 0"].get_xdata(), [3, 4])


def test_monitor_checks_its_batch_and_network(digits_like, getkey):
    net, params, x, t = digits_like
    with pytest.raises(ValueError, match=r"x must be a batch, shape \(batch, ins\)"):
        jaxnn.AlignmentMonitor(net, x[0], t[0])
    with pytest.raises(ValueError, match="x"):
        jaxnn.AlignmentMonitor(net, x[:, :4], t)
    with pytest.raises(ValueError, match="every"):
        jaxnn.AlignmentMonitor(net, x, t, every=0)
    other = jaxnn.Network.from_sizes((6, 10, 3), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="another network"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=16, epochs=1,
                  callbacks=[jaxnn.AlignmentMonitor(other, x, t)])
