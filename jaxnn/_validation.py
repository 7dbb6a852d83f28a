"""Input checks shared by every public function, so each message is written once.

Shape and type checks read only static information (``jnp.shape``, dtypes,
Python types), so they also run while ``jax.jit`` traces. Checks of values
(labels in range, finite numbers) need concrete data; they live in
:func:`check_data` and run only on arrays that are not being traced.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "check_network",
    "check_params",
    "as_input",
    "as_target",
    "check_batch",
    "check_data",
    "positive_int",
    "non_negative_int",
    "non_negative_number",
]


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value) -> int:
    """``value`` as an int, or a ValueError naming ``name`` if it is not an int >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def non_negative_int(name: str, value) -> int:
    """``value`` as an int, or a ValueError naming ``name`` if it is not an int >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def non_negative_number(name: str, value) -> None:
    """Raise if a concrete ``value`` is negative or NaN (traced values pass unchecked)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, numbers.Real) and not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def check_network(net, where: str = "net") -> None:
    """Raise TypeError unless ``net`` is a :class:`jaxnn.Network`."""
    from jaxnn.network import Network  # network.py imports this module

    if not isinstance(net, Network):
        raise TypeError(
            f"{where} must be a jaxnn.Network (e.g. jaxnn.Network.from_sizes((2, 3, 1), "
            f"jaxnn.Tanh(), jaxnn.MSELoss())), got {type(net).__name__}"
        )


def check_params(layers: Sequence, params) -> None:
    """Raise if ``params`` do not have the structure and shapes ``layers`` need."""
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list of (W, b) tuples, got {type(params).__name__}")
    if len(params) != len(layers):
        raise ValueError(f"params hold {len(params)} layers but the network has {len(layers)}")
    for i, (layer, p) in enumerate(zip(layers, params)):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise TypeError(f"params[{i}] must be a (W, b) pair, got {type(p).__name__}")
        W, b = p
        if jnp.shape(W) != (layer.outs, layer.ins):
            raise ValueError(
                f"layer {i}: W must have shape (outs, ins) = {(layer.outs, layer.ins)}, "
                f"got {jnp.shape(W)}"
            )
        if jnp.shape(b) != (layer.outs,):
            raise ValueError(f"layer {i}: b must have shape (outs,) = {(layer.outs,)}, got {jnp.shape(b)}")


def as_input(layers: Sequence, params, x: ArrayLike) -> jax.Array:
    """``x`` checked against the first layer and cast to the parameters' dtype."""
    check_params(layers, params)
    shape, ins = jnp.shape(x), layers[0].ins
    if len(shape) not in (1, 2):
        raise ValueError(
            f"x must have shape ({ins},) for one example or (batch, {ins}) for a batch, got "
            f"{shape}; for more batch axes use jax.vmap"
        )
    if shape[-1] != ins:
        raise ValueError(f"x has last dimension {shape[-1]} but layer 0 expects {ins} inputs (x shape {shape})")
    return jnp.asarray(x, dtype=jnp.result_type(params[0][0]))


def as_target(layers: Sequence, loss_fn, x: jax.Array, t: ArrayLike) -> jax.Array:
    """``t`` checked against the loss and the network's output; float targets take ``x``'s dtype."""
    loss_fn.check_target(x.shape[:-1] + (layers[-1].outs,), t)
    t = jnp.asarray(t)
    if jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(x.dtype)
    return t


def check_batch(layers: Sequence, x: jax.Array, where: str) -> None:
    """Raise unless ``x`` is a batch (batch, ins)."""
    if x.ndim != 2:
        raise ValueError(f"{where} needs a batch x of shape (batch, {layers[0].ins}), got shape {x.shape}")


def _is_traced(*arrays) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(arrays))


def _first_bad(a) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(~np.isfinite(np.asarray(a)))[0])


def _finite(a) -> jax.Array:
    return jnp.all(jnp.isfinite(a)) if jnp.issubdtype(a.dtype, jnp.inexact) else jnp.bool_(True)


@jax.jit
def _params_summary(params):
    """Whether each parameter is finite, in one compiled call."""
    return [[_finite(W), _finite(b)] for W, b in params]


@jax.jit
def _data_summary(x, t):
    """Whether ``x`` and ``t`` are finite and ``t``'s range, in one compiled call.

    Separate from the parameters: in a multi-process run the data are global
    arrays over every process's devices while the parameters may still sit on
    one local device, and one compiled call cannot take both.
    """
    low = jnp.min(t) if t.size and jnp.issubdtype(t.dtype, jnp.integer) else jnp.int32(0)
    high = jnp.max(t) if t.size and jnp.issubdtype(t.dtype, jnp.integer) else jnp.int32(0)
    return _finite(x), _finite(t), low, high


def check_data(net, params, x: jax.Array, t: jax.Array | None, where: str) -> None:
    """Check what only the values reveal: examples present, finite numbers, labels in range.

    Runs on concrete arrays only (two compiled reductions, read back once);
    under ``jax.jit`` it does nothing, since values are unknown while tracing.
    """
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(f"{where}: x holds no examples (shape {x.shape}); pass at least one")
    if _is_traced(params, x, t):
        return
    t_arr = jnp.zeros((0,), jnp.int32) if t is None else t
    params_ok, (x_ok, t_ok, low, high) = jax.device_get(
        (_params_summary(list(map(tuple, params))), _data_summary(x, t_arr))
    )
    for i, (W, b) in enumerate(params):
        for name, a, ok in (("W", W, params_ok[i][0]), ("b", b, params_ok[i][1])):
            if not ok:
                raise ValueError(
                    f"params[{i}] ({name} of layer {i}) holds a non-finite value (NaN or inf) at index "
                    f"{_first_bad(a)}; start from finite parameters, e.g. net.init(key)"
                )
    if not x_ok:
        raise ValueError(
            f"{where}: x holds a non-finite value (NaN or inf) at index {_first_bad(x)}; "
            f"remove or impute those examples first"
        )
    if t is None:
        return
    if jnp.issubdtype(t.dtype, jnp.integer):
        classes = net.layers[-1].outs
        if low < 0 or high >= classes:
            labels = np.asarray(t).ravel()
            bad = int(np.argmax((labels < 0) | (labels >= classes)))
            raise ValueError(
                f"{where}: t holds class labels outside [0, {classes}) for a network with {classes} "
                f"outputs: min {int(low)}, max {int(high)}, first bad label {int(labels[bad])} at row {bad}"
            )
    elif not t_ok:
        raise ValueError(f"{where}: t holds a non-finite value (NaN or inf) at index {_first_bad(t)}")
