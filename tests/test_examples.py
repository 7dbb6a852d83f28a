"""Every example runs (with small flags where the default is slow) and prints the result it should.

Each script runs in a subprocess with this checkout first on PYTHONPATH, and
the numbers it prints are parsed and checked, so an example that rots fails.
"""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # every example in a fresh interpreter

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def run(script, *args):
    """Run ``examples/<script>`` with ``args`` and return its standard output."""
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))  # this checkout's jaxnn first
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def number(pattern, text):
    """The number captured by ``pattern`` in ``text`` (a percentage as a fraction)."""
    match = re.search(pattern, text)
    assert match, f"no match for {pattern!r} in:\n{text}"
    value = match.group(1)
    return float(value[:-1]) / 100 if value.endswith("%") else float(value)


NUM = r"([-+0-9.e]+%?)"


def test_zeros():
    out = run("zeros.py")
    before = number(rf"before training: {NUM}", out)
    after = number(rf"after training: {NUM}", out)
    assert after < before / 10


def test_quadrants(tmp_path):
    out = run("quadrants.py", "--restarts", 8, "--plot", tmp_path / "q.png")
    assert 0.3 < number(rf"accuracy before training: {NUM}", out) < 0.7
    assert number(rf"accuracy after training: {NUM}", out) > 0.9
    assert number(r"restarts above 90% on the test points: (\d+) of 8", out) >= 1
    assert (tmp_path / "q.png").stat().st_size > 10_000


def test_jumping_back():
    out = run("jumping_back.py")
    assert number(rf"loss before training: {NUM}", out) == pytest.approx(0.10596, rel=1e-4)
    # The article's NumPy loop, run for 10,000 epochs in float64, ends at 2.8128e-07.
    assert number(rf"loss after training: {NUM}", out) == pytest.approx(2.8128e-07, rel=1e-4)
    diffs = [float(d) for d in re.findall(r"^\s+\d\s+\S+\s+\S+\s+(\S+)$", out, re.M)]
    assert len(diffs) == 3 and max(diffs) < 1e-15
    pairs = re.findall(r"^\s+(0\.\d{4})\s+(0\.\d{4})$", out, re.M)
    assert len(pairs) == 4 and all(abs(float(y) - float(y_hat)) < 0.002 for y, y_hat in pairs)


def test_two_layer():
    out = run("two_layer.py", "--epochs", 40)
    before = number(rf"test MSE before training: {NUM}", out)
    after = number(rf"test MSE after training: {NUM}", out)
    assert after < 0.7 * before
    assert number(rf"after training: \S+ \(R\^2 {NUM}\)", out) > 0.35


def table(out):
    """{configuration: (before, after)} from the digits table."""
    rows = re.findall(r"^(\S+\+\S+)\s+([0-9.]+)%\s+([0-9.]+)%", out, re.M)
    assert [name for name, *_ in rows] == ["leaky+mse", "sigmoid+mse", "sigmoid+xent", "linear+xent"]
    return {name: (float(b) / 100, float(a) / 100) for name, b, a in rows}


def test_digits_8x8(tmp_path):
    out = run("digits.py", "--epochs", 15, "--plot", tmp_path / "d.png")
    results = table(out)
    assert all(before < 0.25 for before, _ in results.values())
    assert max(after for _, after in results.values()) > 0.9
    assert (tmp_path / "d.png").stat().st_size > 10_000


def idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_digits_from_idx_files(tmp_path):
    # Real digits written as IDX files under MNIST's names: the --mnist path end to end.
    from sklearn.datasets import load_digits

    digits = load_digits()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(digits.images * 15)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx(digits.target))
    out = run("digits.py", "--mnist", tmp_path, "--epochs", 5)
    assert "split here" in out and "64-16-16-10" in out
    assert max(after for _, after in table(out).values()) > 0.85


def test_breast_cancer():
    out = run("breast_cancer.py")
    assert number(rf"test accuracy before training: {NUM}", out) < 0.8
    after = number(rf"after training: {NUM}\n", out.split("test accuracy")[1])
    assert after > 0.93
    assert after >= number(rf"LogisticRegression {NUM}", out) - 0.03
    assert number(rf"test loss .* after training: {NUM}", out) < 0.25


def test_teacher_student():
    out = run("teacher_student.py", "--epochs", 5, "--lrs", 0.01, 1.0)
    teacher = number(rf"teacher .*: test accuracy {NUM}", out)
    rows = re.findall(r"^\s+(\S+)\s+([0-9.]+)%\s+([0-9.]+)%\s+([0-9.]+)%$", out, re.M)
    assert teacher > 0.9 and [lr for lr, *_ in rows] == ["0.01", "1"]
    assert all(float(t) / 100 == pytest.approx(teacher) for _, _, t, _ in rows)
    students = [float(s) / 100 for _, s, _, _ in rows]
    assert students[1] > 0.85 and students[1] > students[0]  # the larger rate learns faster


@pytest.mark.parametrize(
    "args",
    [
        [],
        "--sizes 6 4 3 --activations tanh softmax --loss cross_entropy --batch 1".split(),
    ],
)
def test_compare_gradients(args):
    out = run("compare_gradients.py", *args)
    assert number(rf"manual vs jax.grad: {NUM}", out) < 1e-14
    assert number(rf"manual vs finite differences: {NUM}", out) < 1e-8


def test_per_example_gradients():
    out = run("per_example_gradients.py", "--steps", 300, "--batch", 16)
    for pattern in ["per-example gradients: ", "clipped mean: ", "on the batch: "]:
        assert number(pattern + NUM, out) < 1e-5
    assert number(rf"after DP-SGD training: {NUM}", out) > 0.5


def test_research_run(tmp_path):
    out = run("research_run.py", "--epochs", 40, "--patience", 3, "--checkpoint", tmp_path / "run.npz",
              "--plot", tmp_path / "curves.png")
    assert number(rf"test accuracy of the best epoch's state: {NUM}", out) > 0.85
    assert "bitwise equal to the uninterrupted run" in out
    assert (tmp_path / "run.npz").exists() and (tmp_path / "curves.png").stat().st_size > 10_000


@pytest.mark.slow  # five rules compiled in a fresh interpreter: about 30 s on 2 shared cores
def test_learning_rules(tmp_path):
    out = run("learning_rules.py", "--hidden", 2, "--epochs", 6, "--every", 3, "--plot", tmp_path / "rules.png")
    row = r"^(\S+(?:, W=0)?)\s+([0-9.]+)%((?:\s+(?:[0-9.]+|nan))+)\s+[0-9.]+$"  # name, accuracy, angles, seconds
    rows = {m[0]: m[1:] for m in re.findall(row, out, re.M)}
    assert list(rows) == ["backprop", "FA", "SS", "KP", "DFA", "DFA, W=0"]
    accuracy = {name: float(acc) / 100 for name, (acc, _) in rows.items()}
    angles = {name: [float(a) for a in rest.split()] for name, (_, rest) in rows.items()}
    assert accuracy["backprop"] > 0.85 and all(acc > 0.6 for acc in accuracy.values()), accuracy
    assert all(a < 1e-3 for a in angles["backprop"][:2]) and all(np.isnan(angles["backprop"][2:]))
    assert all(a < 90 for a in angles["FA"][:2])  # upd0, upd1: the hidden updates still go downhill
    assert np.isnan(angles["DFA"][2]) and angles["DFA"][3] < 90  # fb1 undefined for DFA, fb2 its last matrix
    assert (tmp_path / "rules.png").stat().st_size > 10_000


def test_data_parallel_on_eight_cpu_devices(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    out = run("data_parallel.py", "--examples", 2048, "--epochs", 2)
    assert "8 device(s)" in out
    assert number(rf"mesh vs one device: {NUM}", out) < 1e-5
