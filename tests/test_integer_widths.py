"""Integer labels of every width are read as given, before JAX casts them, in every entry point.

With 64-bit JAX off, JAX stores int64 as int32 and uint64 as uint32 and wraps
what does not fit: a label 2**32 would train as 0. Such values are refused,
naming the value as given and its row; labels out of the loss's range are
reported with their true value, whatever the width. The suite runs with
64-bit JAX on (conftest.py); the cases with it off switch it off around the
call with JAX's own context manager.
"""

import re

import jax
import numpy as np
import optax
import pytest

import jaxnn

WIDTHS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
ROWS, BAD_ROW = 8, 5


def x64(on: bool):
    """JAX's 64-bit mode switched ``on`` or off within a ``with`` block (jax 0.6 to 0.10)."""
    if hasattr(jax, "enable_x64"):  # jax >= 0.7
        return jax.enable_x64(on)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if on else disable_x64()


def _problem():
    net = jaxnn.Network.from_sizes((3, 2), jaxnn.Tanh(), jaxnn.CrossEntropyLoss())
    params = net.init(jax.random.key(0), dtype=np.float32)
    x = np.random.default_rng(0).normal(size=(ROWS, 3)).astype(np.float32)
    return net, params, x


def _sgd():
    return optax.sgd(0.1)


# Every public function that reads labels: name -> call(net, params, x, t). ``values`` says whether it
# checks labels' range (the compiled step does not: values are unknown while it traces).
ENTRIES = {
    "net.loss": (lambda n, p, x, t: n.loss(p, x, t), True),
    "net.backprop": (lambda n, p, x, t: n.backprop(p, x, t), True),
    "net.check_inputs": (lambda n, p, x, t: n.check_inputs(p, x, t), True),
    "fit": (lambda n, p, x, t: jaxnn.fit(n, p, x, t, optimizer=_sgd(), batch_size=4), True),
    "fit streamed": (lambda n, p, x, t: jaxnn.fit(n, p, x, t, optimizer=_sgd(), batch_size=4,
                                                  stream=jaxnn.HostStream()), True),
    "fit check_data=False": (lambda n, p, x, t: jaxnn.fit(n, p, x, t, optimizer=_sgd(), batch_size=4,
                                                          check_data=False), False),
    "fit streamed check_data=False": (lambda n, p, x, t: jaxnn.fit(n, p, x, t, optimizer=_sgd(), batch_size=4,
                                                                   stream=jaxnn.HostStream(), check_data=False),
                                      False),
    "fit validation": (lambda n, p, x, t: jaxnn.fit(n, p, x, np.zeros(ROWS, np.int32), optimizer=_sgd(),
                                                    batch_size=4, epochs=0, validation=(x, t)), True),
    "evaluate": (lambda n, p, x, t: jaxnn.evaluate(n, p, x, t), True),
    "evaluate check=False": (lambda n, p, x, t: jaxnn.evaluate(n, p, x, t, check=False), False),
    "make_train_step": (lambda n, p, x, t: jaxnn.make_train_step(n, _sgd())(p, _sgd().init(p), x, t), False),
    "check_gradients": (lambda n, p, x, t: jaxnn.check_gradients(n, p, x, t, fd_entries=0), True),
    "per_example_grads": (lambda n, p, x, t: jaxnn.per_example_grads(n, p, x, t), True),
    "per_example_grad_norms": (lambda n, p, x, t: jaxnn.per_example_grad_norms(n, p, x, t), True),
    "clipped_mean_grad": (lambda n, p, x, t: jaxnn.clipped_mean_grad(n, p, x, t, 1.0), True),
}
NAMES = {"fit validation": "validation targets"}


def _labels(width, value):
    t = np.zeros(ROWS, width)
    t[BAD_ROW] = value
    return t


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("width, value", [(np.int64, 2**32), (np.int64, 2**31), (np.int64, -(2**31) - 1),
                                          (np.uint64, 2**32), (list, 2**32)])
def test_a_label_jax_would_wrap_is_refused_with_its_value_as_given(entry, width, value):
    call, _ = ENTRIES[entry]
    with x64(False):
        net, params, x = _problem()
        t = _labels(np.int64, value).tolist() if width is list else _labels(width, value)
        if width is list and entry.startswith("fit streamed"):
            t = np.asarray(t)  # streaming takes NumPy arrays
        target = "uint32" if width is np.uint64 else "int32"
        name = NAMES.get(entry, "t")
        with pytest.raises(ValueError, match=re.escape(f"{name} holds {value} at row {BAD_ROW}, which does not "
                                                       f"fit {target} (64-bit JAX is off")):
            call(net, params, x, t)


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(e for e, (_, values) in ENTRIES.items() if values))
@pytest.mark.parametrize("on", [False, True], ids=["x64 off", "x64 on"])
@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: np.dtype(w).name)
def test_a_label_out_of_range_is_reported_with_its_true_value(entry, on, width):
    call, _ = ENTRIES[entry]
    narrowed = not on and np.dtype(width).itemsize == 8
    value = int(np.iinfo(np.int32 if width is np.int64 else np.uint32).max) if narrowed else int(np.iinfo(width).max)
    with x64(on):
        net, params, x = _problem()
        with pytest.raises(ValueError, match=f"first bad label {value} at row {BAD_ROW}"):
            call(net, params, x, _labels(width, value))


@pytest.mark.parametrize("width", [np.int64, np.uint64], ids=["int64", "uint64"])
def test_64_bit_labels_beyond_32_bits_are_kept_with_x64_on(width):
    with x64(True):
        net, params, x = _problem()
        with pytest.raises(ValueError, match=f"first bad label {2**40} at row {BAD_ROW}"):
            net.loss(params, x, _labels(width, 2**40))
        step = jaxnn.make_train_step(net, _sgd())  # accepted as given: nothing narrows, values are not read
        step(params, _sgd().init(params), x, _labels(width, 2**40))


@pytest.mark.slow
@pytest.mark.parametrize("on", [False, True], ids=["x64 off", "x64 on"])
@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: np.dtype(w).name)
def test_valid_labels_of_every_width_give_the_same_loss_and_step(on, width):
    with x64(on):
        net, params, x = _problem()
        t = np.arange(ROWS) % 2
        assert net.loss(params, x, t.astype(width)) == net.loss(params, x, t.astype(np.int32))
        step = jaxnn.make_train_step(net, _sgd())
        a = step(params, _sgd().init(params), x, t.astype(width))
        b = step(params, _sgd().init(params), x, t.astype(np.int32))
        assert all(bool((u == v).all()) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_integer_inputs_jax_would_wrap_are_refused_too():
    with x64(False):
        net, params, _ = _problem()
        x = np.zeros((ROWS, 3), np.int64)
        x[2, 1] = 2**40
        with pytest.raises(ValueError, match=re.escape(f"x holds {2**40} at index (2, 1), which does not fit int32")):
            net.forward(params, x)


def test_the_context_switches_x64_off_and_back():
    assert jax.config.jax_enable_x64
    with x64(False):
        assert not jax.config.jax_enable_x64
        assert np.dtype(jax.numpy.asarray(np.int64(1)).dtype) == np.int32
    assert jax.config.jax_enable_x64
