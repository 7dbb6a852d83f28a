"""A research training run: validation, early stopping, a checkpoint, and a resumed run.

A 64-32-10 network (ReLU, linear output, cross-entropy) learns scikit-learn's
8x8 digits with Adam and minibatches of 32, shuffled every epoch. The 1,797
images are split into training (60%), validation (20%) and test (20%) sets.
``fit`` evaluates the validation set after every epoch, ``EarlyStopping``
stops when the validation loss has not improved for ``--patience`` epochs
and hands back the best epoch's state, and ``Checkpoint`` keeps the latest
state on disk. The script then shows that a run interrupted half way and
resumed from its checkpoint ends bitwise where the uninterrupted run ends.

    python examples/research_run.py [--epochs 200] [--patience 10] [--lr 0.003] [--seed 0]
                                    [--checkpoint run.npz] [--plot curves.png]
"""

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn


def load_digits_split(key):
    """(train, validation, test) pairs of pixels in [0, 1] and integer labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = jnp.asarray(digits.data, jnp.float32) / 16.0
    y = jnp.asarray(digits.target, jnp.int32)
    order = jax.random.permutation(key, len(x))
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    parts = order[:a], order[a:b], order[b:]
    return [(x[p], y[p]) for p in parts]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="most epochs to train (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=10,
                        help="epochs without a better validation loss (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.003, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the split, weights and shuffling (default: %(default)s)")
    parser.add_argument("--checkpoint", help="checkpoint file (default: run.npz in a new temporary folder)")
    parser.add_argument("--plot", metavar="FILE.png", help="save the training and validation curves")
    args = parser.parse_args()

    split_key, init_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 3)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_digits_split(split_key)
    net = jaxnn.Network.from_sizes((64, 32, 10), [jaxnn.ReLU(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    params = net.init(init_key)
    folder = tempfile.mkdtemp()
    path = args.checkpoint or os.path.join(folder, "run.npz")
    train = dict(optimizer=optax.adam(args.lr), batch_size=32, key=shuffle_key, validation=(x_val, y_val))

    stop = jaxnn.EarlyStopping(monitor="val_loss", patience=args.patience)
    state, history = jaxnn.fit(net, params, x_train, y_train, epochs=args.epochs,
                               callbacks=[stop, jaxnn.Checkpoint(path, every=5)], **train)
    ran = len(history["epoch"])
    print(f"trained {ran} epochs; best validation loss {stop.best:.4f} at epoch {stop.best_epoch} "
          f"(early stopping, patience {args.patience})")
    print(f"test accuracy of the best epoch's state: {jaxnn.evaluate(net, state.params, x_test, y_test)['accuracy']:.1%}")

    # Stop half way, save, load into a template, resume: the same state as one uninterrupted run.
    half = stop.best_epoch // 2
    first, _ = jaxnn.fit(net, params, x_train, y_train, epochs=half, **train)
    jaxnn.save(path, first)
    like = jaxnn.TrainState(params, train["optimizer"].init(params), 0)
    resumed, _ = jaxnn.fit(net, jaxnn.load(path, like), x_train, y_train, epochs=stop.best_epoch - half, **train)
    same = all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(state.params)))
    print(f"stopped at epoch {half}, saved to {os.path.basename(path)}, loaded and resumed to epoch "
          f"{int(resumed.epoch)}:\n{'bitwise equal to' if same else 'DIFFERENT from'} the uninterrupted run")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from jaxnn.plotting import training_curves

        ax = training_curves(history)
        ax.axvline(stop.best_epoch, color="gray", linestyle=":", label="best epoch")
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
