"""Each loss's hand-written derivative against jax.grad, and its numerics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn

RTOL, ATOL = 1e-13, 1e-15


def random(key, shape, scale=1.0):
    return jax.random.normal(jax.random.key(key), shape, jnp.float64) * scale


@pytest.mark.parametrize("shape", [(4,), (3, 4)])
def test_mse_value_and_derivative(shape):
    out, t = random(0, shape), random(1, shape)
    loss = jaxnn.MSELoss()
    np.testing.assert_allclose(loss.loss(out, t), np.mean((np.asarray(out) - np.asarray(t)) ** 2, -1), rtol=RTOL)
    expected = jax.vmap(jax.grad(loss.loss))(out.reshape(-1, 4), t.reshape(-1, 4)).reshape(shape)
    np.testing.assert_allclose(loss.dloss(out, t), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loss.dloss(out, t), 2 * (out - t) / 4, rtol=RTOL)


@pytest.mark.parametrize("target", ["labels", "onehot", "soft", "unnormalised"])
def test_cross_entropy_derivative_matches_grad(target):
    out = random(2, (5, 7), scale=3)
    labels = jnp.arange(5) % 7
    t = {
        "labels": labels,
        "onehot": jax.nn.one_hot(labels, 7, dtype=jnp.float64),
        "soft": jax.nn.softmax(random(3, (5, 7)), -1),
        "unnormalised": jnp.abs(random(4, (5, 7))),
    }[target]
    loss = jaxnn.CrossEntropyLoss()
    expected = jax.grad(lambda o: jnp.sum(loss.loss(o, t)))(out)
    np.testing.assert_allclose(loss.dloss(out, t), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.jit(loss.dloss)(out, t), expected, rtol=1e-12, atol=1e-15)


def test_cross_entropy_labels_equal_onehot_and_dloss_is_softmax_minus_onehot():
    out, labels = random(5, (6, 4)), jnp.array([0, 1, 2, 3, 0, 1])
    onehot = jax.nn.one_hot(labels, 4, dtype=jnp.float64)
    loss = jaxnn.CrossEntropyLoss()
    np.testing.assert_allclose(loss.loss(out, labels), loss.loss(out, onehot), rtol=RTOL)
    np.testing.assert_allclose(loss.dloss(out, labels), jax.nn.softmax(out) - onehot, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loss.loss(out, labels), -jnp.log(jax.nn.softmax(out))[jnp.arange(6), labels], rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    out = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], jnp.float32)
    loss = jaxnn.CrossEntropyLoss()
    value, grad = loss.loss(out, jnp.array([1, 2])), loss.dloss(out, jnp.array([1, 2]))
    assert jnp.all(jnp.isfinite(value)) and jnp.all(jnp.isfinite(grad))
    np.testing.assert_allclose(value, [2e4, np.log(3)], rtol=1e-6)


def test_losses_compare_by_value():
    assert jaxnn.MSELoss() == jaxnn.MSELoss()
    assert jaxnn.MSELoss() != jaxnn.CrossEntropyLoss()
    assert hash(jaxnn.CrossEntropyLoss()) == hash(jaxnn.CrossEntropyLoss())
