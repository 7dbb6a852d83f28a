"""jaxnn: the backpropagation recursion as pure, jittable JAX, proven equal to jax.grad.

Parameters are a plain list of ``(W, b)`` tuples; every function is pure and
takes them first.

>>> import jax, jaxnn
>>> net = jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.LeakyReLU()),
...                      jaxnn.Layer(3, 2, jaxnn.Sigmoid())], jaxnn.MSELoss())
>>> params = net.init(jax.random.key(0))
>>> grads = net.backprop(params, jax.numpy.ones(2), jax.numpy.zeros(2))
>>> [dW.shape for dW, db in grads]
[(3, 2), (2, 3)]
"""

from jaxnn.activations import (
    Activation,
    Elementwise,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from jaxnn.backprop import Trace
from jaxnn.checking import check_gradients
from jaxnn.custom_grad import loss_with_backprop
from jaxnn.gradient_report import (
    Comparison,
    ComponentCheck,
    GradientCheckError,
    GradientReport,
    GradientRow,
    Tolerances,
)
from jaxnn.initializers import articles_normal, get_initializer
from jaxnn.losses import CrossEntropyLoss, Loss, MSELoss
from jaxnn.network import Layer, Network
from jaxnn.per_example import clipped_mean_grad, per_example_grad_norms, per_example_grads
from jaxnn.second_order import hessian, hvp
from jaxnn.training import fit, make_train_step
from jaxnn.typing import Grads, Params

from jaxnn._version import __version__ as __version__

__all__ = [
    "Activation",
    "Comparison",
    "ComponentCheck",
    "CrossEntropyLoss",
    "Elementwise",
    "GradientCheckError",
    "GradientReport",
    "GradientRow",
    "Grads",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Loss",
    "MSELoss",
    "Network",
    "Params",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Tolerances",
    "Trace",
    "articles_normal",
    "check_gradients",
    "clipped_mean_grad",
    "fit",
    "get_initializer",
    "hessian",
    "hvp",
    "loss_with_backprop",
    "make_train_step",
    "per_example_grad_norms",
    "per_example_grads",
]
