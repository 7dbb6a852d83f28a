"""Two classes with one output: binary cross-entropy on scikit-learn's breast cancer data.

The 569 tumours of the Wisconsin data set that scikit-learn ships (30
measurements each, no download) are split 75/25, standardised with the
training part's mean and deviation, and a 30-16-1 network (Tanh, then one
linear output: the logit of "benign") is trained with
``BinaryCrossEntropyLoss`` on the 0/1 labels, as scikit-learn's
``MLPClassifier`` does with its single logistic output. The script prints the
test accuracy from ``jaxnn.evaluate`` before and after training, and that of
scikit-learn's ``LogisticRegression`` and ``MLPClassifier`` (16 tanh units)
on the same split.

    python examples/breast_cancer.py [--epochs 100] [--lr 0.01] [--seed 0]
"""

import argparse
import warnings

import jax
import numpy as np
import optax

import jaxnn


def load(seed, test_fraction=0.25):
    """(x_train, y_train, x_test, y_test): standardised features, integer labels 0 or 1."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=test_fraction, random_state=seed, stratify=data.target
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def scikit_learn_accuracies(x_train, y_train, x_test, y_test, seed):
    """Test accuracy of LogisticRegression and of MLPClassifier with 16 tanh units."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    logistic = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier((16,), activation="tanh", max_iter=300, random_state=seed).fit(x_train, y_train)
    return logistic.score(x_test, y_test), mlp.score(x_test, y_test)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=100, help="passes over the training set")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed and scikit-learn's split")
    args = parser.parse_args()

    x_train, y_train, x_test, y_test = load(args.seed)
    print(f"breast cancer data: {len(x_train)} training and {len(x_test)} test tumours, "
          f"{x_train.shape[1]} features, {y_train.mean():.0%} of the training set benign (label 1)")

    net = jaxnn.Network.from_sizes((x_train.shape[1], 16, 1), [jaxnn.Tanh(), jaxnn.Identity()],
                                   jaxnn.BinaryCrossEntropyLoss())
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))
    params = net.init(init_key)
    before = jaxnn.evaluate(net, params, x_test, y_test)
    state, history = jaxnn.fit(net, params, x_train, y_train, optimizer=optax.adam(args.lr),
                               batch_size=args.batch_size, epochs=args.epochs, key=shuffle_key)
    after = jaxnn.evaluate(net, state.params, x_test, y_test)
    print(f"jaxnn 30-16-1, BinaryCrossEntropyLoss, {args.epochs} epochs of Adam at lr {args.lr}:")
    print(f"  test loss     before training: {before['loss']:.4f}   after training: {after['loss']:.4f}")
    print(f"  test accuracy before training: {before['accuracy']:.1%}   after training: {after['accuracy']:.1%}")
    logistic, mlp = scikit_learn_accuracies(x_train, y_train, x_test, y_test, args.seed)
    print(f"scikit-learn on the same split: LogisticRegression {logistic:.1%}, MLPClassifier(16, tanh) {mlp:.1%}")
    logits = np.asarray(net.forward(state.params, x_test))[:, 0]
    print(f"test tumours with a logit above 0 (predicted benign): {int((logits > 0).sum())} of {len(logits)}")


if __name__ == "__main__":
    main()
