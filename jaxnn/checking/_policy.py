"""The numerical policy of gradient checking: finite-difference step, tolerances, comparison."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import as_array, dtype_like, non_negative_number, real_number
from jaxnn.checking._report import Comparison, Tolerances

__all__ = ["FD_SAFETY", "FD_STEP", "compare", "tolerances_for"]

_EPS64 = float(np.finfo(np.float64).eps)
#: Finite-difference step factor: ``h = eps64^(1/3) * max(1, |p|)``.
FD_STEP = _EPS64 ** (1 / 3)
#: Safety factor on the finite-difference error estimate ``eps64^(2/3)``.
FD_SAFETY = 100.0


def compare(test, ref, scale_floor, tol, atol=0.0, mask=None) -> Comparison:
    """Compare ``test`` with ``ref`` (as float64 NumPy arrays of one shape).

    ``error = max |test - ref| / scale`` with ``scale = max(max |test|, max |ref|,
    scale_floor, atol / tol)``; ``ok`` is ``error <= tol``. ``mask`` (bool, the
    same shape) selects the entries that count; the others are ``skipped``.
    """
    test = np.asarray(as_array("test", test), dtype=np.float64)
    ref = np.asarray(as_array("ref", ref), dtype=np.float64)
    if test.shape != ref.shape:
        raise ValueError(f"compare needs test and ref of one shape, got {test.shape} and {ref.shape}")
    for name, value in (("scale_floor", scale_floor), ("atol", atol)):
        non_negative_number(name, value)
        real_number(name, value)
    real_number("tol", tol)
    if not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    skipped = 0
    if mask is not None:
        if not isinstance(mask, (np.ndarray, jax.Array)) or mask.dtype != np.bool_:
            raise TypeError(f"mask must be a bool array (or None), got {type(mask).__name__} {getattr(mask, 'dtype', '')}")
        mask = np.asarray(mask)
        if mask.shape != test.shape:
            raise ValueError(f"mask must have the shape of test and ref {test.shape}, got {mask.shape}")
        skipped = int(mask.size - mask.sum())
        test, ref = np.where(mask, test, 0.0), np.where(mask, ref, 0.0)
    diff = np.abs(test - ref)
    size = np.maximum(np.abs(test), np.abs(ref))
    rel = np.divide(diff, size, out=np.zeros_like(diff), where=size > 0)
    max_abs = float(diff.max()) if diff.size else 0.0
    # An absolute allowance atol acts as a floor on the scale, so that ok is exactly error <= tol.
    scale = max(float(size.max()) if size.size else 0.0, scale_floor, atol / tol)
    error = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape)) if diff.size else ()
    ok = bool(max_abs <= tol * scale)
    return Comparison(max_abs, float(rel.max()) if rel.size else 0.0, worst, error, tol, ok,
                      int(diff.size) - skipped, skipped)


def tolerances_for(dtype, loss: float = 1.0) -> Tolerances:
    """The tolerances :func:`check_gradients` uses for gradients in ``dtype``.

    Args:
        dtype: the parameters' float dtype.
        loss: the loss value; finite differences lose ``eps64 |L| / h`` to rounding.
    """
    dtype = dtype_like("dtype", dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a float dtype (float32, float64, bfloat16, float16), got {dtype.name}")
    real_number("loss", loss)
    eps = float(jnp.finfo(dtype).eps)
    same = eps**0.5
    fd = max(same, FD_SAFETY * _EPS64 ** (2 / 3))
    fd_atol = FD_SAFETY * _EPS64 ** (2 / 3) * max(1.0, abs(loss))
    why = (
        f"hand-written vs jax.grad: both in {jnp.dtype(dtype).name}, so they differ by rounding "
        f"only; tol = sqrt(eps) = {same:.1e} of each row's largest entry, far above rounding "
        f"(~10 eps = {10 * eps:.0e}) and far below a wrong derivative (error ~1). "
        f"Finite differences: central, in float64, step h = eps64^(1/3) max(1, |p|), which "
        f"balances truncation (h^2 |L'''| / 6) against rounding (eps64 |L| / h) and leaves an "
        f"error near eps64^(2/3) = {_EPS64 ** (2 / 3):.1e}; tol = max(sqrt(eps), "
        f"{FD_SAFETY:g} eps64^(2/3)) = {fd:.1e} of the row's largest entry, or "
        f"{FD_SAFETY:g} eps64^(2/3) max(1, |L|) = {fd_atol:.1e} absolute if that is larger."
    )
    return Tolerances(jnp.dtype(dtype).name, same, fd, fd_atol, FD_STEP, why)
