"""The hand-written recursion as the gradient JAX itself uses, through ``jax.custom_vjp``.

``loss = loss_with_backprop(net)`` is ``net.loss`` as a function, but
``jax.grad(loss)``, ``jax.value_and_grad(loss)``, ``optax`` pipelines and any
third-party training loop get their gradient from ``net.backprop`` instead of
JAX's own reverse mode.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn.network import Network, check_network
from jaxnn._types import Params

__all__ = ["loss_with_backprop"]


def _zero_cotangent(a: jax.Array):
    """The cotangent of a non-float input: ``float0`` zeros, as JAX requires."""
    return np.zeros(a.shape, dtype=jax.dtypes.float0)


def _is_float(a) -> bool:
    return jnp.issubdtype(a.dtype, jnp.inexact)


def loss_with_backprop(net: Network) -> Callable[[Params, ArrayLike, ArrayLike], jax.Array]:
    """``net.loss`` whose gradient, for every JAX transformation, is the hand-written recursion.

    ``jax.grad(loss_with_backprop(net))(params, x, t)`` equals
    ``net.backprop(params, x, t)``, computed by it: the forward pass runs once
    (``net.backprop_trace``) and the recursion's ``grads`` and ``dx_0`` are
    scaled by the incoming cotangent. So ``jax.value_and_grad``, optax and
    training loops written for plain JAX losses use the manual backward pass.

    Cotangents for every argument:

    * ``params``: the recursion's ``grads``.
    * ``x``: the recursion's ``dxs[0]``, ``dL/dx`` (a float ``x`` only; for an
      integer ``x`` JAX's ``float0`` zeros).
    * ``t``: not part of the recursion; for float targets it is
      ``jax.grad`` of the loss function with respect to ``t`` at the network's
      output, for integer labels ``float0`` zeros.

    Second order works forward over reverse: ``jax.hessian`` of this function
    is ``jax.jacfwd`` of the recursion. ``jax.jvp`` of the loss itself is not
    defined, as for any ``jax.custom_vjp``.

    Args:
        net: the network.

    Returns:
        ``loss(params, x, t) -> scalar``, the same value as ``net.loss``.

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> loss = jaxnn.loss_with_backprop(net)
    >>> x, t = jax.numpy.ones(3), jax.numpy.zeros(2)
    >>> grads = jax.grad(loss)(params, x, t)
    >>> manual = net.backprop(params, x, t)
    >>> pairs = zip(jax.tree.leaves(grads), jax.tree.leaves(manual))
    >>> all(bool((g == m).all()) for g, m in pairs)
    True
    """
    check_network("net", net)

    @jax.custom_vjp
    def loss(params, x, t):
        return net.loss(params, x, t)

    def loss_fwd(params, x, t):
        trace = net.backprop_trace(params, x, t)
        return trace.loss, (trace.grads, trace.dxs[0], trace.xs[-1], x, t)

    def loss_bwd(residuals, g):
        grads, dx, out, x, t = residuals
        d_params = jax.tree.map(lambda a: (g * a).astype(a.dtype), grads)
        d_x = (g * dx).astype(x.dtype) if _is_float(x) else _zero_cotangent(x)
        if _is_float(t):
            target = lambda t: jnp.mean(net.loss_fn.loss(out, t.astype(out.dtype)))
            d_t = (g * jax.grad(target)(t)).astype(t.dtype)
        else:
            d_t = _zero_cotangent(t)
        return d_params, d_x, d_t

    loss.defvjp(loss_fwd, loss_bwd)

    def loss_fn(params: Params, x: ArrayLike, t: ArrayLike) -> jax.Array:
        # jaxnn's checks before custom_vjp's, which would refuse a bad argument from inside JAX
        x, t = net.check_inputs(params, x, t)
        return loss(params, x, t)

    loss_fn.__doc__ = f"The loss of {net!r} with the hand-written recursion as its gradient."
    return loss_fn
