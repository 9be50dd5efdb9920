#!/usr/bin/env python3
"""Commit-to-consumer latency of the outbox at a steady low rate, and the
floor a bare Kafka producer gets on the same broker.  Part of
test/bench/run_bench.sh.

  latency.py run --mode outbox ...   a psycopg2 session (autocommit off)
        publishes one event per transaction at --rate events/s for
        --seconds s (open loop: event i is due at start + i/rate); each
        event's clock starts right after COMMIT returns (time.time()), keyed
        by the event id publish() returned (the relay sends it as ce_id).
  latency.py run --mode bare ...     a confluent-kafka producer with the
        relay's settings (acks=all, enable.idempotence=true, linger.ms=1,
        murmur2_random) produces the same events (same payload bytes, key
        and CloudEvents headers) at the same rate; the clock starts right
        before produce() is called.

In both, a consumer in a separate process (latency.py consume: confluent-
kafka, fetch.wait.max.ms=1, all partitions of a fresh topic assigned from
the beginning, poll() one message at a time) stamps each message with
time.time() when poll() returns it, by its ce_id header.  Before the timed
part, warm-up events (key "warmup", not counted) are sent until the
consumer has seen one, so connections and metadata are in place.

Prints one JSON object: sent, received, lost (sent but never received
within --grace s of the end), duplicates, unexpected, achieved rate, and the
latency percentiles in ms (nearest rank): p50 p90 p99 p99.9 max mean, the
number of events slower than 100 ms (over_100ms); for
outbox also the publish+COMMIT round trip seen by the client (p50, p99).
Exit status 0 when the run completed (whatever the numbers), 1 on failure.
"""

import argparse
import datetime
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
from benchlib import (consumer_config, header, key_of, payload_json,
                      percentile, wait_partitions)

WARMUP_KEY = 'warmup'
PERCENTILES = (50, 90, 99, 99.9)


# --------------------------------------------------------------------------
# consumer process

def consume(a):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    c = Consumer(consumer_config(a.bootstrap, 'bench-latency-%d' % os.getpid()))
    parts = wait_partitions(c, a.topic, 30)
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in parts])

    stop = {'expect': None, 'at': None}

    def read_stdin():
        for line in sys.stdin:
            if line.startswith('stop '):
                stop['expect'] = int(line.split()[1])
                stop['at'] = time.monotonic()
                return
        stop['expect'] = 0          # driver went away
        stop['at'] = time.monotonic()

    threading.Thread(target=read_stdin, daemon=True).start()

    recv = {}
    dups = 0
    warm = 0
    ready = False
    last_new = time.monotonic()
    while True:
        m = c.poll(0.05)
        t = time.time()
        if m is not None and not m.error():
            if m.key() == WARMUP_KEY.encode():
                warm += 1
                if not ready:
                    ready = True
                    sys.stdout.write('ready\n')
                    sys.stdout.flush()
            else:
                eid = header(m, 'ce_id')
                if eid in recv:
                    dups += 1
                else:
                    recv[eid] = t
                    last_new = time.monotonic()
        if stop['expect'] is not None:
            if len(recv) >= stop['expect']:
                break
            if time.monotonic() - max(last_new, stop['at']) > a.grace:
                break
    c.close()
    sys.stdout.write(json.dumps({'recv': recv, 'duplicates': dups, 'warmup': warm}) + '\n')
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------
# publishers

class OutboxPublisher:
    def __init__(self, dsn, topic):
        import psycopg2
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = False
        self.cur = self.conn.cursor()
        self.topic = topic
        self.rtt = []

    def send(self, i, key):
        t_start = time.time()
        self.cur.execute('SELECT outbox.publish(topic => %s, payload => %s::jsonb, key => %s)',
                         (self.topic, payload_json(i), key))
        eid = self.cur.fetchone()[0]
        self.conn.commit()
        t = time.time()
        self.rtt.append(t - t_start)
        return str(eid), t

    def finish(self):
        self.conn.close()
        return 0


class BarePublisher:
    def __init__(self, bootstrap, topic):
        from confluent_kafka import Producer
        self.p = Producer({
            'bootstrap.servers': bootstrap,
            'client.id': 'bench-bare',
            'acks': 'all',
            'enable.idempotence': True,
            'linger.ms': 1,
            'message.timeout.ms': 30000,
            'partitioner': 'murmur2_random',
        })
        self.topic = topic
        self.failed = 0
        self.rtt = []

    def _dr(self, err, msg):
        if err is not None:
            self.failed += 1

    def send(self, i, key):
        eid = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.timezone.utc)
        headers = [('ce_specversion', b'1.0'),
                   ('ce_id', eid.encode()),
                   ('ce_source', b'/outbox/bench'),
                   ('ce_type', self.topic.encode()),
                   ('ce_time', now.strftime('%Y-%m-%dT%H:%M:%S.%fZ').encode()),
                   ('content-type', b'application/json')]
        value = payload_json(i).encode()
        t = time.time()
        self.p.produce(self.topic, value=value, key=key.encode(), headers=headers,
                       on_delivery=self._dr)
        self.p.poll(0)
        return eid, t

    def finish(self):
        left = self.p.flush(30)
        return left + self.failed


# --------------------------------------------------------------------------
# driver

def summarize(values_s):
    v = sorted(x * 1000.0 for x in values_s)
    out = {'p%s' % p: percentile(v, p) for p in PERCENTILES}
    out['max'] = v[-1] if v else None
    out['mean'] = sum(v) / len(v) if v else None
    return out


def run(a):
    cons = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'consume',
                             '--bootstrap', a.bootstrap, '--topic', a.topic,
                             '--grace', str(a.grace)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pub = (OutboxPublisher(a.dsn, a.topic) if a.mode == 'outbox'
               else BarePublisher(a.bootstrap, a.topic))

        # warm-up: until the consumer sees one
        deadline = time.monotonic() + 60
        ready = False
        while not ready:
            if time.monotonic() > deadline or cons.poll() is not None:
                print('latency: consumer never saw a warm-up event', file=sys.stderr)
                return 1
            pub.send(0, WARMUP_KEY)
            r, _, _ = select.select([cons.stdout], [], [], 0.2)
            if r:
                ready = cons.stdout.readline().strip() == 'ready'
        if a.mode == 'bare':
            pub.p.flush(10)
        time.sleep(1.0)
        pub.rtt = []

        n = int(round(a.rate * a.seconds))
        sent = {}
        start = time.monotonic()
        for i in range(1, n + 1):
            due = start + (i - 1) / a.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            eid, t = pub.send(i, key_of(i))
            sent[eid] = t
        elapsed = time.monotonic() - start
        problems = pub.finish()

        cons.stdin.write('stop %d\n' % n)
        cons.stdin.flush()
        out, _ = cons.communicate(timeout=a.grace + 60)
        if cons.returncode != 0:
            print('latency: consumer failed', file=sys.stderr)
            return 1
        got = json.loads(out.strip().splitlines()[-1])
    finally:
        if cons.poll() is None:
            cons.kill()
            cons.wait()

    recv = got['recv']
    lat = [recv[e] - t for e, t in sent.items() if e in recv]
    result = {
        'mode': a.mode,
        'rate': a.rate,
        'seconds': a.seconds,
        'sent': len(sent),
        'received': len(lat),
        'lost': len(sent) - len(lat),
        'unexpected': len(set(recv) - set(sent)),
        'duplicates': got['duplicates'],
        'achieved_rate': len(sent) / elapsed if elapsed > 0 else None,
        'producer_problems': problems,
        'latency_ms': summarize(lat),
        'over_100ms': sum(1 for x in lat if x > 0.1),
    }
    if a.mode == 'outbox':
        result['commit_rtt_ms'] = summarize(pub.rtt)
    print(json.dumps(result))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run')
    r.add_argument('--mode', choices=('outbox', 'bare'), required=True)
    r.add_argument('--bootstrap', required=True)
    r.add_argument('--dsn', help='libpq connection string (outbox mode)')
    r.add_argument('--topic', required=True)
    r.add_argument('--rate', type=float, default=200)
    r.add_argument('--seconds', type=float, default=20)
    r.add_argument('--grace', type=float, default=15,
                   help='after the end, wait this long without news before calling the rest lost')
    c = sub.add_parser('consume')
    c.add_argument('--bootstrap', required=True)
    c.add_argument('--topic', required=True)
    c.add_argument('--grace', type=float, default=15)
    a = ap.parse_args()
    if a.cmd == 'consume':
        return consume(a)
    if a.mode == 'outbox' and not a.dsn:
        ap.error('--dsn is needed with --mode outbox')
    return run(a)


if __name__ == '__main__':
    sys.exit(main())
