"""fit's plan: options and callbacks checked before anything runs."""

import os
import re

import jax
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn._checks import check_data, check_finite_params
from jaxnn.training import _plan
from tests.helpers import TRACES, classification, small_problem


def test_bad_callbacks_and_keys_are_named():
    net, params, x, t = classification()
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8)
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be a jaxnn.Callback"):
        jaxnn.fit(net, params, x, t, callbacks=[print], **kwargs)
    with pytest.raises(TypeError, match=r"jax.random.key\(0\)"):
        jaxnn.fit(net, params, x, t, key=0, **kwargs)
    with pytest.raises(TypeError, match=r"pass optax.sgd\(0.1\)"):
        jaxnn.fit(net, params, x, t, optimizer=0.1, batch_size=8)
    with pytest.raises(TypeError, match=r"call it first"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd, batch_size=8)


@pytest.mark.parametrize("batch_split, match", [(3, "batch_size must be a multiple of batch_split"),
                                                 (0, "batch_split must be a positive int"),
                                                 (2.0, "batch_split must be a positive int")])
def test_batch_split_is_checked(batch_split, match):
    net, params, x, t = small_problem()
    with pytest.raises(ValueError, match=match):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, batch_split=batch_split)



def _counting_sgd():
    """``optax.sgd(0.1)`` that records each call of its update, which happens only while a step is traced."""
    base, calls = optax.sgd(0.1), []

    def update(grads, state, params=None):
        calls.append(1)
        return base.update(grads, state, params)

    return optax.GradientTransformation(base.init, update), calls


def _refused_before_anything_runs(error, match, **options):
    """``fit`` with ``options`` raises ``error`` before it traces a step or the network."""
    net, params, x, t = small_problem()
    optimizer, updates = _counting_sgd()
    TRACES.clear()
    with pytest.raises(error, match=match):
        jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=8, epochs=3, **options)
    assert updates == [] and TRACES == []


@pytest.mark.parametrize("stream", [None, jaxnn.HostStream()], ids=["device", "streamed"])
def test_a_checkpoint_in_a_missing_folder_is_refused_before_anything_compiles(tmp_path, monkeypatch, stream):
    monkeypatch.chdir(tmp_path)
    net, params, x, t = small_problem()
    if stream is not None:
        x, t = np.asarray(x), np.asarray(t)
    optimizer, updates = _counting_sgd()
    TRACES.clear()
    with pytest.raises(FileNotFoundError, match="the folder .*missing-folder' does not exist; create it first"):
        jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=8, stream=stream,
                  callbacks=[jaxnn.Checkpoint("missing-folder/run.npz")])
    assert updates == [] and TRACES == [] and not (tmp_path / "missing-folder").exists()


def test_early_stopping_on_validation_values_without_validation_is_refused_before_anything_compiles():
    _refused_before_anything_runs(ValueError, r"EarlyStopping monitors 'val_loss', which fit will not log; it logs "
                                  r"\['loss'\] \(val_\* need fit\(..., validation=\(x_val, t_val\)\)\)",
                                  callbacks=[jaxnn.EarlyStopping("val_loss")])
    _refused_before_anything_runs(ValueError, "EarlyStopping monitors 'accuracy'",
                                  callbacks=[jaxnn.EarlyStopping("accuracy")])


def test_monitored_validation_values_are_accepted_with_validation():
    net, params, x, t = small_problem()
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=1, validation=(x, t),
              callbacks=[jaxnn.EarlyStopping("val_loss"), jaxnn.EarlyStopping("val_accuracy")])


def test_an_unwritable_checkpoint_folder_is_refused_before_anything_compiles(tmp_path, monkeypatch):
    """Checkpoint asks the system whether the folder is writable for this process (``os.access``).

    ``chmod 0o500`` makes a folder unwritable for other users, but root
    (CAP_DAC_OVERRIDE) may still write there, and ``os.access`` rightly says
    so: for root such a folder is writable, and refusing it would be wrong.
    So as root the test has ``os.access`` answer for this folder what it
    answers for any other user, which is what the check relies on; as
    another user the mode alone is the test.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.geteuid() == 0:
            real = os.access

            def access(path, mode, *args, **kwargs):
                if os.path.abspath(path) == str(folder) and mode & os.W_OK:
                    return False
                return real(path, mode, *args, **kwargs)

            monkeypatch.setattr(os, "access", access)
        _refused_before_anything_runs(PermissionError, "read-only' is not writable",
                                      callbacks=[jaxnn.Checkpoint(folder / "run.npz")])
    finally:
        folder.chmod(0o700)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [None, jaxnn.HostStream()], ids=["device", "streamed"])
@pytest.mark.parametrize("validation, error, match", [
    (lambda x, t: (x[:, :2], t), ValueError,
     re.escape("validation inputs has last dimension 2 but layer 0 expects 3 inputs (validation inputs shape (40, 2))")),
    (lambda x, t: (x, t[:30]), ValueError, "validation inputs and validation targets must hold the same number"),
    (lambda x, t: (x, t[:, None] * 1.0), ValueError, "validation targets: CrossEntropyLoss expects"),
    (lambda x, t: (x, t + 2), ValueError, "fit validation: validation targets holds class labels outside"),
    (lambda x, t: (x.at[3, 1].set(np.nan), t), ValueError, r"fit validation: validation inputs holds a non-finite"),
    (lambda x, t: (x, None), TypeError, "fit validation needs targets"),
    (lambda x, t: (x.astype(bool), t), TypeError, "validation inputs must hold numbers"),
])
def test_validation_data_are_checked_by_their_own_names_before_anything_compiles(validation, error, match, stream):
    net, params, x, t = small_problem()
    options = {} if stream is None else dict(stream=stream)
    data = {} if stream is None else dict(x=np.asarray(x), t=np.asarray(t))
    optimizer, updates = _counting_sgd()
    TRACES.clear()
    with pytest.raises(error, match=match):
        jaxnn.fit(net, params, data.get("x", x), data.get("t", t), optimizer=optimizer, batch_size=8,
                  validation=validation(x, t), **options)
    assert updates == [] and TRACES == []


def test_data_and_parameters_checked_before_are_not_rechecked_but_everything_new_is():
    """Guards against the skip of a second scan of the same (immutable) arrays letting anything new through:
    new parameters, new data, or the same labels for a network with fewer outputs."""
    net, params, x, t = classification(classes=3)
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8)
    jaxnn.fit(net, params, x, t, **kwargs)
    nan_params = [(W.at[0, 0].set(np.nan), b) if i == 1 else (W, b) for i, (W, b) in enumerate(params)]
    with pytest.raises(ValueError, match=r"layer 1"):
        jaxnn.fit(net, nan_params, x, t, **kwargs)
    with pytest.raises(ValueError, match=r"non-finite"):
        jaxnn.fit(net, params, x.at[3, 1].set(np.inf), t, **kwargs)
    two = jaxnn.Network.from_sizes([6, 8, 2], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    with pytest.raises(ValueError, match=r"labels outside"):
        jaxnn.fit(two, two.init(jax.random.key(1)), x, t, **kwargs)
    state, _ = jaxnn.fit(net, params, x, t, **kwargs)  # the state's new parameters: checked, and finite
    jaxnn.fit(net, state, x, t, **kwargs)


def test_the_same_arrays_are_scanned_once(monkeypatch):
    """Guards against every fit call reading the whole data set again (and the parameters) for bad values."""
    scans = []
    monkeypatch.setattr(_plan, "check_data", lambda *args: scans.append("data") or check_data(*args))
    monkeypatch.setattr(_plan, "check_finite_params", lambda p: scans.append("params") or check_finite_params(p))
    net, params, x, t = classification()
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8)
    state, _ = jaxnn.fit(net, params, x, t, **kwargs)
    assert scans == ["data"]
    jaxnn.fit(net, params, x, t, **kwargs)
    assert scans == ["data"]
    jaxnn.fit(net, state, x, t, **kwargs)
    assert scans == ["data", "params"]
    jaxnn.fit(net, params, np.asarray(x), t, **kwargs)  # NumPy data may change: scanned every time
    assert scans == ["data", "params", "data"]
