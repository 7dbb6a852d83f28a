"""Real processes: the per-step all-reduce and the epoch time of 1, 2 and 4 jax.distributed processes on one host.

    python benchmarks/multiprocess.py                 # 1, 2 and 4 processes, about two minutes on 2 cores
    python benchmarks/multiprocess.py --processes 2   # one count

Every process is a CPU process with one device, all on 127.0.0.1, and the
collectives go through gloo (TCP), as in tests/training/test_multiprocess.py.
Each count measures, in the same processes:

* the all-reduce: a compiled loop of 100 all-reduces of the gradient of the
  MNIST-size net 784-128-128-10 (118,282 float32 numbers, 462 KiB), one
  per step of ``fit``; the time per all-reduce;
* the epoch: shuffled epochs of 100 steps of ``jaxnn.fit`` (12,800 rows,
  batch 128 split over the processes, SGD), the data split by rows with
  ``process_rows``/``global_rows``; the time from one epoch's end to the
  next (after the first, which compiles), median over the rounds.

Processes are bounded in time (a timeout per launch) and killed if they overrun.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the jaxnn of this checkout

SIZES = (784, 128, 128, 10)
BATCH, STEPS, REDUCES = 128, 100, 100
TIMEOUT = 400  # seconds for all processes of one launch


def worker(nproc: int, pid: int, port: int, rounds: int) -> None:
    import jax

    if nproc > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                                   initialization_timeout=60, heartbeat_timeout_seconds=20,
                                   shutdown_timeout_seconds=20)
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import jaxnn

    # The all-reduce of one gradient, REDUCES times in one compiled loop.
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    size = sum(i * o + o for i, o in zip(SIZES[:-1], SIZES[1:]))

    def reduce_many(a):
        def body(_, a):
            return jax.lax.psum(a, "batch") * (1.0 / nproc)
        return jax.lax.fori_loop(0, REDUCES, body, a)

    run = jax.jit(jax.shard_map(reduce_many, mesh=mesh, in_specs=PartitionSpec("batch"),
                                out_specs=PartitionSpec("batch"), check_vma=False))
    grads = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("batch")),
                                                   np.ones((1, size), np.float32), (nproc, size))
    jax.block_until_ready(run(grads))
    reduce_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(run(grads))
        reduce_times.append((time.perf_counter() - start) / REDUCES)

    # One shuffled epoch of fit, the data split by rows over the processes.
    net = jaxnn.Network.from_sizes(SIZES, [jaxnn.ReLU(), jaxnn.ReLU(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    n = BATCH * STEPS
    rng = np.random.default_rng(0)
    x_all = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    t_all = rng.integers(0, SIZES[-1], n).astype(np.int32)
    rows = jaxnn.training.process_rows(n)
    x, t = jaxnn.training.global_rows(x_all[rows]), jaxnn.training.global_rows(t_all[rows])
    state = net.init(jax.random.key(0), dtype=jnp.float32)
    kw = dict(optimizer=optax.sgd(0.01), batch_size=BATCH, key=jax.random.key(1), devices=jax.devices(),
              check_data=False)
    ends = []

    class EpochEnds(jaxnn.Callback):
        def on_epoch_end(self, state, logs):  # after the epoch's loss is read back: its steps are done
            ends.append(time.perf_counter())

    jaxnn.fit(net, state, x, t, epochs=rounds + 1, callbacks=[EpochEnds()], **kw)  # the first epoch compiles
    epoch_times = list(np.diff(ends))
    if pid == 0:
        print(json.dumps({"processes": nproc, "allreduce_s": reduce_times, "epoch_s": epoch_times}), flush=True)
    if nproc > 1:
        jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(nproc), str(i), str(port), str(rounds)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(nproc)]
    deadline, outs = time.monotonic() + TIMEOUT, []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1, deadline - time.monotonic())))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{nproc} processes failed:\n" + "\n".join(err[-2000:] for _, err in outs))
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    print(f"net {'-'.join(map(str, SIZES))}, batch {BATCH}, {STEPS} steps per epoch ({BATCH * STEPS} rows), "
          f"float32, CPU, gloo on 127.0.0.1, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("\n| processes | all-reduce of the gradient (462 KiB), per step | epoch of 100 steps | "
          "compared with 1 process |")
    print("| --- | --- | --- | --- |")
    first = None
    for nproc in args.processes:
        r = launch(nproc, args.rounds)
        red = np.percentile(r["allreduce_s"], [50, 25, 75]) * 1e3
        ep = np.percentile(r["epoch_s"], [50, 25, 75]) * 1e3
        first = ep[0] if first is None else first
        print(f"| {nproc} | {red[0]:.2f} ms (IQR {red[1]:.2f}-{red[2]:.2f}) | {ep[0]:.0f} ms "
              f"(IQR {ep[1]:.0f}-{ep[2]:.0f}) | {ep[0] / first:.2f}x |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*map(int, sys.argv[2:6]))
    else:
        main()
