"""Time the first ``fit`` call in a fresh process (compile included), then a second one.

    python benchmarks/first_call.py {quadrants,mnist} {manual,autodiff}
    python benchmarks/first_call.py mnist-epoch {fit,fit_split_1,plain}

Prints one line of JSON: {"first": seconds, "second": seconds}. ``mnist-epoch``
is one epoch of 468 minibatches of 128 (784-128-128-10) on data already on
the device: ``fit`` (its default split, or none), or :func:`plain_epoch`, a
jitted ``lax.scan`` of the same computation over pre-batched data.
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import jaxnn  # noqa: E402


MNIST_LR = 0.01


def plain_epoch(net, optimizer):
    """``(params, opt_state, xs, ts) -> (params, opt_state, loss sum)``: the epoch fit runs, written plainly."""

    @jax.jit
    def epoch(params, opt_state, xs, ts):
        def body(carry, xt):
            params, opt_state, total = carry
            loss, grads = net.value_and_backprop(params, *xt)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, total + loss), None

        return jax.lax.scan(body, (params, opt_state, jnp.zeros((), jnp.float32)), (xs, ts))[0]

    return epoch


def mnist_epoch(case):
    from training_overheads import mnist_problem

    net, params, x, t = mnist_problem(468 * 128, (784, 128, 128, 10))
    jax.block_until_ready((params, x, t))
    optimizer = optax.sgd(MNIST_LR)
    if case == "plain":
        epoch = plain_epoch(net, optimizer)
        xs, ts = x.reshape((468, 128, 784)), t.reshape((468, 128))
        jax.block_until_ready((xs, ts))
        run = lambda: epoch(params, optimizer.init(params), xs, ts)[0]
    else:
        split = 1 if case == "fit_split_1" else "auto"
        run = lambda: jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=128, batch_split=split)[0].params
    times = []
    for _ in range(2):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    print(json.dumps({"first": times[0], "second": times[1]}))


def main():
    problem, gradients = sys.argv[1], sys.argv[2]
    if problem == "mnist-epoch":
        return mnist_epoch(gradients)
    if problem == "quadrants":
        from quadrants import LR, make_problem

        net, params, x, t = make_problem(99_000)
        batch_size = 1
    else:
        from mnist_step import LR, make_problem

        net, params, x, t = make_problem(468, 128)
        batch_size = 128
    x, t = jax.device_put((x, t))
    jax.block_until_ready((params, x, t))
    optimizer = optax.sgd(LR)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        state, _ = jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=batch_size, gradients=gradients)
        trained = state.params
        jax.block_until_ready(trained)
        times.append(time.perf_counter() - start)
    print(json.dumps({"first": times[0], "second": times[1]}))


if __name__ == "__main__":
    main()
