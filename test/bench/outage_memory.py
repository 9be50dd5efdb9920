#!/usr/bin/env python3
"""The relay's memory through a long broker outage with a large backlog
retrying (test/bench/run_bench.sh, section 9).

run_bench.sh sets a short message timeout and backoff, so that every
event fails and is retried again and again while the brokers are down.
This script starts a checking consumer (count_topic.py, as drain.py does),
takes the brokers down (a "down all" line to the test broker's control
FIFO, --broker-ctl), publishes --events events (transactions of 10,000,
payloads and keys from benchlib.py) and, for --seconds s, samples every
--sample s the relay's VmRSS and RssAnon (/proc/PID/status) and
outbox.stats' failed counter (attempts that failed so far) and pending.
Memory that grew with failed deliveries shows as RssAnon rising with the
failed count.  Then it brings the brokers up, waits until outbox.events is
empty and counts what the consumer read.

Output (JSON): events, seconds, pid, samples [{t, rss_kb, anon_kb,
failed, pending}], first/last/max RssAnon, failed attempts over the run,
whether the relay kept its pid (a restart would hide a leak), drain_s
(brokers up -> empty) and topic_check (count_topic.py's result).
"""

import argparse
import json
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import KEY_SQL, PAYLOAD_SQL, process_memory_kb, relay_pid
from drain import finish_counter, start_counter


def broker(ctl, command):
    """One command to the test broker through its control FIFO."""
    with open(ctl, 'w') as f:
        f.write(command + '\n')
    time.sleep(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--dsn', required=True)
    p.add_argument('--bootstrap', required=True)
    p.add_argument('--broker-ctl', required=True)
    p.add_argument('--topic', required=True)
    p.add_argument('--events', type=int, default=100000)
    p.add_argument('--seconds', type=float, default=600)
    p.add_argument('--sample', type=float, default=10)
    a = p.parse_args()

    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    pid = relay_pid(cur)
    if pid is None:
        sys.exit('no relay runs')
    counter = start_counter(a)
    broker(a.broker_ctl, 'down all')
    for lo in range(0, a.events, 10000):
        # the payload SQL's modulo signs are not parameters
        cur.execute("SELECT pg_catalog.count(outbox.publish(%s, "
                    + PAYLOAD_SQL.replace('%', '%%') + ", key => " + KEY_SQL.replace('%', '%%') + "))"
                    " FROM pg_catalog.generate_series(%s, %s) AS i",
                    (a.topic, lo, min(lo + 10000, a.events) - 1))

    def stats():
        cur.execute("SELECT failed, pending FROM outbox.stats WHERE datname = pg_catalog.current_database()")
        return cur.fetchone()

    samples = []
    start = time.monotonic()
    while True:
        t = time.monotonic() - start
        m = process_memory_kb(pid)
        failed, pending = stats()
        samples.append({'t': round(t, 1), 'rss_kb': m and m['rss'], 'anon_kb': m and m['anon'],
                        'failed': failed, 'pending': pending})
        if t >= a.seconds:
            break
        time.sleep(min(a.sample, max(a.seconds - t, 0.1)))
    same_pid = relay_pid(cur) == pid
    broker(a.broker_ctl, 'up all')
    up = time.monotonic()
    while True:
        cur.execute("SELECT pg_catalog.count(*) FROM outbox.events")
        if cur.fetchone()[0] == 0:
            break
        time.sleep(0.5)
    drain_s = time.monotonic() - up
    anon = [s['anon_kb'] for s in samples if s['anon_kb'] is not None]
    json.dump({'events': a.events, 'seconds': a.seconds, 'pid': pid,
               'same_pid': same_pid, 'samples': samples, 'drain_s': round(drain_s, 1),
               'topic_check': finish_counter(counter) if counter else None,
               'first_anon_kb': anon[0] if anon else None,
               'last_anon_kb': anon[-1] if anon else None,
               'max_anon_kb': max(anon) if anon else None,
               'failed_attempts': samples[-1]['failed'] - samples[0]['failed']},
              sys.stdout)
    print()


if __name__ == '__main__':
    main()
