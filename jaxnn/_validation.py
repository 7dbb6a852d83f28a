"""Input checks shared by every public function, so each message is written once.

Shape and type checks read only static information (``jnp.shape``, dtypes,
Python types), so they also run while ``jax.jit`` traces. Checks of values
(labels in range, finite numbers) need concrete data; they live in
:func:`check_data` and run only on arrays that are not being traced.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "as_array",
    "as_dtype",
    "check_activations",
    "check_key",
    "check_labels",
    "check_nonempty",
    "check_opt_state",
    "choice",
    "flag",
    "check_like_params",
    "check_network",
    "file_path",
    "float_dtype",
    "real_number",
    "require_target",
    "check_params",
    "as_input",
    "as_target",
    "check_batch",
    "check_data",
    "check_finite_params",
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


def _is_traced(*arrays) -> bool:
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
    if not _is_traced(value):
        try:
            float(value)
        except OverflowError:  # a Python int beyond float's range
            raise ValueError(f"{name} is too large for a float: {value!r}"[:200]) from None
    if finite and not _is_traced(value) and not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def non_negative_number(name: str, value) -> None:
    """Raise TypeError unless ``value`` is a real number, ValueError if a concrete one is negative or NaN."""
    real_number(name, value, finite=False)
    if not _is_traced(value) and not float(value) >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def check_key(key, where: str = "key", *, optional: bool = False) -> None:
    """Raise TypeError unless ``key`` is a PRNG key: ``jax.random.key(0)`` or a raw ``PRNGKey``.

    With ``optional``, None is accepted too.
    """
    if key is None and optional:
        return
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        return  # a raw jax.random.PRNGKey
    given = f"{type(key).__name__} {key!r}" if _is_int(key) or key is None else type(key).__name__
    if isinstance(key, (jax.Array, np.ndarray)):
        given += f" of dtype {key.dtype} and shape {key.shape}"
    raise TypeError(
        f"{where} must be a PRNG key such as jax.random.key(0)"
        + (" (or None)" if optional else "")
        + f", got {given}; use jax.random.key(seed), e.g. jax.random.key(0)"
    )


def as_dtype(dtype, where: str = "dtype") -> np.dtype:
    """``dtype`` (a dtype, a scalar type or its name) as a NumPy dtype, or a TypeError naming ``where``."""
    import warnings

    if isinstance(dtype, (jax.Array, np.ndarray, np.generic)):  # an array, not its dtype
        raise TypeError(f"{where} must be a float dtype such as jnp.float32, got an array; pass its .dtype")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # NumPy only warns of some names it will refuse ('a')
            return jnp.dtype(dtype)
    except (TypeError, ValueError, Warning):
        raise TypeError(f"{where} must be a float dtype such as jnp.float32, got {dtype!r}"[:200]) from None


def float_dtype(dtype, where: str = "dtype") -> np.dtype:
    """``dtype`` as a floating NumPy dtype (None: JAX's default float), or a clear error.

    Raises:
        TypeError: if ``dtype`` is not a dtype at all.
        ValueError: for a non-float dtype, or float64 while ``jax_enable_x64`` is off
            (JAX would warn and silently use float32).
    """
    if dtype is None:
        return jnp.dtype(jnp.result_type(float))
    dt = as_dtype(dtype, where)
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


def check_activations(activations, n: int) -> tuple:
    """One activation per layer, from one activation or a sequence of ``n`` of them."""
    from jaxnn.activations import Activation  # activations.py imports this module

    if isinstance(activations, Activation):
        return (activations,) * n
    if isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence):
        raise TypeError(
            f"activations must be a jaxnn Activation (e.g. jaxnn.ReLU()) or a sequence of {n} of them, "
            f"got {type(activations).__name__} {activations!r}"[:300]
        )
    if len(activations) != n:
        raise ValueError(f"{n} layers need {n} activations, got {len(activations)}")
    return tuple(activations)


def file_path(path, where: str = "path", *, must_exist: bool = True) -> str:
    """``path`` as a str; with ``must_exist``, a clear error unless it names an existing file.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: it does not exist.
        IsADirectoryError: it is a folder.
    """
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where} must be a str or os.PathLike, got {type(path).__name__} {path!r}"[:200])
    target = os.fspath(path)
    if not isinstance(target, str):
        raise TypeError(f"{where} must name a file as text, got {type(target).__name__}")
    if must_exist and os.path.isdir(target):
        raise IsADirectoryError(f"{where} {target!r} is a folder, not a file")
    if must_exist and not os.path.exists(target):
        raise FileNotFoundError(f"{where} {target!r} does not exist")
    return target


def require_target(t, where: str) -> None:
    """Raise TypeError if the targets ``t`` are missing (None)."""
    if t is None:
        raise TypeError(f"{where} needs targets t (an array), got None")


def check_network(net, where: str = "net") -> None:
    """Raise TypeError unless ``net`` is a :class:`jaxnn.Network`."""
    from jaxnn.network import Network  # network.py imports this module

    if not isinstance(net, Network):
        raise TypeError(
            f"{where} must be a jaxnn.Network (e.g. jaxnn.Network.from_sizes((2, 3, 1), "
            f"jaxnn.Tanh(), jaxnn.MSELoss())), got {type(net).__name__}"
        )


def _check_leaf(name: str, i: int, which: str, a) -> None:
    """Raise TypeError unless ``a``, ``name[i]``'s ``which``, is a real floating array."""
    where = f"{name}[{i}][{'Wb'.index(which)}] ({which} of layer {i})"
    if not isinstance(a, (jax.Array, np.ndarray, np.generic)):
        raise TypeError(
            f"{where} must be an array, got {type(a).__name__}"
            + ("; a missing parameter? start from net.init(key)" if a is None else "")
        )
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(
            f"{where} must be a floating array (float32, float64, bfloat16, float16), got dtype "
            f"{a.dtype}; make parameters with net.init(key) or cast them with .astype(jnp.float32)"
        )


def check_params(layers: Sequence, params, name: str = "params") -> None:
    """Raise if ``params`` (called ``name``) do not have the structure, shapes and dtypes ``layers`` need."""
    prefix = "" if name == "params" else f"{name}: "
    if not isinstance(params, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of (W, b) tuples, one per layer (as net.init returns), "
            f"got {type(params).__name__}"
        )
    if len(params) != len(layers):
        raise ValueError(f"{name} hold {len(params)} layers but the network has {len(layers)}")
    for i, (layer, p) in enumerate(zip(layers, params)):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise TypeError(f"{name}[{i}] must be a (W, b) pair, got {type(p).__name__}")
        W, b = p
        _check_leaf(name, i, "W", W)
        _check_leaf(name, i, "b", b)
        if jnp.shape(W) != (layer.outs, layer.ins):
            raise ValueError(
                f"{prefix}layer {i}: W must have shape (outs, ins) = {(layer.outs, layer.ins)}, "
                f"got {jnp.shape(W)}"
            )
        if jnp.shape(b) != (layer.outs,):
            raise ValueError(
                f"{prefix}layer {i}: b must have shape (outs,) = {(layer.outs,)}, got {jnp.shape(b)}"
            )


def check_like_params(layers: Sequence, params, v, name: str = "v") -> list:
    """``v`` checked to be shaped like ``params`` and cast to their dtypes, in ``params``' containers."""
    check_params(layers, v, name)
    leaves = [jnp.asarray(a, jnp.result_type(p)) for a, p in zip(jax.tree.leaves(v), jax.tree.leaves(params))]
    return jax.tree.unflatten(jax.tree.structure(params), leaves)


def as_array(name: str, value, *, labels_ok: bool = False) -> jax.Array:
    """``value`` (an array, a NumPy array or nested lists) as an array of real numbers.

    Raises:
        TypeError: for None, strings, objects, complex or boolean values; the
            message says what to pass instead.
        ValueError: for ragged nested lists.
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
    return jnp.asarray(value)


def as_input(layers: Sequence, params, x: ArrayLike) -> jax.Array:
    """``x`` checked against the first layer and cast to the parameters' dtype."""
    check_params(layers, params)
    x = as_array("x", x)
    shape, ins = jnp.shape(x), layers[0].ins
    if len(shape) not in (1, 2):
        raise ValueError(
            f"x must have shape ({ins},) for one example or (batch, {ins}) for a batch, got "
            f"{shape}; for more batch axes use jax.vmap"
        )
    if shape[-1] != ins:
        raise ValueError(f"x has last dimension {shape[-1]} but layer 0 expects {ins} inputs (x shape {shape})")
    return jnp.asarray(x, dtype=jnp.result_type(params[0][0]))


def as_target(layers: Sequence, loss_fn, x: jax.Array, t: ArrayLike, check_values: bool = True) -> jax.Array:
    """``t`` checked against the loss and the network's output; float targets take ``x``'s dtype.

    With ``check_values``, concrete integer class labels are also checked to
    lie in ``[0, outputs)``; traced ones cannot be (see :func:`check_data`).
    """
    t = as_array("t", t, labels_ok=True)
    out_shape = x.shape[:-1] + (layers[-1].outs,)
    loss_fn.check_target(out_shape, t)
    if check_values and jnp.issubdtype(t.dtype, jnp.integer) and t.shape == out_shape[:-1] and not _is_traced(t):
        check_labels(t, layers[-1].outs, "t")
    if jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(x.dtype)
    return t


def check_nonempty(x: jax.Array, where: str) -> None:
    """Raise unless the batch ``x`` holds at least one example (a shape check: it runs under ``jax.jit``)."""
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(f"{where}: x holds no examples (shape {x.shape}); pass at least one")


def check_opt_state(optimizer, params, opt_state, where: str = "opt_state") -> None:
    """Raise unless ``opt_state`` has the structure and leaf shapes of ``optimizer.init(params)``.

    Only structure and shapes are compared (``jax.eval_shape``), so it also
    runs while ``jax.jit`` traces; dtypes may differ (a loaded count may be
    int32 where a fresh one is int64).

    Raises:
        TypeError: a different structure (another optimizer's state, a
            missing part) or a leaf that is not an array.
        ValueError: a leaf of another shape; the message names its key path.
    """
    fix = "make it with optimizer.init(params) for this optimizer and these parameters"
    try:
        expected = jax.eval_shape(optimizer.init, params)
    except Exception:  # an init that cannot be traced: nothing to compare with
        return
    # an iterator (a generator) is a leaf here, refused below, rather than JAX's deprecation warning
    given_leaves, given_def = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=lambda v: isinstance(v, Iterator))
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(expected)
    if given_def != want_def:
        given_paths = [jax.tree_util.keystr(k) for k, _ in given_leaves]
        want_paths = [jax.tree_util.keystr(k) for k, _ in want_leaves]
        missing = [p for p in want_paths if p not in given_paths]
        detail = f"the leaf {where}{missing[0]} is missing" if missing else "its structure differs"
        raise TypeError(
            f"{where} does not fit the optimizer and params: {detail} (expected the structure of "
            f"optimizer.init(params), {str(want_def)[:160]}, got {type(opt_state).__name__} "
            f"{str(given_def)[:160]}); {fix}"
        )
    for (path, leaf), (_, want) in zip(given_leaves, want_leaves):
        name = f"{where}{jax.tree_util.keystr(path)}"
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, numbers.Number)) or isinstance(leaf, complex):
            raise TypeError(f"{name} must be an array, got {type(leaf).__name__}; {fix}")
        if jnp.shape(leaf) != want.shape:
            raise ValueError(f"{name} has shape {jnp.shape(leaf)} but the optimizer expects {want.shape}; {fix}")


def check_batch(layers: Sequence, x: jax.Array, where: str) -> None:
    """Raise unless ``x`` is a batch (batch, ins)."""
    if x.ndim != 2:
        raise ValueError(f"{where} needs a batch x of shape (batch, {layers[0].ins}), got shape {x.shape}")


def check_labels(t: jax.Array, classes: int, where: str) -> None:
    """Raise unless the concrete integer labels ``t`` lie in ``[0, classes)``."""
    # NumPy on the host: inside a jax.jit trace, jnp on closed-over arrays would give tracers.
    flat = np.asarray(t).ravel()
    if flat.size == 0:
        return
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= classes:
        bad = int(np.argmax((flat < 0) | (flat >= classes)))
        raise ValueError(
            f"{where} holds class labels outside [0, {classes}) for a network with {classes} "
            f"outputs: min {low}, max {high}, first bad label {int(flat[bad])} at row {bad}"
        )


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
    if _is_traced(params):
        return
    if _on_host(params):
        params_ok = _host_summaries(params, np.zeros((0,)), np.zeros((0,), np.int32))[0]
    else:
        params_ok = jax.device_get(_params_summary(list(map(tuple, params))))
    _raise_non_finite_params(params, params_ok)


def check_data(net, params, x: jax.Array, t: jax.Array | None, where: str) -> None:
    """Check what only the values reveal.

    At least one example; finite parameters, inputs and float targets; class
    labels in ``[0, outputs)``; no negative probability targets for
    :class:`jaxnn.CrossEntropyLoss`.

    Runs on concrete arrays only (with NumPy for arrays in CPU memory, else two
    compiled reductions read back once);
    under ``jax.jit`` it does nothing, since values are unknown while tracing.
    There an out-of-range label gives a garbage or NaN loss silently, and NaN
    inputs give NaN outputs.
    """
    check_nonempty(x, where)
    if _is_traced(params, x, t):
        return
    t_arr = jnp.zeros((0,), jnp.int32) if t is None else t
    if _on_host(params, x, t_arr):  # NumPy reads CPU buffers in place, several times faster than XLA's reductions
        summaries = _host_summaries(params, x, t_arr)
    else:
        summaries = (_params_summary(list(map(tuple, params))), _data_summary(x, t_arr))
        if _is_traced(summaries):  # inside a caller's jax.jit, on arrays it closed over: read them on the host
            summaries = _host_summaries(params, x, t_arr)
    params_ok, (x_ok, t_ok, low, high) = jax.device_get(summaries)
    _raise_non_finite_params(params, params_ok)
    if not x_ok:
        raise ValueError(
            f"{where}: x holds a non-finite value (NaN or inf) at index {_first_bad(x)}; "
            f"remove or impute those examples first"
        )
    if t is None or t.size == 0:
        return
    if jnp.issubdtype(t.dtype, jnp.integer):
        classes = net.layers[-1].outs
        if t.shape == x.shape[:-1] and (low < 0 or high >= classes):
            check_labels(t, classes, f"{where}: t")  # reads the labels only to name the first bad one
        return
    if not t_ok:
        raise ValueError(f"{where}: t holds a non-finite value (NaN or inf) at index {_first_bad(t)}")
    from jaxnn.losses import CrossEntropyLoss  # losses.py is imported by network.py, after this module

    if isinstance(net.loss_fn, CrossEntropyLoss) and low < 0:
        t_host = np.asarray(t, np.float64)
        raise ValueError(
            f"{where}: CrossEntropyLoss targets are probabilities, but t holds a negative value "
            f"{float(t_host.min())} at index {tuple(int(i) for i in np.argwhere(t_host < 0)[0])}"
        )
