"""The state of a training run: what ``fit`` takes, returns and checkpoints, and its checks."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._types import Params
from jaxnn.network import check_params

__all__ = ["NonFiniteLossError", "TrainState", "check_opt_state", "check_state", "start_state"]


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
    check_params(f"{where}.params", state.params, net.layers)
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


def check_opt_state(optimizer, params, opt_state, where: str = "opt_state") -> None:
    """Raise unless ``opt_state`` has the structure and leaf shapes of ``optimizer.init(params)``.

    Only structure and shapes are compared (``jax.eval_shape``), so it also
    runs while ``jax.jit`` traces; dtypes may differ (a loaded count may be
    int32 where a fresh one is int64).

    Raises:
        TypeError: a different structure (another optimizer's state, a
            missing part) or a leaf that is not an array.
        ValueError: a leaf of another shape; the message names its key path.
    """
    fix = "make it with optimizer.init(params) for this optimizer and these parameters"
    try:
        expected = jax.eval_shape(optimizer.init, params)
    except Exception:  # an init that cannot be traced: nothing to compare with
        return
    # an iterator (a generator) is a leaf here, refused below, rather than JAX's deprecation warning
    given_leaves, given_def = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=lambda v: isinstance(v, Iterator))
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(expected)
    if given_def != want_def:
        given_paths = [jax.tree_util.keystr(k) for k, _ in given_leaves]
        want_paths = [jax.tree_util.keystr(k) for k, _ in want_leaves]
        missing = [p for p in want_paths if p not in given_paths]
        extra = [p for p in given_paths if p not in want_paths]
        given, want = _describe_state(opt_state, len(given_leaves)), _describe_state(expected, len(want_leaves))
        if _state_classes(opt_state) != _state_classes(expected):
            if _state_classes(opt_state):
                detail = f"it looks like another optimizer's state: {given}, where optimizer.init(params) gives {want}"
                fix = "resume with the optimizer that made it, or start afresh with optimizer.init(params)"
            else:
                detail = f"it is not an optax optimizer state: {given}, where optimizer.init(params) gives {want}"
        elif missing or extra:
            which, paths = ("missing", missing) if missing else ("not in optimizer.init(params)", extra)
            named = _short_list([where + p for p in paths], 3)
            leaves = f"the leaf {named} is" if len(paths) == 1 else f"{len(paths)} leaves are {which}: {named}"
            detail = (f"{leaves}{' ' + which if len(paths) == 1 else ''} "
                      f"(it holds {given}, where optimizer.init(params) gives {want})")
        else:
            detail = f"its containers differ: {given}, where optimizer.init(params) gives {want}"
        raise TypeError(f"{where} does not fit the optimizer and params: {detail}; {fix}")
    for (path, leaf), (_, want) in zip(given_leaves, want_leaves):
        name = f"{where}{jax.tree_util.keystr(path)}"
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, numbers.Number)) or isinstance(leaf, complex):
            raise TypeError(f"{name} must be an array, got {type(leaf).__name__}; {fix}")
        if jnp.shape(leaf) != want.shape:
            raise ValueError(f"{name} has shape {jnp.shape(leaf)} but the optimizer expects {want.shape}; {fix}")


def _state_classes(tree) -> list[str]:
    """The names of the NamedTuple classes in an optimizer state, in order (optax's ``ScaleByAdamState``, ...)."""
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        return [type(tree).__name__] + [n for part in tree for n in _state_classes(part)]
    if isinstance(tree, (tuple, list)):
        return [n for part in tree for n in _state_classes(part)]
    if isinstance(tree, dict):
        return [n for part in tree.values() for n in _state_classes(part)]
    return []


def _short_list(items: Sequence[str], most: int = 4) -> str:
    """``items`` joined with commas; past ``most`` of them, whole items only and '... (n more)'."""
    items = list(items)
    if len(items) <= most:
        return ", ".join(items)
    return ", ".join(items[:most]) + f", ... ({len(items) - most} more)"


def _describe_state(tree, leaves: int) -> str:
    """An optimizer state in a few words: 'a tuple (ScaleByAdamState, EmptyState) of 9 arrays'."""
    if tree is None:
        return "None"
    arrays = f"{leaves} array{'' if leaves == 1 else 's'}"
    classes = _state_classes(tree)
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        return f"a {_short_list(classes)} of {arrays}"
    if classes:
        return f"a {type(tree).__name__} ({_short_list(classes)}) of {arrays}"
    return f"a {type(tree).__name__} of {arrays}"
