"""Two processes of a jax.distributed job (CPU, gloo) train as one: equal to one process, checkpoint and resume.

Each process runs tests/multiprocess_worker.py, reads only its half of the
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

WORKER = pathlib.Path(__file__).with_name("multiprocess_worker.py")
TIMEOUT = 90  # seconds for all processes of one launch
TOLERANCE = 1e-5  # float32 training: the all-reduce sums the gradient's parts in another order


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(folder, nproc):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")
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
    np.save(tmp_path / "x.npy", rng.standard_normal((256, 20)).astype(np.float32))
    np.save(tmp_path / "t.npy", rng.integers(0, 4, 256).astype(np.int32))
    _launch(tmp_path, 2)
    _launch(tmp_path, 1)
    p0, p1, one = (np.load(tmp_path / f"params_{n}_{i}.npz") for n, i in ((2, 0), (2, 1), (1, 0)))
    names = [k for k in one.files if k.startswith("arr_")]
    assert len(names) == 8  # 2 layers x (W, b), after training and after resuming
    for k in names:
        np.testing.assert_array_equal(p0[k], p1[k])  # every process holds the same parameters
        np.testing.assert_allclose(p0[k], one[k], rtol=0, atol=TOLERANCE)
        assert not np.array_equal(one[k], np.zeros_like(one[k]))
    np.testing.assert_allclose(p0["loss"], one["loss"], rtol=1e-6)
    assert int(p0["epoch"]) == int(p1["epoch"]) == 3
    assert (tmp_path / "state_2.npz").exists()
