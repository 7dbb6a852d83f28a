"""Section 3: per-example gradients of the MNIST-size net, vmap of jaxnn backprop vs vmap of jax.grad."""

from __future__ import annotations

import os

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
    with jax.default_matmul_precision("highest"):  # checked in full float32 (a GPU's default is TF32)
        manual, auto = [f(params, xs[0], ts[0]) for f in per_example.values()]
    for m, a in zip(jax.tree.leaves(manual), jax.tree.leaves(auto)):
        np.testing.assert_allclose(np.asarray(m), np.asarray(a), rtol=1e-4, atol=1e-5)

    torch_grads = torch_per_example(params)
    if torch_grads is not None:
        per_example["torch_func_vmap_grad"] = torch_grads
        xs_torch, ts_torch = torch_inputs(x_np, t_np, calls, batch)
        got = torch_grads(None, xs_torch[0], ts_torch[0])
        np.testing.assert_allclose(got["0.weight"].numpy(), np.asarray(manual[0][0]), rtol=1e-3, atol=1e-5)
        inputs = {"torch_func_vmap_grad": (xs_torch, ts_torch)}
    else:
        inputs = {}

    def case(f, name):
        batches = inputs.get(name, (xs, ts))

        def run_calls():
            for x, t in zip(*batches):
                out = f(params, x, t)
            jax.block_until_ready(out)  # a no-op for PyTorch's tensors, computed eagerly
        return run_calls, calls * batch

    return interleaved({name: case(f, name) for name, f in per_example.items()}, repeats)


def torch_inputs(x_np, t_np, calls, batch):
    import torch

    return (torch.from_numpy(x_np).reshape(calls, batch, -1),
            torch.from_numpy(t_np.astype(np.int64)).reshape(calls, batch))


def torch_per_example(params):
    """``torch.func.vmap(torch.func.grad(loss))`` of the same network, or None without torch.

    The returned function takes ``(ignored, x, t)`` like the JAX cases and
    gives per-example gradients by parameter name.
    """
    try:
        import torch
        from torch.func import functional_call, grad, vmap
    except ImportError:
        return None
    model = mnist_step.torch_model(params)
    weights = {name: p.detach() for name, p in model.named_parameters()}

    def loss(weights, x, t):
        return torch.nn.functional.cross_entropy(functional_call(model, weights, (x[None],)), t[None])

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))

    def run(_, x, t):
        torch.set_num_threads(os.cpu_count() or 1)  # section 2 may have left it at 1
        return per_example(weights, x, t)

    return run
