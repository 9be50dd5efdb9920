#!/usr/bin/env python3
"""Drain of a backlog by outbox and by its peers, measured the same way:
section 10 of test/bench/run_bench.sh.

  peer_drain.py setup --dsn DSN            PgQ queue and consumer, the
        logical slot and its (empty) publication; once per database
  peer_drain.py run --system outbox|pgq|logical --events N --topic T ...

A run: with the system's relay stopped (outbox: pause_relay(); the peers:
their relay process not started), N events (benchlib's payloads and keys,
a fresh uuid each as ce_id) are published in transactions of --tx-size,
each one statement over generate_series:

  outbox   SELECT outbox.publish(topic, payload, key) ...
  pgq      SELECT pgq.insert_event('bench', topic, payload, key, ce_id, NULL, NULL) ...
  logical  SELECT pg_logical_emit_message(true, topic, ce_id || '\\n' || key || '\\n' || payload) ...

Then the relay starts (outbox: resume_relay(); the peers: their process,
pgq_relay.py or logical_relay.py, which says when it is ready) and the
clock runs until the topic's high watermarks add up to N (librdkafka
watermark queries every 20 ms): until Kafka holds every event, whatever
the relay still does in its database afterwards.  A consumer assigned
before publishing (count_topic.py) then reads the topic back: the broker
must have appended exactly N records, and what it read must be distinct.

CPU per event: the CPU time (utime + stime) over the drain, divided by N,
of every process that relays: outbox's relay worker; pgq_relay.py, its
database session, pgqd and pgqd's sessions; logical_relay.py and its
walsender.

--id-only: the peer sends only ce_id, not the other CloudEvents headers
(outbox always sends them all): the peers' cost without formatting them.

Prints one JSON object: system, id_only, events, seconds, events_per_s,
cpu_us_per_event, cpu_s (per process), check (count_topic.py's result).
Exit status 0 when the broker appended exactly N records and none was
read twice.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
from benchlib import PAYLOAD_SQL, KEY_SQL, process_cpu_s, relay_pid, wait_state
from drain import finish_counter, start_counter

HERE = os.path.dirname(os.path.abspath(__file__))

PUBLISH = {
    'outbox': "SELECT pg_catalog.count(outbox.publish(topic => {t}, payload => {p}, key => {k}))",
    'pgq': "SELECT pg_catalog.count(pgq.insert_event('bench', {t}, ({p})::text, {k},"
           " pg_catalog.gen_random_uuid()::text, NULL, NULL))",
    'logical': "SELECT pg_catalog.count(pg_catalog.pg_logical_emit_message(true, {t},"
               " pg_catalog.gen_random_uuid()::text || E'\\n' || {k} || E'\\n' || ({p})::text))",
}
SERIES = "  FROM pg_catalog.generate_series({lo}::int8, {hi}::int8) AS g(i)"


def setup(a):
    import psycopg2
    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute('CREATE EXTENSION IF NOT EXISTS pgq')
    cur.execute("SELECT pgq.create_queue('bench')")
    # tick as soon as there is anything (pgqd calls the ticker every
    # ticker_period); the defaults wait up to 3 s or 500 events
    cur.execute("SELECT pgq.set_queue_config('bench', 'ticker_max_lag', '0')")
    cur.execute("SELECT pgq.register_consumer('bench', 'kafka_relay')")
    cur.execute('CREATE PUBLICATION bench_relay')
    cur.execute("SELECT pg_create_logical_replication_slot('bench_relay', 'pgoutput')")
    conn.close()
    return 0


def watermark_total(consumer, topic, parts):
    from confluent_kafka import TopicPartition
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
               for p in parts)


def start_peer(a):
    script = {'pgq': 'pgq_relay.py', 'logical': 'logical_relay.py'}[a.system]
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, script),
                             '--dsn', a.dsn, '--bootstrap', a.bootstrap]
                            + (['--id-only'] if a.id_only else []),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    r, _, _ = select.select([proc.stdout], [], [], 60)
    if not r:
        proc.kill()
        raise RuntimeError('%s did not start' % script)
    hello = json.loads(proc.stdout.readline())
    return proc, hello


def relay_pids(a, cur, peer, hello):
    if a.system == 'outbox':
        return {'relay': relay_pid(cur)}
    pids = {'relay': peer.pid}
    if a.system == 'pgq':
        pids['relay session'] = hello['backend_pid']
        out = subprocess.run(['pgrep', '-x', 'pgqd'], capture_output=True, text=True).stdout.split()
        for n, pid in enumerate(out):
            pids['pgqd %d' % n] = int(pid)
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgqd'")
        for n, (pid,) in enumerate(cur.fetchall()):
            pids['pgqd session %d' % n] = pid
    else:
        pids['walsender'] = hello['walsender_pid']
    return pids


def run(a):
    import psycopg2
    from confluent_kafka import Consumer
    from benchlib import consumer_config, wait_partitions

    counter = start_counter(a)
    if counter is None:
        return 1
    wm = Consumer(consumer_config(a.bootstrap, 'bench-watermarks-%d' % os.getpid()))
    parts = wait_partitions(wm, a.topic, 30)

    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    if a.system == 'outbox':
        cur.execute('SELECT outbox.pause_relay()')
        wait_state(cur, True)
    topic = "'" + a.topic.replace("'", "''") + "'"
    sql = PUBLISH[a.system].format(t=topic, p=PAYLOAD_SQL, k=KEY_SQL) + SERIES
    t_pub = time.monotonic()
    for lo in range(1, a.events + 1, a.tx_size):
        cur.execute(sql.format(lo=lo, hi=min(lo + a.tx_size - 1, a.events)))
    publish_s = time.monotonic() - t_pub
    if a.system == 'pgq':
        cur.execute('SELECT pgq.force_tick(%s)', ('bench',))

    peer = None
    if a.system == 'outbox':
        pids = relay_pids(a, cur, None, None)
        cpu0 = {k: process_cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        cur.execute('SELECT outbox.resume_relay()')
    else:
        peer, hello = start_peer(a)
        pids = relay_pids(a, cur, peer, hello)
        cpu0 = {k: process_cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
    deadline = t0 + a.timeout
    while watermark_total(wm, a.topic, parts) < a.events:
        if peer is not None and peer.poll() is not None:
            print('peer_drain: the %s relay exited (status %d)' % (a.system, peer.returncode),
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print('peer_drain: Kafka did not get all %d events within %d s' % (a.events, a.timeout),
                  file=sys.stderr)
            break
        time.sleep(0.02)
    seconds = time.monotonic() - t0
    cpu1 = {k: process_cpu_s(p) for k, p in pids.items()}
    cpu = {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None
           for k in pids}
    if peer is not None:
        out, _ = peer.communicate('stop\n', timeout=120)
        peer_result = json.loads(out.strip().splitlines()[-1])
    else:
        peer_result = None
    wm.close()
    check = finish_counter(counter)
    if check is None:
        print('peer_drain: the checking consumer gave no count', file=sys.stderr)
        return 1
    total_cpu = sum(v for v in cpu.values() if v is not None)
    result = {
        'system': a.system,
        'id_only': a.id_only,
        'events': a.events,
        'tx_size': a.tx_size,
        'publish_s': publish_s,
        'seconds': seconds,
        'events_per_s': a.events / seconds,
        'cpu_s': cpu,
        'cpu_us_per_event': total_cpu / a.events * 1e6,
        'peer': peer_result,
        'check': check,
    }
    print(json.dumps(result))
    # the mock broker may drop records the checking consumer had not fetched
    # yet (see count_topic.py); what it read must be distinct
    ok = (check['high_watermark_total'] == a.events
          and check['distinct_ce_id'] == check['messages'])
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('setup')
    s.add_argument('--dsn', required=True)
    r = sub.add_parser('run')
    r.add_argument('--system', choices=sorted(PUBLISH), required=True)
    r.add_argument('--dsn', required=True)
    r.add_argument('--bootstrap', required=True)
    r.add_argument('--topic', required=True)
    r.add_argument('--events', type=int, default=1000000)
    r.add_argument('--tx-size', type=int, default=10000)
    r.add_argument('--timeout', type=int, default=900)
    r.add_argument('--id-only', action='store_true',
                   help='the peer sends only the ce_id header (pgq_relay.py, logical_relay.py)')
    a = ap.parse_args()
    return setup(a) if a.cmd == 'setup' else run(a)


if __name__ == '__main__':
    sys.exit(main())
