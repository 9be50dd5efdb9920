#!/bin/bash
# The main job, end to end on a throw-away setup: builds and installs outbox,
# starts the test Kafka broker (librdkafka's mock cluster, real Kafka
# protocol on loopback) and a PostgreSQL cluster (as the postgres user) with
# outbox preloaded, publishes events in transactions (one rolled back), shows
# them arriving through kcat, and cleans everything up.  Run as root on
# Debian 12; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/setup.sh

DEMO=$(mktemp -d /tmp/outbox-demo.XXXXXX)
chown postgres: "$DEMO"
PORT=54329
PSQL="psql -X -h $DEMO -p $PORT -U postgres -d postgres -v ON_ERROR_STOP=1"
BROKER_PID=""

cleanup() {
    su postgres -c "pg_ctl -D $DEMO/data -m fast stop" >/dev/null 2>&1 || true
    exec 3>&- || true
    [ -n "$BROKER_PID" ] && wait "$BROKER_PID" 2>/dev/null || true
    rm -rf "$DEMO"
}
trap cleanup EXIT

echo "== starting the test Kafka broker"
# the broker runs until its stdin closes: feed it from a FIFO held open on fd 3
mkfifo "$DEMO/broker.ctl"
test/kafka_broker -f "$DEMO/bootstrap" < "$DEMO/broker.ctl" > "$DEMO/broker.log" 2>&1 &
BROKER_PID=$!
exec 3> "$DEMO/broker.ctl"
for _ in $(seq 100); do [ -s "$DEMO/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$DEMO/bootstrap")
echo "   bootstrap servers: $BOOTSTRAP"

echo "== starting PostgreSQL with outbox preloaded"
su postgres -c "initdb -D $DEMO/data -A trust" >/dev/null
cat >> "$DEMO/data/postgresql.conf" <<CONF
shared_preload_libraries = 'outbox'
outbox.kafka_brokers = '$BOOTSTRAP'
port = $PORT
unix_socket_directories = '$DEMO'
listen_addresses = ''
CONF
su postgres -c "pg_ctl -D $DEMO/data -l $DEMO/postgres.log -w start" >/dev/null

echo "== publishing: two committed transactions and one rolled back"
$PSQL -e <<'SQL'
CREATE EXTENSION outbox;
CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders VALUES (42, 'new'), (43, 'new');

BEGIN;
UPDATE orders SET status = 'placed' WHERE id = 42;
SELECT outbox.publish(topic => 'order.placed', payload => '{"order_id": 42}'::jsonb,
                      key => '42', event_type => 'order.placed.v1',
                      headers => '{"x-tenant": "acme"}'::jsonb);
COMMIT;

BEGIN;
UPDATE orders SET status = 'placed' WHERE id = 43;
SELECT outbox.publish(topic => 'order.placed', payload => '{"order_id": 43}'::jsonb, key => '43');
ROLLBACK;

BEGIN;
UPDATE orders SET status = 'shipped' WHERE id = 42;
SELECT outbox.publish(topic => 'order.placed', payload => '{"order_id": 42, "shipped": true}'::jsonb,
                      key => '42', event_type => 'order.shipped.v1');
COMMIT;
SQL

echo "== waiting for the relay to drain outbox.events"
for _ in $(seq 100); do
    [ "$($PSQL -Atc 'SELECT count(*) FROM outbox.events')" = 0 ] && break
    sleep 0.1
done
$PSQL -c "SELECT count(*) AS pending FROM outbox.events"

echo "== what Kafka holds (read by kcat): the rolled-back order 43 is not there"
kcat -C -b "$BOOTSTRAP" -t order.placed -o beginning -e -q -X fetch.wait.max.ms=1 \
    -f 'partition %p offset %o key %k\n  headers: %h\n  value:   %s\n'

echo "== outbox.stats, as an operator sees it"
sleep 1.2   # the relay refreshes its figures about once a second
$PSQL -x -c "SELECT * FROM outbox.stats"

echo "== relay log lines"
grep -E "outbox (launcher|relay)" "$DEMO/postgres.log" | sed 's/^/   /'
echo "== done; cleaning up"
