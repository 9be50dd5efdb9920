#!/usr/bin/env python3
"""Waiting events: the relay's drain rate with none waiting against with
--scheduled events published with a deliver_at an hour ahead, on keys of
their own, in the same run.  Section 13 of test/bench/run_bench.sh.

Each run drains a backlog of --events events published in one transaction
(test/bench/drain.py --mode single, its clock: from COMMIT until
outbox.events holds nothing but the waiting events, --leave-waiting; its
consumer counts what reached Kafka).  On the "scheduled" side the waiting
events are published first and the relay is let see them; while they wait,
the relay checks each new event with a key against them (an index probe)
and must not deliver them: after the drain all of them must still be in
outbox.events.  Before the drain the relay is left alone for --quiet
seconds with only those events, and the scans of outbox.events it made
meanwhile are counted from pg_stat_all_tables (waiting events must cost no
reads).  They are deleted after the run.  The sides alternate (none,
scheduled, scheduled, none, ...) for --rounds rounds.

Prints one JSON object: runs (side, round, events_per_s, drain_s, and for
"scheduled" the waiting rows left and the quiet scans); exit status 1 when
a drain failed or a waiting event went early.
"""

import argparse
import json
import subprocess
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import alternating, log

TOPIC = 'waiting.later'


def scans(cur):
    cur.execute("SELECT COALESCE(idx_scan, 0) + seq_scan FROM pg_stat_all_tables"
                " WHERE relid = 'outbox.events'::regclass")
    return cur.fetchone()[0]


def wait_scheduled(cur, n, timeout=60):
    """Until outbox.stats shows n scheduled: the relay has seen them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur.execute("SELECT scheduled FROM outbox.stats WHERE datname = current_database()")
        row = cur.fetchone()
        if row and row[0] == n:
            return True
        time.sleep(0.1)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--events', type=int, default=200000)
    ap.add_argument('--scheduled', type=int, default=10000)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--quiet', type=float, default=5.0)
    ap.add_argument('--drain', default='test/bench/drain.py')
    a = ap.parse_args()

    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    runs = []
    ok = True
    try:
        for rnd, side in alternating(['none', 'scheduled'], a.rounds):
            run = {'side': side, 'round': rnd}
            if side == 'scheduled':
                cur.execute("SELECT count(outbox.publish(%s, pg_catalog.to_jsonb(n), key => 'later-' || n,"
                            " deliver_at => pg_catalog.now() + interval '1 hour'))"
                            " FROM generate_series(1, %s) n", (TOPIC, a.scheduled))
                if not wait_scheduled(cur, a.scheduled):
                    print('waiting_cost: the relay did not count the scheduled events', file=sys.stderr)
                    ok = False
                    break
                before = scans(cur)
                time.sleep(a.quiet)
                run['quiet_scans'] = scans(cur) - before
            topic = 'waiting.%s.%d' % (side, rnd)
            log('waiting_cost: round %d, %s, %d events' % (rnd, side, a.events))
            out = subprocess.run([sys.executable, a.drain, '--dsn', a.dsn, '--bootstrap', a.bootstrap,
                                  '--mode', 'single', '--events', str(a.events), '--topic', topic]
                                 + (['--leave-waiting'] if side == 'scheduled' else []),
                                 stdout=subprocess.PIPE, check=False)
            if out.returncode != 0:
                print('waiting_cost: drain failed (%s)' % topic, file=sys.stderr)
                ok = False
                break
            r = json.loads(out.stdout)
            run.update({'events_per_s': r['events_per_s'], 'drain_s': r['drain_s'],
                        'topic_check': r['topic_check']})
            if side == 'scheduled':
                cur.execute("SELECT count(*) FROM outbox.events WHERE topic = %s", (TOPIC,))
                run['waiting_left'] = cur.fetchone()[0]
                if run['waiting_left'] != a.scheduled:
                    print('waiting_cost: %d of %d scheduled events left before their time'
                          % (a.scheduled - run['waiting_left'], a.scheduled), file=sys.stderr)
                    ok = False
                cur.execute("DELETE FROM outbox.events WHERE topic = %s", (TOPIC,))
            runs.append(run)
    finally:
        cur.execute("DELETE FROM outbox.events WHERE topic = %s", (TOPIC,))
        conn.close()
    print(json.dumps({'events': a.events, 'scheduled': a.scheduled, 'rounds': a.rounds,
                      'quiet_seconds': a.quiet, 'runs': runs}))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
