"""The articles' training loop in plain NumPy: column vectors, np.dot, one example at a time."""

from __future__ import annotations

import numpy as np


def leaky_relu(y, alpha):
    return np.where(y > 0, y, alpha * y)


def leaky_relu_derivative(y, alpha):
    return np.where(y > 0, 1.0, alpha)


def train(params, xs, ts, lr, alpha=0.1):
    """Per-example SGD on a LeakyReLU MLP with MSE, as the articles write it.

    For each example: forward ``y = W x + b, x' = f(y)`` keeping every layer's
    values; then from the last layer back ``db = f'(y) * dx; dx = W^T db;
    dW = db x^T`` and ``W -= lr dW, b -= lr db``.

    Args:
        params: list of (W (outs, ins), b (outs,)) arrays; copied, not modified.
        xs: inputs, shape (n, ins); ts: targets, shape (n, outs).
        lr: learning rate; alpha: the LeakyReLU slope for y <= 0.

    Returns:
        The trained params as (W, b (outs,)) pairs.
    """
    Ws = [np.array(W, dtype=np.float64) for W, _ in params]
    bs = [np.array(b, dtype=np.float64).reshape(-1, 1) for _, b in params]
    for x, t in zip(xs, ts):
        x = x.reshape(-1, 1)
        t = t.reshape(-1, 1)
        inputs, pre = [x], []
        for W, b in zip(Ws, bs):
            y = np.dot(W, inputs[-1]) + b
            pre.append(y)
            inputs.append(leaky_relu(y, alpha))
        dx = 2 * (inputs[-1] - t) / t.shape[0]
        for i in reversed(range(len(Ws))):
            db = leaky_relu_derivative(pre[i], alpha) * dx
            dx = np.dot(Ws[i].T, db)
            dW = np.dot(db, inputs[i].T)
            Ws[i] -= lr * dW
            bs[i] -= lr * db
    return [(W, b.ravel()) for W, b in zip(Ws, bs)]
