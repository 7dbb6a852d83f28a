"""Summarise a mutmut run: kill rate, then each surviving mutant with its diff (used by tools/mutation.sh).

python tools/mutation_report.py SECONDS
"""

import collections
import datetime
import importlib.metadata
import platform
import subprocess
import sys


def mutmut(*args):
    return subprocess.run([sys.executable, "-m", "mutmut", *args], capture_output=True, text=True).stdout


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    statuses = {}
    for line in mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            statuses[name] = status
    counts = collections.Counter(statuses.values())
    killed = counts["killed"] + counts["timeout"]
    checked = sum(n for status, n in counts.items() if status not in ("not checked", "skipped"))
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("jax", "optax", "numpy", "pytest",
                                                                          "hypothesis", "mutmut"))
    print(f"mutation run of {datetime.date.today()}: Python {platform.python_version()}, {versions}")
    print(f"wall time {seconds // 60} min {seconds % 60} s")
    print("mutants by status: " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    print(f"kill rate: {killed} of {checked} = {100 * killed / max(checked, 1):.1f}%"
          " (killed or timed out, of all mutants checked; 'no tests' counts as not killed)")
    by_module = collections.defaultdict(collections.Counter)
    for name, status in statuses.items():
        by_module[name.split(".x")[0].rsplit(".", 1)[0] if ".x" in name else name][status] += 1
    for module, c in sorted(by_module.items()):
        print(f"  {module}: {c['killed'] + c['timeout']} of {sum(c.values())} killed")
    alive = [name for name, status in statuses.items() if status not in ("killed", "timeout")]
    print(f"\n{len(alive)} not killed:")
    for name in alive:
        print(f"\n## {name}: {statuses[name]}")
        print("\n".join(mutmut("show", name).splitlines()[1:]).strip())


if __name__ == "__main__":
    main()
