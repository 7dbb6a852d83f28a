"""The rules through the whole workflow: checkpoints and resuming, vmap over seeds, a mesh of devices."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn.rules import DirectFeedbackAlignment, FeedbackAlignment, KolenPollack, SignSymmetry

from tests.helpers import assert_trees_close

ROOT = Path(__file__).resolve().parents[2]
# FA and KP (whose state moves) in the quick tier; the other two only add compiles.
RULES = [FeedbackAlignment(), KolenPollack(decay=0.01), pytest.param(SignSymmetry(), marks=pytest.mark.slow),
         pytest.param(DirectFeedbackAlignment(), marks=pytest.mark.slow)]


@pytest.fixture
def problem(getkey):
    net = jaxnn.Network.from_sizes((5, 8, 6, 3), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    x = jax.random.normal(getkey(), (64, 5))
    return net, net.init(getkey()), x, jnp.argmax(x[:, :3], axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES, ids=["FA", "KP", "SS", "DFA"])
def test_a_checkpointed_run_resumes_bitwise(rule, problem, tmp_path, getkey):
    net, params, x, t = problem
    path = tmp_path / "run.npz"
    kwargs = dict(optimizer=optax.adam(1e-2), batch_size=16, key=getkey(), gradients=rule)
    whole, whole_history = jaxnn.fit(net, params, x, t, epochs=5, **kwargs)
    jaxnn.fit(net, params, x, t, epochs=3, callbacks=[jaxnn.Checkpoint(path, every=2)], **kwargs)
    like = jaxnn.TrainState(params, optax.adam(1e-2).init(params), 0, rule.init(getkey(), net, params))
    saved = jaxnn.load(path, like)  # the rule's state is saved as grad_state
    assert int(saved.epoch) == 3
    resumed, history = jaxnn.fit(net, saved, x, t, epochs=2, **kwargs)
    assert history["epoch"].tolist() == [4, 5]
    np.testing.assert_array_equal(history["loss"], whole_history["loss"][3:])
    assert_trees_close(resumed, whole, rtol=0, atol=0)
    if isinstance(rule, KolenPollack):  # its matrices moved, and were saved as they were
        assert not jnp.array_equal(resumed.grad_state[1], rule.init(kwargs["key"], net, params)[1])


@pytest.mark.parametrize("rule", [FeedbackAlignment(), KolenPollack(decay=0.01)], ids=["FA", "KP"])
def test_vmap_over_seeds_of_the_rule_and_over_a_training_step(rule, problem, getkey):
    net, params, x, t = problem
    optimizer = optax.sgd(0.1)
    step = jaxnn.make_train_step(net, optimizer, gradients=rule)
    keys = jax.random.split(getkey(), 3)
    states = jax.vmap(rule.init, in_axes=(0, None, None))(keys, net, params)
    opt_state = optimizer.init(params)
    new_params, _, losses, new_states = jax.vmap(step, in_axes=(None, None, None, None, 0))(
        params, opt_state, x, t, states)
    assert losses.shape == (3,) and new_params[0][0].shape == (3, 8, 5)
    for k in range(3):  # each seed's slice is that seed's own step
        one = step(params, opt_state, x, t, rule.init(keys[k], net, params))
        assert_trees_close(jax.tree.map(lambda a: a[k], (new_params, losses, new_states)),
                           (one[0], one[2], one[3]), rtol=1e-12, atol=1e-14)


MESH_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax, jaxnn
    assert len(jax.devices()) == 2
    net = jaxnn.Network.from_sizes((20, 32, 16, 4), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 20)).astype(np.float32); t = rng.integers(0, 4, 256).astype(np.int32)
    params = net.init(jax.random.key(0), dtype=np.float32)
    for rule in (jaxnn.rules.FeedbackAlignment(), jaxnn.rules.KolenPollack(decay=0.01)):
        kw = dict(optimizer=optax.adam(1e-2), batch_size=32, epochs=3, key=jax.random.key(3), gradients=rule)
        logs = lambda: [jaxnn.AlignmentMonitor(net, x[:64], t[:64], every=1)]
        one, h1 = jaxnn.fit(net, params, x, t, shards=2, callbacks=logs(), **kw)  # the same minibatches
        two, h2 = jaxnn.fit(net, params, x, t, devices=jax.devices(), callbacks=logs(), **kw)
        diff = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(two), jax.tree.leaves(one)))
        assert diff <= 1e-5, (rule, diff)
        for name in h1:
            np.testing.assert_allclose(h2[name], h1[name], rtol=1e-4, atol=1e-3, err_msg=name)
        assert not np.isnan(h2["align_update/0"]).any()
        print(type(rule).__name__, diff)
    print("mesh ok")
    """
)


@pytest.mark.slow  # a fresh interpreter with two forced CPU devices
def test_rules_on_a_mesh_of_two_devices_equal_one_device():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run([sys.executable, "-c", MESH_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mesh ok" in result.stdout
