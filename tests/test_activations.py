"""Each activation's hand-written derivative against jax.grad / jax.vjp of its f, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn

ELEMENTWISE = [jaxnn.LeakyReLU(), jaxnn.LeakyReLU(0.3), jaxnn.ReLU(), jaxnn.Sigmoid(), jaxnn.Tanh(), jaxnn.Identity()]
ALL = ELEMENTWISE + [jaxnn.Softmax()]
# Float64 throughout; the derivatives are closed forms, so they match autodiff to rounding.
RTOL, ATOL = 1e-13, 1e-15


@pytest.fixture(scope="module")
def points():
    """Normal draws, signed zeros, tiny and large values, in float64."""
    y = jax.random.normal(jax.random.key(0), (64,), jnp.float64) * 3
    return jnp.concatenate([y, jnp.array([0.0, -0.0, 1e-300, -1e-300, 40.0, -40.0])])


@pytest.mark.parametrize("act", ELEMENTWISE, ids=repr)
def test_df_matches_grad_of_f(act, points):
    expected = jax.vmap(jax.grad(act.f))(points)
    np.testing.assert_allclose(act.df(points), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("act", ALL, ids=repr)
@pytest.mark.parametrize("shape", [(5,), (3, 5)])
def test_backward_is_the_vjp_of_f(act, shape):
    ky, kg = jax.random.split(jax.random.key(1))
    y = jax.random.normal(ky, shape, jnp.float64) * 2
    g = jax.random.normal(kg, shape, jnp.float64)
    _, vjp = jax.vjp(act.f, y)
    np.testing.assert_allclose(act.backward(y, g), vjp(g)[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(jax.jit(act.backward)(y, g), vjp(g)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "act, slope_at_zero",
    [(jaxnn.ReLU(), 0.0), (jaxnn.LeakyReLU(0.1), 0.1), (jaxnn.LeakyReLU(0.25), 0.25)],
    ids=repr,
)
def test_kink_at_exactly_zero_agrees_with_autodiff(act, slope_at_zero):
    zero = jnp.zeros((), jnp.float64)
    assert float(act.df(zero)) == slope_at_zero
    assert float(jax.grad(act.f)(zero)) == slope_at_zero
    assert float(act.backward(zero, 2.0)) == 2 * slope_at_zero


def test_large_inputs_stay_finite():
    big = jnp.array([-1e4, -50.0, 0.0, 50.0, 1e4], jnp.float32)
    for act in (jaxnn.Sigmoid(), jaxnn.Softmax(), jaxnn.Tanh()):
        g = jnp.ones_like(big)
        assert jnp.all(jnp.isfinite(act.f(big))), act
        assert jnp.all(jnp.isfinite(act.backward(big, g))), act
    np.testing.assert_array_equal(jaxnn.Sigmoid().f(big)[jnp.array([0, -1])], [0.0, 1.0])
    np.testing.assert_allclose(jaxnn.Softmax().f(big), [0, 0, 0, 0, 1], atol=1e-30)


def test_softmax_rows_sum_to_one_and_backward_is_orthogonal_to_ones():
    y = jax.random.normal(jax.random.key(2), (4, 6), jnp.float64) * 10
    s = jaxnn.Softmax().f(y)
    np.testing.assert_allclose(s.sum(-1), 1.0, rtol=1e-15)
    # Adding a constant to every logit changes nothing, so the VJP sums to zero.
    back = jaxnn.Softmax().backward(y, jax.random.normal(jax.random.key(3), y.shape, jnp.float64))
    np.testing.assert_allclose(back.sum(-1), 0.0, atol=1e-15)


def test_activations_compare_and_hash_by_value():
    assert jaxnn.LeakyReLU(0.1) == jaxnn.LeakyReLU(0.1)
    assert jaxnn.LeakyReLU(0.1) != jaxnn.LeakyReLU(0.2)
    assert hash(jaxnn.Sigmoid()) == hash(jaxnn.Sigmoid())
    assert jaxnn.ReLU() != jaxnn.LeakyReLU(0.0)
    with pytest.raises(Exception):
        jaxnn.LeakyReLU(0.1).alpha = 0.2


def test_jit_caches_activations_by_value():
    traces = []

    def apply(act, y):
        traces.append(act)
        return act.f(y)

    f = jax.jit(apply, static_argnums=0)
    y = jnp.ones(3)
    f(jaxnn.LeakyReLU(0.1), y)
    f(jaxnn.LeakyReLU(0.1), y)
    assert len(traces) == 1
    f(jaxnn.LeakyReLU(0.2), y)
    assert len(traces) == 2


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
def test_wide_16_bit_softmax_is_the_float64_answer_rounded(dtype):
    """Guards against Softmax computing 16-bit inputs in 16 bits rather than widening them to float32.

    Over 1000 classes a 16-bit sum loses the small terms. Widened, ``f`` and
    ``backward`` are the float64 answer rounded to the 16-bit type: within half
    an ulp of each entry for ``f``, and of the largest entry for ``backward``
    (computed in 16 bits they are off by 3 to 10 times more).
    """
    half_ulp = 2.0 ** -(jnp.finfo(dtype).nmant + 1)
    y = (2 * jax.random.normal(jax.random.key(4), (8, 1000))).astype(dtype)
    g = jax.random.normal(jax.random.key(5), (8, 1000)).astype(dtype)
    y64, g64 = np.asarray(y, np.float64), np.asarray(g, np.float64)
    s = np.exp(y64 - y64.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    back = s * (g64 - (s * g64).sum(-1, keepdims=True))
    softmax = jaxnn.Softmax()
    tiny = float(jnp.finfo(dtype).smallest_subnormal)  # the spacing of subnormals, where rounding is absolute
    f = softmax.f(y)
    assert f.dtype == dtype
    np.testing.assert_allclose(np.asarray(f, np.float64), s, rtol=half_ulp, atol=tiny)
    b = softmax.backward(y, g)
    assert b.dtype == dtype
    error = np.abs(np.asarray(b, np.float64) - back) / np.abs(back).max(-1, keepdims=True)
    assert error.max() <= half_ulp, error.max()
