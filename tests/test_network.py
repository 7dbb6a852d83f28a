"""Network: init's shapes and determinism, forward and loss, check_inputs, and hashing by value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn

RTOL, ATOL = 1e-13, 1e-15


def test_init_is_a_list_of_tuples_and_deterministic():
    net = jaxnn.Network.from_sizes([5, 3, 5, 4], jaxnn.Sigmoid(), jaxnn.MSELoss())
    a, b = net.init(jax.random.key(1)), net.init(jax.random.key(1))
    assert isinstance(a, list) and all(isinstance(p, tuple) for p in a)
    assert [(W.shape, bb.shape) for W, bb in a] == [((3, 5), (3,)), ((5, 3), (5,)), ((4, 5), (4,))]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0][0], net.init(jax.random.key(2))[0][0])
    assert net.sizes == (5, 3, 5, 4)


def test_init_draws_each_weight_and_bias_from_its_own_documented_key():
    """Guards against shifted or shared keys (``keys[2 * i - 1]`` for a bias): every seed's parameters would
    change. Reference: the documented split, ``split(key, 2 n)``, layer i's W from ``[2 i]``, b from ``[2 i + 1]``."""
    net = jaxnn.Network.from_sizes([4, 3, 2, 5], jaxnn.Tanh(), jaxnn.MSELoss())
    normal = jax.nn.initializers.normal(1.0)
    key = jax.random.key(5)
    params = net.init(key, weight_init=normal, bias_init=normal)
    keys = jax.random.split(key, 6)
    for i, (W, b) in enumerate(params):
        np.testing.assert_array_equal(W, normal(keys[2 * i], W.shape, W.dtype))
        np.testing.assert_array_equal(b, normal(keys[2 * i + 1], b.shape, b.dtype))


@pytest.mark.parametrize("sizes", ["23", b"23", 23, {2: 3}])
def test_sizes_must_be_a_sequence_of_ints_not_a_string(sizes):
    """Guards against a string of digits passing as widths (``and`` for ``or`` in the check)."""
    with pytest.raises(TypeError, match="sizes must be a sequence of ints such as"):
        jaxnn.Network.from_sizes(sizes, jaxnn.Tanh(), jaxnn.MSELoss())


def test_init_dtype_and_custom_initializer():
    net = jaxnn.Network.from_sizes([2, 3], jaxnn.Identity(), jaxnn.MSELoss())
    (W, b), = net.init(jax.random.key(0), dtype=jnp.float32)
    assert W.dtype == b.dtype == jnp.float32
    (W, b), = net.init(jax.random.key(0), weight_init=jax.nn.initializers.ones, bias_init="normal")
    np.testing.assert_array_equal(W, 1)
    assert W.dtype == jnp.float64  # x64 is on in the tests: JAX's default float


def test_forward_applies_each_layer_in_turn_to_one_example_or_a_batch(make_problem):
    net, params, x, _ = make_problem((3, 4, 2), [jaxnn.Tanh(), jaxnn.Softmax()], 5)
    (W0, b0), (W1, b1) = jax.tree.map(np.asarray, params)
    y = np.tanh(np.asarray(x) @ W0.T + b0) @ W1.T + b1  # NumPy: an independent reference
    expected = np.exp(y) / np.exp(y).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(net.forward(params, x), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(jax.jit(net.forward)(params, x), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(net.forward(params, x[2]), expected[2], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("labels", [False, True])
def test_loss_of_a_batch_is_the_mean_of_each_examples_loss(make_problem, labels):
    net, params, x, t = make_problem((3, 4, 2), [jaxnn.Sigmoid(), jaxnn.Identity()], 6, labels=labels)
    each = [net.loss(params, xi, ti) for xi, ti in zip(x, t)]
    assert net.loss(params, x, t).shape == ()
    np.testing.assert_allclose(net.loss(params, x, t), np.mean(each), rtol=RTOL)
    np.testing.assert_allclose(net.loss(params, x, t), jnp.mean(net.loss_fn.loss(net.forward(params, x), t)),
                               rtol=RTOL)


def test_check_inputs_returns_arrays_in_the_params_dtype(getkey):
    net = jaxnn.Network.from_sizes([3, 2], jaxnn.Identity(), jaxnn.MSELoss())
    params = net.init(getkey(), dtype=jnp.float32)
    x, t = net.check_inputs(params, np.array([[1.0, 2.0, 3.0]]))
    assert isinstance(x, jax.Array) and x.dtype == jnp.float32 and x.shape == (1, 3) and t is None
    x, t = net.check_inputs(params, np.ones(3), np.zeros(2))
    assert x.dtype == t.dtype == jnp.float32 and t.shape == (2,)


def test_from_sizes_repeats_one_activation():
    net = jaxnn.Network.from_sizes([2, 3, 1], jaxnn.Tanh(), jaxnn.MSELoss())
    assert net.layers == (jaxnn.Layer(2, 3, jaxnn.Tanh()), jaxnn.Layer(3, 1, jaxnn.Tanh()))
    assert net.loss_fn == jaxnn.MSELoss()


def test_network_is_hashable_and_compares_by_value():
    make = lambda: jaxnn.Network.from_sizes([2, 3, 1], jaxnn.LeakyReLU(0.1), jaxnn.MSELoss())
    assert make() == make() and hash(make()) == hash(make())
    assert make() != jaxnn.Network.from_sizes([2, 3, 1], jaxnn.LeakyReLU(0.2), jaxnn.MSELoss())


@pytest.mark.parametrize("activations", ["relu", 5, None, (a for a in [jaxnn.Tanh()])])
def test_activations_must_be_an_activation_or_a_sequence_of_them(activations):
    """Guards against ``and`` for ``or`` in the check: a string or a non-sequence must be named, not fail in len()."""
    with pytest.raises(TypeError, match=r"^activations must be a jaxnn Activation \(e\.g\. jaxnn\.ReLU\(\)\) or a "
                                        r"sequence of 1 of them, got "):
        jaxnn.Network.from_sizes((2, 3), activations, jaxnn.MSELoss())


@pytest.mark.parametrize("layers", ["ab", 5, None])
def test_layers_must_be_a_list_of_layers(layers):
    """Guards against ``and`` for ``or`` in the check of ``Network(layers, loss)``."""
    with pytest.raises(TypeError, match="^layers must be a list of jaxnn.Layer, got "):
        jaxnn.Network(layers, jaxnn.MSELoss())


def test_a_missing_parameter_is_named_with_the_fix_and_a_wrong_container_without_it():
    """Guards against the hint for ``None`` being lost, or given for every non-array."""
    net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    (W, b), = net.init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"^params\[0\]\[1\] \(b of layer 0\) must be an array, got NoneType; "
                                        r"a missing parameter\? start from net\.init\(key\)$"):
        net.forward([(W, None)], jnp.ones(3))
    with pytest.raises(TypeError, match=r"^params\[0\]\[0\] \(W of layer 0\) must be an array, got list$"):
        net.forward([(W.tolist(), b)], jnp.ones(3))


def test_check_inputs_takes_x_and_t_by_name_and_its_options_only_by_name(getkey):
    """Guards against the signature's ``*`` becoming ``/``: options passed by position would be read as data."""
    net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    params = net.init(getkey())
    x, t = net.check_inputs(params=params, x=jnp.ones((4, 3)), t=jnp.array([0, 1, 1, 0]))
    assert x.shape == (4, 3) and t.shape == (4,)
    with pytest.raises(TypeError):
        net.check_inputs(params, jnp.ones((4, 3)), jnp.array([0, 1, 1, 0]), False)


def test_target_errors_name_the_targets_as_the_caller_calls_them(getkey):
    """Guards against the name test inverted: ``t`` is the loss's own word, other names are put first."""
    net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(getkey())
    with pytest.raises(ValueError, match=r"^MSELoss expects a target of shape \(4, 2\) \(the network's output\)"):
        net.check_inputs(params, jnp.ones((4, 3)), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"^validation targets: MSELoss expects a target of shape \(4, 2\)"):
        net.check_inputs(params, jnp.ones((4, 3)), jnp.ones((4, 3)),
                         names=("validation inputs", "validation targets"))


def test_a_single_examples_label_is_checked_against_the_outputs():
    """Guards against the label-range check comparing the label shape with ``out_shape[:1]``: for a batch it
    is the same, for one example (no batch axis) an out-of-range label would pass unchecked."""
    net = jaxnn.Network.from_sizes((3, 4), jaxnn.Identity(), jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"t holds class labels outside \[0, 4\)"):
        net.loss(params, jnp.ones(3), 4)
    with pytest.raises(ValueError, match=r"t holds class labels outside \[0, 4\)"):
        net.loss(params, jnp.ones((2, 3)), jnp.array([0, 4]))
