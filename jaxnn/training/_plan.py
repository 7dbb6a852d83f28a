"""``fit``'s plan: every argument checked, every option resolved and placed, once, before anything runs.

:func:`make_plan` turns ``fit``'s arguments into a :class:`FitPlan` and the
state to start from; :func:`jaxnn.training._loop.run` then only runs it.
Data already checked (the same ``jax.Array`` objects: they cannot change) are
not scanned for bad values again.
"""

from __future__ import annotations

import collections
import functools
import threading
import warnings
import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import (
    as_array,
    check_data,
    check_finite_params,
    check_nonempty,
    flag,
    non_negative_int,
    positive_int,
    prng_key,
    require_target,
)
from jaxnn.network import check_batch, check_network
from jaxnn.rules import as_source
from jaxnn.training._callbacks import Callback, FitRun, ProgressBar
from jaxnn.training._epoch import DeviceEpochs
from jaxnn.training._evaluate import counts_correct
from jaxnn.training._placement import Placement, auto_batch_split, available_cores, place_data, place_state, placement
from jaxnn.training._state import TrainState, check_state, start_state
from jaxnn.training._step import StepConfig, check_batch_split, check_optimizer
from jaxnn.training._stream import HostStream, StreamedEpochs, check_host_data

__all__ = ["FitPlan", "make_plan"]

MAX_EPOCH = 2**31 - 1  # jax.random.fold_in takes a 32-bit number
# The source's state is drawn from fold_in(key, SOURCE_KEY): a number no epoch reaches.
SOURCE_KEY = 2**32 - 1


class FitPlan(NamedTuple):
    """What ``fit`` runs, decided up front.

    Attributes:
        net: the network.
        epochs: the epoch runner over the training data (on the device or streamed).
        where: the placement (None: the default device).
        run: what callbacks are told (first epoch, epochs, steps, examples, logged names).
        key: the shuffling key, or None for the data's own order.
        validation: ``(x_val, t_val)`` checked and converted, or None.
        callbacks: the callbacks, in order.
        check_finite: stop at the first non-finite loss.
    """

    net: Any
    epochs: DeviceEpochs
    where: Placement | None
    run: FitRun
    key: jax.Array | None
    validation: tuple[jax.Array, jax.Array] | None
    callbacks: list[Callback]
    check_finite: bool


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


class _Passed:
    """Arrays that passed a value check, by the identity of their (immutable) jax.Arrays, most recent kept."""

    def __init__(self, size: int):
        self.size, self.entries, self.lock = size, collections.OrderedDict(), threading.Lock()

    def seen(self, arrays, *context) -> bool:
        """Whether these very arrays passed (with an equal ``context``: what else the check read)."""
        if not arrays or not all(isinstance(a, jax.Array) for a in arrays):
            return False
        with self.lock:
            refs = self.entries.get((tuple(map(id, arrays)), context))
            return refs is not None and all(r() is a for r, a in zip(refs, arrays))

    def add(self, arrays, *context) -> None:
        if not arrays or not all(isinstance(a, jax.Array) for a in arrays):
            return
        with self.lock:
            self.entries[(tuple(map(id, arrays)), context)] = tuple(weakref.ref(a) for a in arrays)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


_DATA_PASSED, _PARAMS_PASSED = _Passed(64), _Passed(64)


def _check_values_once(net, params, x, t, given, given_params, where, names) -> None:
    """``check_data``, skipping the scans of data (and parameters) whose very arrays passed it before.

    ``given`` are the data and ``given_params`` the parameters as the caller
    passed them (``params`` may be a copy).
    """
    data, leaves = (given, (net.layers[-1].outs, net.loss_fn, x.dtype)), jax.tree.leaves(given_params)
    if _DATA_PASSED.seen(*data):
        if not _PARAMS_PASSED.seen(leaves):
            check_finite_params(params)
            _PARAMS_PASSED.add(leaves)
        return
    check_data(net, params, x, t, where, names)
    _DATA_PASSED.add(*data)
    _PARAMS_PASSED.add(leaves)


@functools.cache
def _default_key() -> jax.Array:
    """``jax.random.key(0)``, made once: the sources' key when ``fit`` has none."""
    return jax.random.key(0)


def _checked_data(net, params, x, t, where: str, check: bool, *, given_params, names=("x", "t")):
    """``(x, t)`` checked against the network and converted; values checked when ``check``.

    ``names`` are what messages call them (the validation data's own names);
    ``given_params`` the parameters as the caller passed them (``params``
    may be a copy of them), whose very arrays need no second scan.
    """
    given = (x, t)
    x, _ = net.check_inputs(params, x, names=names)
    require_target(where, t)
    t = as_array(names[1], t, labels_ok=True)  # lists and bad values before their shape is read
    check_batch(where, x, net.layers)
    check_nonempty(where, x)
    if jnp.ndim(t) < 1 or jnp.shape(t)[0] != x.shape[0]:
        raise ValueError(
            f"{where}: {names[0]} and {names[1]} must hold the same number of examples: {names[0]} shape "
            f"{x.shape}, {names[1]} shape {jnp.shape(t)}"
        )
    _, t = net.check_inputs(params, x, t, check_labels=False, names=names)  # the value checks read labels
    if check:
        _check_values_once(net, params, x, t, given, given_params, where, names)
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
    if batch_size % batch_split:
        raise ValueError(
            f"batch_size must be a multiple of batch_split: got batch_size {batch_size}, batch_split {batch_split}"
        )
    return batch_split


def _shards(shards, where: Placement | None, n: int, batch_size: int) -> int:
    """``shards`` checked: by default the data axis' size when it splits the rows, else 1."""
    split = where is not None and where.mesh is not None and where.count > 1 and n % where.count == 0
    default = where.count if split else 1
    if shards is None:
        return default
    shards = positive_int("shards", shards)
    if where is not None and where.mesh is not None and shards != default:
        held = (f"its data axis splits the rows into {default} blocks" if split else
                f"the rows are replicated (its {where.count} devices do not divide the {n} examples)")
        raise ValueError(f"shards: over a mesh the shuffle keeps to the blocks of rows the devices hold and "
                         f"{held}, so shards must be {default} or None; got {shards}")
    if n % shards or batch_size % shards:
        raise ValueError(f"shards must divide the number of examples and batch_size (each step takes "
                         f"batch_size / shards rows from each shard): got shards {shards} for {n} examples "
                         f"and batch_size {batch_size}")
    return shards


def _stream_option(stream, x, t) -> HostStream | None:
    if stream is None and isinstance(x, np.memmap):
        stream = HostStream()
    if stream is not None and not isinstance(stream, HostStream):
        raise TypeError(f"stream must be a jaxnn.HostStream or None, got {type(stream).__name__}")
    if stream is not None and not (isinstance(x, np.ndarray) and isinstance(t, np.ndarray)):
        raise TypeError(
            f"stream=HostStream(...) streams NumPy arrays from host memory; got x {type(x).__name__}, "
            f"t {type(t).__name__} (pass np.asarray(...) or leave stream out)"
        )
    return stream


def make_plan(net, params_or_state, x, t, *, optimizer, batch_size, epochs, key, gradients, validation,
              callbacks, progress, check_finite, check_data, batch_split, devices, stream, shards=None
              ) -> tuple[FitPlan, TrainState]:
    """Check ``fit``'s arguments and decide everything it does: ``(plan, state to start from)``."""
    # Options.
    check_network("net", net)
    source = as_source(gradients)
    optimizer = check_optimizer(optimizer)
    batch_size = positive_int("batch_size", batch_size)
    epochs = non_negative_int("epochs", epochs)
    prng_key("key", key, optional=True)
    check_finite, check_data = flag("check_finite", check_finite), flag("check_data", check_data)
    callbacks = _check_callbacks(callbacks)
    if progress is not None:
        warnings.warn("fit(progress=...) is deprecated and will be removed in the next release; pass "
                      "callbacks=[jaxnn.ProgressBar()] instead", DeprecationWarning, stacklevel=3)
        callbacks += [ProgressBar()] if flag("progress", progress) else []
    where = placement(devices, batch_size)
    config = StepConfig(net, optimizer, source, _batch_split(batch_split, net, batch_size, where))
    stream = _stream_option(stream, x, t)

    # The state to start from.
    if isinstance(params_or_state, TrainState):
        check_state(net, optimizer, source, params_or_state)
    else:
        net.check_params(params_or_state)
    source_key = _default_key() if key is None else jax.random.fold_in(key, SOURCE_KEY)
    state = start_state(params_or_state, optimizer, source, net, source_key)
    given_params = params_or_state.params if isinstance(params_or_state, TrainState) else params_or_state
    if state.epoch + epochs > MAX_EPOCH:
        raise ValueError(
            f"epochs: a run counts at most {MAX_EPOCH} epochs (each one's shuffle folds its number into the "
            f"key), got epoch {state.epoch} + epochs {epochs}"
        )

    # The data.
    if stream is None:
        x, t = _checked_data(net, state.params, x, t, "fit", check_data, given_params=given_params)
    else:
        dtypes, stream_steps = check_host_data(net, state.params, x, t, "fit", check_data, stream, batch_size)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(f"validation must be a pair (x_val, t_val), got {type(validation).__name__}")
        validation = _checked_data(net, state.params, *validation, "fit validation", check_data,
                                   names=("validation inputs", "validation targets"), given_params=given_params)

    # Callbacks, chunks and placement.
    n = x.shape[0]
    shards = _shards(shards, where, n, batch_size)
    full, rest = divmod(n, batch_size)
    logged = ("loss",)
    if validation is not None:
        logged += ("val_loss",) + (("val_accuracy",) if counts_correct(net, *validation) else ())
    logged += tuple(name for cb in callbacks for name in cb.logs)
    run = FitRun(state.epoch, epochs, full + (rest > 0), n, net, source, logged)
    for cb in callbacks:
        cb.on_fit_begin(run)
    wanted = [max(1, cb.steps_per_update) for cb in callbacks if cb.steps_per_update]
    if stream is None:
        short = min((cb.short_epoch for cb in callbacks if cb.steps_per_update), default=0.0)
        runner = DeviceEpochs(config, where, *place_data(x, t, where), batch_size,
                              min(wanted) if wanted else max(full, 1), short, shards)
    else:
        runner = StreamedEpochs(config, where, x, t, batch_size, min([stream_steps] + wanted),
                                dtypes=dtypes, shards=shards)
    placed = place_state((state.params, state.opt_state, state.grad_state), where)
    state = state._replace(**dict(zip(("params", "opt_state", "grad_state"), placed)))
    return FitPlan(net, runner, where, run, key, validation, callbacks, check_finite), state
