"""The articles' quadrant experiment: tell the points of quadrants I and III from II and IV.

A 2-3-2 LeakyReLU network with MSE is trained by per-example SGD (lr 0.05) on
99,000 points of the square [-2, 2]^2, and its accuracy on 1,000 held-out
points is printed before and after. The whole run is one jitted ``fit`` call.

    python examples/quadrants.py [--steps 99000] [--lr 0.05] [--seed 0] [--plot quadrants.png]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import jaxnn


def make_data(key, n):
    """Points uniform in [-2, 2]^2 and one-hot targets: class 0 where x * y > 0."""
    x = jax.random.uniform(key, (n, 2), minval=-2.0, maxval=2.0)
    same_sign = x[:, 0] * x[:, 1] > 0
    t = jax.nn.one_hot(jnp.where(same_sign, 0, 1), 2)
    return x, t


def accuracy(net, params, x, t):
    return float(jnp.mean(jnp.argmax(net.forward(params, x), -1) == jnp.argmax(t, -1)))


def plot_regions(net, before, after, x_test, path):
    """Decision regions before and after training, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = jnp.linspace(-2, 2, 300)
    gx, gy = jnp.meshgrid(grid, grid)
    points = jnp.stack([gx.ravel(), gy.ravel()], axis=-1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), constrained_layout=True)
    for ax, params, title in zip(axes, (before, after), ("before training", "after training")):
        regions = jnp.argmax(net.forward(params, points), -1).reshape(gx.shape)
        ax.contourf(gx, gy, regions, levels=[-0.5, 0.5, 1.5], colors=["#9ecae1", "#fdae6b"])
        guess = jnp.argmax(net.forward(params, x_test), -1)
        ax.scatter(x_test[:, 0], x_test[:, 1], c=guess, cmap="coolwarm", s=6)
        ax.set_title(f"{title}: {accuracy_of(guess, x_test):.1%} correct")
        ax.set_aspect("equal")
    fig.savefig(path, dpi=80)
    print(f"saved {path}")


def accuracy_of(guess, x):
    return float(jnp.mean(guess == jnp.where(x[:, 0] * x[:, 1] > 0, 0, 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=99_000, help="per-example SGD steps")
    parser.add_argument("--test", type=int, default=1_000, help="held-out points")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE.png", help="save the decision regions before/after")
    args = parser.parse_args()

    net = jaxnn.Network(
        [jaxnn.Layer(2, 3, jaxnn.LeakyReLU()), jaxnn.Layer(3, 2, jaxnn.LeakyReLU())],
        jaxnn.MSELoss(),
    )
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    params = net.init(init_key)
    x, t = make_data(data_key, args.test + args.steps)
    x_test, t_test, x_train, t_train = x[: args.test], t[: args.test], x[args.test :], t[args.test :]

    print(f"accuracy before training: {accuracy(net, params, x_test, t_test):.1%}")
    start = time.perf_counter()
    trained, history = jaxnn.fit(
        net, params, x_train, t_train, optimizer=optax.sgd(args.lr), batch_size=1
    )
    jax.block_until_ready(trained)
    seconds = time.perf_counter() - start
    print(f"trained {args.steps:,} per-example steps in {seconds:.2f} s (compile included), "
          f"mean training loss {history['loss'][-1]:.4f}")
    print(f"accuracy after training: {accuracy(net, trained, x_test, t_test):.1%}")
    if args.plot:
        plot_regions(net, params, trained, x_test, args.plot)


if __name__ == "__main__":
    main()
