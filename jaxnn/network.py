"""Layers and networks: static descriptions with pure functions of ``params``.

A :class:`Network` holds no parameters. ``net.init`` makes them, as a plain
list of ``(W, b)`` tuples, and every other method takes them as its first
argument, so all of them can be ``jax.jit``-ed, ``jax.vmap``-ed and
differentiated. The network itself is immutable and hashable, so it can be a
static argument or be closed over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn.activations import Activation
from jaxnn.backprop import Trace, affine, backprop_trace
from jaxnn.initializers import get_initializer
from jaxnn.losses import Loss
from jaxnn._types import Grads, Initializer, Params
from jaxnn._checks import as_array, check_labels, float_dtype, is_traced, positive_int, prng_key, require_target

__all__ = ["Layer", "Network", "check_batch", "check_like_params", "check_network", "check_params"]


@dataclasses.dataclass(frozen=True)
class Layer:
    """A dense layer ``x -> activation(W x + b)`` with ``W`` of shape (outs, ins)."""

    ins: int
    outs: int
    activation: Activation

    def __post_init__(self):
        for name in ("ins", "outs"):
            object.__setattr__(self, name, positive_int(f"Layer {name}", getattr(self, name)))
        if not isinstance(self.activation, Activation):
            raise TypeError(
                f"Layer activation must be a jaxnn Activation (e.g. LeakyReLU()), got {self.activation!r}"
            )


def _initialize(init, name: str, key, shape, dtype):
    """``init(key, shape, dtype)``; a callable that fails is named, with what it was called with."""
    fix = ("; pass a name such as 'lecun_normal' or an initializer such as "
           "jax.nn.initializers.glorot_normal() (called first)")
    try:
        out = init(key, shape, dtype)
    except Exception as err:
        raise TypeError(
            f"{name} {getattr(init, '__name__', type(init).__name__)} failed when called as "
            f"init(key, shape={shape}, dtype={jnp.dtype(dtype).name}): {type(err).__name__}: {err}"[:400] + fix
        ) from err
    if not isinstance(out, jax.Array):  # jax.nn.initializers.glorot_normal uncalled returns a function
        raise TypeError(
            f"{name} {getattr(init, '__name__', type(init).__name__)} returned {type(out).__name__}, not an "
            f"array, when called as init(key, shape={shape}, dtype={jnp.dtype(dtype).name})" + fix
        )
    return out


@dataclasses.dataclass(frozen=True, init=False)
class Network:
    """A multilayer perceptron: layers applied in order, then a loss.

    Args:
        layers: the layers, first to last; each layer's ``ins`` must equal the
            previous layer's ``outs``.
        loss: a :class:`jaxnn.Loss`, e.g. ``MSELoss()``; kept as ``net.loss_fn``.

    Raises:
        ValueError: if two consecutive layers do not fit, naming both.

    >>> import jaxnn
    >>> net = jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.LeakyReLU()),
    ...                      jaxnn.Layer(3, 2, jaxnn.LeakyReLU())], jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> [W.shape for W, b in params]
    [(3, 2), (2, 3)]
    """

    layers: tuple[Layer, ...]
    loss_fn: Loss

    def __init__(self, layers: Sequence[Layer], loss: Loss):
        if isinstance(layers, Layer):
            layers = [layers]
        if not isinstance(layers, Sequence) or isinstance(layers, str):
            raise TypeError(f"layers must be a list of jaxnn.Layer, got {type(layers).__name__}")
        layers = tuple(layers)
        if not layers:
            raise ValueError("a Network needs at least one Layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a jaxnn.Layer, got {layer!r}")
        for i in range(1, len(layers)):
            if layers[i - 1].outs != layers[i].ins:
                raise ValueError(
                    f"layers {i - 1} and {i} do not fit: layer {i - 1} has {layers[i - 1].outs} "
                    f"outputs but layer {i} expects {layers[i].ins} inputs"
                )
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a jaxnn Loss (e.g. MSELoss()), got {loss!r}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "loss_fn", loss)

    @classmethod
    def from_sizes(
        cls, sizes: Sequence[int], activations: Activation | Sequence[Activation], loss: Loss
    ) -> Network:
        """Build a network from its widths, e.g. ``(784, 16, 16, 10)``.

        ``activations`` is one activation for every layer or one per layer.
        """
        if not isinstance(sizes, Sequence) or isinstance(sizes, (str, bytes)):  # b"23" would be (50, 51)
            raise TypeError(f"sizes must be a sequence of ints such as (784, 16, 10), got {type(sizes).__name__}")
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
        activations = _activations_for(len(sizes) - 1, activations)
        return cls([Layer(i, o, a) for i, o, a in zip(sizes[:-1], sizes[1:], activations)], loss)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Widths along the network: ``(ins of layer 0, outs of layer 0, ..., outs of the last)``."""
        return (self.layers[0].ins,) + tuple(layer.outs for layer in self.layers)

    def init(
        self,
        key: jax.Array,
        weight_init: str | Initializer = "lecun_normal",
        bias_init: str | Initializer = "zeros",
        dtype=None,
    ) -> Params:
        """Fresh parameters ``[(W0, b0), (W1, b1), ...]``, deterministic for ``key``.

        The default, LeCun normal (variance ``1 / ins``) with zero biases,
        keeps the pre-activations' scale from layer to layer for every
        activation jaxnn has, so deep nets of any mix train from the start;
        ``"he_normal"`` suits deep ReLU stacks. ``"articles"`` is the articles'
        normal with standard deviation ``1 / (outs * ins)``.

        Args:
            key: a PRNG key.
            weight_init, bias_init: a name (``"lecun_normal"``, ``"he_normal"``,
                ``"glorot_normal"``, ``"glorot_uniform"``, ``"articles"``,
                ``"normal"``, ``"zeros"``) or a ``jax.nn.initializers``-style
                callable ``init(key, shape, dtype)``. Weights have shape (outs, ins).
                Layer ``i``'s weights are drawn with ``jax.random.split(key, 2 * n)[2 * i]``
                and its biases with ``[2 * i + 1]`` (``n`` layers).
            dtype: float dtype of the parameters; default JAX's default float
                (float64 when ``jax_enable_x64`` is on). ``bfloat16`` and
                ``float16`` work too (see "Dtypes" in :mod:`jaxnn`).

        Raises:
            TypeError: if ``key`` is not a PRNG key (an int seed: use
                ``jax.random.key(0)``), or an initialiser is neither a name nor a callable.
            ValueError: for an unknown initialiser name, a non-float ``dtype``,
                or float64 while ``jax_enable_x64`` is off.
        """
        prng_key("net.init key", key)
        dtype = float_dtype("net.init dtype", dtype)
        w_init, b_init = get_initializer(weight_init), get_initializer(bias_init)
        keys = jax.random.split(key, 2 * len(self.layers))
        params = [
            (
                _initialize(w_init, "weight_init", keys[2 * i], (layer.outs, layer.ins), dtype),
                _initialize(b_init, "bias_init", keys[2 * i + 1], (layer.outs,), dtype),
            )
            for i, layer in enumerate(self.layers)
        ]
        check_params("params", params, self.layers)  # a custom initialiser may return the wrong shape
        return params

    # Checks from static shapes: they run at trace time, so they work under jit.

    def check_params(self, params: Params) -> None:
        """Raise if ``params`` do not have the structure and shapes this network needs."""
        check_params("params", params, self.layers)

    def check_inputs(
        self, params: Params, x: ArrayLike, t: ArrayLike | None = None, *, check_labels: bool = True,
        names: tuple[str, str] = ("x", "t"),
    ) -> tuple[jax.Array, jax.Array | None]:
        """Check ``(params, x, t)`` as every method does, and return ``x`` and ``t`` as arrays.

        ``x`` is cast to the parameters' dtype, float targets to ``x``'s;
        Python lists are converted. Shapes, structure and dtypes are checked,
        so it works under ``jax.jit``. Integer class labels are checked to lie
        in ``[0, outputs)`` when they are concrete (``check_labels=False``
        skips that); under ``jax.jit`` they cannot be, and an out-of-range
        label gives a garbage or NaN loss silently. ``names`` are what messages
        call ``x`` and ``t`` (``("validation inputs", "validation targets")``).

        Raises:
            ValueError, TypeError: naming the layer, the argument and the
                shapes or dtypes expected and given.
        """
        x = _as_input(self.layers, params, x, names[0])
        return x, (None if t is None else _as_target(self.layers, self.loss_fn, x, t, check_labels, names[1]))

    # The pure functions of params.

    def forward(self, params: Params, x: ArrayLike) -> jax.Array:
        """The network's output for ``x`` of shape (ins,) or (batch, ins)."""
        x, _ = self.check_inputs(params, x)
        for layer, (W, b) in zip(self.layers, params):
            x = layer.activation.f(affine(W, b, x))
        return x

    def loss(self, params: Params, x: ArrayLike, t: ArrayLike) -> jax.Array:
        """The loss of one example, or the mean loss over a batch (a scalar)."""
        require_target("net.loss", t)
        x, t = self.check_inputs(params, x, t)
        return jnp.mean(self.loss_fn.loss(self.forward(params, x), t))

    def backprop_trace(self, params: Params, x: ArrayLike, t: ArrayLike) -> Trace:
        """Loss, gradients and the recursion's intermediate lists (``xs``, ``ys``, ``dxs``)."""
        require_target("net.backprop", t)
        x, t = self.check_inputs(params, x, t)
        trace = backprop_trace(self.layers, self.loss_fn, params, x, t)
        # Same containers as the params given (list or tuple), as jax.grad would.
        grads = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(trace.grads))
        return trace._replace(grads=grads)

    def value_and_backprop(self, params: Params, x: ArrayLike, t: ArrayLike) -> tuple[jax.Array, Grads]:
        """``(loss, grads)`` by the hand-written recursion, like ``jax.value_and_grad(net.loss)``."""
        trace = self.backprop_trace(params, x, t)
        return trace.loss, trace.grads

    def backprop(self, params: Params, x: ArrayLike, t: ArrayLike) -> Grads:
        """Gradients of :meth:`loss` by the hand-written recursion, shaped like ``params``.

        Equal to ``jax.grad(net.loss)(params, x, t)``. For a batch it is the
        mean of the per-example gradients; for per-example gradients use
        ``jax.vmap(net.backprop, in_axes=(None, 0, 0))``.

        Computed in the parameters' dtype, as ``jax.grad`` is: float32
        parameters give float32 gradients (agreeing with ``jax.grad`` to about
        1e-7) even after ``jax_enable_x64`` is switched on; for float64 make
        them with ``net.init(key, dtype=jnp.float64)``.
        """
        return self.backprop_trace(params, x, t).grads


# Checks of the model's structure, for every function that takes a network and its parameters.


def _activations_for(n: int, activations) -> tuple:
    """One activation per layer, from one activation or a sequence of ``n`` of them."""
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


def check_network(where: str, net) -> Network:
    """``net``, or a TypeError unless it is a :class:`Network`."""
    if not isinstance(net, Network):
        raise TypeError(
            f"{where} must be a jaxnn.Network (e.g. jaxnn.Network.from_sizes((2, 3, 1), "
            f"jaxnn.Tanh(), jaxnn.MSELoss())), got {type(net).__name__}"
        )
    return net


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


def check_params(name: str, params, layers: Sequence):
    """``params``, unless they lack the structure, shapes and dtypes ``layers`` need (a static check)."""
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
    return params


def check_like_params(name: str, v, layers: Sequence, params) -> list:
    """``v`` checked to be shaped like ``params`` and cast to their dtypes, in ``params``' containers."""
    check_params(name, v, layers)
    leaves = [jnp.asarray(a, jnp.result_type(p)) for a, p in zip(jax.tree.leaves(v), jax.tree.leaves(params))]
    return jax.tree.unflatten(jax.tree.structure(params), leaves)


def _as_input(layers: Sequence, params, x: ArrayLike, name: str) -> jax.Array:
    """``x`` (called ``name``) checked against the first layer and cast to the parameters' dtype."""
    check_params("params", params, layers)
    x = as_array(name, x)
    shape, ins = jnp.shape(x), layers[0].ins
    if len(shape) not in (1, 2):
        raise ValueError(
            f"{name} must have shape ({ins},) for one example or (batch, {ins}) for a batch, got "
            f"{shape}; for more batch axes use jax.vmap"
        )
    if shape[-1] != ins:
        raise ValueError(f"{name} has last dimension {shape[-1]} but layer 0 expects {ins} inputs "
                         f"({name} shape {shape})")
    dtype = jnp.result_type(params[0][0])
    return x if x.dtype == dtype else jnp.asarray(x, dtype=dtype)


def _as_target(layers: Sequence, loss_fn, x: jax.Array, t: ArrayLike, check_values: bool, name: str) -> jax.Array:
    """``t`` checked against the loss and the network's output; float targets take ``x``'s dtype.

    With ``check_values``, concrete integer class labels are also checked to
    lie in the loss's range (``loss_fn.label_rule``: ``[0, outputs)`` for
    cross-entropy); traced ones cannot be (see :func:`check_data`).
    """
    t = as_array(name, t, labels_ok=True)
    out_shape = x.shape[:-1] + (layers[-1].outs,)
    try:
        loss_fn.check_target(out_shape, t)
    except ValueError as err:
        if name == "t":
            raise
        raise ValueError(f"{name}: {err}") from None  # the loss does not know what the caller calls t
    rule = loss_fn.label_rule(layers[-1].outs)
    integer = jnp.issubdtype(t.dtype, jnp.integer)
    if check_values and rule is not None and integer and t.shape == out_shape[:-1] and not is_traced(t):
        check_labels(name, t, *rule)
    if jnp.issubdtype(t.dtype, jnp.floating):
        t = t if t.dtype == x.dtype else t.astype(x.dtype)
    return t


def check_batch(where: str, x, layers: Sequence):
    """``x``, unless it is not a batch (batch, ins)."""
    if x.ndim != 2:
        raise ValueError(f"{where} needs a batch x of shape (batch, {layers[0].ins}), got shape {x.shape}")
    return x

