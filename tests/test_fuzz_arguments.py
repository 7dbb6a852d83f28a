"""Any value of any kind in place of any one argument of a public function.

For each public function a call with valid arguments is written out below;
hypothesis replaces one argument at a time with a value drawn from every
kind there is (None, bools, huge ints, NaN and inf, complex, strings, bytes,
arrays of every rank and dtype, empty arrays, ragged lists, dicts, objects,
functions, devices, PRNG keys, optimizers, jaxnn objects of the wrong kind).
The call must succeed with a finite result or raise ValueError or TypeError
(FileNotFoundError or IsADirectoryError for paths) from inside jaxnn: never
an error from JAX, NumPy or optax, never a silent NaN.
"""

import contextlib
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import jaxnn
from tests.test_fuzz import PATH_ERRORS, Opaque, assert_finite, attempt, finite_input

pytestmark = pytest.mark.slow  # hundreds of drawn values at every argument

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NET = jaxnn.Network.from_sizes((3, 4, 2), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.MSELoss())
CE = jaxnn.Network.from_sizes((3, 4, 2), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
PARAMS = NET.init(jax.random.key(0))
X, T, LABELS = jnp.linspace(-1.0, 1.0, 24).reshape(8, 3), jnp.zeros((8, 2)), jnp.array([0, 1] * 4)
SGD = optax.sgd(0.1)
STATE = jaxnn.TrainState(PARAMS, SGD.init(PARAMS), 0)

_DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int8", "uint8", "uint32", "bool", "complex64"]


def _array(kind, dtype, shape, fill):
    if kind == "numpy-str":
        return np.full(shape, "a")
    if kind == "numpy-object":
        return np.full(shape, Opaque(), dtype=object)
    values = {"zero": 0, "one": 1, "minus": -1, "nan": np.nan, "inf": np.inf, "big": 1e30}[fill]
    if dtype not in ("float32", "float64", "float16", "bfloat16", "complex64") and fill in ("nan", "inf", "big"):
        values = 7
    with np.errstate(all="ignore"):  # 1e30 is inf in float16: a value wanted here
        a = np.full(shape, values).astype(jnp.dtype(dtype))
    return jnp.asarray(a) if kind == "jax" else a


ARRAYS = st.builds(
    _array,
    kind=st.sampled_from(["jax", "numpy", "numpy-str", "numpy-object"]),
    dtype=st.sampled_from(_DTYPES),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    fill=st.sampled_from(["zero", "one", "minus", "nan", "inf", "big"]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(max_magnitude=10),
    st.text(max_size=4), st.binary(max_size=4),
)
OBJECTS = st.sampled_from([
    Opaque(), object, jax.nn.relu, print, optax.sgd, SGD, jax.random.key(0), jax.random.PRNGKey(0), jax.devices()[0],
    jax.devices(), jaxnn.ReLU(), jaxnn.MSELoss(), NET, STATE, jaxnn.HostStream(), jaxnn.EarlyStopping(), {1, 2},
    range(3), io.StringIO(), Ellipsis, slice(1), (x for x in ()),
])
CONTAINERS = st.one_of(
    st.lists(SCALARS, max_size=3), st.tuples(SCALARS, SCALARS), st.dictionaries(st.text(max_size=2), SCALARS, max_size=2),
    st.lists(st.lists(st.floats(-2, 2), max_size=3), max_size=3),  # ragged or rectangular
    st.just([PARAMS[0]]), st.just(list(PARAMS) + [PARAMS[0]]), st.just([(PARAMS[0][1], PARAMS[0][0])] + PARAMS[1:]),
)
ANYTHING = st.one_of(SCALARS, ARRAYS, OBJECTS, CONTAINERS)


@contextlib.contextmanager
def inside(folder):
    """Run in ``folder``, so a path drawn as text names nothing in the repository."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def _fit(**kw):
    args = dict(net=NET, params_or_state=PARAMS, x=X, t=T, optimizer=SGD, batch_size=4, epochs=1, key=None,
                gradients="manual", validation=None, callbacks=(), check_finite=True,
                check_data=True, batch_split="auto", devices=None, stream=None)
    args.update(kw)
    net, params, x, t = (args.pop(k) for k in ("net", "params_or_state", "x", "t"))
    return jaxnn.fit(net, params, x, t, **args)


def _step(**kw):
    args = dict(net=NET, optimizer=SGD, gradients="manual", donate=False, batch_split="auto")
    fresh = jax.tree.map(jnp.copy, PARAMS)  # donate=True may be drawn: never hand over the shared arrays
    call = dict(params=fresh, opt_state=SGD.init(fresh), x=X, t=T)
    for k, v in kw.items():
        (call if k in call else args)[k] = v
    net, optimizer, gradients = args.pop("net"), args.pop("optimizer"), args.pop("gradients")
    step = jaxnn.make_train_step(net, optimizer, gradients, **args)
    return step(call["params"], call["opt_state"], call["x"], call["t"])


def _train_state(**kw):
    fields = dict(params=PARAMS, opt_state=SGD.init(PARAMS), epoch=0)
    fields.update(kw)
    return _fit(params_or_state=jaxnn.TrainState(**fields))


def _callback(make, **kw):
    callback = make(**kw)
    return _fit(callbacks=[callback], validation=(X, T), epochs=2)


def _bound(fn, names, **fixed):
    def call(**kw):
        args = dict(fixed)
        args.update(kw)
        return fn(**{k: args[k] for k in names})

    return call


# name: (call(**replaced), argument names that may be replaced, reads values (no NaN out), takes a path)
CALLS = {
    "Layer": (lambda ins=3, outs=2, activation=jaxnn.ReLU(): jaxnn.Layer(ins, outs, activation),
              ["ins", "outs", "activation"], True),
    "LeakyReLU": (lambda alpha=0.1: jaxnn.LeakyReLU(alpha).f(jnp.array([-1.0, 1.0])), ["alpha"], True),
    "Network": (lambda layers=(jaxnn.Layer(3, 2, jaxnn.ReLU()),), loss=jaxnn.MSELoss(): jaxnn.Network(layers, loss),
                ["layers", "loss"], True),
    "Network.from_sizes": (lambda sizes=(3, 2), activations=jaxnn.ReLU(), loss=jaxnn.MSELoss():
                           jaxnn.Network.from_sizes(sizes, activations, loss), ["sizes", "activations", "loss"], True),
    "init": (lambda key=jax.random.key(0), weight_init="lecun_normal", dtype=None:
             NET.init(key, weight_init=weight_init, dtype=dtype), ["key", "weight_init", "dtype"], True),
    "forward": (lambda params=PARAMS, x=X: NET.forward(params, x), ["params", "x"], False),
    "loss": (lambda params=PARAMS, x=X, t=T: NET.loss(params, x, t), ["params", "x", "t"], False),
    "backprop": (lambda params=PARAMS, x=X, t=T: NET.backprop(params, x, t), ["params", "x", "t"], False),
    "ce.value_and_backprop": (lambda params=PARAMS, x=X, t=LABELS: CE.value_and_backprop(params, x, t),
                              ["params", "x", "t"], False),
    "backprop_trace": (lambda params=PARAMS, x=X, t=T: NET.backprop_trace(params, x, t).grads, ["params", "x", "t"],
                       False),
    "loss_with_backprop": (lambda net=NET, params=PARAMS, x=X, t=T: jaxnn.loss_with_backprop(net)(params, x, t),
                           ["net", "params", "x", "t"], False),
    "get_initializer": (lambda init="glorot_normal": callable(jaxnn.get_initializer(init)), ["init"], True),
    "check_gradients": (lambda net=NET, params=PARAMS, x=X, t=T, fd_entries=4:
                        jaxnn.check_gradients(net, params, x, t, fd_entries=fd_entries, compare_jit=False).loss,
                        ["net", "params", "x", "t", "fd_entries"], True),
    "per_example_grads": (lambda net=NET, params=PARAMS, x=X, t=T: jaxnn.per_example_grads(net, params, x, t),
                          ["net", "params", "x", "t"], True),
    "clipped_mean_grad": (lambda net=NET, params=PARAMS, x=X, t=T, clip_norm=1.0, noise_multiplier=0.5,
                          key=jax.random.key(1):
                          jaxnn.clipped_mean_grad(net, params, x, t, clip_norm, noise_multiplier=noise_multiplier,
                                                  key=key),
                          ["net", "params", "x", "t", "clip_norm", "noise_multiplier", "key"], True),
    "hvp": (lambda net=NET, params=PARAMS, x=X, t=T, v=PARAMS: jaxnn.hvp(net, params, x, t, v),
            ["net", "params", "x", "t", "v"], False),
    "hessian": (lambda net=NET, params=PARAMS, x=X, t=T: jaxnn.hessian(net, params, x, t),
                ["net", "params", "x", "t"], False),
    "evaluate": (lambda net=CE, params=PARAMS, x=X, t=LABELS, batch_size=3, check=True:
                 jaxnn.evaluate(net, params, x, t, batch_size=batch_size, check=check),
                 ["net", "params", "x", "t", "batch_size", "check"], True),
    "make_train_step": (_step, ["net", "optimizer", "gradients", "donate", "batch_split", "params", "opt_state", "x",
                                "t"], False),
    "fit": (_fit, ["net", "params_or_state", "x", "t", "optimizer", "batch_size", "epochs", "key", "gradients",
                   "validation", "callbacks", "check_finite", "check_data", "batch_split", "devices",
                   "stream"], True),
    "TrainState": (_train_state, ["params", "opt_state", "epoch"], True),
    "EarlyStopping": (_bound(lambda **kw: _callback(jaxnn.EarlyStopping, **kw),
                             ["monitor", "patience", "min_delta", "mode", "restore_best"], monitor="val_loss",
                             patience=1, min_delta=0.0, mode="auto", restore_best=True),
                      ["monitor", "patience", "min_delta", "mode", "restore_best"], True),
    "ProgressBar": (_bound(lambda **kw: _callback(jaxnn.ProgressBar, **kw), ["updates_per_epoch", "file", "short_epoch"],
                           updates_per_epoch=2, file=io.StringIO(), short_epoch=0.0),
                    ["updates_per_epoch", "file", "short_epoch"], True),
    "Checkpoint": (_bound(lambda **kw: _callback(jaxnn.Checkpoint, **kw), ["path", "every"], path="run.npz", every=1),
                   ["path", "every"], True, True),
    "HostStream": (lambda steps_per_chunk=2: _fit(x=np.asarray(X), t=np.asarray(T),
                                                  stream=jaxnn.HostStream(steps_per_chunk)),
                   ["steps_per_chunk"], True),
    "save": (lambda path="c.npz", tree=PARAMS: jaxnn.load(jaxnn.save(path, tree), tree), ["path", "tree"], False, True),
    "load": (lambda path="c.npz", like=PARAMS: jaxnn.load(jaxnn.save("c.npz", PARAMS) and path, like),
             ["path", "like"], True, True),
    "process_rows": (lambda n=8, devices=None: jaxnn.training.process_rows(n, devices), ["n", "devices"], True),
    "global_rows": (lambda local=np.ones((4, 2)), devices=None: jaxnn.training.global_rows(local, devices),
                    ["local", "devices"], False),
    "auto_batch_split": (lambda batch=64, widths=((3, 4), (4, 2)), platform="cpu", cores=2, devices=1:
                         jaxnn.training.auto_batch_split(batch, widths, platform=platform, cores=cores,
                                                         devices=devices),
                         ["batch", "widths", "platform", "cores", "devices"], True),
    "read_idx": (lambda path="missing.idx": jaxnn.datasets.read_idx(path), ["path"], True, True),
    "load_mnist": (lambda directory=".", split="t10k": jaxnn.datasets.load_mnist(directory, split),
                   ["directory", "split"], True, True),
    "parse_idx": (lambda data=b"\x00\x00\x08\x01\x00\x00\x00\x01\x07", name="x": jaxnn.datasets.parse_idx(data, name),
                  ["data", "name"], True),
    "checking.compare": (lambda test=np.ones(3), ref=np.ones(3), scale_floor=1.0, tol=1e-3, atol=0.0, mask=None:
                         jaxnn.checking.compare(test, ref, scale_floor, tol, atol, mask).error,
                         ["test", "ref", "scale_floor", "tol", "atol", "mask"], False),
    "checking.tolerances_for": (lambda dtype=jnp.float32, loss=1.0: jaxnn.checking.tolerances_for(dtype, loss)[1:4],
                                ["dtype", "loss"], True),
}


def _result_leaves(result):
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):  # fit
        return result[0].params, result[1]["loss"]
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, (jax.Array, np.ndarray, float, int, list, tuple)):
        return result
    return []


@pytest.mark.parametrize("name", sorted(CALLS))
@FUZZ
@given(which=st.integers(0, 63), value=ANYTHING)
def test_any_value_in_place_of_any_argument(name, which, value, tmp_path_factory):
    call, names, reads_values, *path = CALLS[name]
    argument = names[which % len(names)]
    # a valid but huge number of epochs would only take long
    assume(not (argument == "epochs" and isinstance(value, int) and value > 3))
    allowed = (ValueError, TypeError) + (PATH_ERRORS if path and argument in ("path", "directory") else ())
    with inside(tmp_path_factory.mktemp("fuzz")):
        ok, result = attempt(lambda: call(**{argument: value}), allowed)
    if ok and (reads_values or finite_input(value)):
        assert_finite(_result_leaves(result))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_valid_call_succeeds(name, tmp_path_factory):
    """The calls above are valid as written, so every failure in the fuzz test is the replaced value's."""
    call, _, _, *path = CALLS[name]
    if path and name in ("read_idx", "load_mnist"):
        pytest.skip("no data files here")
    with inside(tmp_path_factory.mktemp("valid")):
        assert_finite(_result_leaves(call()))
