"""Gradient checking: hand-written backprop vs ``jax.grad`` vs finite differences, layer by layer.

:func:`check_gradients` compares three gradients of the loss for every
layer's ``W`` and ``b`` separately:

* the hand-written recursion (``net.backprop``, or any ``backprop`` you pass),
* ``jax.grad(net.loss)``, in the parameters' own dtype,
* central finite differences, always in float64, with a step per entry.

It also checks each building block on its own (every layer's activation
``backward`` against ``jax.vjp`` of its ``f``, the loss's ``dloss`` against
``jax.grad`` of its ``loss``) and that the jitted and plain hand-written
gradients agree. The result is a :class:`GradientReport` that prints as a
table, says which tolerances it used and why, gives a verdict per row and
overall (``report.ok``), and names the layer where a wrong gradient enters.

Finite differences across a kink (ReLU at 0) say nothing about the
derivative there, so entries whose step moves a pre-activation across a kink
of its activation are counted and left out of the finite-difference verdict;
hand-written and automatic gradients are still compared exactly there.
An activation declares its kinks with a class attribute, e.g.
``kinks = (0.0,)``; ``ReLU`` and ``LeakyReLU`` are known to have one at 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import textwrap
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxnn.activations import Activation, LeakyReLU, ReLU
from jaxnn.backprop import forward_trace
from jaxnn.network import Network
from jaxnn.typing import Grads, Params

__all__ = [
    "Comparison",
    "ComponentCheck",
    "GradientCheckError",
    "GradientReport",
    "GradientRow",
    "Tolerances",
    "check_gradients",
]

_EPS64 = float(np.finfo(np.float64).eps)
#: Finite-difference step factor: ``h = eps64^(1/3) * max(1, |p|)``.
FD_STEP = _EPS64 ** (1 / 3)
#: Safety factor on the finite-difference error estimate ``eps64^(2/3)``.
FD_SAFETY = 100.0
_PARAM_NAMES = ("W", "b")


class GradientCheckError(AssertionError):
    """Raised by :meth:`GradientReport.raise_if_failed`; the message is the whole report."""


class Tolerances(NamedTuple):
    """The tolerances a report used, and why.

    An error is ``max |a - b|`` over a row divided by the row's scale: its
    largest entry ``max(|a|, |b|)``, but at least ``sqrt(eps) *`` the largest
    gradient entry of the whole network (so rows that are pure rounding noise
    do not fail). A row passes when that scaled error is at most ``same``
    (hand-written vs autodiff) or ``fd`` (anything vs finite differences;
    there the scale is at least ``fd_atol / fd``, since rounding in the
    differences is absolute, about ``eps64 |L| / h``).
    """

    dtype: str
    same: float
    fd: float
    fd_atol: float
    fd_step: float
    why: str


class Comparison(NamedTuple):
    """One gradient compared with a reference over one parameter (or one building block).

    Attributes:
        max_abs: ``max |a - b|``.
        max_rel: ``max |a - b| / max(|a|, |b|)`` entry by entry (0 where both are 0).
        worst: index of the entry with the largest absolute error.
        error: ``max_abs`` divided by the row's scale; compared with ``tol``.
        tol: the tolerance on ``error``.
        ok: whether ``error <= tol``.
        checked: how many entries were compared.
        skipped: entries left out (finite differences across a kink).
    """

    max_abs: float
    max_rel: float
    worst: tuple[int, ...]
    error: float
    tol: float
    ok: bool
    checked: int
    skipped: int = 0


class GradientRow(NamedTuple):
    """The checks of one parameter: ``layer``'s ``W`` or ``b``."""

    layer: int
    param: str
    shape: tuple[int, ...]
    manual_vs_autodiff: Comparison
    manual_vs_fd: Comparison | None
    autodiff_vs_fd: Comparison | None

    @property
    def ok(self) -> bool:
        return all(c is None or c.ok for c in self[3:])


class ComponentCheck(NamedTuple):
    """A building block checked on its own: a layer's activation or the loss."""

    name: str
    layer: int | None
    comparison: Comparison

    @property
    def ok(self) -> bool:
        return self.comparison.ok


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """What :func:`check_gradients` found; ``print(report)`` shows it as a table.

    Attributes:
        rows: one :class:`GradientRow` per layer and parameter, ``W`` then ``b``.
        components: each layer's activation and the loss, checked on their own.
        jit: the hand-written gradients under ``jax.jit`` vs called plainly
            (``None`` when not asked for).
        tolerances: the :class:`Tolerances` used.
        loss: the loss at ``params``.
        batch: the batch size, or ``None`` for one example.
        diagnosis: where a wrong gradient enters, in words.
    """

    rows: tuple[GradientRow, ...]
    components: tuple[ComponentCheck, ...]
    jit: Comparison | None
    tolerances: Tolerances
    loss: float
    batch: int | None
    diagnosis: str

    @property
    def ok(self) -> bool:
        """True when every row, every building block and the jit check pass."""
        return all(r.ok for r in self.rows) and all(c.ok for c in self.components) and (
            self.jit is None or self.jit.ok
        )

    @property
    def failures(self) -> tuple[GradientRow, ...]:
        """The rows that fail."""
        return tuple(r for r in self.rows if not r.ok)

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` with the whole report if anything fails."""
        if not self.ok:
            raise GradientCheckError("gradient check failed\n" + str(self))

    def __str__(self) -> str:
        return _format(self)


# --- numbers -----------------------------------------------------------------


def _compare(test, ref, scale_floor, tol, atol=0.0, mask=None) -> Comparison:
    """Compare two arrays (as float64 NumPy); ``mask`` selects the entries that count."""
    test = np.asarray(test, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    skipped = 0
    if mask is not None:
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


# --- finite differences --------------------------------------------------------


def _kinks(activation: Activation) -> tuple[float, ...]:
    kinks = getattr(activation, "kinks", None)
    if kinks is not None:
        return tuple(float(k) for k in kinks)
    if isinstance(activation, (ReLU, LeakyReLU)):
        return (0.0,)
    return ()


def _float64():
    """A context in which float64 arrays exist: x64 switched on for its duration if it is off."""
    if jax.config.jax_enable_x64:
        return contextlib.nullcontext()
    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        enable = getattr(getattr(jax, "experimental", None), "enable_x64", None)
    if enable is None:
        raise RuntimeError(
            "finite differences need float64, but jax_enable_x64 is off and this JAX has no "
            "enable_x64 context; call jax.config.update('jax_enable_x64', True) at start-up "
            "or pass fd_entries=0 to skip finite differences"
        )
    return enable(True)


def _finite_differences(net: Network, params, x, t, entries):
    """Central differences of the mean loss at the flat indices ``entries`` of ``ravel_pytree(params)``.

    Returns ``(fd, crossed)``: the derivative estimates, and whether the step
    moved any pre-activation across a kink of its layer's activation.
    """
    kinks = [_kinks(layer.activation) for layer in net.layers]
    flat, unravel = ravel_pytree(params)

    def loss_and_ys(v):
        xs, ys = forward_trace(net.layers, unravel(v), x)
        return jnp.mean(net.loss_fn.loss(xs[-1], t)), ys

    def one_entry(j):
        value = flat[j]
        h = FD_STEP * jnp.maximum(1.0, jnp.abs(value))
        up, down = value + h, value - h
        (lu, ysu), (ld, ysd) = loss_and_ys(flat.at[j].set(up)), loss_and_ys(flat.at[j].set(down))
        crossed = jnp.zeros((), bool)
        for ya, yb, layer_kinks in zip(ysu, ysd, kinks):
            for kink in layer_kinks:
                crossed = crossed | jnp.any(((ya - kink) * (yb - kink) <= 0) & (ya != yb))
        # Divide by the step actually taken, up - down, which is exact in float64.
        return (lu - ld) / (up - down), crossed

    return jax.lax.map(one_entry, entries, batch_size=min(64, entries.shape[0]))


def _choose_entries(size, must, max_entries, rng):
    """Up to ``max_entries`` flat indices: all if the parameter is small, else ``must`` plus random others."""
    if size <= max_entries:
        return np.arange(size)
    chosen = list(dict.fromkeys(int(m) for m in must))[:max_entries]
    rest = np.setdiff1d(np.arange(size), chosen)
    chosen += list(rng.choice(rest, size=max_entries - len(chosen), replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))


# --- the check -------------------------------------------------------------------


def _check_grads_structure(net: Network, grads, source: str) -> None:
    if not isinstance(grads, (list, tuple)) or len(grads) != len(net.layers):
        raise ValueError(
            f"{source} must return one (dW, db) pair per layer ({len(net.layers)}), got {type(grads).__name__}"
            + (f" of length {len(grads)}" if isinstance(grads, (list, tuple)) else "")
        )
    for i, (layer, g) in enumerate(zip(net.layers, grads)):
        expected = ((layer.outs, layer.ins), (layer.outs,))
        if not isinstance(g, (list, tuple)) or len(g) != 2:
            raise ValueError(f"{source}: layer {i} must give a (dW, db) pair, got {type(g).__name__}")
        for name, arr, shape in zip(_PARAM_NAMES, g, expected):
            if jnp.shape(arr) != shape:
                raise ValueError(
                    f"{source}: layer {i} d{name} must have the shape of {name}, {shape}, got {jnp.shape(arr)}"
                )


def check_gradients(
    net: Network,
    params: Params,
    x: ArrayLike,
    t: ArrayLike,
    *,
    backprop: Callable[[Params, jax.Array, jax.Array], Grads] | None = None,
    fd_entries: int = 256,
    compare_jit: bool = True,
    seed: int = 0,
) -> GradientReport:
    """Check hand-written gradients against ``jax.grad`` and finite differences, layer by layer.

    For each layer ``i`` and each of ``W``, ``b``: the hand-written gradient
    ``g_bp``, ``g_ad = jax.grad(net.loss)`` and central finite differences
    ``g_fd[j] = (L(p + h e_j) - L(p - h e_j)) / 2h`` in float64 with
    ``h = eps64^(1/3) max(1, |p_j|)``; each pair is compared as
    ``max |a - b| <= tol * max(|a|, |b|)`` over the row (see
    :class:`Tolerances`).

    Args:
        net: the network.
        params: its parameters, any float dtype.
        x: one example (ins,) or a batch (batch, ins).
        t: the target(s), as for ``net.loss``.
        backprop: the hand-written gradient to check, ``(params, x, t) -> grads``
            shaped like ``params``; default ``net.backprop``. It is also run
            under ``jax.jit`` and compared with the plain call.
        fd_entries: finite differences on at most this many entries per
            parameter (all of a small one; else the entries where hand-written
            and autodiff differ most and where the gradient is largest, plus
            random others). ``0`` skips finite differences.
        compare_jit: also run ``backprop`` under ``jax.jit`` and compare it with
            the plain call (``report.jit``); ``False`` saves the compilation.
        seed: seed for choosing the random entries and the activations' probes.

    Returns:
        A :class:`GradientReport`; ``report.ok`` is the overall verdict and
        ``report.raise_if_failed()`` raises with the printed table.

    Raises:
        ValueError: if ``backprop`` returns gradients not shaped like ``params``
            (naming the layer), or for inputs ``net.loss`` rejects.
        RuntimeError: if finite differences are asked for but float64 cannot be enabled.

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> report = jaxnn.check_gradients(net, params, jax.numpy.ones(3), jax.numpy.zeros(2))
    >>> report.ok, [(r.layer, r.param) for r in report.rows]
    (True, [(0, 'W'), (0, 'b'), (1, 'W'), (1, 'b')])
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jaxnn.Network, got {type(net).__name__}")
    if isinstance(fd_entries, bool) or not isinstance(fd_entries, (int, np.integer)) or fd_entries < 0:
        raise ValueError(f"fd_entries must be a non-negative int, got {fd_entries!r}")
    backprop = net.backprop if backprop is None else backprop
    x_in = net._input(params, x)
    t_in = net._target(x_in, t)
    dtype = x_in.dtype

    loss, auto = jax.jit(jax.value_and_grad(net.loss))(params, x_in, t_in)
    manual = backprop(params, x_in, t_in)
    _check_grads_structure(net, manual, "backprop")
    tol = tolerances_for(dtype, float(loss))

    auto_np = [[np.asarray(a, np.float64) for a in pair] for pair in auto]
    manual_np = [[np.asarray(m, np.float64) for m in pair] for pair in manual]
    biggest = max(float(np.abs(a).max()) for pair in auto_np for a in pair)
    floor = tol.same * biggest

    jit_cmp = None
    if compare_jit:
        manual_jit = jax.jit(backprop)(params, x_in, t_in)
        jit_cmp = _compare(
            np.concatenate([np.ravel(m) for m in jax.tree.leaves(manual_jit)]),
            np.concatenate([np.ravel(m) for pair in manual_np for m in pair]),
            floor, tol.same,
        )

    # Finite differences, in float64.
    fd = None
    if fd_entries:
        rng = np.random.default_rng(seed)
        entries = []
        for i in range(len(net.layers)):
            pair = []
            for k in range(2):
                diff = np.abs(manual_np[i][k] - auto_np[i][k]).ravel()
                must = [np.argmax(diff), np.argmax(np.abs(auto_np[i][k]).ravel())]
                pair.append(_choose_entries(diff.size, must, fd_entries, rng))
            entries.append(pair)
        with _float64():
            p64 = [tuple(jnp.asarray(np.asarray(a), jnp.float64) for a in pair) for pair in params]
            x64 = jnp.asarray(np.asarray(x_in), jnp.float64)
            t_np = np.asarray(t_in)
            t64 = jnp.asarray(t_np, jnp.float64 if np.issubdtype(t_np.dtype, np.floating) else t_np.dtype)
            sizes = [int(np.prod(shape)) for pair in manual_np for shape in (pair[0].shape, pair[1].shape)]
            offsets = np.cumsum([0] + sizes)
            flat_idx = np.concatenate([entries[i][k] + offsets[2 * i + k] for i in range(len(entries)) for k in range(2)])
            values, crossed = jax.jit(_finite_differences, static_argnums=0)(net, p64, x64, t64, jnp.asarray(flat_idx))
            values, crossed = np.asarray(values, np.float64), np.asarray(crossed, bool)
        fd, start = [], 0
        for i in range(len(entries)):
            pair = []
            for k in range(2):
                n_k = len(entries[i][k])
                pair.append((values[start:start + n_k], crossed[start:start + n_k]))
                start += n_k
            fd.append(pair)

    rows = []
    for i in range(len(net.layers)):
        for k, name in enumerate(_PARAM_NAMES):
            m, a = manual_np[i][k], auto_np[i][k]
            m_vs_a = _compare(m, a, floor, tol.same)
            m_vs_fd = a_vs_fd = None
            if fd is not None:
                values, crossed = fd[i][k]
                idx = entries[i][k]
                keep = ~crossed
                m_vs_fd = _with_index(_compare(m.ravel()[idx], values, floor, tol.fd, tol.fd_atol, keep), idx, m.shape)
                a_vs_fd = _with_index(_compare(a.ravel()[idx], values, floor, tol.fd, tol.fd_atol, keep), idx, m.shape)
            rows.append(GradientRow(i, name, m.shape, m_vs_a, m_vs_fd, a_vs_fd))

    components = _check_components(net, params, x_in, t_in, tol, seed)
    diagnosis = _diagnose(net, rows, components, jit_cmp)
    batch = int(x_in.shape[0]) if x_in.ndim == 2 else None
    return GradientReport(tuple(rows), components, jit_cmp, tol, float(loss), batch, diagnosis)


def _with_index(c: Comparison, idx, shape) -> Comparison:
    """Translate the worst entry of a comparison over chosen flat indices into an index of ``shape``."""
    if not c.worst:
        return c
    flat = int(idx[c.worst[0]])
    return c._replace(worst=tuple(int(j) for j in np.unravel_index(flat, shape)))


def _component_arrays(layers, loss_fn, params, x, t, probes):
    """Each activation's ``backward`` and ``jax.vjp`` of its ``f``; the loss's ``dloss`` and ``jax.grad``.

    The activations are probed at the real pre-activations with random
    upstream gradients ``probes``, so every entry of the backward rule counts.
    """
    xs, ys = forward_trace(layers, params, x)
    pairs = []
    for layer, y, g in zip(layers, ys, probes):
        act = layer.activation
        pairs.append((act.backward(y, g), jax.vjp(act.f, y)[1](g)[0]))
    out = xs[-1]
    pairs.append((loss_fn.dloss(out, t), jax.grad(lambda o: jnp.sum(loss_fn.loss(o, t)))(out)))
    return pairs


def _check_components(net, params, x, t, tol, seed) -> tuple[ComponentCheck, ...]:
    rng = np.random.default_rng(seed)
    shape = x.shape[:-1]
    probes = [jnp.asarray(rng.standard_normal(shape + (layer.outs,)), x.dtype) for layer in net.layers]
    pairs = jax.jit(_component_arrays, static_argnums=(0, 1))(net.layers, net.loss_fn, params, x, t, probes)
    names = [(f"layer {i} activation {layer.activation!r}", i) for i, layer in enumerate(net.layers)]
    names.append((f"loss {net.loss_fn!r}", None))
    checks = []
    for (name, layer), (manual, auto) in zip(names, pairs):
        auto = np.asarray(auto, np.float64)
        floor = tol.same * float(np.abs(auto).max())
        checks.append(ComponentCheck(name, layer, _compare(manual, auto, floor, tol.same)))
    return tuple(checks)


def _diagnose(net, rows, components, jit_cmp) -> str:
    """Say, in words, where the hand-written gradients first go wrong."""
    notes = []
    n = len(net.layers)
    failing = [r for r in rows if not r.ok]
    if failing:
        last = max(r.layer for r in failing)
        names = {r.param for r in failing if r.layer == last}
        later = ""
        if last == n - 2:
            later = f"layer {n - 1} agrees, so "
        elif last < n - 2:
            later = f"layers {last + 1}..{n - 1} agree, so "
        if names == {"W"}:
            where = f"its db is right, so look at dW = db x^T of layer {last}"
        elif names == {"b"}:
            where = f"its dW is right, so look at how layer {last}'s db is returned (dropped, or reduced over the batch wrongly)"
        else:
            source = "the loss derivative dloss" if last == n - 1 else f"the dx = W^T db handed down by layer {last + 1}"
            where = f"look at layer {last}'s db = f'(y) * dx (its activation's derivative) or {source}"
        notes.append(
            f"hand-written gradients first go wrong at layer {last} ({', '.join(sorted(names))}); "
            f"the recursion runs from the output back and {later}{where}."
        )
        bp_vs_fd = [r for r in failing if r.manual_vs_fd is not None and not r.manual_vs_fd.ok]
        ad_vs_fd = [r for r in rows if r.autodiff_vs_fd is not None and not r.autodiff_vs_fd.ok]
        if ad_vs_fd:
            notes.append(
                "jax.grad also disagrees with finite differences: an activation's or the loss's "
                "f may not be differentiable by JAX as written (or the finite differences cross a kink "
                "it does not declare)."
            )
        elif failing and not bp_vs_fd and all(r.manual_vs_autodiff.ok for r in failing):
            notes.append("only finite differences disagree; autodiff and the recursion agree.")
    for c in components:
        if not c.ok:
            what = "backward(y, g) differs from jax.vjp of its f" if c.layer is not None else "dloss differs from jax.grad of its loss"
            notes.append(f"{c.name}: {what} (max abs error {c.comparison.max_abs:.2e} at {list(c.comparison.worst)}).")
    if jit_cmp is not None and not jit_cmp.ok:
        notes.append(f"backprop under jax.jit differs from the plain call by {jit_cmp.max_abs:.2e}.")
    return " ".join(notes) if notes else "all gradients agree."


# --- printing --------------------------------------------------------------------


def _fmt_cmp(label: str, c: Comparison) -> str:
    verdict = "ok" if c.ok else "FAIL"
    skipped = f"  ({c.skipped} across a kink, not counted)" if c.skipped else ""
    return (f"{label:<19}{c.max_abs:>9.1e}{c.max_rel:>9.1e}  {str(list(c.worst)):<10}"
            f"{c.error:>9.1e}{c.tol:>9.1e}{c.checked:>8}  {verdict}{skipped}")


def _format(report: GradientReport) -> str:
    tol = report.tolerances
    where = "one example" if report.batch is None else f"a batch of {report.batch}"
    lines = [
        f"gradient check: {len({r.layer for r in report.rows})} layers, {where}, {tol.dtype}, "
        f"loss {report.loss:.6g}",
        f"{'layer param shape':<20}{'comparison':<19}{'max abs':>9}{'max rel':>9}  {'worst at':<10}"
        f"{'error':>9}{'tol':>9}{'entries':>8}  verdict",
    ]
    for r in report.rows:
        head = f"{r.layer:<6}{r.param:<6}{str(r.shape):<8}"
        comps = [("manual vs jax.grad", r.manual_vs_autodiff), ("manual vs FD", r.manual_vs_fd),
                 ("jax.grad vs FD", r.autodiff_vs_fd)]
        first = True
        for label, c in comps:
            if c is None:
                continue
            lines.append((head if first else " " * 20) + _fmt_cmp(label, c))
            first = False
    lines.append("building blocks (hand-written rule vs jax.vjp / jax.grad):")
    for c in report.components:
        lines.append(f"  {c.name:<50} max abs {c.comparison.max_abs:.1e}  "
                     f"error {c.comparison.error:.1e}  {'ok' if c.ok else 'FAIL'}")
    if report.jit is not None:
        lines.append(f"  backprop jitted vs plain{'':<26} max abs {report.jit.max_abs:.1e}  "
                     f"error {report.jit.error:.1e}  {'ok' if report.jit.ok else 'FAIL'}")
    lines += textwrap.wrap("error = max abs / row scale. Tolerances: " + tol.why, 100)
    lines += textwrap.wrap(("PASS: " if report.ok else "FAIL: ") + report.diagnosis, 100)
    return "\n".join(lines)
