"""The run over epochs: the documented shuffle, the non-finite guard."""


import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import assert_trees_close, quadrant_problem, sgd_loop


@pytest.mark.slow
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


@pytest.mark.slow
def test_diverging_run_raises_with_the_last_finite_state():
    net = jaxnn.Network.from_sizes([3, 8, 1], [jaxnn.ReLU(), jaxnn.Identity()], jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    x = 10 * jax.random.normal(jax.random.key(1), (64, 3))
    t = 10 * jax.random.normal(jax.random.key(2), (64, 1))
    with pytest.raises(jaxnn.NonFiniteLossError) as info:
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(1.0), batch_size=4, epochs=5)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert f"epoch {err.epoch}, step {err.step} of 16" in str(err)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(err.state.params))
    assert err.state.epoch == err.epoch_start_state.epoch == err.epoch - 1
    # Nothing trained before the failing step is lost.
    assert err.step > 1 and not np.allclose(err.state.params[0][0], err.epoch_start_state.params[0][0])
    # Switched off, the run goes on and reports what happened.
    _, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(1.0), batch_size=4, epochs=2,
                           check_finite=False)
    assert not np.isfinite(history["loss"]).all()



SEEN = []  # the rows of each step's minibatch, in the order the steps ran


def _record(rows):
    SEEN.append(np.atleast_1d(np.asarray(rows)).astype(int).tolist())


@dataclasses.dataclass(frozen=True)
class RecordRows(jaxnn.rules.GradientSource):
    """Backprop that reports each minibatch's first input column (the row's index) to SEEN."""

    def value_and_grad(self, net, params, state, x, t):
        jax.debug.callback(_record, x[..., 0], ordered=True)
        loss, grads = net.value_and_backprop(params, x, t)
        return loss, grads, state


class Every(jaxnn.Callback):
    """Asks for progress every ``k`` steps, so that an epoch runs as several compiled calls."""

    def __init__(self, k):
        self.steps_per_update = k


def _indexed_problem(n):
    """Inputs whose first column is the row's index, so a step shows which rows it saw."""
    net = jaxnn.Network.from_sizes([2, 3, 1], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.MSELoss())
    x = jnp.stack([jnp.arange(n, dtype=jnp.float64), jax.random.normal(jax.random.key(1), (n,))], axis=1)
    t = jax.random.normal(jax.random.key(2), (n, 1))
    return net, net.init(jax.random.key(0)), x, t


def _documented_batches(key, epochs, n, batch_size, first_epoch=0):
    """Each step's rows by fit's documented order: ``permutation(fold_in(key, e), n)``, cut into batches."""
    out = []
    for e in range(first_epoch, first_epoch + epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n))
        out += [order[s : s + batch_size].tolist() for s in range(0, n, batch_size)]
    return out


@pytest.mark.slow
@pytest.mark.mutation
@pytest.mark.parametrize("batch_size", [3, 4, 1])
@pytest.mark.parametrize("chunks", ["whole epochs", "every 1", "every 2", "streamed"])
def test_each_epochs_order_is_the_documented_permutation(batch_size, chunks):
    """Guards against a shuffle that ignores the epoch number (the same order every epoch), a chunk of a
    shuffled epoch that starts at row 0, and any other order than ``permutation(fold_in(key, e), n)``.

    The rows each step saw are recorded and held against the documented
    formula, for batch sizes that do and do not divide n, in one compiled call
    per epoch or in chunks; the trained parameters against a plain loop.
    """
    n, epochs, key = 10, 3, jax.random.key(11)
    net, params, x, t = _indexed_problem(n)
    extra = {"whole epochs": {}, "every 1": dict(callbacks=[Every(1)]), "every 2": dict(callbacks=[Every(2)]),
             "streamed": dict(stream=jaxnn.HostStream(steps_per_chunk=2))}[chunks]
    if chunks == "streamed":
        x, t = np.asarray(x), np.asarray(t)
    SEEN.clear()
    state, _ = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=batch_size, epochs=epochs,
                         key=key, gradients=RecordRows(), batch_split=1, **extra)
    jax.effects_barrier()
    expected = _documented_batches(key, epochs, n, batch_size)
    assert SEEN == expected
    assert_trees_close(state.params, sgd_loop(net, params, [(x[np.asarray(b)], t[np.asarray(b)]) for b in expected], 0.1),
                       rtol=1e-12, atol=1e-14)


def test_a_continued_run_shuffles_by_the_absolute_epoch_number():
    """Guards against the order depending on the epochs run in this call rather than the epoch's number."""
    n, key = 9, jax.random.key(4)
    net, params, x, t = _indexed_problem(n)
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=4, key=key, gradients=RecordRows(), batch_split=1)
    state, _ = jaxnn.fit(net, params, x, t, epochs=2, **kwargs)
    SEEN.clear()
    jaxnn.fit(net, state, x, t, epochs=2, **kwargs)
    jax.effects_barrier()
    assert SEEN == _documented_batches(key, 2, n, 4, first_epoch=2)


def _guarded_problem(kind, bad_row, n=12):
    """A net whose loss is finite on every row but ``bad_row``: a NaN input or a target of 1e300."""
    net = jaxnn.Network.from_sizes([2, 3, 1], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (n, 2))
    t = jax.random.normal(jax.random.key(2), (n, 1))
    if kind == "nan":
        x = x.at[bad_row, 0].set(jnp.nan)
    else:  # (y - 1e300)^2 overflows to +inf while the gradient stays finite
        t = t.at[bad_row, 0].set(1e300)
    return net, params, x, t


@pytest.mark.slow
@pytest.mark.mutation
@pytest.mark.parametrize("kind", ["nan", "inf"])
@pytest.mark.parametrize("bad_step, chunk", [(3, None), (6, None), (1, 2), (2, 2), (4, 2), (6, 2), (5, 1)])
def test_the_non_finite_guard_names_the_exact_step(kind, bad_step, chunk):
    """Guards against the guard testing isnan instead of "not finite" (+inf passing), against it
    reporting the failing step one late, and so missing a non-finite loss on the last step of a compiled
    call (the epoch's last step, or a chunk's when a callback cuts the epoch up).

    Steps are 1-based; 6 steps of 2 rows, in order (no key), from epoch 3.
    """
    batch = 2
    net, params, x, t = _guarded_problem(kind, bad_row=2 * (bad_step - 1) + 1)
    optimizer = optax.sgd(0.1)
    start = jaxnn.TrainState(params, optimizer.init(params), 3)
    callbacks = [] if chunk is None else [Every(chunk)]
    with pytest.raises(jaxnn.NonFiniteLossError) as info:
        jaxnn.fit(net, start, x, t, optimizer=optimizer, batch_size=batch, epochs=2, check_data=False,
                  callbacks=callbacks)
    err = info.value
    assert (err.epoch, err.step) == (4, bad_step)
    assert f"epoch 4, step {bad_step} of 6" in str(err)
    before = [(x[i : i + batch], t[i : i + batch]) for i in range(0, 2 * (bad_step - 1), batch)]
    assert err.state.epoch == 3 and err.epoch_start_state.epoch == 3
    assert_trees_close(err.state.params, sgd_loop(net, params, before, 0.1), rtol=1e-12, atol=1e-14)
    assert_trees_close(err.epoch_start_state.params, params, rtol=0, atol=0)


@pytest.mark.parametrize("bad_row, bad_step", [(5, 3), (10, 6)])
def test_the_last_finite_state_of_an_epoch_with_a_short_last_batch(bad_row, bad_step):
    """Guards against replaying the steps before a non-finite one with the epoch's short last batch added
    (``or`` for ``and``, ``>=`` for ``>``): 11 rows in batches of 2 end with a batch of 1, which the replay
    of the steps before step 3, or before that short batch itself, must not take."""
    net, params, x, t = _guarded_problem("nan", bad_row=bad_row)
    x, t = x[:11], t[:11]
    optimizer = optax.sgd(0.1)
    with pytest.raises(jaxnn.NonFiniteLossError) as info:
        jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=2, check_data=False)
    assert info.value.step == bad_step
    before = [(x[i : i + 2], t[i : i + 2]) for i in range(0, 2 * (bad_step - 1), 2)]
    assert_trees_close(info.value.state.params, sgd_loop(net, params, before, 0.1), rtol=1e-12, atol=1e-14)
