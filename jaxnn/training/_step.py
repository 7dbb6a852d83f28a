"""One training step: a gradient source's loss and updates for a minibatch, then the optimizer's update."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn._checks import as_array, fits_jax_int, flag, positive_int
from jaxnn.network import Network, check_network
from jaxnn.rules import GradientSource, as_source
from jaxnn.training._cache import cached
from jaxnn.training._placement import auto_batch_split, available_cores
from jaxnn.training._state import check_opt_state

__all__ = ["GRADIENT_MODES", "StepConfig", "check_batch_split", "check_optimizer", "make_train_step", "train_step"]

GRADIENT_MODES = ("manual", "autodiff")


class StepConfig(NamedTuple):
    """What decides a compiled step: the network, the optimizer, the gradient source, the batch split.

    ``batch_split`` is an int, or ``"auto"`` to choose it per batch shape
    while tracing, for the default device.
    """

    net: Network
    optimizer: optax.GradientTransformation
    source: GradientSource
    batch_split: int | str


def check_batch_split(batch_split) -> int | str:
    """``batch_split``: ``"auto"`` or a positive int."""
    if isinstance(batch_split, str) and batch_split == "auto":
        return batch_split
    return positive_int("batch_split", batch_split)


def check_optimizer(optimizer) -> optax.GradientTransformation:
    """``optimizer``, or a TypeError that names the fix unless it is an optax transformation."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None)):
        return optimizer
    if isinstance(optimizer, (int, float)) and not isinstance(optimizer, bool):
        fix = f"; to use {optimizer!r} as a learning rate pass optax.sgd({optimizer!r})"
    elif callable(optimizer):
        fix = "; call it first, e.g. optax.sgd(0.1) rather than optax.sgd"
    else:
        fix = ", e.g. optax.sgd(0.1) or optax.adam(1e-3)"
    raise TypeError(
        f"optimizer must be an optax GradientTransformation (with init and update), "
        f"got {type(optimizer).__name__} {optimizer!r}"[:300] + fix
    )


def _value_and_grad(config: StepConfig, params, state, x, t):
    """``(loss, grads, state)`` from the source, the batch optionally cut into independent parts.

    With ``batch_split = k`` and a batch of ``k m`` examples, the loss and
    gradients are the mean over the ``k`` parts of each part's mean, which is
    the mean over the whole batch. The parts share no computation, so XLA may
    run them at the same time (its CPU runtime runs independent matrix
    products on separate cores). Every part starts from the same source
    state and the next state is the first part's. Batches that do not split
    evenly, and single examples, are not split. ``"auto"`` picks ``k`` from
    the batch's shape (:func:`jaxnn.training.auto_batch_split`).
    """
    net, source, k = config.net, config.source, config.batch_split
    if k == "auto" and jnp.ndim(x) == 2:  # chosen when the batch's shape is known, for the default device
        k = auto_batch_split(jnp.shape(x)[0], [(layer.ins, layer.outs) for layer in net.layers],
                             platform=jax.default_backend(), cores=available_cores())
    if k in (1, "auto") or jnp.ndim(x) != 2 or jnp.shape(x)[0] % k:
        return source.value_and_grad(net, params, state, x, t)
    parts = [source.value_and_grad(net, params, state, xi, ti) for xi, ti in zip(jnp.split(x, k), jnp.split(t, k))]
    loss, grads = jax.tree.map(lambda *values: sum(values) / k, *[(loss, grads) for loss, grads, _ in parts])
    return loss, grads, parts[0][2]


def train_step(config: StepConfig, params, opt_state, grad_state, x, t):
    """``(params, opt_state, grad_state, loss)`` after one update; ``loss`` is taken before it.

    Assumes its arguments checked (``make_train_step`` and ``fit`` do).
    """
    loss, grads, grad_state = _value_and_grad(config, params, grad_state, x, t)
    updates, opt_state = config.optimizer.update(grads, opt_state, params)
    updates, grad_state = config.source.after_update(config.net, params, grad_state, updates)
    return optax.apply_updates(params, updates), opt_state, grad_state, loss


def _checked_step(config: StepConfig, params, opt_state, x, t, grad_state):
    """:func:`train_step` after checking its arguments while tracing, once per compilation."""
    config.net.check_params(params)
    check_opt_state(config.optimizer, params, opt_state)
    config.source.check_state(config.net, params, grad_state, "grad_state")
    x, t = config.net.check_inputs(params, x, t)
    return train_step(config, params, opt_state, grad_state, x, t)


def _stateless_step(config: StepConfig, params, opt_state, x, t):
    """``(params, opt_state, loss)``: :func:`_checked_step` for a source without state (its state is ``()``)."""
    params, opt_state, _, loss = _checked_step(config, params, opt_state, x, t, ())
    return params, opt_state, loss


def _as_data(name, value, labels_ok=False):
    """Arrays as they are (NumPy's too, as ``jax.jit`` takes them); lists and bad values checked by name.

    ``jax.jit`` would cast a NumPy int64 array to int32 when 64-bit JAX is
    off, wrapping what does not fit: those are checked first (one pass, for
    those dtypes only).
    """
    if isinstance(value, np.ndarray):  # first: a NumPy array is quickly told, and rows come one a step
        kind = value.dtype.kind
        if kind == "f":
            return value
        if kind in "iu":
            return fits_jax_int(name, value)
    elif isinstance(value, jax.Array):
        return value
    return as_array(name, value, labels_ok=labels_ok)


def make_train_step(
    net: Network,
    optimizer: optax.GradientTransformation,
    gradients: str | GradientSource = "manual",
    *,
    donate: bool = False,
    batch_split: int | str = "auto",
) -> Callable:
    """A jitted ``step(params, opt_state, x, t) -> (params, opt_state, loss)``.

    Calls with equal settings and equal optimizers (``optax.adam(1e-3)``
    written twice) return the same compiled step, so a fresh optimizer object
    does not compile again.

    Args:
        net: the network.
        optimizer: any optax ``GradientTransformation``; make its state with
            ``optimizer.init(params)``.
        gradients: where the updates come from: ``"manual"`` for the
            hand-written recursion, ``"autodiff"`` for ``jax.grad``, so the
            two can be switched and compared, or any
            :class:`jaxnn.rules.GradientSource`, such as a learning rule of
            :mod:`jaxnn.rules`.
        donate: let XLA write the new ``params`` and ``opt_state`` into the
            buffers of the ones passed in, saving a copy per step. The arrays
            passed in are then deleted, so only use it as
            ``params, opt_state = step(params, opt_state, x, t)`` and never
            pass in arrays you want to keep. Off by default.
        batch_split: compute each batch's gradient as the mean over this
            many equal, independent parts (see :func:`jaxnn.fit`). ``"auto"``
            (the default) chooses it for each batch shape when the step is
            compiled, for the default device: 1 on GPUs and TPUs, on a CPU by
            the cores available and the work per batch.

    ``loss`` is the loss at the parameters given, before the update. ``x`` is
    one example (ins,) or a batch (batch, ins). The step is jitted; its
    ``lower``, ``trace`` and ``eval_shape`` are ``jax.jit``'s.

    A source that keeps state (a rule's feedback matrices) needs it passed
    and returned: ``step(params, opt_state, x, t, grad_state)`` returns
    ``(params, opt_state, loss, grad_state)``, with ``grad_state`` made by
    ``source.init(key, net, params)``. For backprop and ``jax.grad`` the
    state is ``()`` and may be left out.

    Raises:
        TypeError, ValueError: here, for a wrong ``net``, ``optimizer``,
            ``gradients`` or ``batch_split``. From the step, when it meets new
            shapes: for ``params``, ``x``, ``t`` that ``net.loss`` rejects, an
            ``opt_state`` without the structure and shapes of
            ``optimizer.init(params)`` (a state from another optimizer), or a
            ``grad_state`` that does not fit the source.

    >>> import jax, jax.numpy as jnp, optax, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 1), jaxnn.Identity(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> step = jaxnn.make_train_step(net, optax.sgd(0.1))
    >>> opt_state = optax.sgd(0.1).init(params)
    >>> params, opt_state, loss = step(params, opt_state, jnp.ones(2), jnp.zeros(1))
    >>> step is jaxnn.make_train_step(net, optax.sgd(0.1))
    True
    """
    check_network("net", net)
    source = as_source(gradients)
    optimizer = check_optimizer(optimizer)
    batch_split = check_batch_split(batch_split)
    donate = flag("donate", donate)

    def build():
        config = StepConfig(net, optimizer, source, batch_split)
        stateless = jax.jit(functools.partial(_stateless_step, config), donate_argnums=(0, 1) if donate else ())
        with_state = jax.jit(functools.partial(_checked_step, config), donate_argnums=(0, 1, 4) if donate else ())

        def step(params, opt_state, x, t, grad_state: Any = None):
            """``(params, opt_state, loss)`` after one update; with ``grad_state``, ``(..., loss, grad_state)``."""
            x, t = _as_data("x", x), _as_data("t", t, labels_ok=True)
            try:
                if grad_state is None:
                    return stateless(params, opt_state, x, t)
                params, opt_state, grad_state, loss = with_state(params, opt_state, x, t, grad_state)
                return params, opt_state, loss, grad_state
            except (TypeError, ValueError, OverflowError, DeprecationWarning):
                # JAX refuses a leaf that is no array before tracing starts (or warns of a generator): say which
                net.check_params(params)
                check_opt_state(optimizer, params, opt_state)
                raise

        # jax.jit's ahead-of-time methods (step.lower(...).compile(), ...) of the step without state
        for name in ("lower", "trace", "eval_shape"):
            if hasattr(stateless, name):
                setattr(step, name, getattr(stateless, name))
        return step

    return cached("step", (net, source, donate, batch_split), optimizer, build)
