"""One command for a GPU or TPU: the quick test tier, the benchmarks, and one results file.

    python benchmarks/accelerator.py                 # tests, then every benchmark
    python benchmarks/accelerator.py --quick         # fewer steps and repeats
    python benchmarks/accelerator.py --skip-tests --out /tmp/gpu.txt

On a GPU or TPU it runs, each in its own process under a time limit:
(1) the quick test tier, ``pytest -m "not slow"``, with
``JAXNN_TEST_PRECISION=highest`` so that float32 matrix products are computed
at full float32 precision (a GPU's default is TF32, a TPU's bfloat16 passes,
too coarse for the tests' float32 tolerances); (2) ``benchmarks/run.py``
sections 1-3, ``benchmarks/first_call.py`` for each network and gradient
(a fresh process each: compile included) and
``benchmarks/per_example_clipping.py``. It writes the machine, the versions,
the test summary and every output to one file, by default
``benchmarks/results/accelerator-<platform>-<device kind>.txt``, rewritten
after each part so an interrupted run keeps what it measured.

Without a GPU or TPU it says so and runs the CPU rows only (run.py sections 1
and 3, quick), so the command is useful anywhere. A failed test, a crashed or
timed-out benchmark is recorded in the file and makes the exit status 1; the
later parts still run.

jax is only imported in the child processes: a TPU can be opened by one
process at a time, and a GPU's memory is left to the benchmarks (children get
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless it is set, so that two test
workers or a benchmark and its fresh-process child can share one GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
ACCELERATORS = ("gpu", "tpu")
NO_ACCELERATOR = "no GPU or TPU found: running the CPU rows only"

# Run in a child process: what the machine and jax say about themselves, as one line of JSON.
PROBE = """
import json, platform, jax, jaxlib, numpy
try:
    import optax; optax_version = optax.__version__
except ImportError:
    optax_version = "not installed"
devices = jax.devices()
try:
    environment = jax.print_environment_info(return_string=True)
except Exception as err:
    environment = f"jax.print_environment_info failed: {err!r}"
print(json.dumps({
    "platform": devices[0].platform, "device_kind": devices[0].device_kind, "count": len(devices),
    "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                 "optax": optax_version, "numpy": numpy.__version__},
    "environment": environment,
}))
"""


@dataclasses.dataclass(frozen=True)
class Device:
    """What jax runs on: ``platform`` ("gpu", "tpu", "cpu"), ``kind`` (``device_kind``), ``count``."""

    platform: str
    kind: str
    count: int

    @property
    def accelerator(self) -> bool:
        return self.platform in ACCELERATORS


def describe(devices) -> Device:
    """The :class:`Device` of a list of jax devices (anything with ``.platform`` and ``.device_kind``)."""
    first = devices[0]
    return Device(first.platform, first.device_kind, len(devices))


@dataclasses.dataclass(frozen=True)
class Part:
    """One command of the run: a name, its argv, a time limit in seconds, extra environment."""

    name: str
    argv: tuple[str, ...]
    timeout: float
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a part ended: ``returncode`` None when it ran past its time limit."""

    part: Part
    returncode: int | None
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def status(self) -> str:
        if self.returncode is None:
            return f"TIMED OUT after {self.part.timeout:g} s"
        return "ok" if self.ok else f"FAILED (exit status {self.returncode})"


def plan(device: Device, quick: bool, skip_tests: bool, cores: int | None = None) -> list[Part]:
    """The parts to run on ``device``, in order."""
    py = sys.executable
    cores = cores or os.cpu_count() or 1
    parts = []
    if not skip_tests:
        # One test process per TPU (it cannot be shared); two workers elsewhere where the cores allow.
        workers = "0" if device.platform == "tpu" or cores < 4 else "2"
        parts.append(Part("tests: quick tier", (py, "-m", "pytest", "-q", "-m", "not slow", "-n", workers,
                                                "-p", "no:cacheprovider", "-rfE"),
                          3600, (("JAXNN_TEST_PRECISION", "highest"),)))
    quick_flag = ("--quick",) if quick else ()
    if not device.accelerator:
        parts.append(Part("run.py sections 1 and 3 (CPU rows, quick)",
                          (py, str(HERE / "run.py"), "--quick", "--sections", "1,3"), 900))
        return parts
    parts.append(Part("run.py sections 1-3", (py, str(HERE / "run.py"), *quick_flag, "--sections", "1,2,3"), 1800))
    for problem in ("quadrants", "mnist"):
        for gradients in ("manual", "autodiff"):
            parts.append(Part(f"first_call.py {problem} {gradients} (fresh process, compile included)",
                              (py, str(HERE / "first_call.py"), problem, gradients), 600))
    parts.append(Part("per_example_clipping.py", (py, str(HERE / "per_example_clipping.py"),
                                                  "--repeats", "10" if quick else "50"), 600))
    return parts


def child_environment(base: dict[str, str]) -> dict[str, str]:
    """``base`` with this checkout first on PYTHONPATH and GPU memory allocated as needed."""
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def run_part(part: Part, env: dict[str, str], echo=None) -> Outcome:
    """Run ``part`` in its own process group from the repository root; its output is echoed as it comes."""
    env = dict(env)
    for key, value in part.env:
        env.setdefault(key, value)
    lines: list[str] = []
    start = time.perf_counter()
    with subprocess.Popen(part.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", start_new_session=True) as proc:

        def read():
            for line in proc.stdout:
                lines.append(line)
                if echo is not None:
                    echo(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=part.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: benchmarks start processes of their own
            proc.wait()
            returncode = None
        reader.join(timeout=10)
    return Outcome(part, returncode, time.perf_counter() - start, "".join(lines))


def pytest_summary(output: str) -> str:
    """pytest's last summary line ("12 passed, 1 skipped in 3.2s"), or a note that there was none."""
    for line in reversed(output.splitlines()):
        text = line.strip("= ").strip()
        if re.search(r"\b(passed|failed|error|errors|skipped|no tests ran)\b", text) and " in " in text:
            return text
    return "no pytest summary line in the output"


def host_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_path(device: Device, cpu: str, cores: int) -> pathlib.Path:
    name = slug(device.kind) if device.accelerator else f"{slug(cpu)}-{cores}-cores"
    return HERE / "results" / f"accelerator-{device.platform}-{name}.txt"


def header(device: Device | None, probe: dict, cpu: str, cores: int, command: str) -> list[str]:
    """The machine and the versions, as the results file's first lines."""
    lines = [f"jaxnn benchmarks/accelerator.py, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"command: {command}"]
    if device is None:
        lines.append("jax did not start: see the probe below")
    elif device.accelerator:
        lines.append(f"devices: {device.count} x {device.kind} ({device.platform})")
    else:
        lines.append(f"devices: {device.count} x {device.kind} ({device.platform}); {NO_ACCELERATOR}")
    lines.append(f"host: {cpu}, {cores} cores, {platform.system()} {platform.release()}")
    versions = probe.get("versions", {})
    if versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        lines.append(f"jaxnn checkout: {commit or 'not a git checkout'}")
    except (OSError, subprocess.SubprocessError):
        pass
    env = child_environment(dict(os.environ))
    shown = {k: env[k] for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS") if k in env}
    lines.append("environment of every part: " + ", ".join(f"{k}={v!r}" for k, v in shown.items()))
    return lines


def report(head: list[str], outcomes: list[Outcome], pending: list[Part], environment: str = "") -> str:
    """The results file: the header, a summary of every part, then each part's whole output."""
    out = list(head) + ["", "summary:"]
    for o in outcomes:
        line = f"  {o.part.name}: {o.status}, {o.seconds:.1f} s"
        if o.part.name.startswith("tests"):
            line += f"; {pytest_summary(o.output)}"
        out.append(line)
    out += [f"  {p.name}: not run yet" for p in pending]
    for o in outcomes:
        env = "".join(f"{k}={v} " for k, v in o.part.env)
        argv = " ".join(_shown(a) for a in o.part.argv)
        out += ["", f"== {o.part.name} ==", f"$ {env}{argv}", f"{o.status}, {o.seconds:.1f} s", "",
                o.output.rstrip()]
    if environment:
        out += ["", "== jax.print_environment_info() ==", environment.rstrip()]
    return "\n".join(out) + "\n"


def _shown(arg: str) -> str:
    """An argument as typed from the repository root: paths relative, spaces quoted."""
    if arg == sys.executable:
        return "python"
    if arg.startswith(str(ROOT) + os.sep):
        arg = os.path.relpath(arg, ROOT)
    return repr(arg) if " " in arg else arg


def probe_jax(env: dict[str, str]) -> tuple[Device | None, dict, str]:
    """Start jax in a child process: its devices, the versions, and any error output."""
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    except subprocess.TimeoutExpired:
        return None, {}, "starting jax took more than 300 s"
    if out.returncode != 0:
        return None, {}, out.stdout + out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    return Device(info["platform"], info["device_kind"], info["count"]), info, ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats in the benchmarks")
    parser.add_argument("--out", type=pathlib.Path,
                        help="results file (default: benchmarks/results/accelerator-<platform>-<device kind>.txt)")
    parser.add_argument("--skip-tests", action="store_true", help="run the benchmarks only")
    args = parser.parse_args(argv)

    env = child_environment(dict(os.environ))
    cpu, cores = host_cpu(), os.cpu_count() or 1
    command = " ".join(["python benchmarks/accelerator.py", *(argv if argv is not None else sys.argv[1:])])
    device, info, error = probe_jax(env)
    head = header(device, info, cpu, cores, command)
    if device is None:
        path = args.out or HERE / "results" / "accelerator-unknown.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(head) + "\n\njax did not start:\n" + error)
        print(error, file=sys.stderr)
        print(f"jax did not start; wrote {path}", file=sys.stderr)
        return 1
    if not device.accelerator:
        print(NO_ACCELERATOR, flush=True)
    path = args.out or default_path(device, cpu, cores)
    path.parent.mkdir(parents=True, exist_ok=True)
    for line in head:
        print(line, flush=True)

    parts = plan(device, args.quick, args.skip_tests, cores)
    outcomes: list[Outcome] = []
    for i, part in enumerate(parts):
        print(f"\n== {part.name} ==", flush=True)
        outcomes.append(run_part(part, env, echo=lambda line: print(line, end="", flush=True)))
        print(f"-- {part.name}: {outcomes[-1].status}, {outcomes[-1].seconds:.1f} s", flush=True)
        path.write_text(report(head, outcomes, parts[i + 1:], info.get("environment", "")))

    print(f"\nwrote {path}")
    for line in report(head, outcomes, []).split("\n\n")[1].splitlines():
        print(line)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
