"""Training: a jitted step for any optax optimizer, and ``fit``, whole epochs in one jit."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.typing import ArrayLike

from jaxnn.network import Network
from jaxnn.typing import Params

__all__ = ["GRADIENT_MODES", "fit", "make_train_step"]

GRADIENT_MODES = ("manual", "autodiff")
_BATCH_AXIS = "batch"


def _check_mode(gradients: str) -> None:
    if gradients not in GRADIENT_MODES:
        raise ValueError(f"gradients must be one of {GRADIENT_MODES}, got {gradients!r}")


def _check_batch_split(batch_split) -> int:
    if isinstance(batch_split, bool) or not isinstance(batch_split, (int, np.integer)) or batch_split < 1:
        raise ValueError(f"batch_split must be a positive int, got {batch_split!r}")
    return int(batch_split)


def _value_and_grad(net: Network, gradients: str, batch_split: int = 1) -> Callable:
    """``(params, x, t) -> (loss, grads)``, the batch optionally cut into independent parts.

    With ``batch_split = k`` and a batch of ``k m`` examples, the loss and
    gradients are the mean over the ``k`` parts of each part's mean, which is
    the mean over the whole batch. The parts share no computation, so XLA may
    run them at the same time (its CPU runtime runs independent matrix
    products on separate cores). Batches that do not split evenly, and single
    examples, are not split.
    """
    value_and_grad = net.value_and_backprop if gradients == "manual" else jax.value_and_grad(net.loss)
    if batch_split == 1:
        return value_and_grad

    def split_value_and_grad(params, x, t):
        if jnp.ndim(x) != 2 or jnp.shape(x)[0] % batch_split:
            return value_and_grad(params, x, t)
        parts = [value_and_grad(params, xi, ti)
                 for xi, ti in zip(jnp.split(x, batch_split), jnp.split(t, batch_split))]

        def mean(*values):
            return sum(values) / batch_split

        return jax.tree.map(mean, *parts)

    return split_value_and_grad


def _step(net, optimizer, gradients, batch_split, params, opt_state, x, t):
    loss, grads = _value_and_grad(net, gradients, batch_split)(params, x, t)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def make_train_step(
    net: Network,
    optimizer: optax.GradientTransformation,
    gradients: str = "manual",
    *,
    donate: bool = False,
    batch_split: int = 1,
) -> Callable:
    """A jitted ``step(params, opt_state, x, t) -> (params, opt_state, loss)``.

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
            many equal, independent parts (see :func:`fit`); 1 by default.

    ``loss`` is the loss at the parameters given, before the update. ``x`` is
    one example (ins,) or a batch (batch, ins).
    """
    _check_mode(gradients)
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jaxnn.Network, got {type(net).__name__}")
    step = functools.partial(_step, net, optimizer, gradients, _check_batch_split(batch_split))
    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


# Donating params and opt_state lets XLA write each epoch's result into the
# buffers of the previous one; fit copies the caller's arrays once first, so
# nothing the caller holds is ever invalidated.
@functools.partial(
    jax.jit,
    static_argnames=("net", "optimizer", "gradients", "batch_size", "batch_split", "mesh"),
    donate_argnames=("params", "opt_state"),
)
def _epoch(net, optimizer, gradients, batch_size, batch_split, mesh, params, opt_state, x, t, key):
    """One pass over the data: a lax.scan over full minibatches, then the remainder.

    With a ``mesh``, every full minibatch is split over its devices along the
    batch axis and the parameters are replicated; XLA then sums the partial
    gradients ``dW = dB^T X`` over devices (one all-reduce per step).
    """
    n = x.shape[0]
    if key is not None:
        order = jax.random.permutation(key, n)
        x, t = x[order], t[order]
    step = functools.partial(_step, net, optimizer, gradients, batch_split)

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
        if mesh is not None:
            split = NamedSharding(mesh, PartitionSpec(None, _BATCH_AXIS))
            xs = jax.lax.with_sharding_constraint(xs, split)
            ts = jax.lax.with_sharding_constraint(ts, split)
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ts))
        total = total + jnp.sum(losses) * batch_size
    rest = n - full * batch_size
    if rest:  # a smaller last batch, so that no example is dropped
        params, opt_state, loss = step(params, opt_state, x[full * batch_size :], t[full * batch_size :])
        total = total + loss * rest
    return params, opt_state, total / n


def _mesh(devices, batch_size: int) -> Mesh | None:
    """A one-axis mesh over ``devices``, or None for a single device."""
    devices = list(devices) if isinstance(devices, (list, tuple)) else devices
    if not isinstance(devices, list) or not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(f"devices must be a non-empty sequence of jax devices (e.g. jax.devices()), got {devices!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices must be distinct, got {devices}")
    if len(devices) == 1:
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size must be a multiple of the number of devices to split each minibatch "
            f"evenly: got batch_size {batch_size} for {len(devices)} devices"
        )
    return Mesh(np.array(devices), (_BATCH_AXIS,))


@functools.partial(jax.jit, static_argnames="optimizer")
def _start(optimizer, params):
    """A private copy of ``params`` and a fresh optimizer state, in one call.

    The outputs are new buffers, so ``_epoch`` may donate them while the
    caller's ``params`` stay valid.
    """
    params = jax.tree.map(jnp.copy, params)
    return params, optimizer.init(params)


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
    batch_split: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> tuple[Params, dict[str, np.ndarray]]:
    """Train ``params`` on ``(x, t)`` by minibatch gradient descent; each epoch is one jitted call.

    Every epoch is a ``lax.scan`` over minibatches inside ``jax.jit``,
    compiled once per network, optimizer, gradient mode, batch size, devices
    and data shapes and dtypes: a second ``fit`` with the same ``net``, the
    same ``optimizer`` object and data of the same shapes reuses the compiled
    epoch. When ``len(x)`` is not a multiple of ``batch_size`` the last
    minibatch of each epoch is smaller, so no example is dropped.
    ``batch_size=1, key=None, optimizer=optax.sgd(lr)`` is exactly the
    articles' per-example training loop. Nothing syncs with the host inside
    an epoch; parameters and optimizer state are updated in place from one
    epoch to the next, in a private copy of ``params``.

    Args:
        net, params: the network and its starting parameters (not modified,
            never invalidated).
        x: inputs, shape (n, ins).
        t: targets, shape (n, outs), or (n,) integer labels for CrossEntropyLoss.
        optimizer: any optax ``GradientTransformation``.
        batch_size: examples per step.
        epochs: passes over the data.
        key: PRNG key to shuffle each epoch (a fresh permutation per epoch);
            ``None`` keeps the given order.
        gradients: ``"manual"`` (the hand-written recursion) or ``"autodiff"``.
        progress: show a tqdm progress bar over epochs (needs ``tqdm``).
        batch_split: compute each minibatch's loss and gradient as the mean
            over this many equal parts that share no computation, so XLA can
            run them concurrently: on a CPU its runtime then puts the parts'
            matrix products on separate cores, which it does not do for one
            product of these sizes. The same training up to rounding;
            ``batch_size`` must be a multiple of it (a smaller last minibatch
            that is not is computed whole). 1 (the default) does not split.
        devices: data parallelism: with several devices (e.g.
            ``jax.devices()``) each minibatch is split evenly over them, the
            parameters are replicated and the gradients summed across devices,
            which gives the same training as on one device up to rounding.
            ``batch_size`` must then be a multiple of ``len(devices)``.
            ``None`` (the default) runs on the default device. Meant for
            several accelerators: between CPU devices of one host the
            per-step sum of gradients costs more than it saves, so there
            use ``batch_split`` (README, Performance).

    Returns:
        ``(params, history)`` with ``history["loss"]`` the mean training loss
        of each epoch (mean over examples, each minibatch's loss taken before
        its update), a NumPy array of length ``epochs``. With ``devices``,
        the returned ``params`` live on ``devices[0]``.

    Raises:
        ValueError, TypeError: for data, parameters or settings that do not fit.
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
    batch_size = int(batch_size)
    batch_split = _check_batch_split(batch_split)
    if batch_size % batch_split:
        raise ValueError(
            f"batch_size must be a multiple of batch_split: got batch_size {batch_size}, "
            f"batch_split {batch_split}"
        )
    mesh = None if devices is None else _mesh(devices, batch_size)

    params, opt_state = _start(optimizer, params)
    keys = [None] * epochs if key is None else list(jax.random.split(key, epochs))
    if devices is not None:
        place = devices[0] if mesh is None else NamedSharding(mesh, PartitionSpec())
        params, opt_state, x, t, keys = jax.device_put((params, opt_state, x, t, keys), place)
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="fit", unit="epoch")
    losses = []
    for e in epoch_iter:
        with warnings.catch_warnings():
            # Donation only saves copies; where a backend cannot use it, say nothing.
            warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
            params, opt_state, loss = _epoch(
                net, optimizer, gradients, batch_size, batch_split, mesh, params, opt_state, x, t, keys[e]
            )
        losses.append(loss)
        if progress:
            epoch_iter.set_postfix(loss=f"{float(loss):.4g}")
    if mesh is not None:
        params = jax.device_put(params, devices[0])
    history = {"loss": np.asarray(jax.device_get(losses)) if losses else np.zeros((0,))}
    return params, history
