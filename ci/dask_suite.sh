#!/usr/bin/env bash
# Dask's own array tests, twice: plainly and with dask_io's graph pass as Dask's
# array optimizer (ci/dask_io_pass_plugin.py). Fails when the sets of failing tests
# differ, and prints the difference; tests failing in both passes are only listed.
#   bash ci/dask_suite.sh [extra pytest args, e.g. -k rechunk]
# DASK_SUITE_MODULES overrides the test modules (names in dask/array/tests).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PYTHONPATH="$ROOT:$ROOT/ci${PYTHONPATH:+:$PYTHONPATH}"
MODULES=${DASK_SUITE_MODULES:-"test_rechunk test_array_core test_optimization test_slicing test_reductions test_creation test_routines test_overlap"}
SITE=$(python -c "import dask, os; print(os.path.dirname(os.path.dirname(dask.__file__)))") || exit 2
TESTS=$SITE/dask/array/tests
OUT=${DASK_SUITE_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
FILES=()
for m in $MODULES; do FILES+=("$TESTS/$m.py"); done

run_pass() {  # name, extra args...: writes $OUT/<name>.failed (sorted test ids)
    local name=$1; shift
    local start=$SECONDS
    # from the tests' folder, with no ini file (Dask's tests, not dask_io's settings);
    # rootdir above dask/ so that dask/conftest.py is loaded as in Dask's own CI
    (cd "$TESTS" && FAILED_IDS_FILE="$OUT/$name.failed" python -m pytest -q -p no:cacheprovider \
        -c /dev/null --rootdir "$SITE" --timeout=120 -p failed_ids_plugin \
        "$@" "${FILES[@]}" "${EXTRA[@]}") >"$OUT/$name.log" 2>&1
    local rc=$?
    grep -E "^[0-9]+ (passed|failed)|^=+ .* in [0-9.]+s" "$OUT/$name.log" | tail -n 1 | sed "s/^/$name: /"
    echo "$name: pytest exit $rc, $((SECONDS - start)) s"
    # exit 0: all passed; 1: some failed (compared below); anything else is a broken run
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        echo "$name: pytest did not complete (exit $rc); last lines:" >&2
        tail -n 30 "$OUT/$name.log" >&2
        exit 2
    fi
    [ -f "$OUT/$name.failed" ] || { echo "$name: no list of failing tests" >&2; exit 2; }
}

EXTRA=("$@")
# the two passes side by side (one core each): their logs and id lists are separate
run_pass plain &
PLAIN=$!
run_pass dask_io -p dask_io_pass_plugin &
WITH=$!
wait "$PLAIN" || exit $?
wait "$WITH" || exit $?
grep -q "dask_io pass: array_optimize = <function optimize" "$OUT/dask_io.log" || {
    echo "the dask_io pass was not switched on (plugin not loaded?)" >&2; exit 2; }

echo "failing in both passes: $(comm -12 "$OUT/plain.failed" "$OUT/dask_io.failed" | wc -l)"
comm -12 "$OUT/plain.failed" "$OUT/dask_io.failed" | sed 's/^/  both: /'
if cmp -s "$OUT/plain.failed" "$OUT/dask_io.failed"; then
    echo "dask suite: the same failing tests with and without the dask_io pass"
    exit 0
fi
echo "dask suite: the failing tests DIFFER (logs in $OUT)"
comm -13 "$OUT/plain.failed" "$OUT/dask_io.failed" | sed 's/^/  fails only with dask_io: /'
comm -23 "$OUT/plain.failed" "$OUT/dask_io.failed" | sed 's/^/  fails only without dask_io: /'
exit 1
