"""jaxnn.plotting: each picture has the artists it should, bad input fails clearly, and
``import jaxnn`` stays free of matplotlib."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402

from jaxnn import plotting  # noqa: E402
from tests.helpers import TanhWrongDerivative  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def render(ax, tmp_path, name):
    """Draw the figure to a PNG (mathtext and layout errors only show up when drawing)."""
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path, dpi=50)
    assert path.stat().st_size > 1000


def quadrant_net():
    return jaxnn.Network([jaxnn.Layer(2, 4, jaxnn.Tanh()), jaxnn.Layer(4, 2, jaxnn.Identity())],
                         jaxnn.CrossEntropyLoss())


# --- import hygiene ------------------------------------------------------------------


def python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_import_jaxnn_does_not_import_matplotlib():
    result = python("import sys, jaxnn; "
                    "print('matplotlib' in sys.modules, 'jaxnn.plotting' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_import_plotting_without_matplotlib_names_the_fix():
    result = python("import sys; sys.modules['matplotlib'] = None; import jaxnn.plotting")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "pip install 'jaxnn[plot]'" in result.stderr


# --- decision_regions ----------------------------------------------------------------


@pytest.mark.slow
def test_decision_regions_points_and_misclassified(tmp_path):
    net = quadrant_net()
    params = net.init(jax.random.key(0))
    x = np.asarray(jax.random.uniform(jax.random.key(1), (200, 2), minval=-2, maxval=2))
    t = (x[:, 0] * x[:, 1] < 0).astype(int)
    ax = plotting.decision_regions(net, params, x, t)
    wrong = np.argmax(np.asarray(net.forward(params, x)), -1) != t
    assert len(ax.images) == 1
    # One scatter per true class, then the crosses.
    assert len(ax.collections) == 3
    assert len(ax.collections[-1].get_offsets()) == wrong.sum()
    assert ax.get_title() == f"{np.mean(~wrong):.1%} of 200 points correct"
    lo, hi = ax.get_xlim()
    assert lo < x[:, 0].min() and hi > x[:, 0].max()
    render(ax, tmp_path, "regions")
    # One-hot targets give the same picture.
    ax2 = plotting.decision_regions(net, params, x, np.eye(2)[t])
    assert len(ax2.collections[-1].get_offsets()) == wrong.sum()


def test_decision_regions_single_output_thresholds_at_half():
    net = jaxnn.Network([jaxnn.Layer(2, 1, jaxnn.Sigmoid())], jaxnn.MSELoss())
    params = [(jnp.array([[10.0, 0.0]]), jnp.zeros(1))]  # output > 0.5 exactly where x0 > 0
    ax = plotting.decision_regions(net, params, resolution=20)
    regions = np.asarray(ax.images[0].get_array())
    assert regions.shape == (20, 20)
    assert (regions[:, :10] == 0).all() and (regions[:, 10:] == 1).all()
    assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-2.0, 2.0)


def test_decision_regions_on_given_axes_with_bounds():
    net = quadrant_net()
    params = net.init(jax.random.key(0))
    fig, (left, right) = plt.subplots(1, 2)
    ax = plotting.decision_regions(net, params, ax=right, bounds=((0, 1), (-3, 3)), title="t")
    assert ax is right and not left.images
    assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (-3, 3) and ax.get_title() == "t"


def test_decision_regions_errors():
    net3 = jaxnn.Network([jaxnn.Layer(3, 2, jaxnn.Identity())], jaxnn.MSELoss())
    with pytest.raises(ValueError, match="2 inputs, but net.layers\\[0\\].ins is 3"):
        plotting.decision_regions(net3, net3.init(jax.random.key(0)))
    net = quadrant_net()
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match="x must have shape \\(n, 2\\)"):
        plotting.decision_regions(net, params, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="t must be labels"):
        plotting.decision_regions(net, params, np.zeros((5, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="bounds"):
        plotting.decision_regions(net, params, bounds=(1, -1))


# --- training_curves -----------------------------------------------------------------


def test_training_curves_losses_left_accuracy_right(tmp_path):
    n = 30
    history = {
        "loss": np.exp(-np.arange(n) / 3.0),  # spans ~4 decades: log scale
        "val_loss": np.where(np.arange(n) % 5 == 4, np.exp(-np.arange(n) / 4.0), np.nan),
        "val_accuracy": np.linspace(0.5, 0.95, n),
    }
    ax = plotting.training_curves(history)
    assert [line.get_label() for line in ax.lines] == ["loss", "val_loss"]
    assert [line.get_label() for line in ax.right_ax.lines] == ["val_accuracy"]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(1, n + 1))  # no "epoch"
    assert len(ax.lines[1].get_xdata()) == 6  # NaN epochs left out
    assert ax.get_yscale() == "log" and ax.right_ax.get_ylabel() == "accuracy"
    render(ax, tmp_path, "curves")


def test_training_curves_epoch_key_linear_scale_and_metrics():
    history = {"epoch": np.array([11, 12, 13]), "loss": np.array([1.0, 0.8, 0.5]),
               "accuracy": np.array([0.1, 0.2, 0.3])}
    ax = plotting.training_curves(history, metrics=["loss"])
    assert len(ax.lines) == 1 and not hasattr(ax, "right_ax")
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [11, 12, 13])
    assert ax.get_yscale() == "linear"


def test_training_curves_overlays_runs(tmp_path):
    runs = {f"lr {lr}": {"loss": np.exp(-lr * np.arange(10)), "val_accuracy": np.full(10, lr)}
            for lr in (0.1, 0.3, 1.0)}
    ax = plotting.training_curves(runs)
    assert len(ax.lines) == 3 and len(ax.right_ax.lines) == 3
    legend = ax.right_ax.get_legend()
    assert "lr 0.3: loss" in [text.get_text() for text in legend.get_texts()]
    # One colour per run, the same on both axes.
    assert ax.lines[1].get_color() == ax.right_ax.lines[1].get_color()
    render(ax, tmp_path, "runs")


def test_training_curves_errors():
    with pytest.raises(TypeError, match="history must be"):
        plotting.training_curves([1.0, 0.5])
    with pytest.raises(ValueError, match="one length"):
        plotting.training_curves({"loss": np.ones(3), "val_loss": np.ones(2)})
    with pytest.raises(ValueError, match="in no history"):
        plotting.training_curves({"loss": np.ones(3)}, metrics=["val_accuracy"])


# --- gradient_norms ------------------------------------------------------------------


def test_gradient_norms_bars(tmp_path):
    net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0), bias_init="normal")
    x, t = jnp.ones((5, 3)), jnp.zeros((5, 2))
    grads = net.backprop(params, x, t)
    ax = plotting.gradient_norms(grads)
    heights = [p.get_height() for p in ax.patches]
    expected = [float(jnp.linalg.norm(g)) for layer in grads for g in layer]
    np.testing.assert_allclose(heights, expected, rtol=1e-12)
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dW0", "db0", "dW1", "db1"]
    render(ax, tmp_path, "norms")

    both = {"manual": grads, "autodiff": jax.grad(net.loss)(params, x, t)}
    ax = plotting.gradient_norms(both, log=False)
    assert len(ax.patches) == 8 and ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["manual", "autodiff"]
    render(ax, tmp_path, "norms2")


def test_gradient_norms_errors():
    g = [(np.ones((2, 2)), np.ones(2))]
    with pytest.raises(ValueError, match="different numbers of layers"):
        plotting.gradient_norms({"a": g, "b": g + g})
    with pytest.raises(TypeError, match="list of \\(dW, db\\) pairs"):
        plotting.gradient_norms([np.ones(3)])


# --- recursion_diagram ---------------------------------------------------------------


def texts(ax):
    return [t.get_text() for t in ax.texts]


def is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_recursion_diagram_shows_forward_and_backward_values(tmp_path):
    net = jaxnn.Network.from_sizes((2, 3, 2), jaxnn.Sigmoid(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0), bias_init="normal")
    x, t = jnp.array([0.5, -1.0]), jnp.array([1.0, 0.0])
    ax = plotting.recursion_diagram(net, params, x, t, decimals=3)
    trace = net.backprop_trace(params, x, t)
    assert sum(isinstance(p, Circle) for p in ax.patches) == 7

    def numbers(prefix):
        return [float(s.split()[-1]) for s in texts(ax) if s.startswith(prefix)]

    # Read back to the digits shown (3 significant): forward values, then db and dx per column.
    forward = [float(s) for s in texts(ax) if is_number(s)]  # the numbers inside the neurons
    expected_x = np.concatenate([np.asarray(v) for v in trace.xs])
    np.testing.assert_allclose(forward, expected_x, rtol=5e-3)
    expected_db = np.concatenate([np.asarray(db) for _, db in trace.grads])
    np.testing.assert_allclose(numbers("db "), expected_db, rtol=5e-3)
    np.testing.assert_allclose(numbers("dx "), np.concatenate([np.asarray(v) for v in trace.dxs]),
                               rtol=5e-3)
    assert not [p for p in ax.patches if isinstance(p, Rectangle)]  # no report: nothing flagged
    render(ax, tmp_path, "recursion")


@pytest.mark.slow
def test_recursion_diagram_caps_wide_layers(tmp_path):
    net = jaxnn.Network.from_sizes((784, 16, 10), jaxnn.LeakyReLU(), jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0))
    ax = plotting.recursion_diagram(net, params, jnp.linspace(0, 1, 784), 3, max_neurons=12)
    assert sum(isinstance(p, Circle) for p in ax.patches) == 12 + 12 + 10
    shown = texts(ax)
    assert "⋮\n772 more" in shown and "⋮\n4 more" in shown
    assert any("edges not drawn" in s for s in shown)  # 16 x 784 weights
    render(ax, tmp_path, "wide")


@pytest.mark.slow
def test_recursion_diagram_highlights_failing_layers(tmp_path):
    net = jaxnn.Network([jaxnn.Layer(3, 4, jaxnn.Tanh()), jaxnn.Layer(4, 4, TanhWrongDerivative()),
                         jaxnn.Layer(4, 2, jaxnn.Identity())], jaxnn.MSELoss())
    params = net.init(jax.random.key(0), bias_init="normal")
    x, t = jnp.array([0.3, -0.7, 1.1]), jnp.array([0.5, -0.5])
    report = jaxnn.check_gradients(net, params, x, t)
    failing = {row.layer for row in report.rows if not row.ok}
    assert not report.ok and 1 in failing and 2 not in failing
    ax = plotting.recursion_diagram(net, params, x, t, report=report)
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(frames) == len(failing)
    notes = [s for s in texts(ax) if "FAILS" in s]
    assert sorted(int(s.split()[1].rstrip(":")) for s in notes) == sorted(failing)
    # The wrong derivative is in layer 1's activation: the note says the error enters there.
    assert [s.split(":")[0] for s in notes if "error enters here" in s] == ["layer 1"]
    render(ax, tmp_path, "failing")


def test_recursion_diagram_passing_report_flags_nothing():
    net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0), bias_init="normal")
    x, t = jnp.array([0.3, -0.7, 1.1]), jnp.array([0.5, -0.5])
    report = jaxnn.check_gradients(net, params, x, t)
    assert report.ok
    ax = plotting.recursion_diagram(net, params, x, t, report=report)
    assert not [p for p in ax.patches if isinstance(p, Rectangle)]
    assert not [s for s in texts(ax) if "FAILS" in s]


def test_recursion_diagram_errors():
    net = jaxnn.Network.from_sizes((2, 3, 2), jaxnn.Sigmoid(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match="one example.*x\\[0\\]"):
        plotting.recursion_diagram(net, params, jnp.ones((4, 2)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="last dimension 3"):
        plotting.recursion_diagram(net, params, jnp.ones(3), jnp.ones(2))
    # a ragged list: NumPy's own error, raised outside jaxnn, before
    with pytest.raises(ValueError, match="^x must be a rectangular array of numbers"):
        plotting.recursion_diagram(net, params, [[1.0, 2.0], [1.0]], [1.0, 0.0])
