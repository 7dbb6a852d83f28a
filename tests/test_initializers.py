"""Named initialisers: the expected scales for weights of shape (outs, ins), and callables passed through."""

import jax
import numpy as np
import pytest

import jaxnn


@pytest.mark.parametrize("name", ["lecun_normal", "he_normal", "glorot_normal", "glorot_uniform", "articles"])
def test_named_initializers_have_the_expected_scale(name):
    net = jaxnn.Network.from_sizes([400, 300], jaxnn.Identity(), jaxnn.MSELoss())
    (W, b), = net.init(jax.random.key(0), weight_init=name)
    expected_std = {"lecun_normal": 1 / np.sqrt(400), "he_normal": np.sqrt(2 / 400),
                    "glorot_normal": np.sqrt(2 / 700), "glorot_uniform": np.sqrt(2 / 700),
                    "articles": 1 / (400 * 300)}[name]
    np.testing.assert_allclose(np.std(W), expected_std, rtol=0.03)
    np.testing.assert_array_equal(b, 0)


def test_a_callable_is_returned_as_it_is():
    init = jax.nn.initializers.ones
    assert jaxnn.get_initializer(init) is init


def test_articles_normal_scales_a_bias_by_its_length(getkey):
    b = jaxnn.articles_normal()(getkey(), (400,), np.float64)
    assert b.shape == (400,) and b.dtype == np.float64
    np.testing.assert_allclose(np.std(b), 1 / 400, rtol=0.1)
