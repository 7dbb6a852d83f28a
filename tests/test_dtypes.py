"""The dtype policy of jaxnn (see "Dtypes" in the package docstring), end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn

from tests.helpers import assert_trees_close

# Largest |16-bit - float32| / max |float32| over a (8, 16, 16, 4) net and 64 examples, at least 2x the measured worst.
TOLERANCES = {
    "bfloat16": dict(forward=2e-2, loss=1e-2, grads=1e-1, fit=2e-2),
    "float16": dict(forward=4e-3, loss=2e-3, grads=1e-2, fit=5e-3),
}
CASES = [
    (jaxnn.MSELoss(), [jaxnn.Tanh(), jaxnn.Sigmoid(), jaxnn.Identity()]),
    (jaxnn.CrossEntropyLoss(), [jaxnn.LeakyReLU(), jaxnn.Tanh(), jaxnn.Softmax()]),
]


def _problem(loss, acts, dtype):
    net = jaxnn.Network.from_sizes((8, 16, 16, 4), acts, loss)
    x = jax.random.normal(jax.random.key(1), (64, 8), jnp.float32)
    if isinstance(loss, jaxnn.CrossEntropyLoss):
        t = jax.random.randint(jax.random.key(2), (64,), 0, 4)
    else:
        t = jax.random.normal(jax.random.key(2), (64, 4), jnp.float32)
    params = net.init(jax.random.key(0), dtype=dtype, bias_init="normal")
    return net, params, x, t


def _rel(a, ref) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("loss, acts", CASES)
def test_float32_and_float64_end_to_end(dtype, loss, acts):
    net, params, x, t = _problem(loss, acts, dtype)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(dtype)}
    assert net.forward(params, x).dtype == dtype
    assert net.loss(params, x, t).dtype == dtype
    grads = net.backprop(params, x, t)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(dtype)}
    assert_trees_close(grads, jax.grad(net.loss)(params, x, t), rtol=1e-4 if dtype == jnp.float32 else 1e-10,
                       atol=1e-6 if dtype == jnp.float32 else 1e-14)
    state, history = jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=16, epochs=2)
    assert {a.dtype for a in jax.tree.leaves(state.params)} == {jnp.dtype(dtype)}
    assert np.isfinite(history["loss"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("loss, acts", CASES)
def test_16_bit_against_a_float32_reference(dtype, loss, acts):
    tol = TOLERANCES[dtype]
    net, p16, x, t = _problem(loss, acts, jnp.dtype(dtype))
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p16)  # the same starting values

    out = net.forward(p16, x)
    assert out.dtype == jnp.dtype(dtype)
    assert _rel(out, net.forward(p32, x)) <= tol["forward"]

    value, grads = net.value_and_backprop(p16, x, t)
    assert value.dtype == jnp.float32  # 16-bit losses are computed and returned in float32
    assert _rel(value, net.loss(p32, x, t)) <= tol["loss"]
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(dtype)}  # gradients: the params' dtype
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(net.backprop(p32, x, t))):
        assert _rel(g, r) <= tol["grads"]

    s16, h16 = jaxnn.fit(net, p16, x, t, optimizer=optax.sgd(0.1), batch_size=16, epochs=20)
    _, h32 = jaxnn.fit(net, p32, x, t, optimizer=optax.sgd(0.1), batch_size=16, epochs=20)
    assert {a.dtype for a in jax.tree.leaves(s16.params)} == {jnp.dtype(dtype)}
    assert np.isfinite(h16["loss"]).all() and h16["loss"][-1] < h16["loss"][0]
    assert abs(h16["loss"][-1] - h32["loss"][-1]) <= tol["fit"] * h32["loss"][-1]
    assert np.isfinite(jaxnn.evaluate(net, s16.params, x, t)["loss"])


def test_16_bit_losses_and_softmax_do_not_overflow():
    big = jnp.array([[60000.0, -60000.0, 0.0]], jnp.float16)  # float16's largest is 65504
    assert np.isfinite(float(jaxnn.CrossEntropyLoss().loss(big, jnp.array([1]))[0]))
    assert np.isfinite(float(jaxnn.MSELoss().loss(big, jnp.zeros((1, 3), jnp.float16))[0]))  # 60000^2 in float32
    s = jaxnn.Softmax().f(big)
    assert s.dtype == jnp.float16 and np.allclose(np.asarray(s, np.float32), [[1, 0, 0]])
    assert jaxnn.CrossEntropyLoss().dloss(big, jnp.array([1])).dtype == jnp.float16


def test_mixed_dtypes_compute_in_the_params_dtype():
    net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    p32 = net.init(jax.random.key(0), dtype=jnp.float32)
    x64 = np.ones((4, 3), np.float64)
    assert net.forward(p32, x64).dtype == jnp.float32  # float64 data, float32 params: float32
    x, t = net.check_inputs(p32, np.ones((4, 3), np.int32), np.array([0, 1, 1, 0], np.int64))
    assert x.dtype == jnp.float32  # integer inputs: the params' dtype
    assert jnp.issubdtype(t.dtype, jnp.integer)  # integer labels stay integers
    _, t = net.check_inputs(p32, x64, np.full((4, 2), 0.5, np.float64))
    assert t.dtype == jnp.float32  # float targets: x's dtype, so the params'
    assert {g.dtype for g in jax.tree.leaves(net.backprop(p32, x64, np.array([0, 1, 1, 0])))} == {jnp.dtype("float32")}


def test_leaky_relu_alpha_keeps_16_bit():
    y = jnp.array([-1.0, 2.0], jnp.bfloat16)
    assert jaxnn.LeakyReLU(np.float64(0.2)).f(y).dtype == jnp.bfloat16


@pytest.mark.parametrize("dtype, match", [(jnp.int32, "must be a float dtype"), (jnp.complex64, "must be a float dtype"),
                                          ("nonsense", "must be a float dtype such as jnp.float32"),
                                          (",", "must be a float dtype such as jnp.float32")])  # NumPy: SyntaxError
def test_non_float_parameter_dtypes(dtype, match):
    net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.MSELoss())
    with pytest.raises((TypeError, ValueError), match=match):
        net.init(jax.random.key(0), dtype=dtype)
