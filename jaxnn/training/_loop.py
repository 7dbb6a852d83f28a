"""``fit``'s run: the loop over epochs of a :class:`~jaxnn.training._plan.FitPlan`, with its callbacks.

Each epoch is one compiled call (or a few, for progress); after it the loss
is read back, validation runs, callbacks are called and may stop the run. A
non-finite loss is found from the flag the compiled scan keeps, and the
epoch is replayed up to it to hand back the last finite state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.training._evaluate import evaluate
from jaxnn.training._placement import local_replica
from jaxnn.training._plan import FitPlan
from jaxnn.training._state import NonFiniteLossError, TrainState

__all__ = ["run"]

VALIDATION_BATCH = 4096


def run(plan: FitPlan, state: TrainState) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Run ``plan``'s epochs from ``state``: ``(state, history)``."""
    logs_per_epoch = []
    for epoch in range(state.epoch, state.epoch + plan.run.epochs):
        order = _order(plan, epoch)
        result = plan.epochs.run_steps(state, order, plan.run.steps_per_epoch, _reporter(plan))
        sums, bad_steps = jax.device_get((result.loss_sums, [b for _, _, b in result.bad]))
        if plan.check_finite:
            for (done, k, _), b in zip(result.bad, bad_steps):
                if b < k:
                    _raise_non_finite(plan, state, order, epoch, done + int(b))
        state = result.state._replace(epoch=epoch + 1)
        logs = {"epoch": epoch + 1, "loss": float(np.sum(np.asarray(sums, np.float64)) / plan.run.examples)}
        if plan.validation is not None:
            scores = evaluate(plan.net, state.params, *plan.validation, batch_size=VALIDATION_BATCH, check=False)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        stop = False
        for cb in plan.callbacks:  # a callback may add its own entries to logs
            stop = bool(cb.on_epoch_end(state, logs)) or stop
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


def _reporter(plan: FitPlan):
    """``on_steps(bad, done)``, telling every callback of progress within an epoch when one wants it, or None."""
    if not any(cb.steps_per_update for cb in plan.callbacks):
        return None

    def on_steps(bad, done):
        jax.block_until_ready(bad)
        for cb in plan.callbacks:
            cb.on_steps(done)

    return on_steps


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
