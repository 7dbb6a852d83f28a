"""The state of a training run: what ``fit`` takes, returns and checkpoints."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn._types import Params

__all__ = ["NonFiniteLossError", "TrainState", "start_state"]


class TrainState(NamedTuple):
    """Parameters, optimizer state and the number of epochs completed: a pytree.

    ``fit`` given a ``TrainState`` continues from it, so a run can be split
    into several calls, saved with :func:`jaxnn.save` and resumed after
    :func:`jaxnn.load`, with the same result as one uninterrupted call.

    Attributes:
        params: the network's ``[(W, b), ...]``.
        opt_state: the optax optimizer's state for ``params``.
        epoch: epochs completed (a Python int, or a 0-d integer array after
            :func:`jaxnn.load`).
    """

    params: Params
    opt_state: Any
    epoch: Any = 0


def start_state(params_or_state, optimizer: optax.GradientTransformation) -> TrainState:
    """A ``TrainState`` to continue from: a given state as it is, or fresh for plain params."""
    if isinstance(params_or_state, TrainState):
        epoch = params_or_state.epoch
        if not isinstance(epoch, int):
            epoch = int(jax.device_get(epoch))
        return params_or_state._replace(epoch=epoch)
    # New buffers: the caller's arrays are never the ones a run writes into.
    params = _copy(params_or_state)
    return TrainState(params, optimizer.init(params), 0)


@jax.jit
def _copy(tree):
    """Fresh buffers for every leaf, in one compiled call rather than one per leaf."""
    return jax.tree.map(jnp.copy, tree)


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
