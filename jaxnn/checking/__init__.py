"""Gradient checking: hand-written backprop vs ``jax.grad`` vs float64 finite differences.

:func:`check_gradients` returns a :class:`GradientReport`. The family is
split by job: ``_checker`` runs the comparisons, ``_policy`` holds the
numerical policy (finite-difference step, tolerances, the comparison rule),
``_finite_differences`` computes the differences, and ``_report`` holds the
values a report is made of and prints it.
"""

from jaxnn.checking._checker import check_gradients as check_gradients
from jaxnn.checking._policy import FD_SAFETY as FD_SAFETY
from jaxnn.checking._policy import FD_STEP as FD_STEP
from jaxnn.checking._policy import compare as compare
from jaxnn.checking._policy import tolerances_for as tolerances_for
from jaxnn.checking._report import Comparison as Comparison
from jaxnn.checking._report import ComponentCheck as ComponentCheck
from jaxnn.checking._report import GradientCheckError as GradientCheckError
from jaxnn.checking._report import GradientReport as GradientReport
from jaxnn.checking._report import GradientRow as GradientRow
from jaxnn.checking._report import Tolerances as Tolerances

__all__ = [
    "FD_SAFETY",
    "FD_STEP",
    "Comparison",
    "ComponentCheck",
    "GradientCheckError",
    "GradientReport",
    "GradientRow",
    "Tolerances",
    "check_gradients",
    "compare",
    "tolerances_for",
]
