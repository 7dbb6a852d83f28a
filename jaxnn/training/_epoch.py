"""The compiled part of ``fit``: a run of minibatch steps as one ``lax.scan``.

An epoch is one call, or several when a callback wants to hear about
progress within it (each call then runs a chunk of the epoch's steps). The
minibatches are gathered on the device from the epoch's permutation, so
nothing crosses to the host inside a call. Every step's loss is added to a
running sum and tested for being finite; the carry records the first step
whose loss was not, so a failure costs no host synchronisation per step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxnn.training._cache import cached
from jaxnn.training._step import train_step

__all__ = ["BATCH_AXIS", "step_runner"]

BATCH_AXIS = "batch"


def _run_steps(net, optimizer, gradients, batch_split, mesh, params, opt_state, x, t, order, start, *, steps, batch, single):
    """``steps`` minibatches of ``batch`` rows each, starting at row ``start`` of the epoch.

    Step ``k`` uses rows ``order[start + k * batch : start + (k + 1) * batch]``
    of ``x`` and ``t`` (``order`` None: the rows in their own order). ``single``
    scans over single examples (ins,), as the articles' per-example loop does.

    Returns ``(params, opt_state, loss_sum, bad_step)``: ``loss_sum`` is the
    sum over examples of each step's loss before its update, and
    ``bad_step`` the first of these steps whose loss was not
    finite, or ``steps`` if every one was.
    """
    rows = steps * batch
    if order is None:
        xs = jax.lax.dynamic_slice_in_dim(x, start, rows)
        ts = jax.lax.dynamic_slice_in_dim(t, start, rows)
    else:
        idx = jax.lax.dynamic_slice_in_dim(order, start, rows)
        xs, ts = x[idx], t[idx]
    lead = (steps,) if single else (steps, batch)
    xs = xs.reshape(lead + x.shape[1:])
    ts = ts.reshape(lead + t.shape[1:])
    if mesh is not None and not single and batch % mesh.size == 0:
        split = NamedSharding(mesh, PartitionSpec(None, BATCH_AXIS))
        xs = jax.lax.with_sharding_constraint(xs, split)
        ts = jax.lax.with_sharding_constraint(ts, split)
    step = functools.partial(train_step, net, optimizer, gradients, batch_split)

    def body(carry, minibatch):
        params, opt_state, total, bad, i = carry
        params, opt_state, loss = step(params, opt_state, *minibatch)
        bad = jnp.where((bad == steps) & ~jnp.isfinite(loss), i, bad)
        return (params, opt_state, total + loss * batch, bad, i + 1), None

    # At least float32: 16-bit losses are float32, and a 16-bit sum over an epoch would drift.
    total = jnp.zeros((), jnp.promote_types(jnp.result_type(params[0][0]), jnp.float32))
    carry = (params, opt_state, total, jnp.int32(steps), jnp.int32(0))
    (params, opt_state, total, bad, _), _ = jax.lax.scan(body, carry, (xs, ts))
    return params, opt_state, total, bad


def step_runner(net, optimizer, gradients: str, batch_split: int, mesh):
    """The jitted ``run(params, opt_state, x, t, order, start, *, steps, batch, single)``, cached."""

    def build():
        run = functools.partial(_run_steps, net, optimizer, gradients, batch_split, mesh)
        return jax.jit(run, static_argnames=("steps", "batch", "single"))

    return cached("steps", (net, gradients, batch_split, mesh), optimizer, build)
