"""jaxnn speed, measured side by side: every case of a section is timed in the same interleaved rounds.

    python benchmarks/run.py              # everything, a few minutes on 2 cores
    python benchmarks/run.py --quick      # fewer repeats and steps, under a minute
    python benchmarks/run.py --sections 2 --repeats 9

Sections: (1) the articles' quadrant training, per-example SGD; (2) an
MNIST-size minibatch step against its matrix products alone and PyTorch
(when installed); (3) per-example gradients; (4) the first ``fit`` call,
compile included, in a fresh process. Prints the machine, the versions and
one table: medians, the interquartile range and ratios measured in one run.

The host CPU is split into one XLA device per core (set before jax starts,
unless XLA_FLAGS already says otherwise) so that ``fit(devices=...)`` can be
measured; single-device cases run on the first device as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the jaxnn of this checkout

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "") and (os.cpu_count() or 1) > 1:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={os.cpu_count()}"
    ).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import mnist_step  # noqa: E402
import per_example  # noqa: E402
import quadrants  # noqa: E402


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    versions = {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__}
    for name in ("jaxlib", "optax", "torch"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    lines = [
        f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"jax backend: {jax.default_backend()}, devices: {jax.devices()}",
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
    ]
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i['internal_api']} {i.get('version')} {i.get('architecture', '')} {i['num_threads']} threads"
                for i in threadpool_info()]
        lines.append("native thread pools: " + "; ".join(blas))
    except ImportError:
        pass
    openblas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    lines.append(f"OPENBLAS environment: {openblas or 'none'}")
    if hasattr(os, "getloadavg"):
        lines.append("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return lines


class Table:
    def __init__(self):
        self.rows = []

    def section(self, title):
        self.rows.append(("", title, "", "", "", ""))

    def add(self, name, timing, unit_scale, unit, rate_name="", ratio=""):
        lo, hi = timing.iqr
        s = unit_scale
        self.rows.append((name, f"{timing.median * s:.4g} {unit}", f"{lo * s:.4g}-{hi * s:.4g}",
                          f"{1 / timing.median:,.0f} {rate_name}" if rate_name else "", ratio, ""))

    def text(self, name, median, spread, rate="", ratio=""):
        self.rows.append((name, median, spread, rate, ratio, ""))

    def print(self):
        header = ("case", "median", "IQR (25-75%)", "rate", "ratio")
        rows = [r for r in self.rows if r[0]] + [header]
        widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
        line = " | ".join(h.ljust(w) for h, w in zip(header, widths))
        print(line)
        print("-+-".join("-" * w for w in widths))
        for row in self.rows:
            if not row[0]:
                print(f"[{row[1]}]")
                continue
            print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def first_calls(repeats: int) -> dict:
    """First and second fit call, each in a fresh process, interleaved over the configurations."""
    configs = [(p, g) for p in ("quadrants", "mnist") for g in ("manual", "autodiff")]
    results = {c: {"first": [], "second": []} for c in configs}
    for _ in range(repeats):
        for problem, gradients in configs:
            out = subprocess.run([sys.executable, str(HERE / "first_call.py"), problem, gradients],
                                 capture_output=True, text=True, check=True, env=os.environ)
            times = json.loads(out.stdout.strip().splitlines()[-1])
            for k in times:
                results[(problem, gradients)][k].append(times[k])
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--sections", default="1,2,3,4", help="comma-separated: 1 quadrants, 2 MNIST step, "
                        "3 per-example gradients, 4 first call")
    parser.add_argument("--repeats", type=int, help="interleaved rounds per section (default 15, quick 5)")
    args = parser.parse_args()
    sections = {int(s) for s in args.sections.split(",")}
    repeats = args.repeats or (5 if args.quick else 15)
    for line in machine():
        print(line)
    print()

    table, targets = Table(), []
    if 1 in sections:
        steps = 20_000 if args.quick else 99_000
        q = quadrants.run(steps, numpy_steps=1_000 if args.quick else 3_000,
                          loop_steps=1_000 if args.quick else 3_000, repeats=repeats)
        fit, bare, np_loop = q["fit_manual"].median, q["bare_scan_manual"].median, q["numpy"].median
        table.section(f"1. quadrants: 2-3-2 LeakyReLU, MSE, per-example SGD, {steps:,} steps; time per step")
        names = {"numpy": "NumPy loop, the articles' way", "jit_step_loop": "jitted jaxnn step in a Python loop",
                 "bare_scan_manual": "bare lax.scan, recursion by hand", "bare_scan_autodiff": "bare lax.scan, jax.grad",
                 "fit_manual": "jaxnn fit, manual", "fit_autodiff": "jaxnn fit, autodiff"}
        for key, name in names.items():
            table.add(name, q[key], 1e6, "us", "steps/s", f"{q[key].median / fit:.3g}x fit_manual")
        targets.append(f"quadrants: fit manual {np_loop / fit:.0f}x faster than the NumPy loop (target >= 300x)")
        targets.append(f"quadrants: fit manual / bare scan = {fit / bare:.2f} (target <= 1.2); "
                       f"fit autodiff / bare jax.grad scan = {q['fit_autodiff'].median / q['bare_scan_autodiff'].median:.2f}")
    if 2 in sections:
        steps, batch = (117, 128) if args.quick else (468, 128)
        m = mnist_step.run(steps, batch, repeats)
        products = [k for k in m if "products" in k]
        roof = min(products, key=lambda k: m[k].median)
        flops = mnist_step.FLOPS_PER_EXAMPLE * batch
        table.section(f"2. MNIST-size step: 784-128-128-10, softmax CE, batch {batch}, SGD, epochs of {steps} "
                      f"steps; time per step; % of the fastest products-only ({roof})")
        for key in sorted(m, key=lambda k: m[k].median):
            pct = f"{m[roof].median / m[key].median:.0%} of roof, {flops / m[key].median / 1e9:.0f} GFLOP/s"
            table.add(key, m[key], 1e6, "us", "steps/s", pct)
        best = min(("fit_manual", "fit_manual_split2"), key=lambda k: m[k].median)
        targets.append(f"MNIST: manual/autodiff time = {m['fit_manual'].median / m['fit_autodiff'].median:.2f} "
                       f"(split2: {m['fit_manual_split2'].median / m['fit_autodiff_split2'].median:.2f}) "
                       f"(target <= 1.0)")
        eager = [k for k in m if k.startswith("torch_eager")]
        if eager:
            fastest = min(eager, key=lambda k: m[k].median)
            targets.append(f"MNIST: {best} {m[fastest].median / m[best].median:.2f}x faster than {fastest} "
                           f"(target > 1)")
        targets.append(f"MNIST: {best} at {m[roof].median / m[best].median:.0%} of {roof} (target >= 70%)")
    if 3 in sections:
        batch, calls = 128, (5 if args.quick else 20)
        p = per_example.run(batch, calls, repeats)
        table.section(f"3. per-example gradients, MNIST-size net, batch {batch}; time per example")
        for key in p:
            table.add(key, p[key], 1e6, "us", "examples/s", f"{p[key].median / p['vmap_grad'].median:.3g}x vmap_grad")
        targets.append(f"per-example: vmap(backprop) / vmap(grad) = "
                       f"{p['vmap_backprop'].median / p['vmap_grad'].median:.2f} (target <= 1.1)")
    if 4 in sections:
        f = first_calls(2 if args.quick else 3)
        table.section("4. first fit call in a fresh process (compile included), and the second call; seconds")
        for (problem, gradients), times in f.items():
            first, second = np.median(times["first"]), np.median(times["second"])
            table.text(f"fit {problem} {gradients}: first call", f"{first:.3f} s",
                       f"{min(times['first']):.3f}-{max(times['first']):.3f}", f"second {second:.4f} s",
                       f"compile ~{first - second:.3f} s")
            if problem == "quadrants":
                targets.append(f"quadrants: first fit call ({gradients}) {first:.3f} s (target < 0.5 s)")
    table.print()
    print()
    for line in targets:
        print("target check:", line)
    if hasattr(os, "getloadavg"):
        print("load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
