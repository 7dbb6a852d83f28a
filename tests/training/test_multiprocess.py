"""Two processes of a jax.distributed job (CPU, gloo) train as one: equal to one process, checkpoint and resume.

Each process runs tests/training/multiprocess_worker.py, reads only its half of the
rows, trains with ``fit(devices=jax.devices())`` and a ``Checkpoint``, then
resumes from the checkpoint. The workers are bounded by timeouts and killed
by their own handles if they overrun.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxnn

pytestmark = pytest.mark.slow  # several jax.distributed processes

WORKER = pathlib.Path(__file__).with_name("multiprocess_worker.py")
TIMEOUT = 90  # seconds for all processes of one launch
TOLERANCE = 1e-5  # float32 training: the all-reduce sums the gradient's parts in another order


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(folder, nproc, devices=1):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    for _ in range(3):  # the free port can be taken between choosing and binding it: try again
        port = _free_port()
        procs = [
            subprocess.Popen([sys.executable, str(WORKER), str(folder), str(nproc), str(i), str(port)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(nproc)
        ]
        deadline, outs = time.monotonic() + TIMEOUT, []
        try:
            for p in procs:
                outs.append(p.communicate(timeout=max(1, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            outs = [p.communicate()[0] for p in procs]
            pytest.fail(f"{nproc} processes did not finish in {TIMEOUT} s:\n" + "\n".join(o[-3000:] for o in outs))
        if all(p.returncode == 0 for p in procs):
            return
        if not any("Address already in use" in o for o in outs):
            break
    pytest.fail("worker failed:\n" + "\n".join(f"rc {p.returncode}: {o[-3000:]}" for p, o in zip(procs, outs)))


def test_two_processes_train_as_one_and_resume_from_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((264, 20)).astype(np.float32))  # a short last batch of 8
    np.save(tmp_path / "t.npy", rng.integers(0, 4, 264).astype(np.int32))
    _launch(tmp_path, 2)
    _launch(tmp_path, 1)  # one device, shards=2
    _launch(tmp_path, 1, devices=2)  # one process, 2 forced CPU devices
    p0, p1, one, mesh = (np.load(tmp_path / f"params_{tag}.npz") for tag in ("2x1_0", "2x1_1", "1x1_0", "1x2_0"))
    names = [k for k in one.files if k.startswith("arr_")]
    assert len(names) == 8  # 2 layers x (W, b), after training and after resuming
    for k in names:
        np.testing.assert_array_equal(p0[k], p1[k])  # every process holds the same parameters
        np.testing.assert_array_equal(p0[k], mesh[k])  # bitwise those of one process with 2 devices
        np.testing.assert_allclose(p0[k], one[k], rtol=0, atol=TOLERANCE)  # one device: the same minibatches
        assert not np.array_equal(one[k], np.zeros_like(one[k]))
    np.testing.assert_array_equal(p0["loss"], mesh["loss"])
    np.testing.assert_allclose(p0["loss"], one["loss"], rtol=1e-6)
    assert int(p0["epoch"]) == int(p1["epoch"]) == 3
    assert (tmp_path / "state_2x1.npz").exists()


HEARTBEAT = 10  # seconds: the workers' jax.distributed.initialize(heartbeat_timeout_seconds=...)


@pytest.mark.slow
def test_a_killed_peer_is_a_peer_error_naming_the_epoch_and_checkpoint(tmp_path):
    # Process 1 kills itself once epoch 2 is checkpointed; process 0's next all-reduce fails.
    assert issubclass(jaxnn.training.PeerError, RuntimeError)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((4096, 20)).astype(np.float32))
    np.save(tmp_path / "t.npy", rng.integers(0, 4, 4096).astype(np.int32))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), "2", str(i), str(port), "peer"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        survivor = procs[0].communicate(timeout=TIMEOUT)[0]
        ended = time.time()
        procs[1].communicate(timeout=10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert procs[1].returncode == -9, survivor[-3000:]  # SIGKILL, by its own hand
    line = next((ln for ln in survivor.splitlines() if ln.startswith("PeerError at ")), None)
    assert line is not None, survivor[-3000:]
    path = str(tmp_path / "peer.npz")
    assert f"epoch=3 steps=(1, 128) checkpoint={path} checkpoint_epoch=2" in line
    assert "in epoch 3, within steps 1 to 128 of 128" in survivor
    assert f"the last complete epoch is in the checkpoint {path!r} (epoch 2)" in survivor
    assert "heartbeat_timeout_seconds" in survivor
    # It then exits (by JAX's abort, or the worker's own code) within the heartbeat timeout and a margin.
    raised = float(line.split()[2].rstrip(":"))
    assert procs[0].returncode != 0 and ended - raised < HEARTBEAT + 15, (ended - raised, procs[0].returncode)
    assert os.path.exists(path)
