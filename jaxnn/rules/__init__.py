"""Learning rules: where a training step's updates come from, backprop and its alternatives.

Every rule is a :class:`GradientSource` (see :mod:`jaxnn.rules._source` for
the protocol), usable wherever a gradient mode is: ``make_train_step(...,
gradients=rule)``, ``fit(..., gradients=rule)``, or called directly with
``rule.value_and_grad(net, params, state, x, t)`` under ``jax.jit`` and
``jax.vmap``. ``"manual"`` and ``"autodiff"`` name :class:`Backprop` and
:class:`Autodiff`.
"""

from jaxnn.rules._source import Autodiff as Autodiff
from jaxnn.rules._source import Backprop as Backprop
from jaxnn.rules._source import GradientSource as GradientSource
from jaxnn.rules._source import as_source as as_source

__all__ = ["Autodiff", "Backprop", "GradientSource", "as_source"]
