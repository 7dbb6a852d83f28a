"""Per-example gradients, their norms without forming them, and the clipped mean gradient (DP-SGD)."""

import functools
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from tests.helpers import assert_trees_close, examples, random_problem

RTOL, ATOL = 1e-12, 1e-14
ACTS = [jaxnn.Tanh(), jaxnn.Sigmoid(), jaxnn.LeakyReLU(), jaxnn.ReLU(), jaxnn.Identity(), jaxnn.Softmax()]
TARGET_SCALE = 3.0


@pytest.fixture
def problem(make_problem):
    """``problem(sizes, acts, batch, seed=0, labels=False)``: a random problem with targets of scale 3."""
    return lambda *args, **kwargs: make_problem(*args, target_scale=TARGET_SCALE, **kwargs)


@functools.partial(jax.jit, static_argnums=0)
def _vmap_then_clip(net, params, x, t, clip_norm):
    """The reference: materialise every per-example gradient, take norms, clip, average."""
    per_example = jax.vmap(jax.grad(net.loss), in_axes=(None, 0, 0))(params, x, t)
    leaves = jax.tree.leaves(per_example)
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves))
    weights = jnp.minimum(1.0, clip_norm / norms)
    clipped = jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=1) / x.shape[0], per_example)
    return norms, clipped


def test_per_example_grads_equal_a_loop(problem):
    net, params, x, t = problem((3, 4, 2), ACTS[:2], 5)
    per_example = jax.jit(jaxnn.per_example_grads, static_argnums=0)(net, params, x, t)
    for i in range(5):
        assert_trees_close(jax.tree.map(lambda g: g[i], per_example), jax.grad(net.loss)(params, x[i], t[i]), RTOL, ATOL)


@pytest.mark.slow
@pytest.mark.mutation
@hypothesis.settings(max_examples=examples(5), deadline=None)
@hypothesis.given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    acts=st.lists(st.sampled_from(ACTS), min_size=3, max_size=3),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    labels=st.booleans(),
    clip_norm=st.floats(0.0, 3.0),
)
def test_norms_and_clipped_mean_equal_vmap_then_clip(sizes, acts, batch, seed, labels, clip_norm):
    net, params, x, t = random_problem(sizes, acts, batch, seed, labels=labels, target_scale=TARGET_SCALE)
    ref_norms, ref_clipped = _vmap_then_clip(net, params, x, t, clip_norm)
    norms = jaxnn.per_example_grad_norms(net, params, x, t)
    np.testing.assert_allclose(norms, ref_norms, rtol=RTOL, atol=ATOL)
    clipped = jaxnn.clipped_mean_grad(net, params, x, t, clip_norm)
    assert_trees_close(clipped, ref_clipped, RTOL, ATOL)


@pytest.mark.slow
def test_jitted_on_the_benchmark_shape_and_clipping_really_happens(problem):
    acts = [jaxnn.LeakyReLU(), jaxnn.Tanh(), jaxnn.Identity()]
    net, params, x, t = problem((20, 8, 8, 3), acts, 16, seed=4, labels=True)
    norms = jax.jit(jaxnn.per_example_grad_norms, static_argnums=0)(net, params, x, t)
    c = float(jnp.median(norms))  # half the examples clipped, half not
    ref_norms, ref_clipped = jax.jit(_vmap_then_clip, static_argnums=0)(net, params, x, t, c)
    clip = jax.jit(jaxnn.clipped_mean_grad, static_argnums=0)
    np.testing.assert_allclose(norms, ref_norms, rtol=RTOL, atol=ATOL)
    assert_trees_close(clip(net, params, x, t, c), ref_clipped, RTOL, ATOL)
    assert (norms > c).sum() >= 7 and (norms < c).sum() >= 7
    # A clip above every norm leaves the plain mean gradient.
    assert_trees_close(clip(net, params, x, t, float(norms.max()) + 1), net.backprop(params, x, t), RTOL, ATOL)


@pytest.mark.slow
def test_noise_is_gaussian_with_the_dp_sgd_scale(problem):
    net, params, x, t = problem((3, 4, 2), ACTS[:2], 8, seed=1)
    plain = jaxnn.clipped_mean_grad(net, params, x, t, 1.0)
    sample = jax.jit(
        jax.vmap(lambda k: jaxnn.clipped_mean_grad(net, params, x, t, 1.0, noise_multiplier=2.0, key=k))
    )(jax.random.split(jax.random.key(0), 4000))
    noise = np.concatenate([(np.asarray(s) - np.asarray(p)).reshape(4000, -1)
                            for s, p in zip(jax.tree.leaves(sample), jax.tree.leaves(plain))], axis=1)
    # Standard deviation sigma * C / batch = 2 / 8 for every entry; means 0.
    np.testing.assert_allclose(noise.std(axis=0), 0.25, rtol=0.06)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=0.025)
    again = jaxnn.clipped_mean_grad(net, params, x, t, 1.0, noise_multiplier=2.0, key=jax.random.key(3))
    assert_trees_close(again, jaxnn.clipped_mean_grad(net, params, x, t, 1.0, noise_multiplier=2.0,
                                                      key=jax.random.key(3)), 0, 0)


def test_bad_arguments_are_named(problem):
    net, params, x, t = problem((3, 2), ACTS[:1], 4)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        jaxnn.clipped_mean_grad(net, params, x, t, 1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="clip_norm must be a non-negative number, got -1"):
        jaxnn.clipped_mean_grad(net, params, x, t, -1.0)
    # The options are keyword-only (guards against the signature's * becoming /): by position they would be
    # read as data; the data can be named.
    with pytest.raises(TypeError):
        jaxnn.clipped_mean_grad(net, params, x, t, 1.0, 0.0)
    jaxnn.clipped_mean_grad(net=net, params=params, x=x, t=t, clip_norm=1.0)
    # An infinite clip_norm clips nothing, which is fine without noise and infinite noise with it.
    assert_trees_close(jaxnn.clipped_mean_grad(net, params, x, t, np.inf), net.backprop(params, x, t), RTOL, ATOL)
    with pytest.raises(ValueError, match=r"clip_norm \(with noise, whose scale it sets\) must be a finite"):
        jaxnn.clipped_mean_grad(net, params, x, t, np.inf, noise_multiplier=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"needs a batch x of shape \(batch, 3\), got shape \(3,\)"):
        jaxnn.per_example_grad_norms(net, params, x[0], t[0])


@pytest.mark.slow
def test_binary_cross_entropy_per_example_tools(problem):
    net, params, x, _ = problem((3, 4, 1), [jaxnn.Tanh(), jaxnn.Identity()], 6, seed=2,
                                loss=jaxnn.BinaryCrossEntropyLoss())
    t = jnp.array([0, 1, 1, 0, 1, 0])
    per_example = jaxnn.per_example_grads(net, params, x, t)
    expected = jax.vmap(jax.grad(net.loss), in_axes=(None, 0, 0))(params, x, t)
    assert_trees_close(per_example, expected, RTOL, ATOL)
    ref_norms, ref_clipped = _vmap_then_clip(net, params, x, t, 0.3)
    np.testing.assert_allclose(jaxnn.per_example_grad_norms(net, params, x, t), ref_norms, rtol=RTOL, atol=ATOL)
    assert_trees_close(jaxnn.clipped_mean_grad(net, params, x, t, 0.3), ref_clipped, RTOL, ATOL)


def test_the_noise_is_the_documented_draw_per_leaf(problem):
    """Guards against the noise's sign or key changing, so that a run with a given key is the one documented:
    leaf ``i`` (of ``jax.tree.leaves``) gets ``sigma * clip_norm * normal(split(key, n_leaves)[i]) / batch``."""
    net, params, x, t = problem((3, 4, 2), ACTS[:2], 5, seed=4)
    key, sigma, clip = jax.random.key(9), 0.7, 0.4
    noisy = jaxnn.clipped_mean_grad(net, params, x, t, clip, noise_multiplier=sigma, key=key)
    plain = jaxnn.clipped_mean_grad(net, params, x, t, clip)
    leaves = jax.tree.leaves(plain)
    keys = jax.random.split(key, len(leaves))
    for i, (n, p) in enumerate(zip(jax.tree.leaves(noisy), leaves)):
        expected = sigma * clip * jax.random.normal(keys[i], p.shape, p.dtype) / 5
        np.testing.assert_allclose(n - p, expected, rtol=1e-10, atol=1e-12)


def _noise_samples(net, params, x, t, clip_norm, sigma, draws, seed=0):
    """``draws`` samples of the noise clipped_mean_grad adds, one (draws, size) array per leaf."""
    plain = jaxnn.clipped_mean_grad(net, params, x, t, clip_norm)
    sample = jax.jit(jax.vmap(
        lambda k: jaxnn.clipped_mean_grad(net, params, x, t, clip_norm, noise_multiplier=sigma, key=k)
    ))(jax.random.split(jax.random.key(seed), draws))
    return [(np.asarray(s) - np.asarray(p)).reshape(draws, -1)
            for s, p in zip(jax.tree.leaves(sample), jax.tree.leaves(plain))]


@pytest.mark.slow
@pytest.mark.mutation
@pytest.mark.parametrize("clip_norm", [0.3, 5.0])
def test_noise_scale_is_sigma_times_clip_norm_over_batch(problem, clip_norm):
    """Guards against DP-SGD noise of standard deviation ``sigma`` instead of ``sigma * clip_norm`` (a
    privacy bug that clip_norm = 1 hides): the docstring's ``(... + sigma * C * N(0, I)) / batch``."""
    batch, sigma, draws = 4, 1.5, 3000
    net, params, x, t = problem((3, 4, 2), ACTS[:2], batch, seed=2)
    noise = np.concatenate(_noise_samples(net, params, x, t, clip_norm, sigma, draws), axis=1)
    expected = sigma * clip_norm / batch
    # 22 entries of 3000 draws each: the pooled std is known to about 0.3%, each entry's to about 1.3%.
    np.testing.assert_allclose(noise.std(), expected, rtol=0.02)
    np.testing.assert_allclose(noise.std(axis=0), expected, rtol=0.07)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=5 * expected / np.sqrt(draws))


@pytest.mark.slow
@pytest.mark.mutation
def test_noise_of_different_leaves_is_independent(problem):
    """Guards against one PRNG key reused for every leaf's noise, which makes the noise of leaves of one
    shape equal and of other shapes equal up to shape (a privacy bug: the noise cancels in differences).

    Every pair of entries of different leaves must be uncorrelated over the draws.
    """
    draws = 3000
    net, params, x, t = problem((3, 3, 3), ACTS[:2], 4, seed=3)  # W0, W1 (3, 3); b0, b1 (3,)
    leaves = _noise_samples(net, params, x, t, 2.0, 1.0, draws, seed=1)
    standard = [(n - n.mean(0)) / n.std(0) for n in leaves]
    for a in range(len(leaves)):
        for b in range(a + 1, len(leaves)):
            correlation = standard[a].T @ standard[b] / draws  # every entry of leaf a with every entry of b
            # Under independence each is about N(0, 1/3000): 0.018; 81 of them stay well below 0.1.
            assert np.abs(correlation).max() < 0.1, (a, b, np.abs(correlation).max())
