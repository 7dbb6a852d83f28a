"""Runs a researcher can rely on: resumable state, validation, early stopping, checkpoints, no silent NaN."""

import io
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn

from tests.helpers import assert_trees_close

ROOT = pathlib.Path(__file__).resolve().parents[1]


def classification(n=96, seed=0, ins=6, classes=3):
    net = jaxnn.Network.from_sizes([ins, 8, classes], [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    kp, kx, kt = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, ins))
    t = jnp.argmax(x[:, :classes] + 0.3 * jax.random.normal(kt, (n, classes)), axis=-1)
    return net, net.init(kp), x, t


OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-2),
    "momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "schedule": lambda: optax.sgd(optax.exponential_decay(0.1, transition_steps=7, decay_rate=0.8)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_chained_fits_equal_one_fit_bitwise(name):
    net, params, x, t = classification()
    kwargs = dict(batch_size=10, key=jax.random.key(3))  # 96 = 9 * 10 + 6: a short last batch too
    whole, h_whole = jaxnn.fit(net, params, x, t, optimizer=OPTIMIZERS[name](), epochs=5, **kwargs)
    state = params
    losses = []
    for _ in range(5):
        state, h = jaxnn.fit(net, state, x, t, optimizer=OPTIMIZERS[name](), epochs=1, **kwargs)
        losses.append(h["loss"][0])
    assert state.epoch == whole.epoch == 5
    assert_trees_close((state.params, state.opt_state), (whole.params, whole.opt_state), rtol=0, atol=0)
    np.testing.assert_array_equal(losses, h_whole["loss"])
    np.testing.assert_array_equal(h_whole["epoch"], [1, 2, 3, 4, 5])


def test_zero_epochs_returns_the_starting_state():
    net, params, x, t = classification()
    optimizer = optax.adam(1e-2)
    state, history = jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=8, epochs=0)
    assert state.epoch == 0 and history["loss"].shape == (0,) and history["epoch"].shape == (0,)
    assert_trees_close(state.params, params, rtol=0, atol=0)
    assert_trees_close(state.opt_state, optimizer.init(params), rtol=0, atol=0)
    again, _ = jaxnn.fit(net, state, x, t, optimizer=optimizer, batch_size=8, epochs=0)
    assert again.epoch == 0


def test_validation_history_and_evaluate_agree():
    net, params, x, t = classification(n=200)
    x_val, t_val = x[150:], t[150:]
    state, history = jaxnn.fit(net, params, x[:150], t[:150], optimizer=optax.adam(1e-2), batch_size=16,
                               epochs=3, validation=(x_val, t_val))
    assert sorted(history) == ["epoch", "loss", "val_accuracy", "val_loss"]
    assert all(v.shape == (3,) for v in history.values())
    scores = jaxnn.evaluate(net, state.params, x_val, t_val, batch_size=7)  # batches of 7, a remainder of 1
    np.testing.assert_allclose(history["val_loss"][-1], scores["loss"], rtol=1e-12)
    np.testing.assert_allclose(scores["loss"], net.loss(state.params, x_val, t_val), rtol=1e-12)
    expected = float(jnp.mean(jnp.argmax(net.forward(state.params, x_val), -1) == t_val))
    assert history["val_accuracy"][-1] == scores["accuracy"]
    np.testing.assert_allclose(scores["accuracy"], expected, rtol=1e-6)


def test_evaluate_regression_has_no_accuracy():
    net = jaxnn.Network.from_sizes([2, 1], jaxnn.Identity(), jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    x = jnp.arange(10.0).reshape(5, 2)
    scores = jaxnn.evaluate(net, params, x, jnp.zeros((5, 1)), batch_size=2)
    assert list(scores) == ["loss"]
    np.testing.assert_allclose(scores["loss"], net.loss(params, x, jnp.zeros((5, 1))), rtol=1e-12)


def test_evaluate_binary_accuracy_is_the_sign_of_the_logit():
    net = jaxnn.Network.from_sizes([2, 1], jaxnn.Identity(), jaxnn.BinaryCrossEntropyLoss())
    params = [(jnp.array([[1.0, -1.0]]), jnp.zeros(1))]
    x = jnp.array([[2.0, 0.0], [0.0, 2.0], [1.0, 3.0], [3.0, 1.0], [0.0, 0.0]])  # logits 2, -2, -2, 2, 0
    labels = jnp.array([1, 0, 1, 1, 0])
    scores = jaxnn.evaluate(net, params, x, labels, batch_size=2)
    assert scores["accuracy"] == 0.8
    np.testing.assert_allclose(scores["loss"], net.loss(params, x, labels), rtol=1e-12)
    assert jaxnn.evaluate(net, params, x, labels[:, None] * 0.8 + 0.1)["accuracy"] == 0.8


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


def test_diverging_run_raises_with_the_last_finite_state():
    net = jaxnn.Network.from_sizes([3, 8, 1], [jaxnn.ReLU(), jaxnn.Identity()], jaxnn.MSELoss())
    params = net.init(jax.random.key(0))
    x = 10 * jax.random.normal(jax.random.key(1), (64, 3))
    t = 10 * jax.random.normal(jax.random.key(2), (64, 1))
    with pytest.raises(jaxnn.NonFiniteLossError) as info:
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(1.0), batch_size=4, epochs=5)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert f"epoch {err.epoch}, step {err.step} of 16" in str(err)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(err.state.params))
    assert err.state.epoch == err.epoch_start_state.epoch == err.epoch - 1
    # Nothing trained before the failing step is lost.
    assert err.step > 1 and not np.allclose(err.state.params[0][0], err.epoch_start_state.params[0][0])
    # Switched off, the run goes on and reports what happened.
    _, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(1.0), batch_size=4, epochs=2,
                           check_finite=False)
    assert not np.isfinite(history["loss"]).all()


def test_a_fresh_equal_optimizer_does_not_compile_again():
    net, params, x, t = classification()
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *args, **kwargs: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
    )
    x8, t8 = x[:8], t[:8]
    for make in (lambda: optax.sgd(0.05), lambda: optax.adam(1e-3)):
        jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8, key=jax.random.key(0))
        jaxnn.make_train_step(net, make())(params, make().init(params), x8, t8)
        before = len(compiles)
        jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8, key=jax.random.key(1))
        jaxnn.make_train_step(net, make())(params, make().init(params), x8, t8)
        assert len(compiles) == before
    # A different learning rate is a different configuration: it compiles.
    before = len(compiles)
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.07), batch_size=8)
    assert len(compiles) > before


def test_a_learning_rate_read_from_a_global_is_not_reused():
    net, params, x, t = classification()
    rates = {"lr": 0.1}
    make = lambda: optax.sgd(lambda count: rates["lr"])
    a, _ = jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8)
    rates["lr"] = 0.0
    b, _ = jaxnn.fit(net, params, x, t, optimizer=make(), batch_size=8)
    assert_trees_close(b.params, params, rtol=0, atol=0)  # lr 0 really ran: nothing moved
    assert not np.allclose(a.params[0][0], params[0][0])


def test_progress_bar_writes_a_line_per_epoch_when_not_a_terminal():
    net, params, x, t = classification()
    stream = io.StringIO()
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=3, validation=(x, t),
              callbacks=[jaxnn.ProgressBar(file=stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("fit: epoch ") for line in lines)
    assert "12 steps" in lines[0] and "val_accuracy" in lines[-1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_advances_within_an_epoch_on_a_terminal():
    pytest.importorskip("tqdm")
    net, params, x, t = classification()
    seen = []

    class Watch(jaxnn.Callback):
        def on_steps(self, done):
            seen.append(done)

    bar = jaxnn.ProgressBar(updates_per_epoch=4, file=_Terminal(), short_epoch=0)
    plain, _ = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=2)
    chunked, _ = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=2,
                           callbacks=[bar, Watch()])
    assert seen == [3, 6, 9, 12] * 2  # 12 steps per epoch in chunks of 3
    assert "24/24" in bar.file.getvalue()
    assert_trees_close(chunked.params, plain.params, rtol=0, atol=0)  # chunks change nothing
    # A fast epoch is not cut up for a bar that only wants to be seen on slow ones.
    class Patient(Watch):
        steps_per_update, short_epoch = 3, 60.0

    seen.clear()
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=2, callbacks=[Patient()])
    assert seen == [3, 12, 12]  # the first chunk measured the epoch; the second epoch is known to be short
    seen.clear()
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=1, callbacks=[Watch(), bar])
    assert seen == [3, 6, 9, 12]  # a bar that wants every update still gets them


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


KILLED_RUN = """
import sys, jax, optax, jaxnn
sys.path.insert(0, {root!r})
from tests.test_training_runs import classification
jax.config.update("jax_enable_x64", True)
net, params, x, t = classification()
jaxnn.fit(net, params, x, t, optimizer=optax.adam(1e-2), batch_size=8, key=jax.random.key(5),
          epochs=100000, callbacks=[jaxnn.Checkpoint({path!r})])
"""


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
