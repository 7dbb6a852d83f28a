"""Direct feedback alignment: the output error sent straight to every hidden layer (Nøkland 2016)."""

from __future__ import annotations

import dataclasses
import math

import jax

from jaxnn._checks import prng_key
from jaxnn.backprop import Direct
from jaxnn.rules._source import GradientSource
from jaxnn.rules._transport import backprop_with, check_matrices

__all__ = ["DirectFeedbackAlignment"]


def _check_hidden(net, where: str) -> None:
    if len(net.layers) < 2:
        raise ValueError(
            f"{where}: DirectFeedbackAlignment needs at least one hidden layer, but this network has one "
            f"layer, whose error is the output error itself; add a hidden layer, or use "
            f"jaxnn.rules.Backprop(), which is what DFA would be on one layer"
        )


@dataclasses.dataclass(frozen=True)
class DirectFeedbackAlignment(GradientSource):
    """Direct feedback alignment: every hidden layer gets the output error through a fixed matrix.

    With ``e = db`` of the output layer (``f'(y) * dL/dx`` there), hidden
    layer ``i`` gets ``db_i = f_i'(y_i) * (B_i e)`` in place of backprop's
    error from the layer above, then ``dW_i = db_i x_i^T`` as usual. No hidden
    error depends on another's, so no error is carried layer by layer, and the
    hidden weights may even start at zero. The output layer's updates are
    backprop's; the loss returned is the true loss.

    State: ``{i: B_i}`` for every hidden layer ``i = 0, ..., n - 2``, ``B_i``
    of shape (outs_i, outs_last), mapping the output error to layer ``i``'s
    units, in the parameters' dtype. With one hidden layer and
    ``B_0 = W_1^T`` the updates are backprop's.

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 5, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> rule = jaxnn.rules.DirectFeedbackAlignment()
    >>> state = rule.init(jax.random.key(1), net, params)
    >>> {i: B.shape for i, B in state.items()}
    {0: (5, 2), 1: (4, 2)}
    """

    def init(self, key: jax.Array, net, params) -> dict[int, jax.Array]:
        """``{i: B_i}`` for the hidden layers, each of shape (outs_i, outs_last).

        Entries are normal with variance ``1 / outs_last`` (LeCun normal on
        ``B_i``'s own fan-in), so each hidden unit's error has about the
        output error's scale per unit, whatever the widths.

        Raises:
            ValueError: for a network without hidden layers.
        """
        _check_hidden(net, "DirectFeedbackAlignment.init")
        prng_key("DirectFeedbackAlignment.init key", key)
        keys = jax.random.split(key, len(params) - 1)
        outs_last = params[-1][0].shape[0]
        return {
            i: jax.random.normal(keys[i], (W.shape[0], outs_last), W.dtype) * (1 / math.sqrt(outs_last))
            for i, (W, _) in enumerate(params[:-1])
        }

    def check_state(self, net, params, state, where: str) -> None:
        """Raise a ValueError or TypeError naming the layer, the shape and dtype it needs."""
        _check_hidden(net, where)
        outs_last = params[-1][0].shape[0]
        expected = {i: (W.shape[0], outs_last) for i, (W, _) in enumerate(params[:-1])}
        check_matrices(self, state, expected, params[0][0].dtype, where, "(outs_i, outs_last)")

    def transport_matrices(self, net, params, state) -> dict[int, jax.Array]:
        """``{n - 1: B_{n-2}}``: the last hidden layer's matrix stands where ``W_{n-1}^T`` would.

        The other ``B_i`` stand in for a product of several layers'
        transposes and derivatives, so they have no ``W^T`` to compare with.
        """
        n = len(params)
        return {n - 1: state[n - 2]}

    def value_and_grad(self, net, params, state, x, t):
        """``(loss, updates, state)``: hidden layers get ``B_i e``; ``state`` unchanged."""
        self.check_state(net, params, state, "state")
        loss, grads = backprop_with(net, params, x, t, Direct([state[i] for i in range(len(params) - 1)]))
        return loss, grads, state
