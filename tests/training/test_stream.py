"""Host streaming: bitwise the in-memory fit, its data checked."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import max_abs_diff, stream_problem


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_fit_is_bitwise_the_in_memory_fit(tmp_path, dtype):
    net, params, x, t = stream_problem(dtype, n=203)  # 12 full batches of 16 and a last one of 11
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    xm, tm = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "t.npy", mmap_mode="r")
    for key in (jax.random.key(3), None) if dtype == np.float32 else (jax.random.key(3),):
        kw = dict(optimizer=optax.adam(1e-2), batch_size=16, epochs=2, key=key)
        ref, h_ref = jaxnn.fit(net, params, x, t, **kw)
        runs = [jaxnn.fit(net, params, xm, tm, **kw)]  # a memmap streams by itself
        if key is not None:
            runs.append(jaxnn.fit(net, params, x, t, stream=jaxnn.HostStream(steps_per_chunk=5), **kw))
        for state, history in runs:
            assert max_abs_diff(state.params, ref.params) == 0
            assert state.epoch == 2
            np.testing.assert_allclose(history["loss"], h_ref["loss"], rtol=1e-6)
    if dtype == np.float64:
        return
    # per-example steps (batch 1), and resuming a streamed run
    kw = dict(optimizer=optax.sgd(0.05), batch_size=1, key=jax.random.key(4))
    ref, _ = jaxnn.fit(net, params, x[:40], t[:40], epochs=2, **kw)
    half, _ = jaxnn.fit(net, params, x[:40], t[:40], stream=jaxnn.HostStream(7), epochs=1, **kw)
    full, _ = jaxnn.fit(net, half, x[:40], t[:40], stream=jaxnn.HostStream(7), epochs=1, **kw)
    assert max_abs_diff(full.params, ref.params) == 0


def test_streamed_fit_checks_its_data():
    net, params, x, t = stream_problem()
    x[150, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=10, stream=jaxnn.HostStream())
    with pytest.raises(TypeError, match="NumPy arrays"):
        jaxnn.fit(net, params, jnp.asarray(x), t, optimizer=optax.sgd(0.1), batch_size=10, stream=jaxnn.HostStream())
    with pytest.raises(TypeError, match="HostStream"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=10, stream=64)
    with pytest.raises(ValueError, match="steps_per_chunk"):
        jaxnn.HostStream(0)

