"""Host streaming: training data kept in host memory and sent to the device a chunk of steps at a time.

:class:`StreamedEpochs` keeps the data in host memory (a NumPy array, or a
``np.memmap`` on disk that is never read whole): for each chunk of steps it
gathers the chunk's rows on the host in the epoch's order and sends them to
the device, issuing the next chunk's transfer while the current chunk trains
(JAX dispatches asynchronously). The compiled scan is the one device data
use, so both give bitwise the same training on a CPU.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import jax
import numpy as np

from jaxnn._checks import check_data, check_labels, fits_jax_int, positive_int
from jaxnn.network import check_batch
from jaxnn.training._epoch import Call, DeviceEpochs
from jaxnn.training._scan import batches_runner

__all__ = ["HostStream", "StreamedEpochs", "check_host_data"]

CHECK_ROWS = 65536  # the most rows read at once when checking streamed data
MAX_BYTES = 256 * 2**20  # HostStream's default budget of host and device buffers
# Copies of a chunk a budget allows for: the one training, the next one gathered on the host and its copy on
# the device, the last one's buffers until the runtime frees them. Measured growth fits about four copies
# plus some 7 MiB of the runtime's own; six leave room for the allocator.
IN_FLIGHT = 6
CHECK_COPIES = 6  # a block being checked: JAX's copy, its cast, NumPy's copy and mask of finite values, and the
# previous block until the runtime frees it (measured: 3 let the check pass exceed the budget by half)


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

    The buffers of the data in flight, on the host and the device together,
    stay within ``max_bytes``: a chunk holds ``max_bytes // (6 * bytes per
    step)`` steps, since up to about five copies of a chunk were measured
    alive at once (the one training, the next one gathered on the host and
    its copy on the device, the last one's until the runtime frees it; one
    more of the rows as stored when they must be cast), where a step's
    bytes are ``batch_size`` rows of ``x`` and ``t`` as sent. Checking the data
    first reads blocks of rows within the same budget. Outside it: the
    epoch's order (4 bytes a row), the parameters and optimizer state, and
    the runtime's own memory.

    Args:
        steps_per_chunk: the most minibatches per transfer and per compiled
            call (None: as many as ``max_bytes`` allows).
        max_bytes: the budget of host and device buffers, in bytes (256 MiB
            by default).

    Raises:
        ValueError: from ``fit`` when six copies of one step's minibatch
            alone exceed ``max_bytes`` (naming the batch size, the row size and
            the budget).

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

    steps_per_chunk: int | None = None
    max_bytes: int = MAX_BYTES

    def __post_init__(self):
        if self.steps_per_chunk is not None:
            object.__setattr__(self, "steps_per_chunk", positive_int("steps_per_chunk", self.steps_per_chunk))
        object.__setattr__(self, "max_bytes", positive_int("max_bytes", self.max_bytes))

    def chunk_steps(self, batch_size: int, x, t, dtypes) -> int:
        """Steps per chunk for ``batch_size`` rows of ``x`` and ``t`` sent as ``dtypes``, within ``max_bytes``."""
        sent = cast = 0
        for a, dtype in zip((x, t), dtypes):
            items = math.prod(a.shape[1:])
            sent += items * np.dtype(dtype).itemsize
            cast += items * a.dtype.itemsize if np.dtype(a.dtype) != np.dtype(dtype) else 0
        per_step = batch_size * (IN_FLIGHT * sent + cast)
        if per_step > self.max_bytes:
            raise ValueError(
                f"HostStream(max_bytes={self.max_bytes}) is too small for one step: batch_size {batch_size} rows "
                f"of {sent} bytes (x and t as sent{f', {cast} more while cast' if cast else ''}) need "
                f"{per_step} bytes in flight ({IN_FLIGHT} copies: the step training, the next one gathered on the "
                f"host and its copy on the device); raise max_bytes to at least {per_step} or lower batch_size"
            )
        steps = self.max_bytes // per_step
        return steps if self.steps_per_chunk is None else min(steps, self.steps_per_chunk)

    def check_rows(self, x) -> int:
        """Rows of ``x`` checked at once within ``max_bytes``."""
        row = max(1, math.prod(x.shape[1:]) * max(x.dtype.itemsize, 4))
        return max(1, min(CHECK_ROWS, self.max_bytes // (CHECK_COPIES * row)))


class StreamedEpochs(DeviceEpochs):
    """Like :class:`DeviceEpochs` with ``x``, ``t`` in host memory, sent a chunk at a time."""

    def __init__(self, config, where, x, t, batch_size, chunk, *, dtypes, shards=1):
        self.dtypes = dtypes
        self._running = collections.deque()  # an output of each call that may still be running, oldest first
        super().__init__(config, where, x, t, batch_size, chunk, shards=shards)

    def runner(self):
        return batches_runner(self.config, self.where)

    def gathers_locally(self) -> bool:
        return False  # the host gathers each chunk, sending each device its own part of each batch

    def place_order(self, order):
        return np.asarray(jax.device_get(order))

    def _rows(self, order, lo, hi):
        return np.arange(lo, hi) if order is None else order[lo:hi]

    def prepare(self, order, c: Call):
        # At most one call may still run while this chunk is gathered: with the chunk it trains on,
        # this one on the host and its copy on the device, three chunks are alive at once.
        while len(self._running) > 1:
            jax.block_until_ready(self._running.popleft())
        k, batch = c.steps, c.batch
        idx = self._rows(order, c.start, c.start + k * batch).reshape(k, batch)
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
            if self.batch == 1:  # single examples: (steps, ins), shaped on the host rather than copied on the device
                shape = (k,) + a.shape[1:]
            host = np.asarray(np.take(a, idx.ravel(), axis=0), dtype).reshape(shape)
            if where is None:
                out.append(jax.device_put(host))
            elif where.mesh is None:
                out.append(jax.device_put(host, where.device))
            else:
                out.append(jax.device_put(host, where.replicated()))
        return tuple(out)

    def call(self, state, order, c: Call, prepared=None):
        xs, ts = prepared
        out = self.run(state.params, state.opt_state, state.grad_state, xs, ts, batch=c.batch,
                       single=self.batch == 1)
        self._running.append(out.loss_sum)  # ready when the call has run
        return out


def check_host_data(net, params, x, t, where, check, stream: HostStream, batch_size: int):
    """Shapes and dtypes of host data from its first row, values (optionally) a block of rows at a time.

    Returns the dtypes the device data would have (``x`` cast to the
    parameters' dtype, float targets to ``x``'s) and the steps per chunk
    within ``stream``'s budget, checked before the values are read.
    """
    if np.ndim(x) != 2:
        check_batch(where, np.empty(np.shape(x)), net.layers)
    if np.ndim(t) < 1 or np.shape(t)[0] != x.shape[0]:
        raise ValueError(
            f"{where}: x and t must hold the same number of examples: x shape {x.shape}, t shape {np.shape(t)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x holds no examples (shape {x.shape}); pass at least one")
    fits_jax_int("x", x)  # integers JAX would narrow, on the whole arrays so that rows are named as given
    fits_jax_int("t", t)
    # Labels are checked with the values below, naming the rows (or not at all without check_data).
    x1, t1 = net.check_inputs(params, np.asarray(x[:1]), np.asarray(t[:1]), check_labels=False)
    dtypes = (x1.dtype, t1.dtype)
    steps = stream.chunk_steps(batch_size, x, t, dtypes)
    if check:
        rule = net.loss_fn.label_rule(net.layers[-1].outs)
        if rule is not None and np.issubdtype(t.dtype, np.integer) and t.shape == x.shape[:-1]:
            check_labels(f"{where}: t", t, *rule)  # on all the labels at once, so the row named is t's own
        block = stream.check_rows(x)
        for lo in range(0, x.shape[0], block):
            hi = min(lo + block, x.shape[0])
            xb, tb = net.check_inputs(params, np.asarray(x[lo:hi]), np.asarray(t[lo:hi]), check_labels=False)
            check_data(net, params, xb, tb, f"{where} (rows {lo} to {hi - 1})")
            del xb, tb
    return dtypes, steps
