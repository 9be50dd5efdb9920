#!/bin/bash
# The whole outbox test suite: pg_regress (the SQL tests), the isolation
# specs, then the TAP tests (real clusters with the extension preloaded and
# the test Kafka broker), each through make installcheck.  Run as root on Debian 12; installs what it needs.
# PG_CONFIG (default: pg_config on PATH) chooses the PostgreSQL to build,
# install and test against.
#
# The verdict is the exit status of each step: a step that exits non-zero
# fails the run even when its output names no failing test.  The last line
# counts passed and failed tests, from pg_regress's summaries and prove's;
# the script exits non-zero when any test or step failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# a setup that fails (packages, build, install) still ends with the count
trap 'echo "== setup failed"; echo "tests: 0 passed, 1 failed"' EXIT
source test/setup.sh
trap - EXIT
set +e

# the steps' output, for counting (it is shown as it comes, too); private to
# this run, since another run on the machine would write the same names
out=$(mktemp -d /tmp/outbox_tests.XXXXXX) || { echo "tests: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$out"' EXIT

passed=0
failed=0
# run make as postgres with the chosen PostgreSQL first on PATH
as_postgres_make()
{
    su postgres -c "PATH=$(printf %q "$PG_BINDIR"):\$PATH make -s PG_CONFIG=$(printf %q "$PG_CONFIG") $*"
}

# pg_regress_step NAME DIFFS MAKE-ARGS...: a pg_regress run through make;
# counts its summary lines (" All N tests passed. ", " M of N tests
# failed. ", " N of T tests passed, K failed test(s) ignored. "...)
pg_regress_step()
{
    local name=$1 diffs=$2 rc p f
    shift 2
    echo "== $name"
    as_postgres_make installcheck "$@" 2>&1 | tee "$out/$name.out"
    rc=${PIPESTATUS[0]}
    read -r p f < <(awk '
        /All [0-9]+ tests passed/ { match($0, /All [0-9]+/); p += substr($0, RSTART + 4, RLENGTH - 4) }
        /[0-9]+ of [0-9]+ tests failed/ {
            match($0, /[0-9]+ of [0-9]+ tests failed/); split(substr($0, RSTART, RLENGTH), w, " ")
            f += w[1]; p += w[3] - w[1] }
        /[0-9]+ of [0-9]+ tests passed, [0-9]+ failed test/ {
            match($0, /[0-9]+ of/); p += substr($0, RSTART, RLENGTH - 3) }
        END { print p + 0, f + 0 }' "$out/$name.out")
    [ -f "$diffs" ] && cat "$diffs"
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        echo "== $name exited with status $rc without naming a failed test: counted as one failure"
        f=1
    fi
    passed=$((passed + p)); failed=$((failed + f))
}

# each in its own make run, so that a failure in one does not skip the next
pg_regress_step pg_regress regression.diffs TAP_TESTS= ISOLATION=
pg_regress_step isolation output_iso/regression.diffs TAP_TESTS= REGRESS=

echo "== TAP"
as_postgres_make installcheck REGRESS= ISOLATION= 2>&1 | tee "$out/tap.out"
rc=${PIPESTATUS[0]}
# prove's summary: "Files=9, Tests=150, ..." counts every test run; a file in
# the "Test Summary Report" that failed (Failed: F > 0, a non-zero exit
# status or a parse error such as a missing plan) adds max(F, 1) failures
read -r p f < <(awk '
    /^Files=[0-9]+, Tests=[0-9]+/ { match($0, /Tests=[0-9]+/); total += substr($0, RSTART + 6, RLENGTH - 6) }
    /^Test Summary Report/ { report = 1; next }
    report && /^[^ ].*\(Wstat: [0-9]+.*Failed: [0-9]+\)/ {
        close_file()
        match($0, /Failed: [0-9]+/); nfail = substr($0, RSTART + 8, RLENGTH - 8) + 0
        match($0, /Wstat: [0-9]+/); bad = (nfail > 0 || substr($0, RSTART + 7, RLENGTH - 7) + 0 != 0)
        infile = 1; next }
    report && infile && /^  (Parse errors|Non-zero exit status|Non-zero wait status):/ { bad = 1; next }
    report && infile && !/^  / { close_file() }
    function close_file() {
        if (infile && bad) { failedn += (nfail > 0 ? nfail : 1); nfailedsub += nfail }
        infile = 0; bad = 0; nfail = 0 }
    END { close_file(); print total - nfailedsub, failedn + 0 }' "$out/tap.out")
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    echo "== the TAP step exited with status $rc without naming a failed test: counted as one failure"
    f=1
fi
passed=$((passed + p)); failed=$((failed + f))

echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
