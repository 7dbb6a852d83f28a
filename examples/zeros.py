"""The article's first demo: teach a 2-4-4-3 LeakyReLU network to output zeros for any input.

It is trained with MSE by per-example SGD (lr 0.001) on 10,000 standard-normal
inputs, each with the target (0, 0, 0); the loss summed over 100 fresh inputs
is printed before and after, and it should fall by orders of magnitude.

    python examples/zeros.py [--steps 10000] [--lr 0.001] [--seed 0]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import jaxnn


def summed_loss(net, params, x):
    """Sum over the examples of the per-example MSE to the zero target, as the article prints."""
    return float(jnp.sum(net.loss_fn.loss(net.forward(params, x), jnp.zeros((len(x), 3)))))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=10_000, help="per-example SGD steps")
    parser.add_argument("--lr", type=float, default=0.001, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = parser.parse_args()

    net = jaxnn.Network.from_sizes((2, 4, 4, 3), jaxnn.LeakyReLU(), jaxnn.MSELoss())
    init_key, train_key, before_key, after_key = jax.random.split(jax.random.key(args.seed), 4)
    params = net.init(init_key)
    x_train = jax.random.normal(train_key, (args.steps, 2))

    before = summed_loss(net, params, jax.random.normal(before_key, (100, 2)))
    print(f"summed loss over 100 fresh inputs before training: {before:.4f}")
    start = time.perf_counter()
    trained, history = jaxnn.fit(
        net, params, x_train, jnp.zeros((args.steps, 3)), optimizer=optax.sgd(args.lr), batch_size=1
    )
    jax.block_until_ready(trained)
    seconds = time.perf_counter() - start
    print(f"trained {args.steps:,} per-example steps in {seconds:.2f} s (compile included)")
    after = summed_loss(net, trained, jax.random.normal(after_key, (100, 2)))
    print(f"summed loss over 100 fresh inputs after training: {after:.4f}")


if __name__ == "__main__":
    main()
