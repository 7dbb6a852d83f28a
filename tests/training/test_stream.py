"""Host streaming: bitwise the in-memory fit, its data checked, its buffers within a budget."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import max_abs_diff, stream_problem


@pytest.mark.slow
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



@pytest.mark.parametrize("options, match", [(dict(max_bytes=0), "max_bytes must be a positive int"),
                                            (dict(max_bytes=2.5e8), "max_bytes must be a positive int"),
                                            (dict(steps_per_chunk=-1), "steps_per_chunk must be a positive int")])
def test_host_stream_options_are_checked(options, match):
    with pytest.raises(ValueError, match=match):
        jaxnn.HostStream(**options)


def test_a_chunk_holds_the_steps_that_fit_six_times_in_the_budget():
    x, t = np.zeros((100, 20), np.float32), np.zeros(100, np.int32)
    sent = 20 * 4 + 4  # bytes of a row of x and t
    per_step = 10 * 6 * sent
    assert jaxnn.HostStream(max_bytes=7 * per_step).chunk_steps(10, x, t, (np.float32, np.int32)) == 7
    assert jaxnn.HostStream(max_bytes=8 * per_step - 1).chunk_steps(10, x, t, (np.float32, np.int32)) == 7
    assert jaxnn.HostStream(4, max_bytes=7 * per_step).chunk_steps(10, x, t, (np.float32, np.int32)) == 4
    # rows cast on the host (float64 sent as float32) count once more as stored
    assert jaxnn.HostStream(max_bytes=2 * (per_step + 10 * 20 * 8)).chunk_steps(
        10, x.astype(np.float64), t, (np.float32, np.int32)) == 2
    assert jaxnn.HostStream().max_bytes == 256 * 2**20 and jaxnn.HostStream().steps_per_chunk is None


def test_a_step_larger_than_the_budget_is_refused_before_anything_runs():
    net, params, x, t = stream_problem()  # rows of 20 float32 and one int32 label: 84 bytes
    with pytest.raises(ValueError, match=r"HostStream\(max_bytes=10000\) is too small for one step: batch_size 20 "
                                         r"rows of 84 bytes \(x and t as sent\) need 10080 bytes in flight"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=20,
                  stream=jaxnn.HostStream(max_bytes=10000))


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 16])
def test_a_small_budget_trains_bitwise_as_in_memory(batch_size):
    net, params, x, t = stream_problem(n=83)
    kw = dict(optimizer=optax.adam(1e-2), batch_size=batch_size, epochs=2, key=jax.random.key(5))
    ref, _ = jaxnn.fit(net, params, x, t, **kw)
    budget = 6 * 84 * batch_size * 2  # two steps per chunk
    state, _ = jaxnn.fit(net, params, x, t, stream=jaxnn.HostStream(max_bytes=budget), **kw)
    assert max_abs_diff(state.params, ref.params) == 0


MEMORY_SCRIPT = r"""
import sys, threading, time
import jax, numpy as np, optax, jaxnn

def anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

path, budget = sys.argv[1], int(sys.argv[2])
x = np.load(path + "/x.npy", mmap_mode="r")
t = np.load(path + "/t.npy", mmap_mode="r")
net = jaxnn.Network.from_sizes((x.shape[1], 4), jaxnn.Identity(), jaxnn.CrossEntropyLoss())
params = net.init(jax.random.key(0))
kw = dict(optimizer=optax.sgd(0.01), batch_size=256, key=jax.random.key(1), stream=jaxnn.HostStream(max_bytes=budget))
chunk = kw["stream"].chunk_steps(256, x, t, (np.float32, np.int32))
warm = (chunk + (x.shape[0] // 256) % chunk) * 256  # a full chunk and the epoch's last: every shape compiled
jaxnn.fit(net, params, np.asarray(x[:warm]), np.asarray(t[:warm]), **kw)
base = peak = anon()
done = False

def sample():
    global peak
    while not done:
        peak = max(peak, anon())
        time.sleep(0.001)

thread = threading.Thread(target=sample)
thread.start()
state, _ = jaxnn.fit(net, params, x, t, **kw)
jax.block_until_ready(state.params)
done = True
thread.join()
print(max(peak, anon()) - base)
"""


@pytest.mark.slow
def test_streaming_a_memmap_stays_within_its_budget(tmp_path):
    """One epoch over a 64 MiB memmap with a 16 MiB budget: anonymous memory (what the file's pages are not)
    grows by at most the budget and 20 MiB for the runtime (the epoch's order, the reads of the check, XLA's
    scratch, malloc's arenas: 17 to 34 MiB in all measured here, the most on a loaded machine), less than the
    file. Before the budget, a chunk of 64 steps alone was 64 MiB here."""
    rows, ins = 16384, 1024  # 64 MiB of float32
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(rows, ins))
    x[:] = np.random.default_rng(0).standard_normal((rows, ins), np.float32)
    x.flush()
    del x
    np.save(tmp_path / "t.npy", (np.arange(rows) % 4).astype(np.int32))
    budget, allowance = 16 * 2**20, 20 * 2**20
    env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path), str(budget)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    grew = int(out.stdout.split()[-1])
    assert grew <= budget + allowance, f"anonymous memory grew by {grew / 2**20:.1f} MiB"
