#!/usr/bin/env python3
"""A PgQ-to-Kafka relay, written the way a PgQ user writes one: the peer
that section 10 of test/bench/run_bench.sh measures beside outbox.

Publishing (peer_drain.py, latency.py --mode pgq) happens in the
application's transaction:

    SELECT pgq.insert_event('bench', <topic>, <payload>, <key>, <ce_id>,
                            NULL, NULL)

pgqd (Debian's pgqd) ticks the queue; this consumer loops as skytools'
Consumer does:

    next_batch -> get_batch_cursor (FETCH --fetch rows at a time) ->
    produce each event -> flush (wait for every acknowledgement) ->
    finish_batch -> COMMIT

so an event leaves the queue only after Kafka acknowledged it (a crash
produces the batch again, as outbox does).  When there is no batch it
sleeps --idle-sleep s (PgQ has no wake-up at commit; skytools sleeps
loop_delay, 1 s by default; the benchmark tunes it down to 5 ms).

The producer has outbox's settings (benchlib.producer_config: acks=all,
enable.idempotence=true, linger.ms=1, murmur2_random partitioner) and the
same CloudEvents headers: ce_specversion, ce_id (ev_extra2), ce_source,
ce_type (the topic), ce_time (ev_time), content-type; with --id-only just
ce_id.

Runs until stdin closes or says "stop", then prints one JSON object:
events, batches, failed, the pid of its database session (for the
driver's CPU accounting).  Exit status 0 unless a delivery failed.
"""

import argparse
import json
import select
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
from benchlib import cloudevents_headers, produce_waiting, producer_config


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--queue', default='bench')
    ap.add_argument('--consumer', default='kafka_relay')
    ap.add_argument('--fetch', type=int, default=1000)
    ap.add_argument('--idle-sleep', type=float, default=0.005)
    ap.add_argument('--id-only', action='store_true',
                    help='send only the ce_id header, not the other CloudEvents ones '
                         '(a leaner relay: what formatting them costs in Python)')
    a = ap.parse_args()

    import psycopg2
    from confluent_kafka import Producer

    conn = psycopg2.connect(a.dsn)
    cur = conn.cursor()
    cur.execute('SELECT pg_backend_pid()')
    backend = cur.fetchone()[0]
    conn.commit()
    p = Producer(producer_config(a.bootstrap, 'bench-pgq-relay'))
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(str(err))

    sys.stdout.write(json.dumps({'ready': True, 'backend_pid': backend}) + '\n')
    sys.stdout.flush()
    events = batches = 0
    while True:
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r and sys.stdin.readline().strip() in ('stop', ''):
            break
        cur.execute('SELECT pgq.next_batch(%s, %s)', (a.queue, a.consumer))
        batch = cur.fetchone()[0]
        if batch is None:
            conn.commit()
            time.sleep(a.idle_sleep)
            continue
        # the first rows, and a cursor for the rest (FETCH gives all columns)
        cur.execute('SELECT * FROM pgq.get_batch_cursor(%s, %s, %s)', (batch, 'relay_batch', a.fetch))
        col = {d[0]: n for n, d in enumerate(cur.description)}
        rows = cur.fetchall()
        while rows:
            for row in rows:
                topic, data, key, eid, at = (row[col['ev_type']], row[col['ev_data']],
                                             row[col['ev_extra1']], row[col['ev_extra2']],
                                             row[col['ev_time']])
                produce_waiting(p, topic, data.encode(), key.encode() if key else None,
                                cloudevents_headers(eid, topic, at, a.id_only), on_delivery)
            events += len(rows)
            if len(rows) < a.fetch:
                break
            cur.execute('FETCH %d FROM relay_batch' % a.fetch)
            rows = cur.fetchall()
        cur.execute('CLOSE relay_batch')
        if p.flush(60) > 0 or failed:
            print('pgq_relay: delivery failed: %s' % (failed[:1] or 'timeout'), file=sys.stderr)
            conn.rollback()
            return 1
        cur.execute('SELECT pgq.finish_batch(%s)', (batch,))
        conn.commit()
        batches += 1
    conn.close()
    print(json.dumps({'events': events, 'batches': batches, 'failed': len(failed),
                      'backend_pid': backend}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
