"""Training: a jitted step for any optax optimizer, and ``fit``, whole epochs in one jit."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxnn.network import Network
from jaxnn.typing import Params

__all__ = ["GRADIENT_MODES", "fit", "make_train_step"]

GRADIENT_MODES = ("manual", "autodiff")


def _check_mode(gradients: str) -> None:
    if gradients not in GRADIENT_MODES:
        raise ValueError(f"gradients must be one of {GRADIENT_MODES}, got {gradients!r}")


def _value_and_grad(net: Network, gradients: str) -> Callable:
    if gradients == "manual":
        return net.value_and_backprop
    return jax.value_and_grad(net.loss)


def _step(net, optimizer, gradients, params, opt_state, x, t):
    loss, grads = _value_and_grad(net, gradients)(params, x, t)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def make_train_step(
    net: Network, optimizer: optax.GradientTransformation, gradients: str = "manual"
) -> Callable:
    """A jitted ``step(params, opt_state, x, t) -> (params, opt_state, loss)``.

    Args:
        net: the network.
        optimizer: any optax ``GradientTransformation``; make its state with
            ``optimizer.init(params)``.
        gradients: ``"manual"`` for the hand-written recursion, ``"autodiff"``
            for ``jax.grad``, so the two can be switched and compared.

    ``loss`` is the loss at the parameters given, before the update. ``x`` is
    one example (ins,) or a batch (batch, ins).
    """
    _check_mode(gradients)
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jaxnn.Network, got {type(net).__name__}")
    return jax.jit(functools.partial(_step, net, optimizer, gradients))


@functools.partial(jax.jit, static_argnames=("net", "optimizer", "gradients", "batch_size"))
def _epoch(net, optimizer, gradients, batch_size, params, opt_state, x, t, key):
    """One pass over the data: a lax.scan over full minibatches, then the remainder."""
    n = x.shape[0]
    if key is not None:
        order = jax.random.permutation(key, n)
        x, t = x[order], t[order]
    step = functools.partial(_step, net, optimizer, gradients)

    def body(carry, batch):
        params, opt_state, loss = step(*carry, *batch)
        return (params, opt_state), loss

    full = n // batch_size
    total = jnp.zeros((), jnp.result_type(params[0][0]))
    if full:
        xs, ts = x[: full * batch_size], t[: full * batch_size]
        if batch_size > 1:  # batch_size 1 scans over single examples, as the articles do
            xs = xs.reshape((full, batch_size) + x.shape[1:])
            ts = ts.reshape((full, batch_size) + t.shape[1:])
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ts))
        total = total + jnp.sum(losses) * batch_size
    rest = n - full * batch_size
    if rest:  # a smaller last batch, so that no example is dropped
        params, opt_state, loss = step(params, opt_state, x[full * batch_size :], t[full * batch_size :])
        total = total + loss * rest
    return params, opt_state, total / n


def fit(
    net: Network,
    params: Params,
    x: ArrayLike,
    t: ArrayLike,
    *,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    epochs: int = 1,
    key: jax.Array | None = None,
    gradients: str = "manual",
    progress: bool = False,
) -> tuple[Params, dict[str, np.ndarray]]:
    """Train ``params`` on ``(x, t)`` by minibatch gradient descent; each epoch is one jitted call.

    Every epoch is a ``lax.scan`` over minibatches inside ``jax.jit``,
    compiled once per network, optimizer, gradient mode, batch size and data
    shapes. When ``len(x)`` is not a multiple of ``batch_size`` the last
    minibatch of each epoch is smaller, so no example is dropped.
    ``batch_size=1, key=None, optimizer=optax.sgd(lr)`` is exactly the
    articles' per-example training loop.

    Args:
        net, params: the network and its starting parameters (not modified).
        x: inputs, shape (n, ins).
        t: targets, shape (n, outs), or (n,) integer labels for CrossEntropyLoss.
        optimizer: any optax ``GradientTransformation``.
        batch_size: examples per step.
        epochs: passes over the data.
        key: PRNG key to shuffle each epoch (a fresh permutation per epoch);
            ``None`` keeps the given order.
        gradients: ``"manual"`` (the hand-written recursion) or ``"autodiff"``.
        progress: show a tqdm progress bar over epochs (needs ``tqdm``).

    Returns:
        ``(params, history)`` with ``history["loss"]`` the mean training loss
        of each epoch (mean over examples, each minibatch's loss taken before
        its update), a NumPy array of length ``epochs``.
    """
    _check_mode(gradients)
    x, t = jnp.asarray(x), jnp.asarray(t)
    if x.ndim != 2:
        raise ValueError(f"fit expects x of shape (n, ins), got shape {x.shape}")
    if t.ndim < 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"x and t must hold the same number of examples: x shape {x.shape}, t shape {t.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    net.check_params(params)
    net._target(net._input(params, x), t)  # shape errors now, before anything runs

    opt_state = optimizer.init(params)
    keys = [None] * epochs if key is None else list(jax.random.split(key, epochs))
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="fit", unit="epoch")
    losses = []
    for e in epoch_iter:
        params, opt_state, loss = _epoch(
            net, optimizer, gradients, int(batch_size), params, opt_state, x, t, keys[e]
        )
        losses.append(loss)
        if progress:
            epoch_iter.set_postfix(loss=f"{float(loss):.4g}")
    history = {"loss": np.asarray(jnp.stack(losses)) if losses else np.zeros((0,))}
    return params, history
