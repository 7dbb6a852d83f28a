"""One training step: the loss and gradients of a minibatch, then the optimizer's update."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxnn._validation import as_array, check_network, check_opt_state, choice, flag, positive_int
from jaxnn.network import Network
from jaxnn.training._cache import cached
from jaxnn.training._placement import auto_batch_split, available_cores

__all__ = ["GRADIENT_MODES", "check_mode", "check_optimizer", "make_train_step", "train_step", "value_and_grad"]

GRADIENT_MODES = ("manual", "autodiff")


def check_mode(gradients) -> None:
    choice("gradients", gradients, GRADIENT_MODES)


def check_batch_split(batch_split) -> int | str:
    """``batch_split``: ``"auto"`` or a positive int."""
    if isinstance(batch_split, str) and batch_split == "auto":
        return batch_split
    return positive_int("batch_split", batch_split)


def check_optimizer(optimizer) -> None:
    """Raise a TypeError that names the fix unless ``optimizer`` is an optax transformation."""
    if isinstance(optimizer, optax.GradientTransformation):
        return
    if callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None)):
        return
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


def value_and_grad(net: Network, gradients: str, batch_split: int | str = 1) -> Callable:
    """``(params, x, t) -> (loss, grads)``, the batch optionally cut into independent parts.

    With ``batch_split = k`` and a batch of ``k m`` examples, the loss and
    gradients are the mean over the ``k`` parts of each part's mean, which is
    the mean over the whole batch. The parts share no computation, so XLA may
    run them at the same time (its CPU runtime runs independent matrix
    products on separate cores). Batches that do not split evenly, and single
    examples, are not split. ``"auto"`` picks ``k`` from the batch's shape
    while tracing (:func:`jaxnn.training._placement.auto_batch_split`).
    """
    value_and_grad = net.value_and_backprop if gradients == "manual" else jax.value_and_grad(net.loss)
    if batch_split == 1:
        return value_and_grad

    def split_value_and_grad(params, x, t):
        k = batch_split
        if k == "auto":  # chosen when the batch's shape is known, for the default device
            k = auto_batch_split(jnp.shape(x)[0] if jnp.ndim(x) == 2 else 1,
                                 [(layer.ins, layer.outs) for layer in net.layers],
                                 platform=jax.default_backend(), cores=available_cores())
        if k == 1 or jnp.ndim(x) != 2 or jnp.shape(x)[0] % k:
            return value_and_grad(params, x, t)
        parts = [value_and_grad(params, xi, ti) for xi, ti in zip(jnp.split(x, k), jnp.split(t, k))]

        def mean(*values):
            return sum(values) / k

        return jax.tree.map(mean, *parts)

    return split_value_and_grad


def train_step(net, optimizer, gradients, batch_split, params, opt_state, x, t):
    """``(params, opt_state, loss)`` after one update; ``loss`` is taken before it."""
    # While tracing, once per compilation: a state from another optimizer would fail deep in optax.
    net.check_params(params)
    check_opt_state(optimizer, params, opt_state)
    loss, grads = value_and_grad(net, gradients, batch_split)(params, x, t)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def make_train_step(
    net: Network,
    optimizer: optax.GradientTransformation,
    gradients: str = "manual",
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
        gradients: ``"manual"`` for the hand-written recursion, ``"autodiff"``
            for ``jax.grad``, so the two can be switched and compared.
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

    Raises:
        TypeError, ValueError: here, for a wrong ``net``, ``optimizer``,
            ``gradients`` or ``batch_split``. From the step, when it meets new
            shapes: for ``params``, ``x``, ``t`` that ``net.loss`` rejects, or
            an ``opt_state`` without the structure and shapes of
            ``optimizer.init(params)`` (a state from another optimizer).

    >>> import jax, jax.numpy as jnp, optax, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 1), jaxnn.Identity(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> step = jaxnn.make_train_step(net, optax.sgd(0.1))
    >>> params, opt_state, loss = step(params, optax.sgd(0.1).init(params), jnp.ones(2), jnp.zeros(1))
    >>> step is jaxnn.make_train_step(net, optax.sgd(0.1))
    True
    """
    check_network(net)
    check_mode(gradients)
    check_optimizer(optimizer)
    batch_split = check_batch_split(batch_split)
    donate = flag("donate", donate)

    def build():
        jitted = jax.jit(functools.partial(train_step, net, optimizer, gradients, batch_split),
                         donate_argnums=(0, 1) if donate else ())

        def step(params, opt_state, x, t):
            """``(params, opt_state, loss)`` after one update of ``net`` by ``optimizer``."""
            # Arrays go straight through; lists and bad values get jaxnn's conversion and message.
            x = x if isinstance(x, jax.Array) else as_array("x", x)
            t = t if isinstance(t, jax.Array) else as_array("t", t, labels_ok=True)
            try:
                return jitted(params, opt_state, x, t)
            except (TypeError, ValueError, OverflowError, DeprecationWarning):
                # JAX refuses a leaf that is no array before tracing starts (or warns of a generator): say which
                net.check_params(params)
                check_opt_state(optimizer, params, opt_state)
                raise

        # jax.jit's ahead-of-time methods (step.lower(...).compile(), ...), which take arrays as they are
        for name in ("lower", "trace", "eval_shape"):
            if hasattr(jitted, name):
                setattr(step, name, getattr(jitted, name))
        return step

    return cached("step", (net, gradients, donate, batch_split), optimizer, build)
