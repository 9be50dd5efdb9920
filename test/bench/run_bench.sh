#!/bin/bash
# Benchmarks of outbox, end to end on a throw-away setup, printed as tables:
#
#  1. Drain rate: a backlog of BENCH_EVENTS events (default 1000000; ~100-byte
#     JSON payloads, 100 keys) is published (a) in ONE transaction, timed from
#     COMMIT until outbox.events is empty, and (b) as BENCH_EVENTS/100
#     transactions of 100 events sent as fast as psql can from one session,
#     timed from the start of publishing until empty (test/bench/drain.py).
#     Before each, the relay has relayed one warm-up event on the freshly
#     vacuumed table, as in service after a quiet period; (a) is run a second
#     time with the table vacuumed again after that warm-up, so that the
#     relay plans its statements with the backlog present (see drain.py on
#     why that matters).
#     A confluent-kafka consumer assigned to each topic before publishing
#     counts what it got, which must equal the events published
#     (test/bench/count_topic.py).
#  2. Latency at low load: one event per transaction at BENCH_RATE events/s
#     (default 200) for BENCH_SECONDS s (default 20), from COMMIT returning
#     to a separate confluent-kafka consumer receiving it, as percentiles;
#     then the floor: a bare confluent-kafka producer with the relay's
#     settings sending the same events to the same broker, and the ratio
#     outbox/bare (test/bench/latency.py).
#  3. Publish cost: outbox.publish() against a plain INSERT of the same rows
#     into a table like outbox.events, with pgbench (custom scripts, -M
#     prepared, BENCH_PGBENCH_SECONDS s per side, default 10): transactions
#     of 1 and of 100 events, at each client count of BENCH_PUBLISH_CLIENTS
#     (default "1 2 32"), and a bulk load of BENCH_PUBLISH_BULK events in one
#     statement (default 200000, 1 client; 0 leaves it out); tx/s, us/event,
#     ratio.  The relay is paused meanwhile (test/bench/publish_cost.py).
#  4. Drain comparison: the backlog of 1 (BENCH_EVENTS events) drained by a
#     hand-written Python polling relay (SELECT ... FOR UPDATE SKIP LOCKED
#     LIMIT 1000, produce, flush, DELETE, COMMIT; test/bench/poll_relay.py)
#     from a table like outbox.events, and sent by a bare C librdkafka
#     producer with no database (test/bench/bare_producer.c, compiled into
#     the scratch directory): linger.ms=1, librdkafka defaults, and linger.ms=1
#     waiting for delivery after each 1000; beside the relay's rate from 1
#     (test/bench/drain_compare.py).  Each topic is read back and counted.
#  5. Inbox: outbox.receive() against INSERT ... ON CONFLICT DO NOTHING on a
#     table like outbox.inbox, with pgbench, for fresh random (v4) ids, fresh
#     time-ordered ids and duplicates (BENCH_INBOX_CLIENTS, default "1";
#     tables preloaded with BENCH_INBOX_PRELOAD rows, default 100000); then
#     purging: outbox.inbox filled with BENCH_INBOX_ROWS rows (default
#     10000000, half expired), VACUUM ANALYZE, SELECT outbox.purge_inbox()
#     timed, sizes before/after, VACUUM; then the same fill purged by the
#     relay's own purge (a transaction per batch); and first both on
#     BENCH_INBOX_SMALL_ROWS rows (default 2000000; 0 skips them), to show how
#     the rate depends on the size (test/bench/inbox_bench.py).
#     BENCH_INBOX_RELAY_PURGE=0 leaves out the relay's purge.
#     In 3 and 5 each side gets BENCH_PGBENCH_SECONDS in BENCH_PGBENCH_ROUNDS
#     (default 2) pgbench runs, the sides alternating, since the WAL flush
#     latency of a VM drifts.  With BENCH_SYNC_OFF=1 (the default) 3 and 5
#     add single-call runs with synchronous_commit=off, where the CPU cost
#     shows without the WAL flush.
#  6. Sustained load: one event per transaction at BENCH_SUSTAIN_RATE events/s
#     (default 1000) for BENCH_SUSTAIN_SECONDS s (default 300), from
#     BENCH_SUSTAIN_PUBLISHERS sessions (default 4, each waiting for its WAL
#     flush) sharing one open-loop schedule; commit-to-consumer latency as in
#     2, and every BENCH_SUSTAIN_SAMPLE s (default 10) a sample of the relay
#     (CPU from /proc/PID/stat, VmRSS) and of outbox.events (count(*),
#     pg_total_relation_size), to show the table stays bounded
#     (test/bench/latency.py with --publishers and --sample).
#  7. Held xmin: a session stays idle in a REPEATABLE READ transaction that
#     has an xid and a snapshot (test/bench/hold_xmin.py; pg_stat_activity
#     must show its backend_xmin), so vacuum cannot remove the rows the
#     relay deletes; meanwhile (a) a backlog of BENCH_EVENTS events in one
#     transaction is drained as in 1 (A), and (b) the sustained load of 6
#     runs again; their rate and latency beside 1's and 6's.  Then, still
#     held, VACUUM outbox.events and its dead rows (n_dead_tup) and size;
#     and the same after the transaction ended.  The session's snapshot was
#     taken reading pg_class; with BENCH_XMIN_LOCK=1 it reads outbox.events
#     instead and holds a lock on it, which keeps the relay from truncating
#     the table (src/reclaim.c), so it grows as vacuum is held back.
#  8. Memory: the relay's VmRSS and RssAnon (its private memory), sampled
#     every 0.1 s, and its VmHWM, while it drains a backlog published while it was paused (transactions of
#     10000 events, one statement each), from outbox.resume_relay() until
#     outbox.events is empty: (a) BENCH_MEMORY_EVENTS events (default
#     1000000) as in 1, (b) BENCH_MEMORY_BIG events (default 200) of
#     1,000,000 random bytes (publish_binary), with outbox.max_message_size
#     and the producer's message.max.bytes (outbox.kafka_properties) raised
#     to 2000000 for it, by ALTER SYSTEM, reset afterwards (test/bench/
#     drain.py --mode paused --relay-memory).  Topics counted as in 1.
#  9. Outage: the relay's memory through a broker outage of
#     BENCH_OUTAGE_SECONDS s (default 600) with BENCH_OUTAGE_EVENTS events
#     (default 100000) retrying: brokers down, message.timeout.ms=1000,
#     backoff 100 ms to 2 s, max_attempts 1000000 (by ALTER SYSTEM, reset
#     afterwards), so every event fails again and again; RssAnon and VmRSS
#     with the failed-attempt count every 10 s, then brokers up and the
#     backlog drained and counted (test/bench/outage_memory.py).  Not in the
#     default sections (it takes BENCH_OUTAGE_SECONDS on its own).
# 10. Peers, side by side on topics of 6 partitions: outbox; PgQ (Debian's
#     postgresql-15-pgq3 and pgqd, ticking every 10 ms, with a Python
#     consumer producing each batch to Kafka: test/bench/pgq_relay.py); a
#     logical-decoding relay (pg_logical_emit_message in the publishing
#     transaction, pgoutput streamed with psycopg2, produced with
#     confluent-kafka, confirmed after Kafka acknowledged:
#     test/bench/logical_relay.py); and the ceiling, the bare C producer
#     producing continuously (librdkafka's default linger, no flush until
#     the end).  (a) Drain of a BENCH_PEER_EVENTS backlog (default 1000000,
#     transactions of 10000) until Kafka holds it all, with each relay's
#     CPU per event (test/bench/peer_drain.py), the peers once with the
#     CloudEvents headers outbox sends and once with only ce_id; (b) commit-to-consumer
#     latency at BENCH_RATE events/s for BENCH_SECONDS s, one event per
#     transaction, on an idle machine and (c) while pgbench runs its own
#     write load (BENCH_PEER_LOAD_CLIENTS clients, default 4, tpcb-like on
#     pgbench's tables in the same database) (test/bench/latency.py --mode
#     outbox|pgq|logical).  The cluster runs with wal_level = logical for
#     the logical relay's sake, whatever section runs.
# 11. Event contracts: outbox.publish() of an event type registered with a
#     JSON Schema (outbox.register_event_type()) against an unregistered
#     type, payloads of ten properties built into a table beforehand
#     (test/bench/contract_cost.py): (a) BENCH_CONTRACT_EVENTS publish()
#     calls (default 100000) in one statement, for an unregistered type, a
#     type registered with {"type": "object"}, one with a ten-property
#     schema (formats, pattern, enum, nested object, additionalProperties
#     false), and that one again without its ce_dataschema header; us/event
#     by the clock and the backend's CPU, ratio to unregistered; (b) one
#     publish() per transaction, pgbench -M prepared, 1 client, unregistered
#     against ten properties, BENCH_PGBENCH_SECONDS per side in
#     BENCH_PGBENCH_ROUNDS runs (and with synchronous_commit=off when
#     BENCH_SYNC_OFF=1); (c) a plpgsql loop of BENCH_CONTRACT_CALLS
#     publish() calls (default 50000), each in BEGIN ... EXCEPTION WHEN
#     invalid_parameter_value, of valid payloads against payloads with two
#     violations (rejected, SQLSTATE 22023); ratio rejected/accepted.  (a)
#     and (c) run BENCH_CONTRACT_ROUNDS times per variant (default 4), the
#     variants alternating; the relay is paused meanwhile and outbox.events
#     must hold exactly the accepted rows after each run.  About 2 minutes.
# 12. Delivery notifications: a backlog of BENCH_NOTIFY_EVENTS events
#     (default 200000) in one transaction drained as in 1 (A), with
#     outbox.notify_channel off and on (ALTER SYSTEM, reload), alternating
#     for BENCH_NOTIFY_ROUNDS rounds (default 2); while on, a psycopg2
#     listener in the same database reads every notification and must get
#     each event id exactly once; drain rates and the ratio on/off
#     (test/bench/notify_cost.py).  About 1 minute.
# 13. Waiting events: a backlog of BENCH_WAITING_EVENTS events (default
#     200000) in one transaction drained as in 1 (A), with no event waiting
#     and with BENCH_WAITING_SCHEDULED events (default 10000) published
#     with a deliver_at an hour ahead on keys of their own, alternating for
#     BENCH_WAITING_ROUNDS rounds (default 2); while they wait the relay
#     checks every new event with a key against them, must deliver none of
#     them, and (left alone 5 s with only them) must make no scans; drain
#     rates and the ratio (test/bench/waiting_cost.py).  About 1 minute.
# 14. Consuming into the database: BENCH_CONSUME_EVENTS events (default
#     20000) published with outbox in the benchmark's database and applied
#     into a table of a second database, by outbox's consumer (a handler,
#     batches of 100) and by a hand-written Python consumer (confluent-kafka,
#     psycopg2, one transaction per message with outbox.receive()), each
#     reading the whole topic with a fresh group, alternating for
#     BENCH_CONSUME_ROUNDS rounds (default 2); applied/s and the ratio; then
#     the latency from A's COMMIT to B's handler's COMMIT at
#     BENCH_CONSUME_RATE events/s (default 50) for BENCH_SECONDS s
#     (test/bench/consume_bench.py).  About 1 minute.
#
# BENCH_SECTIONS picks sections (default "1 2 3 4 5 6 7 8 10 11 12 13 14"; 4 and 7 take the
# relay's figures from 1, 7 those from 6 too).  Default sizes take about 21
# minutes on 2 CPUs: 9 for 1 to 5, most of it filling and purging the
# 10M-row inbox (BENCH_INBOX_ROWS scales it), and 11 for 6 to 8, most of it
# the two sustained runs (BENCH_SUSTAIN_SECONDS); sections 11 and 12 add
# about 3.
#
# Everything runs on this machine: the test Kafka broker (test/kafka_broker,
# librdkafka's mock cluster on loopback, one broker, 4 partitions per topic),
# a fresh PostgreSQL cluster run as the postgres user with outbox preloaded
# and default settings otherwise (fsync and synchronous_commit on), the
# publishers and the consumers; all compete for the same CPUs.  Both are
# started here and cleaned up on exit.  The broker runs with
# test/bench/tcp_nodelay.c preloaded, which turns Nagle off on its sockets
# as a real Kafka broker does (the stock mock stalls ~40 ms per round trip
# when a batch spans partitions; see that file); BENCH_STOCK_BROKER=1 runs
# the stock mock instead.  ERROR lines the PostgreSQL log gets during each
# phase are counted and shown next to its numbers.
#
# Run as root on Debian 12:  test/bench/run_bench.sh
# It sources test/setup.sh (installs packages if missing, builds and
# installs outbox and the test broker); BENCH_SKIP_BUILD=1 skips that and
# uses what is installed.  BENCH_PGPORT sets the port (default 54377; the
# socket lives in a private directory); BENCH_PROBE=count makes the drain
# clock poll count(*) itself instead of min(id)/max(id) (see drain.py);
# BENCH_RESULTS_DIR=DIR keeps the raw results (JSON) and the server log.
# The exit status is non-zero only when something broke (a step failed,
# events missing or lost), never because of the numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_DIR=test/bench

if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "run this as root: PostgreSQL runs as the postgres user" >&2
        exit 1
    fi
    export PATH="$(pg_config --bindir):$PATH"
    [ -x test/kafka_broker ] || make -s test/kafka_broker
else
    # section 10's peer
    OUTBOX_EXTRA_PACKAGES="postgresql-15-pgq3 pgqd"
    source test/setup.sh
fi

EVENTS=${BENCH_EVENTS:-1000000}
RATE=${BENCH_RATE:-200}
SECS=${BENCH_SECONDS:-20}
PORT=${BENCH_PGPORT:-54377}
SECTIONS=${BENCH_SECTIONS:-1 2 3 4 5 6 7 8 10 11 12 13 14}
PGB_SECS=${BENCH_PGBENCH_SECONDS:-10}
PUB_CLIENTS=${BENCH_PUBLISH_CLIENTS:-1 2 32}
PUB_BULK=${BENCH_PUBLISH_BULK:-200000}
SYNC_OFF=${BENCH_SYNC_OFF:-1}
INBOX_CLIENTS=${BENCH_INBOX_CLIENTS:-1}
INBOX_PRELOAD=${BENCH_INBOX_PRELOAD:-100000}
INBOX_ROWS=${BENCH_INBOX_ROWS:-10000000}
INBOX_SMALL_ROWS=${BENCH_INBOX_SMALL_ROWS:-2000000}
INBOX_RELAY_PURGE=${BENCH_INBOX_RELAY_PURGE:-1}
PGB_ROUNDS=${BENCH_PGBENCH_ROUNDS:-2}
SUSTAIN_RATE=${BENCH_SUSTAIN_RATE:-1000}
SUSTAIN_SECS=${BENCH_SUSTAIN_SECONDS:-300}
SUSTAIN_PUBLISHERS=${BENCH_SUSTAIN_PUBLISHERS:-4}
SUSTAIN_SAMPLE=${BENCH_SUSTAIN_SAMPLE:-10}
MEM_EVENTS=${BENCH_MEMORY_EVENTS:-1000000}
MEM_BIG=${BENCH_MEMORY_BIG:-200}
OUTAGE_SECS=${BENCH_OUTAGE_SECONDS:-600}
OUTAGE_EVENTS=${BENCH_OUTAGE_EVENTS:-100000}
PEER_EVENTS=${BENCH_PEER_EVENTS:-1000000}
PEER_LOAD_CLIENTS=${BENCH_PEER_LOAD_CLIENTS:-4}
CONTRACT_EVENTS=${BENCH_CONTRACT_EVENTS:-100000}
NOTIFY_EVENTS=${BENCH_NOTIFY_EVENTS:-200000}
NOTIFY_ROUNDS=${BENCH_NOTIFY_ROUNDS:-2}
WAITING_EVENTS=${BENCH_WAITING_EVENTS:-200000}
WAITING_SCHEDULED=${BENCH_WAITING_SCHEDULED:-10000}
WAITING_ROUNDS=${BENCH_WAITING_ROUNDS:-2}
CONTRACT_CALLS=${BENCH_CONTRACT_CALLS:-50000}
CONSUME_EVENTS=${BENCH_CONSUME_EVENTS:-20000}
CONSUME_ROUNDS=${BENCH_CONSUME_ROUNDS:-2}
CONSUME_RATE=${BENCH_CONSUME_RATE:-50}
CONTRACT_ROUNDS=${BENCH_CONTRACT_ROUNDS:-4}
TX_SIZE=100
want() { case " $SECTIONS " in *" $1 "*) return 0;; esac; return 1; }
SYNC_FLAG=""
if [ "$SYNC_OFF" = 1 ]; then SYNC_FLAG=--sync-off; fi
if [ $((EVENTS % TX_SIZE)) != 0 ] || [ "$EVENTS" -lt "$TX_SIZE" ]; then
    echo "BENCH_EVENTS must be a positive multiple of $TX_SIZE" >&2
    exit 1
fi
# Debian's python3-psycopg2 and python3-confluent-kafka are for the system
# interpreter, whatever python3 comes first in PATH
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source tree

WORK=$(mktemp -d /tmp/outbox-bench.XXXXXX)
chown postgres: "$WORK"
chmod 755 "$WORK"
RES="$WORK/results"
mkdir "$RES"
DSN="host=$WORK port=$PORT user=postgres dbname=bench"
PSQL="psql -X -h $WORK -p $PORT -U postgres -v ON_ERROR_STOP=1"
BROKER_PID=""

cleanup() {
    local rc=$?
    if [ -f "$WORK/pgqd.pid" ]; then kill "$(cat "$WORK/pgqd.pid")" 2>/dev/null || true; fi
    su postgres -c "pg_ctl -D $WORK/data -m fast stop" >/dev/null 2>&1 || true
    exec 3>&- || true
    if [ -n "$BROKER_PID" ]; then
        # the broker exits when its stdin closes; make sure of it
        for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    if [ $rc != 0 ]; then
        echo "== FAILED (status $rc); last lines of the PostgreSQL log:" >&2
        tail -n 30 "$WORK/postgres.log" >&2 2>/dev/null || true
    fi
    if [ -n "${BENCH_RESULTS_DIR:-}" ] && [ -d "$WORK/results" ]; then
        mkdir -p "$BENCH_RESULTS_DIR" && cp -r "$WORK/results/." "$BENCH_RESULTS_DIR/" || true
        cp "$WORK/postgres.log" "$BENCH_RESULTS_DIR/" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

step() { echo "== $(date +%T) $*" >&2; }

# Send one command to the broker (fd 3) and wait for its "ok"/"error" line.
broker_cmd() {
    local before now
    before=$(grep -cE '^(ok|error)' "$WORK/broker.log" || true)
    echo "$1" >&3
    for _ in $(seq 200); do
        now=$(grep -cE '^(ok|error)' "$WORK/broker.log" || true)
        [ "$now" -gt "$before" ] && break
        sleep 0.05
    done
    if [ "$(grep -E '^(ok|error)' "$WORK/broker.log" | tail -n 1)" != ok ] || [ "$now" -le "$before" ]; then
        echo "broker command '$1' failed: $(grep -E '^(ok|error)' "$WORK/broker.log" | tail -n 1)" >&2
        return 1
    fi
}

step "starting the test Kafka broker"
mkfifo "$WORK/broker.ctl"
if [ "${BENCH_STOCK_BROKER:-0}" = 1 ]; then
    BROKER_NOTE="stock mock broker (Nagle on: ~40 ms stalls when a batch spans partitions)"
    test/kafka_broker -f "$WORK/bootstrap" < "$WORK/broker.ctl" > "$WORK/broker.log" 2>&1 &
else
    BROKER_NOTE="mock broker with TCP_NODELAY (test/bench/tcp_nodelay.c)"
    cc -O2 -Wall -shared -fPIC -o "$WORK/tcp_nodelay.so" $BENCH_DIR/tcp_nodelay.c -ldl
    LD_PRELOAD="$WORK/tcp_nodelay.so" test/kafka_broker -f "$WORK/bootstrap" \
        < "$WORK/broker.ctl" > "$WORK/broker.log" 2>&1 &
fi
BROKER_PID=$!
exec 3> "$WORK/broker.ctl"
for _ in $(seq 100); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
BOOTSTRAP=$(cat "$WORK/bootstrap")
[ -n "$BOOTSTRAP" ] || { echo "the test broker did not start" >&2; exit 1; }
for t in drain.single drain.fresh drain.small latency.outbox latency.bare \
         drain.poll drain.bare1 drain.bare5 drain.bareb sustain.normal sustain.xmin \
         drain.xmin memory.small memory.big outage.memory; do
    broker_cmd "topic $t 4"
done
for s in outbox pgq logical bare pgq_id logical_id; do
    for t in peer.drain.$s peer.idle.$s peer.load.$s; do
        broker_cmd "topic $t 6"
    done
done

step "starting PostgreSQL (port $PORT, socket in $WORK)"
su postgres -c "initdb -D $WORK/data -A trust" >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
shared_preload_libraries = 'outbox'
outbox.kafka_brokers = '$BOOTSTRAP'
port = $PORT
unix_socket_directories = '$WORK'
listen_addresses = ''
wal_level = logical
CONF
su postgres -c "pg_ctl -D $WORK/data -l $WORK/postgres.log -w start" >/dev/null
$PSQL -d postgres -qc "CREATE DATABASE bench"
$PSQL -d bench -qc "CREATE EXTENSION outbox"

wait_drained() {
    local limit=$1
    for _ in $(seq $((limit * 10))); do
        [ "$($PSQL -d bench -Atc 'SELECT count(*) FROM outbox.events')" = 0 ] && return 0
        sleep 0.1
    done
    echo "outbox.events not drained after ${limit}s" >&2
    return 1
}

step "checking that the relay delivers"
$PSQL -d bench -qAtc "SELECT outbox.publish(topic => 'bench.warmup', payload => '{}'::jsonb)" >/dev/null
wait_drained 60

PGVERSION=$($PSQL -d bench -Atc "SHOW server_version")
SETTINGS=$($PSQL -d bench -Atc "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
    FROM pg_settings WHERE name IN ('outbox.batch_size', 'fsync', 'synchronous_commit', 'shared_buffers')")
export BENCH_M_NPROC=$(nproc)
export BENCH_M_CPU=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
export BENCH_M_PG="PostgreSQL $PGVERSION"
export BENCH_M_SETUP="$EVENTS-event backlogs; latency at $RATE events/s for $SECS s; sustained load at $SUSTAIN_RATE events/s for $SUSTAIN_SECS s; $BROKER_NOTE, 1 broker on loopback, 4 partitions per topic; $SETTINGS"
echo "{\"sections\": [$(echo $SECTIONS | sed 's/ /, /g')]}" > "$RES/sections.json"
$PY - "$RES/machine.json" <<'PYEOF'
import ctypes, json, os, sys
try:
    v = ctypes.CDLL('librdkafka.so.1')
    v.rd_kafka_version_str.restype = ctypes.c_char_p
    rdk = v.rd_kafka_version_str().decode()
except OSError:
    rdk = '?'
json.dump({'nproc': os.environ['BENCH_M_NPROC'], 'cpu': os.environ['BENCH_M_CPU'],
           'postgres': os.environ['BENCH_M_PG'], 'librdkafka': rdk,
           'setup': os.environ['BENCH_M_SETUP']}, open(sys.argv[1], 'w'))
PYEOF

prepare_phase() {
    $PSQL -d bench -qc "VACUUM outbox.events" -c "CHECKPOINT"
}

# ERROR lines the PostgreSQL log got since log_mark was called, saved for
# report.py as RES/errors_NAME.txt
log_mark() { LOG_OFFSET=$(stat -c %s "$WORK/postgres.log"); }
log_errors() {
    tail -c +$((LOG_OFFSET + 1)) "$WORK/postgres.log" | grep -E "(ERROR|FATAL|PANIC):" \
        > "$RES/errors_$1.txt" || true
}
PROBE=${BENCH_PROBE:-minmax}

if want 1; then
step "drain 1/3: $EVENTS events in one transaction"
prepare_phase
log_mark
timeout 900 $PY $BENCH_DIR/drain.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" --mode single --events "$EVENTS" \
    --probe "$PROBE" --topic drain.single > "$RES/drain_single.json"
log_errors drain_single

step "drain 2/3: $EVENTS events in one transaction, relay plans made with the backlog there"
prepare_phase
log_mark
timeout 900 $PY $BENCH_DIR/drain.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" --mode single --events "$EVENTS" \
    --fresh-plans --probe "$PROBE" --topic drain.fresh > "$RES/drain_fresh.json"
log_errors drain_fresh

step "drain 3/3: $((EVENTS / TX_SIZE)) transactions of $TX_SIZE events"
prepare_phase
log_mark
timeout 900 $PY $BENCH_DIR/drain.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" --mode small --events "$EVENTS" \
    --probe "$PROBE" --tx-size $TX_SIZE --topic drain.small \
    --psql "psql -h $WORK -p $PORT -U postgres -d bench" > "$RES/drain_small.json"
log_errors drain_small
fi

if want 2; then
step "latency 1/2: outbox, $RATE events/s for $SECS s"
prepare_phase
log_mark
timeout 600 $PY $BENCH_DIR/latency.py run --mode outbox --bootstrap "$BOOTSTRAP" --dsn "$DSN" \
    --topic latency.outbox --rate "$RATE" --seconds "$SECS" > "$RES/latency_outbox.json"
log_errors latency_outbox

step "latency 2/2: bare producer, $RATE events/s for $SECS s"
timeout 600 $PY $BENCH_DIR/latency.py run --mode bare --bootstrap "$BOOTSTRAP" \
    --topic latency.bare --rate "$RATE" --seconds "$SECS" > "$RES/latency_bare.json"
fi

if want 3; then
step "publish cost: publish() vs INSERT, pgbench ${PGB_SECS}s per side in $PGB_ROUNDS runs, clients: $PUB_CLIENTS"
log_mark
timeout 1800 $PY $BENCH_DIR/publish_cost.py --dsn "$DSN" --seconds "$PGB_SECS" \
    --clients "$PUB_CLIENTS" --rounds "$PGB_ROUNDS" --bulk "$PUB_BULK" $SYNC_FLAG \
    > "$RES/publish.json"
log_errors publish
fi

if want 4; then
step "drain comparison 1/4: polling relay (Python), $EVENTS events"
prepare_phase
log_mark
timeout 900 $PY $BENCH_DIR/drain_compare.py poll --dsn "$DSN" --bootstrap "$BOOTSTRAP" \
    --topic drain.poll --events "$EVENTS" > "$RES/compare_poll.json"
log_errors poll
cc -O2 -Wall -o "$WORK/bare_producer" $BENCH_DIR/bare_producer.c -lrdkafka
n=2
for v in "bare1 1 0" "bare5 default 0" "bareb 1 1000"; do
    set -- $v
    step "drain comparison $n/4: bare C producer, linger.ms=$2, flush every ${3/#0/-}, $EVENTS events"
    timeout 900 $PY $BENCH_DIR/drain_compare.py bare --binary "$WORK/bare_producer" \
        --bootstrap "$BOOTSTRAP" --topic "drain.$1" --events "$EVENTS" --linger "$2" \
        --flush-every "$3" > "$RES/compare_$1.json"
    n=$((n + 1))
done
fi

if want 5; then
step "inbox: receive() vs INSERT ON CONFLICT, pgbench ${PGB_SECS}s per side in $PGB_ROUNDS runs, clients: $INBOX_CLIENTS"
log_mark
timeout 1800 $PY $BENCH_DIR/inbox_bench.py calls --dsn "$DSN" --seconds "$PGB_SECS" \
    --clients "$INBOX_CLIENTS" --preload "$INBOX_PRELOAD" --rounds "$PGB_ROUNDS" $SYNC_FLAG \
    > "$RES/inbox_calls.json"
log_errors inbox_calls
# purge: NAME ROWS METHOD [--vacuum]
purge_run() {
    step "inbox purge: $3 on $2 rows${4:+ (then VACUUM)}"
    log_mark
    timeout 3600 $PY $BENCH_DIR/inbox_bench.py purge --dsn "$DSN" --rows "$2" --method "$3" ${4:-} \
        > "$RES/inbox_$1.json"
    log_errors "inbox_$1"
}
if [ "$INBOX_SMALL_ROWS" -gt 0 ]; then
    purge_run purge_small_function "$INBOX_SMALL_ROWS" function
    if [ "$INBOX_RELAY_PURGE" = 1 ]; then
        purge_run purge_small_relay "$INBOX_SMALL_ROWS" relay
    fi
fi
purge_run purge_function "$INBOX_ROWS" function --vacuum
if [ "$INBOX_RELAY_PURGE" = 1 ]; then
    purge_run purge_relay "$INBOX_ROWS" relay
fi
fi

# sustained load (6, 7): NAME TOPIC
sustain_run() {
    timeout $((SUSTAIN_SECS + 300)) $PY $BENCH_DIR/latency.py run --mode outbox --bootstrap "$BOOTSTRAP" \
        --dsn "$DSN" --topic "$2" --rate "$SUSTAIN_RATE" --seconds "$SUSTAIN_SECS" \
        --publishers "$SUSTAIN_PUBLISHERS" --sample "$SUSTAIN_SAMPLE" > "$RES/$1.json"
}

if want 6; then
step "sustained load: $SUSTAIN_RATE events/s for $SUSTAIN_SECS s from $SUSTAIN_PUBLISHERS sessions"
prepare_phase
log_mark
sustain_run sustain_normal sustain.normal
log_errors sustain_normal
fi

if want 7; then
step "held xmin: a session left idle in transaction"
prepare_phase
log_mark
HOLD_FLAG=""
if [ "${BENCH_XMIN_LOCK:-0}" = 1 ]; then HOLD_FLAG=--lock-events; fi
coproc HOLD { exec $PY $BENCH_DIR/hold_xmin.py --dsn "$DSN" $HOLD_FLAG; }
read -r -t 60 HELD <&"${HOLD[0]}"
echo "   held: $HELD" >&2
step "held xmin 1/2: drain of $EVENTS events in one transaction"
timeout 900 $PY $BENCH_DIR/drain.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" --mode single --events "$EVENTS" \
    --probe "$PROBE" --topic drain.xmin > "$RES/xmin_drain.json"
step "held xmin 2/2: sustained load, $SUSTAIN_RATE events/s for $SUSTAIN_SECS s"
sustain_run xmin_sustain sustain.xmin
echo end >&"${HOLD[1]}"
read -r -t 600 HELD <&"${HOLD[0]}"
echo "$HELD" > "$RES/xmin_hold.json"
wait "$HOLD_PID"
log_errors xmin
fi

if want 8; then
# memory: NAME TOPIC EVENTS TX_SIZE [drain.py options]
memory_run() {
    local name=$1 topic=$2 events=$3 tx=$4
    shift 4
    prepare_phase
    log_mark
    timeout 1800 $PY $BENCH_DIR/drain.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" --mode paused \
        --events "$events" --tx-size "$tx" --probe "$PROBE" --relay-memory 0.1 --timeout 1200 \
        --topic "$topic" "$@" > "$RES/$name.json"
    log_errors "$name"
}
step "memory 1/2: relay RSS draining $MEM_EVENTS events published while paused"
memory_run memory_small memory.small "$MEM_EVENTS" 10000
step "memory 2/2: relay RSS draining $MEM_BIG events of 1,000,000 bytes published while paused"
$PSQL -d bench -q -c "ALTER SYSTEM SET outbox.max_message_size = 2000000" \
    -c "ALTER SYSTEM SET outbox.kafka_properties = 'message.max.bytes=2000000'" \
    -c "SELECT pg_reload_conf()" >/dev/null
memory_run memory_big memory.big "$MEM_BIG" 10000 --payload-bytes 1000000
$PSQL -d bench -q -c "ALTER SYSTEM RESET outbox.max_message_size" \
    -c "ALTER SYSTEM RESET outbox.kafka_properties" -c "SELECT pg_reload_conf()" >/dev/null
fi

if want 9; then
step "outage: relay memory over $OUTAGE_SECS s, $OUTAGE_EVENTS events retrying with the brokers down"
$PSQL -d bench -q -c "ALTER SYSTEM SET outbox.kafka_properties = 'message.timeout.ms=1000'" \
    -c "ALTER SYSTEM SET outbox.retry_backoff_min = '100ms'" \
    -c "ALTER SYSTEM SET outbox.retry_backoff_max = '2s'" \
    -c "ALTER SYSTEM SET outbox.max_attempts = 1000000" -c "SELECT pg_reload_conf()" >/dev/null
prepare_phase
log_mark
timeout $((OUTAGE_SECS + 1200)) $PY $BENCH_DIR/outage_memory.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" \
    --broker-ctl "$WORK/broker.ctl" --topic outage.memory \
    --events "$OUTAGE_EVENTS" --seconds "$OUTAGE_SECS" > "$RES/outage_memory.json"
log_errors outage_memory
$PSQL -d bench -q -c "ALTER SYSTEM RESET outbox.kafka_properties" \
    -c "ALTER SYSTEM RESET outbox.retry_backoff_min" -c "ALTER SYSTEM RESET outbox.retry_backoff_max" \
    -c "ALTER SYSTEM RESET outbox.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null
fi

if want 10; then
step "peers: setting up PgQ (pgqd ticking every 10 ms) and the logical slot"
$PY $BENCH_DIR/peer_drain.py setup --dsn "$DSN"
cat > "$WORK/pgqd.ini" <<INI
[pgqd]
base_connstr = host=$WORK port=$PORT user=postgres
initial_database = bench
database_list = bench
logfile = $WORK/pgqd.log
pidfile = $WORK/pgqd.pid
ticker_period = 0.01
INI
chown postgres: "$WORK/pgqd.ini"
su postgres -c "pgqd -d $WORK/pgqd.ini"
for v in "outbox outbox" "pgq pgq" "logical logical" "pgq pgq_id --id-only" "logical logical_id --id-only"; do
    set -- $v
    step "peers: drain of $PEER_EVENTS events, $2"
    prepare_phase
    log_mark
    timeout 1800 $PY $BENCH_DIR/peer_drain.py run --system $1 --dsn "$DSN" --bootstrap "$BOOTSTRAP" \
        --topic peer.drain.$2 --events "$PEER_EVENTS" ${3:-} > "$RES/peer_drain_$2.json"
    log_errors "peer_drain_$2"
done
[ -x "$WORK/bare_producer" ] || cc -O2 -Wall -o "$WORK/bare_producer" $BENCH_DIR/bare_producer.c -lrdkafka
step "peers: the ceiling, bare C producer producing $PEER_EVENTS events continuously"
timeout 900 $PY $BENCH_DIR/drain_compare.py bare --binary "$WORK/bare_producer" \
    --bootstrap "$BOOTSTRAP" --topic peer.drain.bare --events "$PEER_EVENTS" --linger default \
    --flush-every 0 > "$RES/peer_drain_bare.json"
su postgres -c "pgbench -i -q -s 10 -h $WORK -p $PORT bench" >/dev/null 2>&1
for load in idle load; do
    LOADER=""
    if [ $load = load ]; then
        su postgres -c "pgbench -n -c $PEER_LOAD_CLIENTS -j 2 -T $((SECS * 3 + 60)) -h $WORK -p $PORT bench" \
            > "$WORK/pgbench_peers.log" 2>&1 &
        LOADER=$!
        sleep 2
    fi
    for s in outbox pgq logical; do
        step "peers: latency ($load), $s, $RATE events/s for $SECS s"
        PEER=""
        if [ $s != outbox ]; then
            coproc PEERP { exec $PY $BENCH_DIR/${s}_relay.py --dsn "$DSN" --bootstrap "$BOOTSTRAP"; }
            read -r -t 60 HELLO <&"${PEERP[0]}"
            PEER=$PEERP_PID
        fi
        log_mark
        timeout 600 $PY $BENCH_DIR/latency.py run --mode $s --bootstrap "$BOOTSTRAP" --dsn "$DSN" \
            --topic peer.$load.$s --rate "$RATE" --seconds "$SECS" > "$RES/peer_latency_${load}_$s.json"
        log_errors "peer_latency_${load}_$s"
        if [ -n "$PEER" ]; then
            echo stop >&"${PEERP[1]}"
            wait "$PEER"
        fi
    done
    if [ -n "$LOADER" ]; then kill "$LOADER" 2>/dev/null || true; wait "$LOADER" 2>/dev/null || true; fi
done
kill "$(cat $WORK/pgqd.pid)" 2>/dev/null || true
fi

if want 11; then
step "event contracts: publish() of registered vs unregistered types, rejected vs accepted payloads"
prepare_phase
log_mark
timeout 1800 $PY $BENCH_DIR/contract_cost.py --dsn "$DSN" --events "$CONTRACT_EVENTS" \
    --calls "$CONTRACT_CALLS" --rounds "$CONTRACT_ROUNDS" --seconds "$PGB_SECS" \
    --pgbench-rounds "$PGB_ROUNDS" $SYNC_FLAG > "$RES/contract.json"
log_errors contract
fi

if want 12; then
step "delivery notifications: drain of $NOTIFY_EVENTS events with outbox.notify_channel off and on, $NOTIFY_ROUNDS rounds"
prepare_phase
log_mark
timeout 1800 $PY $BENCH_DIR/notify_cost.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" \
    --events "$NOTIFY_EVENTS" --rounds "$NOTIFY_ROUNDS" --drain "$BENCH_DIR/drain.py" > "$RES/notify.json"
log_errors notify
fi

if want 13; then
step "waiting events: drain of $WAITING_EVENTS events with none waiting and with $WAITING_SCHEDULED scheduled, $WAITING_ROUNDS rounds"
prepare_phase
log_mark
timeout 1800 $PY $BENCH_DIR/waiting_cost.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" \
    --events "$WAITING_EVENTS" --scheduled "$WAITING_SCHEDULED" --rounds "$WAITING_ROUNDS" \
    --drain "$BENCH_DIR/drain.py" > "$RES/waiting.json"
log_errors waiting
fi

if want 14; then
step "consuming into the database: $CONSUME_EVENTS events applied by outbox's consumer and by a hand-written one, $CONSUME_ROUNDS rounds; latency"
prepare_phase
log_mark
timeout 1800 $PY $BENCH_DIR/consume_bench.py --dsn "$DSN" --bootstrap "$BOOTSTRAP" \
    --events "$CONSUME_EVENTS" --rounds "$CONSUME_ROUNDS" --rate "$CONSUME_RATE" \
    --seconds "$SECS" > "$RES/consume.json"
log_errors consume
fi

step "done"
echo
$PY $BENCH_DIR/report.py "$RES"
