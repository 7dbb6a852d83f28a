"""The state of a training run: what ``fit`` takes, returns and checkpoints, and its checks."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import Params
from jaxnn._validation import check_opt_state, check_params

__all__ = ["NonFiniteLossError", "TrainState", "check_state", "start_state"]


class TrainState(NamedTuple):
    """Parameters, optimizer state, epochs completed and the gradient source's state: a pytree.

    ``fit`` given a ``TrainState`` continues from it, so a run can be split
    into several calls, saved with :func:`jaxnn.save` and resumed after
    :func:`jaxnn.load`, with the same result as one uninterrupted call.

    Attributes:
        params: the network's ``[(W, b), ...]``.
        opt_state: the optax optimizer's state for ``params``.
        epoch: epochs completed (a Python int, or a 0-d integer array after
            :func:`jaxnn.load`).
        grad_state: the state of the gradient source (``gradients=``): ``()``
            for backprop and ``jax.grad``, a learning rule's feedback
            matrices for the rules of :mod:`jaxnn.rules`. Made by
            ``source.init(key, net, params)``.
    """

    params: Params
    opt_state: Any
    epoch: Any = 0
    grad_state: Any = ()


def start_state(params_or_state, optimizer, source, net, key: jax.Array) -> TrainState:
    """A ``TrainState`` to continue from: a given state as it is, or a fresh one for plain params.

    A fresh state copies the parameters (the caller's arrays are never the
    ones a run writes into), initialises the optimizer, and the source from
    ``key``. Its arguments are assumed checked.
    """
    if isinstance(params_or_state, TrainState):
        epoch = params_or_state.epoch
        if not isinstance(epoch, int):
            epoch = int(jax.device_get(epoch))
        return params_or_state._replace(epoch=epoch)
    params = _copy(params_or_state)
    return TrainState(params, optimizer.init(params), 0, source.init(key, net, params))


@jax.jit
def _copy(tree):
    """Fresh buffers for every leaf, in one compiled call rather than one per leaf."""
    return jax.tree.map(jnp.copy, tree)


def check_state(net, optimizer, source, state: TrainState, where: str = "params_or_state") -> None:
    """Raise unless ``state`` can continue a run of ``net`` with ``optimizer`` and ``source``.

    Parameters for ``net``, ``optimizer``'s state for them, a non-negative
    epoch count, and the source's state (its own ``check_state``).
    """
    check_params(net.layers, state.params, f"{where}.params")
    epoch = state.epoch
    is_int = isinstance(epoch, (int, np.integer)) or (
        isinstance(epoch, (jax.Array, np.ndarray)) and epoch.shape == () and jnp.issubdtype(epoch.dtype, jnp.integer)
    )
    if not is_int or isinstance(epoch, (bool, np.bool_)):
        raise TypeError(f"{where}.epoch must be an int (epochs completed), got {type(epoch).__name__} {epoch!r}"[:200])
    if not isinstance(epoch, jax.core.Tracer) and int(epoch) < 0:
        raise ValueError(f"{where}.epoch must be >= 0 (epochs completed), got {int(epoch)}")
    check_opt_state(optimizer, state.params, state.opt_state, f"{where}.opt_state")
    source.check_state(net, state.params, state.grad_state, f"{where}.grad_state")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``state`` holds the last finite :class:`TrainState`.

    Attributes:
        epoch: the epoch in which it happened, counting from 1 as ``fit``'s
            history does.
        step: the step within that epoch, counting from 1.
        state: the latest state before that step whose parameters are all
            finite (``state.epoch`` counts the epochs completed before it), so
            nothing trained so far is lost.
        epoch_start_state: the state the failing epoch started from, a clean
            point to resume from with different settings.
    """

    def __init__(self, message: str, *, epoch: int, step: int, state: TrainState, epoch_start_state: TrainState):
        super().__init__(message)
        self.epoch, self.step, self.state, self.epoch_start_state = epoch, step, state, epoch_start_state
