"""TrainState: fresh copies of the caller's parameters, chained runs bitwise equal to one."""


import jax
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import (
    assert_trees_close,
    classification,
    quadrant_problem,
    small_problem,
)

OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-2),
    "momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "schedule": lambda: optax.sgd(optax.exponential_decay(0.1, transition_steps=7, decay_rate=0.8)),
}


def test_fit_leaves_the_given_params_untouched():
    net, params, x, t = quadrant_problem(16)
    before = jax.tree.map(np.array, params)
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=4, epochs=2)
    assert_trees_close(params, before, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_chained_fits_equal_one_fit_bitwise(name):
    net, params, x, t = classification()
    kwargs = dict(batch_size=10, key=jax.random.key(3))  # 96 = 9 * 10 + 6: a short last batch too
    whole, h_whole = jaxnn.fit(net, params, x, t, optimizer=OPTIMIZERS[name](), epochs=5, **kwargs)
    state = params
    losses = []
    for _ in range(5):
        state, h = jaxnn.fit(net, state, x, t, optimizer=OPTIMIZERS[name](), epochs=1, **kwargs)
        losses.append(h["loss"][0])
    assert state.epoch == whole.epoch == 5
    assert_trees_close((state.params, state.opt_state), (whole.params, whole.opt_state), rtol=0, atol=0)
    np.testing.assert_array_equal(losses, h_whole["loss"])
    np.testing.assert_array_equal(h_whole["epoch"], [1, 2, 3, 4, 5])


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

