"""Evaluation on held-out data, and the validation values fit logs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import pytest

import jaxnn
from tests.helpers import classification


@pytest.mark.slow
def test_validation_history_and_evaluate_agree():
    net, params, x, t = classification(n=200)
    x_val, t_val = x[150:], t[150:]
    state, history = jaxnn.fit(net, params, x[:150], t[:150], optimizer=optax.adam(1e-2), batch_size=16,
                               epochs=3, validation=(x_val, t_val))
    assert sorted(history) == ["epoch", "loss", "val_accuracy", "val_loss"]
    assert all(v.shape == (3,) for v in history.values())
    scores = jaxnn.evaluate(net, state.params, x_val, t_val, batch_size=7)  # batches of 7, a remainder of 1
    np.testing.assert_allclose(history["val_loss"][-1], scores["loss"], rtol=1e-12)
    np.testing.assert_allclose(scores["loss"], net.loss(state.params, x_val, t_val), rtol=1e-12)
    expected = float(jnp.mean(jnp.argmax(net.forward(state.params, x_val), -1) == t_val))
    assert history["val_accuracy"][-1] == scores["accuracy"]
    np.testing.assert_allclose(scores["accuracy"], expected, rtol=1e-6)


def test_evaluate_regression_has_no_accuracy():
    net = jaxnn.Network.from_sizes([2, 1], jaxnn.Identity(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    x = jnp.arange(10.0).reshape(5, 2)
    scores = jaxnn.evaluate(net, params, x, jnp.zeros((5, 1)), batch_size=2)
    assert list(scores) == ["loss"]
    np.testing.assert_allclose(scores["loss"], net.loss(params, x, jnp.zeros((5, 1))), rtol=1e-12)



def test_evaluate_binary_accuracy_is_the_sign_of_the_logit():
    net = jaxnn.Network.from_sizes([2, 1], jaxnn.Identity(), jaxnn.BinaryCrossEntropyLoss())
    params = [(jnp.array([[1.0, -1.0]]), jnp.zeros(1))]
    x = jnp.array([[2.0, 0.0], [0.0, 2.0], [1.0, 3.0], [3.0, 1.0], [0.0, 0.0]])  # logits 2, -2, -2, 2, 0
    labels = jnp.array([1, 0, 1, 1, 0])
    scores = jaxnn.evaluate(net, params, x, labels, batch_size=2)
    assert scores["accuracy"] == 0.8
    np.testing.assert_allclose(scores["loss"], net.loss(params, x, labels), rtol=1e-12)
    assert jaxnn.evaluate(net, params, x, labels[:, None] * 0.8 + 0.1)["accuracy"] == 0.8
