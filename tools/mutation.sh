#!/usr/bin/env bash
# Mutation testing of jaxnn's core numerical modules with cosmic-ray (not part of CI; see docs/testing.md).
#
#   tools/mutation.sh [MODULE...]    # e.g. jaxnn/per_example.py; from the repository root; needs `pip install cosmic-ray==8.7.0`
#
# Each mutant's tests run in a fresh `python -m pytest` process (JAX is not fork-safe, so nothing is
# forked from a warm interpreter). cosmic-ray edits the source files in place, so the run works on
# copies of the tracked files under $MUTATION_DIR (default: mutation-run/, ignored by git), one copy per
# parallel job. MODULES below names each module mutated and the quick tests that may kill its mutants.
# The operators kept are the one natural swap per operator (+/-, *//, </<=, ==/!=, and/or, not, True/False,
# unary minus, loops run zero times); number literals, decorators and exception types are left out.
# Prints the kill rate and every survivor with its diff; the report is also written to
# $MUTATION_DIR/report.txt. `python tools/mutation_recheck.py` then runs the survivors again against the
# tests as they are now (after a test was added for one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python}
BIN=$(dirname "$(command -v "$PYTHON")")
JOBS=${MUTATION_JOBS:-2}
TIMEOUT=${MUTATION_TIMEOUT:-120}
DIR=$(mkdir -p "${MUTATION_DIR:-mutation-run}" && cd "${MUTATION_DIR:-mutation-run}" && pwd)
export JAXNN_HYPOTHESIS_PROFILE=mutation JAX_PLATFORMS=cpu PYTHONDONTWRITEBYTECODE=1

# module | tests that may kill its mutants (quick tier)
MODULES='
jaxnn/losses.py|tests/test_losses.py
jaxnn/backprop.py|tests/test_backprop.py tests/rules/test_direct.py tests/rules/test_feedback.py
jaxnn/training/_step.py|tests/training/test_step.py
jaxnn/per_example.py|tests/test_per_example.py
jaxnn/training/_scan.py|tests/training/test_scan.py tests/training/test_loop.py
jaxnn/activations.py|tests/test_activations.py
'
KEEP='ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Div|Mod_FloorDiv|Pow_Mul)'
KEEP+='|ReplaceComparisonOperator_(Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is)'
KEEP+='|ReplaceUnaryOperator_(USub_UAdd|Delete_Not)|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue'
KEEP+='|ReplaceAndWithOr|ReplaceOrWithAnd|ZeroIterationForLoop|ReplaceBreakWithContinue|ReplaceContinueWithBreak'

# The default run: what fits in about 30 minutes on 2 shared cores (docs/testing.md); name the others to run them.
DEFAULT='jaxnn/losses.py jaxnn/backprop.py'
[ $# -gt 0 ] || set -- $DEFAULT
selected=$(for m in "$@"; do echo "$MODULES" | grep "^$m|" || { echo "unknown module $m" >&2; exit 2; }; done)

run_module() {  # "module|tests": one module, in its own copy of the tracked files
    local module=${1%%|*} tests=${1#*|} name copy
    name=$(echo "${module#jaxnn/}" | sed 's/\.py$//; s#/#.#g')
    copy=$DIR/copy-$name
    rm -rf "$copy"; mkdir -p "$copy"
    (cd "$ROOT" && git ls-files -z | xargs -0 cp --parents -t "$copy")
    cat > "$DIR/$name.toml" <<TOML
[cosmic-ray]
module-path = "$module"
timeout = $TIMEOUT
excluded-modules = []
test-command = "$BIN/python -m pytest -x -q -p no:randomly -p no:xdist -p no:cacheprovider -m 'not slow' $tests"

[cosmic-ray.distributor]
name = "local"

[cosmic-ray.filters.operators-filter]
exclude-operators = ["core/(?!($KEEP)\$)"]
TOML
    rm -f "$DIR/$name.sqlite"
    local t0=$(date +%s)
    (cd "$copy" && export PYTHONPATH=$copy && "$BIN/cosmic-ray" init "$DIR/$name.toml" "$DIR/$name.sqlite" \
        && "$BIN/cr-filter-operators" "$DIR/$name.sqlite" "$DIR/$name.toml" \
        && "$BIN/cosmic-ray" exec "$DIR/$name.toml" "$DIR/$name.sqlite") > "$DIR/$name.log" 2>&1
    echo "$name $(( $(date +%s) - t0 ))" >> "$DIR/seconds.txt"
    # cosmic-ray restores each file after its mutant: check that it did.
    cmp -s "$ROOT/$module" "$copy/$module" || echo "warning: $copy/$module differs from the original" >&2
}
export -f run_module
export ROOT DIR BIN TIMEOUT KEEP

start=$(date +%s)
rm -f "$DIR/seconds.txt"
echo "$selected" | tr '\n' '\0' | xargs -0 -P "$JOBS" -I{} bash -c 'run_module "$1"' _ {}
elapsed=$(( $(date +%s) - start ))
names=$(echo "$selected" | sed 's/|.*//; s#^jaxnn/##; s/\.py$//; s#/#.#g')
"$BIN/python" tools/mutation_report.py "$DIR" "$elapsed" $names | tee "$DIR/report.txt"
