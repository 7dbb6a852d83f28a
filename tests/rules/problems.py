"""Random networks for the learning-rule tests, and the jitted calls they share."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import jaxnn

from tests.helpers import assert_trees_close

TOL = 1e-12  # float64, relative; the absolute floor is TOL times the largest entry
ACTIVATIONS = [jaxnn.LeakyReLU(), jaxnn.ReLU(), jaxnn.Sigmoid(), jaxnn.Tanh(), jaxnn.Identity(), jaxnn.Softmax()]


@st.composite
def problems(draw, min_layers=1, max_layers=4):
    """A random float64 network (depth, widths, activations, loss), its params, one example or a batch."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=min_layers + 1, max_size=max_layers + 1))
    acts = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=len(sizes) - 1, max_size=len(sizes) - 1))
    loss = draw(st.sampled_from([jaxnn.MSELoss(), jaxnn.CrossEntropyLoss()]))
    batch = draw(st.sampled_from([None, 1, 5]))
    seed = draw(st.integers(0, 2**31 - 1))
    net = jaxnn.Network.from_sizes(sizes, acts, loss)
    rng = np.random.default_rng(seed)  # NumPy draws: eager jax.random compiles for every shape
    params = [(jnp.asarray(rng.normal(size=(o, i)) / np.sqrt(i)), jnp.asarray(rng.normal(size=o) / 2))
              for i, o in zip(sizes[:-1], sizes[1:])]
    lead = () if batch is None else (batch,)
    x = jnp.asarray(rng.normal(size=lead + (sizes[0],)))
    if isinstance(loss, jaxnn.CrossEntropyLoss):
        t = jnp.asarray(rng.integers(0, sizes[-1], size=lead))
    else:
        t = jnp.asarray(rng.normal(size=lead + (sizes[-1],)))
    return net, params, x, t, seed


def assert_close(actual, expected):
    scale = max((float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(expected)), default=0.0)
    assert_trees_close(actual, expected, rtol=TOL, atol=TOL * max(scale, 1e-30))


@functools.partial(jax.jit, static_argnums=(0, 1))
def value_and_grad(rule, net, params, state, x, t):
    """``rule.value_and_grad`` jitted, the rule and the network static."""
    return rule.value_and_grad(net, params, state, x, t)


@functools.partial(jax.jit, static_argnums=0)
def reference(net, params, x, t):
    """``(net.value_and_backprop, jax.value_and_grad(net.loss))``, jitted."""
    return net.value_and_backprop(params, x, t), jax.value_and_grad(net.loss)(params, x, t)
