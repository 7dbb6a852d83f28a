"""The compile cache: equal optimizers and settings share a compiled epoch; a changed global does not."""


import jax
import numpy as np
import optax

import pytest

import jaxnn
from tests.helpers import TRACES, assert_trees_close, classification, small_problem


@pytest.mark.slow
def test_a_fresh_equal_optimizer_does_not_compile_again():
    net, params, x, t = classification()
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *args, **kwargs: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
    )
    x8, t8 = x[:8], t[:8]
    for make in (lambda: optax.sgd(0.05), lambda: optax.adam(1e-3)):
        jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8, key=jax.random.key(0))
        jaxnn.make_train_step(net, make())(params, make().init(params), x8, t8)
        before = len(compiles)
        jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8, key=jax.random.key(1))
        jaxnn.make_train_step(net, make())(params, make().init(params), x8, t8)
        assert len(compiles) == before
    # A different learning rate is a different configuration: it compiles.
    before = len(compiles)
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.07), batch_size=8)
    assert len(compiles) > before


@pytest.mark.slow
def test_a_learning_rate_read_from_a_global_is_not_reused():
    net, params, x, t = classification()
    rates = {"lr": 0.1}
    make = lambda: optax.sgd(lambda count: rates["lr"])
    a, _ = jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8)
    rates["lr"] = 0.0
    b, _ = jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8)
    assert_trees_close(b.params, params, rtol=0, atol=0)  # lr 0 really ran: nothing moved
    assert not np.allclose(a.params[0][0], params[0][0])


def test_a_second_fit_with_the_same_shapes_does_not_trace_again():
    net, params, x, t = small_problem()
    optimizer = optax.adam(1e-2)
    before = len(TRACES)
    jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=8, epochs=2)
    traced = len(TRACES)
    assert traced > before
    # New values, more epochs: the compiled epoch is reused.
    _, other_params, other_x, other_t = small_problem(seed=1)
    jaxnn.fit(net, other_params, other_x, other_t, optimizer=optimizer, batch_size=8, epochs=3)
    assert len(TRACES) == traced
    # A fresh optimizer with the same hyperparameters is the same configuration.
    jaxnn.fit(net, other_params, other_x, other_t, optimizer=optax.adam(1e-2), batch_size=8, epochs=1)
    assert len(TRACES) == traced
    # The counter does see a real change of static configuration.
    jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=4)
    assert len(TRACES) > traced

