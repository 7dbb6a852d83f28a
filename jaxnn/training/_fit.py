"""``fit``: epochs of minibatch training, each one compiled call, with validation and callbacks."""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxnn._types import Params
from jaxnn._validation import check_batch, check_data, check_network, non_negative_int, positive_int
from jaxnn.network import Network
from jaxnn.training._callbacks import Callback, FitRun, ProgressBar
from jaxnn.training._epoch import step_runner
from jaxnn.training._evaluate import evaluate
from jaxnn.training._placement import make_mesh, place
from jaxnn.training._state import NonFiniteLossError, TrainState, start_state
from jaxnn.training._step import check_mode, check_optimizer

__all__ = ["fit"]

VALIDATION_BATCH = 1024


def _check_key(key) -> None:
    if key is None:
        return
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        return  # a raw jax.random.PRNGKey
    raise TypeError(
        f"key must be a PRNG key such as jax.random.key(0) (or None for no shuffling), got "
        f"{type(key).__name__} {getattr(key, 'shape', '')}".rstrip()
    )


def _check_callbacks(callbacks) -> list[Callback]:
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of jaxnn callbacks, got {type(callbacks).__name__}")
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks[{i}] must be a jaxnn.Callback (e.g. jaxnn.EarlyStopping()), got {type(cb).__name__}"
            )
    return list(callbacks)


def _checked_data(net, params, x, t, where, check):
    x, _ = net.check_inputs(params, x)
    check_batch(net.layers, x, where)
    if jnp.ndim(t) < 1 or jnp.shape(t)[0] != x.shape[0]:
        raise ValueError(
            f"{where}: x and t must hold the same number of examples: x shape {x.shape}, t shape {jnp.shape(t)}"
        )
    x, t = net.check_inputs(params, x, t)
    if check:
        check_data(net, params, x, t, where)
    return x, t


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact))


class _Epochs:
    """Runs epochs as chunks of compiled steps and replays one to find its last finite state."""

    def __init__(self, run, x, t, batch_size, chunk, short_epoch=0.0):
        self.run, self.x, self.t = run, x, t
        self.batch, self.chunk, self.short_epoch = batch_size, chunk, short_epoch
        n = x.shape[0]
        self.full, self.rest = divmod(n, batch_size)

    def run_steps(self, params, opt_state, order, steps, on_steps=None):
        """Run the first ``steps`` steps of the epoch; ``(params, opt_state, loss_sums, bad_steps)``.

        With ``on_steps`` the full minibatches run in chunks and ``on_steps``
        hears of each; once the first chunk shows the epoch will take less
        than ``short_epoch`` seconds, the rest runs as one call, since a
        progress report within so short an epoch would only cost time.
        """
        sums, bads, pending = [], [], None
        limit, done = min(steps, self.full), 0
        started = time.perf_counter()

        def call(start, k, batch):
            nonlocal params, opt_state
            params, opt_state, s, b = self.run(
                params, opt_state, self.x, self.t, order, start, steps=k, batch=batch, single=self.batch == 1
            )
            sums.append(s)
            bads.append((done, k, b))
            return b

        while done < limit:
            k = min(self.chunk, limit - done)
            if on_steps is not None and done and (time.perf_counter() - started) * limit / done < self.short_epoch:
                k = limit - done
            b = call(done * self.batch, k, self.batch)
            if on_steps is not None:
                if pending is None:
                    jax.block_until_ready(b)  # time the first chunk
                else:  # report the previous chunk once this one is queued
                    on_steps(*pending)
                pending = (b, done + k)
            done += k
        if steps > self.full and self.rest:
            call(self.full * self.batch, 1, self.rest)
            if pending is not None:
                pending = (pending[0], steps)
        if pending is not None:
            on_steps(*pending)
        return params, opt_state, sums, bads


def fit(
    net: Network,
    params_or_state: Params | TrainState,
    x: ArrayLike,
    t: ArrayLike,
    *,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    epochs: int = 1,
    key: jax.Array | None = None,
    gradients: str = "manual",
    validation: tuple[ArrayLike, ArrayLike] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    check_finite: bool = True,
    check_data: bool = True,
    batch_split: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Train on ``(x, t)`` by minibatch gradient descent; each epoch is one compiled ``lax.scan``.

    Given parameters, ``fit`` starts a run (``optimizer.init``, epoch 0);
    given a :class:`TrainState` it continues that run. Epoch ``e``'s order
    is ``jax.random.permutation(jax.random.fold_in(key, e), n)``, a function
    of ``key`` and the absolute epoch number only, so ``fit(epochs=5)`` and
    five chained ``fit(epochs=1)`` calls give bitwise the same state.
    ``batch_size=1, key=None, optimizer=optax.sgd(lr)`` is exactly the
    articles' per-example loop. When ``n`` is not a multiple of
    ``batch_size`` the last minibatch of an epoch is smaller, so no example is
    dropped.

    The compiled epoch is reused for equal settings, data shapes and equal
    optimizers: ``optax.sgd(0.05)`` written afresh in every call compiles
    once. Nothing syncs with the host inside an epoch; after each one the
    loss is read back, validation runs and callbacks are called.

    Options arrive as small objects rather than flags: ``callbacks=`` takes
    :class:`jaxnn.EarlyStopping`, :class:`jaxnn.Checkpoint`,
    :class:`jaxnn.ProgressBar` or your own :class:`jaxnn.Callback`.

    Args:
        net: the network.
        params_or_state: starting parameters (never modified or
            invalidated), or a :class:`TrainState` to continue from.
        x: inputs, shape (n, ins), n >= 1.
        t: targets, shape (n, outs), or (n,) integer labels for CrossEntropyLoss.
        optimizer: any optax ``GradientTransformation``, e.g. ``optax.sgd(0.1)``.
        batch_size: examples per step.
        epochs: epochs to run in this call; 0 returns the starting state.
        key: PRNG key (``jax.random.key(0)``) to shuffle each epoch; ``None``
            keeps the given order.
        gradients: ``"manual"`` (the hand-written recursion) or ``"autodiff"``.
        validation: ``(x_val, t_val)``, evaluated after each epoch (jitted,
            1024 examples at a time): logs ``val_loss`` and, for
            cross-entropy, ``val_accuracy``.
        callbacks: :class:`jaxnn.Callback` objects, called in order.
        progress: shorthand for adding ``jaxnn.ProgressBar()`` to ``callbacks``.
        check_finite: raise :class:`jaxnn.NonFiniteLossError` at the first
            step whose loss is NaN or infinite (tested inside the compiled
            epoch, no cost per step), with the last finite state attached.
            ``False`` trains on regardless.
        check_data: before compiling anything, check the values of the data
            and parameters: at least one example, finite inputs, targets and
            parameters, class labels in ``[0, outputs)``. It reads the data
            once; ``False`` skips it.
        batch_split: compute each minibatch's loss and gradient as the mean
            over this many equal parts that share no computation, so XLA can
            run them concurrently (on a CPU, the parts' matrix products on
            separate cores). The same training up to rounding;
            ``batch_size`` must be a multiple of it.
        devices: data parallelism: with several devices (e.g.
            ``jax.devices()``) each minibatch is split evenly over them, the
            parameters are replicated and the gradients summed across
            devices; ``batch_size`` must then be a multiple of
            ``len(devices)``. ``None`` runs on the default device.

    Returns:
        ``(state, history)``: the :class:`TrainState` after the last epoch
        (or the best, with ``EarlyStopping(restore_best=True)``) and a dict of
        NumPy arrays with one entry per epoch run: ``epoch`` (absolute,
        counting from 1: ``state.epoch`` after that epoch), ``loss`` (the mean
        training loss, each minibatch's loss taken before its update) and,
        with ``validation``, ``val_loss`` and ``val_accuracy``.

    Raises:
        ValueError, TypeError: for data, parameters or settings that do not
            fit, before anything is compiled.
        NonFiniteLossError: (a ``FloatingPointError``) when the loss stops
            being finite and ``check_finite`` is on.

    >>> import jax, jax.numpy as jnp, optax, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 1), jaxnn.Identity(), jaxnn.MSELoss())
    >>> x = jax.random.normal(jax.random.key(0), (64, 2)); t = x @ jnp.array([[1.0], [-2.0]])
    >>> state, history = jaxnn.fit(net, net.init(jax.random.key(1)), x, t,
    ...                            optimizer=optax.sgd(0.1), batch_size=8, epochs=3)
    >>> state.epoch, history["epoch"].tolist()
    (3, [1, 2, 3])
    >>> state, history = jaxnn.fit(net, state, x, t, optimizer=optax.sgd(0.1), batch_size=8)
    >>> state.epoch, history["epoch"].tolist()
    (4, [4])
    """
    check_network(net)
    check_mode(gradients)
    check_optimizer(optimizer)
    batch_size = positive_int("batch_size", batch_size)
    epochs = non_negative_int("epochs", epochs)
    batch_split = positive_int("batch_split", batch_split)
    if batch_size % batch_split:
        raise ValueError(
            f"batch_size must be a multiple of batch_split: got batch_size {batch_size}, batch_split {batch_split}"
        )
    _check_key(key)
    callbacks = _check_callbacks(callbacks) + ([ProgressBar()] if progress else [])
    if not isinstance(params_or_state, TrainState):
        net.check_params(params_or_state)
    state = start_state(params_or_state, optimizer)
    net.check_params(state.params)
    x, t = _checked_data(net, state.params, x, t, "fit", check_data)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(f"validation must be a pair (x_val, t_val), got {type(validation).__name__}")
        x_val, t_val = _checked_data(net, state.params, *validation, "fit validation", check_data)
    mesh = None if devices is None else make_mesh(devices, batch_size)

    n = x.shape[0]
    full, rest = divmod(n, batch_size)
    run = FitRun(state.epoch, epochs, full + (rest > 0), n)
    for cb in callbacks:
        cb.on_fit_begin(run)
    wanted = [cb for cb in callbacks if cb.steps_per_update]
    epochs_runner = _Epochs(
        step_runner(net, optimizer, gradients, batch_split, mesh), *place((x, t), devices, mesh), batch_size,
        max(1, min(cb.steps_per_update for cb in wanted)) if wanted else max(full, 1),
        min((cb.short_epoch for cb in wanted), default=0.0),
    )
    state = state._replace(**dict(zip(("params", "opt_state"), place((state.params, state.opt_state), devices, mesh))))

    def on_steps(bad, done):
        jax.block_until_ready(bad)
        for cb in callbacks:
            cb.on_steps(done)

    history = {"epoch": [], "loss": []}
    for epoch in range(state.epoch, state.epoch + epochs):
        order = None if key is None else jax.random.permutation(jax.random.fold_in(key, epoch), n)
        params, opt_state, sums, bads = epochs_runner.run_steps(
            state.params, state.opt_state, order, run.steps_per_epoch, on_steps if wanted else None
        )
        sums, bad_steps = jax.device_get((sums, [b for _, _, b in bads]))
        if check_finite:
            for (done, k, _), b in zip(bads, bad_steps):
                if b < k:
                    _raise_non_finite(epochs_runner, state, order, epoch, done + int(b), run.steps_per_epoch)
        loss = float(np.sum(np.asarray(sums, np.float64)) / n)
        state = TrainState(params, opt_state, epoch + 1)
        logs = {"loss": loss}
        if validation is not None:
            scores = evaluate(net, params, x_val, t_val, batch_size=VALIDATION_BATCH, check=False)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        history["epoch"].append(epoch + 1)
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(state, dict(logs, epoch=epoch + 1))) or stop
        if stop:
            break
    for cb in callbacks:
        replaced = cb.on_fit_end(state)
        if replaced is not None:
            state = replaced
    if mesh is not None:
        state = jax.device_put(state, devices[0])
    history = {k: np.asarray(v, np.int64 if k == "epoch" else np.float64) for k, v in history.items()}
    return state, history


def _raise_non_finite(epochs_runner, state, order, epoch, step, steps_per_epoch):
    """Replay the epoch up to its first non-finite step and raise with the last finite state."""
    last = None
    for k in (step, step - 1):
        if k < 0:
            break
        params, opt_state, _, _ = epochs_runner.run_steps(state.params, state.opt_state, order, k)
        if _all_finite(params):
            last = TrainState(params, opt_state, epoch)
            break
    last = state if last is None else last
    raise NonFiniteLossError(
        f"the training loss became NaN or infinite at epoch {epoch + 1}, step {step + 1} of "
        f"{steps_per_epoch}; err.state is the last state with finite parameters and "
        f"err.epoch_start_state the state this epoch started from. Try a smaller learning rate, "
        f"check the data, or pass check_finite=False to train on regardless",
        epoch=epoch + 1, step=step + 1, state=last, epoch_start_state=state,
    )
