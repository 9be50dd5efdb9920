#!/usr/bin/env python3
"""Delivery notifications: the relay's drain rate with outbox.notify_channel
unset against set, in the same run.  Section 12 of test/bench/run_bench.sh.

Each run drains a backlog of --events events published in one transaction
(test/bench/drain.py --mode single, its clock: from COMMIT until
outbox.events is empty; its consumer counts what reached Kafka), with
outbox.notify_channel '' (off) or 'bench_delivered' (on, ALTER SYSTEM and
a reload, waited for in pg_settings).  While on, a listener in the same
database (a psycopg2 connection that LISTENs and reads every notification
as it comes, as a websocket gateway would) counts the event objects it
got; after the drain it must have exactly the events published, each
event id once.  The sides alternate (off, on, on, off, ...) for --rounds
rounds, so drift in the machine falls on both.

Prints one JSON object: runs (side, round, events_per_s, drain_s, and for
"on" the notifications and event objects received); exit status 1 when a
drain failed or the listener did not get every event exactly once.
"""

import argparse
import json
import select
import subprocess
import sys
import threading
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import alternating, log

CHANNEL = 'bench_delivered'


def set_channel(dsn, value):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("ALTER SYSTEM SET outbox.notify_channel = %s", (value,))
    cur.execute('SELECT pg_reload_conf()')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cur.execute("SELECT setting FROM pg_settings WHERE name = 'outbox.notify_channel'")
        if cur.fetchone()[0] == value:
            break
        time.sleep(0.05)
    # the relay reloads at its next wake-up; give it one
    time.sleep(0.5)
    conn.close()


class Listener(threading.Thread):
    """LISTENs on CHANNEL and counts the event ids it is told about."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        self.conn.cursor().execute('LISTEN ' + CHANNEL)
        self.ids = {}
        self.notifications = 0
        self.stop = False

    def run(self):
        while not self.stop:
            if select.select([self.conn], [], [], 0.1)[0]:
                self.conn.poll()
                while self.conn.notifies:
                    n = self.conn.notifies.pop(0)
                    self.notifications += 1
                    for obj in json.loads(n.payload):
                        self.ids[obj['event_id']] = self.ids.get(obj['event_id'], 0) + 1

    def finish(self, expected, timeout=30):
        deadline = time.monotonic() + timeout
        while sum(self.ids.values()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop = True
        self.join()
        self.conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--events', type=int, default=200000)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--drain', default='test/bench/drain.py')
    a = ap.parse_args()

    runs = []
    ok = True
    try:
        for rnd, side in alternating(['off', 'on'], a.rounds):
            set_channel(a.dsn, CHANNEL if side == 'on' else '')
            listener = Listener(a.dsn) if side == 'on' else None
            if listener:
                listener.start()
            topic = 'notify.%s.%d' % (side, rnd)
            log('notify_cost: round %d, notifications %s, %d events' % (rnd, side, a.events))
            out = subprocess.run([sys.executable, a.drain, '--dsn', a.dsn, '--bootstrap', a.bootstrap,
                                  '--mode', 'single', '--events', str(a.events), '--topic', topic],
                                 stdout=subprocess.PIPE, check=False)
            if out.returncode != 0:
                print('notify_cost: drain failed (%s)' % topic, file=sys.stderr)
                ok = False
                if listener:
                    listener.finish(0, timeout=0)
                break
            r = json.loads(out.stdout)
            run = {'side': side, 'round': rnd, 'events_per_s': r['events_per_s'],
                   'drain_s': r['drain_s'], 'topic_check': r['topic_check']}
            if listener:
                # drain.py's warm-up event is notified too
                listener.finish(a.events + 1)
                run['notifications'] = listener.notifications
                run['events_notified'] = len(listener.ids)
                run['notified_twice'] = sum(1 for c in listener.ids.values() if c > 1)
                if len(listener.ids) != a.events + 1 or run['notified_twice']:
                    print('notify_cost: the listener got %d distinct events (%d twice), expected %d'
                          % (len(listener.ids), run['notified_twice'], a.events + 1), file=sys.stderr)
                    ok = False
            runs.append(run)
    finally:
        set_channel(a.dsn, '')
    print(json.dumps({'events': a.events, 'rounds': a.rounds, 'channel': CHANNEL, 'runs': runs}))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
