"""Type aliases shared across jaxnn, defined once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

#: One dense layer's parameters: ``W`` of shape (outs, ins) and ``b`` of shape (outs,).
LayerParams = tuple[jax.Array, jax.Array]
#: A network's parameters: a plain list of ``(W, b)`` tuples, first layer first.
Params = list[LayerParams]
#: Gradients have exactly the structure of :data:`Params`.
Grads = Params
#: A ``jax.nn.initializers``-style callable: ``init(key, shape, dtype) -> Array``.
Initializer = Callable[..., jax.Array]
#: Sizes along a network, e.g. ``(784, 16, 16, 10)``.
Sizes = Sequence[int]
