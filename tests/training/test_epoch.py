"""One epoch as compiled calls: every example kept, chunks reported for progress."""

import io

import numpy as np
import optax
import pytest

import jaxnn
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

