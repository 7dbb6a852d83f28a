"""Per-example clipping (DP-SGD): jaxnn's one-pass clipped mean vs vmap(jax.grad)-then-clip.

Times, side by side in one run, jitted, on the same batch:

* ``jaxnn``: ``jaxnn.clipped_mean_grad`` -- norms from ``||db_i|| ||x_i||``, then
  one weighted matrix product per layer; no per-example gradients formed.
* ``vmap(jax.grad)``: every per-example gradient materialised, norms, clip, mean.
* ``vmap(backprop)``: the same with the hand-written recursion under vmap.

Repeats are interleaved (A, B, C, A, B, C, ...) so load on the machine hits
all alike; the table shows medians and the ratios to jaxnn.
"""

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn


def vmap_then_clip(grad_fn, params, x, t, clip_norm):
    per_example = jax.vmap(grad_fn, in_axes=(None, 0, 0))(params, x, t)
    leaves = jax.tree.leaves(per_example)
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves))
    weights = jnp.minimum(1.0, clip_norm / norms)
    return jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=1) / x.shape[0], per_example)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 128, 128, 10])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    args = parser.parse_args()

    net = jaxnn.Network.from_sizes(args.sizes, [jaxnn.ReLU()] * (len(args.sizes) - 2) + [jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0), dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (args.batch, args.sizes[0]), jnp.float32)
    t = jax.random.randint(jax.random.key(2), (args.batch,), 0, args.sizes[-1])
    c = args.clip_norm

    candidates = {
        "jaxnn clipped_mean_grad": jax.jit(lambda p, x, t: jaxnn.clipped_mean_grad(net, p, x, t, c)),
        "vmap(jax.grad) then clip": jax.jit(lambda p, x, t: vmap_then_clip(jax.grad(net.loss), p, x, t, c)),
        "vmap(net.backprop) then clip": jax.jit(lambda p, x, t: vmap_then_clip(net.backprop, p, x, t, c)),
    }
    with jax.default_matmul_precision("highest"):  # checked in full float32 (a GPU's default is TF32)
        reference = candidates["vmap(jax.grad) then clip"](params, x, t)
        for name, fn in candidates.items():  # check they agree before timing
            out = jax.block_until_ready(fn(params, x, t))
            err = max(float(jnp.max(jnp.abs(a - b)))
                      for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(reference)))
            assert err < 1e-5, f"{name} differs from vmap(jax.grad) then clip by {err}"
    for fn in candidates.values():  # compile at the default precision, the one timed
        jax.block_until_ready(fn(params, x, t))

    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(params, x, t))
            times[name].append(time.perf_counter() - start)

    device = jax.devices()[0]
    print(f"jax {jax.__version__}, {device.platform} ({device.device_kind}), {cpu_name()} x{os.cpu_count()}, "
          f"Python {platform.python_version()}; net {tuple(args.sizes)}, batch {args.batch}, float32, "
          f"median of {args.repeats} interleaved repeats")
    base = np.median(times["jaxnn clipped_mean_grad"])
    print(f"{'method':<30}{'median ms':>10}{'ratio to jaxnn':>16}")
    for name, ts in times.items():
        med = np.median(ts)
        print(f"{name:<30}{med * 1e3:>10.3f}{med / base:>15.1f}x")


if __name__ == "__main__":
    main()
