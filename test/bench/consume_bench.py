#!/usr/bin/env python3
"""Consuming into the database: outbox's in-database consumer against the
consumer teams write by hand, in the same run.  Section 14 of
test/bench/run_bench.sh.

The messages: --events events published in database A (the benchmark's
database, --dsn) with outbox.publish() on one topic, 100 keys, so they
carry the relay's CloudEvents headers; the relay delivers them.  Database
B (created here, with the extension) applies them into a table: one
INSERT of (event_id, key, seq) per message.

(a) Throughput, --rounds rounds, the sides alternating, each round reading
the whole topic from the beginning with a fresh group:
  - outbox: outbox.subscribe() of a handler doing that INSERT (batch_size
    100, the default): every batch one transaction, a savepoint and an
    inbox mark per message, the offsets stored with the effects;
  - hand-written, as teams write it: Python confluent-kafka (auto commit,
    librdkafka's defaults) and psycopg2, one transaction per message:
    SELECT outbox.receive(consumer, ce_id), then the INSERT when it says
    new, COMMIT.
  Applied/s counts from the first message applied to the last (the row's
  clock_timestamp()), so the group's join is left out of both; total s is
  from the start (subscribe(), or the consumer's creation) to the last.
  Both consumers use fetch.wait.max.ms = 1: the test broker (librdkafka's
  mock cluster) answers a fetch only when that expires, where a real broker
  answers as soon as data is there.

(b) Latency at low load: one event per transaction at --rate events/s for
--seconds s published in A; B's handler inserts it and NOTIFYs its event id,
which a listener on B gets when B's transaction commits.  Latency is from
A's COMMIT returning to that notification, both clocks in this process.

Prints one JSON object; exit status 1 when a side did not apply every
message exactly once.
"""

import argparse
import json
import select
import sys
import threading
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2
from confluent_kafka import Consumer

from benchlib import alternating, header, log, percentile

TOPIC = 'consume_bench'
LATENCY_TOPIC = 'consume_latency'
CHANNEL = 'bench_applied'
DB_B = 'bench_consumer'


def connect(dsn, db=None, autocommit=True):
    conn = psycopg2.connect(dsn, dbname=db) if db else psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


def wait_drained(cur, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur.execute('SELECT NOT EXISTS (SELECT FROM outbox.events)')
        if cur.fetchone()[0]:
            return True
        time.sleep(0.05)
    return False


def setup_b(dsn, fetch_props):
    a = connect(dsn)
    cur = a.cursor()
    cur.execute('DROP DATABASE IF EXISTS %s' % DB_B)
    cur.execute('CREATE DATABASE %s' % DB_B)
    cur.execute("ALTER SYSTEM SET outbox.consumer_properties = %s", (fetch_props,))
    cur.execute('SELECT pg_reload_conf()')
    a.close()
    b = connect(dsn, DB_B)
    cur = b.cursor()
    cur.execute('''
CREATE EXTENSION outbox;
CREATE TABLE applied (event_id text, key text, seq int, side text,
                      applied_at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION on_event(m outbox.message) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.applied (event_id, key, seq, side)
    VALUES (m.event_id, m.key, (m.payload->>'seq')::int, 'outbox') $$;
CREATE FUNCTION on_latency(m outbox.message) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.applied (event_id, key, seq, side)
    VALUES (m.event_id, m.key, (m.payload->>'seq')::int, 'latency');
    SELECT pg_notify('%s', m.event_id) $$;
''' % CHANNEL)
    return b


def applied_check(cur, side, events):
    cur.execute('SELECT count(*), count(DISTINCT event_id), '
                'extract(epoch FROM max(applied_at) - min(applied_at))::float8, max(applied_at) '
                'FROM applied WHERE side = %s', (side,))
    return cur.fetchone()


def run_outbox(b, rnd, events, timeout):
    cur = b.cursor()
    consumer = 'bench_outbox_%d' % rnd
    cur.execute("DELETE FROM applied WHERE side = 'outbox'")
    started = time.time()
    cur.execute("SELECT outbox.subscribe(consumer => %s, topics => %s, "
                "handler => 'public.on_event(outbox.message)')", (consumer, [TOPIC]))
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        cur.execute("SELECT count(*) FROM applied WHERE side = 'outbox'")
        n = cur.fetchone()[0]
        if n >= events:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    count, distinct, span, last = applied_check(cur, 'outbox', events)
    cur.execute('SELECT outbox.unsubscribe(%s)', (consumer,))
    return {'side': 'outbox', 'round': rnd, 'applied': count, 'distinct': distinct,
            'applied_per_s': (distinct - 1) / span if span else None,
            'total_s': last.timestamp() - started if last else None}


def run_python(dsn, bootstrap, rnd, events, timeout):
    """The hand-written consumer: confluent-kafka with auto commit, one
    psycopg2 transaction per message, outbox.receive() for duplicates."""
    conn = connect(dsn, DB_B, autocommit=False)
    cur = conn.cursor()
    cur.execute("DELETE FROM applied WHERE side = 'python'")
    conn.commit()
    consumer_name = 'bench_python_%d' % rnd
    started = time.time()
    c = Consumer({'bootstrap.servers': bootstrap, 'group.id': 'bench-python-%d' % rnd,
                  'auto.offset.reset': 'earliest', 'fetch.wait.max.ms': 1})
    c.subscribe([TOPIC])
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < events and time.monotonic() < deadline:
        msg = c.poll(0.1)
        if msg is None or msg.error():
            continue
        seen += 1
        value = json.loads(msg.value())
        cur.execute('SELECT outbox.receive(%s, %s)', (consumer_name, header(msg, 'ce_id')))
        if cur.fetchone()[0]:
            cur.execute("INSERT INTO applied (event_id, key, seq, side) VALUES (%s, %s, %s, 'python')",
                        (header(msg, 'ce_id'), msg.key().decode(), value['seq']))
        conn.commit()
    c.close()
    conn.autocommit = True
    count, distinct, span, last = applied_check(cur, 'python', events)
    conn.close()
    return {'side': 'python', 'round': rnd, 'applied': count, 'distinct': distinct,
            'applied_per_s': (distinct - 1) / span if span else None,
            'total_s': last.timestamp() - started if last else None}


class Listener(threading.Thread):
    """LISTENs on B and notes when each event id's notification came."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.conn = connect(dsn, DB_B)
        self.conn.cursor().execute('LISTEN ' + CHANNEL)
        self.at = {}
        self.stop = False

    def run(self):
        while not self.stop:
            if select.select([self.conn], [], [], 0.1)[0]:
                self.conn.poll()
                now = time.monotonic()
                while self.conn.notifies:
                    self.at[self.conn.notifies.pop(0).payload] = now


def run_latency(dsn, b, rate, seconds):
    cur = b.cursor()
    cur.execute("SELECT outbox.subscribe(consumer => 'bench_latency', topics => %s, "
                "handler => 'public.on_latency(outbox.message)')", ([LATENCY_TOPIC],))
    a = connect(dsn, autocommit=False)
    acur = a.cursor()
    # the topic exists and the consumer has its partitions before the clock runs
    acur.execute("SELECT outbox.publish(%s, '{\"seq\": 0}', key => 'warm-up')", (LATENCY_TOPIC,))
    a.commit()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cur.execute("SELECT count(*) FROM applied WHERE side = 'latency'")
        if cur.fetchone()[0] >= 1:
            break
        time.sleep(0.05)
    listener = Listener(dsn)
    listener.start()
    committed = {}
    n = int(rate * seconds)
    start = time.monotonic()
    for i in range(1, n + 1):
        target = start + i / rate
        pause = target - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        acur.execute("SELECT outbox.publish(%s, jsonb_build_object('seq', %s), key => %s)",
                     (LATENCY_TOPIC, i, str(i % 100)))
        eid = acur.fetchone()[0]
        a.commit()
        committed[eid] = time.monotonic()
    deadline = time.monotonic() + 30
    while len([e for e in committed if e in listener.at]) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    listener.stop = True
    lat = sorted((listener.at[e] - t) * 1000 for e, t in committed.items() if e in listener.at)
    cur.execute("SELECT outbox.unsubscribe('bench_latency')")
    a.close()
    return {'events': n, 'received': len(lat), 'rate': rate, 'seconds': seconds,
            'p50_ms': percentile(lat, 50), 'p90_ms': percentile(lat, 90),
            'p99_ms': percentile(lat, 99), 'max_ms': lat[-1] if lat else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--events', type=int, default=20000)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--rate', type=float, default=50)
    ap.add_argument('--seconds', type=float, default=10)
    ap.add_argument('--timeout', type=float, default=600)
    args = ap.parse_args()

    b = setup_b(args.dsn, 'fetch.wait.max.ms=1')
    a = connect(args.dsn)
    acur = a.cursor()
    log('publishing %d events in A' % args.events)
    acur.execute("SELECT count(*) FROM (SELECT outbox.publish(%s, jsonb_build_object('seq', s), "
                 "key => (s %% 100)::text) FROM generate_series(1, %s) s) x", (TOPIC, args.events))
    if not wait_drained(acur):
        print('consume_bench: A did not deliver the events', file=sys.stderr)
        return 1
    runs = []
    for rnd, side in alternating(['outbox', 'python'], args.rounds):
        log('round %d: %s' % (rnd + 1, side))
        if side == 'outbox':
            runs.append(run_outbox(b, rnd, args.events, args.timeout))
        else:
            runs.append(run_python(args.dsn, args.bootstrap, rnd, args.events, args.timeout))
        log('  %s' % json.dumps(runs[-1]))
    log('latency: %g events/s for %g s' % (args.rate, args.seconds))
    latency = run_latency(args.dsn, b, args.rate, args.seconds)
    b.close()
    cur = connect(args.dsn).cursor()
    cur.execute("ALTER SYSTEM RESET outbox.consumer_properties")
    cur.execute('SELECT pg_reload_conf()')
    ok = all(r['applied'] == args.events and r['distinct'] == args.events for r in runs) and \
        latency['received'] == latency['events']
    print(json.dumps({'events': args.events, 'runs': runs, 'latency': latency, 'ok': ok}))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
