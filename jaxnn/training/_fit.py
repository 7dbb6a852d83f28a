"""``fit``: epochs of minibatch training, each one compiled call, with validation and callbacks."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxnn._types import Params
from jaxnn._validation import (
    as_array,
    as_target,
    check_batch,
    check_data,
    check_key,
    check_network,
    check_nonempty,
    check_opt_state,
    check_params,
    flag,
    non_negative_int,
    positive_int,
    require_target,
)
from jaxnn.network import Network
from jaxnn.training._callbacks import Callback, FitRun, ProgressBar
from jaxnn.training._epoch import batch_runner, step_runner
from jaxnn.training._evaluate import evaluate
from jaxnn.training._placement import (
    Placement,
    auto_batch_split,
    available_cores,
    local_replica,
    place_data,
    place_state,
    placement,
)
from jaxnn.training._state import NonFiniteLossError, TrainState, start_state
from jaxnn.training._stream import DeviceEpochs, HostStream, StreamedEpochs, check_host_data
from jaxnn.training._step import check_batch_split, check_mode, check_optimizer

__all__ = ["fit"]

VALIDATION_BATCH = 4096
MAX_EPOCH = 2**31 - 1  # jax.random.fold_in takes a 32-bit number


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
    require_target(t, where)
    t = as_array("t", t, labels_ok=True)  # lists and bad values before their shape is read
    check_batch(net.layers, x, where)
    check_nonempty(x, where)
    if jnp.ndim(t) < 1 or jnp.shape(t)[0] != x.shape[0]:
        raise ValueError(
            f"{where}: x and t must hold the same number of examples: x shape {x.shape}, t shape {jnp.shape(t)}"
        )
    t = as_target(net.layers, net.loss_fn, x, t, False)  # labels: check_data reads them, naming where
    if check:
        check_data(net, params, x, t, where)
    return x, t


def _batch_split(batch_split, net, batch_size, where: Placement | None) -> int:
    """``batch_split`` checked, with ``"auto"`` resolved for this net, batch and placement."""
    if check_batch_split(batch_split) == "auto":
        devices = [jax.devices()[0]] if where is None else where.devices
        local = [d for d in devices if d.process_index == jax.process_index()] or devices
        return auto_batch_split(
            batch_size // (1 if where is None else where.count), [(layer.ins, layer.outs) for layer in net.layers],
            platform=devices[0].platform, cores=available_cores(), devices=len(local),
        )
    batch_split = positive_int("batch_split", batch_split)
    if batch_size % batch_split:
        raise ValueError(
            f"batch_size must be a multiple of batch_split: got batch_size {batch_size}, batch_split {batch_split}"
        )
    return batch_split


def _check_state(net, optimizer, state: TrainState) -> None:
    """A state to continue from: parameters for ``net``, ``optimizer``'s state for them, an epoch count."""
    check_params(net.layers, state.params, "params_or_state.params")
    epoch = state.epoch
    is_int = isinstance(epoch, (int, np.integer)) or (
        isinstance(epoch, (jax.Array, np.ndarray)) and epoch.shape == () and jnp.issubdtype(epoch.dtype, jnp.integer)
    )
    if not is_int or isinstance(epoch, (bool, np.bool_)):
        raise TypeError(
            f"params_or_state.epoch must be an int (epochs completed), got {type(epoch).__name__} {epoch!r}"[:200]
        )
    if not isinstance(epoch, jax.core.Tracer) and int(epoch) < 0:
        raise ValueError(f"params_or_state.epoch must be >= 0 (epochs completed), got {int(epoch)}")
    check_opt_state(optimizer, state.params, state.opt_state, "params_or_state.opt_state")


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact))


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
    batch_split: int | str = "auto",
    devices: Sequence[jax.Device] | jax.sharding.Mesh | None = None,
    stream: HostStream | None = None,
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
            at most 4096 examples at a time): logs ``val_loss`` and, for
            cross-entropy, ``val_accuracy``.
        callbacks: :class:`jaxnn.Callback` objects, called in order.
        progress: shorthand for adding ``jaxnn.ProgressBar()`` to ``callbacks``.
        check_finite: raise :class:`jaxnn.NonFiniteLossError` at the first
            step whose loss is NaN or infinite (tested inside the compiled
            epoch, no cost per step), with the last finite state attached.
            ``False`` trains on regardless.
        check_data: before compiling anything, check the values of the data
            and parameters: at least one example, finite inputs, targets and
            parameters, class labels in ``[0, outputs)``, no negative
            probability targets for cross-entropy. It reads the data once;
            ``False`` skips it, and then bad values are not caught: an
            out-of-range label trains on a garbage loss and NaN data ends
            in :class:`jaxnn.NonFiniteLossError` (with ``check_finite``).
        batch_split: compute each minibatch's loss and gradient as the mean
            over this many equal parts that share no computation, so XLA can
            run them concurrently (on a CPU, the parts' matrix products on
            separate cores). The same training up to rounding;
            ``batch_size`` (per device) must be a multiple of it. ``"auto"``
            (the default) picks it from the device kind, the CPU cores this
            process may use and the work per minibatch: 1 on GPUs and TPUs
            and for small nets or batches, up to one part per core on a CPU
            (see :func:`jaxnn.training.auto_batch_split`).
        devices: data parallelism. A list of devices (e.g. ``jax.devices()``)
            or a ``jax.sharding.Mesh``: each minibatch is split evenly over
            the mesh's data axis (the axis named ``"batch"`` or ``"data"``,
            else its first axis; other axes hold replicas), the parameters
            and optimizer state are replicated and XLA sums the gradients
            across devices. The data are split by rows over the same axis
            when the device count divides ``n`` (else replicated), and may
            be global arrays of a multi-process job
            (:func:`jaxnn.training.global_rows`); each process then gets its
            own replica of the (identical) result. ``batch_size`` must be a
            multiple of the data axis' size. ``None`` runs on the default
            device.
        stream: a :class:`jaxnn.HostStream` to keep ``x`` and ``t`` (NumPy
            arrays) in host memory and send them to the device a chunk of
            steps at a time, the next chunk while the current one trains: for
            data larger than the device's memory. A ``np.memmap`` (from
            ``np.load(path, mmap_mode="r")``) streams with
            ``HostStream()`` by default; pass ``np.asarray(x)`` to load it
            whole instead. The same training as on device data (bitwise on
            a CPU).

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
    where = placement(devices, batch_size)
    if stream is None and isinstance(x, np.memmap):
        stream = HostStream()
    if stream is not None and not isinstance(stream, HostStream):
        raise TypeError(f"stream must be a jaxnn.HostStream or None, got {type(stream).__name__}")
    if stream is not None and not (isinstance(x, np.ndarray) and isinstance(t, np.ndarray)):
        raise TypeError(
            f"stream=HostStream(...) streams NumPy arrays from host memory; got x {type(x).__name__}, "
            f"t {type(t).__name__} (pass np.asarray(...) or leave stream out)"
        )
    batch_split = _batch_split(batch_split, net, batch_size, where)
    check_key(key, "key", optional=True)
    progress, check_finite = flag("progress", progress), flag("check_finite", check_finite)
    check_data = flag("check_data", check_data)
    callbacks = _check_callbacks(callbacks) + ([ProgressBar()] if progress else [])
    if isinstance(params_or_state, TrainState):
        _check_state(net, optimizer, params_or_state)
    else:
        net.check_params(params_or_state)
    state = start_state(params_or_state, optimizer)
    if state.epoch + epochs > MAX_EPOCH:
        raise ValueError(
            f"epochs: a run counts at most {MAX_EPOCH} epochs (each one's shuffle folds its number into the "
            f"key), got epoch {state.epoch} + epochs {epochs}"
        )
    if stream is None:
        x, t = _checked_data(net, state.params, x, t, "fit", check_data)
    else:
        dtypes = check_host_data(net, state.params, x, t, "fit", check_data)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(f"validation must be a pair (x_val, t_val), got {type(validation).__name__}")
        x_val, t_val = _checked_data(net, state.params, *validation, "fit validation", check_data)

    n = x.shape[0]
    full, rest = divmod(n, batch_size)
    run = FitRun(state.epoch, epochs, full + (rest > 0), n)
    for cb in callbacks:
        cb.on_fit_begin(run)
    wanted = [cb.steps_per_update for cb in callbacks if cb.steps_per_update]
    if stream is None:
        short = min((cb.short_epoch for cb in callbacks if cb.steps_per_update), default=0.0)
        epochs_runner = DeviceEpochs(step_runner(net, optimizer, gradients, batch_split, where),
                                     *place_data(x, t, where), batch_size,
                                     max(1, min(wanted)) if wanted else max(full, 1), short)
    else:
        chunk = min([stream.steps_per_chunk] + [max(1, w) for w in wanted])
        epochs_runner = StreamedEpochs(batch_runner(net, optimizer, gradients, batch_split, where), x, t,
                                       batch_size, chunk, dtypes=dtypes, where=where)
    state = state._replace(**dict(zip(("params", "opt_state"), place_state((state.params, state.opt_state), where))))

    def on_steps(bad, done):
        jax.block_until_ready(bad)
        for cb in callbacks:
            cb.on_steps(done)

    history = {"epoch": [], "loss": []}
    for epoch in range(state.epoch, state.epoch + epochs):
        order = None if key is None else jax.random.permutation(jax.random.fold_in(key, epoch), n)
        if order is not None and stream is None:
            order = place_state(order, where)
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
    state = local_replica(state, where)
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
