"""Learning rules: an epoch of each rule against a backprop epoch of the same network, in one run.

The network is 784-256-256-256-10 (tanh, softmax cross-entropy), float32; an
epoch is one jitted ``lax.scan`` over minibatches of 128 (``--batches`` of
them), each step ``rule.value_and_grad``, ``optax.sgd``, ``rule.after_update``
and ``optax.apply_updates``, exactly as ``fit`` runs a source. Every case runs
once per round in a shuffled order (interleaved), and the table gives medians
and each rule's ratio to backprop. Targets: FA, SS and KP at most 1.1x
backprop (the same matrix products, other matrices); DFA at most 1.0x (its
hidden errors are one small product each from the output error, not a chain
of (batch, outs) x (outs, ins) products).

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
    ref = timings["backprop"].median
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
                     f"ratio {ratio:5.2f}x{target}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
