#!/usr/bin/env python3
"""Commit-to-consumer latency of the outbox at a steady rate, and the
floor a bare Kafka producer gets on the same broker.  Part of
test/bench/run_bench.sh (section 2 at a low rate; sections 6 and 7, the
sustained load, with --publishers and --sample).

  latency.py run --mode outbox ...   a psycopg2 session (autocommit off)
        publishes one event per transaction at --rate events/s for
        --seconds s (open loop: event i is due at start + i/rate); each
        event's clock starts right after COMMIT returns (time.time()), keyed
        by the event id publish() returned (the relay sends it as ce_id).
        --publishers N: N such sessions, each in its own thread, share the
        schedule: a free session takes the next event, waits until it is
        due and publishes it; one session alone cannot keep a high rate,
        waiting ~0.5 ms for the WAL flush at each COMMIT.
  latency.py run --mode bare ...     a confluent-kafka producer with the
        relay's settings (acks=all, enable.idempotence=true, linger.ms=0,
        murmur2_random) produces the same events (same payload bytes, key
        and CloudEvents headers) at the same rate; the clock starts right
        before produce() is called.

  latency.py run --mode pgq|logical ...   the peers of section 10: as
        outbox mode, publishing with pgq.insert_event() or
        pg_logical_emit_message() (see peer_drain.py), the event id made
        here; the peer's relay (pgq_relay.py, logical_relay.py) is started
        by run_bench.sh.

In all modes, a consumer in a separate process (latency.py consume: confluent-
kafka, fetch.wait.max.ms=1, all partitions of a fresh topic assigned from
the beginning, poll() one message at a time) stamps each message with
time.time() when poll() returns it, by its ce_id header.  Before the timed
part, warm-up events (key "warmup", not counted) are sent until the
consumer has seen one, so connections and metadata are in place.

Prints one JSON object: sent, received, lost (sent but never received
within --grace s of the end), duplicates, unexpected, achieved rate, and the
latency percentiles in ms (nearest rank): p50 p90 p99 p99.9 max mean, the
number of events slower than 100 ms (over_100ms); the same percentiles
of the two stages (stages_ms), split at the record's timestamp, which
librdkafka sets when produce() is called (CreateTime, in ms, from the same
clock): to_produce, from the clock's start to the relay's produce() call
(for outbox: the wake-up, the read, the WAL flush), and to_consumer, from
there to the consumer (librdkafka's queue, the broker, the fetch); for
the database modes also the publish+COMMIT round trip seen by the client
(p50, p99).

--sample S (outbox): every S s of the timed part, and at its end, a sample
of the relay process and the table: events published so far, the relay's pid
(pg_stat_activity), CPU seconds (utime + stime, /proc/PID/stat), VmRSS and
RssAnon (/proc/PID/status), count(*) of outbox.events and its
pg_total_relation_size; put in the output as "samples", with
"relay_cpu_share", the relay's CPU time over the timed part / its duration
(1.0 = one core busy).

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
from benchlib import (cloudevents_headers, consumer_config, header, producer_config, key_of, payload_json,
                      percentile, process_cpu_s, process_memory_kb, relay_pid,
                      wait_partitions)

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
                    # the record's timestamp: when the relay called produce()
                    recv[eid] = (t, m.timestamp()[1] / 1000.0)
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


class PeerPublisher:
    """Publishing for the peers of section 10: one event per transaction,
    the event id made here (the peer relay sends it as ce_id)."""

    SQL = {
        'pgq': "SELECT pgq.insert_event('bench', %(t)s, %(p)s, %(k)s, %(e)s, NULL, NULL)",
        'logical': "SELECT pg_logical_emit_message(true, %(t)s,"
                   " %(e)s || E'\\n' || %(k)s || E'\\n' || %(p)s)",
    }

    def __init__(self, mode, dsn, topic):
        import psycopg2
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = False
        self.cur = self.conn.cursor()
        self.sql = self.SQL[mode]
        self.topic = topic
        self.rtt = []

    def send(self, i, key):
        eid = str(uuid.uuid4())
        t_start = time.time()
        self.cur.execute(self.sql, {'t': self.topic, 'p': payload_json(i), 'k': key, 'e': eid})
        self.conn.commit()
        t = time.time()
        self.rtt.append(t - t_start)
        return eid, t

    def finish(self):
        self.conn.close()
        return 0


class BarePublisher:
    def __init__(self, bootstrap, topic):
        from confluent_kafka import Producer
        self.p = Producer(producer_config(bootstrap, 'bench-bare'))
        self.topic = topic
        self.failed = 0
        self.rtt = []

    def _dr(self, err, msg):
        if err is not None:
            self.failed += 1

    def send(self, i, key):
        eid = str(uuid.uuid4())
        headers = cloudevents_headers(eid, self.topic,
                                      datetime.datetime.now(datetime.timezone.utc))
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
# open-loop schedule and the relay sampler

class Schedule:
    """Events 1..n due at start + (i - 1) / rate, handed out in order to
    publisher threads; counts the events sent."""

    def __init__(self, n, rate):
        self.n = n
        self.rate = rate
        self.start = None
        self.next = 1
        self.sent = 0
        self.lock = threading.Lock()

    def take(self):
        """The next event number and its due time (None when all are taken)."""
        with self.lock:
            if self.next > self.n:
                return None
            i = self.next
            self.next += 1
        return i, self.start + (i - 1) / self.rate

    def done(self):
        with self.lock:
            self.sent += 1


def publish_loop(pub, sched, sent, errors):
    """One publisher thread: send each event taken from sched when it is
    due, recording {event id: clock start} in sent; an exception ends the
    thread and is put in errors."""
    try:
        while True:
            job = sched.take()
            if job is None:
                return
            i, due = job
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            eid, t = pub.send(i, key_of(i))
            sent[eid] = t
            sched.done()
    except Exception as e:      # reported by run(), which then fails
        errors.append(repr(e))


class RelaySampler:
    """Samples the relay and outbox.events every `every` s in a thread (see
    --sample above); t is seconds since the schedule's start."""

    def __init__(self, dsn, every, sched):
        import psycopg2
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()
        self.every = every
        self.sched = sched
        self.samples = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self):
        pid = relay_pid(self.cur)
        mem = process_memory_kb(pid) if pid else None
        self.cur.execute("SELECT pg_catalog.count(*),"
                         " pg_catalog.pg_total_relation_size('outbox.events') FROM outbox.events")
        rows, size = self.cur.fetchone()
        self.samples.append({'t': time.monotonic() - self.sched.start,
                             'published': self.sched.sent, 'relay_pid': pid,
                             'relay_cpu_s': process_cpu_s(pid) if pid else None,
                             'relay_rss_kb': mem and mem['rss'],
                             'relay_anon_kb': mem and mem['anon'],
                             'rows': rows, 'total_bytes': size})

    def _loop(self):
        due = self.sched.start
        end = self.sched.start + self.sched.n / self.sched.rate   # stop() samples there
        while due < end and not self.stopping.wait(max(0.0, due - time.monotonic())):
            self.sample()
            # the next multiple of `every`, skipping any a slow sample missed
            due = self.sched.start + self.every * (
                int((time.monotonic() - self.sched.start) / self.every) + 1)

    def start(self):
        self.thread.start()

    def stop(self):
        """Stop sampling and take a last sample (the end of the timed part)."""
        self.stopping.set()
        self.thread.join()
        self.sample()
        self.conn.close()

    def cpu_share(self):
        """Relay CPU seconds over the sampled span / its length, when the
        same relay process ran throughout."""
        first, last = self.samples[0], self.samples[-1]
        if (first['relay_pid'] is None or first['relay_pid'] != last['relay_pid']
                or first['relay_cpu_s'] is None or last['relay_cpu_s'] is None
                or last['t'] <= first['t']):
            return None
        return (last['relay_cpu_s'] - first['relay_cpu_s']) / (last['t'] - first['t'])


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
        pubs = [OutboxPublisher(a.dsn, a.topic) if a.mode == 'outbox'
                else BarePublisher(a.bootstrap, a.topic) if a.mode == 'bare'
                else PeerPublisher(a.mode, a.dsn, a.topic) for _ in range(a.publishers)]
        pub = pubs[0]

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
        sched = Schedule(n, a.rate)
        sampler = RelaySampler(a.dsn, a.sample, sched) if a.sample else None
        sents = [{} for _ in pubs]
        errors = []
        threads = [threading.Thread(target=publish_loop, args=(p, sched, s, errors))
                   for p, s in zip(pubs, sents)]
        sched.start = time.monotonic()
        if sampler:
            sampler.start()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - sched.start
        if sampler:
            sampler.stop()
        problems = sum(p.finish() for p in pubs)
        if errors:
            print('latency: a publisher failed: %s' % errors[0], file=sys.stderr)
            return 1
        sent = {e: t for s in sents for e, t in s.items()}

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
    lat = [recv[e][0] - t for e, t in sent.items() if e in recv]
    result = {
        'mode': a.mode,
        'rate': a.rate,
        'seconds': a.seconds,
        'publishers': a.publishers,
        'sent': len(sent),
        'received': len(lat),
        'lost': len(sent) - len(lat),
        'unexpected': len(set(recv) - set(sent)),
        'duplicates': got['duplicates'],
        'achieved_rate': len(sent) / elapsed if elapsed > 0 else None,
        'producer_problems': problems,
        'latency_ms': summarize(lat),
        'over_100ms': sum(1 for x in lat if x > 0.1),
        'stages_ms': {
            'to_produce': summarize([recv[e][1] - t for e, t in sent.items() if e in recv]),
            'to_consumer': summarize([recv[e][0] - recv[e][1] for e in sent if e in recv]),
        },
    }
    if a.mode != 'bare':
        result['commit_rtt_ms'] = summarize([x for p in pubs for x in p.rtt])
    if sampler:
        result['samples'] = sampler.samples
        result['relay_cpu_share'] = sampler.cpu_share()
    print(json.dumps(result))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run')
    r.add_argument('--mode', choices=('outbox', 'bare', 'pgq', 'logical'), required=True)
    r.add_argument('--bootstrap', required=True)
    r.add_argument('--dsn', help='libpq connection string (outbox mode)')
    r.add_argument('--topic', required=True)
    r.add_argument('--rate', type=float, default=200)
    r.add_argument('--seconds', type=float, default=20)
    r.add_argument('--grace', type=float, default=15,
                   help='after the end, wait this long without news before calling the rest lost')
    r.add_argument('--publishers', type=int, default=1,
                   help='sessions (outbox) or producers (bare) sharing the schedule, a thread each')
    r.add_argument('--sample', type=float, default=0,
                   help='sample the relay and outbox.events every this many s (outbox; 0: never)')
    c = sub.add_parser('consume')
    c.add_argument('--bootstrap', required=True)
    c.add_argument('--topic', required=True)
    c.add_argument('--grace', type=float, default=15)
    a = ap.parse_args()
    if a.cmd == 'consume':
        return consume(a)
    if a.mode != 'bare' and not a.dsn:
        ap.error('--dsn is needed with --mode %s' % a.mode)
    if a.sample and a.mode != 'outbox':
        ap.error('--sample needs --mode outbox')
    return run(a)


if __name__ == '__main__':
    sys.exit(main())
