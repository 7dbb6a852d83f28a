"""How far a rule is from backprop: angles between its updates and the gradient, its feedback and ``W^T``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn._types import Params
from jaxnn.rules._source import GradientSource

__all__ = ["Alignment", "alignment"]


class Alignment(NamedTuple):
    """Angles in degrees, one entry per layer (shape (n_layers,)), NaN where not defined.

    Attributes:
        update: between the rule's ``dW_i`` and ``jax.grad``'s, as flat
            vectors. 0 for the output layer of every rule in
            :mod:`jaxnn.rules`; NaN where either is exactly zero.
        feedback: between the matrix the rule uses in place of ``W_i^T`` and
            ``W_i^T``. NaN for layer 0 (no error goes to the input), for rules
            without such matrices (backprop itself, custom rules without a
            ``transport_matrices`` method) and for DFA's layers but the last
            (its other matrices replace products of several layers).
    """

    update: jax.Array
    feedback: jax.Array


def _angle(a: jax.Array, b: jax.Array) -> jax.Array:
    """Degrees between ``a`` and ``b`` as flat vectors; NaN if either is zero.

    ``2 atan2(|u - v|, |u + v|)`` of the unit vectors: accurate near 0 and
    180 degrees, where ``arccos`` of the cosine loses half the digits.
    """
    u, v = jnp.ravel(a) / jnp.linalg.norm(a), jnp.ravel(b) / jnp.linalg.norm(b)
    return jnp.degrees(2 * jnp.arctan2(jnp.linalg.norm(u - v), jnp.linalg.norm(u + v)))


def alignment(rule: GradientSource, net, params: Params, state, x: ArrayLike, t: ArrayLike) -> Alignment:
    """Per layer, the angle between ``rule``'s update and the gradient, and between its feedback and ``W^T``.

    ``update[i]`` is the angle between the ``dW_i`` of
    ``rule.value_and_grad(net, params, state, x, t)`` and that of
    ``jax.grad(net.loss)`` on the same batch: under 90 degrees, the rule's
    step still goes downhill. ``feedback[i]`` is the angle between the
    matrix ``B_i`` the rule carries the error back through (its
    ``transport_matrices(net, params, state)``, if it has that method) and
    ``W_i^T``. Both are in degrees, NaN where not defined (see
    :class:`Alignment`). ``state`` is read, not advanced. Jittable with
    ``rule`` and ``net`` static: ``jax.jit(alignment, static_argnums=(0, 1))``.

    Args:
        rule: a :class:`jaxnn.rules.GradientSource`.
        net, params, state: the network, its parameters and the rule's state.
        x, t: one example (ins,) or a batch (batch, ins), and the targets.

    Returns:
        An :class:`Alignment` of two arrays of shape (n_layers,).

    Raises:
        TypeError: if ``rule`` is not a GradientSource.

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 5, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> rule = jaxnn.rules.FeedbackAlignment()
    >>> state = rule.init(jax.random.key(1), net, params)
    >>> angles = jaxnn.rules.alignment(rule, net, params, state, jnp.ones((4, 3)), jnp.zeros((4, 2)))
    >>> angles.update.shape, float(angles.update[-1]) < 1e-3, bool(jnp.isnan(angles.feedback[0]))
    ((2,), True, True)
    """
    if not isinstance(rule, GradientSource):
        raise TypeError(f"rule must be a jaxnn.rules.GradientSource, got {type(rule).__name__}")
    _, updates, _ = rule.value_and_grad(net, params, state, x, t)
    grads = jax.grad(net.loss)(params, x, t)
    dtype = params[0][0].dtype
    update = jnp.stack([_angle(u[0], g[0]) for u, g in zip(updates, grads)])
    matrices = rule.transport_matrices(net, params, state) if hasattr(rule, "transport_matrices") else {}
    nan = jnp.asarray(jnp.nan, dtype)
    feedback = jnp.stack([
        _angle(matrices[i], W.T) if i in matrices and matrices[i].shape == W.T.shape else nan
        for i, (W, _) in enumerate(params)
    ])
    return Alignment(update.astype(dtype), feedback.astype(dtype))
