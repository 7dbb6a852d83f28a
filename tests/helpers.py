"""Plain helpers for tests: a tree-aware closeness check, random problems, strategies, a planted bug.

Fixtures in conftest.py wrap these; hypothesis tests, which cannot take
function-scoped fixtures, call them directly.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn


def assert_trees_close(actual, expected, rtol, atol, err_msg=""):
    """Assert two pytrees have the same structure and entries close within rtol/atol."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        f"structures differ: {jax.tree.structure(actual)} vs {jax.tree.structure(expected)}"
    )
    for i, (a, e) in enumerate(zip(jax.tree.leaves(actual), jax.tree.leaves(expected))):
        assert np.shape(a) == np.shape(e), f"leaf {i}: shape {np.shape(a)} vs {np.shape(e)}"
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), rtol=rtol, atol=atol, err_msg=f"leaf {i} {err_msg}"
        )


def random_problem(sizes, acts, batch, seed, loss=None, labels=False, target_scale=1.0):
    """A network of these widths and activations, random params (biases too), inputs and targets.

    Targets are integer labels when ``labels`` (with CrossEntropyLoss), else normal
    noise times ``target_scale``; the loss defaults to MSELoss for noise targets.
    """
    loss = loss or (jaxnn.CrossEntropyLoss() if labels else jaxnn.MSELoss())
    net = jaxnn.Network.from_sizes(sizes, acts[: len(sizes) - 1], loss)
    params = net.init(jax.random.key(seed), bias_init="normal")
    x = jax.random.normal(jax.random.key(seed + 1), (batch, sizes[0]))
    if labels:
        t = jax.random.randint(jax.random.key(seed + 2), (batch,), 0, sizes[-1])
    else:
        t = target_scale * jax.random.normal(jax.random.key(seed + 2), (batch, sizes[-1]))
    return net, params, x, t


def smooth_architectures():
    """Hypothesis arguments for small nets of smooth activations: sizes, acts, batch, seed."""
    from hypothesis import strategies as st

    smooth = [jaxnn.Tanh(), jaxnn.Sigmoid(), jaxnn.Identity(), jaxnn.Softmax()]
    return dict(
        sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4),
        acts=st.lists(st.sampled_from(smooth), min_size=3, max_size=3),
        batch=st.integers(1, 3),
        seed=st.integers(0, 2**16),
    )


@dataclasses.dataclass(frozen=True)
class TanhWrongDerivative(jaxnn.Elementwise):
    """tanh with the classic slip f'(y) = 1 - tanh(y) instead of 1 - tanh(y)^2: a planted bug to catch."""

    def f(self, y):
        return jnp.tanh(y)

    def df(self, y):
        return 1 - jnp.tanh(y)
