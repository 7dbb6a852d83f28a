"""Second order through the recursion: ``net.backprop`` is pure JAX, so it can be differentiated.

The Hessian of the loss is the Jacobian of its gradient, ``H = d(backprop)/d(params)``,
and a Hessian-vector product is one forward-mode derivative of the
recursion, ``H v = jvp(backprop, params, v)``: no ``jax.grad`` anywhere,
only forward mode through the hand-written backward pass. For smooth
activations both equal ``jax.hessian(net.loss)`` and its product with ``v``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxnn.network import Network, check_like_params, check_network
from jaxnn._types import Grads, Params
from jaxnn._checks import require_target

__all__ = ["hessian", "hvp"]


def hvp(net: Network, params: Params, x: ArrayLike, t: ArrayLike, v: Params) -> Grads:
    """Hessian-vector product ``H v`` of ``net.loss``, by forward mode through ``net.backprop``.

    ``H v = d/de backprop(params + e v) at e = 0``, one ``jax.jvp``: about the
    cost of two backward passes, and ``H`` is never formed.

    Args:
        net, params, x, t: as for ``net.backprop``; ``x`` of shape (ins,) or (batch, ins).
        v: a direction shaped like ``params``.

    Returns:
        ``H v``, shaped like ``params``.

    Raises:
        ValueError, TypeError: for inputs ``net.backprop`` rejects, or a ``v``
            not shaped like ``params`` (naming the layer and ``W`` or ``b``).

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 3, 1), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> x, t = jax.numpy.ones(2), jax.numpy.zeros(1)
    >>> [h.shape for h in jax.tree.leaves(jaxnn.hvp(net, params, x, t, params))]
    [(3, 2), (3,), (1, 3), (1,)]
    """
    check_network("net", net)
    require_target("hvp", t)
    x, t = net.check_inputs(params, x, t)
    v = check_like_params("v", v, net.layers, params)
    return jax.jvp(lambda p: net.backprop(p, x, t), (params,), (v,))[1]


def hessian(net: Network, params: Params, x: ArrayLike, t: ArrayLike) -> jax.Array:
    """The Hessian of ``net.loss`` as one (n, n) matrix: ``jax.jacfwd`` of the recursion.

    Rows and columns follow ``jax.flatten_util.ravel_pytree(params)``:
    ``W0`` (row-major), ``b0``, ``W1``, ``b1``, ...; ``n`` is the number of
    parameters. Symmetric up to rounding.

    Args:
        net, params, x, t: as for ``net.backprop``.

    Returns:
        ``H`` of shape (n, n), in the parameters' dtype.

    Raises:
        ValueError, TypeError: for inputs ``net.backprop`` rejects.
    """
    check_network("net", net)
    require_target("hessian", t)
    x, t = net.check_inputs(params, x, t)
    flat, unravel = ravel_pytree(params)
    grad = lambda f: ravel_pytree(net.backprop(unravel(f), x, t))[0]
    return jnp.asarray(jax.jacfwd(grad)(flat))
