"""Plain helpers for tests: a tree-aware closeness check, shared problems, strategies, a planted bug.

Fixtures in conftest.py wrap these; hypothesis tests, which cannot take
function-scoped fixtures, call them directly.
"""

import dataclasses
import os

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


def quadrant_problem(n=64, seed=0):
    """The articles' 2-3-2 LeakyReLU net on the quadrant problem: one-hot targets, MSE."""
    net = jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.LeakyReLU()), jaxnn.Layer(3, 2, jaxnn.LeakyReLU())], jaxnn.MSELoss())
    kp, kx = jax.random.split(jax.random.key(seed))
    x = jax.random.uniform(kx, (n, 2), minval=-2, maxval=2)
    t = jax.nn.one_hot((x[:, 0] * x[:, 1] > 0).astype(jnp.int32), 2)
    return net, net.init(kp), x, t


def classification(n=96, seed=0, ins=6, classes=3):
    """A tanh net and noisy labels from the inputs' largest of the first ``classes`` entries."""
    net = jaxnn.Network.from_sizes([ins, 8, classes], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    kp, kx, kt = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, ins))
    t = jnp.argmax(x[:, :classes] + 0.3 * jax.random.normal(kt, (n, classes)), axis=-1)
    return net, net.init(kp), x, t


TRACES = []  # shapes CountingTanh was traced with, in order


@dataclasses.dataclass(frozen=True)
class CountingTanh(jaxnn.Tanh):
    """Tanh that records each time it is traced (Python runs only while tracing)."""

    def f(self, y):
        TRACES.append(y.shape)
        return super().f(y)


def small_problem(n=40, seed=0):
    """A 3-5-2 classifier whose tanh counts its traces in TRACES."""
    net = jaxnn.Network.from_sizes([3, 5, 2], [CountingTanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    kp, kx, kt = jax.random.split(jax.random.key(seed), 3)
    return net, net.init(kp), jax.random.normal(kx, (n, 3)), jax.random.randint(kt, (n,), 0, 2)


def stream_problem(dtype=np.float32, n=200):
    """A 20-32-4 classifier on NumPy data, for host streaming."""
    net = jaxnn.Network.from_sizes((20, 32, 4), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 20)).astype(dtype)
    t = rng.integers(0, 4, n).astype(np.int32)
    return net, net.init(jax.random.key(0), dtype=dtype), x, t


def max_abs_diff(a, b):
    """The largest absolute difference between two pytrees' entries."""
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class AutodiffCalled(Exception):
    """Raised when autodiff differentiates :class:`TanhNoAutodiff`."""


@jax.custom_jvp
def _tanh_refusing_autodiff(y):
    return jnp.tanh(y)


@_tanh_refusing_autodiff.defjvp
def _refuse(primals, tangents):
    raise AutodiffCalled("jax differentiated TanhNoAutodiff: something called autodiff")


@dataclasses.dataclass(frozen=True)
class TanhNoAutodiff(jaxnn.Elementwise):
    """tanh with its right derivative, whose ``f`` raises AutodiffCalled when jax differentiates it.

    The hand-written recursion only evaluates ``f`` and ``df``, so a path that
    claims to be manual trains with it; any path that calls autodiff fails.
    """

    def f(self, y):
        return _tanh_refusing_autodiff(y)

    def df(self, y):
        return 1 - jnp.tanh(y) ** 2


def sgd_loop(net, params, batches, lr, grad=None):
    """Plain SGD in Python: ``params -= lr * grad(params, x, t)`` for each ``(x, t)`` in ``batches``.

    ``grad`` defaults to ``net.backprop``, the hand-written recursion. Each
    step is jitted on its own, only to keep the loop quick.
    """
    grad = grad or net.backprop

    @jax.jit
    def step(params, x, t):
        return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grad(params, x, t))]

    for x, t in batches:
        params = step(params, x, t)
    return params


def adamw_loop(net, params, batches, lr, weight_decay, b1=0.9, b2=0.999, eps=1e-8):
    """AdamW written out (Loshchilov and Hutter; optax's defaults): Adam's step plus ``lr * wd * params``."""
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    for k, (x, t) in enumerate(batches, start=1):
        g = net.backprop(params, x, t)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g**2, v, g)
        params = jax.tree.map(
            lambda p, m, v: p - lr * ((m / (1 - b1**k)) / (jnp.sqrt(v / (1 - b2**k)) + eps) + weight_decay * p),
            params, m, v)
    return [tuple(pair) for pair in params]


QUICK_EXAMPLES = 3  # hypothesis examples per test in the quick tier


def examples(n: int) -> int:
    """``n`` hypothesis examples in the full suite, at most ``QUICK_EXAMPLES`` in the quick tier (``-m "not slow"``)
    and under mutation testing (``JAXNN_HYPOTHESIS_PROFILE=mutation``), where each example's fresh
    architecture would compile afresh for every mutant."""
    quick = os.environ.get("JAXNN_QUICK_TIER") or os.environ.get("JAXNN_HYPOTHESIS_PROFILE") == "mutation"
    return min(n, QUICK_EXAMPLES) if quick else n
