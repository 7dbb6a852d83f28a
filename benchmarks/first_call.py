"""Time the first ``fit`` call in a fresh process (compile included), then a second one.

    python benchmarks/first_call.py {quadrants,mnist} {manual,autodiff}

Prints one line of JSON: {"first": seconds, "second": seconds}.
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import optax  # noqa: E402

import jaxnn  # noqa: E402


def main():
    problem, gradients = sys.argv[1], sys.argv[2]
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
