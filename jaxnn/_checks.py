"""Checks of single values, shared by every public function so that each message is written once.

One convention: ``check(name, value, ...)`` returns ``value`` (converted
where that is the point, as in :func:`as_array`) or raises a ``ValueError``
or ``TypeError`` that names ``name``, says what was expected and what was
given. This module imports nothing else of jaxnn, so every module may use
it; checks that know the model live with it (:mod:`jaxnn.network`), those of
an optimizer's state with the training state, and a loss's value rules on
the loss (read here through its ``label_rule`` and ``target_range``).

Shape and type checks read only static information (``jnp.shape``, dtypes,
Python types), so they also run while ``jax.jit`` traces. Checks of values
(labels in range, finite numbers) need concrete data; they live in
:func:`check_data` and run only on arrays that are not being traced.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_array",
    "check_data",
    "check_finite_params",
    "check_labels",
    "check_nonempty",
    "choice",
    "dtype_like",
    "file_path",
    "fits_jax_int",
    "flag",
    "float_dtype",
    "is_traced",
    "non_negative_int",
    "non_negative_number",
    "positive_int",
    "prng_key",
    "real_number",
    "require_target",
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


def flag(name: str, value) -> bool:
    """``value`` as a bool, or a TypeError naming ``name`` unless it is ``True`` or ``False``.

    An array or a string in place of a flag is a mistake, not a truth value.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}"[:200])
    return bool(value)


def choice(name: str, value, options: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``options``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in options:
        given = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
        raise ValueError(f"{name} must be one of {tuple(options)}, got {given}"[:300])
    return value


def is_traced(*arrays) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(arrays))


def real_number(name: str, value, *, finite: bool = True):
    """``value`` if it is a real number (Python, NumPy, or a 0-d real JAX array), else TypeError.

    A concrete NaN or infinity is a ValueError when ``finite``; traced values
    pass unchecked.
    """
    is_array = isinstance(value, (jax.Array, np.ndarray, np.generic))
    real_array = is_array and value.ndim == 0 and (
        jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)
    )
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Real) or real_array):
        shown = f"{type(value).__name__} {value!r}"[:80]
        raise TypeError(f"{name} must be a real number such as 0.1, got {shown}")
    if not is_traced(value):
        try:
            float(value)
        except OverflowError:  # a Python int beyond float's range
            raise ValueError(f"{name} is too large for a float: {value!r}"[:200]) from None
    if finite and not is_traced(value) and not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def non_negative_number(name: str, value):
    """``value``; TypeError unless it is a real number, ValueError if a concrete one is negative or NaN."""
    real_number(name, value, finite=False)
    if not is_traced(value) and not float(value) >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return value


def prng_key(where: str, key, *, optional: bool = False):
    """``key``, or a TypeError unless it is a PRNG key: ``jax.random.key(0)`` or a raw ``PRNGKey``.

    With ``optional``, None is accepted too.
    """
    if key is None and optional:
        return key
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return key
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        return key  # a raw jax.random.PRNGKey
    given = f"{type(key).__name__} {key!r}" if _is_int(key) or key is None else type(key).__name__
    if isinstance(key, (jax.Array, np.ndarray)):
        given += f" of dtype {key.dtype} and shape {key.shape}"
    raise TypeError(
        f"{where} must be a PRNG key such as jax.random.key(0)"
        + (" (or None)" if optional else "")
        + f", got {given}; use jax.random.key(seed), e.g. jax.random.key(0)"
    )


def dtype_like(where: str, dtype) -> np.dtype:
    """``dtype`` (a dtype, a scalar type or its name) as a NumPy dtype, or a TypeError naming ``where``."""
    if isinstance(dtype, (jax.Array, np.ndarray, np.generic)):  # an array, not its dtype
        raise TypeError(f"{where} must be a float dtype such as jnp.float32, got an array; pass its .dtype")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # NumPy only warns of some names it will refuse ('a')
            return jnp.dtype(dtype)
    except (TypeError, ValueError, SyntaxError, Warning):  # NumPy parses some strings as Python (',')
        raise TypeError(f"{where} must be a float dtype such as jnp.float32, got {dtype!r}"[:200]) from None


def float_dtype(where: str, dtype) -> np.dtype:
    """``dtype`` as a floating NumPy dtype (None: JAX's default float), or a clear error.

    Raises:
        TypeError: if ``dtype`` is not a dtype at all.
        ValueError: for a non-float dtype, or float64 while ``jax_enable_x64`` is off
            (JAX would warn and silently use float32).
    """
    if dtype is None:
        return jnp.dtype(jnp.result_type(float))
    dt = dtype_like(where, dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(
            f"{where} must be a float dtype (float32, float64, bfloat16, float16), got {dt.name}"
        )
    if dt.itemsize == 8 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{where} {dt.name} needs 64-bit JAX, which is off (JAX would silently use float32); "
            f'enable it first with jax.config.update("jax_enable_x64", True), or use float32'
        )
    return dt


def file_path(where: str, path, *, must_exist: bool = True) -> str:
    """``path`` as a str; with ``must_exist``, a clear error unless it names an existing file.

    The one place a path is told from a folder: with ``must_exist=False``
    a folder is still refused, since a file is what will be written there.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: it does not exist.
        IsADirectoryError: it is a folder.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where} must be a str or os.PathLike, got {type(path).__name__} {path!r}"[:200])
    target = os.fspath(path)
    if not isinstance(target, str):
        raise TypeError(f"{where} must name a file as text, got {type(target).__name__}")
    if os.path.isdir(target):
        raise IsADirectoryError(f"{where} {target!r} is a folder, not a file; name a file in it")
    if must_exist and not os.path.exists(target):
        raise FileNotFoundError(f"{where} {target!r} does not exist")
    return target


def require_target(where: str, t):
    """``t``, or a TypeError if the targets are missing (None)."""
    if t is None:
        raise TypeError(f"{where} needs targets t (an array), got None")
    return t


def _position(index: int, shape: tuple[int, ...]) -> str:
    """Where flat ``index`` lies in an array of ``shape``: ``row 5``, ``index (5, 1)``."""
    if len(shape) == 1:
        return f"row {index}"
    return f"index {tuple(int(i) for i in np.unravel_index(index, shape))}"


def fits_jax_int(name: str, value):
    """``value`` (a NumPy integer array or scalar), unless JAX would narrow its dtype and a value does not fit.

    With 64-bit JAX off, JAX stores int64 as int32 and uint64 as uint32 and
    wraps what does not fit (a label 2**32 becomes 0). The values are read as
    given, before any cast, so the message shows the true one. Costs one
    pass over the array, and only for the dtypes JAX would narrow.

    Raises:
        ValueError: naming ``name``, the first value that does not fit, where
            it is, and the dtype JAX would use.
    """
    dtype = np.dtype(value.dtype)
    if dtype.kind not in "iu":
        return value
    target = np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    a = np.asarray(value)
    if target == dtype or a.size == 0:
        return value
    info = np.iinfo(target)
    if a.min() >= info.min and a.max() <= info.max:
        return value
    flat = a.ravel()
    bad = int(np.argmax((flat < info.min) | (flat > info.max)))
    where = f" at {_position(bad, a.shape)}" if a.ndim else ""
    raise ValueError(
        f"{name} holds {int(flat[bad])}{where}, which does not fit {target.name} (64-bit JAX is off, so JAX "
        f"stores {dtype.name} as {target.name} and would wrap it to {int(flat[bad].astype(target))}); correct "
        f'the value, or enable 64-bit JAX first with jax.config.update("jax_enable_x64", True)'
    )


def as_array(name: str, value, *, labels_ok: bool = False) -> jax.Array:
    """``value`` (an array, a NumPy array or nested lists) as an array of real numbers.

    Integers are checked as given, before JAX casts them: with 64-bit JAX off
    an int64 value beyond int32's range is refused (:func:`fits_jax_int`)
    rather than wrapped.

    Raises:
        TypeError: for None, strings, objects, complex or boolean values; the
            message says what to pass instead.
        ValueError: for ragged nested lists, and integers JAX cannot hold.
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if not isinstance(value, (jax.Array, np.ndarray, np.generic)):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError):
            raise ValueError(
                f"{name} must be a rectangular array of numbers, got nested sequences of unequal lengths"
            ) from None
    dtype = np.dtype(value.dtype) if not isinstance(value, jax.Array) else value.dtype
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {dtype}; pass its real part (jnp.real) or abs value")
    if dtype == np.bool_:
        fix = "give integer labels (t.astype(int)) or float targets" if labels_ok else f"cast it, e.g. {name}.astype(float)"
        raise TypeError(f"{name} must hold numbers, got dtype bool; {fix}")
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise TypeError(f"{name} must be an array of numbers, got dtype {dtype} ({type(value).__name__})")
    if isinstance(value, jax.Array):
        return value
    fits_jax_int(name, value)
    return jnp.asarray(value)


def check_nonempty(where: str, x):
    """``x``, unless the batch holds no example (a shape check: it runs under ``jax.jit``)."""
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(f"{where}: x holds no examples (shape {x.shape}); pass at least one")
    return x


def check_labels(where: str, t, classes: int, wording: str):
    """``t``, unless its concrete integer labels fall outside ``[0, classes)``; ``wording`` says why."""
    # NumPy on the host: inside a jax.jit trace, jnp on closed-over arrays would give tracers.
    flat = np.asarray(t).ravel()
    if flat.size == 0:
        return t
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= classes:
        bad = int(np.argmax((flat < 0) | (flat >= classes)))
        raise ValueError(
            f"{where} holds class labels outside [0, {classes}) {wording}: "
            f"min {low}, max {high}, first bad label {int(flat[bad])} at row {bad}"
        )
    return t


def _first_bad(a) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(~np.isfinite(np.asarray(a, np.float64)))[0])


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
    low = jnp.min(t) if t.size else jnp.zeros((), t.dtype)
    high = jnp.max(t) if t.size else jnp.zeros((), t.dtype)
    return _finite(x), _finite(t), low, high


def _host_summaries(params, x, t):
    """What the two compiled summaries give, computed with NumPy (no tracers inside a trace)."""

    def finite(a):
        a = np.asarray(a)
        if not jnp.issubdtype(a.dtype, jnp.inexact):
            return True
        try:
            return bool(np.isfinite(a).all())
        except TypeError:  # a dtype without NumPy's isfinite loop
            return bool(np.isfinite(a.astype(np.float32)).all())

    t_host = np.asarray(t)
    low = t_host.min() if t_host.size else np.zeros((), t_host.dtype)
    high = t_host.max() if t_host.size else np.zeros((), t_host.dtype)
    return [[finite(W), finite(b)] for W, b in params], (finite(x), finite(t_host), low, high)


def _on_host(*trees) -> bool:
    """Whether every array is NumPy's or a JAX array held whole in this process's CPU memory."""
    for a in jax.tree.leaves(trees):
        if isinstance(a, jax.Array):
            if not a.is_fully_addressable or any(d.platform != "cpu" for d in a.devices()):
                return False
        elif not isinstance(a, np.ndarray):
            return False
    return True


def _raise_non_finite_params(params, params_ok) -> None:
    for i, (W, b) in enumerate(params):
        for name, a, ok in (("W", W, params_ok[i][0]), ("b", b, params_ok[i][1])):
            if not ok:
                raise ValueError(
                    f"params[{i}] ({name} of layer {i}) holds a non-finite value (NaN or inf) at index "
                    f"{_first_bad(a)}; start from finite parameters, e.g. net.init(key)"
                )


def check_finite_params(params) -> None:
    """Raise a ValueError naming the layer unless every concrete parameter is finite (the part of
    :func:`check_data` that reads only the parameters)."""
    if is_traced(params):
        return
    if _on_host(params):
        params_ok = _host_summaries(params, np.zeros((0,)), np.zeros((0,), np.int32))[0]
    else:
        params_ok = jax.device_get(_params_summary(list(map(tuple, params))))
    _raise_non_finite_params(params, params_ok)


def check_data(net, params, x: jax.Array, t: jax.Array | None, where: str, names: tuple[str, str] = ("x", "t")) -> None:
    """Check what only the values reveal.

    At least one example; finite parameters, inputs and float targets; class
    labels in the loss's range (``[0, outputs)`` for cross-entropy, 0 or 1 for
    binary cross-entropy); float targets in the loss's ``target_range``
    (probabilities: not negative for cross-entropy, in [0, 1] for binary).

    Runs on concrete arrays only (with NumPy for arrays in CPU memory, else two
    compiled reductions read back once);
    under ``jax.jit`` it does nothing, since values are unknown while tracing.
    There an out-of-range label gives a garbage or NaN loss silently, and NaN
    inputs give NaN outputs. ``names`` are what messages call ``x`` and ``t``.
    """
    check_nonempty(where, x)
    if is_traced(params, x, t):
        return
    t_arr = jnp.zeros((0,), jnp.int32) if t is None else t
    if _on_host(params, x, t_arr):  # NumPy reads CPU buffers in place, several times faster than XLA's reductions
        summaries = _host_summaries(params, x, t_arr)
    else:
        summaries = (_params_summary(list(map(tuple, params))), _data_summary(x, t_arr))
        if is_traced(summaries):  # inside a caller's jax.jit, on arrays it closed over: read them on the host
            summaries = _host_summaries(params, x, t_arr)
    params_ok, (x_ok, t_ok, low, high) = jax.device_get(summaries)
    _raise_non_finite_params(params, params_ok)
    if not x_ok:
        raise ValueError(
            f"{where}: {names[0]} holds a non-finite value (NaN or inf) at index {_first_bad(x)}; "
            f"remove or impute those examples first"
        )
    if t is None or t.size == 0:
        return
    if jnp.issubdtype(t.dtype, jnp.integer):
        rule = net.loss_fn.label_rule(net.layers[-1].outs)
        if rule is not None and t.shape == x.shape[:-1] and (low < 0 or high >= rule[0]):
            check_labels(f"{where}: {names[1]}", t, *rule)  # reads the labels only to name the first bad one
        return
    if not t_ok:
        raise ValueError(f"{where}: {names[1]} holds a non-finite value (NaN or inf) at index {_first_bad(t)}")
    bounds = net.loss_fn.target_range()
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        t_host = np.asarray(t, np.float64)
        index = tuple(int(i) for i in np.argwhere((t_host < bounds[0]) | (t_host > bounds[1]))[0])
        value = float(t_host[index])
        what = "a negative value" if bounds[0] == 0 and value < 0 else f"a value outside [{bounds[0]:g}, {bounds[1]:g}],"
        raise ValueError(
            f"{where}: {type(net.loss_fn).__name__} targets are probabilities, but {names[1]} holds {what} {value} at index {index}"
        )
