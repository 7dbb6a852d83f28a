"""Learning rules: an epoch of each rule against a backprop epoch of the same network, in one run.

The network is 784-256-256-256-10 (tanh, softmax cross-entropy), float32; an
epoch is one jitted ``lax.scan`` over minibatches of 128 (``--batches`` of
them), each step ``rule.value_and_grad``, ``optax.sgd``, ``rule.after_update``
and ``optax.apply_updates``, exactly as ``fit`` runs a source. Every case runs
once per round in a shuffled order (interleaved), and the table gives medians
and each rule's ratio to backprop (of the medians, and of the fastest rounds,
steadier on a shared machine). Targets: FA, SS and KP at most 1.1x
backprop (the same matrix products, other matrices); DFA at most 1.0x (its
hidden errors are one small product each from the output error, not a chain
of (batch, outs) x (outs, ins) products).

Then the cost of watching a rule: ``fit`` on the example's network
(examples/learning_rules.py: 64-64x5-10 tanh, scikit-learn's digits, batch 32,
Adam, feedback alignment) with and without ``jaxnn.AlignmentMonitor`` on 512
images, interleaved the same way; target: at most 5% more time at its default
interval.

    python benchmarks/learning_rules.py [--repeats 15] [--batches 60] [--out results/learning-rules-....txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn.rules import Backprop, DirectFeedbackAlignment, FeedbackAlignment, KolenPollack, SignSymmetry
from timing import interleaved

SIZES, BATCH = (784, 256, 256, 256, 10), 128
RULES = {
    "backprop": Backprop(),
    "FA": FeedbackAlignment(),
    "SS": SignSymmetry(),
    "KP": KolenPollack(decay=1e-3),
    "DFA": DirectFeedbackAlignment(),
}
TARGETS = {"FA": 1.1, "SS": 1.1, "KP": 1.1, "DFA": 1.0}
MONITOR_EPOCHS, MONITOR_TARGET = 20, 1.05


def epoch_fn(net, rule, optimizer):
    """``epoch(params, state, opt_state, xs, ts)``: one jitted scan of training steps over the minibatches."""

    def step(carry, batch):
        params, state, opt_state = carry
        loss, grads, state = rule.value_and_grad(net, params, state, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        updates, state = rule.after_update(net, params, state, updates)
        return (optax.apply_updates(params, updates), state, opt_state), loss

    @jax.jit
    def epoch(params, state, opt_state, xs, ts):
        return jax.lax.scan(step, (params, state, opt_state), (xs, ts))

    return epoch


def cases(batches: int) -> dict:
    net = jaxnn.Network.from_sizes(SIZES, [jaxnn.Tanh()] * 3 + [jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0), dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (batches, BATCH, SIZES[0]), jnp.float32)
    ts = jax.random.randint(jax.random.key(2), (batches, BATCH), 0, SIZES[-1])
    optimizer = optax.sgd(0.01)
    out = {}
    for name, rule in RULES.items():
        epoch = epoch_fn(net, rule, optimizer)
        start = (params, rule.init(jax.random.key(3), net, params), optimizer.init(params))

        def run(epoch=epoch, start=start):
            jax.block_until_ready(epoch(*start, xs, ts))

        out[name] = (run, batches)
    return out


def monitor_cases() -> dict:
    """``fit`` for MONITOR_EPOCHS epochs, without and with the monitor (default interval and every epoch)."""
    import inspect

    from sklearn.datasets import load_digits

    digits = load_digits()
    x, t = jnp.asarray(digits.data / 16.0, jnp.float32)[:1408], jnp.asarray(digits.target)[:1408]
    hidden = 5
    net = jaxnn.Network.from_sizes((64,) + (64,) * hidden + (10,), [jaxnn.Tanh()] * hidden + [jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0), dtype=jnp.float32)
    default = inspect.signature(jaxnn.AlignmentMonitor).parameters["every"].default
    out = {}
    for name, every in (("fit", None), (f"fit + monitor, every {default} (default)", default),
                        ("fit + monitor, every 1", 1)):
        # Made once, as a script would: its construction checks shapes once, outside the epochs timed.
        callbacks = [] if every is None else [jaxnn.AlignmentMonitor(net, x[:512], t[:512], every=every)]

        def run(callbacks=callbacks):
            state, _ = jaxnn.fit(net, params, x, t, optimizer=optax.adam(3e-3), batch_size=32,
                                 epochs=MONITOR_EPOCHS, key=jax.random.key(1), gradients=FeedbackAlignment(),
                                 callbacks=callbacks)
            jax.block_until_ready(state)

        out[name] = (run, MONITOR_EPOCHS)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()}; python "
            f"{platform.python_version()}, jax {jax.__version__}, jaxlib {jax.lib.__version__}, "
            f"optax {optax.__version__}, numpy {np.__version__}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--batches", type=int, default=60, help="minibatches of 128 per epoch")
    parser.add_argument("--out", metavar="FILE.txt", help="also write the output to this file")
    args = parser.parse_args()

    timings = interleaved(cases(args.batches), args.repeats)
    ref, ref_best = timings["backprop"].median, timings["backprop"].best
    lines = [
        machine(),
        f"command: python benchmarks/learning_rules.py {' '.join(sys.argv[1:])}".rstrip(),
        "",
        f"{'-'.join(map(str, SIZES))} tanh, float32, {jax.devices()[0].platform}: an epoch of {args.batches} "
        f"minibatches of {BATCH} (one jitted lax.scan, optax.sgd), {args.repeats} interleaved rounds, medians",
    ]
    for name, tm in timings.items():
        lo, hi = tm.iqr
        ratio = tm.median / ref
        target = f"  target <= {TARGETS[name]:.1f}x: {'met' if ratio <= TARGETS[name] else 'MISSED'}" if name in TARGETS else ""
        lines.append(f"  {name:<9} {tm.median * 1e3:8.3f} ms/step  IQR [{lo * 1e3:.3f}, {hi * 1e3:.3f}]  "
                     f"ratio {ratio:5.2f}x (fastest rounds {tm.best / ref_best:4.2f}x){target}")
    timings = interleaved(monitor_cases(), args.repeats)
    ref, ref_best = timings["fit"].median, timings["fit"].best
    lines += ["", f"AlignmentMonitor: fit on the example's 64-64x5-10 tanh network, digits (1408 images, batch 32, "
                  f"Adam, FA), {MONITOR_EPOCHS} epochs a call, angles on 512 images; {args.repeats} interleaved "
                  f"rounds, medians per epoch"]
    for name, tm in timings.items():
        lo, hi = tm.iqr
        ratio = tm.median / ref
        target = (f"  target <= {MONITOR_TARGET:.2f}x: {'met' if ratio <= MONITOR_TARGET else 'MISSED'}"
                  if "default" in name else "")
        lines.append(f"  {name:<33} {tm.median * 1e3:7.2f} ms/epoch  IQR [{lo * 1e3:.2f}, {hi * 1e3:.2f}]  "
                     f"ratio {ratio:5.3f}x (fastest rounds {tm.best / ref_best:5.3f}x){target}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
