"""Training: a compiled step for any optax optimizer, and ``fit`` with state, validation and callbacks.

The design, one module per job:

* ``_state``: :class:`TrainState` (params, optimizer state, epochs done), the
  pytree ``fit`` takes, returns and checkpoints, and the error that carries
  the last finite one.
* ``_step``: one step, loss and gradients (hand-written or ``jax.grad``) then
  the optimizer's update; ``make_train_step`` jits it.
* ``_epoch``: a run of steps as one ``lax.scan`` over minibatches gathered on
  the device, with a finite-loss flag in the carry.
* ``_cache``: compiled functions keyed by what an optimizer does, not by
  which object it is, so a fresh ``optax.sgd(0.05)`` does not recompile.
* ``_evaluate``: the loss and accuracy on held-out data, in batches.
* ``_callbacks``: the small objects ``fit`` calls after each epoch
  (and within one, for progress): early stopping, checkpoints, progress.
* ``_placement``: where arrays live: one device or a mesh (of one or many
  processes), and how many parts ``batch_split="auto"`` cuts a batch into.
* ``_stream``: epochs as a sequence of compiled calls, on device data or on
  host data sent a chunk at a time (:class:`HostStream`).
* ``_fit``: the loop that ties them together.

``fit`` grows by taking small values and objects (``validation=(x, t)``,
``callbacks=[EarlyStopping(...), Checkpoint(...)]``), not more flags.
"""

from jaxnn.training._callbacks import Callback as Callback
from jaxnn.training._callbacks import Checkpoint as Checkpoint
from jaxnn.training._callbacks import EarlyStopping as EarlyStopping
from jaxnn.training._callbacks import FitRun as FitRun
from jaxnn.training._callbacks import ProgressBar as ProgressBar
from jaxnn.training._evaluate import evaluate as evaluate
from jaxnn.training._fit import fit as fit
from jaxnn.training._placement import auto_batch_split as auto_batch_split
from jaxnn.training._placement import global_rows as global_rows
from jaxnn.training._placement import process_rows as process_rows
from jaxnn.training._state import NonFiniteLossError as NonFiniteLossError
from jaxnn.training._state import TrainState as TrainState
from jaxnn.training._step import GRADIENT_MODES as GRADIENT_MODES
from jaxnn.training._stream import HostStream as HostStream
from jaxnn.training._step import make_train_step as make_train_step

__all__ = [
    "GRADIENT_MODES",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "FitRun",
    "HostStream",
    "NonFiniteLossError",
    "ProgressBar",
    "TrainState",
    "auto_batch_split",
    "evaluate",
    "fit",
    "global_rows",
    "make_train_step",
    "process_rows",
]
