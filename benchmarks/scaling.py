"""Scaling measurements: devices of a mesh, batch_split="auto" against explicit splits, host streaming.

    python benchmarks/scaling.py            # all three tables, a few minutes on 2 cores
    python benchmarks/scaling.py --quick    # fewer rounds

(1) one MNIST-size epoch (784-128-128-10, batch 128) over a mesh of 1, 2, 4
and 8 CPU devices forced with ``--xla_force_host_platform_device_count``, each
count in its own process (on a machine with few cores this simulates devices:
they share the same cores); (2) the default ``batch_split="auto"`` against
explicit splits on the same epoch; (3) an epoch streamed from host memory (an
ndarray and a ``np.memmap``) against the data on the device. Every case of a
table is timed in the same interleaved rounds; medians and the interquartile
range are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the jaxnn of this checkout

SIZES = (784, 128, 128, 10)
BATCH = 128


def problem(n):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxnn

    net = jaxnn.Network.from_sizes(SIZES, [jaxnn.ReLU(), jaxnn.ReLU(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    t = rng.integers(0, SIZES[-1], n).astype(np.int32)
    return net, net.init(jax.random.key(0), dtype=jnp.float32), x, t


def timed(cases, rounds):
    """Median and quartiles (seconds) of each case, run in shuffled interleaved rounds after one warm-up."""
    import jax
    import numpy as np

    for run in cases.values():
        jax.block_until_ready(run())
    samples = {k: [] for k in cases}
    order = list(cases)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for k in order:
            start = time.perf_counter()
            jax.block_until_ready(cases[k]())
            samples[k].append(time.perf_counter() - start)
    return {k: [float(np.percentile(v, q)) for q in (50, 25, 75)] for k, v in samples.items()}


def table(title, results, base):
    print(f"\n{title}\n")
    print("| case | median | IQR | compared with the first |")
    print("| --- | --- | --- | --- |")
    first = results[base][0]
    for k, (med, lo, hi) in results.items():
        print(f"| {k} | {med * 1e3:.0f} ms | {lo * 1e3:.0f}-{hi * 1e3:.0f} | {med / first:.2f}x |")


def devices_worker(n, rounds):
    """One process: an epoch on all its (forced) CPU devices; prints a JSON line."""
    import jax
    import optax

    import jaxnn

    net, params, x, t = problem(n)
    xd, td = jax.device_put((x, t))
    devices = jax.devices()
    kw = dict(optimizer=optax.sgd(0.01), batch_size=BATCH, key=jax.random.key(1))
    cases = {"mesh": lambda: jaxnn.fit(net, params, xd, td, devices=devices if len(devices) > 1 else None, **kw)[0]}
    print(json.dumps({"devices": len(devices), "times": timed(cases, rounds)["mesh"]}), flush=True)


def devices_table(n, rounds):
    results = {}
    for count in (1, 2, 4, 8):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, __file__, "--devices-worker", str(n), str(rounds)],
                             env=env, capture_output=True, text=True, timeout=600, check=True).stdout
        line = json.loads(out.strip().splitlines()[-1])
        results[f"{line['devices']} CPU device(s), `fit(devices=jax.devices())`"] = line["times"]
    table(f"1. one epoch of {n // BATCH} steps over a mesh of forced CPU devices (each count its own process)",
          results, next(iter(results)))


def split_table(n, rounds):
    import jax
    import optax

    import jaxnn

    net, params, x, t = problem(n)
    xd, td = jax.device_put((x, t))
    kw = dict(optimizer=optax.sgd(0.01), batch_size=BATCH, key=jax.random.key(1))
    cores = jaxnn.training._placement.available_cores()
    auto = jaxnn.training.auto_batch_split(BATCH, list(zip(SIZES[:-1], SIZES[1:])), platform="cpu", cores=cores)
    cases = {f'default `batch_split="auto"` (chose {auto} on {cores} cores)': lambda: jaxnn.fit(net, params, xd, td, **kw)[0]}
    for k in (1, 2, 4):
        cases[f"`batch_split={k}`"] = lambda k=k: jaxnn.fit(net, params, xd, td, batch_split=k, **kw)[0]
    table(f"2. one epoch of {n // BATCH} steps, batch {BATCH}: default against explicit splits",
          timed(cases, rounds), next(iter(cases)))


def stream_table(n, rounds):
    import jax
    import numpy as np
    import optax

    import jaxnn

    net, params, x, t = problem(n)
    folder = tempfile.mkdtemp(prefix="jaxnn_scaling_")
    np.save(os.path.join(folder, "x.npy"), x)
    np.save(os.path.join(folder, "t.npy"), t)
    xm = np.load(os.path.join(folder, "x.npy"), mmap_mode="r")
    tm = np.load(os.path.join(folder, "t.npy"), mmap_mode="r")
    xd, td = jax.device_put((x, t))
    kw = dict(optimizer=optax.sgd(0.01), batch_size=BATCH, key=jax.random.key(1))
    cases = {"data on the device": lambda: jaxnn.fit(net, params, xd, td, **kw)[0]}
    for s in (16, 64):
        cases[f"NumPy array, `HostStream({s})`"] = lambda s=s: jaxnn.fit(
            net, params, x, t, stream=jaxnn.HostStream(s), **kw)[0]
    cases["`np.memmap` (streams by itself, `HostStream(64)`)"] = lambda: jaxnn.fit(net, params, xm, tm, **kw)[0]
    table(f"3. one epoch of {n // BATCH} steps ({x.nbytes / 2**20:.0f} MiB of inputs), streamed from the host "
          "or on the device", timed(cases, rounds), next(iter(cases)))
    for name in ("x.npy", "t.npy"):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--devices-worker":
        devices_worker(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a smaller epoch")
    parser.add_argument("--tables", default="1,2,3", help="which tables, e.g. 2,3")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    n = BATCH * (100 if args.quick else 468)
    import jax

    print(f"jax {jax.__version__}, {os.cpu_count()} cores, load average at start "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    tables = {int(s) for s in args.tables.split(",")}
    if 1 in tables:
        devices_table(BATCH * 100, rounds)
    if 2 in tables:
        split_table(n, rounds)
    if 3 in tables:
        stream_table(n, rounds)
    print("\nload average at end " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
