"""The backpropagation recursion of the articles, written by hand.

Starting from ``dx_n = dL(x_n, t)``, for each layer from the last to the first::

    y  = W x + b
    db = f'(y) * dx        # generally: activation.backward(y, dx), the VJP of f at y
    dx = W^T db
    dW = db x^T

For a batch the same lines run in matrix form, one row per example: the
gradient of the mean loss is ``dW = dB^T X / batch`` and ``db`` sums over
rows, which is the mean of the per-example gradients without ever forming
them. No ``jax.grad``, ``jax.vjp`` or ``jax.jacobian`` is used here; the
tests prove the result equal to ``jax.grad`` of the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn._types import Grads, Params

__all__ = ["Trace", "affine", "backprop_trace", "backward", "forward_trace", "layer_grads"]


class Trace(NamedTuple):
    """Everything the recursion computes, for people who want to look inside.

    Attributes:
        loss: the loss (mean over the batch for a batch), a scalar.
        grads: gradients of ``loss``, with the structure of params.
        xs: ``xs[0]`` is the input, ``xs[i + 1]`` the output of layer ``i``.
        ys: ``ys[i]`` is layer ``i``'s pre-activation ``W x + b``.
        dxs: ``dxs[i]`` is the gradient of ``loss`` with respect to ``xs[i]``.
    """

    loss: jax.Array
    grads: Grads
    xs: list[jax.Array]
    ys: list[jax.Array]
    dxs: list[jax.Array]


def affine(W: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    """``y = W x + b`` for one example (ins,) or a batch (batch, ins)."""
    if x.ndim == 1:
        return W @ x + b
    return x @ W.T + b[None, :]


def forward_trace(layers: Sequence, params: Params, x: jax.Array) -> tuple[list, list]:
    """The forward pass keeping every layer's input ``xs`` and pre-activation ``ys``."""
    xs, ys = [x], []
    for layer, (W, b) in zip(layers, params):
        ys.append(affine(W, b, xs[-1]))
        xs.append(layer.activation.f(ys[-1]))
    return xs, ys


def backward(layers: Sequence, params: Params, ys: list, dx: jax.Array) -> tuple[list, list]:
    """The recursion's two lines per layer, from the last layer back to the first.

    ``db = f'(y) * dx`` (``activation.backward(y, dx)``), then ``dx = W^T db``.
    For a batch every row is one example's, so ``dbs[i]`` (batch, outs) keeps
    each example's ``db_i`` before any sum over the batch.

    Args:
        layers, params: the network's layers and their ``(W, b)``.
        ys: pre-activations from :func:`forward_trace`.
        dx: the gradient of the loss with respect to the output.

    Returns:
        ``(dbs, dxs)``: ``dbs[i]`` of layer ``i``, and ``dxs[i]`` the gradient
        with respect to layer ``i``'s input (``dxs[-1]`` is ``dx`` itself).
    """
    dbs, dxs = [None] * len(layers), [None] * len(layers) + [dx]
    for i in reversed(range(len(layers))):
        dbs[i] = layers[i].activation.backward(ys[i], dx)
        W = params[i][0]
        dx = W.T @ dbs[i] if dbs[i].ndim == 1 else dbs[i] @ W
        dxs[i] = dx
    return dbs, dxs


def layer_grads(dbs: list, xs: list) -> Grads:
    """``dW = db x^T`` and ``db`` per layer; for a batch the sums over its rows, ``dB^T X`` and ``sum(dB)``."""
    grads = []
    for db, x_in in zip(dbs, xs):
        if db.ndim == 1:
            grads.append((jnp.outer(db, x_in), db))
        else:
            grads.append((db.T @ x_in, jnp.sum(db, axis=0)))
    return grads


def backprop_trace(layers: Sequence, loss_fn, params: Params, x: jax.Array, t: jax.Array) -> Trace:
    """Run the forward pass, then the recursion from the last layer back to the first.

    Inputs are assumed checked (``Network.check_inputs`` does that); ``x``
    has shape (ins,) or (batch, ins).
    """
    xs, ys = forward_trace(layers, params, x)
    out = xs[-1]
    loss = jnp.mean(loss_fn.loss(out, t))
    dx = loss_fn.dloss(out, t)
    if x.ndim == 2:
        dx = dx / x.shape[0]  # the loss is the mean over the batch
    dbs, dxs = backward(layers, params, ys, dx)
    return Trace(loss, layer_grads(dbs, xs[:-1]), xs, ys, dxs)
