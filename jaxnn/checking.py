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
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxnn.activations import Activation, LeakyReLU, ReLU
from jaxnn.backprop import forward_trace
from jaxnn.gradient_report import (
    FD_STEP,
    Comparison,
    ComponentCheck,
    GradientReport,
    GradientRow,
    compare,
    tolerances_for,
)
from jaxnn.network import Network
from jaxnn.typing import Grads, Params

__all__ = ["check_gradients"]

_PARAM_NAMES = ("W", "b")


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


def _fd_entries(manual_np, auto_np, max_entries, rng):
    """Per layer and parameter, the flat indices to check by finite differences."""
    entries = []
    for m_pair, a_pair in zip(manual_np, auto_np):
        pair = []
        for m, a in zip(m_pair, a_pair):
            must = [np.argmax(np.abs(m - a).ravel()), np.argmax(np.abs(a).ravel())]
            pair.append(_choose_entries(m.size, must, max_entries, rng))
        entries.append(pair)
    return entries


def _fd_values(net, params, x, t, entries):
    """Finite differences at ``entries`` in float64, per layer and parameter: ``(values, crossed)``."""
    with _float64():
        p64 = [tuple(jnp.asarray(np.asarray(a), jnp.float64) for a in pair) for pair in params]
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        t_np = np.asarray(t)
        t64 = jnp.asarray(t_np, jnp.float64 if np.issubdtype(t_np.dtype, np.floating) else t_np.dtype)
        sizes = [int(np.size(a)) for pair in params for a in pair]
        offsets = np.cumsum([0] + sizes)
        flat_idx = np.concatenate([idx + offsets[2 * i + k] for i, pair in enumerate(entries)
                                   for k, idx in enumerate(pair)])
        values, crossed = jax.jit(_finite_differences, static_argnums=0)(net, p64, x64, t64, jnp.asarray(flat_idx))
        values, crossed = np.asarray(values, np.float64), np.asarray(crossed, bool)
    out, start = [], 0
    for pair in entries:
        out.append([])
        for idx in pair:
            out[-1].append((values[start:start + len(idx)], crossed[start:start + len(idx)]))
            start += len(idx)
    return out


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
            shaped like ``params``; default ``net.backprop``.
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
        jit_cmp = compare(
            np.concatenate([np.ravel(m) for m in jax.tree.leaves(manual_jit)]),
            np.concatenate([np.ravel(m) for pair in manual_np for m in pair]),
            floor, tol.same,
        )

    fd = entries = None
    if fd_entries:
        entries = _fd_entries(manual_np, auto_np, fd_entries, np.random.default_rng(seed))
        fd = _fd_values(net, params, x_in, t_in, entries)

    rows = []
    for i in range(len(net.layers)):
        for k, name in enumerate(_PARAM_NAMES):
            m, a = manual_np[i][k], auto_np[i][k]
            m_vs_a = compare(m, a, floor, tol.same)
            m_vs_fd = a_vs_fd = None
            if fd is not None:
                values, crossed = fd[i][k]
                idx = entries[i][k]
                keep = ~crossed
                m_vs_fd = _with_index(compare(m.ravel()[idx], values, floor, tol.fd, tol.fd_atol, keep), idx, m.shape)
                a_vs_fd = _with_index(compare(a.ravel()[idx], values, floor, tol.fd, tol.fd_atol, keep), idx, m.shape)
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
        checks.append(ComponentCheck(name, layer, compare(manual, auto, floor, tol.same)))
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
