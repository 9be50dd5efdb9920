#!/usr/bin/env python3
"""Section 4 of test/bench/run_bench.sh: the same backlog drained by a
hand-written polling relay, and sent by a bare producer with no database,
to set beside the outbox relay's drain (section 1).

drain_compare.py poll --dsn ... --bootstrap ... --topic T --events N
    Fills outbox_poll.events (outbox.events' shape, see poll_relay.py) with
    N events by one INSERT ... SELECT: the payloads and keys drain.py
    publishes (benchlib.PAYLOAD_SQL as bytea, convert_to(payload::text,
    'UTF8') as publish() stores it; keys i % 100; gen_random_uuid() ids;
    content_type application/json), then CHECKPOINT.  A warm-up message
    (key "warmup") is produced and flushed, then the counting consumer
    (count_topic.py) is assigned, then the clock starts and poll_relay.py's
    PollingRelay runs until a pass finds nothing; the clock stops after its
    last COMMIT.  Check: outbox_poll.events is empty and the topic holds N
    events with N distinct ce_id.

drain_compare.py bare --binary PATH --bootstrap ... --topic T --events N
        --linger MS|default [--flush-every K]
    The counting consumer is assigned, then the bare librdkafka producer
    (bare_producer.c, compiled by run_bench.sh) sends the same N events;
    its own clock (first produce to last delivery report) is used.
    Check: the topic holds N events with N distinct ce_id.

Each prints one JSON object: events, total_s, events_per_s, topic_check
(count_topic.py's result) and details.  Exit status 0 on success, 1 when
something failed (counts are checked by report.py).
"""

import argparse
import json
import subprocess
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import KEY_SQL, PAYLOAD_SQL
from drain import finish_counter, start_counter
import poll_relay


def poll(a):
    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    poll_relay.create_table(cur)
    t = time.monotonic()
    cur.execute("INSERT INTO outbox_poll.events (event_id, topic, key, payload, content_type, created_at)"
                " SELECT pg_catalog.gen_random_uuid(), %%s, %s,"
                "        pg_catalog.convert_to((%s)::text, 'UTF8'), 'application/json',"
                "        pg_catalog.clock_timestamp()"
                "   FROM pg_catalog.generate_series(1, %%s) AS g(i)"
                % (KEY_SQL.replace('%', '%%'), PAYLOAD_SQL.replace('%', '%%')),
                (a.topic, a.events))
    fill_s = time.monotonic() - t
    cur.execute('CHECKPOINT')

    producer = poll_relay.make_producer(a.bootstrap)
    failed = []
    producer.produce(a.topic, value=b'{}', key=b'warmup',
                     on_delivery=lambda err, msg: failed.append(err) if err else None)
    if producer.flush(60) != 0 or failed:
        print('drain_compare: the warm-up message was not delivered', file=sys.stderr)
        return 1
    counter = start_counter(a)
    if counter is None:
        return 1
    try:
        conn.autocommit = False
        relay = poll_relay.PollingRelay(conn, producer, batch=a.batch)
        t0 = time.monotonic()
        n = relay.drain()
        total_s = time.monotonic() - t0
        conn.autocommit = True
        cur.execute('SELECT pg_catalog.count(*) FROM outbox_poll.events')
        left = cur.fetchone()[0]
        check = finish_counter(counter)
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()
    cur.execute('DROP SCHEMA outbox_poll CASCADE')
    print(json.dumps({'what': 'poll', 'events': a.events, 'relayed': n, 'left': left,
                      'passes': relay.passes, 'batch': a.batch, 'fill_s': fill_s,
                      'total_s': total_s, 'events_per_s': n / total_s if total_s > 0 else None,
                      'topic_check': check}))
    return 0 if left == 0 and n == a.events else 1


def bare(a):
    counter = start_counter(a)
    if counter is None:
        return 1
    try:
        cmd = [a.binary, a.bootstrap, a.topic, str(a.events), a.linger]
        if a.flush_every:
            cmd.append(str(a.flush_every))
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=600)
        check = finish_counter(counter)
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()
    lines = p.stdout.strip().splitlines()
    if not lines:
        print('drain_compare: bare_producer printed nothing (status %d)' % p.returncode,
              file=sys.stderr)
        return 1
    r = json.loads(lines[-1])
    r.update({'what': 'bare', 'total_s': r['seconds'], 'topic_check': check,
              'status': p.returncode})
    print(json.dumps(r))
    return 0 if p.returncode == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('poll')
    p.add_argument('--dsn', required=True)
    p.add_argument('--batch', type=int, default=poll_relay.BATCH)
    b = sub.add_parser('bare')
    b.add_argument('--binary', required=True)
    b.add_argument('--linger', default='1', help='linger.ms, or "default"')
    b.add_argument('--flush-every', type=int, default=0)
    for s in (p, b):
        s.add_argument('--bootstrap', required=True)
        s.add_argument('--topic', required=True)
        s.add_argument('--events', type=int, required=True)
    a = ap.parse_args()
    return poll(a) if a.cmd == 'poll' else bare(a)


if __name__ == '__main__':
    sys.exit(main())
