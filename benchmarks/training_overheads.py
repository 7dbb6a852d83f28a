"""Section 5: what the training loop around the recursion costs, as ratios measured in one run.

* ``fit`` with a fresh ``optax.sgd`` on every call (as everyone writes it) and
  with one reused optimizer object, against a bare ``lax.scan`` of the same
  steps: the articles' quadrant training (99,000 per-example steps).
* an MNIST-size epoch (784-128-128-10, batch 128, 468 steps, data on the
  device, ``key=None``, ``fit`` called once per epoch) against a plain jitted
  ``lax.scan`` epoch of the same computation (the recursion, the loss, the
  same optax update) over pre-batched data; steady state in one process, and
  the first call, compile included, each in a fresh process.
* a ``make_train_step`` step called from a Python loop against a plain
  ``jax.jit`` step of the same computation, fed NumPy rows and JAX rows.
* validation after every epoch (2,000 examples) on a 784-16-16-10
  per-example epoch over 8,000 examples.
* the progress bar on (advancing within the epoch) against off.

    python benchmarks/training_overheads.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
import first_call
from quadrants import LR, _bare_manual_step, bare_scan, make_problem
from timing import interleaved

HERE = pathlib.Path(__file__).resolve().parent


class _Terminal(io.StringIO):
    """A sink that says it is a terminal, so the bar draws (and advances) as it would on screen."""

    def isatty(self):
        return True


def _fit(net, params, x, t, make_optimizer, batch_size, **kwargs):
    state, _ = jaxnn.fit(net, params, x, t, optimizer=make_optimizer(), batch_size=batch_size, **kwargs)
    jax.block_until_ready(state.params)


def quadrant_cases(steps: int) -> dict:
    net, params, x, t = make_problem(steps)
    x, t = jnp.asarray(x), jnp.asarray(t)
    same = optax.sgd(LR)
    fit = functools.partial(_fit, net, params, x, t, batch_size=1)
    bar = lambda: jaxnn.ProgressBar(file=_Terminal())
    return {
        "bare_scan": (lambda: jax.block_until_ready(bare_scan(params, x, t, _bare_manual_step)), steps),
        "fit_fresh_sgd": (lambda: fit(lambda: optax.sgd(LR)), steps),
        "fit_same_sgd": (lambda: fit(lambda: same), steps),
        "fit_progress_bar": (lambda: fit(lambda: optax.sgd(LR), callbacks=[bar()]), steps),
    }


def mnist_problem(n, sizes, seed=0):
    kx, kt, kp = jax.random.split(jax.random.key(seed), 3)
    acts = [jaxnn.ReLU()] * (len(sizes) - 2) + [jaxnn.Identity()]
    net = jaxnn.Network.from_sizes(sizes, acts, jaxnn.CrossEntropyLoss())
    x = jax.random.normal(kx, (n, sizes[0]), jnp.float32)
    t = jax.random.randint(kt, (n,), 0, sizes[-1])
    return net, net.init(kp, dtype=jnp.float32), x, t


def mnist_cases(steps: int, batch: int) -> dict:
    """fit's epoch (unsplit, and with its default batch_split) against first_call.plain_epoch."""
    net, params, x, t = mnist_problem(steps * batch, (784, 128, 128, 10))
    lr = first_call.MNIST_LR
    epoch = first_call.plain_epoch(net, optax.sgd(lr))
    xs, ts = x.reshape((steps, batch) + x.shape[1:]), t.reshape((steps, batch))
    state = optax.sgd(lr).init(params)
    fit = functools.partial(_fit, net, params, x, t, lambda: optax.sgd(lr), batch)
    return {
        "plain_scan": (lambda: jax.block_until_ready(epoch(params, state, xs, ts)), steps),
        "fit_split_1": (lambda: fit(batch_split=1), steps),
        "fit_default": (lambda: fit(), steps),
    }


def first_calls(rounds: int) -> dict:
    """Seconds of the first call (compile included) in a fresh process: fit's and the plain scan's."""
    samples = {"plain": [], "fit": [], "fit_split_1": []}
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # compile every time
    for _ in range(rounds):
        for case in samples:
            out = subprocess.run([sys.executable, str(HERE / "first_call.py"), "mnist-epoch", case],
                                 capture_output=True, text=True, timeout=300, check=True, env=env)
            samples[case].append(json.loads(out.stdout.strip().splitlines()[-1])["first"])
    return samples


def step_loop_cases(steps: int) -> dict:
    """A make_train_step step per row from a Python loop, against a plain jax.jit step, on the 2-3-2 net."""
    net, params, x, t = make_problem(steps)
    optimizer = optax.sgd(LR)
    step = jaxnn.make_train_step(net, optimizer, batch_split=1)

    @jax.jit
    def plain(params, opt_state, x, t):
        loss, grads = net.value_and_backprop(params, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    numpy_rows = [(x[i], t[i]) for i in range(steps)]
    jax_rows = [(jnp.asarray(a), jnp.asarray(b)) for a, b in numpy_rows]

    def loop(fn, rows):
        def run():
            p, s = params, optimizer.init(params)
            for xi, ti in rows:
                p, s, _ = fn(p, s, xi, ti)
            jax.block_until_ready(p)
        return run, steps

    return {
        "plain_jit_numpy": loop(plain, numpy_rows),
        "train_step_numpy": loop(step, numpy_rows),
        "plain_jit_jax": loop(plain, jax_rows),
        "train_step_jax": loop(step, jax_rows),
    }


def validation_cases(n: int, n_val: int) -> dict:
    net, params, x, t = mnist_problem(n + n_val, (784, 16, 16, 10), seed=1)
    x_val, t_val, x, t = x[n:], t[n:], x[:n], t[:n]
    same = optax.sgd(0.01)
    fit = functools.partial(_fit, net, params, x, t, lambda: same, 1)
    return {
        "fit": (lambda: fit(), n),
        "fit_validation": (lambda: fit(validation=(x_val, t_val)), n),
    }


def report(title, timings, reference, unit="us/step", scale=1e6):
    print(f"\n{title}")
    ref = timings[reference].median
    for name, tm in timings.items():
        lo, hi = tm.iqr
        print(f"  {name:<18} {tm.median * scale:9.3f} {unit}  IQR [{lo * scale:.3f}, {hi * scale:.3f}]  "
              f"ratio {tm.median / ref:5.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per table")
    parser.add_argument("--first-calls", type=int, default=5, help="fresh processes per first-call case")
    parser.add_argument("--quick", action="store_true", help="smaller problems, fewer rounds")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, float32")

    q = interleaved(quadrant_cases(20_000 if args.quick else 99_000), repeats)
    report("quadrant training (2-3-2, 99,000 per-example SGD steps)", q, "bare_scan")
    print(f"  progress bar on vs off: {q['fit_progress_bar'].median / q['fit_fresh_sgd'].median:.3f}x")

    m = interleaved(mnist_cases(64 if args.quick else 468, 128), repeats)
    report("784-128-128-10 epoch, batch 128, 468 steps, data on the device (fresh optax.sgd per fit call)",
           m, "plain_scan")

    first = first_calls(2 if args.quick else args.first_calls)
    print("\nfirst call of the same epoch in a fresh process, compile included (seconds)")
    plain = float(np.median(first["plain"]))
    for name, values in first.items():
        print(f"  {name:<18} median {np.median(values):6.3f} s  range [{min(values):.3f}, {max(values):.3f}]  "
              f"ratio {np.median(values) / plain:5.2f}x")

    s = interleaved(step_loop_cases(500 if args.quick else 2000), repeats)
    report("make_train_step from a Python loop, one row a step (2-3-2 net)", s, "plain_jit_numpy")
    print(f"  with JAX rows: {s['train_step_jax'].median / s['plain_jit_jax'].median:.3f}x the plain step")

    v = interleaved(validation_cases(8000, 2000), repeats)
    report("784-16-16-10 per-example epoch over 8,000 examples, validation on 2,000", v, "fit",
           unit="us/example")


if __name__ == "__main__":
    main()
