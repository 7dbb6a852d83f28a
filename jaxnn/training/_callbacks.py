"""Callbacks: small objects that ``fit`` calls at the start, within and at the end of epochs.

A callback overrides only the hooks it needs. ``fit`` calls, in order,
``on_fit_begin(run)`` once, ``on_steps(done)`` after each chunk of an epoch's
steps (only if some callback sets ``steps_per_update``), ``on_epoch_end(state,
logs)`` after each epoch (a true result stops training), and
``on_fit_end(state)``, whose result (if not None) is the state ``fit`` returns.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from jaxnn._checks import choice, file_path, flag, non_negative_int, non_negative_number, positive_int, real_number
from jaxnn.checkpoint import save
from jaxnn.rules import alignment
from jaxnn.training._state import TrainState

__all__ = ["AlignmentMonitor", "Callback", "Checkpoint", "EarlyStopping", "FitRun", "ProgressBar"]


class FitRun(NamedTuple):
    """What a callback is told when ``fit`` starts.

    Attributes:
        first_epoch: the absolute number of the first epoch this call runs.
        epochs: how many epochs this call runs at most.
        steps_per_epoch: optimizer steps per epoch (a short last batch counts).
        examples: training examples per epoch.
        net: the network trained.
        gradients: the gradient source (a :class:`jaxnn.rules.GradientSource`).
        logged: the names each epoch's logs will hold (``loss``, ``val_*``
            with validation, and what callbacks declare in their ``logs``).
    """

    first_epoch: int
    epochs: int
    steps_per_epoch: int
    examples: int
    net: Any = None
    gradients: Any = None
    logged: tuple[str, ...] = ("loss",)


class Callback:
    """Base class of ``fit``'s callbacks; every hook does nothing by default.

    Attributes:
        steps_per_update: if not None, ``fit`` runs each epoch in chunks of
            about this many steps and calls :meth:`on_steps` after each.
        short_epoch: seconds; once the first chunk shows an epoch will be
            shorter than this, ``fit`` runs the rest of it as one call (one
            report at its end), since reports within it would only cost time;
            later epochs of the same compiled run and shapes, in this call or
            a later one, then run as one call from the start.
        logs: names of the entries this callback adds to each epoch's logs
            in :meth:`on_epoch_end` (they go into ``fit``'s history too).
    """

    steps_per_update: int | None = None
    short_epoch: float = 0.0
    logs: tuple[str, ...] = ()

    def on_fit_begin(self, run: FitRun) -> None:
        """Called once before anything is compiled: check the run's settings here, raising if they do not fit."""

    def on_steps(self, done: int) -> None:
        """Called after each chunk with the steps done so far in the current epoch."""

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> bool | None:
        """Called after each epoch with ``logs`` (``epoch``, ``loss``, ``val_*``); true stops training."""

    def on_fit_end(self, state: TrainState) -> TrainState | None:
        """Called once at the end; a returned state replaces the one ``fit`` returns."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally return the best state.

    Args:
        monitor: the key of the epoch's logs to watch, e.g. ``"val_loss"``
            (needs ``validation=`` in ``fit``), ``"val_accuracy"`` or ``"loss"``.
        patience: epochs without improvement before stopping.
        min_delta: the least change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for names containing
            ``accuracy``, else min).
        restore_best: ``fit`` returns the state of the best epoch rather
            than the last one.

    After ``fit``, ``best_epoch`` (absolute, the number of epochs completed
    by the best state) and ``best`` (its value) say what was kept.

    >>> import jaxnn
    >>> jaxnn.EarlyStopping(monitor="val_loss", patience=3).mode
    'min'
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, *, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a logged value such as 'val_loss', got {monitor!r}"[:200])
        mode = choice("mode", mode, ("auto", "min", "max"))
        real_number("min_delta", min_delta)
        non_negative_number("min_delta", min_delta)
        self.monitor = monitor
        self.patience = non_negative_int("patience", patience)
        self.min_delta = float(min_delta)
        self.mode = ("max" if "accuracy" in monitor else "min") if mode == "auto" else mode
        self.restore_best = flag("restore_best", restore_best)
        self.best = self.best_epoch = self.best_state = None
        self._wait = 0

    def on_fit_begin(self, run: FitRun) -> None:
        if self.monitor not in run.logged:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which fit will not log; it logs {list(run.logged)}"
                + (" (val_* need fit(..., validation=(x_val, t_val)))" if self.monitor.startswith("val_") else "")
            )
        self.best = self.best_epoch = self.best_state = None
        self._wait = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, state, logs):
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which fit does not log; it logs "
                f"{sorted(logs)} (val_* need fit(..., validation=(x_val, t_val)))"
            )
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.best_state, self._wait = value, int(state.epoch), state, 0
            return False
        self._wait += 1
        return self._wait > self.patience

    def on_fit_end(self, state):
        if self.restore_best and self.best_state is not None:
            return self.best_state
        return None


class Checkpoint(Callback):
    """Save the :class:`TrainState` to ``path`` every ``every`` epochs and at the end, atomically.

    The file always holds a complete state (see :func:`jaxnn.save`): a run
    killed at any moment can be resumed with ``jaxnn.load(path, like)`` and
    ``fit`` on the loaded state, with the same result as if it had not
    stopped. In a multi-process job only process 0 writes (the replicated
    state, from its own devices), and every process waits until the file is
    written, so any of them can load it afterwards.

    With ``EarlyStopping(restore_best=True)`` listed before ``Checkpoint``,
    the file written at the end of ``fit`` holds the best epoch's state; list
    ``Checkpoint`` first to keep the last epoch's state in the file.

    Args:
        path: the file to write (its folder must exist and be writable:
            ``fit`` checks it before anything runs).
        every: save after every this many epochs (by absolute epoch number).
    """

    def __init__(self, path: str | os.PathLike, every: int = 1):
        file_path("Checkpoint path", path, must_exist=False)
        self.path = path
        self.every = positive_int("every", every)
        self._saved_epoch = None

    def on_fit_begin(self, run: FitRun) -> None:
        folder = os.path.dirname(os.path.abspath(os.fspath(self.path)))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Checkpoint path {os.fspath(self.path)!r}: the folder {folder!r} does not "
                                    f"exist; create it first (os.makedirs)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"Checkpoint path {os.fspath(self.path)!r}: the folder {folder!r} is not writable")

    def _save(self, state) -> None:
        if jax.process_index() == 0:
            save(self.path, state)
        if jax.process_count() > 1:  # every process may read the file once all have passed this point
            multihost_utils.sync_global_devices(f"jaxnn.Checkpoint {os.fspath(self.path)} {int(state.epoch)}")
        self._saved_epoch = int(state.epoch)

    def on_epoch_end(self, state, logs):
        if int(state.epoch) % self.every == 0:
            self._save(state)

    def on_fit_end(self, state):
        if self._saved_epoch != int(state.epoch):
            self._save(state)


class ProgressBar(Callback):
    """Show training progress: steps within each epoch, the loss, validation values.

    On a terminal it is a tqdm bar counting steps, advanced ``updates_per_epoch``
    times per epoch (needs ``tqdm``); when the stream is not a terminal (a log
    file, CI) it writes one plain line per epoch instead of redrawing a bar.

    Args:
        updates_per_epoch: how often within an epoch the bar moves. Each
            update runs the epoch in one more compiled call; the default keeps
            that cost to a few percent.
        file: the stream, ``sys.stderr`` by default.
        short_epoch: seconds; an epoch shorter than this is reported only at
            its end, so the bar costs nothing measurable on fast epochs.
    """

    def __init__(self, updates_per_epoch: int = 10, file=None, short_epoch: float = 0.25):
        self.updates_per_epoch = positive_int("updates_per_epoch", updates_per_epoch)
        real_number("short_epoch", short_epoch, finite=False)
        if not float(short_epoch) >= 0:
            raise ValueError(f"short_epoch must be a non-negative number of seconds, got {short_epoch!r}")
        self.short_epoch = float(short_epoch)
        if file is not None and not callable(getattr(file, "write", None)):
            raise TypeError(f"file must be a stream with a write method (e.g. sys.stdout) or None, got "
                            f"{type(file).__name__}")
        self.file = file
        self._bar = None

    def on_fit_begin(self, run: FitRun) -> None:
        self._run = run
        self._stream = sys.stderr if self.file is None else self.file
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self.steps_per_update = max(1, -(-run.steps_per_epoch // self.updates_per_epoch)) if self._tty else None
        self._start = time.perf_counter()
        self._last = 0
        if self._tty:
            try:
                from tqdm.auto import tqdm
            except ImportError as e:
                raise ImportError("ProgressBar needs tqdm: pip install tqdm (or 'jaxnn[examples]')") from e
            self._bar = tqdm(total=run.epochs * run.steps_per_epoch, desc="fit", unit="step", file=self._stream)

    def on_steps(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._last)
            self._last = 0 if done >= self._run.steps_per_epoch else done

    def on_epoch_end(self, state, logs):
        shown = {k: f"{v:.4g}" for k, v in logs.items() if k != "epoch"}
        if self._bar is not None:
            self._bar.set_postfix(epoch=int(state.epoch), **shown)
            return
        done = int(state.epoch) - self._run.first_epoch
        values = "  ".join(f"{k} {v}" for k, v in shown.items())
        elapsed = time.perf_counter() - self._start
        print(f"fit: epoch {int(state.epoch)} ({done}/{self._run.epochs} of this call, "
              f"{self._run.steps_per_epoch} steps): {values}  [{elapsed:.1f} s]", file=self._stream, flush=True)

    def on_fit_end(self, state):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# Compiled once per rule, network and probe shapes, whatever the run: the rule and network are static.
_alignment = jax.jit(alignment, static_argnums=(0, 1))


class AlignmentMonitor(Callback):
    """Log a learning rule's angles to backprop every ``every`` epochs, per layer, into ``fit``'s history.

    After epochs ``every``, ``2 * every``, ... (absolute numbers, as
    :class:`Checkpoint` counts) and after the last epoch of each ``fit``
    call, it measures :func:`jaxnn.rules.alignment` of the run's gradient
    source on the fixed batch ``(x, t)`` and adds, for every layer ``i``:

    * ``align_update/<i>``: degrees between the rule's ``dW_i`` and
      ``jax.grad``'s on ``(x, t)``;
    * ``align_feedback/<i>``: degrees between the matrix the rule uses in
      place of ``W_i^T`` and ``W_i^T``.

    Other epochs log NaN for them. The names are declared in :attr:`logs`, so
    :class:`EarlyStopping` can monitor them, and
    :func:`jaxnn.plotting.alignment_angles` draws ``fit``'s history as it is.
    One jitted function does the measuring, compiled once for a rule, a
    network and the batch's shape (not once per epoch, nor per ``fit`` call);
    each measurement costs about two steps' worth of work on ``(x, t)`` and
    one read-back: on the digits network of ``examples/learning_rules.py``,
    whose epochs take milliseconds, within 5% of the epoch time at the
    default interval (``benchmarks/learning_rules.py`` measures it). For
    backprop itself the update angles are 0 and the feedback angles NaN.

    Args:
        net: the network ``fit`` trains; its layers name the logs.
        x, t: the fixed batch, (batch, ins) and its targets (a few hundred
            training examples is plenty).
        every: epochs between measurements (each one costs about half of
            a digits epoch at 512 examples: measure every epoch only when
            you want the curve).

    Raises:
        ValueError, TypeError: ``x`` or ``t`` that do not fit ``net``, or
            ``every`` not a positive integer; at ``fit``'s start, a run that
            trains another network.

    >>> import jax, jax.numpy as jnp, optax, jaxnn
    >>> net = jaxnn.Network.from_sizes((4, 8, 3), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    >>> x, t = jax.random.normal(jax.random.key(0), (64, 4)), jnp.arange(64) % 3
    >>> monitor = jaxnn.AlignmentMonitor(net, x[:32], t[:32], every=2)
    >>> monitor.logs
    ('align_update/0', 'align_update/1', 'align_feedback/0', 'align_feedback/1')
    >>> state, history = jaxnn.fit(net, net.init(jax.random.key(1)), x, t, optimizer=optax.adam(1e-2),
    ...                            batch_size=16, epochs=3, gradients=jaxnn.rules.FeedbackAlignment(),
    ...                            callbacks=[monitor])
    >>> [bool(jnp.isnan(a)) for a in history["align_update/0"]]  # epochs 2 and 3 (the last) measured
    [True, False, False]
    """

    def __init__(self, net, x, t, every: int = 10):
        if not hasattr(net, "layers") or not hasattr(net, "loss"):
            raise TypeError(f"net must be the jaxnn.Network that fit trains, got {type(net).__name__}")
        self.net = net
        self.x, self.t = jnp.asarray(x), jnp.asarray(t)
        if self.x.ndim != 2:
            raise ValueError(f"AlignmentMonitor x must be a batch, shape (batch, ins), got shape {self.x.shape}")
        # Shapes only: nothing is computed or compiled here.
        jax.eval_shape(lambda x, t: net.loss(net.init(jax.random.key(0)), x, t), self.x, self.t)
        self.every = positive_int("every", every)
        n = len(net.layers)
        self.logs = tuple(f"align_update/{i}" for i in range(n)) + tuple(f"align_feedback/{i}" for i in range(n))
        self._rule = self._last = None

    def on_fit_begin(self, run: FitRun) -> None:
        if run.net is not None and run.net != self.net:
            raise ValueError("AlignmentMonitor was made for another network than the one fit trains; "
                             "make it with the same net: AlignmentMonitor(net, x, t)")
        self._rule = run.gradients
        self._last = run.first_epoch + run.epochs

    def _measure(self, state: TrainState) -> dict[str, float]:
        """``{align_update/<i>: ..., align_feedback/<i>: ...}`` for ``state``'s parameters and rule state."""
        angles = jax.device_get(_alignment(self._rule, self.net, state.params, state.grad_state, self.x, self.t))
        n = len(self.net.layers)
        return {**{f"align_update/{i}": float(angles.update[i]) for i in range(n)},
                **{f"align_feedback/{i}": float(angles.feedback[i]) for i in range(n)}}

    def on_epoch_end(self, state, logs):
        epoch = int(state.epoch)
        if epoch % self.every == 0 or epoch == self._last:
            logs.update(self._measure(state))
