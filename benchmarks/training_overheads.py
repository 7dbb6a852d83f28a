"""Section 5: what the training loop around the recursion costs, as ratios measured in one run.

* ``fit`` with a fresh ``optax.sgd`` on every call (as everyone writes it) and
  with one reused optimizer object, against a bare ``lax.scan`` of the same
  steps: the articles' quadrant training and a 784-128-128-10 epoch.
* validation after every epoch (2,000 examples) on a 784-16-16-10
  per-example epoch over 8,000 examples.
* the progress bar on (advancing within the epoch) against off.

    python benchmarks/training_overheads.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from quadrants import LR, _bare_manual_step, bare_scan, make_problem
from timing import interleaved


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


def mnist_cases(n: int, batch: int) -> dict:
    net, params, x, t = mnist_problem(n, (784, 128, 128, 10))
    lr = 0.01
    steps = n // batch

    @jax.jit
    def bare_epoch(params, x, t):
        def body(p, xt):
            grads = net.backprop(p, *xt)
            return jax.tree.map(lambda w, g: w - lr * g, p, grads), None

        xs = x.reshape((steps, batch) + x.shape[1:])
        ts = t.reshape((steps, batch))
        return jax.lax.scan(body, params, (xs, ts))[0]

    fit = functools.partial(_fit, net, params, x, t, batch_size=batch, batch_split=1)
    return {
        "bare_scan": (lambda: jax.block_until_ready(bare_epoch(params, x, t)), steps),
        "fit_fresh_sgd": (lambda: fit(lambda: optax.sgd(lr)), steps),
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
    parser.add_argument("--quick", action="store_true", help="smaller problems, fewer rounds")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, float32")

    q = interleaved(quadrant_cases(20_000 if args.quick else 99_000), repeats)
    report("quadrant training (2-3-2, 99,000 per-example SGD steps)", q, "bare_scan")
    print(f"  progress bar on vs off: {q['fit_progress_bar'].median / q['fit_fresh_sgd'].median:.3f}x")

    m = interleaved(mnist_cases(2048 if args.quick else 8192, 128), repeats)
    report("784-128-128-10 epoch, batch 128 (fresh optax.sgd per fit call)", m, "bare_scan")

    v = interleaved(validation_cases(8000, 2000), repeats)
    report("784-16-16-10 per-example epoch over 8,000 examples, validation on 2,000", v, "fit",
           unit="us/example")


if __name__ == "__main__":
    main()
