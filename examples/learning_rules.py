"""Learning without weight transport: backprop and four rules that do without W^T, side by side.

Backprop sends the error back through the transposed forward weights,
``dx = W^T db``. Feedback alignment (FA) uses a fixed random matrix instead,
sign symmetry (SS) only the signs of ``W``, Kolen-Pollack (KP) a matrix that
learns ``W^T`` from the weights' own updates, and direct feedback alignment
(DFA) sends the output error straight to every hidden layer. One deep tanh
network (5 hidden layers by default) is trained with each, from the same weights, and
once more with DFA from zero hidden weights (only DFA can start there: every
other rule's hidden errors pass through the zero weights above them).

During training, ``jaxnn.AlignmentMonitor`` measures the angles to backprop
on a fixed batch of training images (``jaxnn.rules.alignment``): between each
layer's update and the true gradient, and between each feedback matrix and
``W^T``; they land in ``fit``'s history next to the loss. The script prints a
table of test accuracy and final angles and, with ``--plot FILE.png``, draws
the angles over training straight from the histories.

By default the data is scikit-learn's 8x8 digits (1,797 images, shipped with
scikit-learn); ``--mnist DIR`` reads MNIST IDX files from DIR instead (its
training set if present, else its 10,000-image test set split 80/20).

    python examples/learning_rules.py [--epochs 15] [--lr 0.003] [--hidden 5] [--every 1] [--seed 0]
                                      [--mnist DIR] [--plot rules.png]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import optax

import jaxnn
from jaxnn.datasets import load_mnist
from jaxnn.rules import Backprop, DirectFeedbackAlignment, FeedbackAlignment, KolenPollack, SignSymmetry

RULES = {
    "backprop": Backprop(),
    "FA": FeedbackAlignment(),
    "SS": SignSymmetry(),
    "KP": KolenPollack(decay=0.002),
    "DFA": DirectFeedbackAlignment(),
    "DFA, W=0": DirectFeedbackAlignment(),  # hidden weights start at zero
}
WIDTH = 64  # units per hidden layer


def load(mnist_dir, key, batch_size, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test, description): pixels in [0, 1], integer labels.

    A split's training set is a whole number of batches (about ``1 - test_fraction`` of the images):
    then every step has the same shape, and each rule's training compiles once.
    """
    if mnist_dir is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels, scale, what = digits.images, digits.target, 16.0, "scikit-learn's 8x8 digits"
    elif os.path.exists(os.path.join(mnist_dir, "train-labels-idx1-ubyte")) or os.path.exists(
            os.path.join(mnist_dir, "train-labels-idx1-ubyte.gz")):
        (xa, ya), (xb, yb) = load_mnist(mnist_dir, "train"), load_mnist(mnist_dir, "t10k")
        flat = lambda a: jnp.asarray(a.reshape(len(a), -1), jnp.float32) / 255.0
        return flat(xa), jnp.asarray(ya, jnp.int32), flat(xb), jnp.asarray(yb, jnp.int32), f"MNIST from {mnist_dir}"
    else:
        images, labels = load_mnist(mnist_dir, "t10k")
        scale, what = 255.0, f"MNIST from {mnist_dir}, its 10,000-image test set split 80/20"
    x = jnp.asarray(images.reshape(len(images), -1), jnp.float32) / scale
    y = jnp.asarray(labels, jnp.int32)
    order = jax.random.permutation(key, len(x))
    n_test = len(x) - int(len(x) * (1 - test_fraction)) // batch_size * batch_size
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]], what


def train(net, params, rule, data, args, key):
    """Train with ``fit``, the angles to backprop measured every ``args.every`` epochs on 512 training images."""
    x_train, y_train, x_test, y_test = data
    monitor = jaxnn.AlignmentMonitor(net, x_train[:512], y_train[:512], every=args.every)
    return jaxnn.fit(net, params, x_train, y_train, optimizer=optax.adam(args.lr), batch_size=args.batch_size,
                     epochs=args.epochs, key=key, gradients=rule, validation=(x_test, y_test), callbacks=[monitor])


def plot(path, histories):
    """The angles of every rule over training, one panel each, and the test accuracy of all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxnn.plotting import alignment_angles, training_curves

    names = [n for n in histories if n != "backprop"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), layout="constrained")
    for ax, name in zip(axes.ravel(), names):
        alignment_angles(histories[name], ax=ax)
        ax.set_title(name)
        if ax is not axes[0, 2]:  # one legend is enough: the layers' colours are the same in every panel
            ax.get_legend().remove()
    ax = training_curves({n: {"val_accuracy": h["val_accuracy"]} for n, h in histories.items()}, ax=axes[1, 2])
    ax.set(ylabel="test accuracy", title="test accuracy")
    fig.savefig(path, dpi=80)
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="passes over the training images (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=5, help="hidden tanh layers (default: %(default)s)")
    parser.add_argument("--every", type=int, default=1,
                        help="epochs between measurements of the angles (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
    parser.add_argument("--mnist", metavar="DIR", help="read MNIST IDX files from DIR instead")
    parser.add_argument("--plot", metavar="FILE.png", help="save the angles over training")
    args = parser.parse_args()

    data_key, init_key, rule_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 4)
    *data, what = load(args.mnist, data_key, args.batch_size)
    print(f"{what}: {len(data[0])} training and {len(data[2])} test images")
    sizes = (data[0].shape[1],) + (WIDTH,) * args.hidden + (10,)
    net = jaxnn.Network.from_sizes(sizes, [jaxnn.Tanh()] * args.hidden + [jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    params = net.init(init_key, dtype=jnp.float32)
    zeroed = [(jnp.zeros_like(W), b) if i < args.hidden else (W, b) for i, (W, b) in enumerate(params)]

    histories, seconds = {}, {}
    for name, rule in RULES.items():
        start = time.perf_counter()
        _, histories[name] = train(net, zeroed if "W=0" in name else params, rule, data, args, shuffle_key)
        seconds[name] = time.perf_counter() - start

    print(f"\n{'-'.join(map(str, sizes))} (tanh), {args.epochs} epochs of Adam at lr {args.lr}, "
          f"batch {args.batch_size}; angles to backprop in degrees after the last epoch")
    n = len(sizes) - 1
    head = " ".join(f"{f'upd{i}':>5}" for i in range(n - 1)) + "  " + " ".join(f"{f'fb{i}':>5}" for i in range(1, n))
    print(f"{'rule':<9} {'test acc':>8}  {head} {'seconds':>8}")
    for name, h in histories.items():
        upd = " ".join(f"{h[f'align_update/{i}'][-1]:5.1f}" for i in range(n - 1))
        fb = " ".join(f"{h[f'align_feedback/{i}'][-1]:5.1f}" for i in range(1, n))
        print(f"{name:<9} {h['val_accuracy'][-1]:8.1%}  {upd}  {fb} {seconds[name]:8.1f}")
    print("(upd i: layer i's update vs the gradient; fb i: layer i's feedback matrix vs W_i^T; "
          "nan: not defined. The output layer's update is backprop's in every rule.)")
    if args.plot:
        plot(args.plot, histories)


if __name__ == "__main__":
    main()
