"""Training: a compiled step for any optax optimizer, and ``fit`` with state, validation and callbacks.

The design, one module per concern, in the order a call to ``fit`` walks them:

* ``_fit``: ``fit`` itself, a plan then a run.
* ``_plan``: every argument checked and every option resolved once, up
  front, into a :class:`~jaxnn.training._plan.FitPlan`.
* ``_loop``: the run: the loop over epochs, validation, callbacks, the
  non-finite guard.
* ``_epoch``: one epoch as compiled calls over data on the device, in chunks
  when a callback wants progress within it.
* ``_stream``: the same over data in host memory (:class:`HostStream`).
* ``_placement``: where arrays live: one device or a mesh (of one or many
  processes), and how many parts ``batch_split="auto"`` cuts a batch into.
* ``_scan``: what runs compiled: a run of steps as one ``lax.scan``.
* ``_step``: one step, the gradient source's updates then the optimizer's;
  ``make_train_step`` jits it.
* ``_cache``: compiled functions keyed by what an optimizer does, not by
  which object it is, so a fresh ``optax.sgd(0.05)`` does not recompile.
* ``_state``: :class:`TrainState` and its checks, and the error that carries
  the last finite one.
* ``_callbacks``: the small objects ``fit`` calls before, within and after
  epochs: early stopping, checkpoints, progress, a learning rule's angles
  to backprop.
* ``_evaluate``: the loss and accuracy on held-out data, in batches.

``fit`` grows by taking small values and objects (``validation=(x, t)``,
``callbacks=[EarlyStopping(...), Checkpoint(...)]``), not more flags.
"""

from jaxnn.training._callbacks import AlignmentMonitor as AlignmentMonitor
from jaxnn.training._callbacks import Callback as Callback
from jaxnn.training._callbacks import Checkpoint as Checkpoint
from jaxnn.training._callbacks import EarlyStopping as EarlyStopping
from jaxnn.training._callbacks import FitRun as FitRun
from jaxnn.training._callbacks import ProgressBar as ProgressBar
from jaxnn.training._evaluate import evaluate as evaluate
from jaxnn.training._fit import fit as fit
from jaxnn.training._loop import PeerError as PeerError
from jaxnn.training._placement import auto_batch_split as auto_batch_split
from jaxnn.training._placement import global_rows as global_rows
from jaxnn.training._placement import process_rows as process_rows
from jaxnn.training._state import NonFiniteLossError as NonFiniteLossError
from jaxnn.training._state import TrainState as TrainState
from jaxnn.training._step import GRADIENT_MODES as GRADIENT_MODES
from jaxnn.training._stream import HostStream as HostStream
from jaxnn.training._step import make_train_step as make_train_step

__all__ = [
    "AlignmentMonitor",
    "GRADIENT_MODES",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "FitRun",
    "HostStream",
    "NonFiniteLossError",
    "PeerError",
    "ProgressBar",
    "TrainState",
    "auto_batch_split",
    "evaluate",
    "fit",
    "global_rows",
    "make_train_step",
    "process_rows",
]
