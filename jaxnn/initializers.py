"""Weight initialisers by name, built on ``jax.nn.initializers``.

Weights are stored as (outs, ins), so the ecosystem's initialisers are told
that the fan-in axis is the last one and the fan-out axis the first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from jaxnn._types import Initializer

__all__ = ["articles_normal", "get_initializer"]

_FAN = dict(in_axis=-1, out_axis=-2)


def articles_normal() -> Initializer:
    """The articles' scheme: normal with standard deviation ``1 / (outs * ins)``.

    For a bias of shape (outs,) the standard deviation is ``1 / outs``.
    """

    def init(key, shape, dtype=jnp.float32):
        size = 1
        for n in shape:
            size *= n
        return jax.random.normal(key, shape, dtype) / size

    return init


_NAMED = {
    "lecun_normal": lambda: jinit.lecun_normal(**_FAN),
    "he_normal": lambda: jinit.he_normal(**_FAN),
    "glorot_normal": lambda: jinit.glorot_normal(**_FAN),
    "glorot_uniform": lambda: jinit.glorot_uniform(**_FAN),
    "articles": articles_normal,
    "zeros": lambda: jinit.zeros,
    "normal": lambda: jinit.normal(1.0),
}


def get_initializer(init: str | Initializer) -> Initializer:
    """Return ``init`` if it is callable, else the initialiser of that name.

    Raises:
        TypeError: for something neither a str nor callable.
        ValueError: for an unknown name, listing the known ones.
    """
    if callable(init):
        return init
    if not isinstance(init, str):
        raise TypeError(
            f"an initializer must be a name such as 'lecun_normal' or a callable init(key, shape, dtype), "
            f"got {type(init).__name__} {init!r}"[:200]
        )
    if init not in _NAMED:
        raise ValueError(f"unknown initializer {init!r}; expected a callable or one of {sorted(_NAMED)}")
    return _NAMED[init]()
