"""One tree-aware closeness check for every test."""

import jax
import numpy as np


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
