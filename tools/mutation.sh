#!/usr/bin/env bash
# Mutation testing of jaxnn's core numerical modules with cosmic-ray (not part of CI; see docs/testing.md).
#
#   tools/mutation.sh [MODULE...]    # default: every module below; e.g. jaxnn/per_example.py
#   (from the repository root; needs `pip install cosmic-ray==8.7.0`)
#
# cosmic-ray edits the source files in place, so the run works on copies of the tracked files under
# $MUTATION_DIR (default: mutation-run/, ignored by git), one copy per module, MUTATION_JOBS modules at
# a time. Each mutant's tests run in a process forked from a server (tools/mutation_server.py) that has
# imported JAX, optax, hypothesis and pytest but started no XLA backend, so a fork is safe and a mutant
# does not pay for Python's start; XLA programs are compiled once for the whole run (JAX's persistent
# cache). MODULES below names each module mutated and the tests that may kill its mutants.
# The operators kept are the one natural swap per operator (+/-, *//, </<=, ==/!=, and/or, not, True/False,
# unary minus, loops run zero times); number literals, decorators and exception types are left out.
# Prints the kill rate and every survivor with its diff; the report is also written to
# $MUTATION_DIR/report.txt. `python tools/mutation_recheck.py` then runs the survivors again against the
# tests as they are now (after a test was added for one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python}
BIN=$(cd "$(dirname "$(command -v "$PYTHON")")" && pwd)
JOBS=${MUTATION_JOBS:-2}
TIMEOUT=${MUTATION_TIMEOUT:-120}
DIR=$(mkdir -p "${MUTATION_DIR:-mutation-run}" && cd "${MUTATION_DIR:-mutation-run}" && pwd)
export JAXNN_HYPOTHESIS_PROFILE=mutation JAX_PLATFORMS=cpu PYTHONDONTWRITEBYTECODE=1
# Most of a mutant's test time is XLA compiling programs the mutant did not change: JAX's persistent
# cache (keyed on the program) compiles each once for the whole run.
export JAX_COMPILATION_CACHE_DIR=$DIR/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1

# module | the tests that may kill its mutants, fastest and most telling first. Each mutant runs their
# quick tier and the slow tests marked `mutation` (those written against a bug class), with -x.
MODULES='
jaxnn/activations.py|tests/test_activations.py tests/test_backprop.py
jaxnn/losses.py|tests/test_losses.py tests/test_backprop.py
jaxnn/backprop.py|tests/rules/test_feedback.py tests/rules/test_direct.py tests/test_backprop.py
jaxnn/network.py|tests/test_network.py tests/test_errors.py tests/training/test_plan.py tests/test_dtypes.py tests/test_backprop.py
jaxnn/per_example.py|tests/test_per_example.py
jaxnn/checkpoint.py|tests/test_checkpoint.py tests/test_faults.py
jaxnn/training/_step.py|tests/training/test_step.py tests/training/test_fit.py
jaxnn/training/_epoch.py|tests/training/test_epoch.py tests/training/test_loop.py tests/training/test_shards.py
'
KEEP='ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Div|Mod_FloorDiv|Pow_Mul)'
KEEP+='|ReplaceComparisonOperator_(Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is)'
KEEP+='|ReplaceUnaryOperator_(USub_UAdd|Delete_Not)|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue'
KEEP+='|ReplaceAndWithOr|ReplaceOrWithAnd|ZeroIterationForLoop|ReplaceBreakWithContinue|ReplaceContinueWithBreak'

# The default run: what fits in about 30 minutes on 2 shared cores (docs/testing.md); name the others to run them.
[ $# -gt 0 ] || set -- $(echo "$MODULES" | sed -n 's/|.*//p')
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
test-command = "$BIN/python $ROOT/tools/mutation_server.py --run $DIR/$name.socket $copy -x -q -p no:randomly -p no:xdist -p no:cacheprovider -m 'not slow or mutation' $tests"

[cosmic-ray.distributor]
name = "local"

[cosmic-ray.filters.operators-filter]
exclude-operators = ["core/(?!($KEEP)\$)"]
TOML
    rm -f "$DIR/$name.sqlite" "$DIR/$name.socket"
    "$BIN/python" "$ROOT/tools/mutation_server.py" "$DIR/$name.socket" > "$DIR/$name.server.log" 2>&1 &
    local server=$!
    while [ ! -S "$DIR/$name.socket" ]; do
        kill -0 $server 2>/dev/null || { echo "the test server did not start: $DIR/$name.server.log" >&2; return 1; }
        sleep 0.2
    done
    local t0=$(date +%s)
    (cd "$copy" && export PYTHONPATH=$copy && "$BIN/cosmic-ray" init "$DIR/$name.toml" "$DIR/$name.sqlite" \
        && "$BIN/cr-filter-operators" "$DIR/$name.sqlite" "$DIR/$name.toml" \
        && "$BIN/cosmic-ray" exec "$DIR/$name.toml" "$DIR/$name.sqlite") > "$DIR/$name.log" 2>&1
    echo "$name $(( $(date +%s) - t0 ))" >> "$DIR/seconds.txt"
    kill $server
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
