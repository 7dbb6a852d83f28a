"""What runs compiled in ``fit``: a run of minibatch steps as one ``lax.scan``.

An epoch is one call, or several when a callback wants to hear about
progress within it (each call then runs a chunk of the epoch's steps). The
minibatches are gathered on the device from the epoch's permutation, so
nothing crosses to the host inside a call. Data streamed from the host
arrive already gathered, a chunk of minibatches at a time, and run through
the same scan. Every step's loss is added to a running sum and tested for
being finite; the carry records the first step whose loss was not, so a
failure costs no host synchronisation per step.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jaxnn.training._cache import cached

try:
    from jax import shard_map
except ImportError:  # jax before 0.7 has it only under jax.experimental
    from jax.experimental.shard_map import shard_map
from jaxnn.training._placement import Placement
from jaxnn.training._step import StepConfig, train_step

__all__ = ["Ran", "batches_runner", "steps_runner"]


class Ran(NamedTuple):
    """What one compiled call returns: the state after its steps, the sum of their losses, the first bad step.

    ``loss_sum`` is the sum over examples of each step's loss before its
    update; ``bad_step`` the first step whose loss was not finite, or the
    number of steps if every one was.
    """

    params: Any
    opt_state: Any
    grad_state: Any
    loss_sum: jax.Array
    bad_step: jax.Array


def _scan(config: StepConfig, params, opt_state, grad_state, xs, ts, *, steps, batch) -> Ran:
    """Train on minibatches ``xs[k], ts[k]``."""

    def body(carry, minibatch):
        params, opt_state, grad_state, total, bad, i = carry
        params, opt_state, grad_state, loss = train_step(config, params, opt_state, grad_state, *minibatch)
        bad = jnp.where((bad == steps) & ~jnp.isfinite(loss), i, bad)
        return (params, opt_state, grad_state, total + loss * batch, bad, i + 1), None

    # At least float32: 16-bit losses are float32, and a 16-bit sum over an epoch would drift.
    total = jnp.zeros((), jnp.promote_types(jnp.result_type(params[0][0]), jnp.float32))
    carry = (params, opt_state, grad_state, total, jnp.int32(steps), jnp.int32(0))
    (params, opt_state, grad_state, total, bad, _), _ = jax.lax.scan(body, carry, (xs, ts))
    return Ran(params, opt_state, grad_state, total, bad)


def _split_batches(where: Placement | None, xs, ts, batch, single):
    """Ask XLA to split each minibatch over the mesh's data axis."""
    if where is not None and where.mesh is not None and not single and batch % where.count == 0:
        xs = jax.lax.with_sharding_constraint(xs, where.batches())
        ts = jax.lax.with_sharding_constraint(ts, where.batches())
    return xs, ts


def _local_batches(where: Placement, x, t, order, start, *, steps, batch):
    """Minibatches (steps, batch, ...) gathered by each device of the data axis from the rows it holds.

    ``x`` and ``t`` are split by rows over the data axis and ``order`` (S, m)
    gives a row per device: its rows' order (:func:`jaxnn.training._epoch.shard_orders`).
    Device ``s`` takes rows ``order[s, start / S : (start + steps batch) / S]``
    of its own block, ``batch / S`` per step, and keeps them: they are its
    part of each minibatch, split over the data axis as the step expects. No
    training data cross between devices.
    """
    count, spec = where.count, PartitionSpec(where.axis)

    def gather(x, t, order, start):
        idx = jax.lax.dynamic_slice_in_dim(order[0], start // count, steps * batch // count)
        lead = (steps, batch // count)
        return x[idx].reshape(lead + x.shape[1:]), t[idx].reshape(lead + t.shape[1:])

    return shard_map(gather, mesh=where.mesh, in_specs=(spec, spec, spec, PartitionSpec()),
                         out_specs=PartitionSpec(None, where.axis))(x, t, order, start)


def _run_steps(config, where, params, opt_state, grad_state, x, t, order, start, *, steps, batch, single) -> Ran:
    """``steps`` minibatches of ``batch`` rows each, starting at row ``start`` of the epoch.

    Step ``k`` uses rows ``order[start + k * batch : start + (k + 1) * batch]``
    of ``x`` and ``t`` (``order`` None: the rows in their own order); an
    ``order`` of one row per device of the data axis is gathered by each
    device from its own rows (:func:`_local_batches`). ``single``
    scans over single examples (ins,), as the articles' per-example loop does.
    """
    rows = steps * batch
    if order is not None and order.ndim == 2:
        xs, ts = _local_batches(where, x, t, order, start, steps=steps, batch=batch)
        return _scan(config, params, opt_state, grad_state, xs, ts, steps=steps, batch=batch)
    if order is None:
        xs = jax.lax.dynamic_slice_in_dim(x, start, rows)
        ts = jax.lax.dynamic_slice_in_dim(t, start, rows)
    else:
        idx = jax.lax.dynamic_slice_in_dim(order, start, rows)
        xs, ts = x[idx], t[idx]
    lead = (steps,) if single else (steps, batch)
    xs, ts = _split_batches(where, xs.reshape(lead + x.shape[1:]), ts.reshape(lead + t.shape[1:]), batch, single)
    return _scan(config, params, opt_state, grad_state, xs, ts, steps=steps, batch=batch)


def _run_batches(config, where, params, opt_state, grad_state, xs, ts, *, batch, single) -> Ran:
    """Like ``_run_steps`` on minibatches gathered already: ``xs`` (steps, batch, ins)."""
    xs, ts = _split_batches(where, xs, ts, batch, single)
    return _scan(config, params, opt_state, grad_state, xs, ts, steps=xs.shape[0], batch=batch)


def _named(run: functools.partial) -> functools.partial:
    """``run`` under its function's name, which names its compiled program (older jax names a partial none)."""
    run.__name__ = run.func.__name__
    return run


def _key(config: StepConfig, where) -> tuple:
    return (config.net, config.source, config.batch_split, where)


def steps_runner(config: StepConfig, where: Placement | None):
    """The jitted ``run(params, opt_state, grad_state, x, t, order, start, *, steps, batch, single) -> Ran``, cached."""

    def build():
        run = _named(functools.partial(_run_steps, config, where))
        return jax.jit(run, static_argnames=("steps", "batch", "single"))

    return cached("steps", _key(config, where), config.optimizer, build)


def batches_runner(config: StepConfig, where: Placement | None):
    """The jitted ``run(params, opt_state, grad_state, xs, ts, *, batch, single) -> Ran`` for host chunks, cached."""

    def build():
        return jax.jit(_named(functools.partial(_run_batches, config, where)), static_argnames=("batch", "single"))

    return cached("batches", _key(config, where), config.optimizer, build)
