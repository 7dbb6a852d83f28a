"""Host streaming: training data kept in host memory and sent to the device a chunk of steps at a time.

:class:`StreamedEpochs` keeps the data in host memory (a NumPy array, or a
``np.memmap`` on disk that is never read whole): for each chunk of steps it
gathers the chunk's rows on the host in the epoch's order and sends them to
the device, issuing the next chunk's transfer while the current chunk trains
(JAX dispatches asynchronously). The compiled scan is the one device data
use, so both give bitwise the same training on a CPU.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxnn._checks import check_data, check_labels, fits_jax_int, positive_int
from jaxnn.network import check_batch
from jaxnn.training._epoch import Call, DeviceEpochs
from jaxnn.training._scan import batches_runner

__all__ = ["HostStream", "StreamedEpochs", "check_host_data"]

CHECK_ROWS = 65536  # rows read at once when checking streamed data


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


class StreamedEpochs(DeviceEpochs):
    """Like :class:`DeviceEpochs` with ``x``, ``t`` in host memory, sent a chunk at a time."""

    def __init__(self, config, where, x, t, batch_size, chunk, *, dtypes, shards=1):
        self.dtypes = dtypes
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
        if self.batch == 1:  # single examples: (steps, ins)
            xs, ts = xs.reshape((c.steps,) + xs.shape[2:]), ts.reshape((c.steps,) + ts.shape[2:])
        return self.run(state.params, state.opt_state, state.grad_state, xs, ts, batch=c.batch,
                        single=self.batch == 1)


def check_host_data(net, params, x, t, where, check):
    """Shapes and dtypes of host data from its first row, values (optionally) a block of rows at a time.

    Returns the dtypes the device data would have (``x`` cast to the
    parameters' dtype, float targets to ``x``'s).
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
    if check:
        rule = net.loss_fn.label_rule(net.layers[-1].outs)
        if rule is not None and np.issubdtype(t.dtype, np.integer) and t.shape == x.shape[:-1]:
            check_labels(f"{where}: t", t, *rule)  # on all the labels at once, so the row named is t's own
        for lo in range(0, x.shape[0], CHECK_ROWS):
            hi = min(lo + CHECK_ROWS, x.shape[0])
            xb, tb = net.check_inputs(params, np.asarray(x[lo:hi]), np.asarray(t[lo:hi]), check_labels=False)
            check_data(net, params, xb, tb, f"{where} (rows {lo} to {hi - 1})")
    return x1.dtype, t1.dtype
