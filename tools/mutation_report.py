"""Summarise a cosmic-ray run of tools/mutation.sh: kill rate per module, then every survivor with its diff.

python tools/mutation_report.py RUN_DIR SECONDS NAME...   (NAME: a session RUN_DIR/NAME.sqlite)
"""

import datetime
import importlib.metadata
import os
import platform
import sqlite3
import sys


def main():
    run_dir, seconds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in
                         ("jax", "jaxlib", "optax", "numpy", "pytest", "hypothesis", "cosmic-ray"))
    print(f"mutation run of {datetime.date.today()} (tools/mutation.sh, cosmic-ray)")
    print(f"versions: Python {platform.python_version()}, {versions}")
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    print(f"wall time: {seconds // 60} min {seconds % 60} s")
    per_module = {}
    if os.path.exists(os.path.join(run_dir, "seconds.txt")):
        per_module = dict(line.split() for line in open(os.path.join(run_dir, "seconds.txt")))
    total = killed = timeouts = 0
    survivors, unfinished = [], []
    print(f"\n{'module':28} {'mutants':>8} {'killed':>7} {'timeout':>8} {'survived':>9} {'other':>6} {'seconds':>8}")
    for name in names:
        db = sqlite3.connect(os.path.join(run_dir, f"{name}.sqlite"))
        rows = db.execute(
            "select s.job_id, s.module_path, s.operator_name, s.start_pos_row, s.definition_name,"
            " r.worker_outcome, r.test_outcome, r.output, r.diff"
            " from mutation_specs s left join work_results r on s.job_id = r.job_id").fetchall()
        rows = [tuple((v or "").lower() if i in (5, 6) else v for i, v in enumerate(r)) for r in rows]
        rows = [r for r in rows if r[5] != "skipped"]  # operators left out by the filter
        k = sum(r[6] == "killed" for r in rows)
        t = sum(r[6] == "killed" and (r[7] or "").strip() == "timeout" for r in rows)
        s = [r for r in rows if r[6] == "survived"]
        other = [r for r in rows if r[6] not in ("killed", "survived")]
        print(f"{name:28} {len(rows):8} {k:7} {t:8} {len(s):9} {len(other):6} {per_module.get(name, '?'):>8}")
        total += len(rows); killed += k; timeouts += t
        survivors += s; unfinished += other
    done = killed + len(survivors)
    rate = 100.0 * killed / total if total else 0.0
    print(f"\n{total} mutants, {killed} killed ({timeouts} of them by the timeout), {len(survivors)} survived, "
          f"{len(unfinished)} not run or incompetent")
    print(f"kill rate: {killed}/{total} = {rate:.1f}% (of those run: {killed}/{done})")
    for r in survivors:
        print(f"\nSURVIVED {r[1]}:{r[3]} in {r[4]} ({r[2]}) job {r[0]}\n{r[8]}")
    for r in unfinished:
        print(f"\nNOT RUN/INCOMPETENT {r[1]}:{r[3]} ({r[2]}) {r[5]} {r[6]}\n{(r[7] or '')[-500:]}")


if __name__ == "__main__":
    main()
