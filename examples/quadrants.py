"""The articles' quadrant experiment: tell the points of quadrants I and III from II and IV.

A 2-3-2 LeakyReLU network with MSE is trained by per-example SGD (lr 0.05) on
99,000 points of the square [-2, 2]^2, and its accuracy on 1,000 held-out
test points is printed before and after, as in the article.

So small a network often settles in a poor local minimum (60-89% correct, a
quadrant boundary misplaced), depending on its initial weights and on the
order of its examples. So several independent restarts, each the article's
exact run with its own initial weights and its own 99,000 training points,
are trained at once with ``jax.vmap`` (each run is one ``lax.scan`` of the
jitted train step), and the restart most accurate on 10,000 validation
points, drawn apart from the test points, is the one reported.

    python examples/quadrants.py [--restarts 16] [--steps 99000] [--lr 0.05] [--seed 0]
                                 [--plot quadrants.png]
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
    return x, jax.nn.one_hot(true_class(x), 2)


def true_class(x):
    return jnp.where(x[..., 0] * x[..., 1] > 0, 0, 1)


def accuracy(net, params, x):
    return jnp.mean(jnp.argmax(net.forward(params, x), -1) == true_class(x))


def make_train(net, optimizer):
    """``train(params, x, t) -> (params, losses)``: one SGD step per example, in order, as a scan."""
    step = jaxnn.make_train_step(net, optimizer)

    def train(params, x, t):
        def body(carry, example):
            params, opt_state, loss = step(*carry, *example)
            return (params, opt_state), loss

        (params, _), losses = jax.lax.scan(body, (params, optimizer.init(params)), (x, t))
        return params, losses

    return train


def plot_regions(net, before, after, x_test, path):
    """Decision regions before and after training, side by side, with the test points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxnn.plotting import decision_regions

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), constrained_layout=True)
    for ax, params, title in zip(axes, (before, after), ("before training", "after training")):
        correct = float(accuracy(net, params, x_test))
        decision_regions(net, params, x_test, true_class(x_test), ax=ax, bounds=(-2, 2),
                         title=f"{title}: {correct:.1%} of test points correct")
    fig.savefig(path, dpi=80)
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=99_000,
                        help="per-example SGD steps per restart (default: %(default)s)")
    parser.add_argument("--test", type=int, default=1_000, help="held-out test points (default: %(default)s)")
    parser.add_argument("--validation", type=int, default=10_000,
                        help="points picking the best restart (default: %(default)s)")
    parser.add_argument("--restarts", type=int, default=16,
                        help="independent runs trained at once (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
    parser.add_argument("--plot", metavar="FILE.png", help="save the decision regions before/after")
    args = parser.parse_args()

    net = jaxnn.Network(
        [jaxnn.Layer(2, 3, jaxnn.LeakyReLU()), jaxnn.Layer(3, 2, jaxnn.LeakyReLU())],
        jaxnn.MSELoss(),
    )
    init_key, train_key, val_key, test_key = jax.random.split(jax.random.key(args.seed), 4)
    restart_keys = jax.random.split(init_key, args.restarts), jax.random.split(train_key, args.restarts)
    inits = jax.vmap(net.init)(restart_keys[0])  # every leaf gets a leading restarts axis
    x_train, t_train = jax.vmap(make_data, in_axes=(0, None))(restart_keys[1], args.steps)
    x_val, _ = make_data(val_key, args.validation)
    x_test, _ = make_data(test_key, args.test)

    train = make_train(net, optimizer=optax.sgd(args.lr))
    start = time.perf_counter()
    trained, _ = jax.jit(jax.vmap(train))(inits, x_train, t_train)
    jax.block_until_ready(trained)
    seconds = time.perf_counter() - start

    per_restart = jax.vmap(lambda p: (accuracy(net, p, x_val), accuracy(net, p, x_test)))
    val_acc, test_acc = per_restart(trained)
    best = int(jnp.argmax(val_acc))  # chosen on validation points only, never the test points
    pick = lambda tree: jax.tree.map(lambda leaf: leaf[best], tree)
    before, after = pick(inits), pick(trained)

    print(f"trained {args.restarts} restarts x {args.steps:,} per-example steps in {seconds:.2f} s "
          "(compile included)")
    print(f"restarts above 90% on the test points: {int(jnp.sum(test_acc > 0.9))} of {args.restarts} "
          f"(test accuracy {', '.join(f'{float(a):.1%}' for a in test_acc)})")
    print(f"best restart on the validation points: {best} ({float(val_acc[best]):.1%} of them correct)")
    print(f"accuracy before training: {float(accuracy(net, before, x_test)):.1%}")
    print(f"accuracy after training: {float(accuracy(net, after, x_test)):.1%}")
    if args.plot:
        plot_regions(net, before, after, x_test, args.plot)


if __name__ == "__main__":
    main()
