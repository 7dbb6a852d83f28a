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

Dtypes
------
Everything is computed in the parameters' dtype, chosen with
``net.init(key, dtype=...)``:

* float32 (the default) and float64 (needs ``jax.config.update("jax_enable_x64",
  True)`` first; without it ``net.init(dtype=jnp.float64)`` raises rather than
  silently giving float32) work end to end and give gradients equal to
  ``jax.grad``.
* bfloat16 and float16 work for ``forward``, ``backprop`` and ``fit``. The
  losses and ``Softmax`` compute in float32 internally (the loss value is a
  float32 scalar, ``dloss`` and every gradient are cast back to the
  parameters' dtype), and ``fit``/``evaluate`` sum losses in float32. Against
  a float32 run from the same values (tests/test_dtypes.py: a 8-16-16-4 net,
  64 examples), outputs agree to 2e-2 (bfloat16) and 4e-3 (float16) of their
  largest magnitude, gradients to 1e-1 and 1e-2, the loss after 20 epochs of
  ``fit`` to 2e-2 and 5e-3.
* Mixed dtypes: ``x`` is cast to the parameters' dtype (float64 data with
  float32 parameters is computed in float32; integer inputs become floats),
  float targets to the same dtype, and integer class labels stay integers.
* Not accepted: complex, boolean, string or object arrays as ``x`` or ``t``,
  and non-float parameters; each raises a TypeError saying what to pass.

Value checks (finite numbers, labels in ``[0, outputs)``) need concrete data:
``fit``, ``evaluate``, ``check_gradients`` and the ``per_example_*`` functions
make them; the pure methods check concrete labels. Under ``jax.jit`` only
shapes and dtypes are checked, so an out-of-range label gives a garbage or NaN
loss silently.
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
from jaxnn import checking, datasets, rules, training
from jaxnn.checking import GradientCheckError, GradientReport, check_gradients
from jaxnn.checkpoint import load, save
from jaxnn.custom_grad import loss_with_backprop
from jaxnn.initializers import articles_normal, get_initializer
from jaxnn.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, Loss, MSELoss
from jaxnn.network import Layer, Network
from jaxnn.per_example import clipped_mean_grad, per_example_grad_norms, per_example_grads
from jaxnn.second_order import hessian, hvp
from jaxnn.training import (
    AlignmentMonitor,
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
    "AlignmentMonitor",
    "BinaryCrossEntropyLoss",
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
    "rules",
    "save",
    "training",
]
