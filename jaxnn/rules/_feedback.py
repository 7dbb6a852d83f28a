"""Rules that carry the error back through other matrices than ``W^T``: FA, sign symmetry, Kolen-Pollack.

Backprop's line ``dx = W_i^T db`` needs the forward weights on the way back
("weight transport"). These rules keep the rest of the recursion and replace
that line:

* :class:`FeedbackAlignment` (Lillicrap et al. 2016): ``dx = B_i db`` with
  ``B_i`` fixed and random;
* :class:`SignSymmetry` (Liao, Leibo and Poggio 2016): ``dx = sign(W_i)^T db``;
* :class:`KolenPollack` (Kolen and Pollack 1994; Akrout et al. 2019): ``B_i``
  receives the transpose of ``W_i``'s update, and both decay, so ``B_i``
  converges to ``W_i^T``. It keeps ``B_i^T``, in ``W_i``'s layout, so that
  its update is elementwise.

The last layer's updates are backprop's in every rule: only what reaches the
earlier layers differs. The loss returned is the true loss.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxnn._checks import prng_key, real_number
from jaxnn.rules._source import GradientSource
from jaxnn.rules._transport import backprop_with, check_matrices

__all__ = ["FeedbackAlignment", "KolenPollack", "SignSymmetry"]


def _draw_like_weights(where: str, key: jax.Array, params) -> dict[int, jax.Array]:
    """``{i: F_i}`` for layers ``i = 1, ..., n - 1``, shaped like ``W_i``, LeCun normal (variance ``1 / ins``)."""
    prng_key(where, key)
    keys = jax.random.split(key, len(params))
    return {
        i: jax.random.normal(keys[i], W.shape, W.dtype) * (1 / math.sqrt(W.shape[1]))
        for i, (W, _) in enumerate(params) if i > 0
    }


@dataclasses.dataclass(frozen=True)
class FeedbackAlignment(GradientSource):
    """Feedback alignment: fixed random matrices carry the error back (Lillicrap et al. 2016).

    Per layer, last to first: ``db = f'(y) * dx``, ``dW = db x^T``, and
    ``dx = B_i db`` in place of ``W_i^T db``. The forward weights come to
    align with the fixed ``B_i`` (the angle between the updates and the
    gradient falls under 90 degrees as training goes; see
    :func:`jaxnn.rules.alignment`).

    State: ``{i: B_i}`` for layers ``i = 1, ..., n - 1``, ``B_i`` of shape
    (ins_i, outs_i) like ``W_i^T``, in the parameters' dtype; drawn by
    :meth:`init` (LeCun normal, transposed). Layer 0 has none (no error is
    sent to the input). With ``B_i = W_i^T`` the updates are backprop's.

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 5, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> rule = jaxnn.rules.FeedbackAlignment()
    >>> state = rule.init(jax.random.key(1), net, params)
    >>> {i: B.shape for i, B in state.items()}
    {1: (5, 2)}
    >>> loss, updates, state = rule.value_and_grad(net, params, state, jnp.ones(3), jnp.zeros(2))
    """

    def init(self, key: jax.Array, net, params) -> dict[int, jax.Array]:
        """``{i: B_i}`` for layers ``i = 1, ..., n - 1``, ``B_i`` shaped like ``W_i^T``: (ins, outs).

        ``B_i`` is drawn as the forward weights are by default (LeCun normal:
        variance ``1 / ins`` of layer ``i``), then transposed: at the start it
        is a matrix ``W_i^T`` could have been, so the transported error has
        backprop's scale layer after layer. Layer 0 has none: no error is sent
        to the input. Replace any entry to set your own (same shape and dtype).
        """
        return {i: F.T for i, F in _draw_like_weights(f"{type(self).__name__}.init key", key, params).items()}

    def check_state(self, net, params, state, where: str) -> None:
        """Raise a ValueError or TypeError naming the layer, the shape and dtype it needs."""
        expected = {i: W.T.shape for i, (W, _) in enumerate(params) if i > 0}
        check_matrices(self, state, expected, params[0][0].dtype, where, "shaped like W_i^T: (ins, outs)")

    def transport_matrices(self, net, params, state) -> dict[int, jax.Array]:
        """``{layer i: the matrix used in place of W_i^T}``."""
        return dict(state)

    def value_and_grad(self, net, params, state, x, t):
        """``(loss, updates, state)``: the recursion with ``dx = B_i db``; ``state`` unchanged."""
        self.check_state(net, params, state, "state")
        transport = [None] + [state[i] for i in range(1, len(params))]
        loss, grads = backprop_with(net, params, x, t, transport)
        return loss, grads, state


@dataclasses.dataclass(frozen=True)
class SignSymmetry(GradientSource):
    """Sign symmetry: the error goes back through ``sign(W)^T`` (Liao, Leibo and Poggio 2016).

    ``dx = sign(W_i)^T db`` in place of ``W_i^T db``, from the current
    weights: only the signs are transported, so the rule keeps no state
    (``()``). The entries of ``sign(W)`` are ``±1`` (``0`` where ``W`` is 0),
    far larger than the weights', so the hidden errors grow by about
    ``sqrt(ins)`` times the weights' typical size per layer compared with
    backprop's; a scale-free optimizer such as ``optax.adam`` takes that in
    its stride (Liao et al. use batch normalisation and "batch manhattan").

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 5, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> loss, updates, state = jaxnn.rules.SignSymmetry().value_and_grad(
    ...     net, params, (), jnp.ones(3), jnp.zeros(2))
    >>> state
    ()
    """

    def check_state(self, net, params, state, where: str) -> None:
        """Raise a TypeError unless ``state`` is ``()``: the signs come from the weights themselves."""
        if not (isinstance(state, tuple) and len(state) == 0):
            raise TypeError(
                f"{where} must be () for SignSymmetry, which keeps no state (it uses sign(W)^T of the "
                f"current weights), got {type(state).__name__}; make it with SignSymmetry().init(key, net, params)"
            )

    def transport_matrices(self, net, params, state) -> dict[int, jax.Array]:
        """``{layer i: sign(W_i)^T}`` for layers ``i = 1, ..., n - 1``."""
        return {i: jnp.sign(W).T for i, (W, _) in enumerate(params) if i > 0}

    def value_and_grad(self, net, params, state, x, t):
        """``(loss, updates, ())``: the recursion with ``dx = sign(W_i)^T db``."""
        self.check_state(net, params, state, "state")
        transport = [None] + [jnp.sign(W).T for W, _ in params[1:]]
        loss, grads = backprop_with(net, params, x, t, transport)
        return loss, grads, state


@dataclasses.dataclass(frozen=True)
class KolenPollack(GradientSource):
    """Kolen-Pollack: the feedback matrices learn ``W^T`` from the weights' own updates.

    The updates are feedback alignment's (``dx = B_i db``). Then, once the
    optimizer has turned them into the step ``U_i`` for ``W_i``
    (:meth:`after_update`), both matrices take the same step and decay::

        W_i   <- W_i   + U_i - decay * W_i
        B_i^T <- B_i^T + U_i - decay * B_i^T

    so ``W_i - B_i^T`` shrinks by ``(1 - decay)`` every step, whatever the
    updates, and ``B_i`` converges to ``W_i^T`` (Kolen and Pollack 1994;
    Akrout et al. 2019, "Deep learning without weight transport").

    What the optimizer sees: only the rule's updates for the forward
    parameters, ``(dW_i, db_i)`` from ``value_and_grad``, exactly as it sees
    gradients. ``B_i`` never passes through it (Adam keeps no moments for
    ``B_i``), and the decay is added after it, to the step it returns (as in
    ``optax.adamw``, decoupled: it does not enter Adam's moments). Biases do
    not decay.

    Args:
        decay: the weight decay per step, ``0 <= decay < 1``, on every layer's
            ``W`` and on every ``B``.

    State: ``{i: B_i^T}`` for ``i = 1, ..., n - 1``, each **in W_i's layout,
    shape (outs_i, ins_i)**, the transpose of what :class:`FeedbackAlignment`
    keeps (``KolenPollack().init(key, ...)[i]`` is
    ``FeedbackAlignment().init(key, ...)[i].T``: the same random draw). So
    :meth:`after_update` adds ``U_i`` to it entry by entry, a contiguous pass
    like the one that updates ``W_i``, and ``state[i] - W_i`` is the whole
    difference from backprop; with ``state[i] = W_i`` the updates are
    backprop's. :meth:`transport_matrices` gives the ``B_i`` themselves.

    Raises:
        TypeError, ValueError: a ``decay`` that is not a number in ``[0, 1)``.

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 5, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> state = jaxnn.rules.KolenPollack().init(jax.random.key(1), net, params)
    >>> {i: F.shape for i, F in state.items()}, params[1][0].shape
    ({1: (2, 5)}, (2, 5))
    """

    decay: float = 1e-3

    def __post_init__(self):
        real_number("KolenPollack decay", self.decay)
        if not 0 <= self.decay < 1:
            raise ValueError(f"KolenPollack decay must be in [0, 1), got {self.decay!r}")

    def init(self, key: jax.Array, net, params) -> dict[int, jax.Array]:
        """``{i: B_i^T}`` for layers ``i = 1, ..., n - 1``, shaped like ``W_i``: (outs, ins), LeCun normal."""
        return _draw_like_weights("KolenPollack.init key", key, params)

    def check_state(self, net, params, state, where: str) -> None:
        """Raise a ValueError or TypeError naming the layer, the shape and dtype it needs."""
        expected = {i: W.shape for i, (W, _) in enumerate(params) if i > 0}
        check_matrices(self, state, expected, params[0][0].dtype, where,
                       "KolenPollack keeps B_i^T, in W_i's layout: (outs, ins)")

    def transport_matrices(self, net, params, state) -> dict[int, jax.Array]:
        """``{layer i: B_i}``, the matrix used in place of ``W_i^T`` (the transpose of ``state[i]``)."""
        return {i: F.T for i, F in state.items()}

    def value_and_grad(self, net, params, state, x, t):
        """``(loss, updates, state)``: the recursion with ``dx = B_i db``; ``state`` unchanged."""
        self.check_state(net, params, state, "state")
        transport = [None] + [state[i].T for i in range(1, len(params))]
        loss, grads = backprop_with(net, params, x, t, transport)
        return loss, grads, state

    def after_update(self, net, params, state, updates):
        """``(updates with -decay W_i added, {i: B_i^T + U_i - decay B_i^T})`` for the optimizer's ``U``.

        Both are elementwise in ``W``'s layout: no transposed read.
        """
        self.check_state(net, params, state, "state")
        structure = jax.tree.structure(updates)
        decayed = [(U - self.decay * W, u) for (U, u), (W, _) in zip(updates, params)]
        new_state = {i: F + (updates[i][0] - self.decay * F) for i, F in state.items()}
        return jax.tree.unflatten(structure, jax.tree.leaves(decayed)), new_state
