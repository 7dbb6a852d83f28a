"""Strict numerics for every test (float64 available, no silent rank promotion) and shared fixtures."""

import itertools
import os
import signal
from pathlib import Path

# A shell starts a background job with SIGINT ignored, and Python then never turns Ctrl-C into
# KeyboardInterrupt: the tests of what an interrupt does would fail for the wrong reason. Python's own
# handler again (and, through exec, the default for the processes the tests start).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Compiling XLA programs is most of the suite's time, and the same programs compile in both xdist
# workers, in the examples' subprocesses and again on the next run: JAX's persistent compilation
# cache (keyed on the program, the compile options and the jax version) compiles each once.
# Exported before jax is imported, so that the subprocesses the tests start inherit it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax
import pytest
from hypothesis import Phase, settings

# Before anything imports jaxnn, so that every array it makes is made under these settings.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# JAXNN_TEST_PRECISION=highest (benchmarks/accelerator.py sets it on a GPU or TPU): float32 matrix
# products in full float32, not the accelerator's default (TF32 on a GPU, bfloat16 passes on a
# TPU), which is too coarse for the float32 tolerances of the tests. Exported as
# JAX_DEFAULT_MATMUL_PRECISION, which jax reads, so the examples and workers tests start agree.
if os.environ.get("JAXNN_TEST_PRECISION"):
    jax.config.update("jax_default_matmul_precision", os.environ["JAXNN_TEST_PRECISION"])
    os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = os.environ["JAXNN_TEST_PRECISION"]

from tests.helpers import random_problem  # noqa: E402

# A script the multi-process test launches, not a test module (--doctest-modules would import it).
collect_ignore = ["training/multiprocess_worker.py"]

# CI draws the same examples on every run, so a result never depends on luck.
settings.register_profile("ci", derandomize=True, database=None)
# Mutation testing (tools/mutation.sh) reruns the tests hundreds of times: a few examples each, the same ones,
# and no shrinking (a failing example is all it needs; shrinking one compiles dozens of new shapes).
settings.register_profile("mutation", max_examples=5, derandomize=True, database=None, deadline=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], report_multiple_bugs=False)
if os.environ.get("CI"):
    settings.load_profile("ci")
if os.environ.get("JAXNN_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["JAXNN_HYPOTHESIS_PROFILE"])


def pytest_configure(config):
    """``-m "not slow"`` is the quick tier: there hypothesis tests draw at most a few examples each
    (``tests.helpers.examples``); the full suite draws them all."""
    if config.getoption("markexpr", "").replace(" ", "") == "notslow":
        os.environ["JAXNN_QUICK_TIER"] = "1"


@pytest.fixture
def getkey():
    """``getkey()`` returns ``jax.random.key(0)``, then ``key(1)``, ...: fresh keys, the same on every run."""
    seeds = itertools.count()
    return lambda: jax.random.key(next(seeds))


@pytest.fixture(scope="session")
def make_problem():
    """``make_problem(sizes, acts, batch, seed=0, **options)`` gives ``(net, params, x, t)``.

    A random network with normal biases, inputs and targets; the options
    (``loss``, ``labels``, ``target_scale``) are those of
    :func:`tests.helpers.random_problem`, which hypothesis tests call directly.
    """

    def make(sizes, acts, batch, seed=0, **options):
        return random_problem(sizes, acts, batch, seed, **options)

    return make
