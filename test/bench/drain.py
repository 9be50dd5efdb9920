#!/usr/bin/env python3
"""Drain rate of the outbox relay: how fast a backlog of outbox.events
reaches Kafka and is deleted, and (--relay-memory) the relay's memory
meanwhile.  Part of test/bench/run_bench.sh.

Three ways to build the backlog of N events (payloads and keys from
benchlib.py, ~100-byte JSON, 100 keys), each into its own topic:

  --mode single   all N events published inside ONE transaction (several
                  SELECT count(outbox.publish(...)) FROM generate_series
                  statements); the relay cannot see uncommitted rows, so the
                  whole backlog appears at COMMIT.  Clock: from just before
                  COMMIT is sent until the table is seen empty.
  --mode small    N/100 transactions of 100 events, published as fast as
                  possible from one session by psql running a generated SQL
                  script; the relay works while they are published.  Clock:
                  from starting psql until the table is seen empty.
  --mode paused   the relay is paused (outbox.pause_relay(), then waiting
                  for outbox.stats to say so); N events are published in
                  transactions of --tx-size, one statement each; then
                  outbox.resume_relay().  Clock: from just before the resume
                  is sent until the table is seen empty.

--payload-bytes B: the events are published with publish_binary() and a
payload of B random bytes (UUIDs' bytes, so that TOAST cannot compress
them; one value per statement, the same for its events) instead of JSON;
B must fit outbox.max_message_size and the producer's message.max.bytes.

--relay-memory S: a thread reads the relay's VmRSS and RssAnon
(/proc/PID/status, pid from pg_stat_activity) every S s from just before
the clock starts until the table is empty; before starting it resets the
relay's VmHWM (peak RSS, /proc/PID/clear_refs, needs root) and at the end
reads it, so that it covers this drain, between samples too.  Output
"relay_memory": pid, before_kb, peak_kb, after_kb, hwm_kb (None when the
reset failed), before_anon_kb, peak_anon_kb, samples; None values when the
relay changed pid meanwhile.

The table is probed every 50 ms (--poll-ms).  The probe is
"SELECT min(id), max(id) FROM outbox.events" (two primary-key index probes)
by default: the backlog's ids are contiguous and the relay deletes in id
order, so max - min + 1 is the number left, and NULL means empty, exactly
when count(*) is 0.  A count(*) probe (--probe count) seq-scans the whole
table, dead rows included, every 50 ms, which on a small machine takes CPU
from the relay it is measuring.  Either way a final count(*) must be 0.

Warm-up: one event (key "warmup") is published to the topic and drained
before anything is timed.  The first produce to a topic a librdkafka
producer has not used yet waits about a second for its metadata (a bare
confluent-kafka producer against the same broker does too), and a relay in
service already knows its topics.

--fresh-plans: after the warm-up, VACUUM outbox.events once more.  VACUUM
invalidates the relay's cached plans, so it plans its statements again at
its next pass, which now finds the whole backlog.  Without it (the default)
the relay's last plans were made during the warm-up on a near-empty table,
as happens in service after a quiet period; PostgreSQL 15's generic plan for
the relay's DELETE ... WHERE id = ANY($1) on such a table is a sequential
scan, so each batch then scans the backlog, until autovacuum or ANALYZE
invalidates the plan.

Check: before publishing starts, a consumer (count_topic.py, see there why
then) is assigned to the topic; once the table is empty it counts what it
read, and its result is put in the output as "topic_check".  Its fetcher
runs during the measurement, as a real consumer would.

Prints one JSON object to stdout: events, publish_s (time to publish),
drain_s (last commit or resume -> empty), total_s (clock above), events_per_s
(events / total_s), first_delivery_s (clock start -> first row gone),
steady_events_per_s (rate while going from 90% to 10% left), max_pending
(most events seen waiting at a probe), probes.
Exit status 0 on success, 1 on a failure (timeout, wrong counts).
"""

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import (PAYLOAD_SQL, KEY_SQL, process_memory_kb, relay_pid, reset_peak_rss,
                      wait_state)

# complete statements: values are inlined (no driver parameters, so that
# the same text also serves psql and the % in the SQL needs no escaping)
PUBLISH_SQL = ("SELECT pg_catalog.count(outbox.publish{b}(topic => {t}, payload => {p}, key => {k}))"
               "  FROM pg_catalog.generate_series({lo}::int8, {hi}::int8) AS g(i)")
# --payload-bytes: n random bytes, computed once per statement (uncorrelated)
RANDOM_BYTES_SQL = ("(SELECT pg_catalog.substr(pg_catalog.string_agg("
                    "pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), ''::bytea), 1, {n})"
                    "  FROM pg_catalog.generate_series(1, ({n} + 15) / 16))")


def publish_sql(topic, lo, hi, payload_bytes=None):
    if payload_bytes:
        b, p = '_binary', RANDOM_BYTES_SQL.format(n=int(payload_bytes))
    else:
        b, p = '', PAYLOAD_SQL
    return PUBLISH_SQL.format(b=b, t="'" + topic.replace("'", "''") + "'", p=p, k=KEY_SQL,
                              lo=int(lo), hi=int(hi))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--bootstrap', required=True, help='Kafka bootstrap servers (for the check)')
    ap.add_argument('--mode', choices=('single', 'small', 'paused'), required=True)
    ap.add_argument('--events', type=int, required=True)
    ap.add_argument('--topic', required=True)
    ap.add_argument('--tx-size', type=int, default=100,
                    help='events per transaction (small, paused)')
    ap.add_argument('--chunk', type=int, default=20000, help='events per statement (single)')
    ap.add_argument('--psql', default='psql', help='psql command (small), with connection options')
    ap.add_argument('--poll-ms', type=float, default=50)
    ap.add_argument('--probe', choices=('minmax', 'count'), default='minmax')
    ap.add_argument('--timeout', type=float, default=300, help='give up draining after this (s)')
    ap.add_argument('--fresh-plans', action='store_true',
                    help='VACUUM outbox.events after the warm-up (see above)')
    ap.add_argument('--payload-bytes', type=int, default=0,
                    help='publish_binary() with this many random bytes per event (see above)')
    ap.add_argument('--relay-memory', type=float, default=0,
                    help="sample the relay's memory every this many s (see above; 0: never)")
    ap.add_argument('--leave-waiting', action='store_true',
                    help='events waiting in outbox.events at the start stay: count only those after them')
    return ap.parse_args()


def events_where(a):
    """The rows of outbox.events the drain waits for: with --leave-waiting,
    those above the last event waiting at the start (a range of the primary
    key, so that the probe does not walk the waiting rows every 50 ms)."""
    return ' WHERE id > %d' % a.waiting_floor if a.leave_waiting else ''


def learn_waiting_floor(a):
    """With --leave-waiting: the highest id of an event waiting now."""
    a.waiting_floor = 0
    if not a.leave_waiting:
        return
    conn = psycopg2.connect(a.dsn)
    cur = conn.cursor()
    cur.execute('SELECT COALESCE(max(id), 0) FROM outbox.events WHERE next_attempt_at IS NOT NULL')
    a.waiting_floor = cur.fetchone()[0]
    conn.close()


class Prober:
    """Samples how many events are left; records (time, left)."""

    def __init__(self, dsn, kind, t0, where=''):
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()
        self.where = where
        self.kind = kind
        self.t0 = t0
        self.samples = []

    def left(self):
        if self.kind == 'count':
            self.cur.execute('SELECT count(*) FROM outbox.events' + self.where)
            n = self.cur.fetchone()[0]
        else:
            self.cur.execute('SELECT min(id), max(id) FROM outbox.events' + self.where)
            lo, hi = self.cur.fetchone()
            n = 0 if lo is None else hi - lo + 1
        self.samples.append((time.monotonic() - self.t0, n))
        return n

    def count(self):
        self.cur.execute('SELECT count(*) FROM outbox.events' + self.where)
        return self.cur.fetchone()[0]


class MemorySampler:
    """Samples the relay's memory in a thread (see --relay-memory above)."""

    def __init__(self, dsn, every):
        conn = psycopg2.connect(dsn)
        self.pid = relay_pid(conn.cursor())
        conn.close()
        self.every = every
        self.hwm_reset = self.pid is not None and reset_peak_rss(self.pid)
        self.samples = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while True:
            self.samples.append(process_memory_kb(self.pid) if self.pid else None)
            if self.stopping.wait(self.every):
                return

    def start(self):
        self.thread.start()

    def stop(self, dsn):
        """Stop, and sum up (None values if the relay changed meanwhile)."""
        self.stopping.set()
        self.thread.join()
        end = process_memory_kb(self.pid) if self.pid else None
        conn = psycopg2.connect(dsn)
        same = self.pid is not None and relay_pid(conn.cursor()) == self.pid
        conn.close()
        seen = self.samples + [end]
        if not same or None in seen:
            return {'pid': self.pid, 'before_kb': None, 'peak_kb': None, 'after_kb': None,
                    'hwm_kb': None, 'before_anon_kb': None, 'peak_anon_kb': None,
                    'samples': len(seen)}
        return {'pid': self.pid,
                'before_kb': seen[0]['rss'],
                'peak_kb': max(m['rss'] for m in seen),
                'after_kb': end['rss'],
                'hwm_kb': end['hwm'] if self.hwm_reset else None,
                'before_anon_kb': seen[0]['anon'],
                'peak_anon_kb': max(m['anon'] for m in seen),
                'samples': len(seen)}


def crossing(samples, level, after=0.0):
    """First sample time at which left <= level (None if never)."""
    for t, n in samples:
        if t >= after and n <= level:
            return t
    return None


def start_counter(a):
    """count_topic.py, assigned and fetching; None after a message if not."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen([sys.executable, os.path.join(here, 'count_topic.py'),
                             '--bootstrap', a.bootstrap, '--topic', a.topic],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    r, _, _ = select.select([proc.stdout], [], [], 60)
    if not r or proc.stdout.readline().strip() != 'ready':
        print('drain: the checking consumer did not start', file=sys.stderr)
        proc.kill()
        proc.wait()
        return None
    return proc


def finish_counter(proc):
    try:
        out, _ = proc.communicate('count\n', timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    lines = out.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def warm_up(a):
    """Publish one event to the topic and wait until it is relayed."""
    conn = psycopg2.connect(a.dsn)
    cur = conn.cursor()
    cur.execute("SELECT outbox.publish(topic => %s, payload => '{}'::jsonb, key => 'warmup')",
                (a.topic,))
    conn.commit()
    conn.autocommit = True
    deadline = time.monotonic() + 60
    while True:
        cur.execute('SELECT count(*) FROM outbox.events' + events_where(a))
        if cur.fetchone()[0] == 0:
            break
        if time.monotonic() > deadline:
            print('drain: the warm-up event was not relayed within 60 s', file=sys.stderr)
            return False
        time.sleep(0.05)
    if a.fresh_plans:
        cur.execute('VACUUM outbox.events')
    conn.close()
    return True


def main():
    a = parse_args()
    learn_waiting_floor(a)
    if not warm_up(a):
        return 1
    counter = start_counter(a)
    if counter is None:
        return 1
    try:
        return measure(a, counter)
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()


def measure(a, counter):
    conn = psycopg2.connect(a.dsn)
    cur = conn.cursor()
    cur.execute('SELECT count(*) FROM outbox.events' + events_where(a))
    if cur.fetchone()[0] != 0:
        print('drain: outbox.events is not empty at start', file=sys.stderr)
        return 1
    conn.commit()

    poll = a.poll_ms / 1000.0
    memory = None
    if a.mode in ('single', 'paused'):
        if a.mode == 'paused':
            conn.autocommit = True
            cur.execute('SELECT outbox.pause_relay()')
            if not wait_state(cur, True):
                print('drain: the relay did not report "paused" within 30 s', file=sys.stderr)
                cur.execute('SELECT outbox.resume_relay()')
                return 1
            conn.autocommit = False
        # single: one transaction of statements of --chunk events; paused:
        # a transaction per --tx-size events
        step = a.chunk if a.mode == 'single' else a.tx_size
        t_pub = time.monotonic()
        done = 0
        while done < a.events:
            hi = min(a.events, done + step)
            cur.execute(publish_sql(a.topic, done + 1, hi, a.payload_bytes))
            if cur.fetchone()[0] != hi - done:
                raise RuntimeError('publish returned a wrong count')
            done = hi
            if a.mode == 'paused':
                conn.commit()
        publish_s = time.monotonic() - t_pub
        if a.relay_memory:
            memory = MemorySampler(a.dsn, a.relay_memory)
            memory.start()
        prober = Prober(a.dsn, a.probe, 0, events_where(a))
        t0 = time.monotonic()
        prober.t0 = t0
        if a.mode == 'paused':
            cur.execute('SELECT outbox.resume_relay()')
        conn.commit()
        last_commit = time.monotonic() - t0
        psql_rc = 0
    else:
        if a.events % a.tx_size:
            print('drain: --events must be a multiple of --tx-size', file=sys.stderr)
            return 1
        fd, script = tempfile.mkstemp(prefix='bench-drain-', suffix='.sql')
        with os.fdopen(fd, 'w') as f:
            f.write('\\set ON_ERROR_STOP 1\n')
            for lo in range(1, a.events + 1, a.tx_size):
                f.write('BEGIN;\n')
                f.write(publish_sql(a.topic, lo, lo + a.tx_size - 1) + ';\n')
                f.write('COMMIT;\n')
        prober = Prober(a.dsn, a.probe, 0, events_where(a))
        t0 = time.monotonic()
        prober.t0 = t0
        proc = subprocess.Popen(a.psql.split() + ['-X', '-q', '-At', '-f', script],
                                stdout=subprocess.DEVNULL)
        while proc.poll() is None:
            prober.left()
            time.sleep(poll)
        last_commit = time.monotonic() - t0
        publish_s = last_commit
        psql_rc = proc.returncode
        os.unlink(script)
        if psql_rc != 0:
            print('drain: psql failed with status %d' % psql_rc, file=sys.stderr)
            return 1

    deadline = time.monotonic() + a.timeout
    while True:
        n = prober.left()
        if n == 0:
            break
        if time.monotonic() > deadline:
            print('drain: %d events still pending after %ss' % (n, a.timeout), file=sys.stderr)
            return 1
        time.sleep(poll)
    total_s = prober.samples[-1][0]
    if memory:
        memory = memory.stop(a.dsn)
    final = prober.count()
    if final != 0:
        print('drain: count(*) is %d after the probe saw none' % final, file=sys.stderr)
        return 1

    samples = prober.samples
    n = a.events
    if a.mode in ('single', 'paused'):
        first = crossing(samples, n - 1)
        t90, t10 = crossing(samples, 0.9 * n), crossing(samples, 0.1 * n)
        steady = (0.8 * n / (t10 - t90)) if t10 is not None and t90 is not None and t10 > t90 else None
    else:
        # left is what is committed and not yet relayed; meaningless for a
        # 90%..10% rate while publishing goes on
        first = None
        steady = None
    result = {
        'mode': a.mode,
        'fresh_plans': a.fresh_plans,
        'events': n,
        'tx_size': a.events if a.mode == 'single' else min(a.tx_size, n),
        'transactions': 1 if a.mode == 'single' else -(-n // a.tx_size),
        'payload_bytes': a.payload_bytes or None,
        'publish_s': publish_s,
        'drain_s': total_s - last_commit,
        'total_s': total_s,
        'events_per_s': n / total_s if total_s > 0 else None,
        'first_delivery_s': first,
        'steady_events_per_s': steady,
        'max_pending': max(n for _, n in samples),
        'probe': a.probe,
        'probes': len(samples),
        'relay_memory': memory,
        'topic_check': finish_counter(counter),
    }
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
