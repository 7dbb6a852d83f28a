"""The public surface: every name in __all__ exists, and init is deterministic with the documented shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn


def test_every_public_name_exists():
    for name in jaxnn.__all__:
        assert hasattr(jaxnn, name), name
    for name in ["Network", "Layer", "LeakyReLU", "ReLU", "Sigmoid", "Tanh", "Identity", "Softmax",
                 "MSELoss", "CrossEntropyLoss", "make_train_step", "fit"]:
        assert name in jaxnn.__all__


def test_init_is_a_list_of_tuples_and_deterministic():
    net = jaxnn.Network.from_sizes([5, 3, 5, 4], jaxnn.Sigmoid(), jaxnn.MSELoss())
    a, b = net.init(jax.random.key(1)), net.init(jax.random.key(1))
    assert isinstance(a, list) and all(isinstance(p, tuple) for p in a)
    assert [(W.shape, bb.shape) for W, bb in a] == [((3, 5), (3,)), ((5, 3), (5,)), ((4, 5), (4,))]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0][0], net.init(jax.random.key(2))[0][0])
    assert net.sizes == (5, 3, 5, 4)


@pytest.mark.parametrize("name", ["lecun_normal", "he_normal", "glorot_normal", "glorot_uniform", "articles"])
def test_named_initializers_have_the_expected_scale(name):
    net = jaxnn.Network.from_sizes([400, 300], jaxnn.Identity(), jaxnn.MSELoss())
    (W, b), = net.init(jax.random.key(0), weight_init=name)
    expected_std = {"lecun_normal": 1 / np.sqrt(400), "he_normal": np.sqrt(2 / 400),
                    "glorot_normal": np.sqrt(2 / 700), "glorot_uniform": np.sqrt(2 / 700),
                    "articles": 1 / (400 * 300)}[name]
    np.testing.assert_allclose(np.std(W), expected_std, rtol=0.03)
    np.testing.assert_array_equal(b, 0)


def test_init_dtype_and_custom_initializer():
    net = jaxnn.Network.from_sizes([2, 3], jaxnn.Identity(), jaxnn.MSELoss())
    (W, b), = net.init(jax.random.key(0), dtype=jnp.float32)
    assert W.dtype == b.dtype == jnp.float32
    (W, b), = net.init(jax.random.key(0), weight_init=jax.nn.initializers.ones, bias_init="normal")
    np.testing.assert_array_equal(W, 1)
    assert W.dtype == jnp.float64  # x64 is on in the tests: JAX's default float


def test_network_is_hashable_and_compares_by_value():
    make = lambda: jaxnn.Network.from_sizes([2, 3, 1], jaxnn.LeakyReLU(0.1), jaxnn.MSELoss())
    assert make() == make() and hash(make()) == hash(make())
    assert make() != jaxnn.Network.from_sizes([2, 3, 1], jaxnn.LeakyReLU(0.2), jaxnn.MSELoss())
