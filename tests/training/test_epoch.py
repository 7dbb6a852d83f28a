"""One epoch as compiled calls: every example kept, chunks reported for progress."""

import io

import numpy as np
import optax
import pytest

import jaxnn
import jaxnn.training._epoch as epoch_module
from tests.helpers import assert_trees_close, classification, quadrant_problem


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.slow
@pytest.mark.parametrize("n, batch_size", [(10, 3), (10, 4), (10, 10), (3, 8)])
def test_fit_keeps_every_example_when_batches_do_not_divide(n, batch_size):
    net, params, x, t = quadrant_problem(n)
    lr = 0.1
    state, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(lr), batch_size=batch_size)
    trained = state.params
    expected, weighted = params, 0.0
    for start in range(0, n, batch_size):
        xb, tb = x[start : start + batch_size], t[start : start + batch_size]
        loss, grads = net.value_and_backprop(expected, xb, tb)
        weighted += loss * len(xb)
        expected = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(expected, grads)]
    assert_trees_close(trained, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history["loss"], [weighted / n], rtol=1e-12)


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



class _Clock:
    """``time`` for the epoch loop: each reading of ``perf_counter`` is ``seconds`` after the last."""

    def __init__(self, seconds):
        self.now, self.seconds = 0.0, seconds

    def perf_counter(self):
        self.now += self.seconds
        return self.now


@pytest.mark.parametrize("first_chunk_seconds, short_epoch, expected", [
    (3.0, 60.0, [3, 12]),            # 1 s a step, 12 s an epoch: short, the rest in one call
    (15.0, 60.0, [3, 6, 9, 12]),     # 5 s a step: 60 s is not shorter than 60 s
    (30.0, 60.0, [3, 6, 9, 12]),     # 10 s a step: long, every update
    (3.0, 10.0, [3, 6, 9, 12]),      # 12 s is not short for a callback that wants 10
])
def test_an_epoch_is_measured_short_from_its_first_chunk(monkeypatch, first_chunk_seconds, short_epoch, expected):
    """Guards against the short-epoch estimate (per step from the first chunk, times the epoch's steps,
    against ``short_epoch``) being computed or compared wrongly, with the clock under the test's control;
    an epoch measured short once is remembered for the next fit with the same shapes."""
    monkeypatch.setattr(epoch_module, "_SHORT_EPOCHS", epoch_module.collections.OrderedDict())
    monkeypatch.setattr(epoch_module, "time", _Clock(first_chunk_seconds))
    net, params, x, t = classification()
    seen = []

    class Watch(jaxnn.Callback):
        steps_per_update = 3

        def on_steps(self, done):
            seen.append(done)

    Watch.short_epoch = short_epoch
    jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=1, callbacks=[Watch()])
    assert seen == expected
    remembered = len(epoch_module._SHORT_EPOCHS) == 1
    assert remembered == (expected == [3, 12])
    if remembered:  # the next fit trusts the measure: one call, for a callback as patient; chunks for one less
        seen.clear()
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=1, callbacks=[Watch()])
        assert seen == [12]
        seen.clear()
        for patience in (11.0, 12.0):  # the remembered 12 s are not shorter than either
            seen.clear()
            Watch.short_epoch = patience
            jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, epochs=1, callbacks=[Watch()])
            assert seen == [3, 6, 9, 12]


def test_the_short_epochs_remembered_are_the_most_recent(monkeypatch):
    """Guards against the memory of short epochs keeping one too few, or forgetting the newest rather than
    the oldest (its size lowered to 2 here): after three short fits of different sizes, the last two are
    remembered, oldest first."""
    monkeypatch.setattr(epoch_module, "_SHORT_EPOCHS", epoch_module.collections.OrderedDict())
    monkeypatch.setattr(epoch_module, "_MAX_SHORT", 2)
    monkeypatch.setattr(epoch_module, "time", _Clock(0.001))
    net, params, x, t = classification()

    class Patient(jaxnn.Callback):
        steps_per_update, short_epoch = 1, 60.0

    for n in (64, 72, 80):
        jaxnn.fit(net, params, x[:n], t[:n], optimizer=optax.sgd(0.1), batch_size=8, epochs=1, callbacks=[Patient()])
    assert [rows for _, _, rows, _ in epoch_module._SHORT_EPOCHS] == [72, 80]
