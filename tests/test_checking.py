"""check_gradients: correct gradients pass; planted bugs are caught and located at the right layer and parameter."""

import dataclasses

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from tests.helpers import TanhWrongDerivative, examples, random_problem, smooth_architectures


# --- planted bugs ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MSEHalfDerivative(jaxnn.MSELoss):
    """MSE whose derivative forgot the factor 2: (out - t) / n."""

    def dloss(self, out, t):
        return (out - t) / out.shape[-1]


# The x64 context manager: jax.enable_x64 in newer JAX, jax.experimental.enable_x64 in the oldest
# supported (0.6, 0.7).
enable_x64 = getattr(jax, "enable_x64", None)
if enable_x64 is None:
    enable_x64 = jax.experimental.enable_x64


def planted_backprop(net, bug, at):
    """The backpropagation recursion written out again, with one bug planted at layer ``at``.

    bug: "transpose_dW" (dW = x db^T), "transpose_dx" (dx = W db), "drop_db" (db returned as 0),
    "batch_scale" (the mean over the batch forgotten in dloss).
    """

    def backprop(params, x, t):
        trace = net.backprop_trace(params, x, t)  # only its forward pass, xs and ys, is used
        xs, ys = trace.xs, trace.ys
        dx = net.loss_fn.dloss(xs[-1], t)
        if bug != "batch_scale" or at != len(net.layers) - 1:
            dx = dx / x.shape[0]
        grads = []
        for i in reversed(range(len(net.layers))):
            (W, _), x_in, y = params[i], xs[i], ys[i]
            db = net.layers[i].activation.backward(y, dx)
            dW = x_in.T @ db if (bug, at) == ("transpose_dW", i) else db.T @ x_in
            dx = db @ W.T if (bug, at) == ("transpose_dx", i) else db @ W
            db = jnp.sum(db, axis=0)
            grads.append((dW, jnp.zeros_like(db) if (bug, at) == ("drop_db", i) else db))
        return grads[::-1]

    return backprop


def failing(report):
    return {(r.layer, r.param) for r in report.rows if not r.ok}


@pytest.fixture(scope="module")
def square_net(make_problem):
    """Three layers, the middle one square (4 -> 4) so transposes still fit; a batch of 6."""
    return make_problem((3, 4, 4, 2), [jaxnn.Tanh(), jaxnn.Sigmoid(), jaxnn.Tanh()], 6)


@pytest.mark.slow
def test_correct_recursion_passes_every_row(square_net):
    net, params, x, t = square_net
    report = jaxnn.check_gradients(net, params, x, t, backprop=planted_backprop(net, None, None))
    assert report.ok, str(report)
    assert [(r.layer, r.param, r.shape) for r in report.rows] == [
        (0, "W", (4, 3)), (0, "b", (4,)), (1, "W", (4, 4)), (1, "b", (4,)), (2, "W", (2, 4)), (2, "b", (2,))
    ]
    for r in report.rows:
        assert r.manual_vs_autodiff.error < 1e-13
        assert r.manual_vs_fd.error < 1e-8 and r.manual_vs_fd.checked == np.prod(r.shape)
    report.raise_if_failed()  # does not raise


def test_transposed_dW_is_located_at_that_layers_W(square_net):
    net, params, x, t = square_net
    report = jaxnn.check_gradients(net, params, x, t, backprop=planted_backprop(net, "transpose_dW", 1))
    assert not report.ok
    assert failing(report) == {(1, "W")}
    row = report.rows[2]
    assert not row.manual_vs_fd.ok and row.autodiff_vs_fd.ok  # finite differences side with jax.grad
    # The worst entry really is where the hand-written dW is furthest from the truth.
    manual = planted_backprop(net, "transpose_dW", 1)(params, x, t)[1][0]
    truth = jax.grad(net.loss)(params, x, t)[1][0]
    assert row.manual_vs_autodiff.worst == np.unravel_index(np.argmax(np.abs(manual - truth)), (4, 4))
    assert "layer 1 (W)" in report.diagnosis and "dW = db x^T" in report.diagnosis
    with pytest.raises(jaxnn.GradientCheckError, match="layer 1"):
        report.raise_if_failed()


def test_dropped_bias_gradient_is_located_at_that_layers_b(square_net):
    net, params, x, t = square_net
    report = jaxnn.check_gradients(net, params, x, t, backprop=planted_backprop(net, "drop_db", 2))
    assert failing(report) == {(2, "b")}
    assert report.rows[5].manual_vs_autodiff.max_rel == pytest.approx(1.0)
    assert "layer 2 (b)" in report.diagnosis


def test_missing_transpose_in_dx_is_located_below_that_layer(square_net):
    # dx = W db instead of W^T db in layer 1 leaves layer 1's own dW, db right and corrupts all below.
    net, params, x, t = square_net
    report = jaxnn.check_gradients(net, params, x, t, backprop=planted_backprop(net, "transpose_dx", 1))
    assert failing(report) == {(0, "W"), (0, "b")}
    assert "layer 0 (W, b)" in report.diagnosis and "handed down by layer 1" in report.diagnosis


def test_forgotten_batch_mean_fails_every_layer_from_the_last(square_net):
    net, params, x, t = square_net
    report = jaxnn.check_gradients(net, params, x, t, backprop=planted_backprop(net, "batch_scale", 2))
    assert failing(report) == {(i, p) for i in range(3) for p in "Wb"}
    assert "layer 2 (W, b)" in report.diagnosis and "dloss" in report.diagnosis
    # Every hand-written entry is 6 (the batch) times too big: relative error 5/6 everywhere.
    assert report.rows[0].manual_vs_autodiff.max_rel == pytest.approx(5 / 6)


def test_wrong_activation_derivative_is_located_and_blamed(square_net):
    net, params, x, t = square_net
    layers = list(net.layers)
    layers[1] = jaxnn.Layer(4, 4, TanhWrongDerivative())
    bad = jaxnn.Network(layers, net.loss_fn)
    report = jaxnn.check_gradients(bad, params, x, t)
    assert failing(report) == {(0, "W"), (0, "b"), (1, "W"), (1, "b")}
    assert [c.ok for c in report.components] == [True, False, True, True]
    assert "layer 1 (W, b)" in report.diagnosis and "TanhWrongDerivative" in report.diagnosis
    assert "FAIL" in str(report)


def test_wrong_loss_derivative_scale_is_blamed_on_the_loss(square_net):
    net, params, x, t = square_net
    bad = jaxnn.Network(net.layers, MSEHalfDerivative())
    report = jaxnn.check_gradients(bad, params, x, t)
    assert failing(report) == {(i, p) for i in range(3) for p in "Wb"}
    assert report.rows[4].manual_vs_autodiff.max_rel == pytest.approx(0.5)
    assert [c.ok for c in report.components] == [True, True, True, False]
    assert "MSEHalfDerivative" in report.diagnosis


@dataclasses.dataclass(frozen=True)
class SoftmaxDiagonalOnly(jaxnn.Softmax):
    """Softmax whose backward keeps only the Jacobian's diagonal s (1 - s): a non-elementwise slip."""

    def backward(self, y, g):
        s = jax.nn.softmax(y, axis=-1)
        return s * (1 - s) * g


@pytest.mark.slow
def test_wrong_non_elementwise_backward_is_located(square_net):
    net, params, x, t = square_net
    layers = list(net.layers)
    layers[2] = jaxnn.Layer(4, 2, SoftmaxDiagonalOnly())
    report = jaxnn.check_gradients(jaxnn.Network(layers, net.loss_fn), params, x, t, compare_jit=False)
    assert failing(report) == {(i, p) for i in range(3) for p in "Wb"}
    assert [c.ok for c in report.components] == [True, True, False, True]
    assert "layer 2 (W, b)" in report.diagnosis and "SoftmaxDiagonalOnly" in report.diagnosis
    # The correct Softmax passes at the same point.
    layers[2] = jaxnn.Layer(4, 2, jaxnn.Softmax())
    assert jaxnn.check_gradients(jaxnn.Network(layers, net.loss_fn), params, x, t, compare_jit=False).ok


# --- kinks, dtypes, batches, jit -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UndeclaredKinkReLU(jaxnn.ReLU):
    """ReLU that does not declare its kink, so finite differences across it count."""

    kinks = ()


def _relu_net_at_kink(activation):
    net = jaxnn.Network([jaxnn.Layer(2, 3, activation), jaxnn.Layer(3, 1, jaxnn.Identity())], jaxnn.MSELoss())
    W0 = jnp.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.3]])
    b0 = jnp.array([0.0, 0.1, 0.2])
    params = [(W0, b0), (jnp.array([[1.0, -2.0, 0.5]]), jnp.array([0.3]))]
    x = jnp.array([[1.0, 1.0], [0.4, -0.2]])  # unit 0 sits exactly on the kink for the first example
    return net, params, x, jnp.array([[2.0], [-1.0]])


@pytest.mark.slow
def test_finite_differences_across_a_kink_are_flagged_not_counted():
    net, params, x, t = _relu_net_at_kink(jaxnn.ReLU())
    report = jaxnn.check_gradients(net, params, x, t, compare_jit=False)
    assert report.ok, str(report)
    row = report.rows[0]  # W0: its first row moves the pre-activation at the kink
    assert row.manual_vs_fd.skipped >= 1
    assert "across a kink" in str(report)
    # Undeclared, the same kink makes the finite differences disagree with both gradients.
    undeclared = jaxnn.check_gradients(*_relu_net_at_kink(UndeclaredKinkReLU()))
    assert not undeclared.rows[0].manual_vs_fd.ok and not undeclared.rows[0].autodiff_vs_fd.ok
    assert undeclared.rows[0].manual_vs_autodiff.ok


@pytest.mark.slow
def test_float32_params_use_float32_tolerances_and_float64_differences():
    net = jaxnn.Network.from_sizes((3, 5, 2), [jaxnn.Sigmoid(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(3), dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(4), (5, 3), jnp.float32)
    with enable_x64(False):  # finite differences switch float64 on by themselves
        labels = jnp.array([0, 1, 1, 0, 1])
        report = jaxnn.check_gradients(net, params, x, labels)
    assert report.ok, str(report)
    assert report.tolerances.dtype == "float32"
    assert report.tolerances.same == pytest.approx(np.finfo(np.float32).eps ** 0.5)
    # A derivative off by 1% is still far outside float32's tolerance.
    scaled = lambda p, x, t: jax.tree.map(lambda g: g * 1.01, net.backprop(p, x, t))
    with enable_x64(False):
        assert not jaxnn.check_gradients(net, params, x, labels, backprop=scaled).ok


@pytest.mark.slow
def test_one_example_and_jitted_backprop():
    net = jaxnn.Network.from_sizes((4, 3, 3), [jaxnn.Tanh(), jaxnn.Softmax()], jaxnn.MSELoss())
    params = net.init(jax.random.key(5))
    report = jaxnn.check_gradients(net, params, jnp.arange(4.0), jnp.array([0.0, 1.0, 0.0]),
                                   backprop=jax.jit(net.backprop))
    assert report.ok and report.batch is None and report.jit.max_abs < 1e-15
    assert "one example" in str(report)


@pytest.mark.slow
def test_large_parameters_are_sampled_for_finite_differences():
    net = jaxnn.Network.from_sizes((20, 6, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(jax.random.key(6))
    x, t = jnp.ones((2, 20)), jnp.zeros((2, 2))
    bug = lambda p, x, t: [(dW.at[3, 17].add(1.0) if i == 0 else dW, db)
                           for i, (dW, db) in enumerate(net.backprop(p, x, t))]
    report = jaxnn.check_gradients(net, params, x, t, backprop=bug, fd_entries=10, compare_jit=False)
    row = report.rows[0]
    assert row.manual_vs_fd.checked == 10
    # The entry where the two gradients differ is always among those checked by finite differences.
    assert row.manual_vs_autodiff.worst == row.manual_vs_fd.worst == (3, 17)
    assert failing(report) == {(0, "W")}
    assert report.jit is None
    unchecked = jaxnn.check_gradients(net, params, x, t, backprop=bug, fd_entries=0, compare_jit=False)
    assert unchecked.rows[0].manual_vs_fd is None and failing(unchecked) == {(0, "W")}


@pytest.mark.slow
def test_report_columns_stay_aligned_for_a_wide_layer():
    net = jaxnn.Network.from_sizes((784, 128, 10), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(jax.random.key(7))
    x, t = jnp.ones((2, 784)), jnp.zeros((2, 10))
    bug = lambda p, x, t: [(dW.at[127, 783].add(1.0) if i == 0 else dW, db)
                           for i, (dW, db) in enumerate(net.backprop(p, x, t))]
    report = jaxnn.check_gradients(net, params, x, t, backprop=bug, fd_entries=4, compare_jit=False)
    lines = str(report).splitlines()
    header = lines[1]
    rows = lines[2:2 + 3 * len(report.rows)]
    assert "(128, 784)" in rows[0] and "[127, 783]" in rows[0]
    # Every row's comparison, worst index and verdict start under their heading, after a space.
    columns = [header.index(name) for name in ("comparison", "worst at", "verdict")]
    for line in rows:
        comparison, worst, verdict = (line[c:] for c in columns)
        assert comparison.startswith(("manual vs", "jax.grad vs")), line
        assert worst.startswith("[") and verdict.startswith(("ok", "FAIL")), line
        assert all(line[c - 1] == " " for c in columns), line


def test_bad_backprop_output_is_named():
    net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    bad = lambda p, x, t: [(dW.T, db) for dW, db in net.backprop(p, x, t)]
    with pytest.raises(ValueError, match=r"layer 0 dW must have the shape of W, \(4, 3\), got \(3, 4\)"):
        jaxnn.check_gradients(net, params, jnp.ones(3), jnp.zeros(2), backprop=bad)
    with pytest.raises(ValueError, match="fd_entries"):
        jaxnn.check_gradients(net, params, jnp.ones(3), jnp.zeros(2), fd_entries=-1)


@pytest.mark.slow
@hypothesis.settings(max_examples=examples(3), deadline=None)
@hypothesis.given(**smooth_architectures())
def test_random_architectures_pass(sizes, acts, batch, seed):
    net, params, x, t = random_problem(sizes, acts, batch, seed)
    report = jaxnn.check_gradients(net, params, x, t, compare_jit=False)
    assert report.ok, str(report)



@pytest.mark.slow
def test_binary_cross_entropy_passes():
    net = jaxnn.Network.from_sizes((3, 4, 1), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.BinaryCrossEntropyLoss())
    params = net.init(jax.random.key(7), bias_init="normal")
    x = jax.random.normal(jax.random.key(8), (6, 3))
    for t in (jnp.array([0, 1, 1, 0, 1, 0]), jnp.full((6, 1), 0.3)):
        report = jaxnn.check_gradients(net, params, x, t)
        assert report.ok, str(report)
        assert report.components[-1].name == "loss BinaryCrossEntropyLoss()"


@pytest.mark.slow
def test_float32_params_under_64_bit_jax_warn_that_the_comparison_is_float32():
    net = jaxnn.Network.from_sizes((3, 4, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    params32 = net.init(jax.random.key(0), dtype=jnp.float32)  # as if made before x64 was switched on
    x, t = jnp.ones((2, 3), jnp.float64), jnp.zeros((2, 2), jnp.float64)
    with pytest.warns(UserWarning, match=r"64-bit JAX is on but the parameters are float32.*"
                                         r"net\.init\(key, dtype=jnp\.float64\)") as caught:
        report = jaxnn.check_gradients(net, params32, x, t, fd_entries=0, compare_jit=False)
    assert len(caught) == 1 and caught[0].filename == __file__
    assert report.ok and report.tolerances.dtype == "float32"
    params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params32)  # the fix the warning gives: no warning
    assert jaxnn.check_gradients(net, params64, x, t, fd_entries=0, compare_jit=False).tolerances.dtype == "float64"
