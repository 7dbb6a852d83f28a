#!/usr/bin/env bash
# Mutation testing of jaxnn's core modules with mutmut (not part of CI; see docs/testing.md).
#
#   tools/mutation.sh [MUTANT_NAMES...]      # from the repository root; needs `pip install mutmut`
#
# The modules mutated and the test files that may kill them are [tool.mutmut] in pyproject.toml.
# mutmut copies the package into mutants/ and, for each mutant, runs only the tests that call the
# mutated function (-x, slow tests left out, 5 hypothesis examples), two at a time. It prints the kill
# rate and every survivor with its diff; the full report is also written to mutants/report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export JAXNN_HYPOTHESIS_PROFILE=mutation JAX_PLATFORMS=cpu
mkdir -p mutants
start=$(date +%s)
"$PYTHON" -m mutmut run --max-children "${MUTATION_CHILDREN:-2}" "$@" > mutants/run.log 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))
"$PYTHON" tools/mutation_report.py "$elapsed" | tee mutants/report.txt
exit "${status:-0}"
