"""Data-parallel training over a mesh of every device, compared with one device.

The same script runs on one CPU, on several simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and on a machine's
GPUs, unchanged: the mesh is ``jax.devices()`` along one axis named "data";
each minibatch is split over it, the parameters are replicated, and XLA sums
the gradients across devices. The result equals a one-device run up to
rounding (the sum's order).

    python examples/data_parallel.py
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

import jaxnn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--examples", type=int, default=8192, help="training examples")
    parser.add_argument("--batch", type=int, default=128, help="global batch size (a multiple of the device count)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs")
    args = parser.parse_args()

    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    print(f"{len(devices)} device(s): {devices[0].platform}; mesh {dict(mesh.shape)}")
    net = jaxnn.Network.from_sizes((64, 128, 128, 10), [jaxnn.ReLU(), jaxnn.ReLU(), jaxnn.Identity()],
                                   jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.examples, 64)).astype(np.float32)
    t = (x[:, :10] + 0.5 * x[:, 10:20]).argmax(1).astype(np.int32)  # a learnable rule
    params = net.init(jax.random.key(0), dtype=jnp.float32)
    settings = dict(optimizer=optax.adam(1e-3), batch_size=args.batch, epochs=args.epochs, key=jax.random.key(1))

    # A shuffled epoch over the mesh gathers each device's rows from its own shard; one device
    # reproduces that order with shards= the mesh's size.
    results = {}
    for name, where in (("one device", dict(shards=len(devices))), (f"mesh of {len(devices)}", dict(devices=mesh))):
        jaxnn.fit(net, params, x, t, **dict(settings, epochs=1), **where)  # compile
        start = time.perf_counter()
        state, history = jaxnn.fit(net, params, x, t, **settings, **where)
        jax.block_until_ready(state.params)
        results[name] = state
        print(f"{name:>12}: loss per epoch {np.round(history['loss'], 4).tolist()}, "
              f"{time.perf_counter() - start:.2f} s")
    a, b = results.values()
    diff = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
    accuracy = jaxnn.evaluate(net, b.params, x, t)["accuracy"]
    print(f"largest parameter difference, mesh vs one device: {diff:.2e}")
    print(f"training accuracy after {args.epochs} epochs: {accuracy:.1%}")


if __name__ == "__main__":
    main()
