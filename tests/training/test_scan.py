"""The compiled scan: nothing crosses to the host within an epoch."""


import jax
import optax

import jaxnn
from tests.helpers import small_problem


def test_an_epoch_never_talks_to_the_host():
    net, params, x, t = small_problem()
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8, epochs=2, key=jax.random.key(0), check_data=False)
    # Compile first (constants move then), then run again with every implicit
    # device-to-host transfer forbidden: only fit's explicit read of each epoch's loss remains.
    jaxnn.fit(net, params, x, t, **kwargs)
    with jax.transfer_guard_device_to_host("disallow"):
        state, _ = jaxnn.fit(net, params, x, t, **kwargs)
    jax.block_until_ready(state)

