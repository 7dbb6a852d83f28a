"""The gradient source protocol: a source written here trains through make_train_step and fit, with its state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from tests.helpers import assert_trees_close, classification


@dataclasses.dataclass(frozen=True)
class Scaled(jaxnn.rules.GradientSource):
    """Backprop's gradients times ``factor``, counting its steps in its state."""

    factor: float = 0.5

    def init(self, key, net, params):
        return {"steps": jnp.zeros((), jnp.int32)}

    def value_and_grad(self, net, params, state, x, t):
        loss, grads = net.value_and_backprop(params, x, t)
        return loss, jax.tree.map(lambda g: self.factor * g, grads), {"steps": state["steps"] + 1}


def _sgd_loop(net, params, x, t, lr, batch, epochs):
    """The reference: plain SGD with jax.grad over minibatches in their stored order."""
    grad = jax.jit(jax.grad(net.loss))
    for _ in range(epochs):
        for lo in range(0, x.shape[0], batch):
            g = grad(params, x[lo:lo + batch], t[lo:lo + batch])
            params = jax.tree.map(lambda p, d: p - lr * d, params, g)
    return params


@pytest.mark.slow
def test_a_custom_source_trains_through_make_train_step():
    """Guards against a step that ignores the source (or its state) and computes backprop's gradient itself."""
    net, params, x, t = classification(n=16)
    source, optimizer = Scaled(0.5), optax.sgd(0.1)
    step = jaxnn.make_train_step(net, optimizer, gradients=source)
    new, _, loss, state = step(params, optimizer.init(params), x, t, source.init(jax.random.key(0), net, params))
    assert int(state["steps"]) == 1
    np.testing.assert_allclose(loss, net.loss(params, x, t), rtol=1e-12)
    assert_trees_close(new, _sgd_loop(net, params, x, t, 0.05, 16, 1), rtol=1e-12, atol=1e-14)
    assert step is jaxnn.make_train_step(net, optax.sgd(0.1), gradients=Scaled(0.5))  # keyed on settings
    assert step is not jaxnn.make_train_step(net, optax.sgd(0.1), gradients=Scaled(0.25))


@pytest.mark.slow
def test_a_custom_source_trains_through_fit_and_resumes_bitwise(tmp_path):
    """Guards against fit dropping the source's state between epochs or from a checkpoint."""
    net, params, x, t = classification(n=48)
    kwargs = dict(optimizer=optax.sgd(0.1), batch_size=8, gradients=Scaled(0.5))
    whole, _ = jaxnn.fit(net, params, x, t, epochs=4, **kwargs)
    assert int(whole.grad_state["steps"]) == 4 * 6
    assert_trees_close(whole.params, _sgd_loop(net, params, x, t, 0.05, 8, 4), rtol=1e-10, atol=1e-12)

    path = tmp_path / "run.npz"
    jaxnn.fit(net, params, x, t, epochs=2, callbacks=[jaxnn.Checkpoint(path)], **kwargs)
    like = jaxnn.TrainState(params, optax.sgd(0.1).init(params), 0, Scaled().init(jax.random.key(0), net, params))
    resumed, history = jaxnn.fit(net, jaxnn.load(path, like), x, t, epochs=2, **kwargs)
    assert history["epoch"].tolist() == [3, 4]
    assert_trees_close(resumed, whole, rtol=0, atol=0)


def test_a_source_state_that_does_not_fit_is_named_before_anything_runs():
    net, params, x, t = classification(n=16)
    state = jaxnn.TrainState(params, optax.sgd(0.1).init(params), 0, {"steps": jnp.zeros((3,), jnp.int32)})
    with pytest.raises(ValueError, match=r"params_or_state.grad_state\['steps'\] must have shape \(\) for Scaled"):
        jaxnn.fit(net, state, x, t, optimizer=optax.sgd(0.1), batch_size=8, gradients=Scaled())
    with pytest.raises(TypeError, match="grad_state does not fit Scaled"):
        jaxnn.make_train_step(net, optax.sgd(0.1), gradients=Scaled())(params, optax.sgd(0.1).init(params), x, t)


def test_gradients_must_be_a_mode_or_a_hashable_source():
    net, params, x, t = classification(n=16)

    class Unhashable(jaxnn.rules.GradientSource):
        __hash__ = None

    with pytest.raises(TypeError, match="gradients must be 'manual', 'autodiff' or a jaxnn.rules.GradientSource"):
        jaxnn.make_train_step(net, optax.sgd(0.1), gradients=print)
    with pytest.raises(TypeError, match="must be hashable.*frozen=True"):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=8, gradients=Unhashable())
