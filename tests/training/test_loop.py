"""The run over epochs: the documented shuffle, the non-finite guard."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import assert_trees_close, quadrant_problem


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

