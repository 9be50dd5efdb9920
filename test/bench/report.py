#!/usr/bin/env python3
"""Prints the tables of test/bench/run_bench.sh from the JSON results its
helpers left in a directory (machine.json, drain_single.json,
drain_small.json, count_single.json, count_small.json, latency_outbox.json,
latency_bare.json).  Measures nothing itself.

Exit status 1 when a correctness check failed (a topic does not hold exactly
the events published, or events were lost): that means something broke.
Speed never decides the exit status.
"""

import json
import os
import sys


def load(d, name):
    p = os.path.join(d, name + '.json')
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def fmt(v, digits=1):
    if v is None:
        return '-'
    if isinstance(v, int):
        return '{:,}'.format(v)
    return '{:,.{}f}'.format(v, digits)


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return '-'
    return '{:.{}f}x'.format(a / b, digits)


def table(title, headers, rows, left=1):
    """Columns before `left` are left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells):
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            out.append(str(c).ljust(w) if i < left else str(c).rjust(w))
        return '  '.join(out).rstrip()

    print(title)
    print(line(headers))
    print('  '.join('-' * w for w in widths))
    for r in rows:
        print(line(r))
    print()


def main():
    d = sys.argv[1]
    m = load(d, 'machine') or {}
    failures = []

    print('machine: %s CPU(s), %s; %s; librdkafka %s' % (
        m.get('nproc', '?'), m.get('cpu', '?'), m.get('postgres', '?'), m.get('librdkafka', '?')))
    print('setup:   %s' % m.get('setup', ''))
    print()

    # ---- drain
    rows = []
    base = None
    for name, label in (('single', 'one transaction, clock COMMIT -> empty'),
                        ('small', 'small transactions, clock publish start -> empty')):
        r = load(d, 'drain_' + name)
        c = load(d, 'count_' + name)
        if r is None:
            failures.append('drain %s did not run' % name)
            continue
        if name == 'single':
            base = r['events_per_s']
        tx = '1 x %s' % fmt(r['events']) if name == 'single' else \
            '%s x %s' % (fmt(r['transactions']), fmt(r['tx_size']))
        in_topic = c['messages'] if c else None
        distinct = c['distinct_ce_id'] if c else None
        ok = c is not None and in_topic == r['events'] and distinct == r['events']
        if not ok:
            failures.append('topic of drain %s holds %s messages (%s distinct ce_id), expected %s'
                            % (name, in_topic, distinct, r['events']))
        rows.append([label, tx, fmt(r['publish_s'], 2), fmt(r['drain_s'], 2),
                     fmt(r['total_s'], 2), fmt(r['events_per_s'], 0),
                     ratio(r['events_per_s'], base),
                     fmt(r['first_delivery_s'], 2), fmt(r['steady_events_per_s'], 0),
                     fmt(in_topic), fmt(distinct), 'ok' if ok else 'FAIL'])
    table('1. Drain rate of a backlog (events/s = events / clock s; ratio vs the one-transaction backlog)',
          ['backlog', 'transactions x events', 'publish s', 'last commit -> empty s',
           'clock s', 'events/s', 'ratio', 'first row gone s', 'steady events/s 90%->10%',
           'in topic', 'distinct ce_id', 'check'], rows)

    # ---- latency
    o = load(d, 'latency_outbox')
    b = load(d, 'latency_bare')
    if o is None or b is None:
        failures.append('latency runs did not complete')
    else:
        rows = []
        for k, label in (('p50', 'p50'), ('p90', 'p90'), ('p99', 'p99'), ('p99.9', 'p99.9'),
                         ('max', 'max'), ('mean', 'mean')):
            ov, bv = o['latency_ms'][k], b['latency_ms'][k]
            rows.append([label, fmt(ov, 2), fmt(bv, 2), ratio(ov, bv, 1)])
        table('2. Latency at %s events/s for %s s, ms: outbox = COMMIT returned -> consumer got it;'
              ' bare = produce() called -> consumer got it' % (fmt(o['rate'], 0), fmt(o['seconds'], 0)),
              ['percentile', 'outbox ms', 'bare producer ms', 'outbox/bare'], rows)

        rows = []
        for r, label in ((o, 'outbox (psycopg2, 1 event per transaction)'),
                         (b, 'bare confluent-kafka producer')):
            rows.append([label, fmt(r['sent']), fmt(r['received']), fmt(r['lost']),
                         fmt(r['duplicates']), fmt(r['unexpected']),
                         fmt(r['achieved_rate'], 1), fmt(r['producer_problems'])])
            if r['lost'] or r['unexpected'] or r['producer_problems']:
                failures.append('latency %s: %d lost, %d unexpected, %d producer problems'
                                % (r['mode'], r['lost'], r['unexpected'], r['producer_problems']))
        table('2b. Latency runs: delivery check',
              ['run', 'sent', 'received', 'lost', 'duplicates', 'unexpected', 'events/s sent',
               'producer failures'], rows)
        rtt = o.get('commit_rtt_ms') or {}
        print('    outbox client side: publish() + COMMIT round trip p50 %s ms, p99 %s ms, max %s ms'
              % (fmt(rtt.get('p50'), 2), fmt(rtt.get('p99'), 2), fmt(rtt.get('max'), 2)))
        print()

    if failures:
        for f in failures:
            print('CHECK FAILED: ' + f)
        return 1
    print('all checks passed (counts in Kafka match, nothing lost)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
