"""Learning without weight transport: backprop and four rules that do without W^T, side by side.

Backprop sends the error back through the transposed forward weights,
``dx = W^T db``. Feedback alignment (FA) uses a fixed random matrix instead,
sign symmetry (SS) only the signs of ``W``, Kolen-Pollack (KP) a matrix that
learns ``W^T`` from the weights' own updates, and direct feedback alignment
(DFA) sends the output error straight to every hidden layer. One deep tanh
network (5 hidden layers) is trained with each, from the same weights, and
once more with DFA from zero hidden weights (only DFA can start there: every
other rule's hidden errors pass through the zero weights above them).

After each epoch the angles to backprop are measured on a fixed batch of
training images with ``jaxnn.rules.alignment``: between each layer's update
and the true gradient, and between each feedback matrix and ``W^T``. The
script prints a table of test accuracy and final angles and, with
``--plot FILE.png``, draws the angles over training.

By default the data is scikit-learn's 8x8 digits (1,797 images, shipped with
scikit-learn); ``--mnist DIR`` reads MNIST IDX files from DIR instead (its
training set if present, else its 10,000-image test set split 80/20).

    python examples/learning_rules.py [--epochs 15] [--lr 0.001] [--seed 0] [--mnist DIR] [--plot rules.png]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn.datasets import load_mnist
from jaxnn.rules import (Backprop, DirectFeedbackAlignment, FeedbackAlignment, KolenPollack,
                         SignSymmetry, alignment)

RULES = {
    "backprop": Backprop(),
    "FA": FeedbackAlignment(),
    "SS": SignSymmetry(),
    "KP": KolenPollack(decay=0.002),
    "DFA": DirectFeedbackAlignment(),
    "DFA, W=0": DirectFeedbackAlignment(),  # hidden weights start at zero
}
HIDDEN, WIDTH = 5, 64


def load(mnist_dir, key, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test, description): pixels in [0, 1], integer labels."""
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
    n_test = int(len(x) * test_fraction)
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]], what


def train(net, params, rule, data, args, key):
    """Train one epoch at a time with ``fit``, measuring the angles to backprop after each."""
    x_train, y_train, x_test, y_test = data
    probe_x, probe_y = x_train[:512], y_train[:512]
    angles = jax.jit(alignment, static_argnums=(0, 1))
    history, state = {}, params
    for epoch in range(args.epochs):
        state, epoch_history = jaxnn.fit(
            net, state, x_train, y_train, optimizer=optax.adam(args.lr), batch_size=args.batch_size,
            epochs=1, key=key, gradients=rule, validation=(x_test, y_test))
        a = angles(rule, net, state.params, state.grad_state, probe_x, probe_y)
        row = dict(epoch_history)
        for i in range(len(params)):
            row[f"align_update/{i}"], row[f"align_feedback/{i}"] = a.update[i], a.feedback[i]
        for k, v in row.items():
            history.setdefault(k, []).append(float(np.ravel(v)[-1]))
    return state, {k: np.asarray(v) for k, v in history.items()}


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
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
    parser.add_argument("--mnist", metavar="DIR", help="read MNIST IDX files from DIR instead")
    parser.add_argument("--plot", metavar="FILE.png", help="save the angles over training")
    args = parser.parse_args()

    data_key, init_key, rule_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 4)
    *data, what = load(args.mnist, data_key)
    print(f"{what}: {len(data[0])} training and {len(data[2])} test images")
    sizes = (data[0].shape[1],) + (WIDTH,) * HIDDEN + (10,)
    net = jaxnn.Network.from_sizes(sizes, [jaxnn.Tanh()] * HIDDEN + [jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(init_key, dtype=jnp.float32)
    zeroed = [(jnp.zeros_like(W), b) if i < HIDDEN else (W, b) for i, (W, b) in enumerate(params)]

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
