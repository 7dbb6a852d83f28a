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

The line ``dx = W^T db`` carries the forward weights backwards ("weight
transport"). :func:`backward` takes it as an option, ``transport``, so that
learning rules which replace it (feedback alignment, sign symmetry,
Kolen-Pollack, direct feedback alignment: :mod:`jaxnn.rules`) run through
this same loop:

* ``None``: ``dx = W^T db``, backprop;
* a sequence of matrices, one per layer: ``dx = B_i db`` with ``B_i`` of
  shape (ins, outs) in place of ``W_i^T`` (``None`` entries keep ``W_i^T``);
* :class:`Direct`: the output layer's ``db``, ``e``, goes straight to every
  hidden layer ``i`` as ``dx = B_i e``, ``B_i`` of shape (outs_i, outs_last).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

from jaxnn._types import Grads, Params

__all__ = ["Direct", "Trace", "affine", "backprop_trace", "backward", "forward_trace", "layer_grads"]


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


class Direct(NamedTuple):
    """Direct feedback: the output error sent straight to every hidden layer (Nøkland 2016).

    With ``e`` the last layer's ``db``, hidden layer ``i`` receives
    ``dx = B_i e`` in place of the ``dx`` the layer above would transport, so
    no hidden layer's error depends on another's.

    Attributes:
        matrices: ``matrices[i]`` of shape (outs_i, outs_last) for every hidden
            layer ``i = 0, ..., len(layers) - 2``, first layer first.
    """

    matrices: Sequence[jax.Array]


#: What replaces ``W^T`` in ``dx = W^T db``: None (``W^T`` itself), one matrix
#: (or None) per layer, or :class:`Direct`.
Transport = Union[None, Sequence, Direct]


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


def _times(B: jax.Array, db: jax.Array) -> jax.Array:
    """``B db`` for one example, ``dB B^T`` for a batch (one example per row)."""
    return B @ db if db.ndim == 1 else db @ B.T


def backward(layers: Sequence, params: Params, ys: list, dx: jax.Array,
             transport: Transport = None) -> tuple[list, list]:
    """The recursion's two lines per layer, from the last layer back to the first.

    ``db = f'(y) * dx`` (``activation.backward(y, dx)``), then ``dx = W^T db``.
    For a batch every row is one example's, so ``dbs[i]`` (batch, outs) keeps
    each example's ``db_i`` before any sum over the batch.

    The second line is ``transport``'s: by default ``W^T db``; with a list of
    matrices ``dx = B_i db`` (``B_i`` of shape (ins, outs), or ``None`` for
    ``W_i^T``); with :class:`Direct` the hidden layers' ``dx`` are ``B_i e``,
    all from the output layer's ``e = db``, and no error goes to the input.
    Shapes are assumed checked (the rules in :mod:`jaxnn.rules` check theirs).

    Args:
        layers, params: the network's layers and their ``(W, b)``.
        ys: pre-activations from :func:`forward_trace`.
        dx: the gradient of the loss with respect to the output.
        transport: None, a sequence with one matrix (or None) per layer, or a
            :class:`Direct`.

    Returns:
        ``(dbs, dxs)``: ``dbs[i]`` of layer ``i``, and ``dxs[i]`` the error
        transported to layer ``i``'s input (``dxs[-1]`` is ``dx`` itself); by
        default it is the gradient with respect to that input. With
        :class:`Direct` ``dxs[0]`` is None.
    """
    n = len(layers)
    direct = isinstance(transport, Direct)
    dbs, dxs = [None] * n, [None] * n + [dx]
    for i in reversed(range(n)):
        dbs[i] = layers[i].activation.backward(ys[i], dxs[i + 1])
        if direct:  # the output error, straight to every hidden layer; nothing from the hidden ones
            if i == n - 1:
                for j, B in enumerate(transport.matrices):
                    dxs[j + 1] = _times(B, dbs[i])
        elif transport is None or transport[i] is None:
            W = params[i][0]
            dxs[i] = W.T @ dbs[i] if dbs[i].ndim == 1 else dbs[i] @ W
        else:
            dxs[i] = _times(transport[i], dbs[i])
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


def backprop_trace(layers: Sequence, loss_fn, params: Params, x: jax.Array, t: jax.Array,
                   transport: Transport = None) -> Trace:
    """Run the forward pass, then the recursion from the last layer back to the first.

    Inputs are assumed checked (``Network.check_inputs`` does that); ``x``
    has shape (ins,) or (batch, ins). ``transport`` is :func:`backward`'s;
    the loss is the true loss whatever it is.
    """
    xs, ys = forward_trace(layers, params, x)
    out = xs[-1]
    loss = jnp.mean(loss_fn.loss(out, t))
    dx = loss_fn.dloss(out, t)
    if x.ndim == 2:
        dx = dx / x.shape[0]  # the loss is the mean over the batch
    dbs, dxs = backward(layers, params, ys, dx, transport)
    return Trace(loss, layer_grads(dbs, xs[:-1]), xs, ys, dxs)
