"""Where a training step's parameter updates come from: the gradient source protocol.

A gradient source is a small immutable object (a frozen dataclass: it
compares by its settings, so the compile cache keys on them) with three pure,
jittable methods, in the manner of optax's ``init``/``update`` pairs:

* ``init(key, net, params) -> state``: the source's own state, a pytree
  (``()`` when it keeps none). It rides in :class:`jaxnn.TrainState` as
  ``grad_state``, is saved with checkpoints and replicated over meshes.
* ``value_and_grad(net, params, state, x, t) -> (loss, grads, state)``: a
  minibatch's loss, the updates-to-be shaped like ``params`` (what the
  optimizer is given in place of the gradient) and the next state.
* ``after_update(net, params, state, updates) -> (updates, state)``: called
  with the optimizer's updates before they are applied to ``params``; the
  default passes them through. A rule whose state learns from the forward
  weights' update (Kolen-Pollack) uses it.

One training step is then::

    loss, grads, state = source.value_and_grad(net, params, state, x, t)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    updates, state = source.after_update(net, params, state, updates)
    params = optax.apply_updates(params, updates)

The two built-in modes are sources: :class:`Backprop` (``gradients="manual"``,
the articles' recursion written by hand) and :class:`Autodiff`
(``gradients="autodiff"``, ``jax.grad``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jaxnn._types import Grads, Params

__all__ = ["Autodiff", "Backprop", "GradientSource", "as_source"]


class GradientSource:
    """Base class of gradient sources; subclass it as a ``@dataclasses.dataclass(frozen=True)``.

    Override :meth:`value_and_grad`, and :meth:`init`, :meth:`after_update`
    and :meth:`check_state` when the source keeps state. Methods take the
    network and parameters as given, already checked by the caller (``fit``
    and ``make_train_step`` check once, at their boundary).

    >>> import dataclasses, jax, jaxnn
    >>> @dataclasses.dataclass(frozen=True)
    ... class Halved(jaxnn.rules.GradientSource):
    ...     '''Backprop's gradients, halved.'''
    ...     def value_and_grad(self, net, params, state, x, t):
    ...         loss, grads = net.value_and_backprop(params, x, t)
    ...         return loss, jax.tree.map(lambda g: g / 2, grads), state
    >>> net = jaxnn.Network.from_sizes((2, 1), jaxnn.Identity(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> x, t = jax.numpy.ones(2), jax.numpy.zeros(1)
    >>> loss, grads, state = Halved().value_and_grad(net, params, (), x, t)
    >>> state
    ()
    """

    def init(self, key: jax.Array, net, params: Params) -> Any:
        """The source's state for ``net`` and ``params``, drawn from ``key``; ``()`` by default."""
        return ()

    def value_and_grad(self, net, params: Params, state: Any, x: jax.Array, t: jax.Array) -> tuple[jax.Array, Grads, Any]:
        """``(loss, grads, state)`` for the minibatch ``(x, t)``: ``x`` (ins,) or (batch, ins)."""
        raise NotImplementedError(f"{type(self).__name__} must define value_and_grad(net, params, state, x, t)")

    def after_update(self, net, params: Params, state: Any, updates: Grads) -> tuple[Grads, Any]:
        """``(updates, state)`` once the optimizer has made ``updates`` for ``params``; unchanged by default."""
        return updates, state

    def check_state(self, net, params: Params, state: Any, where: str) -> None:
        """Raise a ValueError or TypeError naming ``where`` unless ``state`` fits ``net`` and ``params``.

        By default the state must have the structure and shapes ``init``
        gives (compared with ``jax.eval_shape``, so nothing is computed).
        """
        expected = jax.eval_shape(lambda key, params: self.init(key, net, params), jax.random.key(0), params)
        given_leaves, given_def = jax.tree.flatten(state)
        want_leaves, want_def = jax.tree.flatten(expected)
        if given_def != want_def:
            raise TypeError(
                f"{where} does not fit {type(self).__name__}: expected {len(want_leaves)} arrays in the "
                f"structure its init makes, got {len(given_leaves)} in another; make it with "
                f"{type(self).__name__}(...).init(key, net, params)"
            )
        paths = jax.tree_util.tree_flatten_with_path(expected)[0]
        for (path, want), leaf in zip(paths, given_leaves):
            shape = getattr(leaf, "shape", None)
            if shape != want.shape:
                raise ValueError(
                    f"{where}{jax.tree_util.keystr(path)} must have shape {want.shape} for "
                    f"{type(self).__name__} on this network, got {shape}"
                )


@dataclasses.dataclass(frozen=True)
class Backprop(GradientSource):
    """The articles' recursion written by hand (``gradients="manual"``): :meth:`jaxnn.Network.value_and_backprop`."""

    def value_and_grad(self, net, params, state, x, t):
        loss, grads = net.value_and_backprop(params, x, t)
        return loss, grads, state


@dataclasses.dataclass(frozen=True)
class Autodiff(GradientSource):
    """``jax.value_and_grad`` of :meth:`jaxnn.Network.loss` (``gradients="autodiff"``), the reference."""

    def value_and_grad(self, net, params, state, x, t):
        loss, grads = jax.value_and_grad(net.loss)(params, x, t)
        return loss, grads, state


_NAMED = {"manual": Backprop(), "autodiff": Autodiff()}


def as_source(gradients, where: str = "gradients") -> GradientSource:
    """``gradients`` as a source: ``"manual"`` is :class:`Backprop`, ``"autodiff"`` :class:`Autodiff`.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name nor a :class:`GradientSource`, or a source
            that is not hashable (make it a frozen dataclass).
    """
    if isinstance(gradients, str):
        if gradients not in _NAMED:
            raise ValueError(f"{where} must be one of {tuple(_NAMED)}, got {gradients!r}"[:200]
                             + "; or pass a jaxnn.rules.GradientSource such as jaxnn.rules.FeedbackAlignment()")
        return _NAMED[gradients]
    if not isinstance(gradients, GradientSource):
        raise TypeError(
            f"{where} must be 'manual', 'autodiff' or a jaxnn.rules.GradientSource (e.g. "
            f"jaxnn.rules.FeedbackAlignment()), got {type(gradients).__name__} {gradients!r}"[:300]
        )
    try:
        hash(gradients)
    except TypeError:
        raise TypeError(
            f"{where}: {type(gradients).__name__} must be hashable, since compiled steps are cached by its "
            f"settings; declare it with @dataclasses.dataclass(frozen=True)"
        ) from None
    return gradients
