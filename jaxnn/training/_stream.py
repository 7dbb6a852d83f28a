"""Epochs as a sequence of compiled calls, on data held by the device or streamed from the host.

:class:`DeviceEpochs` runs an epoch as chunks of steps over data already on
the device (one chunk per epoch unless a callback wants progress within it).
:class:`StreamedEpochs` keeps the data in host memory (a NumPy array, or a
``np.memmap`` on disk that is never read whole): for each chunk of steps it
gathers the chunk's rows on the host in the epoch's order and sends them to
the device, issuing the next chunk's transfer while the current chunk trains
(JAX dispatches asynchronously). The compiled scan is the same, so both give
bitwise the same training on a CPU.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import jax
import numpy as np

from jaxnn._validation import positive_int

__all__ = ["DeviceEpochs", "HostStream", "StreamedEpochs"]

CHECK_ROWS = 65536  # rows read at once when checking streamed data
# Seconds per step of epochs a first chunk showed to be shorter than ``short_epoch``: later ones
# with the same compiled run and shapes go as one call, without the measuring pause after it.
_SHORT_EPOCHS: collections.OrderedDict = collections.OrderedDict()
_MAX_SHORT = 32


@dataclasses.dataclass(frozen=True)
class HostStream:
    """Keep ``fit``'s training data on the host and send it to the device a chunk of steps at a time.

    For data larger than the device's memory (or the host's: a
    ``np.load(path, mmap_mode="r")`` array is read a chunk at a time and
    never whole). Each chunk's rows are gathered on the host in the epoch's
    shuffled order and transferred while the previous chunk trains. The
    parameters are the same as with the data on the device (bitwise on a
    CPU; the loss history up to the rounding of its sum);
    it is slower when the data would fit, since every epoch moves the data
    again. ``fit`` streams a ``np.memmap`` by itself; pass
    ``stream=HostStream(...)`` to stream any NumPy array or to set the chunk.

    Args:
        steps_per_chunk: minibatches per transfer and per compiled call;
            device memory holds about two chunks of data
            (``2 * steps_per_chunk * batch_size`` rows).

    >>> import jax, numpy as np, optax, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 1), jaxnn.Identity(), jaxnn.MSELoss())
    >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32); t = x[:, :1] - x[:, 1:]
    >>> params = net.init(jax.random.key(1), dtype=np.float32)
    >>> state, _ = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8,
    ...                      stream=jaxnn.HostStream(steps_per_chunk=4))
    >>> same, _ = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8)
    >>> all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(same.params)))
    True
    """

    steps_per_chunk: int = 64

    def __post_init__(self):
        object.__setattr__(self, "steps_per_chunk", positive_int("steps_per_chunk", self.steps_per_chunk))


class DeviceEpochs:
    """Runs epochs as chunks of compiled steps on device data; replays one to find its last finite state."""

    def __init__(self, run, x, t, batch_size, chunk, short_epoch=0.0):
        self.run, self.x, self.t = run, x, t
        self.batch, self.chunk, self.short_epoch = batch_size, chunk, short_epoch
        self.full, self.rest = divmod(x.shape[0], batch_size)

    def calls(self, steps: int):
        """``(start_row, steps, batch)`` of the compiled calls that run the first ``steps`` steps."""
        out, done, limit = [], 0, min(steps, self.full)
        while done < limit:
            k = min(self.chunk, limit - done)
            out.append((done * self.batch, k, self.batch))
            done += k
        if steps > self.full and self.rest:
            out.append((self.full * self.batch, 1, self.rest))
        return out

    def _as_one_call(self, calls):
        """``calls`` with their full minibatches merged into one call (the short last batch kept apart)."""
        full = [c for c in calls if c[2] == self.batch]
        merged = [(full[0][0], sum(c[1] for c in full), self.batch)] if full else []
        return merged + [c for c in calls if c[2] != self.batch]

    def call(self, params, opt_state, order, start, k, batch, prepared=None):
        return self.run(params, opt_state, self.x, self.t, order, start, steps=k, batch=batch,
                        single=self.batch == 1)

    def prepare(self, order, start, k, batch):
        """Start what a call needs before it runs (nothing for device data)."""
        return None

    def host_order(self, order):
        return order

    def run_steps(self, params, opt_state, order, steps, on_steps=None):
        """Run the first ``steps`` steps of the epoch; ``(params, opt_state, loss_sums, bad_steps)``.

        With ``on_steps`` the epoch runs in chunks and ``on_steps`` hears of
        each; once the first chunk shows the epoch will take less than
        ``short_epoch`` seconds, its other full minibatches run as one call,
        since reports within so short an epoch would only cost time.
        """
        sums, bads, done, pending = [], [], 0, None
        order = self.host_order(order)
        calls = self.calls(steps)
        known = (self.run, self.batch, self.x.shape[0], steps)
        per_step = _SHORT_EPOCHS.get(known) if on_steps is not None else None
        if per_step is not None and per_step * steps < self.short_epoch:  # measured short before: one call
            _SHORT_EPOCHS.move_to_end(known)
            calls = self._as_one_call(calls)
        ready = self.prepare(order, *calls[0]) if calls else None
        started = time.perf_counter()
        for i, (start, k, batch) in enumerate(calls):
            params, opt_state, s, b = self.call(params, opt_state, order, start, k, batch, ready)
            if i == 0 and on_steps is not None and self.short_epoch > 0 and len(calls) > 2:
                jax.block_until_ready(b)
                per_step = (time.perf_counter() - started) / k
                if per_step * steps < self.short_epoch:
                    _SHORT_EPOCHS[known] = per_step
                    while len(_SHORT_EPOCHS) > _MAX_SHORT:
                        _SHORT_EPOCHS.popitem(last=False)
                    calls[1:] = self._as_one_call(calls[1:])
            if i + 1 < len(calls):  # the next chunk's transfer overlaps this chunk's training
                ready = self.prepare(order, *calls[i + 1])
            sums.append(s)
            bads.append((done, k, b))
            if on_steps is not None:
                if pending is not None:  # report the previous chunk once the next one is queued
                    on_steps(*pending)
                pending = (b, done + k)
            done += k
        if pending is not None:
            on_steps(*pending)
        return params, opt_state, sums, bads


class StreamedEpochs(DeviceEpochs):
    """Like :class:`DeviceEpochs` with ``x``, ``t`` in host memory, sent a chunk at a time."""

    def __init__(self, run, x, t, batch_size, chunk, *, dtypes, where):
        super().__init__(run, x, t, batch_size, chunk)
        self.dtypes, self.where = dtypes, where

    def host_order(self, order):
        return None if order is None else np.asarray(jax.device_get(order))

    def _rows(self, order, lo, hi):
        return np.arange(lo, hi) if order is None else order[lo:hi]

    def prepare(self, order, start, k, batch):
        idx = self._rows(order, start, start + k * batch).reshape(k, batch)
        out = []
        for a, dtype in zip((self.x, self.t), self.dtypes):
            shape = (k, batch) + a.shape[1:]
            where = self.where
            if where is not None and where.mesh is not None and batch % where.count == 0 and self.batch > 1:
                # each process reads and sends only the rows of its own devices' parts of each batch
                def part(index, a=a, dtype=dtype):
                    rows = idx[index[0], index[1]]
                    return np.asarray(np.take(a, rows.ravel(), axis=0), dtype).reshape(rows.shape + a.shape[1:])

                out.append(jax.make_array_from_callback(shape, where.batches(), part))
                continue
            host = np.asarray(np.take(a, idx.ravel(), axis=0), dtype).reshape(shape)
            if where is None:
                out.append(jax.device_put(host))
            elif where.mesh is None:
                out.append(jax.device_put(host, where.device))
            else:
                out.append(jax.device_put(host, where.replicated()))
        return tuple(out)

    def _as_one_call(self, calls):
        """``calls`` with their full minibatches merged into one call (the short last batch kept apart)."""
        full = [c for c in calls if c[2] == self.batch]
        merged = [(full[0][0], sum(c[1] for c in full), self.batch)] if full else []
        return merged + [c for c in calls if c[2] != self.batch]

    def call(self, params, opt_state, order, start, k, batch, prepared=None):
        xs, ts = prepared
        if self.batch == 1:  # single examples: (steps, ins)
            xs, ts = xs.reshape((k,) + xs.shape[2:]), ts.reshape((k,) + ts.shape[2:])
        return self.run(params, opt_state, xs, ts, batch=batch, single=self.batch == 1)


def check_host_data(net, params, x, t, where, check):
    """Shapes and dtypes of host data from its first row, values (optionally) a block of rows at a time.

    Returns the dtypes the device data would have (``x`` cast to the
    parameters' dtype, float targets to ``x``'s).
    """
    from jaxnn._validation import check_batch, check_data

    if np.ndim(x) != 2:
        check_batch(net.layers, np.empty(np.shape(x)), where)
    if np.ndim(t) < 1 or np.shape(t)[0] != x.shape[0]:
        raise ValueError(
            f"{where}: x and t must hold the same number of examples: x shape {x.shape}, t shape {np.shape(t)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x holds no examples (shape {x.shape}); pass at least one")
    # Labels are checked with the values below, naming the rows (or not at all without check_data).
    x1, t1 = net.check_inputs(params, np.asarray(x[:1]), np.asarray(t[:1]), check_labels=False)
    if check:
        for lo in range(0, x.shape[0], CHECK_ROWS):
            hi = min(lo + CHECK_ROWS, x.shape[0])
            xb, tb = net.check_inputs(params, np.asarray(x[lo:hi]), np.asarray(t[lo:hi]), check_labels=False)
            check_data(net, params, xb, tb, f"{where} (rows {lo} to {hi - 1})")
    return x1.dtype, t1.dtype
