"""The recursion with another error transport, and the checks every feedback rule's state gets.

:func:`backprop_with` is what each rule of this package computes its updates
with: the articles' recursion (:func:`jaxnn.backprop.backward`, one loop for
every rule) with ``transport`` in place of the line ``dx = W^T db``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn._types import Grads, Params
from jaxnn._checks import require_target
from jaxnn.backprop import Transport, backprop_trace

__all__ = ["backprop_with"]


def backprop_with(net, params: Params, x: ArrayLike, t: ArrayLike,
                  transport: Transport = None) -> tuple[jax.Array, Grads]:
    """``(loss, updates)`` from the recursion with ``transport`` in place of ``dx = W^T db``.

    For every layer, last to first: ``db = f'(y) * dx``, ``dW = db x^T``, and
    the error for the layer below is ``B_i db`` (or, with
    :class:`jaxnn.backprop.Direct`, ``B_i e`` from the output layer's ``e``).
    With ``transport=None`` this is :meth:`jaxnn.Network.value_and_backprop`.
    The loss is the true loss; the updates have the structure of ``params``.

    Args:
        net, params: the network and its parameters.
        x, t: one example (ins,) or a batch (batch, ins), and the targets.
        transport: None, a sequence with one matrix of shape (ins, outs) (or
            None, for ``W_i^T``) per layer, or a :class:`jaxnn.backprop.Direct`.
            Its shapes are not checked here: the rules check their state.

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> x, t = jnp.ones(3), jnp.zeros(2)
    >>> transposes = [W.T for W, b in params]
    >>> loss, grads = jaxnn.rules.backprop_with(net, params, x, t, transposes)
    >>> bool(jnp.allclose(grads[0][0], net.backprop(params, x, t)[0][0]))
    True
    """
    require_target("backprop_with", t)
    x, t = net.check_inputs(params, x, t)
    trace = backprop_trace(net.layers, net.loss_fn, params, x, t, transport)
    # The containers of the params given (list or tuple), as jax.grad would.
    return trace.loss, jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(trace.grads))


def check_matrices(rule, state, expected: Mapping[int, tuple], dtype, where: str, what: str) -> None:
    """Raise unless ``state`` is a dict ``{layer: matrix}`` with exactly ``expected``'s keys and shapes.

    ``expected`` maps each layer index to the shape its matrix must have;
    ``what`` says what that shape is (e.g. "W_i^T's, (ins, outs)"). Static
    shapes only, so it works under ``jax.jit`` and inside ``jax.vmap``.
    """
    name = type(rule).__name__
    fix = f"make it with {name}(...).init(key, net, params) for this network"
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{where} must be {name}'s feedback matrices, a dict {{layer: matrix}}, got "
            f"{type(state).__name__}; {fix}"
        )
    if set(state) != set(expected):
        raise ValueError(
            f"{where} has feedback matrices for layers {sorted(state, key=str)} but {name} on this "
            f"network needs exactly layers {sorted(expected)}: was it made for another network? {fix}"
        )
    for i in sorted(expected):
        B, shape = state[i], expected[i]
        got_shape, got_dtype = getattr(B, "shape", None), getattr(B, "dtype", None)
        if got_shape != shape or got_dtype != dtype:
            got = f"{type(B).__name__}" if got_shape is None else f"shape {got_shape} and dtype {got_dtype}"
            raise ValueError(
                f"{where}[{i}], layer {i}'s feedback matrix for {name}, must have shape {shape} "
                f"({what}) and dtype {jnp.dtype(dtype).name}, the forward weights' dtype; got {got}"
            )
