"""The two-layer network of the 'backpropagation in Python' article, on a real regression task.

Linear layers, a sigmoid hidden layer and a linear output, trained with MSE by
minibatch SGD to predict disease progression from the 10 measurements of
scikit-learn's bundled diabetes data set (442 patients, no download).
Features and target are standardised on the training split; the script
prints the test MSE and R^2 before and after training, next to the least
squares line's as a reference.

    python examples/two_layer.py [--hidden 16] [--epochs 200] [--batch-size 32] [--lr 0.02] [--seed 0]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_diabetes

import jaxnn


def standardised_split(key, x, y, test_fraction):
    """Shuffle, split, and scale x and y by the training split's mean and standard deviation."""
    order = np.asarray(jax.random.permutation(key, len(x)))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    x_mean, x_std, y_mean, y_std = x[train].mean(0), x[train].std(0), y[train].mean(), y[train].std()
    x, y = (x - x_mean) / x_std, ((y - y_mean) / y_std)[:, None]
    return jnp.asarray(x[train]), jnp.asarray(y[train]), jnp.asarray(x[test]), jnp.asarray(y[test])


def r_squared(prediction, y):
    """1 - MSE / variance: 0 for predicting the mean, 1 for a perfect fit."""
    return float(1 - jnp.mean((prediction - y) ** 2) / jnp.var(y))


def least_squares(x_train, y_train, x_test):
    """Predictions of the least squares line with an intercept, the linear reference."""
    design = lambda x: jnp.concatenate([x, jnp.ones((len(x), 1))], axis=1)
    coef, *_ = jnp.linalg.lstsq(design(x_train), y_train)
    return design(x_test) @ coef


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hidden", type=int, default=16, help="hidden sigmoid units")
    parser.add_argument("--epochs", type=int, default=200, help="passes over the training data")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per SGD step")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = parser.parse_args()

    data = load_diabetes()
    split_key, init_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 3)
    x_train, y_train, x_test, y_test = standardised_split(split_key, data.data, data.target, 0.2)
    net = jaxnn.Network(
        [jaxnn.Layer(10, args.hidden, jaxnn.Sigmoid()), jaxnn.Layer(args.hidden, 1, jaxnn.Identity())],
        jaxnn.MSELoss(),
    )
    params = net.init(init_key)

    report = lambda when, p: print(
        f"test MSE {when} training: {float(net.loss(p, x_test, y_test)):.3f} "
        f"(R^2 {r_squared(net.forward(p, x_test), y_test):.3f})"
    )
    print(f"diabetes: {len(x_train)} training and {len(x_test)} test patients, 10 features")
    report("before", params)
    start = time.perf_counter()
    state, history = jaxnn.fit(
        net, params, x_train, y_train, optimizer=optax.sgd(args.lr), batch_size=args.batch_size,
        epochs=args.epochs, key=shuffle_key,
    )
    trained = state.params
    loss = history["loss"]
    print(f"trained {args.epochs} epochs of minibatches of {args.batch_size} in "
          f"{time.perf_counter() - start:.2f} s; training loss {loss[0]:.3f} -> {loss[-1]:.3f}")
    shown = sorted({0, *range(args.epochs // 4 - 1, args.epochs, max(args.epochs // 4, 1))})
    print("training loss at epochs " + ", ".join(f"{e + 1}: {loss[e]:.3f}" for e in shown))
    report("after", trained)
    reference = least_squares(x_train, y_train, x_test)
    print(f"least squares line for reference: test MSE {float(jnp.mean((reference - y_test) ** 2)):.3f} "
          f"(R^2 {r_squared(reference, y_test):.3f})")


if __name__ == "__main__":
    main()
