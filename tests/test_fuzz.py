"""Malformed arguments of every kind at every public function.

Each call must either succeed with a finite result of the documented shape
(NaN out only when NaN or inf went in, and only from the pure functions that
do not read values), or raise ValueError or TypeError (FileNotFoundError or
IsADirectoryError for paths) from a frame inside the jaxnn package, never
from JAX, NumPy or optax.
"""

import os
import pathlib
import traceback
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnn

pytestmark = pytest.mark.slow  # hundreds of drawn values at every public function

PACKAGE = os.path.dirname(os.path.abspath(jaxnn.__file__))
FUZZ = settings(max_examples=25, deadline=None)
PATH_ERRORS = (FileNotFoundError, IsADirectoryError)

NET = jaxnn.Network.from_sizes((3, 4, 2), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.MSELoss())
CE = jaxnn.Network.from_sizes((3, 4, 2), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
PARAMS = NET.init(jax.random.key(0))


class Opaque:
    """An object of no kind jaxnn knows."""


def raised_in_jaxnn(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(PACKAGE + os.sep)


def attempt(call, allowed=(ValueError, TypeError)):
    """``(True, result)`` or ``(False, error)`` after checking the error's kind and origin."""
    try:
        return True, call()
    except allowed as err:
        assert raised_in_jaxnn(err), "raised outside jaxnn:\n" + "".join(traceback.format_exception(err))
        assert str(err), "an error without a message"
        return False, err
    except Exception as err:  # anything else is a finding
        raise AssertionError(f"{type(err).__name__} is not a clear error") from err


def finite_input(*values) -> bool:
    for v in jax.tree.leaves(values, is_leaf=lambda v: isinstance(v, Iterator) or isinstance(v, list) and not any(
            isinstance(e, (tuple, jax.Array, np.ndarray)) for e in v)):
        try:
            a = np.asarray(v)
            a = a if np.iscomplexobj(a) else a.astype(np.float64)
        except (TypeError, ValueError):
            continue
        if not np.isfinite(a).all():
            return False
    return True


def assert_finite(tree):
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            continue
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.complexfloating):
            assert np.isfinite(a).all(), f"silent NaN or inf in a result {a}"
        elif np.issubdtype(a.dtype, np.inexact):
            assert np.isfinite(a.astype(np.float64)).all(), f"silent NaN or inf in a result {a}"


# --- the malformed values ---------------------------------------------------------------------------

ANY_OBJECT = [None, "abc", 3, 2.5, True, 1j, Opaque(), {"a": 1}, [], (), object, jax.nn.relu]


def _xs():
    return [
        jnp.ones((4, 3)), jnp.ones(3), [[0.5, 1.0, 2.0]] * 4, np.ones((4, 3), np.int32), np.ones((4, 3), np.float32),
        None, "abc", np.array(["a", "b", "c"]), np.array([Opaque()] * 3, dtype=object), np.ones(3, complex),
        np.ones(3, bool), np.ones((4, 5)), np.ones((2, 4, 3)), np.ones(()), np.ones((0, 3)), [[1.0, 2.0], [1.0]],
        jnp.full((4, 3), jnp.nan), jnp.full((4, 3), jnp.inf), Opaque(), {"x": 1}, 3.0,
    ]


def _mse_ts():
    return [
        jnp.zeros((4, 2)), jnp.zeros(2), [[0.0, 1.0]] * 4, np.zeros((4, 2), np.int32), jnp.zeros(4, jnp.int32),
        None, np.array([["a", "b"]] * 4), np.zeros((4, 2), complex), np.zeros((4, 2), bool), jnp.zeros((4, 3)),
        jnp.zeros((5, 2)), jnp.zeros((4, 2, 1)), jnp.full((4, 2), jnp.nan), Opaque(), "t", 0.0,
    ]


def _ce_ts():
    return [
        jnp.array([0, 1, 1, 0]), jnp.array(1), jnp.array([0, 2, 1, 0]), jnp.array([-1, 0, 0, 0]),
        jax.nn.one_hot(jnp.array([0, 1, 1, 0]), 2), jnp.array([[1.5, -0.5]] * 4), np.array([True, False] * 2),
        jnp.zeros((4, 1), jnp.int32), jnp.array([0.0, 1.0, 1.0, 0.0]), None, [0, 1, 1, 0], jnp.full((4, 2), jnp.nan),
    ]


def _params():
    W0, b0 = PARAMS[0]
    W1, b1 = PARAMS[1]
    return [
        PARAMS, tuple(PARAMS), [list(p) for p in PARAMS], PARAMS[:1], PARAMS + PARAMS[:1], {"W": W0},
        None, "params", [(None, b0), (W1, b1)], [(W0, None), (W1, b1)], [(W0.T, b0), (W1, b1)],
        [(W0, b0[:, None]), (W1, b1)], [(W0.astype(jnp.int32), b0), (W1, b1)], [(W0, b0, b0), (W1, b1)],
        [W0, b0, W1, b1], [[(W0, b0)], [(W1, b1)]], [(np.asarray(W0), np.asarray(b0)), (W1, b1)],
        [(W0.astype(jnp.complex64), b0), (W1, b1)], [("W", "b"), (W1, b1)], [(W0.at[0, 0].set(jnp.nan), b0), (W1, b1)],
    ]


def _keys():
    return [
        jax.random.key(0), jax.random.PRNGKey(0), 0, None, 1.5, "key", jnp.zeros(2, jnp.uint32).astype(jnp.int32),
        jnp.zeros(3, jnp.uint32), jax.random.split(jax.random.key(0), 2), Opaque(),
    ]


def _optimizers():
    return [optax.sgd(0.1), optax.adam(1e-3), 0.1, optax.sgd, "adam", None, Opaque(), jax.nn.relu]


def _dtypes():
    return [None, jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16, jnp.int32, jnp.bool_, jnp.complex64,
            "float32", "nope", 3, Opaque(), np.dtype("U3")]


def choose(values):
    return st.sampled_from(range(len(values))).map(lambda i: values[i])


# --- constructors -----------------------------------------------------------------------------------


@FUZZ
@given(alpha=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), choose(ANY_OBJECT)))
def test_leaky_relu_alpha(alpha):
    ok, act = attempt(lambda: jaxnn.LeakyReLU(alpha))
    if ok:
        assert isinstance(act.alpha, float) and np.isfinite(act.alpha)
        assert_finite(act.f(jnp.array([-1.0, 2.0])))


@FUZZ
@given(ins=st.one_of(st.integers(-2, 5), choose(ANY_OBJECT)), outs=st.one_of(st.integers(-2, 5), choose(ANY_OBJECT)),
       act=choose([jaxnn.ReLU(), jaxnn.Softmax()] + ANY_OBJECT))
def test_layer(ins, outs, act):
    ok, layer = attempt(lambda: jaxnn.Layer(ins, outs, act))
    if ok:
        assert layer.ins >= 1 and layer.outs >= 1


@FUZZ
@given(sizes=st.one_of(st.lists(st.integers(-1, 4), max_size=4), choose(ANY_OBJECT)),
       acts=choose([jaxnn.Tanh(), [jaxnn.Tanh()] * 3, "relu", None, [jaxnn.Tanh(), "relu"], jax.nn.relu, Opaque()]),
       loss=choose([jaxnn.MSELoss(), jaxnn.CrossEntropyLoss(), "mse", None, jaxnn.ReLU(), optax.l2_loss]))
def test_network_from_sizes(sizes, acts, loss):
    ok, net = attempt(lambda: jaxnn.Network.from_sizes(sizes, acts, loss))
    if ok:
        assert net.sizes == tuple(sizes)


@FUZZ
@given(layers=choose([[jaxnn.Layer(3, 2, jaxnn.ReLU())], jaxnn.Layer(3, 2, jaxnn.ReLU()), [], None, 3, "layers",
                      [jaxnn.Layer(3, 2, jaxnn.ReLU()), jaxnn.Layer(3, 2, jaxnn.ReLU())], [jaxnn.ReLU()], [None]]),
       loss=choose([jaxnn.MSELoss(), "mse", None, Opaque()]))
def test_network(layers, loss):
    attempt(lambda: jaxnn.Network(layers, loss))


@FUZZ
@given(key=choose(_keys()), dtype=choose(_dtypes()),
       weight_init=choose(["lecun_normal", "articles", "kaiming", 3, None, jax.nn.initializers.zeros,
                           lambda k, s, d: jnp.zeros((1, 1), d)]))
def test_init(key, dtype, weight_init):
    ok, params = attempt(lambda: NET.init(key, weight_init=weight_init, dtype=dtype))
    if ok:
        NET.check_params(params)
        assert_finite(params)


def test_init_float64_without_x64_names_the_fix():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match=r'jax.config.update\("jax_enable_x64", True\)'):
            NET.init(jax.random.key(0), dtype=jnp.float64)
    finally:
        jax.config.update("jax_enable_x64", True)


# --- the pure functions -----------------------------------------------------------------------------

METHODS = ["forward", "loss", "backprop", "value_and_backprop", "backprop_trace"]


def _check_result(method, x, result):
    n = np.shape(x)[:-1]
    if method == "forward":
        assert result.shape == n + (2,)
    elif method == "loss":
        assert result.shape == ()
    else:
        grads = result if method == "backprop" else (result[1] if method == "value_and_backprop" else result.grads)
        assert [tuple(g.shape) for g in jax.tree.leaves(grads)] == [(4, 3), (4,), (2, 4), (2,)]


@FUZZ
@given(method=st.sampled_from(METHODS), ce=st.booleans(), params=choose(_params()), x=choose(_xs()),
       t_mse=choose(_mse_ts()), t_ce=choose(_ce_ts()))
def test_network_methods(method, ce, params, x, t_mse, t_ce):
    net, t = (CE, t_ce) if ce else (NET, t_mse)
    args = (params, x) if method == "forward" else (params, x, t)
    ok, result = attempt(lambda: getattr(net, method)(*args))
    if ok:
        _check_result(method, jnp.asarray(x), result)
        if finite_input(*args):  # NaN out only from NaN in: the pure functions do not read values
            assert_finite(result)


@FUZZ
@given(net=choose([NET, "net", None, jaxnn.MSELoss(), Opaque()]), params=choose(_params()), x=choose(_xs()),
       t=choose(_mse_ts()), which=st.sampled_from(["per_example_grads", "per_example_grad_norms", "check_gradients",
                                                   "evaluate", "hessian"]))
def test_functions_of_net_params_x_t(net, params, x, t, which):
    fn = getattr(jaxnn, which)
    kwargs = {"fd_entries": 4, "compare_jit": False} if which == "check_gradients" else {}
    ok, result = attempt(lambda: fn(net, params, x, t, **kwargs))
    if ok:  # these read the values of concrete data: no NaN may come out
        assert_finite(result if which != "check_gradients" else [r.manual_vs_autodiff.max_abs for r in result.rows])


@FUZZ
@given(t=choose(_ce_ts()), which=st.sampled_from(["per_example_grads", "check_gradients", "evaluate", "loss"]))
def test_class_labels_are_checked_on_concrete_data(t, which):
    x = jnp.ones((4, 3))
    if which == "loss":
        call = lambda: CE.loss(CE.init(jax.random.key(0)), x, t)
    else:
        kwargs = {"fd_entries": 4, "compare_jit": False} if which == "check_gradients" else {}
        call = lambda: getattr(jaxnn, which)(CE, CE.init(jax.random.key(0)), x, t, **kwargs)
    ok, result = attempt(call)
    if ok and (which != "loss" or finite_input(t)):  # the pure loss may give NaN for NaN targets
        assert_finite(result if which != "check_gradients" else result.loss)


@FUZZ
@given(clip_norm=st.one_of(st.floats(allow_nan=True, allow_infinity=True), choose(ANY_OBJECT + [jnp.ones(2)])),
       noise=st.one_of(st.sampled_from([0.0, 1.0, -1.0, float("nan")]), choose(ANY_OBJECT)), key=choose(_keys()))
def test_clipped_mean_grad(clip_norm, noise, key):
    x, t = jnp.ones((4, 3)), jnp.zeros((4, 2))
    ok, grads = attempt(lambda: jaxnn.clipped_mean_grad(NET, PARAMS, x, t, clip_norm, noise_multiplier=noise, key=key))
    if ok and np.isfinite(float(clip_norm)):
        assert_finite(grads)


@FUZZ
@given(v=choose(_params()), x=choose(_xs()[:6]))
def test_hvp_direction(v, x):
    t = jnp.zeros(np.shape(np.asarray(x, float))[:-1] + (2,))
    ok, hv = attempt(lambda: jaxnn.hvp(NET, PARAMS, x, t, v))
    if ok:
        assert [g.shape for g in jax.tree.leaves(hv)] == [(4, 3), (4,), (2, 4), (2,)]
        if finite_input(v):
            assert_finite(hv)


def test_hvp_names_the_layer():
    v = [PARAMS[0], (PARAMS[1][0].T, PARAMS[1][1])]
    with pytest.raises(ValueError, match=r"v: layer 1: W must have shape \(outs, ins\) = \(2, 4\), got \(4, 2\)"):
        jaxnn.hvp(NET, PARAMS, jnp.ones(3), jnp.zeros(2), v)


@FUZZ
@given(backprop=choose([None, NET.backprop, "backprop", 3, lambda p, x, t: p[:1], lambda p, x, t: {"a": 1}]),
       fd=st.one_of(st.integers(-2, 3), choose(ANY_OBJECT)))
def test_check_gradients_options(backprop, fd):
    ok, report = attempt(lambda: jaxnn.check_gradients(NET, PARAMS, jnp.ones(3), jnp.zeros(2), backprop=backprop,
                                                       fd_entries=fd, compare_jit=False))
    if ok:
        assert isinstance(report, jaxnn.GradientReport)


# --- training ---------------------------------------------------------------------------------------


@FUZZ
@given(net=choose([NET, "net", None]), optimizer=choose(_optimizers()),
       gradients=choose(["manual", "autodiff", "numeric", None, 1]),
       batch_split=st.one_of(st.integers(-1, 3), choose(ANY_OBJECT)))
def test_make_train_step(net, optimizer, gradients, batch_split):
    ok, step = attempt(lambda: jaxnn.make_train_step(net, optimizer, gradients, batch_split=batch_split))
    if ok:
        params, opt_state, loss = step(PARAMS, optimizer.init(PARAMS), jnp.ones((4, 3)), jnp.zeros((4, 2)))
        assert_finite((params, loss))


@FUZZ
@given(params=choose(_params()[:8] + [jaxnn.TrainState(PARAMS, None, 0)]), x=choose(_xs()), t=choose(_mse_ts()),
       optimizer=choose(_optimizers()), batch_size=st.one_of(st.integers(-1, 5), choose([2.0, None, "2"])),
       epochs=st.one_of(st.integers(-1, 2), choose([1.0, None])), key=choose(_keys()),
       callbacks=choose([(), [jaxnn.EarlyStopping(monitor="loss")], jaxnn.EarlyStopping(monitor="loss"), "stop",
                         [None], [Opaque()], None]),
       validation=choose([None, (jnp.ones((2, 3)), jnp.zeros((2, 2))), jnp.ones((2, 3)), (jnp.ones((2, 3)),),
                          (jnp.ones((2, 3)), jnp.full((2, 2), jnp.nan))]))
def test_fit(params, x, t, optimizer, batch_size, epochs, key, callbacks, validation):
    ok, result = attempt(lambda: jaxnn.fit(NET, params, x, t, optimizer=optimizer, batch_size=batch_size,
                                           epochs=epochs, key=key, callbacks=callbacks, validation=validation))
    if ok:
        state, history = result
        NET.check_params(state.params)
        assert_finite((state.params, history["loss"]))


@FUZZ
@given(kind=st.sampled_from(["early", "checkpoint", "progress"]), value=st.one_of(st.integers(-1, 3), choose(ANY_OBJECT)))
def test_callbacks(kind, value, tmp_path_factory):
    make = {"early": lambda: jaxnn.EarlyStopping(monitor=value if isinstance(value, str) else "loss", patience=value),
            "checkpoint": lambda: jaxnn.Checkpoint(value),
            "progress": lambda: jaxnn.ProgressBar(updates_per_epoch=value)}[kind]
    attempt(make)


# --- files ------------------------------------------------------------------------------------------


@FUZZ
@given(path=choose(["folder", "missing", "missing/dir/file", None, 3, Opaque(), b"bytes"]))
def test_file_functions(path, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    where = {"folder": root, "missing": root / "missing", "missing/dir/file": root / "a" / "b"}.get(path, path)
    for call in (lambda: jaxnn.datasets.read_idx(where), lambda: jaxnn.load(where, PARAMS),
                 lambda: jaxnn.datasets.load_mnist(where)):
        ok, _ = attempt(call, (ValueError, TypeError) + PATH_ERRORS)
        assert not ok
    attempt(lambda: jaxnn.save(where, PARAMS), (ValueError, TypeError) + PATH_ERRORS)


@FUZZ
@given(data=st.binary(max_size=40))
def test_parse_idx_bytes(data):
    attempt(lambda: jaxnn.datasets.parse_idx(data))


@FUZZ
@given(tree=choose([PARAMS, {"s": "text"}, {"o": Opaque()}, [None], {"a": np.array([Opaque()], dtype=object)}]),
       like=choose([PARAMS, PARAMS[:1], {"s": "text"}, None, [jnp.zeros(1)], [jnp.zeros(3, jnp.int32)]]))
def test_save_and_load_trees(tree, like, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "c.npz"
    ok, _ = attempt(lambda: jaxnn.save(path, tree))
    if ok:
        ok, back = attempt(lambda: jaxnn.load(path, like))
        if ok:
            assert jax.tree.structure(back) == jax.tree.structure(like)


# --- plotting ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plotting():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from jaxnn import plotting

    return plotting


@FUZZ
@given(which=st.sampled_from(["decision_regions", "recursion_diagram", "training_curves", "gradient_norms"]),
       net=choose([CE, "net", jaxnn.Network.from_sizes((2, 2), jaxnn.Identity(), jaxnn.CrossEntropyLoss())]),
       x=choose(_xs() + [jnp.ones((5, 2)), jnp.ones(2)]), t=choose(_ce_ts()), ax=choose([None, "ax", 3]),
       history=choose([{"loss": np.ones(3)}, {}, {"loss": ["a"]}, None, {"loss": np.ones((2, 2))}, [1.0]]))
def test_plotting(plotting, which, net, x, t, ax, history):
    import matplotlib.pyplot as plt

    params = PARAMS if not isinstance(net, jaxnn.Network) or net.sizes[0] == 3 else net.init(jax.random.key(0))
    call = {
        "decision_regions": lambda: plotting.decision_regions(net, params, x, t, ax=ax, resolution=5),
        "recursion_diagram": lambda: plotting.recursion_diagram(net, params, x, t, ax=ax),
        "training_curves": lambda: plotting.training_curves(history, ax=ax),
        "gradient_norms": lambda: plotting.gradient_norms(history if isinstance(history, list) else params, ax=ax),
    }[which]
    try:
        attempt(call)
    finally:
        plt.close("all")


# --- the documented behaviour under jit -------------------------------------------------------------


def test_shapes_are_checked_under_jit_and_values_are_not():
    with pytest.raises(TypeError, match="x must be real"):
        jax.jit(NET.forward)(PARAMS, jnp.ones(3, jnp.complex64))
    params = CE.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        CE.loss(params, jnp.ones((2, 3)), jnp.array([0, 7]))
    jax.jit(CE.loss)(params, jnp.ones((2, 3)), jnp.array([0, 7]))  # documented: no value checks while tracing


def test_fit_check_data_false_skips_value_checks():
    params = CE.init(jax.random.key(0))
    x, t = jnp.ones((4, 3)), jnp.array([0, 1, 7, 0])
    with pytest.raises(ValueError, match=r"fit: t holds class labels outside \[0, 2\)"):
        jaxnn.fit(CE, params, x, t, optimizer=optax.sgd(0.1), batch_size=2)
    jaxnn.fit(CE, params, x, t, optimizer=optax.sgd(0.1), batch_size=2, check_data=False, check_finite=False)
    jaxnn.evaluate(CE, params, x, t, check=False)


@pytest.mark.parametrize("path", [pathlib.Path("."), "definitely-missing-file.idx"])
def test_read_idx_paths(path):
    with pytest.raises((IsADirectoryError, FileNotFoundError), match="read_idx path .* (is a folder|does not exist)"):
        jaxnn.datasets.read_idx(path)
