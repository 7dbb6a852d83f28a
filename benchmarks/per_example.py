"""Section 3: per-example gradients of the MNIST-size net, vmap of jaxnn backprop vs vmap of jax.grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import mnist_step
from timing import interleaved


def run(batch: int, calls: int, repeats: int) -> dict:
    """Seconds per example for ``jax.vmap`` of the one-example recursion and of ``jax.grad``."""
    net, params, x_np, t_np = mnist_step.make_problem(calls, batch)
    xs = jnp.asarray(x_np).reshape(calls, batch, -1)
    ts = jnp.asarray(t_np).reshape(calls, batch)
    per_example = {
        "vmap_backprop": jax.jit(jax.vmap(net.backprop, in_axes=(None, 0, 0))),
        "vmap_grad": jax.jit(jax.vmap(jax.grad(net.loss), in_axes=(None, 0, 0))),
    }
    manual, auto = (f(params, xs[0], ts[0]) for f in per_example.values())
    for m, a in zip(jax.tree.leaves(manual), jax.tree.leaves(auto)):
        np.testing.assert_allclose(np.asarray(m), np.asarray(a), rtol=1e-4, atol=1e-5)

    def case(f):
        def run_calls():
            for x, t in zip(xs, ts):
                out = f(params, x, t)
            jax.block_until_ready(out)
        return run_calls, calls * batch

    return interleaved({name: case(f) for name, f in per_example.items()}, repeats)
