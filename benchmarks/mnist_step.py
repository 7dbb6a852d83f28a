"""Section 2: one MNIST-size minibatch step, 784-128-128-10, softmax cross-entropy, batch 128, SGD.

Every case runs whole epochs of the same minibatches and is reported per
step. The roofline is the step's 8 matrix products alone (3 forward, 3 weight
gradients, 2 input gradients), chained as the backward pass of a linear
network with the same shapes, so nothing can be hoisted or skipped.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from timing import interleaved

SIZES = (784, 128, 128, 10)
LR = 0.01
# A step's needed work: 8 products of (batch x k) by (k x n), 2 flops per multiply-add.
FLOPS_PER_EXAMPLE = 2 * (3 * (784 * 128 + 128 * 128 + 128 * 10) - 784 * 128)


def make_problem(steps: int, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * batch, SIZES[0]), dtype=np.float32)
    t = rng.integers(0, SIZES[-1], steps * batch)
    net = jaxnn.Network.from_sizes(SIZES, [jaxnn.ReLU(), jaxnn.ReLU(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    return net, net.init(jax.random.key(seed), dtype=jnp.float32), x, t


def _linear_chain(mm, transpose, x, Ws):
    """The 8 products of a step: forward through, then backward from the output."""
    h1 = mm(x, transpose(Ws[0]))
    h2 = mm(h1, transpose(Ws[1]))
    d3 = mm(h2, transpose(Ws[2]))
    g2 = mm(transpose(d3), h2)
    d2 = mm(d3, Ws[2])
    g1 = mm(transpose(d2), h1)
    d1 = mm(d2, Ws[1])
    g0 = mm(transpose(d1), x)
    return g0, g1, g2


@functools.partial(jax.jit, static_argnames="parts")
def xla_products(Ws, xs, parts=1):
    """The products of every step in one lax.scan, weights carried so no step can be skipped.

    With ``parts > 1`` each batch is cut into that many independent chains
    whose weight gradients are summed, which XLA's CPU runtime runs on
    separate cores.
    """

    def body(Ws, x):
        chains = [_linear_chain(jnp.matmul, jnp.transpose, xi, Ws) for xi in jnp.split(x, parts)]
        grads = [sum(g) for g in zip(*chains)]
        return [W - 1e-6 * g for W, g in zip(Ws, grads)], None

    return jax.lax.scan(body, Ws, xs)[0]


def numpy_products(Ws, xs):
    Ws = [W.copy() for W in Ws]
    for x in xs:
        for W, g in zip(Ws, _linear_chain(np.matmul, np.transpose, x, Ws)):
            W -= 1e-6 * g


def torch_model(params):
    """The same network in PyTorch, starting from the same parameters."""
    import torch

    layers = []
    for (W, b), nonlinear in zip(params, (True, True, False)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.array(W)))
            linear.bias.copy_(torch.from_numpy(np.array(b)))
        layers += [linear, torch.nn.ReLU()] if nonlinear else [linear]
    return torch.nn.Sequential(*layers)


def torch_cases(params, xs_np, ts_np, threads):
    """PyTorch eager training and the PyTorch (MKL) products alone, or {} without torch."""
    try:
        import torch
    except ImportError:
        return {}
    xs = torch.from_numpy(xs_np)
    ts = torch.from_numpy(ts_np.astype(np.int64))
    Ws0 = [torch.from_numpy(np.array(W)) for W, _ in params]

    def products():
        with torch.no_grad():
            Ws = [W.clone() for W in Ws0]
            for x in xs:
                for W, g in zip(Ws, _linear_chain(torch.mm, torch.t, x, Ws)):
                    W.sub_(1e-6 * g)

    model = torch_model(params)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def training():
        for x, t in zip(xs, ts):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), t).backward()
            optimizer.step()

    cases = {}
    for n in threads:
        def with_threads(f, n=n):
            def run():
                torch.set_num_threads(n)
                f()
            return run
        cases[f"torch_eager_{n}t"] = with_threads(training)
        cases[f"torch_products_{n}t"] = with_threads(products)
    return cases


def run(steps: int, batch: int, repeats: int, torch_threads=(1, 2)) -> dict:
    """Time a step every way; seconds per step."""
    net, params, x_np, t_np = make_problem(steps, batch)
    x, t = jnp.asarray(x_np), jnp.asarray(t_np)
    xs = x.reshape(steps, batch, -1)
    optimizer = optax.sgd(LR)
    devices = jax.devices()

    def fit(gradients, **kwargs):  # one epoch, compiled once (same optimizer object each call)
        state, _ = jaxnn.fit(net, params, x, t, optimizer=optimizer, batch_size=batch, gradients=gradients,
                               **kwargs)
        trained = state.params
        jax.block_until_ready(trained)

    Ws = [W for W, _ in params]
    Ws_np = [np.array(W) for W in Ws]
    xs_np = x_np.reshape(steps, batch, -1)
    cases = {
        "fit_manual": lambda: fit("manual"),
        "fit_autodiff": lambda: fit("autodiff"),
        "fit_manual_split2": lambda: fit("manual", batch_split=2),
        "fit_autodiff_split2": lambda: fit("autodiff", batch_split=2),
        "xla_products": lambda: jax.block_until_ready(xla_products(Ws, xs)),
        "xla_products_split2": lambda: jax.block_until_ready(xla_products(Ws, xs, parts=2)),
        "numpy_products": lambda: numpy_products(Ws_np, xs_np),
    }
    if len(devices) > 1 and batch % len(devices) == 0:
        cases["fit_manual_sharded"] = lambda: fit("manual", devices=devices)
        cases["fit_autodiff_sharded"] = lambda: fit("autodiff", devices=devices)
    cases.update(torch_cases(params, xs_np, t_np.reshape(steps, batch), torch_threads))
    return interleaved({name: (f, steps) for name, f in cases.items()}, repeats)
