"""Per-example gradients, their norms without forming them, and DP-SGD clipping in one backward pass.

For a dense layer the gradient of example ``i``'s loss is an outer product,
``dW_i = db_i x_i^T``, so ``||dW_i||_F = ||db_i|| ||x_i||`` and
``||(dW_i, db_i)||^2 = ||db_i||^2 (||x_i||^2 + 1)``. The batched recursion
already holds every ``db_i`` (one row each) and every ``x_i``, so the norms
of all per-example gradients cost one batched backward pass, and so does
their clipped mean: clipping example ``i`` to norm ``C`` scales its ``db_i``
by ``w_i = min(1, C / ||g_i||)``, and then ``dW = sum_i w_i db_i x_i^T / batch``
is one matrix product. No (batch, outs, ins) tensor is ever made.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn._checks import check_data, non_negative_number, prng_key, real_number, require_target
from jaxnn.backprop import backward, forward_trace, layer_grads
from jaxnn._types import Grads, Params
from jaxnn.network import Network, check_batch, check_network

__all__ = ["clipped_mean_grad", "per_example_grad_norms", "per_example_grads"]


def per_example_grads(net: Network, params: Params, x: ArrayLike, t: ArrayLike) -> Grads:
    """The gradient of each example's loss: ``jax.vmap(net.backprop, in_axes=(None, 0, 0))``.

    Args:
        net, params: the network and its parameters.
        x: a batch (batch, ins).
        t: its targets, a leading batch axis.

    Returns:
        Gradients shaped like ``params`` with a leading batch axis:
        ``dW`` (batch, outs, ins), ``db`` (batch, outs).

    Raises:
        ValueError, TypeError: for inputs ``net.backprop`` rejects, if ``x``
            is not a batch, or (for concrete data) labels out of range or
            non-finite values. Under ``jax.jit`` the value checks cannot run:
            a bad label then gives garbage silently.

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> x, t = jax.numpy.ones((5, 3)), jax.numpy.zeros((5, 2))
    >>> [g.shape for g in jax.tree.leaves(jaxnn.per_example_grads(net, params, x, t))]
    [(5, 2, 3), (5, 2)]
    """
    check_network("net", net)
    require_target("per_example_grads", t)
    x, t = net.check_inputs(params, x, t)
    check_batch("per_example_grads", x, net.layers)
    check_data(net, params, x, t, "per_example_grads")
    return jax.vmap(net.backprop, in_axes=(None, 0, 0))(params, x, t)


def _per_example_deltas(net: Network, params: Params, x: ArrayLike, t: ArrayLike, where: str):
    """The layer inputs ``xs`` and every example's ``db_i`` per layer, from one batched pass.

    Each example's own loss starts the recursion (no ``1 / batch``), so
    layer ``i``'s per-example ``dW`` is ``dbs[i][n] xs[i][n]^T``.
    """
    check_network("net", net)
    require_target(where, t)
    x, t = net.check_inputs(params, x, t)
    check_batch(where, x, net.layers)
    check_data(net, params, x, t, where)  # concrete data only; nothing under jit
    xs, ys = forward_trace(net.layers, params, x)
    dbs, _ = backward(net.layers, params, ys, net.loss_fn.dloss(xs[-1], t))
    return xs[:-1], dbs


def _norms(xs, dbs) -> jax.Array:
    """``||g_i|| = sqrt(sum over layers of ||db_i||^2 (||x_i||^2 + 1))`` for every example ``i``."""
    sq = sum(jnp.sum(db**2, axis=-1) * (jnp.sum(x_in**2, axis=-1) + 1) for db, x_in in zip(dbs, xs))
    return jnp.sqrt(sq)


def per_example_grad_norms(net: Network, params: Params, x: ArrayLike, t: ArrayLike) -> jax.Array:
    """The Euclidean norm of each example's whole gradient, without forming any of them.

    ``||g_i||^2 = sum over layers of ||db_i||^2 (||x_i||^2 + 1)``, with ``db_i``
    and the layer input ``x_i`` from one batched backward pass. Equal to the
    norm of :func:`per_example_grads` flattened per example.

    Args:
        net, params: the network and its parameters.
        x: a batch (batch, ins).
        t: its targets, as for ``net.loss``.

    Returns:
        Norms of shape (batch,).

    Raises:
        ValueError: if ``x`` is not a batch, for shapes ``net.loss`` rejects,
            or (for concrete data) labels out of range or non-finite values.

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 2), jaxnn.Identity(), jaxnn.MSELoss())
    >>> params = [(jax.numpy.zeros((2, 3)), jax.numpy.zeros(2))]
    >>> x, t = jax.numpy.array([[1.0, 2.0, 2.0]]), jax.numpy.array([[1.0, 0.0]])
    >>> norms = jaxnn.per_example_grad_norms(net, params, x, t)  # sqrt(10): ||db|| = 1, ||x|| = 3
    >>> round(float(norms[0]), 6)
    3.162278
    """
    return _norms(*_per_example_deltas(net, params, x, t, "per_example_grad_norms"))


def clipped_mean_grad(
    net: Network,
    params: Params,
    x: ArrayLike,
    t: ArrayLike,
    clip_norm: float,
    *,
    noise_multiplier: float = 0.0,
    key: jax.Array | None = None,
) -> Grads:
    """The DP-SGD gradient: each example's gradient clipped to norm ``clip_norm``, averaged, noised.

    ``g = (sum_i w_i g_i + noise_multiplier * clip_norm * N(0, I)) / batch``
    with ``w_i = min(1, clip_norm / ||g_i||)``. Computed as one batched
    backward pass: the norms from ``db_i`` and ``x_i`` (see
    :func:`per_example_grad_norms`), then ``dW = (w * dB)^T X / batch`` and
    ``db = sum_i w_i db_i / batch``; per-example gradients are never formed.

    Args:
        net, params: the network and its parameters.
        x: a batch (batch, ins).
        t: its targets.
        clip_norm: ``C >= 0``, the largest norm any example's gradient keeps.
        noise_multiplier: ``sigma``; Gaussian noise of standard deviation
            ``sigma * C`` is added to the clipped sum. ``0`` adds none.
        key: PRNG key for the noise; needed when ``noise_multiplier`` is not 0.
            Leaf ``i`` of the gradient (in ``jax.tree.leaves`` order) gets the
            draw ``jax.random.normal(jax.random.split(key, n_leaves)[i])``.

    Returns:
        Gradients shaped like ``params``.

    Raises:
        TypeError: if ``clip_norm`` or ``noise_multiplier`` is not a real
            number, or ``key`` is not a PRNG key (``jax.random.key(0)``).
        ValueError: for a negative ``clip_norm`` or ``noise_multiplier``, for
            noise without a ``key``, if ``x`` is not a batch, or as
            :func:`per_example_grad_norms`.

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 2), jaxnn.Identity(), jaxnn.MSELoss())
    >>> params = [(jax.numpy.zeros((2, 3)), jax.numpy.zeros(2))]
    >>> x, t = jax.numpy.array([[1.0, 2.0, 2.0]]), jax.numpy.array([[1.0, 0.0]])
    >>> dW, db = jaxnn.clipped_mean_grad(net, params, x, t, clip_norm=1.0)[0]
    >>> round(float(jax.numpy.sqrt(jax.numpy.sum(dW**2) + jax.numpy.sum(db**2))), 6)
    1.0
    """
    non_negative_number("clip_norm", clip_norm)
    non_negative_number("noise_multiplier", noise_multiplier)
    noisy = not (isinstance(noise_multiplier, numbers.Real) and noise_multiplier == 0)
    real_number("noise_multiplier", noise_multiplier)  # finite: infinite noise is no gradient
    if noisy:
        real_number("clip_norm (with noise, whose scale it sets)", clip_norm)
    if noisy and key is None:
        raise ValueError("noise_multiplier is not 0, so clipped_mean_grad needs a PRNG key (key=jax.random.key(0))")
    prng_key("clipped_mean_grad key", key, optional=True)
    xs, dbs = _per_example_deltas(net, params, x, t, "clipped_mean_grad")
    norms = _norms(xs, dbs)
    # w_i = min(1, C / norm_i), written so that a zero norm gives 1 and no division by 0.
    clipped = norms > clip_norm
    weights = jnp.where(clipped, clip_norm / jnp.where(clipped, norms, 1), 1).astype(norms.dtype)
    batch = xs[0].shape[0]
    grads = layer_grads([db * weights[:, None] for db in dbs], xs)
    if noisy:
        leaves = jax.tree.leaves(grads)
        keys = jax.random.split(key, len(leaves))
        scale = noise_multiplier * clip_norm
        noised = [g + scale * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)]
        grads = jax.tree.unflatten(jax.tree.structure(grads), noised)
    grads = [g / batch for pair in grads for g in pair]
    return jax.tree.unflatten(jax.tree.structure(params), grads)
