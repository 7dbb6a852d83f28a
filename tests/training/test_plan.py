"""fit's plan: options and callbacks checked before anything runs."""


import optax
import pytest

import jaxnn
from tests.helpers import classification, small_problem


def test_bad_callbacks_and_keys_are_named():
    net, params, x, t = classification()
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8)
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be a jaxnn.Callback"):
        jaxnn.fit(net, params, x, t, callbacks=[print], **kwargs)
    with pytest.raises(TypeError, match=r"jax.random.key\(0\)"):
        jaxnn.fit(net, params, x, t, key=0, **kwargs)
    with pytest.raises(TypeError, match=r"pass optax.sgd\(0.1\)"):
        jaxnn.fit(net, params, x, t, optimizer=0.1, batch_size=8)
    with pytest.raises(TypeError, match=r"call it first"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd, batch_size=8)


@pytest.mark.parametrize("batch_split, match", [(3, "batch_size must be a multiple of batch_split"),
                                                 (0, "batch_split must be a positive int"),
                                                 (2.0, "batch_split must be a positive int")])
def test_batch_split_is_checked(batch_split, match):
    net, params, x, t = small_problem()
    with pytest.raises(ValueError, match=match):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, batch_split=batch_split)

