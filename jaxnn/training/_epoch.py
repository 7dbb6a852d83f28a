"""One epoch as a sequence of compiled calls over data held by the device, in chunks for progress.

An epoch runs as one compiled call unless a callback wants to hear of
progress within it; then it runs in chunks of steps, each reported once the
next one is queued. Once the first chunk shows an epoch to be shorter than
the callbacks' ``short_epoch``, the rest of it (and later epochs of the same
shapes) run as one call, since reports within so short an epoch would only
cost time. :class:`jaxnn.training._stream.StreamedEpochs` runs the same
chunks over data sent from host memory.

An epoch's order is drawn per shard of rows (:func:`shard_orders`): over a
mesh whose data axis splits the rows, each device permutes and gathers only
the rows it holds, so a shuffled epoch moves no training data between
devices; on one device the same order is written out as one permutation
(:func:`flat_order`).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.training._placement import Placement, place_state
from jaxnn.training._scan import steps_runner
from jaxnn.training._state import TrainState
from jaxnn.training._step import StepConfig

__all__ = ["Call", "DeviceEpochs", "EpochResult", "flat_order", "shard_orders"]

# Seconds per step of epochs a first chunk showed to be shorter than ``short_epoch``: later ones
# with the same compiled run and shapes go as one call, without the measuring pause after it.
_SHORT_EPOCHS: collections.OrderedDict = collections.OrderedDict()
_MAX_SHORT = 32


def shard_orders(key: jax.Array, epoch: int, n: int, shards: int) -> jax.Array:
    """Epoch ``epoch``'s order within each of ``shards`` equal blocks of rows.

    With one shard, ``permutation(fold_in(key, epoch), n)``, shape (n,).
    With ``S > 1`` shards of ``m = n / S`` rows, row ``s`` of the result, shape
    (S, m), is ``permutation(fold_in(fold_in(key, epoch), s), m)``: the order of
    shard ``s``'s rows ``[s m, (s + 1) m)`` by their index within the shard.
    Assumes ``shards`` divides ``n``.
    """
    epoch_key = jax.random.fold_in(key, epoch)
    if shards == 1:
        return jax.random.permutation(epoch_key, n)
    return jnp.stack([jax.random.permutation(jax.random.fold_in(epoch_key, s), n // shards) for s in range(shards)])


def flat_order(orders: jax.Array, batch: int) -> jax.Array:
    """The rows of ``x`` in the order an epoch trains on them, from :func:`shard_orders`' ``orders``.

    Step ``k`` takes ``batch / S`` rows from each shard in turn: from shard
    ``s``, rows ``s m + orders[s, k b_s : (k + 1) b_s]`` with ``b_s = batch / S``;
    a last, shorter step takes what is left of each shard, shard after shard.
    One shard: ``orders`` itself. Assumes ``S`` divides ``batch``.
    """
    if orders.ndim == 1:
        return orders
    shards, m = orders.shape
    rows = orders + (jnp.arange(shards, dtype=orders.dtype) * m)[:, None]
    per_step = batch // shards
    full = m // per_step
    head = rows[:, : full * per_step].reshape(shards, full, per_step).transpose(1, 0, 2).reshape(-1)
    return jnp.concatenate([head, rows[:, full * per_step:].reshape(-1)])


class Call(NamedTuple):
    """One compiled call of an epoch: ``steps`` minibatches of ``batch`` rows from row ``start``."""

    start: int
    steps: int
    batch: int


class EpochResult(NamedTuple):
    """An epoch's (or its first steps') outcome, still on the device.

    ``loss_sums`` holds one sum per call; ``bad`` one ``(steps before the
    call, steps in it, first bad step in it)`` per call.
    """

    state: TrainState
    loss_sums: list
    bad: list


class DeviceEpochs:
    """Runs an epoch's steps over data on the device, as compiled calls of :func:`steps_runner`."""

    def __init__(self, config: StepConfig, where: Placement | None, x, t, batch_size: int, chunk: int,
                 short_epoch: float = 0.0, shards: int = 1):
        self.config, self.where, self.x, self.t = config, where, x, t
        self.batch, self.chunk, self.short_epoch, self.shards = batch_size, chunk, short_epoch, shards
        self.full, self.rest = divmod(x.shape[0], batch_size)
        self.run = self.runner()

    def runner(self):
        return steps_runner(self.config, self.where)

    def calls(self, steps: int) -> list[Call]:
        """The compiled calls that run the first ``steps`` steps of an epoch."""
        out, done, limit = [], 0, min(steps, self.full)
        while done < limit:
            k = min(self.chunk, limit - done)
            out.append(Call(done * self.batch, k, self.batch))
            done += k
        if steps > self.full and self.rest:
            out.append(Call(self.full * self.batch, 1, self.rest))
        return out

    def _as_one_call(self, calls: list[Call]) -> list[Call]:
        """``calls`` with their full minibatches merged into one call (the short last batch kept apart)."""
        full = [c for c in calls if c.batch == self.batch]
        merged = [Call(full[0].start, sum(c.steps for c in full), self.batch)] if full else []
        return merged + [c for c in calls if c.batch != self.batch]

    def call(self, state: TrainState, order, c: Call, prepared=None):
        return self.run(state.params, state.opt_state, state.grad_state, self.x, self.t, order, c.start,
                        steps=c.steps, batch=c.batch, single=self.batch == 1)

    def prepare(self, order, c: Call):
        """Start what a call needs before it runs (nothing for device data)."""
        return None

    def gathers_locally(self) -> bool:
        """Whether each device of the data axis gathers its minibatches from its own rows."""
        return self.shards > 1 and self.where is not None and self.where.mesh is not None

    def order(self, key: jax.Array, epoch: int):
        """Epoch ``epoch``'s order, placed where the data are gathered by it.

        Gathered locally: :func:`shard_orders` split over the data axis, a row
        per device. Otherwise: :func:`flat_order`, through :meth:`place_order`.
        """
        orders = shard_orders(key, epoch, self.x.shape[0], self.shards)
        if self.gathers_locally():
            return place_state(orders, self.where, self.where.rows())
        return self.place_order(flat_order(orders, self.batch))

    def place_order(self, order):
        """An epoch's permutation placed where the data are gathered by it."""
        return place_state(order, self.where)

    def run_steps(self, state: TrainState, order, steps: int,
                  on_steps: Callable[[jax.Array, int], None] | None = None) -> EpochResult:
        """Run the first ``steps`` steps of the epoch in the order ``order`` (None: as stored).

        With ``on_steps`` the epoch runs in chunks and ``on_steps(bad, done)``
        hears of each.
        """
        sums, bads, done, pending = [], [], 0, None
        calls = self.calls(steps)
        known = (self.run, self.batch, self.x.shape[0], steps)
        per_step = _SHORT_EPOCHS.get(known) if on_steps is not None else None
        if per_step is not None and per_step * steps < self.short_epoch:  # measured short before: one call
            _SHORT_EPOCHS.move_to_end(known)
            calls = self._as_one_call(calls)
        ready = self.prepare(order, calls[0]) if calls else None
        started = time.perf_counter()
        for i, c in enumerate(calls):
            ran = self.call(state, order, c, ready)
            state = state._replace(params=ran.params, opt_state=ran.opt_state, grad_state=ran.grad_state)
            if i == 0 and on_steps is not None and self.short_epoch > 0 and len(calls) > 2:
                jax.block_until_ready(ran.bad_step)
                per_step = (time.perf_counter() - started) / c.steps
                if per_step * steps < self.short_epoch:
                    _SHORT_EPOCHS[known] = per_step
                    while len(_SHORT_EPOCHS) > _MAX_SHORT:
                        _SHORT_EPOCHS.popitem(last=False)
                    calls[1:] = self._as_one_call(calls[1:])
            if i + 1 < len(calls):  # the next chunk's transfer overlaps this chunk's training
                ready = self.prepare(order, calls[i + 1])
            sums.append(ran.loss_sum)
            bads.append((done, c.steps, ran.bad_step))
            if on_steps is not None:
                if pending is not None:  # report the previous chunk once the next one is queued
                    on_steps(*pending)
                pending = (ran.bad_step, done + c.steps)
            done += c.steps
        if pending is not None:
            on_steps(*pending)
        return EpochResult(state, sums, bads)
