"""Check a hand-written derivative: a Swish activation written by hand, and a tanh with a planted slip.

Prints jaxnn's gradient-check report for each: the correct Swish passes; the
tanh whose derivative is written ``1 - tanh(y)`` (instead of ``1 - tanh(y)^2``)
fails, and the report names the layer and the building block at fault.
"""

import argparse
import dataclasses

import jax
import jax.numpy as jnp

import jaxnn


@dataclasses.dataclass(frozen=True)
class Swish(jaxnn.Elementwise):
    """Swish / SiLU: ``f(y) = y sigmoid(y)``, ``f'(y) = s + y s (1 - s)`` with ``s = sigmoid(y)``."""

    def f(self, y):
        return y * jax.nn.sigmoid(y)

    def df(self, y):
        s = jax.nn.sigmoid(y)
        return s + y * s * (1 - s)


@dataclasses.dataclass(frozen=True)
class SlippedTanh(jaxnn.Elementwise):
    """tanh with a wrong derivative: ``1 - tanh(y)`` where ``1 - tanh(y)^2`` is right."""

    def f(self, y):
        return jnp.tanh(y)

    def df(self, y):
        return 1 - jnp.tanh(y)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=8, help="examples in the batch checked")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)

    key_params, key_x, key_t = jax.random.split(jax.random.key(args.seed), 3)
    x = jax.random.normal(key_x, (args.batch, 3))
    t = jax.random.normal(key_t, (args.batch, 2))
    for hidden in [Swish(), SlippedTanh()]:
        net = jaxnn.Network([jaxnn.Layer(3, 4, jaxnn.Tanh()), jaxnn.Layer(4, 4, hidden),
                             jaxnn.Layer(4, 2, jaxnn.Identity())], jaxnn.MSELoss())
        params = net.init(key_params, bias_init="normal")
        print(jaxnn.check_gradients(net, params, x, t))
        print()


if __name__ == "__main__":
    main()
