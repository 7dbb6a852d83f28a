"""Check the hand-written backprop of any network against jax.grad and finite differences.

For the network given on the command line, at random parameters, inputs and
targets, in float64, the script prints per layer the largest absolute and
relative differences between the recursion's gradients (``net.backprop``),
``jax.grad`` of the loss, and central finite differences
``(L(p + eps e_i) - L(p - eps e_i)) / (2 eps)``, whose error is O(eps^2).
The relative error is ``max |a - b| / max |b|`` over the layer's entries.

    python examples/compare_gradients.py --sizes 5 3 5 4 --activations leaky_relu sigmoid sigmoid --loss mse
"""

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # float64: differences down to rounding

import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import jaxnn

ACTIVATIONS = {
    "leaky_relu": jaxnn.LeakyReLU(),
    "relu": jaxnn.ReLU(),
    "sigmoid": jaxnn.Sigmoid(),
    "tanh": jaxnn.Tanh(),
    "identity": jaxnn.Identity(),
    "softmax": jaxnn.Softmax(),
}
LOSSES = {"mse": jaxnn.MSELoss(), "cross_entropy": jaxnn.CrossEntropyLoss()}


def finite_differences(loss, params, eps):
    """Central differences of ``loss(params)`` along every parameter, shaped like ``params``."""
    flat, unravel = ravel_pytree(params)
    shifted = lambda i, step: loss(unravel(flat.at[i].add(step)))
    along = lambda i: (shifted(i, eps) - shifted(i, -eps)) / (2 * eps)
    # Batches of 256 parameters at a time: vectorised, without an (n, n) array for big nets.
    return unravel(jax.lax.map(along, jnp.arange(flat.size), batch_size=256))


def differences(a, b):
    """Largest absolute and relative difference of ``a`` from the reference ``b``."""
    worst = float(jnp.max(jnp.abs(a - b)))
    return worst, worst / max(float(jnp.max(jnp.abs(b))), jnp.finfo(b.dtype).tiny)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 3, 5, 4], help="widths, input first")
    parser.add_argument(
        "--activations", nargs="+", choices=ACTIVATIONS, default=["leaky_relu", "sigmoid", "sigmoid"],
        help="one per layer, or one for all",
    )
    parser.add_argument("--loss", choices=LOSSES, default="mse", help="loss on the output")
    parser.add_argument("--batch", type=int, default=8, help="examples; the loss is their mean")
    parser.add_argument("--eps", type=float, default=1e-5, help="finite-difference step")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = parser.parse_args()

    activations = [ACTIVATIONS[name] for name in args.activations]
    if len(activations) == 1:
        activations = activations[0]
    net = jaxnn.Network.from_sizes(args.sizes, activations, LOSSES[args.loss])
    init_key, x_key, t_key = jax.random.split(jax.random.key(args.seed), 3)
    params = net.init(init_key)
    x = jax.random.normal(x_key, (args.batch, net.sizes[0]))
    if args.loss == "mse":
        t = jax.random.normal(t_key, (args.batch, net.sizes[-1]))
    else:
        t = jax.random.randint(t_key, (args.batch,), 0, net.sizes[-1])

    manual = jax.jit(net.backprop)(params, x, t)
    auto = jax.jit(jax.grad(net.loss))(params, x, t)
    numeric = jax.jit(lambda p: finite_differences(lambda q: net.loss(q, x, t), p, args.eps))(params)

    print(f"network {'-'.join(map(str, net.sizes))}, {', '.join(args.activations)}, {args.loss} loss, "
          f"batch of {args.batch}, float64, eps {args.eps:g}")
    print(f"{'layer':>5} {'param':>5} {'shape':>8}   {'manual vs jax.grad':^21}   "
          f"{'manual vs finite diff':^21}")
    print(f"{'':>20}   {'max abs':>10} {'max rel':>10}   {'max abs':>10} {'max rel':>10}")
    worst_auto = worst_numeric = 0.0
    for i, (m_layer, a_layer, n_layer) in enumerate(zip(manual, auto, numeric)):
        for name, m, a, n in zip("Wb", m_layer, a_layer, n_layer):
            auto_abs, auto_rel = differences(m, a)
            num_abs, num_rel = differences(m, n)
            worst_auto, worst_numeric = max(worst_auto, auto_abs), max(worst_numeric, num_abs)
            shape = "x".join(map(str, m.shape))
            print(f"{i:>5} {name:>5} {shape:>8}   {auto_abs:>10.1e} {auto_rel:>10.1e}   "
                  f"{num_abs:>10.1e} {num_rel:>10.1e}")
    print(f"largest difference, manual vs jax.grad: {worst_auto:.1e}")
    print(f"largest difference, manual vs finite differences: {worst_numeric:.1e}")


if __name__ == "__main__":
    main()
