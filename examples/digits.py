"""The series' handwritten digits experiment: four output/loss choices on one 16-16 network.

By default the data is the 8x8 digits scikit-learn ships inside its package
(1,797 images, no download), a 64-16-16-10 network; with ``--mnist DIR`` it
is MNIST read from its IDX files in DIR (gzipped or not), 784-16-16-10. The
hidden layers are LeakyReLU, and the four configurations of the series are

    leaky+mse       LeakyReLU output, MSE to one-hot targets
    sigmoid+mse     Sigmoid output, MSE to one-hot targets
    sigmoid+xent    Sigmoid output, softmax cross-entropy on it
    linear+xent     linear output (logits), softmax cross-entropy

each trained by per-example SGD from the same initial weights. (The loss of
sigmoid+xent cannot fall far: a softmax of values in (0, 1) is never
confident, though its argmax can be right.) The script prints one table of
test accuracy before and after. ``--plot FILE.png`` saves the loss curves and
the best configuration's misclassified test digits.

    python examples/digits.py [--epochs 40] [--lr 0.02] [--seed 0] [--mnist DIR] [--plot digits.png]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn.datasets import load_mnist

CONFIGURATIONS = {
    "leaky+mse": (jaxnn.LeakyReLU(), jaxnn.MSELoss()),
    "sigmoid+mse": (jaxnn.Sigmoid(), jaxnn.MSELoss()),
    "sigmoid+xent": (jaxnn.Sigmoid(), jaxnn.CrossEntropyLoss()),
    "linear+xent": (jaxnn.Identity(), jaxnn.CrossEntropyLoss()),
}


def load(mnist_dir, key, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test, side, description): pixels in [0, 1], integer labels."""
    if mnist_dir is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels, scale, what = digits.images, digits.target, 16.0, "scikit-learn's 8x8 digits"
    else:
        images, labels = load_mnist(mnist_dir, "t10k")
        scale = 255.0
        what = f"MNIST from {mnist_dir}, its 10,000-image test set only, split here 80/20"
    side = images.shape[-1]
    x = jnp.asarray(images.reshape(len(images), -1), jnp.float32) / scale
    y = jnp.asarray(labels, jnp.int32)
    order = jax.random.permutation(key, len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test], side, what


def targets(loss_fn, y):
    """MSE learns one-hot vectors; cross-entropy takes the integer labels."""
    return jax.nn.one_hot(y, 10) if isinstance(loss_fn, jaxnn.MSELoss) else y


def accuracy(net, params, x, y):
    return float(jnp.mean(jnp.argmax(net.forward(params, x), -1) == y))


def plot(path, histories, best_name, x_test, y_test, guess, side):
    """Loss curves of every configuration, and misclassified test digits of the best one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxnn.plotting import training_curves

    wrong = np.flatnonzero(np.asarray(guess != y_test))[:16]
    fig = plt.figure(figsize=(11, 3.8), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.2])
    runs = {name: {"loss": loss} for name, loss in histories.items()}
    ax = training_curves(runs, ax=left.subplots())
    ax.set(ylabel="training loss", title="loss curves")
    axes = right.subplots(2, 8)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(np.asarray(x_test[i]).reshape(side, side), cmap="gray_r")
        ax.set_title(f"{int(y_test[i])} as {int(guess[i])}", fontsize=9)
    right.suptitle(f"misclassified test digits, {best_name} (true as guessed)")
    fig.savefig(path, dpi=80)
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="passes over the training images (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
    parser.add_argument("--mnist", metavar="DIR", help="read MNIST IDX files from DIR instead")
    parser.add_argument("--plot", metavar="FILE.png", help="save loss curves and misclassified digits")
    args = parser.parse_args()

    data_key, init_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 3)
    x_train, y_train, x_test, y_test, side, what = load(args.mnist, data_key)
    print(f"{what}: {len(x_train)} training and {len(x_test)} test images of {side}x{side}")
    sizes = (x_train.shape[1], 16, 16, 10)

    results, histories, trained = {}, {}, {}
    for name, (output, loss_fn) in CONFIGURATIONS.items():
        net = jaxnn.Network.from_sizes(sizes, [jaxnn.LeakyReLU(), jaxnn.LeakyReLU(), output], loss_fn)
        params = net.init(init_key)
        start = time.perf_counter()
        state, history = jaxnn.fit(
            net, params, x_train, targets(loss_fn, y_train), optimizer=optax.sgd(args.lr),
            batch_size=1, epochs=args.epochs, key=shuffle_key,
        )
        trained[name] = state.params
        seconds = time.perf_counter() - start
        loss = history["loss"]
        print(f"{name}: {args.epochs} epochs, training loss {loss[0]:.4f} -> {loss[-1]:.4f}")
        histories[name] = history["loss"]
        before = accuracy(net, params, x_test, y_test)
        results[name] = (net, before, accuracy(net, trained[name], x_test, y_test), seconds)

    print(f"\n{'-'.join(map(str, sizes))}, {args.epochs} epochs of per-example SGD at lr {args.lr}:")
    print(f"{'configuration':<14} {'before':>7} {'after':>7} {'seconds':>8}")
    for name, (_, before, after, seconds) in results.items():
        print(f"{name:<14} {before:>7.1%} {after:>7.1%} {seconds:>8.2f}")
    best = max(results, key=lambda name: results[name][2])
    print(f"best: {best} with {results[best][2]:.1%} test accuracy")
    if args.plot:
        guess = jnp.argmax(results[best][0].forward(trained[best], x_test), -1)
        plot(args.plot, histories, best, x_test, y_test, guess, side)


if __name__ == "__main__":
    main()
