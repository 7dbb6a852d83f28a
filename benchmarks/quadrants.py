"""Section 1: the articles' quadrant training, 2-3-2 LeakyReLU, MSE, per-example SGD."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from articles_numpy import train as numpy_train
from timing import interleaved

LR = 0.05
ALPHA = 0.1  # jaxnn.LeakyReLU's default slope


def make_problem(n: int, seed: int = 0):
    """The quadrant task: points in [-2, 2]^2, one-hot class 0 where x * y > 0."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    t = np.eye(2, dtype=np.float32)[(x[:, 0] * x[:, 1] <= 0).astype(int)]
    net = jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.LeakyReLU(ALPHA)), jaxnn.Layer(3, 2, jaxnn.LeakyReLU(ALPHA))],
                        jaxnn.MSELoss())
    return net, net.init(jax.random.key(seed), dtype=jnp.float32), x, t


def _leaky(y):
    return jnp.where(y > 0, y, ALPHA * y)


def _bare_manual_step(params, xt):
    """One per-example SGD step with the recursion written out, no library code."""
    x, t = xt
    inputs, pre = [x], []
    for W, b in params:
        pre.append(W @ inputs[-1] + b)
        inputs.append(_leaky(pre[-1]))
    dx = 2 * (inputs[-1] - t) / t.shape[0]
    new = list(params)
    for i in reversed(range(len(params))):
        W, b = params[i]
        db = jnp.where(pre[i] > 0, 1.0, ALPHA).astype(dx.dtype) * dx
        dx = W.T @ db
        new[i] = (W - LR * jnp.outer(db, inputs[i]), b - LR * db)
    return new, None


def _bare_loss(params, x, t):
    for W, b in params:
        x = _leaky(W @ x + b)
    return jnp.mean((x - t) ** 2)


def _bare_autodiff_step(params, xt):
    grads = jax.grad(_bare_loss)(params, *xt)
    return jax.tree.map(lambda p, g: p - LR * g, params, grads), None


@functools.partial(jax.jit, static_argnames="step")
def bare_scan(params, xs, ts, step):
    """The whole training as one ``lax.scan`` of ``step``: the floor for per-example SGD in JAX."""
    return jax.lax.scan(step, params, (xs, ts))[0]


def check_same_training(net, params, x, t, steps=300):
    """The NumPy loop, the bare scan and fit train to the same parameters (float32 vs float64).

    Checked with float32 products in full float32 (a GPU's default is TF32).
    """
    expected = numpy_train(params, x[:steps], t[:steps], LR, ALPHA)
    with jax.default_matmul_precision("highest"):
        state, _ = jaxnn.fit(net, params, x[:steps], t[:steps], optimizer=optax.sgd(LR), batch_size=1)
        fitted = state.params
        bare = bare_scan(params, jnp.asarray(x[:steps]), jnp.asarray(t[:steps]), _bare_manual_step)
    for got in (fitted, bare):
        for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            np.testing.assert_allclose(np.asarray(a), e, rtol=1e-3, atol=1e-4)


def run(steps: int, numpy_steps: int, loop_steps: int, repeats: int) -> dict:
    """Time every way of running the per-example training; seconds per step."""
    net, params, x_np, t_np = make_problem(steps)
    check_same_training(net, params, x_np, t_np)
    x, t = jnp.asarray(x_np), jnp.asarray(t_np)
    optimizer = optax.sgd(LR)

    def fit(gradients):
        state, _ = jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=1, gradients=gradients)
        trained = state.params
        jax.block_until_ready(trained)

    jit_step = jaxnn.make_train_step(net, optimizer)
    rows = [(x[i], t[i]) for i in range(loop_steps)]  # sliced beforehand: the loop times steps only

    def python_loop():
        p, state = params, optimizer.init(params)
        for xi, ti in rows:
            p, state, _ = jit_step(p, state, xi, ti)
        jax.block_until_ready(p)

    def numpy_loop():
        numpy_train(params, x_np[:numpy_steps], t_np[:numpy_steps], LR, ALPHA)

    cases = {
        "numpy": (numpy_loop, numpy_steps),
        "jit_step_loop": (python_loop, loop_steps),
        "bare_scan_manual": (lambda: jax.block_until_ready(bare_scan(params, x, t, _bare_manual_step)), steps),
        "bare_scan_autodiff": (lambda: jax.block_until_ready(bare_scan(params, x, t, _bare_autodiff_step)), steps),
        "fit_manual": (lambda: fit("manual"), steps),
        "fit_autodiff": (lambda: fit("autodiff"), steps),
    }
    return interleaved(cases, repeats)
