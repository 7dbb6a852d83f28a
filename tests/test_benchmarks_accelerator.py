"""benchmarks/accelerator.py: platform detection, the plan, a part's outcome and the results file, with fakes."""

import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/ is a folder of scripts, not a package: the script is loaded from its file.
_spec = importlib.util.spec_from_file_location("benchmarks_accelerator", ROOT / "benchmarks" / "accelerator.py")
accelerator = sys.modules.setdefault("benchmarks_accelerator", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(accelerator)


def fake_devices(platform, kind, count=1):
    return [SimpleNamespace(platform=platform, device_kind=kind, id=i) for i in range(count)]


def test_a_gpu_is_an_accelerator_and_names_the_results_file():
    device = accelerator.describe(fake_devices("gpu", "NVIDIA H200", 2))
    assert device == accelerator.Device("gpu", "NVIDIA H200", 2) and device.accelerator
    path = accelerator.default_path(device, "AMD EPYC", 16)
    assert path == ROOT / "benchmarks" / "results" / "accelerator-gpu-nvidia-h200.txt"
    assert accelerator.describe(fake_devices("tpu", "TPU v5 lite")).accelerator


def test_a_cpu_runs_the_cpu_rows_only():
    device = accelerator.describe(fake_devices("cpu", "cpu"))
    assert not device.accelerator
    assert accelerator.default_path(device, "AMD EPYC 9R45", 2).name == "accelerator-cpu-amd-epyc-9r45-2-cores.txt"
    parts = accelerator.plan(device, quick=False, skip_tests=True, cores=2)
    assert [p.name for p in parts] == ["run.py sections 1 and 3 (CPU rows, quick)"]
    assert parts[0].argv[-3:] == ("--quick", "--sections", "1,3")


def test_an_accelerator_runs_the_tests_at_full_precision_then_every_benchmark():
    parts = accelerator.plan(accelerator.Device("gpu", "NVIDIA H200", 1), quick=True, skip_tests=False, cores=16)
    tests, *benchmarks = parts
    assert ("JAXNN_TEST_PRECISION", "highest") in tests.env
    assert tests.argv[tests.argv.index("-m", 2) + 1] == "not slow" and tests.argv[tests.argv.index("-n") + 1] == "2"
    assert "--quick" in benchmarks[0].argv and len([p for p in benchmarks if "first_call" in p.name]) == 4
    assert benchmarks[-1].name == "per_example_clipping.py"
    # A TPU is opened by one process at a time: one test process.
    tpu = accelerator.plan(accelerator.Device("tpu", "TPU v4", 4), quick=False, skip_tests=False, cores=16)
    assert tpu[0].argv[tpu[0].argv.index("-n") + 1] == "0" and "--quick" not in tpu[1].argv


def test_a_part_records_its_output_its_failure_and_its_timeout():
    env = accelerator.child_environment(dict(os.environ))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    failing = accelerator.Part("fails", (sys.executable, "-c", "print('measured'); raise SystemExit(3)"), 30)
    outcome = accelerator.run_part(failing, env)
    assert outcome.returncode == 3 and not outcome.ok and outcome.output == "measured\n"
    assert outcome.status == "FAILED (exit status 3)"
    slow = accelerator.Part("slow", (sys.executable, "-c", "import time; time.sleep(30)"), 0.5)
    outcome = accelerator.run_part(slow, env)
    assert outcome.returncode is None and outcome.status == "TIMED OUT after 0.5 s" and outcome.seconds < 10


def test_the_results_file_has_the_summary_then_every_output():
    tests = accelerator.Part("tests: quick tier", (sys.executable, "-m", "pytest"), 60,
                             (("JAXNN_TEST_PRECISION", "highest"),))
    bench = accelerator.Part("run.py sections 1-3", (sys.executable, str(ROOT / "benchmarks" / "run.py")), 60)
    later = accelerator.Part("per_example_clipping.py", (sys.executable,), 60)
    outcomes = [accelerator.Outcome(tests, 1, 12.5, "..F\n==== 1 failed, 2 passed in 3.10s ====\n"),
                accelerator.Outcome(bench, 0, 40.0, "case | median\n")]
    text = accelerator.report(["devices: 1 x NVIDIA H200 (gpu)"], outcomes, [later])
    summary = text.split("\n\n")[1].splitlines()
    assert summary == ["summary:",
                       "  tests: quick tier: FAILED (exit status 1), 12.5 s; 1 failed, 2 passed in 3.10s",
                       "  run.py sections 1-3: ok, 40.0 s",
                       "  per_example_clipping.py: not run yet"]
    assert "$ JAXNN_TEST_PRECISION=highest python -m pytest" in text
    assert "$ python benchmarks/run.py\n" in text and text.endswith("case | median\n")
    assert accelerator.pytest_summary("crashed\n") == "no pytest summary line in the output"


def test_the_header_names_the_machine_and_the_versions():
    versions = {"python": "3.11.7", "jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8", "numpy": "2.4.6"}
    head = accelerator.header(accelerator.Device("cpu", "cpu", 2), {"versions": versions}, "AMD EPYC", 2, "cmd")
    text = "\n".join(head)
    assert accelerator.NO_ACCELERATOR in text and "host: AMD EPYC, 2 cores" in text
    assert "versions: python 3.11.7, jax 0.10.2, jaxlib 0.10.2, optax 0.2.8, numpy 2.4.6" in text


@pytest.mark.skipif(not os.environ.get("JAXNN_TEST_PRECISION"), reason="JAXNN_TEST_PRECISION is not set")
def test_the_precision_setting_reaches_jax_and_subprocesses():
    precision = os.environ["JAXNN_TEST_PRECISION"]
    assert jax.config.jax_default_matmul_precision == precision
    assert os.environ["JAX_DEFAULT_MATMUL_PRECISION"] == precision
