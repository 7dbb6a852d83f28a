"""Per-example gradients with jax.vmap over the hand-written backprop, and a DP-SGD update.

``jax.vmap(net.backprop, in_axes=(None, 0, 0))`` gives every example's own
gradient in one call. DP-SGD (Abadi et al., 2016) needs exactly these: each
example's gradient ``g_i`` is clipped to L2 norm at most ``C``,
``g_i * min(1, C / |g_i|)``, the clipped gradients are averaged, and Gaussian
noise of standard deviation ``sigma C / batch`` is added. The script checks
the vmapped gradients and the clipped mean against a plain Python loop over
the examples, then trains a 64-16-16-10 net on scikit-learn's 8x8 digits
with this update.

    python examples/per_example_gradients.py [--batch 64] [--clip 1.0] [--noise 1.0]
                                             [--steps 1500] [--lr 0.5] [--seed 0]
"""

import argparse
import time

import jax
import jax.numpy as jnp
from sklearn.datasets import load_digits

import jaxnn


def per_example_grads(net, params, x, t):
    """Every example's gradient: leaves shaped like ``params`` with a leading batch axis."""
    return jax.vmap(net.backprop, in_axes=(None, 0, 0))(params, x, t)


def global_norms(grads):
    """The L2 norm of each example's whole gradient, shape (batch,)."""
    return jnp.sqrt(sum(jnp.sum(g.reshape(len(g), -1) ** 2, axis=1) for g in jax.tree.leaves(grads)))


def clipped_mean(grads, clip):
    """Mean over the batch of the gradients scaled to norm at most ``clip``."""
    scale = jnp.minimum(1.0, clip / jnp.maximum(global_norms(grads), 1e-12))
    return jax.tree.map(lambda g: jnp.tensordot(scale, g, axes=1) / len(scale), grads)


def dp_sgd_step(net, params, x, t, key, *, clip, noise, lr):
    """One DP-SGD step: clipped mean of the per-example gradients, plus Gaussian noise."""
    mean = clipped_mean(per_example_grads(net, params, x, t), clip)
    leaves, tree = jax.tree.flatten(mean)
    keys = jax.random.split(key, len(leaves))
    std = noise * clip / len(x)
    noisy = [g + std * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)]
    return jax.tree.map(lambda p, g: p - lr * g, params, jax.tree.unflatten(tree, noisy))


def loop_reference(net, params, x, t, clip):
    """The same per-example gradients and clipped mean, one example at a time in Python."""
    grads, total, backprop = [], None, jax.jit(net.backprop)
    for xi, ti in zip(x, t):
        g = backprop(params, xi, ti)
        norm = jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g)))
        clipped = jax.tree.map(lambda leaf: leaf * jnp.minimum(1.0, clip / norm), g)
        total = clipped if total is None else jax.tree.map(jnp.add, total, clipped)
        grads.append(g)
    return grads, jax.tree.map(lambda leaf: leaf / len(x), total)


def max_difference(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=64, help="examples per batch (norms and DP-SGD)")
    parser.add_argument("--clip", type=float, default=1.0, help="per-example gradient norm bound C")
    parser.add_argument("--noise", type=float, default=1.0, help="noise multiplier sigma")
    parser.add_argument("--steps", type=int, default=1500, help="DP-SGD training steps")
    parser.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = parser.parse_args()

    digits = load_digits()
    x, y = jnp.asarray(digits.data, jnp.float32) / 16.0, jnp.asarray(digits.target, jnp.int32)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    activations = [jaxnn.LeakyReLU(), jaxnn.LeakyReLU(), jaxnn.Identity()]
    net = jaxnn.Network.from_sizes((64, 16, 16, 10), activations, jaxnn.CrossEntropyLoss())
    init_key, batch_key, train_key = jax.random.split(jax.random.key(args.seed), 3)
    params = net.init(init_key)

    # One batch: vmapped per-example gradients against the Python loop.
    xb, yb = x_train[: args.batch], y_train[: args.batch]
    grads = jax.jit(per_example_grads, static_argnums=0)(net, params, xb, yb)
    norms = global_norms(grads)
    loop_grads, loop_mean = loop_reference(net, params, xb, yb, args.clip)
    stacked_loop = jax.tree.map(lambda *leaves: jnp.stack(leaves), *loop_grads)
    print(f"per-example gradient norms over {args.batch} examples: min {float(norms.min()):.3f}, "
          f"median {float(jnp.median(norms)):.3f}, max {float(norms.max()):.3f}; "
          f"{int(jnp.sum(norms > args.clip))} clipped to {args.clip}")
    print(f"max difference, vmapped vs Python loop, per-example gradients: "
          f"{max_difference(grads, stacked_loop):.1e}")
    print(f"max difference, vmapped vs Python loop, clipped mean: "
          f"{max_difference(clipped_mean(grads, args.clip), loop_mean):.1e}")
    batch_mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    print(f"max difference, mean of per-example gradients vs net.backprop on the batch: "
          f"{max_difference(batch_mean, net.backprop(params, xb, yb)):.1e}")

    # DP-SGD training: every step a fresh random batch, one lax.scan over all steps.
    def train(params, key):
        def body(params, key):
            batch_key, noise_key = jax.random.split(key)
            i = jax.random.choice(batch_key, len(x_train), (args.batch,), replace=False)
            step = dp_sgd_step(net, params, x_train[i], y_train[i], noise_key,
                               clip=args.clip, noise=args.noise, lr=args.lr)
            return step, None

        return jax.lax.scan(body, params, jax.random.split(key, args.steps))[0]

    accuracy = lambda p: float(jnp.mean(jnp.argmax(net.forward(p, x_test), -1) == y_test))
    print(f"test accuracy before DP-SGD training: {accuracy(params):.1%}")
    start = time.perf_counter()
    trained = jax.block_until_ready(jax.jit(train)(params, train_key))
    print(f"DP-SGD, {args.steps} steps of {args.batch} (clip {args.clip}, "
          f"noise multiplier {args.noise}, lr {args.lr}) in {time.perf_counter() - start:.2f} s")
    print(f"test accuracy after DP-SGD training: {accuracy(trained):.1%}")


if __name__ == "__main__":
    main()
