"""The 'Jumping Back' article's network: 5-3-5-4, LeakyReLU(0.1), Sigmoid, Sigmoid, MSE.

Its single example and starting weights are the article's own (NumPy's
generator seeded with 42: x and y are random integers in [1, 100) over 100,
weights uniform in [0, 1), biases zero). It is trained by SGD at lr 0.01 for
10,000 epochs on that one example, and the script prints the loss before and
after, y next to y_hat, and, at the starting weights, each layer's gradients
by the hand-written recursion next to jax.grad's with their largest
difference, in float64.

    python examples/jumping_back.py [--epochs 10000] [--lr 0.01]
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # float64, like the article's NumPy

import jax.numpy as jnp
import numpy as np
import optax

import jaxnn


def articles_example():
    """x (5,), y (4,) and [(W, b)] drawn exactly as the article draws them."""
    rng = np.random.RandomState(42)  # the article's np.random.seed(42), draw for draw
    x = rng.randint(1, 100, size=5) / 100
    y = rng.randint(1, 100, size=4) / 100
    params = [(rng.random_sample((outs, ins)), np.zeros(outs)) for ins, outs in [(5, 3), (3, 5), (5, 4)]]
    return jnp.asarray(x), jnp.asarray(y), jax.tree.map(jnp.asarray, params)


def gradient_table(net, params, x, y):
    """Rows (layer, |dW|, |dW autodiff|, max |difference| over W and b)."""
    manual = net.backprop(params, x, y)
    auto = jax.grad(net.loss)(params, x, y)
    rows = []
    for i, ((dW, db), (aW, ab)) in enumerate(zip(manual, auto)):
        diff = max(float(jnp.max(jnp.abs(dW - aW))), float(jnp.max(jnp.abs(db - ab))))
        rows.append((i, float(jnp.linalg.norm(dW)), float(jnp.linalg.norm(aW)), diff))
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=10_000, help="SGD steps on the one example")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    args = parser.parse_args()

    net = jaxnn.Network(
        [
            jaxnn.Layer(5, 3, jaxnn.LeakyReLU(0.1)),
            jaxnn.Layer(3, 5, jaxnn.Sigmoid()),
            jaxnn.Layer(5, 4, jaxnn.Sigmoid()),
        ],
        jaxnn.MSELoss(),
    )
    x, y, params = articles_example()

    print("gradients at the starting weights, hand-written recursion vs jax.grad (float64):")
    print(f"{'layer':>5}  {'|dW| manual':>12}  {'|dW| jax.grad':>13}  {'max |difference|':>16}")
    for i, manual, auto, diff in gradient_table(net, params, x, y):
        print(f"{i:>5}  {manual:>12.6e}  {auto:>13.6e}  {diff:>16.1e}")

    print(f"loss before training: {float(net.loss(params, x, y)):.4e}")
    start = time.perf_counter()
    # An epoch on a single example is one SGD step, so the 10,000 epochs are one
    # pass over 10,000 copies of it: the same updates, in one jitted call.
    copies = lambda a: jnp.broadcast_to(a, (args.epochs,) + a.shape)
    trained, _ = jaxnn.fit(
        net, params, copies(x), copies(y), optimizer=optax.sgd(args.lr), batch_size=1
    )
    print(f"trained {args.epochs:,} epochs in {time.perf_counter() - start:.2f} s")
    print(f"loss after training: {float(net.loss(trained, x, y)):.4e}")
    print(f"{'y':>8}  {'y_hat':>8}")
    for target, out in zip(y.tolist(), net.forward(trained, x).tolist()):
        print(f"{target:>8.4f}  {out:>8.4f}")


if __name__ == "__main__":
    main()
