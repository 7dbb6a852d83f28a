"""Second order through the recursion: jacfwd/jvp of net.backprop equal jax.hessian(net.loss) and its HVP."""

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import pytest

import jaxnn
from tests.helpers import assert_trees_close, examples, random_problem, smooth_architectures

RTOL, ATOL = 1e-10, 1e-12


@pytest.mark.slow
@hypothesis.settings(max_examples=examples(3), deadline=None)
@hypothesis.given(**smooth_architectures())
def test_jacfwd_of_backprop_is_the_hessian(sizes, acts, batch, seed):
    net, params, x, t = random_problem(sizes, acts, batch, seed)
    flat, unravel = ravel_pytree(params)
    reference = jax.jit(jax.hessian(lambda f: net.loss(unravel(f), x, t)))(flat)
    H = jax.jit(jaxnn.hessian, static_argnums=0)(net, params, x, t)
    np.testing.assert_allclose(H, reference, rtol=RTOL, atol=ATOL)
    # The pytree form, jax.jacfwd(net.backprop) itself, block by block.
    blocks = jax.jit(jax.jacfwd(net.backprop))(params, x, t)
    assert_trees_close(blocks, jax.jit(jax.hessian(net.loss))(params, x, t), RTOL, ATOL)


@pytest.mark.slow
def test_hvp_equals_the_hessian_times_v_jitted(make_problem):
    net, params, x, t = make_problem((4, 5, 3, 2), [jaxnn.Tanh(), jaxnn.Softmax(), jaxnn.Sigmoid()], 6)
    v = jax.tree.map(lambda p: jax.random.normal(jax.random.key(7), p.shape, p.dtype), params)
    hv = jax.jit(jaxnn.hvp, static_argnums=0)(net, params, x, t, v)
    flat, unravel = ravel_pytree(params)
    H = jax.jit(jax.hessian(lambda f: net.loss(unravel(f), x, t)))(flat)
    assert_trees_close(hv, unravel(H @ ravel_pytree(v)[0]), RTOL, ATOL)
    # Also equal to forward over reverse with jax.grad.
    ref = jax.jit(lambda p, v: jax.jvp(jax.grad(lambda p: net.loss(p, x, t)), (p,), (v,))[1])(params, v)
    assert_trees_close(hv, ref, RTOL, ATOL)


def test_one_example_and_cross_entropy_labels():
    net = jaxnn.Network.from_sizes((3, 4, 3), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(1), bias_init="normal")
    x, label = jnp.array([0.5, -1.0, 2.0]), jnp.array(2)
    flat, unravel = ravel_pytree(params)
    reference = jax.jit(jax.hessian(lambda f: net.loss(unravel(f), x, label)))(flat)
    H = jax.jit(jaxnn.hessian, static_argnums=0)(net, params, x, label)
    np.testing.assert_allclose(H, reference, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_hessian_of_loss_with_backprop_goes_through_the_recursion(make_problem):
    net, params, x, t = make_problem((3, 4, 2), [jaxnn.Sigmoid(), jaxnn.Tanh()], 4, seed=3)
    H = jax.jit(jax.hessian(jaxnn.loss_with_backprop(net)))(params, x, t)
    assert_trees_close(H, jax.jit(jax.hessian(net.loss))(params, x, t), RTOL, ATOL)
