"""``fit``'s run: the loop over epochs of a :class:`~jaxnn.training._plan.FitPlan`, with its callbacks.

Each epoch is one compiled call (or a few, for progress); after it the loss
is read back, validation runs, callbacks are called and may stop the run. A
non-finite loss is found from the flag the compiled scan keeps, and the
epoch is replayed up to it to hand back the last finite state. In a
multi-process job, a collective that fails because another process stopped
becomes a :class:`PeerError` that says where the run was and which
checkpoint to resume from.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.training._callbacks import Checkpoint
from jaxnn.training._evaluate import evaluate
from jaxnn.training._placement import local_replica
from jaxnn.training._plan import FitPlan
from jaxnn.training._state import NonFiniteLossError, TrainState

__all__ = ["PeerError", "run"]

VALIDATION_BATCH = 4096


class PeerError(RuntimeError):
    """Another process of a multi-process ``fit`` stopped (or lost its connection) during the run.

    Raised in each surviving process in place of the runtime's error about a
    failed collective (which stays attached as ``__cause__``). The message
    says where the run was and which :class:`jaxnn.Checkpoint` file holds the
    last complete epoch to resume from.

    Attributes:
        epoch: the epoch that was running, counting from 1.
        steps: ``(first, last)``: the steps (from 1) of the compiled call that
            failed, or None when the failure came after the epoch's steps
            (in validation or a callback).
        checkpoint: the path of the last checkpoint this run wrote, or None.
        checkpoint_epoch: the epoch it holds, or None.
    """

    def __init__(self, message, *, epoch, steps, checkpoint, checkpoint_epoch):
        super().__init__(message)
        self.epoch, self.steps = epoch, steps
        self.checkpoint, self.checkpoint_epoch = checkpoint, checkpoint_epoch


def run(plan: FitPlan, state: TrainState) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Run ``plan``'s epochs from ``state``: ``(state, history)``."""
    logs_per_epoch, saved, steps = [], {}, None
    for epoch in range(state.epoch, state.epoch + plan.run.epochs):
        try:
            steps = [1, plan.run.steps_per_epoch]
            order = _order(plan, epoch)
            result = plan.epochs.run_steps(state, order, plan.run.steps_per_epoch, _reporter(plan, steps))
            sums, bad_steps = jax.device_get((result.loss_sums, [b for _, _, b in result.bad]))
            steps = None
            if plan.check_finite:
                for (done, k, _), b in zip(result.bad, bad_steps):
                    if b < k:
                        _raise_non_finite(plan, state, order, epoch, done + int(b))
            state = result.state._replace(epoch=epoch + 1)
            logs = {"epoch": epoch + 1, "loss": float(np.sum(np.asarray(sums, np.float64)) / plan.run.examples)}
            if plan.validation is not None:
                scores = evaluate(plan.net, state.params, *plan.validation, batch_size=VALIDATION_BATCH,
                                  check=False)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            stop = False
            for cb in plan.callbacks:  # a callback may add its own entries to logs
                stop = bool(cb.on_epoch_end(state, logs)) or stop
        except jax.errors.JaxRuntimeError as err:
            if plan.where is None or not plan.where.multiprocess:
                raise
            raise _peer_error(plan, epoch, steps, saved) from err
        saved.update({cb.path: epoch + 1 for cb in plan.callbacks
                      if isinstance(cb, Checkpoint) and (epoch + 1) % cb.every == 0})
        logs_per_epoch.append(logs)
        if stop:
            break
    for cb in plan.callbacks:
        replaced = cb.on_fit_end(state)
        if replaced is not None:
            state = replaced
    return local_replica(state, plan.where), _history(plan, logs_per_epoch)


def _order(plan: FitPlan, epoch: int):
    """Epoch ``epoch``'s order of the examples, drawn per shard of rows, where the data are (None: as stored)."""
    if plan.key is None:
        return None
    return plan.epochs.order(plan.key, epoch)


def _reporter(plan: FitPlan, steps: list):
    """``on_steps(bad, done)``, telling every callback of progress within an epoch when one wants it, or None.

    Once the steps up to ``done`` have run, ``steps`` becomes those still running.
    """
    if not any(cb.steps_per_update for cb in plan.callbacks):
        return None

    def on_steps(bad, done):
        jax.block_until_ready(bad)
        steps[0] = done + 1
        for cb in plan.callbacks:
            cb.on_steps(done)

    return on_steps


def _peer_error(plan: FitPlan, epoch: int, steps, saved: dict) -> PeerError:
    """The error a surviving process raises when a collective failed in ``epoch`` (from 0)."""
    where = (f"in epoch {epoch + 1}, within steps {steps[0]} to {steps[1]} of {plan.run.steps_per_epoch}"
             if steps is not None and steps[0] <= steps[1] else f"after the steps of epoch {epoch + 1} "
             f"(in validation or a callback)")
    checkpoints = [cb for cb in plan.callbacks if isinstance(cb, Checkpoint)]
    latest = max(saved.items(), key=lambda item: item[1], default=None)
    if latest is not None:
        resume = (f"the last complete epoch is in the checkpoint {os.fspath(latest[0])!r} (epoch {latest[1]}); "
                  f"resume with jaxnn.load({os.fspath(latest[0])!r}, like=...) passed to fit")
    elif checkpoints:
        resume = (f"this run wrote no checkpoint yet; {os.fspath(checkpoints[0].path)!r} holds what an earlier "
                  f"run saved there, if anything")
    else:
        resume = "no Checkpoint callback was in this run, so its progress is lost"
    return PeerError(
        f"a peer process of this jax.distributed job stopped or lost its connection {where} (the collective "
        f"failed: see the error above); {resume}. On exit this process waits in JAX's shutdown until the "
        f"coordinator's heartbeat timeout (jax.distributed.initialize(heartbeat_timeout_seconds=...), "
        f"100 s by default) and then aborts; os._exit ends it at once",
        epoch=epoch + 1, steps=None if steps is None else tuple(steps),
        checkpoint=None if latest is None else latest[0], checkpoint_epoch=None if latest is None else latest[1],
    )


def _history(plan: FitPlan, logs_per_epoch: list[dict]) -> dict[str, np.ndarray]:
    """One NumPy array per logged name, an entry per epoch run (NaN where an epoch did not log it)."""
    names = list(dict.fromkeys(["epoch", *plan.run.logged] + [k for logs in logs_per_epoch for k in logs]))
    return {
        name: np.asarray([logs.get(name, np.nan) for logs in logs_per_epoch],
                         np.int64 if name == "epoch" else np.float64)
        for name in names
    }


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact))


def _raise_non_finite(plan: FitPlan, state: TrainState, order, epoch: int, step: int):
    """Replay the epoch up to its first non-finite step and raise with the last finite state."""
    last = None
    for k in (step, step - 1):
        if k < 0:
            break
        replayed = plan.epochs.run_steps(state, order, k).state
        if _all_finite(replayed.params):
            last = replayed._replace(epoch=epoch)
            break
    last = state if last is None else last
    raise NonFiniteLossError(
        f"the training loss became NaN or infinite at epoch {epoch + 1}, step {step + 1} of "
        f"{plan.run.steps_per_epoch}; err.state is the last state with finite parameters and "
        f"err.epoch_start_state the state this epoch started from. Try a smaller learning rate, "
        f"check the data, or pass check_finite=False to train on regardless",
        epoch=epoch + 1, step=step + 1, state=last, epoch_start_state=state,
    )
