"""Callbacks: early stopping, checkpoints (resumed after a kill), the progress bar."""

import io
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import assert_trees_close, classification, quadrant_problem

ROOT = pathlib.Path(__file__).resolve().parents[2]


KILLED_RUN = """
import sys, jax, optax, jaxnn
sys.path.insert(0, {root!r})
from tests.helpers import classification
jax.config.update("jax_enable_x64", True)
net, params, x, t = classification()
jaxnn.fit(net, params, x, t, optimizer=optax.adam(1e-2), batch_size=8, key=jax.random.key(5),
          epochs=100000, callbacks=[jaxnn.Checkpoint({path!r})])
"""


def test_fit_with_progress_bar_and_zero_epochs(capsys):
    net, params, x, t = quadrant_problem(16)
    with pytest.warns(DeprecationWarning, match="callbacks=\\[jaxnn.ProgressBar\\(\\)\\]"):
        state, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=4, epochs=2,
                                     progress=True)
    assert history["loss"].shape == (2,)
    assert "fit" in capsys.readouterr().err
    same_state, empty = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=4, epochs=0)
    same = same_state.params
    assert empty["loss"].shape == (0,)
    assert_trees_close(same, params, rtol=0, atol=0)


@pytest.mark.slow
def test_early_stopping_restores_the_best_epoch():
    net, params, x, t = classification(n=120)
    # A noisy validation set and a large learning rate: the validation loss rises again.
    x_val = x[:40] + 1.5 * jax.random.normal(jax.random.key(9), (40, 6))
    stop = jaxnn.EarlyStopping(monitor="val_loss", patience=2)
    state, history = jaxnn.fit(net, params, x, t, optimizer=optax.adam(0.1), batch_size=8, epochs=60,
                               validation=(x_val, t[:40]), callbacks=[stop])
    best = int(np.argmin(history["val_loss"]))
    assert len(history["epoch"]) == best + 1 + 3  # stopped patience + 1 epochs after the best
    assert len(history["epoch"]) < 60
    assert stop.best_epoch == state.epoch == history["epoch"][best]
    assert stop.best == history["val_loss"][best]
    np.testing.assert_allclose(jaxnn.evaluate(net, state.params, x_val, t[:40])["loss"], stop.best, rtol=1e-12)
    # The best state is a state to continue from.
    more, h = jaxnn.fit(net, state, x, t, optimizer=optax.adam(0.1), batch_size=8)
    assert more.epoch == state.epoch + 1 and h["epoch"].tolist() == [state.epoch + 1]


def test_early_stopping_needs_the_logged_value():
    net, params, x, t = classification()
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss'.*validation=\\(x_val, t_val\\)"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, callbacks=[jaxnn.EarlyStopping()])


def test_progress_bar_writes_a_line_per_epoch_when_not_a_terminal():
    net, params, x, t = classification()
    stream = io.StringIO()
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=3, validation=(x, t),
              callbacks=[jaxnn.ProgressBar(file=stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("fit: epoch ") for line in lines)
    assert "12 steps" in lines[0] and "val_accuracy" in lines[-1]


@pytest.mark.slow
def test_checkpoint_every_n_epochs_and_resume(tmp_path):
    net, params, x, t = classification()
    path = tmp_path / "run.npz"
    kwargs = dict(optimizer=optax.adam(1e-2), batch_size=8, key=jax.random.key(5))
    whole, _ = jaxnn.fit(net, params, x, t, epochs=6, **kwargs)
    jaxnn.fit(net, params, x, t, epochs=4, callbacks=[jaxnn.Checkpoint(path, every=3)], **kwargs)
    like = jaxnn.TrainState(params, optax.adam(1e-2).init(params), 0)
    saved = jaxnn.load(path, like)
    assert int(saved.epoch) == 4  # saved at epoch 3 and at the end
    resumed, history = jaxnn.fit(net, saved, x, t, epochs=2, **kwargs)
    assert history["epoch"].tolist() == [5, 6]
    assert_trees_close((resumed.params, resumed.opt_state), (whole.params, whole.opt_state), rtol=0, atol=0)


@pytest.mark.slow
def test_a_run_killed_mid_fit_resumes_to_the_same_result(tmp_path):
    path = tmp_path / "killed.npz"
    script = KILLED_RUN.format(root=str(ROOT), path=str(path))
    log = open(tmp_path / "stderr.txt", "w+b")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    net, params, x, t = classification()
    like = jaxnn.TrainState(params, optax.adam(1e-2).init(params), 0)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and int(jaxnn.load(path, like).epoch) >= 20:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        proc.send_signal(signal.SIGKILL)  # in the middle of training, maybe of a write
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
    saved = jaxnn.load(path, like)
    done = int(saved.epoch)
    assert done >= 20
    kwargs = dict(optimizer=optax.adam(1e-2), batch_size=8, key=jax.random.key(5))
    resumed, _ = jaxnn.fit(net, saved, x, t, epochs=3, **kwargs)
    whole, _ = jaxnn.fit(net, params, x, t, epochs=done + 3, **kwargs)
    assert_trees_close((resumed.params, resumed.opt_state), (whole.params, whole.opt_state), rtol=0, atol=0)

