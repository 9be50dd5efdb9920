#!/bin/bash
# The whole outbox test suite: pg_regress, then the TAP tests (real clusters
# with the extension preloaded and the test Kafka broker).  Run as root on
# Debian 12; installs what it needs.  The last line counts passed and failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source test/setup.sh
set +e

passed=0
failed=0

echo "== pg_regress"
su postgres -c "make -s installcheck TAP_TESTS=" 2>&1 | tee /tmp/outbox_regress.out
p=$(grep -cE '^(ok|test) .* ok( |$)|^ok [0-9]+ ' /tmp/outbox_regress.out)
f=$(grep -cE '(\.\.\. |^not ok .*)FAILED|^not ok ' /tmp/outbox_regress.out)
[ -f regression.diffs ] && cat regression.diffs
passed=$((passed + p)); failed=$((failed + f))

echo "== TAP"
su postgres -c "make -s installcheck REGRESS=" 2>&1 | tee /tmp/outbox_tap.out
for log in tmp_check/log/regress_log_*; do
    [ -f "$log" ] || continue
    p=$(grep -cE '^\[[0-9:.]+\]\([0-9.]+s\) ok [0-9]+' "$log")
    f=$(grep -cE '^\[[0-9:.]+\]\([0-9.]+s\) not ok [0-9]+' "$log")
    passed=$((passed + p)); failed=$((failed + f))
done
# a TAP script that died before its plan counts as a failure
if grep -q "^Result: FAIL" /tmp/outbox_tap.out && [ "$failed" = 0 ]; then
    failed=1
fi

echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
