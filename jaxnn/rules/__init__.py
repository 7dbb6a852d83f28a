"""Learning rules: where a training step's updates come from, backprop and its alternatives.

Every rule is a :class:`GradientSource` (see :mod:`jaxnn.rules._source` for
the protocol), usable wherever a gradient mode is: ``make_train_step(...,
gradients=rule)``, ``fit(..., gradients=rule)``, or called directly with
``rule.value_and_grad(net, params, state, x, t)`` under ``jax.jit`` and
``jax.vmap``. ``"manual"`` and ``"autodiff"`` name :class:`Backprop` and
:class:`Autodiff`.

Rules without weight transport replace backprop's ``dx = W^T db``:
:class:`FeedbackAlignment`, :class:`SignSymmetry`, :class:`KolenPollack` and
:class:`DirectFeedbackAlignment`, all through one recursion,
:func:`backprop_with`. :func:`alignment` measures how far a rule is from
backprop; :class:`jaxnn.AlignmentMonitor` logs it during ``fit``.
"""

from jaxnn.rules._source import Autodiff as Autodiff
from jaxnn.rules._source import Backprop as Backprop
from jaxnn.rules._source import GradientSource as GradientSource
from jaxnn.rules._source import as_source as as_source
from jaxnn.rules._alignment import Alignment as Alignment
from jaxnn.rules._alignment import alignment as alignment
from jaxnn.rules._direct import DirectFeedbackAlignment as DirectFeedbackAlignment
from jaxnn.rules._feedback import FeedbackAlignment as FeedbackAlignment
from jaxnn.rules._feedback import KolenPollack as KolenPollack
from jaxnn.rules._feedback import SignSymmetry as SignSymmetry
from jaxnn.rules._transport import backprop_with as backprop_with

__all__ = [
    "Alignment",
    "Autodiff",
    "Backprop",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "GradientSource",
    "KolenPollack",
    "SignSymmetry",
    "alignment",
    "as_source",
    "backprop_with",
]
