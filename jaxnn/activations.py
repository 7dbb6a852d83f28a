"""Activation functions, each with its derivative written right beside it.

An activation is a small immutable value (a frozen dataclass): it compares and
hashes by value, so ``jax.jit`` treats it as static configuration and
``LeakyReLU(0.1) == LeakyReLU(0.1)``.

Every activation has ``f(y)`` and ``backward(y, g)``, the vector-Jacobian
product of ``f`` at ``y`` with an upstream gradient ``g``: the line
``db = f'(y) * dx`` of the backprop recursion. Elementwise activations also
have the explicit derivative ``df(y)``, and their ``backward`` is
``df(y) * g``. Softmax is not elementwise; its ``backward`` is the real
Jacobian-vector product, so the recursion works through it too.

All functions act on the last axis and accept any leading (batch) axes.

To define your own activation, subclass :class:`Elementwise` and write ``f``
and ``df`` (or subclass :class:`Activation` and write ``f`` and ``backward``)
as a frozen dataclass; ``jaxnn.check_gradients`` tells you whether the
derivative is right.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn._checks import real_number

__all__ = [
    "Activation",
    "Elementwise",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
]


@dataclasses.dataclass(frozen=True)
class Activation:
    """Base class: an activation ``f`` with its backward rule.

    ``kinks`` lists the points where ``f`` is not differentiable (``(0.0,)``
    for ReLU); gradient checking leaves finite differences across them out.
    A subclass with kinks declares them the same way, as a class attribute.
    """

    kinks: ClassVar[tuple[float, ...]] = ()

    def f(self, y: ArrayLike) -> jax.Array:
        """The activation applied to pre-activations ``y`` of shape (..., n)."""
        raise NotImplementedError

    def backward(self, y: ArrayLike, g: ArrayLike) -> jax.Array:
        """Vector-Jacobian product ``g^T (df/dy)`` at ``y``, shape (..., n)."""
        raise NotImplementedError

    def __call__(self, y: ArrayLike) -> jax.Array:
        return self.f(y)


@dataclasses.dataclass(frozen=True)
class Elementwise(Activation):
    """An activation applied entry by entry, so its Jacobian is diagonal."""

    def df(self, y: ArrayLike) -> jax.Array:
        """The derivative ``f'(y)``, entry by entry."""
        raise NotImplementedError

    def backward(self, y: ArrayLike, g: ArrayLike) -> jax.Array:
        return self.df(y) * g


@dataclasses.dataclass(frozen=True)
class LeakyReLU(Elementwise):
    """``f(y) = y`` for ``y > 0``, else ``alpha * y``.

    At the kink ``y == 0`` the derivative is ``alpha``: ``f`` and ``df`` use
    the same predicate ``y > 0``, so this is also what ``jax.grad`` gives.

    >>> LeakyReLU(0.5).df(jnp.array([-1.0, 0.0, 2.0])).tolist()
    [0.5, 0.5, 1.0]
    """

    alpha: float = 0.1
    kinks: ClassVar[tuple[float, ...]] = (0.0,)

    def __post_init__(self):
        # A Python float: weakly typed, so alpha * y keeps y's dtype (bfloat16 stays bfloat16).
        object.__setattr__(self, "alpha", float(real_number("LeakyReLU alpha", self.alpha)))

    def f(self, y):
        return jnp.where(y > 0, y, self.alpha * y)

    def df(self, y):
        y = jnp.asarray(y)
        return jnp.where(y > 0, 1.0, self.alpha).astype(y.dtype)


@dataclasses.dataclass(frozen=True)
class ReLU(Elementwise):
    """``f(y) = max(y, 0)``; the derivative at the kink ``y == 0`` is 0, as in ``jax.grad``."""

    kinks: ClassVar[tuple[float, ...]] = (0.0,)

    def f(self, y):
        return jnp.where(y > 0, y, jnp.zeros_like(y))

    def df(self, y):
        y = jnp.asarray(y)
        return jnp.where(y > 0, 1.0, 0.0).astype(y.dtype)


@dataclasses.dataclass(frozen=True)
class Sigmoid(Elementwise):
    """``f(y) = 1 / (1 + exp(-y))``, ``f'(y) = f(y) (1 - f(y))``; finite for any ``|y|``."""

    def f(self, y):
        return jax.nn.sigmoid(y)

    def df(self, y):
        s = jax.nn.sigmoid(y)
        return s * (1 - s)


@dataclasses.dataclass(frozen=True)
class Tanh(Elementwise):
    """``f(y) = tanh(y)``, ``f'(y) = 1 - tanh(y)^2``."""

    def f(self, y):
        return jnp.tanh(y)

    def df(self, y):
        return 1 - jnp.tanh(y) ** 2


@dataclasses.dataclass(frozen=True)
class Identity(Elementwise):
    """``f(y) = y``: a linear layer."""

    def f(self, y):
        return jnp.asarray(y)

    def df(self, y):
        return jnp.ones_like(y)

    def backward(self, y, g):
        return jnp.asarray(g)


@dataclasses.dataclass(frozen=True)
class Softmax(Activation):
    """``f(y)_i = exp(y_i) / sum_j exp(y_j)`` over the last axis, computed stably.

    Its Jacobian is ``diag(s) - s s^T`` with ``s = f(y)``, so the backward rule
    is ``s * (g - <s, g>)`` and never forms the matrix. For 16-bit ``y`` both
    are computed in float32 and cast back, so the sums over the last axis do
    not lose the small terms.
    """

    def f(self, y):
        y = jnp.asarray(y)
        return jax.nn.softmax(y.astype(_wide(y.dtype)), axis=-1).astype(y.dtype)

    def backward(self, y, g):
        y = jnp.asarray(y)
        wide = _wide(y.dtype)
        s = jax.nn.softmax(y.astype(wide), axis=-1)
        g = jnp.asarray(g).astype(wide)
        return (s * (g - jnp.sum(s * g, axis=-1, keepdims=True))).astype(y.dtype)


def _wide(dtype):
    """float32 for 16-bit floats, where sums of many terms lose too much; else ``dtype`` itself."""
    return jnp.float32 if jnp.issubdtype(dtype, jnp.floating) and jnp.dtype(dtype).itemsize < 4 else dtype
