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
An activation declares its kinks as a class attribute, ``kinks = (0.0,)``
on ``ReLU`` and ``LeakyReLU``; the check reads only that attribute.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn._types import Grads, Params
from jaxnn._checks import check_data, non_negative_int, require_target
from jaxnn.backprop import forward_trace
from jaxnn.checking._finite_differences import choose_fd_entries, fd_values
from jaxnn.checking._policy import compare, tolerances_for
from jaxnn.checking._report import Comparison, ComponentCheck, GradientReport, GradientRow
from jaxnn.network import Network, check_network

__all__ = ["check_gradients"]

_PARAM_NAMES = ("W", "b")


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
            (naming the layer), for inputs ``net.loss`` rejects, or for values
            no gradient can be checked at: labels out of range, NaN or inf in
            ``params``, ``x`` or ``t``.
        TypeError: for arguments of the wrong kind (``backprop`` not callable).
        RuntimeError: if finite differences are asked for but float64 cannot be enabled.

    Warns:
        UserWarning: if 64-bit JAX is on but the parameters are float32 (made
            before ``jax_enable_x64`` was switched on, say): the comparison then
            runs in float32, to float32's tolerances, whatever the dtype of ``x``.

    >>> import jax, jaxnn
    >>> net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> report = jaxnn.check_gradients(net, params, jax.numpy.ones(3), jax.numpy.zeros(2))
    >>> report.ok, [(r.layer, r.param) for r in report.rows]
    (True, [(0, 'W'), (0, 'b'), (1, 'W'), (1, 'b')])
    """
    check_network("net", net)
    fd_entries = non_negative_int("fd_entries", fd_entries)
    if backprop is not None and not callable(backprop):
        raise TypeError(f"backprop must be a function (params, x, t) -> grads, got {type(backprop).__name__}")
    backprop = net.backprop if backprop is None else backprop
    require_target("check_gradients", t)
    x_in, t_in = net.check_inputs(params, x, t)
    check_data(net, params, x_in, t_in, "check_gradients")
    dtype = x_in.dtype
    if dtype == jnp.float32 and jax.config.jax_enable_x64:  # e.g. params made before x64 was switched on
        warnings.warn(
            "check_gradients: 64-bit JAX is on but the parameters are float32, so the hand-written and "
            "autodiff gradients are computed and compared in float32 (differences near 1e-7, not 1e-16; "
            "x is cast to the parameters' dtype). For a float64 comparison make the parameters with "
            "net.init(key, dtype=jnp.float64) or cast them: "
            "jax.tree.map(lambda a: a.astype(jnp.float64), params)",
            stacklevel=2,
        )

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
        entries = choose_fd_entries(manual_np, auto_np, fd_entries, np.random.default_rng(seed))
        fd = fd_values(net, params, x_in, t_in, entries)

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
