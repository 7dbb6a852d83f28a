"""Bad input gets a clear error naming what was expected, what was got and where; under jit too."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn


@pytest.fixture
def net():
    return jaxnn.Network.from_sizes([3, 4, 2], [jaxnn.ReLU(), jaxnn.Identity()], jaxnn.MSELoss())


@pytest.fixture
def params(net):
    return net.init(jax.random.key(0))


def test_layers_that_do_not_fit():
    with pytest.raises(ValueError, match=r"layers 1 and 2 do not fit: layer 1 has 5 outputs but layer 2 expects 4"):
        jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.ReLU()), jaxnn.Layer(3, 5, jaxnn.ReLU()),
                       jaxnn.Layer(4, 1, jaxnn.ReLU())], jaxnn.MSELoss())


def test_every_layer_must_be_a_layer():
    """Guards against the loop over the layers being skipped: a non-layer would fail later, unnamed."""
    with pytest.raises(TypeError, match=r"^layers\[1\] must be a jaxnn.Layer, got 'relu'"):
        jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.ReLU()), "relu"], jaxnn.MSELoss())


def test_input_width_and_boolean_targets_are_named(net, params):
    """Guards against the message reading ``shape[1]`` (an IndexError for one example) and against boolean
    targets getting the inputs' fix rather than the targets'."""
    with pytest.raises(ValueError, match=r"^x has last dimension 5 but layer 0 expects 3 inputs \(x shape \(5,\)\)"):
        net.forward(params, jnp.ones(5))
    with pytest.raises(TypeError, match=r"^t must hold numbers, got dtype bool; give integer labels \(t.astype\(int\)\) "
                                        r"or float targets$"):
        net.loss(params, jnp.ones((4, 3)), np.zeros((4, 2), bool))
    with pytest.raises(TypeError, match=r"^x must hold numbers, got dtype bool; cast it, e.g. x.astype\(float\)$"):
        net.forward(params, np.ones((4, 3), bool))


def test_bad_layers_and_networks():
    with pytest.raises(ValueError, match="ins must be a positive int, got 0"):
        jaxnn.Layer(0, 3, jaxnn.ReLU())
    with pytest.raises(TypeError, match="activation must be a jaxnn Activation"):
        jaxnn.Layer(2, 3, jax.nn.relu)
    with pytest.raises(ValueError, match="at least one Layer"):
        jaxnn.Network([], jaxnn.MSELoss())
    with pytest.raises(TypeError, match="loss must be a jaxnn Loss"):
        jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.ReLU())], "mse")
    with pytest.raises(ValueError, match="2 layers need 2 activations, got 3"):
        jaxnn.Network.from_sizes([1, 2, 3], [jaxnn.ReLU()] * 3, jaxnn.MSELoss())


@pytest.mark.parametrize("jit", [False, True])
def test_input_width(net, params, jit):
    backprop = jax.jit(net.backprop) if jit else net.backprop
    with pytest.raises(ValueError, match=r"x has last dimension 5 but layer 0 expects 3 inputs"):
        backprop(params, jnp.ones((4, 5)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(3,\) for one example or \(batch, 3\)"):
        backprop(params, jnp.ones((2, 4, 3)), jnp.zeros((2, 4, 2)))


@pytest.mark.parametrize("jit", [False, True])
def test_mse_target_shape_and_labels(net, params, jit):
    loss = jax.jit(net.loss) if jit else net.loss
    with pytest.raises(ValueError, match=r"MSELoss expects a target of shape \(4, 2\).*got shape \(4, 3\)"):
        loss(params, jnp.ones((4, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"MSELoss needs targets of the output's shape \(4, 2\), got integer class labels"):
        loss(params, jnp.ones((4, 3)), jnp.array([0, 1, 1, 0]))


def test_cross_entropy_target_shapes():
    net = jaxnn.Network.from_sizes([3, 2], jaxnn.Identity(), jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"integer labels of shape \(4,\).*got shape \(4, 1\)"):
        net.backprop(params, jnp.ones((4, 3)), jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"or probabilities of shape \(4, 2\), got float.* of shape \(4, 3\)"):
        net.backprop(params, jnp.ones((4, 3)), jnp.zeros((4, 3)))


def test_binary_cross_entropy_labels_are_0_or_1():
    net = jaxnn.Network.from_sizes([3, 1], jaxnn.Identity(), jaxnn.BinaryCrossEntropyLoss())
    params = net.init(jax.random.key(0))
    x = jnp.ones((4, 3))
    message = (r"t holds class labels outside \[0, 2\) for BinaryCrossEntropyLoss, whose labels are 0 or 1: "
               r"min 0, max 2, first bad label 2 at row 2")
    with pytest.raises(ValueError, match=message):
        net.loss(params, x, jnp.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"evaluate: t holds .* first bad label -1 at row 1"):
        jaxnn.evaluate(net, params, x, jnp.array([0, -1, 1, 0]))
    with pytest.raises(ValueError, match=r"^check_gradients: BinaryCrossEntropyLoss targets are probabilities, but t "
                                         r"holds a value outside \[0, 1\], 1\.5 at index \(2, 0\)$"):
        jaxnn.check_gradients(net, params, x, jnp.array([[0.0], [1.0], [1.5], [-1.0]]))
    with pytest.raises(ValueError, match=r"needs a network with 1 output .* got an output of shape \(4, 2\)"):
        wide = jaxnn.Network.from_sizes([3, 2], jaxnn.Identity(), jaxnn.BinaryCrossEntropyLoss())
        wide.loss(wide.init(jax.random.key(0)), x, jnp.array([0, 1, 1, 0]))


@pytest.mark.parametrize("jit", [False, True])
def test_params_that_do_not_fit(net, params, jit):
    forward = jax.jit(net.forward) if jit else net.forward
    x = jnp.ones(3)
    with pytest.raises(ValueError, match="params hold 1 layers but the network has 2"):
        forward(params[:1], x)
    # "params" is what the message calls them when no other name is given (guards against the prefix
    # test inverted); a differently named tree (hvp's v) is named first.
    with pytest.raises(ValueError, match=r"^layer 1: W must have shape \(outs, ins\) = \(2, 4\), got \(4, 2\)"):
        forward([params[0], (params[1][0].T, params[1][1])], x)
    if not jit:
        with pytest.raises(ValueError, match=r"^v: layer 1: W must have shape \(outs, ins\) = \(2, 4\)"):
            jaxnn.hvp(net, params, x, jnp.zeros(2), [params[0], (params[1][0].T, params[1][1])])
    with pytest.raises(ValueError, match=r"layer 0: b must have shape \(outs,\) = \(4,\), got \(4, 1\)"):
        forward([(params[0][0], params[0][1][:, None]), params[1]], x)
    with pytest.raises(TypeError, match=r"params\[1\] must be a \(W, b\) pair"):
        forward([params[0], params[1][0]], x)


def test_params_of_the_wrong_kind(net):
    with pytest.raises(TypeError, match="params must be a list of"):
        net.forward({"W": jnp.ones((4, 3))}, jnp.ones(3))


def test_unknown_gradients_mode(net, params):
    with pytest.raises(ValueError, match=r"gradients must be one of \('manual', 'autodiff'\), got 'numeric'"):
        jaxnn.make_train_step(net, optax.sgd(0.1), gradients="numeric")
    with pytest.raises(ValueError, match="gradients must be one of"):
        jaxnn.fit(net, params, jnp.ones((4, 3)), jnp.zeros((4, 2)), optimizer=optax.sgd(0.1), batch_size=2,
                  gradients="finite")


def test_fit_checks_before_running(net, params):
    sgd = optax.sgd(0.1)
    with pytest.raises(ValueError, match=r"same number of examples: x shape \(4, 3\), t shape \(5, 2\)"):
        jaxnn.fit(net, params, jnp.ones((4, 3)), jnp.zeros((5, 2)), optimizer=sgd, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        jaxnn.fit(net, params, jnp.ones((4, 3)), jnp.zeros((4, 2)), optimizer=sgd, batch_size=0)
    with pytest.raises(ValueError, match="x has last dimension 2 but layer 0 expects 3"):
        jaxnn.fit(net, params, jnp.ones((4, 2)), jnp.zeros((4, 2)), optimizer=sgd, batch_size=2)
    with pytest.raises(ValueError, match=r"fit needs a batch x of shape \(batch, 3\), got shape \(3,\)"):
        jaxnn.fit(net, params, jnp.ones(3), jnp.zeros(2), optimizer=sgd, batch_size=1)


def test_unknown_initializer(net):
    with pytest.raises(ValueError, match="unknown initializer 'kaiming'"):
        net.init(jax.random.key(0), weight_init="kaiming")


def test_an_initializer_that_fails_or_returns_no_array_is_named_with_the_fix(net):
    """Guards against the messages losing their call or their fix (a failing initializer is the likeliest
    mistake: ``jax.nn.initializers.glorot_normal`` passed uncalled)."""
    def broken(key, shape, dtype):
        raise RuntimeError("no")

    fix = r"; pass a name such as 'lecun_normal' or an initializer such as jax\.nn\.initializers\.glorot_normal\(\)"
    with pytest.raises(TypeError, match=r"^bias_init broken failed when called as init\(key, shape=\(4,\), "
                                        r"dtype=float64\): RuntimeError: no" + fix + r" \(called first\)$"):
        net.init(jax.random.key(0), bias_init=broken)
    with pytest.raises(TypeError, match=r"^weight_init glorot_normal returned function, not an array, when called as "
                                        r"init\(key, shape=\(4, 3\), dtype=float64\)" + fix):
        net.init(jax.random.key(0), weight_init=jax.nn.initializers.glorot_normal)


@pytest.mark.parametrize("made_with, resumed_with, found, expected", [
    (optax.sgd(0.1), optax.adam(1e-3), "(EmptyState, EmptyState) of 0 arrays", "(ScaleByAdamState, EmptyState) of 9"),
    (optax.adam(1e-3), optax.adamw(1e-3), "(ScaleByAdamState, EmptyState) of 9 arrays",
     "(ScaleByAdamState, EmptyState, EmptyState) of 9 arrays"),
    (optax.sgd(0.1, momentum=0.9), optax.adam(1e-3), "(TraceState, EmptyState) of 4", "(ScaleByAdamState, EmptyState)"),
])
def test_another_optimizers_state_is_named_in_words(net, params, made_with, resumed_with, found, expected):
    x, t = jnp.ones((4, 3)), jnp.zeros((4, 2))
    message = (r"^opt_state does not fit the optimizer and params: it looks like another optimizer's state: "
               rf"a tuple {re.escape(found)}.*, where optimizer\.init\(params\) gives a tuple {re.escape(expected)}"
               r".*; resume with the optimizer that made it, or start afresh with optimizer\.init\(params\)$")
    with pytest.raises(TypeError, match=message) as info:
        jaxnn.make_train_step(net, resumed_with)(params, made_with.init(params), x, t)
    assert "PyTreeDef" not in str(info.value)
    state = jaxnn.TrainState(params, made_with.init(params), 0)
    with pytest.raises(TypeError, match=r"^params_or_state\.opt_state does not fit .* another optimizer's state"):
        jaxnn.fit(net, state, x, t, optimizer=resumed_with, batch_size=2)


def test_missing_optimizer_leaf_and_long_states_are_named_whole(net, params):
    x, t = jnp.ones((4, 3)), jnp.zeros((4, 2))
    adam = optax.adam(1e-3)
    state = adam.init(params)
    cut = (state[0]._replace(mu=state[0].mu[:1]), state[1])
    with pytest.raises(TypeError, match=re.escape(
            "2 leaves are missing: opt_state[0].mu[1][0], opt_state[0].mu[1][1] (it holds a tuple "
            "(ScaleByAdamState, EmptyState) of 7 arrays, where optimizer.init(params) gives a tuple "
            "(ScaleByAdamState, EmptyState) of 9 arrays); make it with optimizer.init(params)")):
        jaxnn.make_train_step(net, adam)(params, cut, x, t)
    many = optax.chain(*[optax.scale(0.5)] * 7, optax.sgd(0.1))
    with pytest.raises(TypeError, match=re.escape(
            "a tuple (ScaleByAdamState, EmptyState) of 9 arrays, where optimizer.init(params) gives a tuple "
            "(EmptyState, EmptyState, EmptyState, EmptyState, ... (5 more)) of 0 arrays;")):
        jaxnn.make_train_step(net, many)(params, state, x, t)
