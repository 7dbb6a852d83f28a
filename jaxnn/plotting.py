"""Pictures of networks, their training and their gradients (needs matplotlib).

Drawing is optional: ``import jaxnn`` never imports this module or
matplotlib. Install the extra with ``pip install 'jaxnn[plot]'``.

* :func:`decision_regions`: a 2-input classifier's predicted class over the plane.
* :func:`training_curves`: loss and accuracy per epoch from a ``fit`` history.
* :func:`gradient_norms`: the norm of every layer's ``dW`` and ``db`` as bars.
* :func:`recursion_diagram`: one example going forward through the network and
  its gradients coming back, neuron by neuron: the articles' picture.
* :func:`alignment_angles`: a learning rule's angles to backprop over training.

Every function draws on ``ax`` when given (else on a new figure), returns the
Axes, and never calls ``plt.show``, so it works with any backend, Agg included.

>>> import jax, jaxnn, matplotlib.figure
>>> from jaxnn import plotting
>>> net = jaxnn.Network([jaxnn.Layer(2, 3, jaxnn.Tanh()),
...                      jaxnn.Layer(3, 2, jaxnn.Identity())],
...                     jaxnn.CrossEntropyLoss())
>>> params = net.init(jax.random.key(0))
>>> ax = matplotlib.figure.Figure().add_subplot()
>>> plotting.decision_regions(net, params, ax=ax) is ax
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxnn._checks import as_array, non_negative_int, positive_int
from jaxnn.checking import GradientReport
from jaxnn.network import check_network

try:
    import matplotlib
    import matplotlib.axes
    from matplotlib.collections import LineCollection
    from matplotlib.colors import ListedColormap, to_rgba
    from matplotlib.ticker import MaxNLocator
    from matplotlib.patches import Circle, FancyBboxPatch, Patch, Rectangle
except ImportError as error:  # pragma: no cover - exercised in a subprocess without matplotlib
    raise ImportError(
        "jaxnn.plotting needs matplotlib, which is not installed; install it with "
        "pip install 'jaxnn[plot]'"
    ) from error

__all__ = ["alignment_angles", "decision_regions", "gradient_norms", "recursion_diagram", "training_curves"]

# Class colours (regions drawn light, points dark) and the recursion's colours.
_CLASS_COLORS = matplotlib.colormaps["tab10"].colors
_FORWARD, _DB, _DX, _FAIL = "#1f4e79", "#d95f02", "#6a3d9a", "#c62828"


def _new_axes(figsize):
    # pyplot only here, so that importing this module never picks a backend.
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _check_ax(ax) -> None:
    if ax is not None and not isinstance(ax, matplotlib.axes.Axes):
        raise TypeError(f"ax must be a matplotlib Axes (or None for a new figure), got {type(ax).__name__}")


# --- decision regions ----------------------------------------------------------


def _bounds(bounds, x):
    """``((x0, x1), (y0, y1))`` from ``bounds`` (a pair or a pair of pairs), ``x`` or (-2, 2)."""
    if bounds is None:
        if x is None:
            return (-2.0, 2.0), (-2.0, 2.0)
        lo, hi = x.min(axis=0), x.max(axis=0)
        margin = 0.05 * np.maximum(hi - lo, 1e-9)
        return (lo[0] - margin[0], hi[0] + margin[0]), (lo[1] - margin[1], hi[1] + margin[1])
    b = np.asarray(bounds, dtype=float)
    if b.shape == (2,):
        b = np.stack([b, b])
    if b.shape != (2, 2) or np.any(b[:, 0] >= b[:, 1]):
        raise ValueError(
            f"bounds must be (low, high) or ((x_low, x_high), (y_low, y_high)) with low < high, "
            f"got {bounds!r}"
        )
    return tuple(b[0]), tuple(b[1])


def _classes(out: np.ndarray) -> np.ndarray:
    """Predicted classes: argmax over outputs, or a 0.5 threshold for a single output."""
    return (out[..., 0] > 0.5).astype(int) if out.shape[-1] == 1 else np.argmax(out, axis=-1)


def decision_regions(net, params, x=None, t=None, *, ax=None, bounds=None, resolution=200,
                     title=None):
    """Draw a 2-input classifier's predicted class over the plane, with points on top.

    The class at each point of a ``resolution x resolution`` grid is the
    argmax of ``net.forward`` (for a net with one output, output > 0.5). The
    points ``x`` are coloured by their true class ``t``, and those the
    network gets wrong are crossed.

    Args:
        net: a :class:`jaxnn.Network` whose first layer has 2 inputs.
        params: its parameters.
        x: optional points, shape (n, 2).
        t: optional true classes of ``x``: labels (n,) or one-hot (n, classes).
        ax: the Axes to draw on; default a new figure's.
        bounds: ``(low, high)`` for both axes or ``((x_low, x_high), (y_low, y_high))``;
            default the range of ``x`` plus 5%, or (-2, 2) without ``x``.
        resolution: grid points per axis.
        title: the Axes title; default the share of ``x`` classified right
            (when ``t`` is given). ``""`` for none.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: if the network does not have 2 inputs, or ``x``, ``t`` or
            ``bounds`` have the wrong shape.

    >>> import jax, jax.numpy as jnp, jaxnn, matplotlib.figure
    >>> net = jaxnn.Network([jaxnn.Layer(2, 2, jaxnn.Identity())],
    ...                     jaxnn.CrossEntropyLoss())
    >>> params = net.init(jax.random.key(0))
    >>> x = jax.random.uniform(jax.random.key(1), (50, 2), minval=-2, maxval=2)
    >>> ax = decision_regions(net, params, x, (x[:, 0] > 0).astype(int),
    ...                       ax=matplotlib.figure.Figure().add_subplot())
    >>> ax.get_xlabel()
    '$x_0$'
    """
    check_network("net", net)
    _check_ax(ax)
    net.check_params(params)
    resolution = positive_int("resolution", resolution)
    ins = net.layers[0].ins
    if ins != 2:
        raise ValueError(
            f"decision_regions draws classifiers of 2 inputs, but net.layers[0].ins is {ins}"
        )
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    if x is not None:
        x = np.asarray(as_array("x", x), dtype=float)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (n, 2), got {x.shape}")
    true = None
    if t is not None:
        if x is None:
            raise ValueError("t was given without x; pass the points x whose classes t are")
        t = np.asarray(as_array("t", t, labels_ok=True))
        true = np.argmax(t, axis=-1) if t.ndim == 2 else t.astype(int)
        if true.shape != (len(x),):
            raise ValueError(
                f"t must be labels ({len(x)},) or one-hot ({len(x)}, classes) for x of shape "
                f"{x.shape}, got {t.shape}"
            )
    (x0, x1), (y0, y1) = _bounds(bounds, x)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    regions = _classes(np.asarray(net.forward(params, grid))).reshape(gx.shape)
    n_classes = max(net.layers[-1].outs, 2)
    colors = [_CLASS_COLORS[c % len(_CLASS_COLORS)] for c in range(n_classes)]

    if ax is None:
        ax = _new_axes((5, 4.5))
    light = ListedColormap([to_rgba(c, 0.3) for c in colors])
    ax.imshow(regions, extent=(x0, x1, y0, y1), origin="lower", cmap=light, vmin=-0.5,
              vmax=n_classes - 0.5, interpolation="nearest", aspect="auto")
    if x is not None:
        guess = _classes(np.asarray(net.forward(params, x)))
        if true is None:
            ax.scatter(*x.T, s=8, c="k", label="points")
        else:
            for c in np.unique(true):
                pts = x[true == c]
                ax.scatter(*pts.T, s=10, color=colors[c % n_classes], edgecolors="white",
                           linewidths=0.3, label=f"class {c}")
            wrong = guess != true
            ax.scatter(*x[wrong].T, marker="x", c="k", s=18, linewidths=0.9,
                       label=f"misclassified ({int(wrong.sum())})")
            if title is None:
                title = f"{np.mean(~wrong):.1%} of {len(x)} points correct"
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85, markerscale=1.5)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="$x_0$", ylabel="$x_1$")
    if 0.5 <= (x1 - x0) / (y1 - y0) <= 2:
        ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


# --- training curves -----------------------------------------------------------


def _runs(history) -> dict:
    """``{name: {key: 1-D float array}}``; a single history gets the name ``None``."""
    if not isinstance(history, Mapping) or not history:
        raise TypeError(
            f"history must be a non-empty dict of per-epoch arrays (as fit returns) or a dict "
            f"name -> such dict, got {type(history).__name__}"
        )
    nested = all(isinstance(v, Mapping) for v in history.values())
    runs = dict(history) if nested else {None: history}
    out = {}
    for name, run in runs.items():
        where = "history" if name is None else f"history[{name!r}]"
        if not isinstance(run, Mapping):
            raise TypeError(f"{where} must be a dict of per-epoch arrays, got {type(run).__name__}")
        try:
            arrays = {k: np.asarray(v, dtype=float) for k, v in run.items()}
        except (TypeError, ValueError):
            raise TypeError(f"{where} must hold arrays of numbers, one entry per epoch") from None
        lengths = {k: a.shape for k, a in arrays.items()}
        n = len(arrays.get("loss", next(iter(arrays.values()), ())))
        if not arrays or any(a.ndim != 1 or len(a) != n for a in arrays.values()):
            raise ValueError(
                f"{where} must hold 1-D arrays of one length (one entry per epoch), got shapes "
                f"{lengths}"
            )
        arrays.setdefault("epoch", np.arange(1, n + 1, dtype=float))
        out[name] = arrays
    return out


def training_curves(history, *, ax=None, metrics=None):
    """Plot a ``fit`` history: losses on the left axis, accuracies on a twin right axis.

    A history is a dict of arrays with one entry per epoch: ``loss`` and
    optionally ``epoch`` (the epoch numbers, default 1, 2, ...), ``val_loss``,
    ``val_accuracy`` or any other metric. Keys containing ``"loss"`` go on the
    left axis (log scale when they span more than two decades); the others
    on a twin right axis, kept as ``ax.right_ax``. NaN entries (epochs
    without a validation pass) are left out. A dict ``name -> history``
    overlays several runs, one colour per run.

    Args:
        history: a history dict, or a dict ``name -> history``.
        ax: the Axes to draw on; default a new figure's.
        metrics: the keys to draw; default every key but ``epoch``.

    Returns:
        The matplotlib Axes with the losses (``ax.right_ax`` the twin, if any).

    Raises:
        TypeError: if ``history`` is not a dict.
        ValueError: if its arrays are not 1-D of one length, or a metric is
            in no history.

    >>> import numpy as np, matplotlib.figure
    >>> ax = training_curves({"loss": np.array([1.0, 0.5, 0.2]),
    ...                       "val_accuracy": np.array([0.5, 0.7, 0.9])},
    ...                      ax=matplotlib.figure.Figure().add_subplot())
    >>> len(ax.lines), len(ax.right_ax.lines)
    (1, 1)
    """
    _check_ax(ax)
    runs = _runs(history)
    available = list(dict.fromkeys(k for run in runs.values() for k in run if k != "epoch"))
    if metrics is None:
        metrics = available
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        missing = [m for m in metrics if m not in available]
        if missing:
            raise ValueError(f"metrics {missing} are in no history; available: {available}")
    left = [m for m in metrics if "loss" in m]
    right = [m for m in metrics if "loss" not in m]

    if ax is None:
        ax = _new_axes((6, 4))
    twin = ax.twinx() if left and right else None
    if twin is not None:
        ax.right_ax = twin
    styles = ["-", "--", ":", "-."]
    one_run = len(runs) == 1
    for r, (name, run) in enumerate(runs.items()):
        for m, metric in enumerate(left + right):
            if metric not in run:
                continue
            target = twin if (twin is not None and metric in right) else ax
            ok = np.isfinite(run[metric])
            sparse = not ok.all()  # evaluated on some epochs only: mark the points
            if one_run:  # a colour per metric
                label, color, style = metric, f"C{m}", "-"
            else:  # a colour per run, a line style per metric
                label = str(name) if len(metrics) == 1 else f"{name}: {metric}"
                color, style = f"C{r}", styles[m % len(styles)]
            target.plot(run["epoch"][ok], run[metric][ok], label=label, color=color,
                        linestyle=style, marker="o" if sparse else None, markersize=3)

    losses = np.concatenate([run[k][np.isfinite(run[k])] for run in runs.values()
                             for k in left if k in run] or [np.ones(1)])
    if losses.min() > 0 and losses.max() / losses.min() > 100:  # more than two decades
        ax.set_yscale("log")
    is_acc = all("acc" in k for k in right)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if left else ("accuracy" if is_acc else "metric"))
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        twin.set_ylabel("accuracy" if is_acc else "metric")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if twin is None:
        ax.legend(handles, labels, fontsize=8, loc="best")
    else:  # "best" cannot see the other axis' lines: put the legend above both
        twin.legend(handles, labels, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                    ncol=min(len(runs), 4) if len(runs) > 1 else min(len(labels), 3),
                    frameon=False)
    return ax


# --- alignment angles ----------------------------------------------------------


def alignment_angles(history, *, ax=None):
    """Plot a learning rule's angles to backprop over training, one colour per layer.

    Reads the per-layer keys of a history (a dict of arrays, one entry per
    epoch), as ``fit`` returns it with a :class:`jaxnn.AlignmentMonitor` among
    its callbacks: ``align_update/<i>``, the angle between layer
    ``i``'s update and the gradient (solid lines), and ``align_feedback/<i>``,
    between its feedback matrix and ``W_i^T`` (dashed), both in degrees as
    :func:`jaxnn.rules.alignment` gives them. ``epoch`` gives the x values
    (default 1, 2, ...); NaN entries (the epochs the monitor skipped) are left
    out, with a marker on each measured epoch, and so are series that are all
    NaN. A dotted line marks 90 degrees: below it, an update still goes
    downhill. The legend sits to the right of the plot, clear of the data.

    Args:
        history: a dict with ``align_update/<i>`` or ``align_feedback/<i>`` keys.
        ax: the Axes to draw on; default a new figure's.

    Returns:
        The matplotlib Axes.

    Raises:
        TypeError: if ``history`` is not a dict of arrays.
        ValueError: if it has no alignment keys, or arrays of different lengths.

    >>> import numpy as np, matplotlib.figure
    >>> ax = alignment_angles({"align_update/0": np.array([80.0, 60.0, 45.0]),
    ...                        "align_feedback/1": np.array([90.0, 50.0, 20.0])},
    ...                       ax=matplotlib.figure.Figure().add_subplot())
    >>> [line.get_label() for line in ax.lines[:2]]
    ['update, layer 0', 'feedback, layer 1']
    """
    _check_ax(ax)
    if isinstance(history, Mapping) and history and all(isinstance(v, Mapping) for v in history.values()):
        raise TypeError("alignment_angles draws one run: pass one history dict (one Axes per run)")
    run = _runs(history)[None]
    series = []
    for key in run:
        kind, _, layer = key.partition("/")
        if kind in ("align_update", "align_feedback") and layer.isdigit():
            series.append((int(layer), kind == "align_feedback", key))
    if not series:
        raise ValueError(
            f"history has no alignment keys (align_update/<layer>, align_feedback/<layer>); its keys "
            f"are {sorted(run)}"
        )
    if ax is None:
        ax = _new_axes((6, 4))
    layers = sorted({layer for layer, _, _ in series})
    drawn = False
    for layer, feedback, key in sorted(series):
        ok = np.isfinite(run[key])
        if not ok.any():
            continue
        drawn = True
        ax.plot(run["epoch"][ok], run[key][ok], color=f"C{layers.index(layer) % 10}",
                linestyle="--" if feedback else "-", marker="o" if not ok.all() else None,
                markersize=3, label=f"{'feedback' if feedback else 'update'}, layer {layer}")
    ax.axhline(90, color="0.5", linestyle=":", linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="angle to backprop (degrees)", ylim=(0, max(95, ax.get_ylim()[1])))
    if drawn:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


# --- gradient norms ------------------------------------------------------------


def _norms(grads, where) -> np.ndarray:
    """``[[||dW||, ||db||], ...]`` per layer, Frobenius."""
    if not isinstance(grads, Sequence) or not all(
        isinstance(g, Sequence) and len(g) == 2 for g in grads
    ):
        raise TypeError(
            f"{where} must be a list of (dW, db) pairs, one per layer, got {grads!r:.80}"
        )
    try:
        return np.array([[np.linalg.norm(np.ravel(np.asarray(p, dtype=float))) for p in g] for g in grads])
    except (TypeError, ValueError):
        raise TypeError(f"{where} must hold arrays of real numbers in its (dW, db) pairs") from None


def gradient_norms(grads, *, ax=None, log=True):
    """Bar chart of every layer's ``||dW||`` and ``||db||`` (Frobenius norms).

    Args:
        grads: gradients shaped like params, a list of ``(dW, db)``; or a dict
            ``name -> grads`` (e.g. ``{"manual": ..., "autodiff": ...}``) to
            compare, drawn as grouped bars, one colour per name.
        ax: the Axes to draw on; default a new figure's.
        log: a log scale for the norms.

    Returns:
        The matplotlib Axes, with one bar per layer, parameter and name.

    Raises:
        TypeError: if ``grads`` is not a list of pairs (or a dict of them).
        ValueError: if the named gradients have different numbers of layers.

    >>> import jax, jaxnn, matplotlib.figure
    >>> net = jaxnn.Network.from_sizes((2, 3, 1), jaxnn.Tanh(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0), bias_init="normal")
    >>> grads = net.backprop(params, jax.numpy.ones(2), jax.numpy.zeros(1))
    >>> ax = gradient_norms(grads, ax=matplotlib.figure.Figure().add_subplot())
    >>> len(ax.patches)
    4
    """
    _check_ax(ax)
    named = dict(grads) if isinstance(grads, Mapping) else {None: grads}
    if not named:
        raise ValueError("grads is an empty dict; give at least one name -> grads")
    norms = {name: _norms(g, "grads" if name is None else f"grads[{name!r}]")
             for name, g in named.items()}
    layers = {name: len(v) for name, v in norms.items()}
    if len(set(layers.values())) != 1:
        raise ValueError(f"the gradients to compare have different numbers of layers: {layers}")
    n_layers = next(iter(layers.values()))

    if ax is None:
        ax = _new_axes((max(4.0, 1.2 * n_layers * len(named) + 2), 3.5))
    width = 0.8 / len(named)
    x = np.arange(2 * n_layers)  # dW0, db0, dW1, db1, ...
    for k, (name, v) in enumerate(norms.items()):
        offset = (k - (len(named) - 1) / 2) * width
        # One set: a colour per parameter kind; several: a colour per name.
        color = ["C0", "C1"] * n_layers if name is None else f"C{k}"
        bars = ax.bar(x + offset, v.ravel(), width, color=color, label=name)
        if 2 * n_layers * len(named) <= 24:
            ax.bar_label(bars, fmt="%.2g", fontsize=7, padding=1)
    ax.set_xticks(x, [f"{p}{i}" for i in range(n_layers) for p in ("dW", "db")])
    ax.set(xlabel="layer and parameter", ylabel="Frobenius norm")
    if log and np.any(np.concatenate([v.ravel() for v in norms.values()]) > 0):
        ax.set_yscale("log")
    if None in norms:
        kinds = [Patch(color="C0", label="‖dW‖"), Patch(color="C1", label="‖db‖")]
        ax.legend(handles=kinds, fontsize=8)
    else:
        ax.legend(fontsize=8)
    return ax


# --- the recursion, neuron by neuron -------------------------------------------


def _fmt(v: float, decimals: int) -> str:
    """``decimals`` places for 0.1 <= |v| < 10^4, else scientific with as many digits: -5.5e-3."""
    if v == 0 or not np.isfinite(v):
        return f"{v:g}"
    if 0.1 <= abs(v) < 1e4:
        return f"{v:.{decimals}f}"
    mantissa, exponent = f"{v:.{max(decimals - 1, 0)}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _shown(n: int, cap: int) -> list:
    """Indices of the neurons drawn: all ``n``, or the first ``cap - 1``, a gap (None), the last."""
    return list(range(n)) if n <= cap else list(range(cap - 1)) + [None, n - 1]


def _activation_name(activation) -> str:
    return type(activation).__name__


def recursion_diagram(net, params, x, t, *, report=None, ax=None, decimals=2, max_neurons=12):
    """Draw one example going through the backprop recursion, neuron by neuron.

    One column of neurons per layer, input on the left, output on the right,
    then the loss. Each neuron shows its forward value ``x`` (the article's
    ``xs[i]``); under it, the backward values: ``db``, the gradient of the
    loss with respect to the bias of the layer that computes this neuron
    (``activation.backward(y, dx)``, that is ``f'(y) * dx``), and ``dx``,
    the gradient of the loss with respect to the neuron's value (``dxs[i]``).
    Edges show the weights (line width by ``|W|``; not drawn for a layer
    with more than 32 x 32 weights). Columns longer than ``max_neurons`` show
    their first neurons, a gap, and the last one.

    Args:
        net: a :class:`jaxnn.Network`.
        params: its parameters.
        x: ONE example, shape (ins,).
        t: its target, as ``net.loss`` takes it.
        report: optional :class:`jaxnn.GradientReport` from
            :func:`jaxnn.check_gradients`; the layers whose rows fail are
            shaded red, and the building block that fails is named.
        ax: the Axes to draw on; default a new figure sized to the network.
        decimals: digits after the point; numbers under 0.1 are written
            with as many significant digits (``-5.5e-3``).
        max_neurons: the most neurons drawn per column.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: if ``x`` is a batch (pass ``x[0]``), or does not fit the network.

    >>> import jax, jaxnn, matplotlib.figure
    >>> net = jaxnn.Network.from_sizes((2, 3, 2), jaxnn.Sigmoid(), jaxnn.MSELoss())
    >>> params = net.init(jax.random.key(0))
    >>> ax = recursion_diagram(net, params, jax.numpy.array([0.5, -1.0]),
    ...                        jax.numpy.array([1.0, 0.0]),
    ...                        ax=matplotlib.figure.Figure().add_subplot())
    >>> # 2 + 3 + 2 neurons
    >>> sum(isinstance(p, matplotlib.patches.Circle) for p in ax.patches)
    7
    """
    check_network("net", net)
    _check_ax(ax)
    decimals = non_negative_int("decimals", decimals)
    max_neurons = positive_int("max_neurons", max_neurons)
    net.check_params(params)
    if report is not None and not isinstance(report, GradientReport):
        raise TypeError(f"report must be a jaxnn.GradientReport from check_gradients, got {type(report).__name__}")
    shape = np.shape(as_array("x", x)) if x is not None else ()
    if len(shape) != 1:
        raise ValueError(
            f"recursion_diagram draws one example: x must have shape ({net.layers[0].ins},), got "
            f"{shape}; for a batch, pass one example such as x[0] (and t[0])"
        )
    if max_neurons < 2:
        raise ValueError(f"max_neurons must be at least 2, got {max_neurons}")
    trace = net.backprop_trace(params, x, t)
    xs = [np.asarray(v) for v in trace.xs]
    dxs = [np.asarray(v) for v in trace.dxs]
    # Column i's neurons are computed by layer i - 1; the inputs have no bias.
    dbs = [None] + [np.asarray(db) for _, db in trace.grads]
    Ws = [np.asarray(W) for W, _ in params]
    n_layers = len(net.layers)
    t = np.asarray(t)

    # Layout in data units: columns `gap` apart, neurons `row` apart, circles of radius r.
    gap, row, r = 5.0, 2.3, 0.62
    shown = [_shown(len(v), max_neurons) for v in xs]
    height = max(len(s) for s in shown)
    ys = [{k: ((len(s) - 1) / 2 - j) * row for j, k in enumerate(s)} for s in shown]
    cols = [c * gap for c in range(n_layers + 1)]
    loss_x = cols[-1] + gap * 0.95
    # The x range: the network, widened (centred) to at least what the captions need.
    x_lo, x_hi = cols[0] - 1.3, loss_x + 2.0
    widen = max(0.0, 24.0 - (x_hi - x_lo)) / 2
    x_lo, x_hi = x_lo - widen, x_hi + widen
    top, bottom = (height - 1) / 2 * row, -(height - 1) / 2 * row
    fmt = lambda v: _fmt(float(v), decimals)

    failing, blocks, loss_fails = set(), {}, False
    if report is not None:
        failing = {row_.layer for row_ in report.rows if not row_.ok}
        for comp in report.components:
            if not comp.ok:
                if comp.layer is None:
                    loss_fails = True
                else:
                    blocks.setdefault(comp.layer, comp.name)

    if ax is None:  # half an inch per data unit, the margins included
        ax = _new_axes((0.5 * (x_hi - x_lo), 0.5 * (top - bottom + 12.4 + 1.7 * bool(failing))))
    ax.set_aspect("equal")
    ax.axis("off")

    # Failing layers: layer i computes column i + 1 from column i. Their notes go under the neurons.
    notes_h = 1.7 if failing else 0.0
    for i in sorted(failing):
        left, right = cols[i] + 1.15, cols[i + 1] + 1.15
        low = bottom - 2.0 - notes_h
        ax.add_patch(Rectangle((left, low), right - left, top + 0.9 - low,
                               facecolor=to_rgba(_FAIL, 0.08), edgecolor=_FAIL, linewidth=1.8,
                               zorder=0))
        note = f"layer {i}: gradient check FAILS"
        if i in blocks:
            block = blocks[i].removeprefix(f"layer {i} ")
            note += f"\nthe error enters here:\n{block}"
        ax.text((left + right) / 2, bottom - 1.95, note, ha="center", va="top", fontsize=9,
                color=_FAIL, fontweight="bold")

    # Edges: one line per drawn weight, width and opacity by |W|.
    for i, W in enumerate(Ws):
        x_mid = (cols[i] + cols[i + 1]) / 2
        ax.text(x_mid, top + 1.3, f"$W_{i}$, $b_{i}$\n{W.shape[0]}×{W.shape[1]}", ha="center",
                va="bottom", fontsize=9.5, color="0.35")
        if W.size > 32 * 32:
            ax.text(x_mid, 0, f"{W.size:,} weights:\nedges not drawn", ha="center", va="center",
                    fontsize=9, color="0.4", style="italic")
            continue
        scale = np.abs(W).max() or 1.0
        segments, widths, colors = [], [], []
        for k, yk in ys[i].items():
            for j, yj in ys[i + 1].items():
                if k is None or j is None:
                    continue
                w = abs(W[j, k]) / scale
                segments.append([(cols[i] + r, yk), (cols[i + 1] - r, yj)])
                widths.append(0.3 + 2.2 * w)
                colors.append(to_rgba("0.45", 0.15 + 0.6 * w))
        ax.add_collection(LineCollection(segments, linewidths=widths, colors=colors, zorder=1))

    # Neurons: the forward value inside, the backward values under it.
    for c, (x_c, shown_c) in enumerate(zip(cols, ys)):
        for k, yk in shown_c.items():
            if k is None:
                ax.text(x_c, yk, f"⋮\n{len(xs[c]) - max_neurons} more", ha="center",
                        va="center", fontsize=9, color="0.3")
                continue
            ax.add_patch(Circle((x_c, yk), r, facecolor="#deebf7", edgecolor=_FORWARD,
                                linewidth=1.2, zorder=2))
            value = fmt(xs[c][k])
            ax.text(x_c, yk, value, ha="center", va="center", color=_FORWARD, zorder=3,
                    fontsize=10 if len(value) <= 5 else 8.5)  # long numbers still fit the circle
            under = [("dx", dxs[c][k], _DX)] if dbs[c] is None else [
                ("db", dbs[c][k], _DB), ("dx", dxs[c][k], _DX)]
            for line, (name, value, color) in enumerate(under):
                ax.text(x_c, yk - r - 0.1 - 0.5 * line, f"{name} {fmt(value)}", ha="center",
                        va="top", fontsize=9, color=color, zorder=3)
        title = "input" if c == 0 else ("output" if c == n_layers else "hidden")
        what = "" if c == 0 else f"\n{_activation_name(net.layers[c - 1].activation)}"
        ax.text(x_c, top + 1.3, f"{title} $x_{c}${what}", ha="center", va="bottom", fontsize=11,
                fontweight="bold" if c in (0, n_layers) else None)

    # The target and the loss.
    per_neuron_t = t.shape == xs[-1].shape
    box_w, box_h = 3.0, 2.6
    ax.add_patch(FancyBboxPatch((loss_x - box_w / 2, -box_h / 2), box_w, box_h,
                                boxstyle="round,pad=0.15", facecolor="#fff5e6",
                                edgecolor=_FAIL if loss_fails else "0.3",
                                linewidth=2.5 if loss_fails else 1, zorder=2))
    t_text = "" if per_neuron_t else f"\nt = {t.tolist()}"
    ax.text(loss_x, 0, f"L = {_fmt(float(trace.loss), decimals + 1)}{t_text}\n"
            f"{type(net.loss_fn).__name__}", ha="center", va="center", fontsize=10, zorder=3)
    ax.text(loss_x, top + 1.3, "loss", ha="center", va="bottom", fontsize=11, fontweight="bold")
    if loss_fails:
        ax.text(loss_x, -box_h / 2 - 0.4, "dloss FAILS:\nthe error enters here", ha="center",
                va="top", fontsize=9, color=_FAIL, fontweight="bold")
    segments = []
    shrink = min(1.0, (box_h / 2 - 0.3) / max(max(abs(y) for y in ys[-1].values()), 1e-9))
    for k, yk in ys[-1].items():
        if k is None:
            continue
        end = (loss_x - box_w / 2 - 0.15, yk * shrink)
        segments.append([(cols[-1] + r, yk), end])
        if per_neuron_t:  # the target on the line, between output and loss
            ax.text(cols[-1] + r + 1.1, yk + (end[1] - yk) * 1.1 / (end[0] - cols[-1] - r),
                    f"t {fmt(t[k])}", ha="center", va="center", fontsize=9, color="#2e7d32",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"),
                    zorder=3)
    ax.add_collection(LineCollection(segments, linewidths=0.8, colors="0.6", zorder=1))

    # The two directions, and what the numbers are.
    arrow = dict(arrowstyle="-|>", mutation_scale=20, linewidth=2.2)
    y_fwd, y_bwd = top + 3.6, bottom - 2.5 - notes_h
    ax.annotate("", xy=(loss_x, y_fwd), xytext=(cols[0], y_fwd),
                arrowprops=dict(arrow, color=_FORWARD))
    ax.text((cols[0] + loss_x) / 2, y_fwd + 0.3,
            r"forward, left to right: $x_{i+1} = f_i(y_i)$ with $y_i = W_i x_i + b_i$, "
            r"then the loss $L(x_n, t)$", ha="center", va="bottom", fontsize=11, color=_FORWARD)
    ax.annotate("", xy=(cols[0], y_bwd), xytext=(loss_x, y_bwd),
                arrowprops=dict(arrow, color=_DX))
    ax.text((cols[0] + loss_x) / 2, y_bwd - 0.35,
            r"backward, right to left: $dx_n = \partial L / \partial x_n$, then for each layer "
            r"$db_i = f_i'(y_i) \odot dx_{i+1}$,  $dx_i = W_i^T db_i$,  $dW_i = db_i\, x_i^T$",
            ha="center", va="top", fontsize=11, color=_DX)
    caption = [
        (_FORWARD, "number in a neuron: its value x, computed on the way forward"),
        (_DB, "db: dL/db = f'(y) · dx, the gradient of the bias of the layer computing the "
              "neuron (and dW = db xᵀ)"),
        (_DX, "dx: dL/dx, how the loss changes with the neuron's value; it flows back along "
              "the edges as dx = Wᵀ db"),
    ]
    for line, (color, text) in enumerate(caption):
        ax.text(x_lo + 0.3, y_bwd - 1.9 - 0.75 * line, text, ha="left", va="top",
                fontsize=10, color=color)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_bwd - 4.3, y_fwd + 1.5)
    return ax
