"""Each loss's hand-written derivative against jax.grad, and its numerics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn

RTOL, ATOL = 1e-13, 1e-15


def random(key, shape, scale=1.0):
    return jax.random.normal(jax.random.key(key), shape, jnp.float64) * scale


@pytest.mark.parametrize("shape", [(4,), (3, 4)])
def test_mse_value_and_derivative(shape):
    out, t = random(0, shape), random(1, shape)
    loss = jaxnn.MSELoss()
    np.testing.assert_allclose(loss.loss(out, t), np.mean((np.asarray(out) - np.asarray(t)) ** 2, -1), rtol=RTOL)
    expected = jax.vmap(jax.grad(loss.loss))(out.reshape(-1, 4), t.reshape(-1, 4)).reshape(shape)
    np.testing.assert_allclose(loss.dloss(out, t), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loss.dloss(out, t), 2 * (out - t) / 4, rtol=RTOL)


@pytest.mark.parametrize("target", ["labels", "onehot", "soft", "unnormalised"])
def test_cross_entropy_derivative_matches_grad(target):
    out = random(2, (5, 7), scale=3)
    labels = jnp.arange(5) % 7
    t = {
        "labels": labels,
        "onehot": jax.nn.one_hot(labels, 7, dtype=jnp.float64),
        "soft": jax.nn.softmax(random(3, (5, 7)), -1),
        "unnormalised": jnp.abs(random(4, (5, 7))),
    }[target]
    loss = jaxnn.CrossEntropyLoss()
    expected = jax.grad(lambda o: jnp.sum(loss.loss(o, t)))(out)
    np.testing.assert_allclose(loss.dloss(out, t), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.jit(loss.dloss)(out, t), expected, rtol=1e-12, atol=1e-15)


def test_cross_entropy_labels_equal_onehot_and_dloss_is_softmax_minus_onehot():
    out, labels = random(5, (6, 4)), jnp.array([0, 1, 2, 3, 0, 1])
    onehot = jax.nn.one_hot(labels, 4, dtype=jnp.float64)
    loss = jaxnn.CrossEntropyLoss()
    np.testing.assert_allclose(loss.loss(out, labels), loss.loss(out, onehot), rtol=RTOL)
    np.testing.assert_allclose(loss.dloss(out, labels), jax.nn.softmax(out) - onehot, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loss.loss(out, labels), -jnp.log(jax.nn.softmax(out))[jnp.arange(6), labels], rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    out = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], jnp.float32)
    loss = jaxnn.CrossEntropyLoss()
    value, grad = loss.loss(out, jnp.array([1, 2])), loss.dloss(out, jnp.array([1, 2]))
    assert jnp.all(jnp.isfinite(value)) and jnp.all(jnp.isfinite(grad))
    np.testing.assert_allclose(value, [2e4, np.log(3)], rtol=1e-6)


def test_losses_compare_by_value():
    assert jaxnn.MSELoss() == jaxnn.MSELoss()
    assert jaxnn.MSELoss() != jaxnn.CrossEntropyLoss()
    assert hash(jaxnn.CrossEntropyLoss()) == hash(jaxnn.CrossEntropyLoss())
    assert jaxnn.BinaryCrossEntropyLoss() == jaxnn.BinaryCrossEntropyLoss() != jaxnn.CrossEntropyLoss()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["labels", "probabilities"])
def test_binary_cross_entropy_derivative_matches_grad(target):
    out = random(6, (9, 1), scale=4)
    labels = jnp.arange(9) % 2
    t = labels if target == "labels" else jax.nn.sigmoid(random(7, (9, 1)))
    loss = jaxnn.BinaryCrossEntropyLoss()
    expected = jax.grad(lambda o: jnp.sum(loss.loss(o, t)))(out)
    np.testing.assert_allclose(loss.dloss(out, t), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.jit(loss.dloss)(out, t), expected, rtol=1e-12, atol=1e-15)
    p = np.asarray(labels[:, None] if target == "labels" else t, np.float64)
    s = 1 / (1 + np.exp(-np.asarray(out)))
    np.testing.assert_allclose(loss.loss(out, t), (-p * np.log(s) - (1 - p) * np.log(1 - s))[:, 0], rtol=1e-12)
    np.testing.assert_allclose(loss.dloss(out, t), s - p, rtol=1e-12, atol=1e-15)


def test_binary_cross_entropy_labels_equal_probabilities():
    out, labels = random(8, (6, 1)), jnp.array([0, 1, 1, 0, 1, 0])
    loss = jaxnn.BinaryCrossEntropyLoss()
    probabilities = labels[:, None].astype(jnp.float64)
    np.testing.assert_array_equal(loss.loss(out, labels), loss.loss(out, probabilities))
    np.testing.assert_array_equal(loss.dloss(out, labels), loss.dloss(out, probabilities))
    assert loss.loss(out, labels).shape == (6,) and loss.dloss(out, labels).shape == (6, 1)
    assert loss.loss(out[0], labels[0]).shape == ()


@pytest.mark.parametrize("z", [1e3, -1e3, 40.0, -40.0, 0.0])
@pytest.mark.parametrize("label", [0, 1])
def test_binary_cross_entropy_large_logits_are_exact(z, label):
    """softplus(z) = max(z, 0) + log1p(exp(-|z|)), the log of 1 + e^z without overflow or cancellation."""
    loss = jaxnn.BinaryCrossEntropyLoss()
    out, t = jnp.array([[z]], jnp.float64), jnp.array([label])
    sign = 1 if label == 0 else -1  # L = softplus(z) for label 0, softplus(-z) for label 1
    expected = max(sign * z, 0) + np.log1p(np.exp(-abs(z)))
    u = sign * z  # sigmoid(z) - t is sigmoid(z) for label 0, -sigmoid(-z) for label 1
    slope = sign * (1 / (1 + np.exp(-u)) if u >= 0 else np.exp(u) / (1 + np.exp(u)))
    value, grad = loss.loss(out, t), loss.dloss(out, t)
    auto = jax.grad(lambda o: jnp.sum(loss.loss(o, t)))(out)
    assert jnp.all(jnp.isfinite(value)) and jnp.all(jnp.isfinite(grad)) and jnp.all(jnp.isfinite(auto))
    np.testing.assert_allclose(value, [expected], rtol=1e-12, atol=0)
    np.testing.assert_allclose(grad, [[slope]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(auto, [[slope]], rtol=1e-12, atol=0)
    wide = loss.loss(out.astype(jnp.float32), t)  # float32 too: finite, to float32's precision
    np.testing.assert_allclose(wide, [expected], rtol=1e-6, atol=0)


def test_binary_cross_entropy_in_16_bit_computes_in_float32():
    loss = jaxnn.BinaryCrossEntropyLoss()
    out, t = jnp.array([[3.0], [-200.0]], jnp.bfloat16), jnp.array([0, 1])
    assert loss.loss(out, t).dtype == jnp.float32 and loss.dloss(out, t).dtype == jnp.bfloat16
    np.testing.assert_allclose(loss.loss(out, t), [3.0485873, 200.0], rtol=1e-6)


def test_binary_cross_entropy_targets_and_output_width():
    loss = jaxnn.BinaryCrossEntropyLoss()
    loss.check_target((5, 1), jnp.zeros(5, jnp.int32))
    loss.check_target((5, 1), jnp.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"needs a network with 1 output .* use CrossEntropyLoss"):
        loss.check_target((5, 2), jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match=r"shape \(5, 1\), got float64 targets of shape \(5,\); add the last axis"):
        loss.check_target((5, 1), jnp.zeros(5))
    with pytest.raises(ValueError, match=r"integer labels 0 or 1 of shape \(5,\)"):
        loss.check_target((5, 1), jnp.zeros((5, 1), jnp.int32))


def test_correct_predictions():
    out = jnp.array([[2.0], [-1.0], [0.0], [0.5]])
    binary = jaxnn.BinaryCrossEntropyLoss()
    assert binary.correct(out, jnp.array([1, 1, 0, 0])).tolist() == [True, False, True, False]
    assert binary.correct(out, jnp.array([[0.9], [0.2], [0.5], [0.7]])).tolist() == [True, True, True, True]
    logits = jnp.array([[1.0, 3.0, 2.0], [0.0, -1.0, -2.0]])
    ce = jaxnn.CrossEntropyLoss()
    assert ce.correct(logits, jnp.array([1, 2])).tolist() == [True, False]
    assert ce.correct(logits, jax.nn.one_hot(jnp.array([2, 0]), 3)).tolist() == [False, True]
    assert jaxnn.MSELoss().correct(logits, logits) is None
    assert jaxnn.MSELoss().label_rule(3) is None and ce.label_rule(3)[0] == 3 and binary.label_rule(1)[0] == 2


def test_cross_entropy_correct_compares_along_the_last_axis_for_any_leading_shape():
    """Guards against ``correct`` taking the argmax along axis 1 instead of the last axis.

    On a batch of rows the two agree; on one unbatched output, or on outputs with two leading axes,
    only the last axis is the class axis.
    """
    ce = jaxnn.CrossEntropyLoss()
    assert bool(ce.correct(jnp.array([0.0, 3.0, 1.0]), jnp.array(1)))
    assert not bool(ce.correct(jnp.array([0.0, 3.0, 1.0]), jnp.array(2)))
    logits = random(3, (2, 4, 3))
    labels = jnp.array([[0, 1, 2, 0], [2, 2, 1, 0]])
    expected = np.argmax(np.asarray(logits), axis=-1) == np.asarray(labels)
    np.testing.assert_array_equal(ce.correct(logits, labels), expected)
    np.testing.assert_array_equal(ce.correct(logits, jax.nn.one_hot(labels, 3)), expected)


def test_target_errors_name_the_label_shape_of_a_multi_axis_output():
    """Guards against the error messages naming ``out_shape[:1]`` instead of ``out_shape[:-1]`` as the label shape.

    For a batch of rows the two coincide; for an output of shape (2, 4, 3) the labels are (2, 4).
    """
    bce = jaxnn.BinaryCrossEntropyLoss()
    with pytest.raises(ValueError, match=r"integer labels 0 or 1 of shape \(2, 4\) or probabilities of class 1 "
                                         r"of shape \(2, 4, 1\)"):
        bce.check_target((2, 4, 1), jnp.zeros((2,), jnp.int32))
    ce = jaxnn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"integer labels of shape \(2, 4\) for an output of shape \(2, 4, 3\)"):
        ce.check_target((2, 4, 3), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2, 4\) or probabilities of shape \(2, 4, 3\)"):
        ce.check_target((2, 4, 3), jnp.zeros((2, 4)))


def test_mse_takes_integer_targets_of_the_output_shape_and_rejects_only_label_shaped_ones():
    """Guards against MSELoss rejecting every integer target (``or`` for ``and`` in its check).

    Integer targets of the output's shape are plain numbers to regress on; only integer targets of the
    label shape ``out_shape[:-1]`` are class labels given to the wrong loss.
    """
    mse = jaxnn.MSELoss()
    mse.check_target((5, 3), jnp.zeros((5, 3), jnp.int32))
    mse.check_target((5, 3), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="integer class labels of shape"):
        mse.check_target((5, 3), jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match=r"integer class labels of shape \(2, 4\)"):
        mse.check_target((2, 4, 3), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"expects a target of shape \(5, 3\) \(the network's output\), got shape \(5,\)"):
        mse.check_target((5, 3), jnp.zeros(5))


@pytest.mark.slow
@pytest.mark.mutation
def test_cross_entropy_labels_on_unbatched_and_multi_axis_outputs():
    """Guards against the one-hot, log-softmax or label lookup of integer labels using axis 1, not the last axis.

    On a batch of rows the two agree; one unbatched output has no axis 1, and an output of shape
    (2, 4, 3) has 4 at axis 1 but 3 classes.
    """
    ce = jaxnn.CrossEntropyLoss()
    out = random(6, (3,))
    np.testing.assert_allclose(ce.dloss(out, jnp.array(2)), jax.nn.softmax(out) - jnp.array([0.0, 0.0, 1.0]),
                               rtol=RTOL, atol=ATOL)
    out, labels = random(7, (2, 4, 3)), jnp.array([[0, 1, 2, 0], [2, 2, 1, 0]])
    onehot = jax.nn.one_hot(labels, 3, dtype=jnp.float64)
    np.testing.assert_allclose(ce.dloss(out, labels), jax.nn.softmax(out) - onehot, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ce.loss(out, labels), ce.loss(out, onehot), rtol=RTOL)
    logp = np.log(np.asarray(jax.nn.softmax(out, axis=-1)))
    reference = -np.take_along_axis(logp, np.asarray(labels)[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(ce.loss(out, labels), reference, rtol=1e-12)
    out = random(8, (3,))
    np.testing.assert_allclose(ce.loss(out, jnp.array(1)), -np.log(np.asarray(jax.nn.softmax(out)))[1], rtol=1e-12)


def test_label_shapes_are_the_output_shape_without_its_last_axis():
    """Guards against the label-shape checks comparing with ``out_shape[:1]`` or with ``==`` for ``!=``,
    and against BinaryCrossEntropyLoss reading the output's width, or naming the classes, at axis 1.

    Labels of shape ``out_shape[:-1]`` are accepted and any other shape rejected, for outputs with one,
    two and three axes.
    """
    ce, binary = jaxnn.CrossEntropyLoss(), jaxnn.BinaryCrossEntropyLoss()
    for lead in [(), (5,), (2, 4)]:
        ce.check_target(lead + (3,), jnp.zeros(lead, jnp.int32))
        binary.check_target(lead + (1,), jnp.zeros(lead, jnp.int32))
        with pytest.raises(ValueError, match="expects integer labels"):
            ce.check_target(lead + (3,), jnp.zeros(lead + (1,), jnp.int32))
    with pytest.raises(ValueError, match="expects integer labels 0 or 1"):
        binary.check_target((2, 4, 1), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"output of shape \(2, 4, 3\); for 3 classes use CrossEntropyLoss"):
        binary.check_target((2, 4, 3), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"targets of shape \(2, 4\); add the last axis"):
        binary.check_target((2, 4, 1), jnp.zeros((2, 4)))
