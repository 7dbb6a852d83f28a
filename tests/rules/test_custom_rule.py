"""A rule of one's own in under 20 lines, as the tutorial writes it: noisy weight transport."""

import dataclasses

import jax
import jax.numpy as jnp
import optax

import pytest

import jaxnn

from tests.rules.problems import assert_close


@dataclasses.dataclass(frozen=True)
class NoisyTransport(jaxnn.rules.GradientSource):
    """Backprop with noise in the transport: ``dx = (W^T + sigma N) db``, ``N`` fresh every step.

    Given ``db``, the error sent back is ``W^T db`` plus Gaussian noise of
    standard deviation ``sigma ||db||`` per unit. The state is a PRNG key,
    split every step.
    """

    sigma: float = 0.1

    def init(self, key, net, params):
        return key

    def value_and_grad(self, net, params, key, x, t):
        key, *keys = jax.random.split(key, len(params) + 1)
        noisy = [W.T + self.sigma * jax.random.normal(k, W.T.shape, W.dtype) for k, (W, _) in zip(keys, params)]
        loss, grads = jaxnn.rules.backprop_with(net, params, x, t, noisy)
        return loss, grads, key


@pytest.mark.slow
def test_without_noise_it_is_backprop_and_the_key_moves_on(make_problem):
    net, params, x, t = make_problem((3, 5, 4, 2), [jaxnn.Tanh()] * 3, 6)
    key = jax.random.key(0)
    loss, grads, new_key = jax.jit(NoisyTransport(0.0).value_and_grad, static_argnums=0)(net, params, key, x, t)
    assert_close(grads, net.backprop(params, x, t))
    assert not jnp.array_equal(jax.random.key_data(new_key), jax.random.key_data(key))
    _, noisy, _ = NoisyTransport(0.5).value_and_grad(net, params, key, x, t)
    assert_close(noisy[-1], grads[-1])
    assert not jnp.allclose(noisy[0][0], grads[0][0])


def test_it_trains_through_its_state(make_problem):
    net, params, x, t = make_problem((3, 8, 8, 2), [jaxnn.Tanh(), jaxnn.Tanh(), jaxnn.Identity()], 32)
    rule, optimizer = NoisyTransport(0.3), optax.adam(0.02)

    def step(carry, _):
        params, key, opt_state = carry
        loss, grads, key = rule.value_and_grad(net, params, key, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), key, opt_state), loss

    start = (params, rule.init(jax.random.key(1), net, params), optimizer.init(params))
    _, losses = jax.jit(lambda c: jax.lax.scan(step, c, length=200))(start)
    assert losses[-1] < 0.5 * losses[0]
