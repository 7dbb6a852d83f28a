"""Loss functions, each with its derivative with respect to the network's output.

A loss is a small immutable value (a frozen dataclass). ``loss(out, t)`` is
the loss of each example: ``out`` has shape (..., n) and the result has shape
``out.shape[:-1]`` (a scalar for one example). ``dloss(out, t)`` is the
gradient of that per-example loss with respect to ``out``, the ``dx_n`` that
starts the backprop recursion. ``check_target(out_shape, t)`` raises a clear
error, from static shapes, when a target cannot go with such an output.

For 16-bit outputs (bfloat16, float16) every loss computes in float32: the
loss comes back in float32, ``dloss`` is cast back to the output's dtype.

A classification loss also says which predictions are right
(``correct(out, t)``, for the accuracy of :func:`jaxnn.evaluate`) and which
integer labels it takes (``label_rule(outs)``, for the value checks).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["BinaryCrossEntropyLoss", "CrossEntropyLoss", "Loss", "MSELoss"]


def _is_integer(t) -> bool:
    return jnp.issubdtype(jnp.result_type(t), jnp.integer)


def _wide(out) -> jax.Array:
    """``out`` in float32 if it is a 16-bit float, where sums of many terms lose too much; else as is."""
    out = jnp.asarray(out)
    if jnp.issubdtype(out.dtype, jnp.floating) and out.dtype.itemsize < 4:
        return out.astype(jnp.float32)
    return out


@dataclasses.dataclass(frozen=True)
class Loss:
    """Base class: a per-example loss and its gradient with respect to the output."""

    def loss(self, out: ArrayLike, t: ArrayLike) -> jax.Array:
        """Loss of each example, shape ``out.shape[:-1]``."""
        raise NotImplementedError

    def dloss(self, out: ArrayLike, t: ArrayLike) -> jax.Array:
        """Gradient of :meth:`loss` with respect to ``out``, shape ``out.shape``."""
        raise NotImplementedError

    def check_target(self, out_shape: tuple[int, ...], t: ArrayLike) -> None:
        """Raise ValueError if ``t`` cannot be a target for an output of ``out_shape``."""
        if jnp.shape(t) != tuple(out_shape):
            raise ValueError(
                f"{type(self).__name__} expects a target of shape {tuple(out_shape)} "
                f"(the network's output), got shape {jnp.shape(t)}"
            )

    def correct(self, out: ArrayLike, t: ArrayLike) -> jax.Array | None:
        """Whether each example's prediction is right, shape ``out.shape[:-1]``; None for regression."""
        return None

    def label_rule(self, outs: int) -> tuple[int, str] | None:
        """Which integer labels this loss takes for a network with ``outs`` outputs.

        Returns ``(classes, wording)``: labels lie in ``[0, classes)``, and
        ``wording`` says why in an error message; None if it takes no labels.
        """
        return None

    def target_range(self) -> tuple[float, float] | None:
        """The interval float targets must lie in (probabilities), or None for any finite value."""
        return None

    def __call__(self, out: ArrayLike, t: ArrayLike) -> jax.Array:
        return self.loss(out, t)


@dataclasses.dataclass(frozen=True)
class MSELoss(Loss):
    """Mean squared error over the output's entries.

    ``L = mean((out - t)^2)``, ``dL/dout = 2 (out - t) / n`` with ``n`` the
    output width, as in the article.

    >>> float(MSELoss().loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0])))
    5.0
    """

    def loss(self, out, t):
        out = _wide(out)
        return jnp.mean((out - jnp.asarray(t).astype(out.dtype)) ** 2, axis=-1)

    def dloss(self, out, t):
        out = jnp.asarray(out)
        wide = _wide(out)
        return (2 * (wide - jnp.asarray(t).astype(wide.dtype)) / out.shape[-1]).astype(out.dtype)

    def check_target(self, out_shape, t):
        if _is_integer(t) and jnp.shape(t) == tuple(out_shape[:-1]):
            raise ValueError(
                f"MSELoss needs targets of the output's shape {tuple(out_shape)}, got "
                f"integer class labels of shape {jnp.shape(t)}; give one-hot targets "
                "(jax.nn.one_hot) or use CrossEntropyLoss"
            )
        super().check_target(out_shape, t)


@dataclasses.dataclass(frozen=True)
class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits, computed stably through log-softmax.

    ``t`` is either integer class labels of shape ``out.shape[:-1]`` or
    probabilities (e.g. one-hot) of shape ``out.shape``.
    ``L = -sum(t * log_softmax(out))`` and ``dL/dout = softmax(out) sum(t) - t``,
    which is ``softmax(out) - onehot(t)`` for labels and for targets summing to 1.

    >>> round(float(CrossEntropyLoss().loss(jnp.zeros(4), 2)), 6)
    1.386294
    """

    def _probabilities(self, out, t):
        if _is_integer(t):
            return jax.nn.one_hot(t, out.shape[-1], dtype=out.dtype)
        return jnp.asarray(t, dtype=out.dtype)

    def loss(self, out, t):
        out = _wide(out)
        logp = jax.nn.log_softmax(out, axis=-1)
        if _is_integer(t):
            t = jnp.asarray(t)
            return -jnp.take_along_axis(logp, t[..., None], axis=-1)[..., 0]
        return -jnp.sum(jnp.asarray(t).astype(out.dtype) * logp, axis=-1)

    def dloss(self, out, t):
        out = jnp.asarray(out)
        wide = _wide(out)
        p = self._probabilities(wide, t)
        s = jax.nn.softmax(wide, axis=-1)
        return (s * jnp.sum(p, axis=-1, keepdims=True) - p).astype(out.dtype)

    def check_target(self, out_shape, t):
        if _is_integer(t):
            if jnp.shape(t) != tuple(out_shape[:-1]):
                raise ValueError(
                    f"CrossEntropyLoss expects integer labels of shape {tuple(out_shape[:-1])} "
                    f"for an output of shape {tuple(out_shape)}, got shape {jnp.shape(t)}"
                )
            return
        if jnp.shape(t) != tuple(out_shape):
            raise ValueError(
                f"CrossEntropyLoss expects integer labels of shape {tuple(out_shape[:-1])} "
                f"or probabilities of shape {tuple(out_shape)}, got {jnp.result_type(t)} "
                f"targets of shape {jnp.shape(t)}"
            )

    def correct(self, out, t):
        """The largest output is the label (or the largest target probability)."""
        labels = t if _is_integer(t) else jnp.argmax(t, axis=-1)
        return jnp.argmax(out, axis=-1) == labels

    def label_rule(self, outs):
        return outs, f"for a network with {outs} outputs"

    def target_range(self):
        return 0.0, float("inf")  # unnormalised weights are allowed: dloss scales softmax by sum(t)


@dataclasses.dataclass(frozen=True)
class BinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy on one logit ``z``, the output of a network with a single output.

    Two classes with one output, as a sigmoid output unit with log loss (scikit-learn's
    ``MLPClassifier``, Keras' ``binary_crossentropy``), computed from the logit so that
    no ``sigmoid`` is ever rounded to 0 or 1. Give the last layer ``Identity()``.

    ``t`` is either integer labels 0 or 1 of shape ``out.shape[:-1]`` or the probability
    of class 1 of shape ``out.shape`` (a last axis of 1). With ``softplus(z) = log(1 + e^z)``::

        L      = (1 - t) softplus(z) + t softplus(-z)      # = -t log s - (1 - t) log(1 - s), s = sigmoid(z)
        dL/dz  = (1 - t) sigmoid(z) - t sigmoid(-z)         # = sigmoid(z) - t

    Both are written in this form, rather than ``softplus(z) - t z`` and
    ``sigmoid(z) - t``, so that a confidently right logit keeps its tiny loss
    and gradient (``z = 40, t = 1``: ``4.2e-18``, not 0); any ``|z|`` is finite.

    >>> round(float(BinaryCrossEntropyLoss().loss(jnp.zeros(1), 1)), 6)  # log 2
    0.693147
    """

    def _probability(self, out, t):
        """The target probability of class 1, shaped like ``out`` (..., 1)."""
        t = jnp.asarray(t)
        return (t[..., None] if _is_integer(t) else t).astype(out.dtype)

    def loss(self, out, t):
        out = _wide(out)
        p = self._probability(out, t)
        return ((1 - p) * jax.nn.softplus(out) + p * jax.nn.softplus(-out))[..., 0]

    def dloss(self, out, t):
        out = jnp.asarray(out)
        wide = _wide(out)
        p = self._probability(wide, t)
        return ((1 - p) * jax.nn.sigmoid(wide) - p * jax.nn.sigmoid(-wide)).astype(out.dtype)

    def check_target(self, out_shape, t):
        out_shape = tuple(out_shape)
        if out_shape[-1] != 1:
            raise ValueError(
                f"BinaryCrossEntropyLoss needs a network with 1 output (the logit of class 1), got an "
                f"output of shape {out_shape}; for {out_shape[-1]} classes use CrossEntropyLoss"
            )
        if _is_integer(t) and jnp.shape(t) == out_shape[:-1]:
            return
        if not _is_integer(t) and jnp.shape(t) == out_shape:
            return
        raise ValueError(
            f"BinaryCrossEntropyLoss expects integer labels 0 or 1 of shape {out_shape[:-1]} or "
            f"probabilities of class 1 of shape {out_shape}, got {jnp.result_type(t)} targets of "
            f"shape {jnp.shape(t)}"
            + ("; add the last axis (t[..., None])" if jnp.shape(t) == out_shape[:-1] else "")
        )

    def correct(self, out, t):
        """The logit's sign is the label (or the likelier class of the target: ``t > 0.5``)."""
        labels = t == 1 if _is_integer(t) else jnp.asarray(t)[..., 0] > 0.5
        return (jnp.asarray(out)[..., 0] > 0) == labels

    def label_rule(self, outs):
        return 2, "for BinaryCrossEntropyLoss, whose labels are 0 or 1"

    def target_range(self):
        return 0.0, 1.0
