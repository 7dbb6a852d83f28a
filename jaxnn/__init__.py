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
from jaxnn import checking, datasets, training
from jaxnn.checking import GradientCheckError, GradientReport, check_gradients
from jaxnn.checkpoint import load, save
from jaxnn.custom_grad import loss_with_backprop
from jaxnn.initializers import articles_normal, get_initializer
from jaxnn.losses import CrossEntropyLoss, Loss, MSELoss
from jaxnn.network import Layer, Network
from jaxnn.per_example import clipped_mean_grad, per_example_grad_norms, per_example_grads
from jaxnn.second_order import hessian, hvp
from jaxnn.training import (
    Callback,
    Checkpoint,
    EarlyStopping,
    HostStream,
    NonFiniteLossError,
    ProgressBar,
    TrainState,
    evaluate,
    fit,
    make_train_step,
)
from jaxnn._types import Grads, Params

from jaxnn._version import __version__ as __version__

__all__ = [
    "Activation",
    "Callback",
    "Checkpoint",
    "CrossEntropyLoss",
    "EarlyStopping",
    "Elementwise",
    "GradientCheckError",
    "GradientReport",
    "Grads",
    "HostStream",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Loss",
    "MSELoss",
    "Network",
    "NonFiniteLossError",
    "Params",
    "ProgressBar",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Trace",
    "TrainState",
    "articles_normal",
    "check_gradients",
    "checking",
    "clipped_mean_grad",
    "datasets",
    "evaluate",
    "fit",
    "get_initializer",
    "hessian",
    "hvp",
    "load",
    "loss_with_backprop",
    "make_train_step",
    "per_example_grad_norms",
    "per_example_grads",
    "save",
    "training",
]
