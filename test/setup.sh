#!/bin/bash
# Shared by test/run_tests.sh and test/demo.sh: installs what outbox needs on
# a fresh Debian 12 machine (as root), then builds and installs the extension
# and the test Kafka broker with warnings as errors.  PG_CONFIG (default:
# pg_config on PATH) chooses the PostgreSQL to build and install for; it is
# exported for what runs after.  OUTBOX_EXTRA_PACKAGES names more packages to
# install (the benchmark's peers).
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-pg_config}
export PG_CONFIG

OUTBOX_PACKAGES="build-essential postgresql-15 postgresql-server-dev-15 librdkafka-dev
    kcat libipc-run-perl libjson-pp-perl python3 python3-kafka python3-confluent-kafka
    python3-psycopg2 json-schema-test-suite chromium ${OUTBOX_EXTRA_PACKAGES:-}"

if [ "$(id -u)" != 0 ]; then
    echo "run this as root: it installs packages and runs PostgreSQL as the postgres user" >&2
    exit 1
fi

missing=""
for p in $OUTBOX_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js for the websocket example and its browser test: Debian's, unless
# one is installed already (another nodejs package brings its own npm)
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # the cluster Debian creates by itself is not used: tests make their own
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PG_BINDIR=$("$PG_CONFIG" --bindir)
export PATH="$PG_BINDIR:$PATH"

echo "== building outbox"
make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
make -s PG_CONFIG="$PG_CONFIG" PG_CFLAGS="-Wall -Wextra -Wno-unused-parameter -Werror -DUSE_ASSERT_CHECKING"
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
echo "== installing the websocket example's npm packages"
(cd examples/websocket && npm install --no-audit --no-fund --loglevel=error >/dev/null)
# initdb refuses root: the clusters run as postgres, which writes results here
chown -R postgres: .
