"""Evaluation on held-out data: the mean loss and, for classification, the accuracy, in batches."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn._types import Params
from jaxnn._checks import check_data, check_nonempty, flag, positive_int, require_target
from jaxnn.network import Network, check_batch, check_network

__all__ = ["counts_correct", "evaluate"]


@functools.partial(jax.jit, static_argnames=("net", "batch"))
def _sums(net, params, x, t, batch):
    """Sums over examples of the loss and of correct predictions, ``batch`` rows at a time.

    The count is 0 for a loss with no notion of a correct prediction (``correct`` gives None).
    """

    def sums(xb, tb):
        out = net.forward(params, xb)
        loss = jnp.sum(net.loss_fn.loss(out, tb))
        right = net.loss_fn.correct(out, tb)
        if right is None:
            return loss, jnp.zeros((), loss.dtype)
        return loss, jnp.sum(right).astype(loss.dtype)

    n = x.shape[0]
    full = n // batch
    # At least float32: 16-bit losses are float32, and 16-bit counts stop at 256.
    loss = correct = jnp.zeros((), jnp.promote_types(jnp.result_type(params[0][0]), jnp.float32))
    if full:
        xs = x[: full * batch].reshape((full, batch) + x.shape[1:])
        ts = t[: full * batch].reshape((full, batch) + t.shape[1:])

        def body(carry, b):
            l, c = sums(*b)
            return (carry[0] + l, carry[1] + c), None

        (loss, correct), _ = jax.lax.scan(body, (loss, correct), (xs, ts))
    if n % batch:
        l, c = sums(x[full * batch :], t[full * batch :])
        loss, correct = loss + l, correct + c
    return loss, correct


def evaluate(
    net: Network, params: Params, x: ArrayLike, t: ArrayLike, *, batch_size: int = 4096, check: bool = True
) -> dict[str, float]:
    """The mean loss over ``(x, t)`` and, for a classification loss, the accuracy.

    Jitted, and computed ``batch_size`` examples at a time, so a large set
    never forms one giant array of activations.

    Args:
        net, params: the network and its parameters.
        x: inputs (n, ins), n >= 1.
        t: targets as for ``net.loss``.
        batch_size: the most examples evaluated at once (the data are cut
            into equal batches of at most this many).
        check: check the values of the data first (finite numbers, labels
            in range; see :func:`jaxnn.fit`). ``False`` skips it: an
            out-of-range label then gives a garbage loss or NaN silently.

    Returns:
        ``{"loss": mean loss}``, plus ``"accuracy"``, the fraction of
        examples the loss's ``correct`` counts as right, for a loss that has
        one: for cross-entropy the largest output is the label (or the
        largest target probability), for binary cross-entropy the logit is
        positive exactly for label 1 (or a target above 0.5). Plain floats.

    >>> import jax, jax.numpy as jnp, jaxnn
    >>> net = jaxnn.Network.from_sizes((2, 2), jaxnn.Identity(), jaxnn.CrossEntropyLoss())
    >>> params = [(jnp.eye(2), jnp.zeros(2))]
    >>> x, t = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0])
    >>> jaxnn.evaluate(net, params, x, t)["accuracy"]
    0.5
    """
    check_network("net", net)
    batch_size = positive_int("batch_size", batch_size)
    check = flag("check", check)
    require_target("evaluate", t)
    x, t = net.check_inputs(params, x, t, check_labels=False)  # check_data does, naming where
    check_batch("evaluate", x, net.layers)
    check_nonempty("evaluate", x)
    if check:
        check_data(net, params, x, t, "evaluate")
    n = x.shape[0]
    parts = -(-n // batch_size)
    loss, correct = _sums(net, params, x, t, -(-n // parts))  # equal batches: one compiled shape, little left over
    loss, correct = np.asarray(jax.device_get((loss, correct)), np.float64)
    result = {"loss": float(loss / n)}
    if counts_correct(net, x, t):
        result["accuracy"] = float(correct / n)
    return result


def counts_correct(net: Network, x: jax.Array, t: jax.Array) -> bool:
    """Whether the loss says which predictions on ``(x, t)`` are right (a classification loss)."""
    out = jax.ShapeDtypeStruct(x.shape[:-1] + (net.layers[-1].outs,), x.dtype)
    return jax.eval_shape(net.loss_fn.correct, out, t) is not None  # shapes only: nothing is computed
