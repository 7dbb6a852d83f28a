"""``fit``: epochs of minibatch training, each one compiled call, with validation and callbacks.

``fit`` is a plan and a run: :func:`jaxnn.training._plan.make_plan` checks every
argument and decides everything once, then :func:`jaxnn.training._loop.run`
runs the epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxnn._types import Params
from jaxnn.network import Network
from jaxnn.rules import GradientSource
from jaxnn.training._callbacks import Callback
from jaxnn.training._loop import run
from jaxnn.training._plan import make_plan
from jaxnn.training._state import TrainState
from jaxnn.training._stream import HostStream

__all__ = ["fit"]


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
    gradients: str | GradientSource = "manual",
    validation: tuple[ArrayLike, ArrayLike] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    check_finite: bool = True,
    check_data: bool = True,
    batch_split: int | str = "auto",
    devices: Sequence[jax.Device] | jax.sharding.Mesh | None = None,
    stream: HostStream | None = None,
    shards: int | None = None,
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Train on ``(x, t)`` by minibatch gradient descent; each epoch is one compiled ``lax.scan``.

    Given parameters, ``fit`` starts a run (``optimizer.init``, epoch 0);
    given a :class:`TrainState` it continues that run. Epoch ``e``'s order
    is ``jax.random.permutation(jax.random.fold_in(key, e), n)``, a function
    of ``key`` and the absolute epoch number only, so ``fit(epochs=5)`` and
    five chained ``fit(epochs=1)`` calls give bitwise the same state.

    With ``S = shards > 1`` (by default the size of a mesh's data axis when
    it splits the rows) each shard of ``m = n / S`` rows is shuffled on its
    own: shard ``s`` holds rows ``[s m, (s + 1) m)`` and its order in epoch
    ``e`` is ``o_s = permutation(fold_in(fold_in(key, e), s), m)``; step ``k``
    takes ``b_s = batch_size / S`` rows from each shard in turn, rows
    ``s m + o_s[k b_s : (k + 1) b_s]``, and a last, shorter step (when
    ``batch_size`` does not divide ``n``) the rest of each shard. Each device
    then gathers its part of every minibatch from the rows it holds, and a
    run on one device with the same ``shards`` trains on the same
    minibatches.
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
        t: targets, shape (n, outs), or (n,) integer class labels for a classification loss.
        optimizer: any optax ``GradientTransformation``, e.g. ``optax.sgd(0.1)``.
        batch_size: examples per step.
        epochs: epochs to run in this call; 0 returns the starting state.
        key: PRNG key (``jax.random.key(0)``) to shuffle each epoch; ``None``
            keeps the given order.
        gradients: where each step's updates come from: ``"manual"`` (the
            hand-written recursion), ``"autodiff"`` (``jax.grad``), or any
            :class:`jaxnn.rules.GradientSource`, such as a learning rule of
            :mod:`jaxnn.rules`. A source's state (``state.grad_state``) is
            made by its ``init`` from ``jax.random.fold_in(key, 2**32 - 1)``
            (``jax.random.key(0)`` when ``key`` is None) when ``fit`` starts
            from parameters, and carried on in the :class:`TrainState`.
        validation: ``(x_val, t_val)``, evaluated after each epoch (jitted,
            at most 4096 examples at a time): logs ``val_loss`` and, for
            a classification loss, ``val_accuracy``.
        callbacks: :class:`jaxnn.Callback` objects, called in order. Their
            settings are checked against the run before anything compiles
            (a checkpoint's folder, a monitored name).
        progress: deprecated: pass ``callbacks=[jaxnn.ProgressBar()]``.
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
        shards: the number of equal blocks of rows each epoch's shuffle
            keeps apart (see above). ``None`` (the default): the size of the
            mesh's data axis when it divides ``n`` (the rows are split over
            it), else 1. Over a mesh it can only be that number; on one device
            any number dividing ``n`` and ``batch_size``, to train on the same
            minibatches as a mesh (or a multi-process job) of that many
            devices. No effect without ``key``.

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
        PeerError: (a ``RuntimeError``) in a multi-process job, when another
            process stopped during the run; it names the epoch and steps and
            the :class:`jaxnn.Checkpoint` file to resume from.

    >>> import jax, jax.numpy as jnp, optax, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 1), jaxnn.Identity(), jaxnn.MSELoss())
    >>> x = jax.random.normal(jax.random.key(0), (64, 2))
    >>> t = x @ jnp.array([[1.0], [-2.0]])
    >>> state, history = jaxnn.fit(net, net.init(jax.random.key(1)), x, t,
    ...                            optimizer=optax.sgd(0.1), batch_size=8, epochs=3)
    >>> state.epoch, history["epoch"].tolist()
    (3, [1, 2, 3])
    >>> state, history = jaxnn.fit(net, state, x, t, optimizer=optax.sgd(0.1),
    ...                            batch_size=8)
    >>> state.epoch, history["epoch"].tolist()
    (4, [4])
    """
    plan, state = make_plan(
        net, params_or_state, x, t, optimizer=optimizer, batch_size=batch_size, epochs=epochs, key=key,
        gradients=gradients, validation=validation, callbacks=callbacks, progress=progress,
        check_finite=check_finite, check_data=check_data, batch_split=batch_split, devices=devices, stream=stream,
        shards=shards,
    )
    return run(plan, state)
