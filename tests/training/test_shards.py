"""Shuffling per shard of rows: the documented order, its checks, and no data moved between devices."""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

import jaxnn

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _problem(n=70):
    net = jaxnn.Network.from_sizes((6, 8, 3), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    t = rng.integers(0, 3, n).astype(np.int32)
    return net, net.init(jax.random.key(0), dtype=np.float32), x, t


def _documented_order(key, epoch, n, shards, batch):
    """The rows epoch ``epoch`` trains on, in order, written out from fit's docstring."""
    m, per_step = n // shards, batch // shards
    local = [np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, epoch), s), m))
             for s in range(shards)]
    full = m // per_step
    steps = [np.concatenate([s * m + local[s][k * per_step:(k + 1) * per_step] for s in range(shards)])
             for k in range(full)]
    rest = [s * m + local[s][full * per_step:] for s in range(shards)]
    return np.concatenate(steps + rest)


@pytest.mark.slow
@pytest.mark.mutation
@pytest.mark.parametrize("shards", [2, 5])
def test_sharded_order_is_the_documented_one(shards):
    # 70 rows, batch 10: 7 full steps with shards 2 (5 rows from each shard) and 5 (2 from each);
    # batch 12 with 2 shards: 5 full steps and a short last one of 10 rows, 5 from each shard.
    net, params, x, t = _problem()
    key = jax.random.key(7)
    for batch in (10, 12) if shards == 2 else (10,):
        state = params
        for epoch in range(2):  # one epoch at a time: the same minibatches given in order, unshuffled
            order = _documented_order(key, epoch, len(x), shards, batch)
            assert sorted(order.tolist()) == list(range(len(x)))
            kw = dict(optimizer=optax.sgd(0.1), batch_size=batch, epochs=1)
            shuffled, h = jaxnn.fit(net, state, x, t, key=key, shards=shards, **kw)
            stored, h_stored = jaxnn.fit(net, state, x[order], t[order], **kw)
            for a, b in zip(jax.tree.leaves(shuffled.params), jax.tree.leaves(stored.params)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            np.testing.assert_array_equal(h["loss"], h_stored["loss"])
            state = shuffled


@pytest.mark.slow
def test_one_shard_is_the_global_order():
    net, params, x, t = _problem()
    kw = dict(optimizer=optax.sgd(0.1), batch_size=10, epochs=2, key=jax.random.key(1))
    default, _ = jaxnn.fit(net, params, x, t, **kw)
    one, _ = jaxnn.fit(net, params, x, t, shards=1, **kw)
    other, _ = jaxnn.fit(net, params, x, t, shards=2, **kw)
    for a, b in zip(jax.tree.leaves(default.params), jax.tree.leaves(one.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(default.params), jax.tree.leaves(other.params)))


@pytest.mark.parametrize("shards, match", [(3, "shards must divide the number of examples and batch_size"),
                                           (4, "shards must divide the number of examples and batch_size"),
                                           (0, "shards")])
def test_shards_that_do_not_divide_are_refused(shards, match):
    net, params, x, t = _problem(72)  # 72 rows, batch 10: 3 divides the rows, not the batch; 4 neither
    with pytest.raises(ValueError, match=match):
        jaxnn.fit(net, params, x, t, optimizer=optax.sgd(0.1), batch_size=10, key=jax.random.key(0), shards=shards)


HLO_SCRIPT = textwrap.dedent(
    """
    import glob, sys, jax, numpy as np, optax, pytest, jaxnn
    assert len(jax.devices()) == 2, jax.devices()
    net = jaxnn.Network.from_sizes((20, 32, 4), [jaxnn.Tanh(), jaxnn.Identity()], jaxnn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 20)).astype(np.float32); t = rng.integers(0, 4, 1024).astype(np.int32)
    params = net.init(jax.random.key(0), dtype=np.float32)
    kw = dict(optimizer=optax.sgd(0.1), batch_size=64, epochs=2, key=jax.random.key(1))
    jaxnn.fit(net, params, x, t, devices=jax.devices(), **kw)
    # over a mesh the shards are the data axis' blocks; another count is refused by name
    with pytest.raises(ValueError, match="shards must be 2 or None; got 4"):
        jaxnn.fit(net, params, x, t, devices=jax.devices(), shards=4, **kw)
    with pytest.raises(ValueError, match="rows are replicated"):  # 2 devices do not divide 1023 rows
        jaxnn.fit(net, params, x[:1023], t[:1023], devices=jax.devices(), shards=2, **kw)
    print("ok")
    """
)

COLLECTIVE = re.compile(r"=\s*(.*?)\s(all-gather|all-reduce|all-to-all|collective-permute)(-start)?\(")


@pytest.mark.slow
@pytest.mark.mutation
def test_a_shuffled_epoch_over_two_devices_moves_no_rows_between_them(tmp_path):
    # The compiled programs, after XLA's optimisations, as text: every collective and what it carries.
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=f"--xla_force_host_platform_device_count=2 --xla_dump_to={tmp_path} "
                         "--xla_dump_hlo_as_text --xla_dump_hlo_pass_re=^$")
    out = subprocess.run([sys.executable, "-c", HLO_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr
    epochs = list(tmp_path.glob("*_run_steps*after_optimizations.txt"))
    assert epochs, sorted(p.name for p in tmp_path.iterdir())[:20]
    carried = []
    for path in tmp_path.glob("*after_optimizations.txt"):
        for line in path.read_text().splitlines():
            match = COLLECTIVE.search(line)
            if match:
                carried.append((path.name, match.group(1)))
    # The step's gradient all-reduce is there (the parse sees collectives) ...
    assert any("f32[32,20]" in shapes for name, shapes in carried if "_run_steps" in name), carried
    # ... and nothing carries rows: no array with the data set's 1024 rows, a shard's 512 or a minibatch's 64.
    rows = [c for c in carried if re.search(r"\[(1024|512|64)[,\]]", c[1])]
    assert not rows, rows
