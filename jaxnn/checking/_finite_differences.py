"""Central finite differences of the loss, in float64, with kinks detected from the activations."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnn.backprop import forward_trace
from jaxnn.checking._policy import FD_STEP

__all__ = ["choose_fd_entries", "float64_context", "fd_values"]


def float64_context():
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


def _finite_differences(net, params, x, t, entries):
    """Central differences of the mean loss at the flat indices ``entries`` of ``ravel_pytree(params)``.

    Returns ``(fd, crossed)``: the derivative estimates, and whether the step
    moved any pre-activation across a kink of its layer's activation.
    """
    kinks = [tuple(float(k) for k in layer.activation.kinks) for layer in net.layers]
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


def choose_fd_entries(manual_np, auto_np, max_entries, rng):
    """Per layer and parameter, the flat indices to check by finite differences."""
    entries = []
    for m_pair, a_pair in zip(manual_np, auto_np):
        pair = []
        for m, a in zip(m_pair, a_pair):
            must = [np.argmax(np.abs(m - a).ravel()), np.argmax(np.abs(a).ravel())]
            pair.append(_choose_entries(m.size, must, max_entries, rng))
        entries.append(pair)
    return entries


def fd_values(net, params, x, t, entries):
    """Finite differences at ``entries`` in float64, per layer and parameter: ``(values, crossed)``."""
    with float64_context():
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
