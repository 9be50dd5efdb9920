#!/usr/bin/env python3
"""Prints the tables of test/bench/run_bench.sh from the results its helpers
left in a directory (machine.json, drain_single.json, drain_fresh.json, drain_small.json,
latency_outbox.json, latency_bare.json,
and errors_PHASE.txt: the ERROR lines PostgreSQL logged during a phase).
Measures nothing itself.

Exit status 1 when a correctness check failed (a topic does not hold exactly
the events published, events were lost, a step left no result): that means
something broke.  Speed never decides the exit status, and neither do ERROR
lines in the log (they are shown, with the phase they happened in).
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


def errors(d, phase):
    """ERROR lines logged during a phase (None if not recorded)."""
    p = os.path.join(d, 'errors_%s.txt' % phase)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return [line.rstrip('\n') for line in f if line.strip()]


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


def main():
    d = sys.argv[1]
    m = load(d, 'machine') or {}
    failures = []
    logged = []

    print('machine: %s CPU(s), %s; %s; librdkafka %s' % (
        m.get('nproc', '?'), m.get('cpu', '?'), m.get('postgres', '?'), m.get('librdkafka', '?')))
    print('setup:   %s' % m.get('setup', ''))
    print()

    # ---- 1. drain
    rows = []
    base = None
    for name, label in (('single', 'A: 1 transaction'),
                        ('fresh', 'A0: 1 transaction, fresh plans'),
                        ('small', 'B: small transactions')):
        r = load(d, 'drain_' + name)
        c = r.get('topic_check')
        errs = errors(d, 'drain_' + name)
        if r is None:
            failures.append('drain %s left no result' % name)
            continue
        if name == 'single':
            base = r['events_per_s']
        in_topic = c['messages'] if c else None
        distinct = c['distinct_ce_id'] if c else None
        ok = (c is not None and in_topic == r['events'] and distinct == r['events']
              and c['high_watermark_total'] == r['events'] + c['warmup'] and not c['purged'])
        if not ok:
            failures.append('topic of drain %s: consumer read %s messages (%s distinct ce_id), '
                            'broker appended %s, partitions purged before read %s; expected %s'
                            % (name, in_topic, distinct, c and c['high_watermark_total'],
                               c and c['purged'], r['events']))
        if errs:
            logged.append(('drain ' + name, errs))
        rows.append([label, '%s x %s' % (fmt(r['transactions']), fmt(r['tx_size'])),
                     fmt(r['publish_s'], 2), fmt(r['drain_s'], 2), fmt(r['total_s'], 2),
                     fmt(r['events_per_s'], 0), ratio(r['events_per_s'], base),
                     fmt(r['steady_events_per_s'], 0), fmt(r['max_pending']),
                     fmt(len(errs)) if errs is not None else '-',
                     fmt(in_topic), fmt(distinct), 'ok' if ok else 'FAIL'])
    table('1. Drain rate of a backlog: events/s = events / clock',
          ['backlog', 'tx x events', 'publish s', 'commit->empty s', 'clock s', 'events/s',
           'vs A', 'steady ev/s', 'max pending', 'log ERRORs', 'in topic', 'distinct ce_id',
           'check'], rows)
    print('   A: clock runs from just before COMMIT until outbox.events is empty; the relay sees')
    print('      the whole backlog at once.  steady ev/s: while the backlog went from 90% to 10%.')
    print('      Before A and B the relay relayed one event on the freshly vacuumed, empty table,')
    print('      as in service after a quiet period, so its cached plans were made for a tiny table.')
    print('   A0: as A, but the table was vacuumed again after that event, so the relay planned')
    print('      its statements with the backlog present.')
    print('   B: clock runs from starting psql (one session, transactions back to back) until')
    print('      empty; the relay works while they are published, so B is bound by publishing.')
    print('   publish s: time to publish (A: before COMMIT); commit->empty s: last COMMIT until')
    print('   empty; max pending: most events waiting at a 50 ms probe; vs A: events/s ratio;')
    print('   in topic / distinct ce_id: what a confluent-kafka consumer, assigned to the topic')
    print('   before publishing, read from it (check: both equal the events published).')
    print()

    # ---- 2. latency
    o = load(d, 'latency_outbox')
    b = load(d, 'latency_bare')
    if o is None or b is None:
        failures.append('a latency run left no result')
    else:
        errs = errors(d, 'latency_outbox')
        if errs:
            logged.append(('latency outbox', errs))
        rows = []
        for k in ('p50', 'p90', 'p99', 'p99.9', 'max', 'mean'):
            ov, bv = o['latency_ms'][k], b['latency_ms'][k]
            rows.append([k, fmt(ov, 2), fmt(bv, 2), ratio(ov, bv, 1)])
        table('2. Latency at %s events/s for %s s (one event per transaction), ms'
              % (fmt(o['rate'], 0), fmt(o['seconds'], 0)),
              ['percentile', 'outbox', 'bare producer', 'outbox/bare'], rows)
        print('   outbox: COMMIT returned -> consumer received; bare: produce() called -> consumer')
        print('   received (confluent-kafka producer, acks=all, idempotent, linger.ms=1, same events).')
        print()

        rows = []
        for r, label in ((o, 'outbox'), (b, 'bare producer')):
            rtt = r.get('commit_rtt_ms')
            rows.append([label, fmt(r['sent']), fmt(r['received']), fmt(r['lost']),
                         fmt(r['duplicates']), fmt(r['unexpected']),
                         fmt(r['achieved_rate'], 1), fmt(r['producer_problems']),
                         fmt(r.get('over_100ms')),
                         '%s / %s' % (fmt(rtt['p50'], 2), fmt(rtt['p99'], 2)) if rtt else '-',
                         (fmt(len(errs)) if errs is not None else '-') if r is o else '-'])
            if r['lost'] or r['unexpected'] or r['producer_problems']:
                failures.append('latency %s: %d lost, %d unexpected, %d producer failures'
                                % (r['mode'], r['lost'], r['unexpected'], r['producer_problems']))
        table('2b. Latency runs: what arrived',
              ['run', 'sent', 'received', 'lost', 'duplicates', 'unexpected', 'sent/s',
               'producer failures', 'over 100 ms', 'publish+COMMIT p50 / p99 ms', 'log ERRORs'],
              rows)
        print()

    for phase, errs in logged:
        print('PostgreSQL logged %d ERROR line(s) during %s, e.g.:' % (len(errs), phase))
        for line in errs[:3]:
            print('   ' + line)
        print()

    if failures:
        for f in failures:
            print('CHECK FAILED: ' + f)
        return 1
    print('checks passed: each topic holds exactly the events published; nothing lost')
    return 0


if __name__ == '__main__':
    sys.exit(main())
