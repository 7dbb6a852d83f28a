"""loss_with_backprop: jax.grad of it is the hand-written recursion, equal to jax.grad of net.loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import assert_trees_close

RTOL, ATOL = 1e-12, 1e-14


@pytest.fixture(scope="module")
def problem(make_problem):
    return make_problem((3, 5, 4), [jaxnn.Tanh(), jaxnn.Softmax()], 6)


@pytest.mark.slow
def test_grad_is_the_recursion_and_equals_autodiff(problem):
    net, params, x, t = problem
    loss = jaxnn.loss_with_backprop(net)
    grads = jax.grad(loss)(params, x, t)
    # Bit for bit the recursion's result: it is what runs.
    for g, m in zip(jax.tree.leaves(grads), jax.tree.leaves(net.backprop(params, x, t))):
        np.testing.assert_array_equal(g, m)
    assert_trees_close(grads, jax.grad(net.loss)(params, x, t), RTOL, ATOL)
    assert float(loss(params, x, t)) == float(net.loss(params, x, t))


def test_jitted_value_and_grad_and_one_example(problem):
    net, params, x, t = problem
    value_and_grad = jax.jit(jax.value_and_grad(jaxnn.loss_with_backprop(net)))
    for xs, ts in [(x, t), (x[0], t[0])]:
        value, grads = value_and_grad(params, xs, ts)
        ref_value, ref_grads = jax.value_and_grad(net.loss)(params, xs, ts)
        assert value == pytest.approx(float(ref_value), rel=1e-14)
        assert_trees_close(grads, ref_grads, RTOL, ATOL)


def test_the_recursion_is_what_jax_grad_runs(problem):
    # A planted bug in the hand-written rule shows up in jax.grad: the custom rule is really used.
    net, params, x, t = problem

    class Doubled(jaxnn.Tanh):
        def df(self, y):
            return 2 * super().df(y)

    bad = jaxnn.Network([jaxnn.Layer(3, 5, Doubled()), net.layers[1]], net.loss_fn)
    grads = jax.grad(jaxnn.loss_with_backprop(bad))(params, x, t)
    assert_trees_close(grads[0], jax.tree.map(lambda g: 2 * g, jax.grad(net.loss)(params, x, t)[0]), RTOL, ATOL)


def test_cotangents_for_inputs_and_targets(problem):
    net, params, x, t = problem
    loss = jaxnn.loss_with_backprop(net)
    dx, dt = jax.jit(jax.grad(loss, argnums=(1, 2)))(params, x, t)
    ref_dx, ref_dt = jax.grad(net.loss, argnums=(1, 2))(params, x, t)
    assert_trees_close((dx, dt), (ref_dx, ref_dt), RTOL, ATOL)
    # float32 inputs to float64 params: the cotangent keeps the input's dtype.
    dx32 = jax.grad(loss, argnums=1)(params, x.astype(jnp.float32), t)
    assert dx32.dtype == jnp.float32
    np.testing.assert_allclose(dx32, ref_dx, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_integer_labels_get_float0_cotangents(getkey):
    net = jaxnn.Network.from_sizes((3, 4, 3), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(getkey())
    x, labels = jax.random.normal(getkey(), (5, 3)), jnp.array([0, 2, 1, 1, 0])
    loss = jaxnn.loss_with_backprop(net)
    grads, dx, dlabels = jax.grad(loss, argnums=(0, 1, 2), allow_int=True)(params, x, labels)
    assert dlabels.dtype == jax.dtypes.float0 and dlabels.shape == (5,)
    assert_trees_close((grads, dx), jax.grad(net.loss, argnums=(0, 1))(params, x, labels), RTOL, ATOL)


def test_drives_an_optax_loop_like_autodiff(problem):
    net, params, x, t = problem
    optimizer = optax.adam(1e-2)

    def train(loss):
        @jax.jit
        def step(p, s):
            grads = jax.grad(loss)(p, x, t)
            updates, s = optimizer.update(grads, s, p)
            return optax.apply_updates(p, updates), s

        p, s = params, optimizer.init(params)
        for _ in range(20):
            p, s = step(p, s)
        return p

    manual, auto = train(jaxnn.loss_with_backprop(net)), train(net.loss)
    assert_trees_close(manual, auto, 1e-10, 1e-12)
    assert net.loss(manual, x, t) < net.loss(params, x, t)


def test_rejects_a_non_network():
    with pytest.raises(TypeError, match="jaxnn.Network"):
        jaxnn.loss_with_backprop(jaxnn.MSELoss())
