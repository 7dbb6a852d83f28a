"""Run the survivors of a tools/mutation.sh run again, against the tests as they are now.

python tools/mutation_recheck.py [RUN_DIR] [JOB_ID...]   (RUN_DIR default mutation-run; default: every survivor)

For each surviving mutant: a fresh copy of the tracked files, the mutation applied there with
`cosmic-ray apply`, and the module's test command from RUN_DIR/<module>.toml run in it. Prints
killed or survived for each, so that a test written against a survivor can be confirmed to kill it.
"""

import glob
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import tomllib


def main():
    run_dir = sys.argv[1] if len(sys.argv) > 1 else "mutation-run"
    only = set(sys.argv[2:])
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    files = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    bindir = os.path.dirname(sys.executable)
    still = 0
    for session in sorted(glob.glob(os.path.join(run_dir, "*.sqlite"))):
        config = tomllib.load(open(session[: -len(".sqlite")] + ".toml", "rb"))["cosmic-ray"]
        rows = sqlite3.connect(session).execute(
            "select s.job_id, s.module_path, s.operator_name, s.occurrence, s.start_pos_row"
            " from mutation_specs s join work_results r on s.job_id = r.job_id"
            " where lower(r.test_outcome) = 'survived'").fetchall()
        for job, module, operator, occurrence, line in rows:
            if only and job not in only:
                continue
            with tempfile.TemporaryDirectory() as copy:
                for f in filter(None, files):
                    os.makedirs(os.path.join(copy, os.path.dirname(f)), exist_ok=True)
                    shutil.copy2(os.path.join(root, f), os.path.join(copy, f))
                subprocess.run([os.path.join(bindir, "cosmic-ray"), "apply", module, operator, str(occurrence)],
                               cwd=copy, check=True, capture_output=True)
                env = dict(os.environ, PYTHONPATH=copy, JAXNN_HYPOTHESIS_PROFILE="mutation", JAX_PLATFORMS="cpu",
                           JAX_COMPILATION_CACHE_DIR=os.path.join(os.path.abspath(run_dir), "jax-cache"),
                           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
                try:
                    done = subprocess.run(pytest_command(config["test-command"]), cwd=copy, env=env,
                                          capture_output=True, text=True, timeout=config["timeout"])
                    outcome = "survived" if done.returncode == 0 else "killed"
                except subprocess.TimeoutExpired:
                    outcome = "killed (timeout)"
            still += outcome == "survived"
            print(f"{outcome:16} {module}:{line} {operator} #{occurrence} job {job}", flush=True)
    print(f"{still} still survive")


def pytest_command(test_command):
    """The run's test command without its server: ``python -m pytest`` with the same arguments."""
    words = shlex.split(test_command)
    args = words[words.index("--run") + 3:]  # after --run SOCKET COPY
    return [sys.executable, "-m", "pytest", *args]


if __name__ == "__main__":
    main()
