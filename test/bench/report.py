#!/usr/bin/env python3
"""Prints the tables of test/bench/run_bench.sh from the results its helpers
left in a directory (machine.json, sections.json, drain_single.json,
drain_fresh.json, drain_small.json, latency_outbox.json, latency_bare.json,
publish.json, compare_{poll,bare1,bare5,bareb}.json, inbox_calls.json,
inbox_purge_*.json, sustain_normal.json, xmin_drain.json, xmin_sustain.json,
xmin_hold.json, memory_{small,big}.json, contract.json, notify.json, waiting.json, consume.json, and errors_PHASE.txt: the ERROR
lines PostgreSQL logged during a phase).  Only the sections listed in
sections.json are printed and checked (1 and 2 when it is missing).
Measures nothing itself.

Exit status 1 when a correctness check failed (a topic does not hold exactly
the events published, events were lost or duplicated, a table did not get exactly the rows
a benchmark wrote, a purge left expired rows or took others, a step left no
result): that means something broke.  Speed never decides the exit status, and neither do ERROR
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

def topic_ok(c, events):
    """The counting consumer read exactly `events` events with distinct
    ce_id, and the broker appended nothing else but warm-ups."""
    return (c is not None and c['messages'] == events and c['distinct_ce_id'] == events
            and c['high_watermark_total'] == events + c['warmup'] and not c['purged'])


def topic_accounted(c, events):
    """Section 4's check: the broker appended exactly the events (plus
    warm-ups), and each was either read by the counting consumer (distinct
    ce_id) or dropped by the mock broker before it could be read (skipped
    offsets: a bare producer outruns the consumer by more than the mock's
    5 MB per partition)."""
    if c is None:
        return False
    skipped = c.get('skipped', 0)
    return (c['high_watermark_total'] == events + c['warmup']
            and c['messages'] + c['warmup'] + skipped == c['high_watermark_total']
            and c['distinct_ce_id'] == c['messages'] and not c['purged']
            and not c.get('unfinished_partitions'))


def topic_delivered(c, events):
    """Section 8's check: the broker appended exactly the events (plus
    warm-ups) and the counting consumer read none twice.  With 1 MB
    payloads the mock broker (5 MB kept per partition) drops records before
    the consumer can fetch them, so not all can be read back."""
    return (c is not None and c['high_watermark_total'] == events + c['warmup']
            and c['distinct_ce_id'] == c['messages'] and not c.get('unfinished_partitions'))


def mb(v):
    return '-' if v is None else '{:,.0f}'.format(v / 1048576.0)


def note_errors(d, phase, label, logged):
    errs = errors(d, phase)
    if errs:
        logged.append((label, errs))
    return errs


# ---- 3. publish cost

def group_runs(runs, keyf):
    """{key: [runs]} in first-seen order of keys (a list of keys too)."""
    groups, order = {}, []
    for r in runs:
        k = keyf(r)
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(r)
    return groups, order


def pct(v):
    return '-' if v is None else '{:.0f}%'.format(v * 100)


def report_publish(d, failures, logged):
    from benchlib import combine
    r = load(d, 'publish')
    errs = note_errors(d, 'publish', 'publish cost', logged)
    if r is None:
        failures.append('the publish-cost section left no result')
        return
    for run in r['runs']:
        if not run['rows_ok']:
            failures.append('publish cost: %s, %d event(s)/tx, %d client(s): %d rows for %d '
                            'transactions' % (run['side'], run['events_per_tx'], run['clients'],
                                              run['rows'], run['transactions']))
    groups, _ = group_runs(r['runs'], lambda x: (x['events_per_tx'], x['clients'], x['sync_off'],
                                                 x['side']))
    _, order = group_runs(r['runs'], lambda x: (x['events_per_tx'], x['clients'], x['sync_off']))
    rows = []
    for k in order:
        side = {}
        for s in ('publish', 'insert'):
            g = groups.get(k + (s,))
            if not g:
                side[s] = None
                continue
            c = combine(g)
            c['us'] = 1e6 / (c['tps'] * k[0]) if c['tps'] else None
            cpu = [x.get('relay_cpu_s') for x in g]
            c['relay_cpu'] = (sum(cpu) / (r['seconds'] * len(g))
                              if all(v is not None for v in cpu) else None)
            c['rows'] = sum(x['rows'] for x in g)
            c['ok'] = all(x['rows_ok'] for x in g)
            side[s] = c
        p, i = side['publish'], side['insert']
        pu, iu = p and p['us'], i and i['us']
        spread = max(x['spread'] for x in (p, i) if x) if (p or i) else None
        rows.append(['%d' % k[0], '%d' % k[1], 'off' if k[2] else 'on',
                     fmt(p and p['tps'], 0), fmt(pu, 1), fmt(i and i['tps'], 0), fmt(iu, 1),
                     ratio(pu, iu), fmt(pu - iu, 1) if pu is not None and iu is not None else '-',
                     pct(spread),
                     '%s / %s' % (pct(p and p['relay_cpu']), pct(i and i['relay_cpu'])),
                     fmt((p['rows'] if p else 0) + (i['rows'] if i else 0)),
                     'ok' if p and i and p['ok'] and i['ok'] else 'FAIL'])
    table('3. Publish cost: outbox.publish() vs plain INSERT of the same rows '
          '(pgbench, %d x %d s per side)' % (r['rounds'], r['seconds']),
          ['events/tx', 'clients', 'sync commit', 'publish tx/s', 'publish us/event',
           'INSERT tx/s', 'INSERT us/event', 'publish/INSERT', 'extra us/event', 'spread',
           'relay CPU p / I', 'rows written', 'check'], rows, left=3)
    print('   pgbench -n -M prepared -c N -j N, one custom script; each side %d runs of -T %d,'
          % (r['rounds'], r['seconds']))
    print('   sides alternating (publish, INSERT, INSERT, publish); tx/s = mean of its runs; spread =')
    print('   (max - min) / mean of a side\'s runs, the larger side\'s: the noise on this machine.')
    print('   Relay paused (outbox.pause_relay()) for the whole section; both tables truncated and')
    print('   a CHECKPOINT before each run.  Both sides write the same rows: ~100-byte JSON payload')
    print('   (event i at random in 1..%d, key i %% 100); INSERT: gen_random_uuid(), convert_to('
          % r['max_i'])
    print("   payload::text, 'UTF8'), clock_timestamp(), into LIKE outbox.events INCLUDING ALL")
    print('   (pkey + partial index).  events/tx 1: one statement per transaction; more: one')
    print('   statement writing that many rows (generate_series): 100 as drain.py publishes, the')
    print('   largest a bulk load (1 client).  sync commit')
    print('   off: sessions with synchronous_commit=off, the CPU cost without the WAL flush.')
    print('   us/event = 1e6 / (tx/s x events/tx); publish/INSERT: ratio of us/event (>1: publish')
    print('   costs more).  relay CPU: CPU time of the (paused) relay process / run time, during')
    print('   the publish / the INSERT runs.  check: each table holds transactions x events/tx rows.')
    print('   %s' % r.get('settings', ''))
    if errs is not None:
        print('   ERROR lines logged by PostgreSQL during the section: %d' % len(errs))
    print()


# ---- 4. drain comparison

def report_drain_compare(d, failures, logged):
    a = load(d, 'drain_single')
    a0 = load(d, 'drain_fresh')
    base = a and a['events_per_s']
    base0 = a0 and a0['events_per_s']
    note_errors(d, 'poll', 'polling relay', logged)
    entries = [('outbox relay (section 1, A)', a, 'drain_single'),
               ('outbox relay (section 1, A0)', a0, 'drain_fresh')]
    for name, label in (('poll', 'polling relay, Python'),
                        ('bare1', 'bare C producer, linger.ms=1'),
                        ('bare5', 'bare C producer, librdkafka defaults'),
                        ('bareb', 'bare C, linger.ms=1, flush per 1000')):
        r = load(d, 'compare_' + name)
        if r is None:
            failures.append('drain comparison %s left no result' % name)
        entries.append((label, r, 'compare_' + name))
    rows = []
    for label, r, key in entries:
        if r is None:
            rows.append([label] + ['-'] * 10)
            continue
        c = r.get('topic_check')
        ok = topic_accounted(c, r['events'])
        if key.startswith('compare_'):
            if not ok:
                failures.append('topic of %s: consumer read %s messages (%s distinct ce_id), '
                                'broker appended %s, dropped %s unread, purged %s; expected %s'
                                % (label, c and c['messages'], c and c['distinct_ce_id'],
                                   c and c['high_watermark_total'], c and c.get('skipped'),
                                   c and c['purged'], r['events']))
            if r.get('what') == 'poll' and r.get('left'):
                failures.append('polling relay left %d rows' % r['left'])
        eps = r['events_per_s']
        rows.append([label, fmt(r['events']), fmt(r['total_s'], 2), fmt(eps, 0),
                     ratio(base, eps), ratio(base0, eps),
                     fmt(c and c['high_watermark_total'] - c['warmup']),
                     fmt(c and c['messages']), fmt(c and c['distinct_ce_id']),
                     fmt(c and c.get('skipped', 0)), 'ok' if ok else 'FAIL'])
    table('4. Draining the same backlog: outbox relay, a hand-written polling relay, a bare producer',
          ['drainer', 'events', 'clock s', 'events/s', 'A / this', 'A0 / this', 'appended',
           'read', 'distinct ce_id', 'dropped unread', 'check'], rows)
    p = load(d, 'compare_poll')
    print('   outbox relay: section 1 (clock from COMMIT of the backlog until outbox.events is empty).')
    print('   polling relay: test/bench/poll_relay.py, psycopg2 + confluent-kafka, per pass: BEGIN;')
    print('      SELECT ... FROM outbox_poll.events ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1000;')
    print('      produce each (same CloudEvents headers); flush(); DELETE ... WHERE id = ANY(ids);')
    print('      COMMIT.  acks=all, idempotent, linger.ms=1, murmur2_random.  Backlog already')
    print('      committed (INSERT ... SELECT%s); clock from its first SELECT to its last COMMIT.'
          % (', %.1f s' % p['fill_s'] if p else ''))
    print('   bare C producer: test/bench/bare_producer.c, no database, same events and headers,')
    print('      idempotent, acks=all, murmur2_random; clock from first produce to last delivery')
    print('      report.  librdkafka defaults: linger.ms=5 and default batching.  flush per 1000:')
    print("      waits for every delivery report after each 1000, the relay's batch rhythm.")
    print('   A / this, A0 / this: events/s of relay run A (A0) divided by this row\'s (>1: relay')
    print('   faster).  appended: records the broker appended (high watermarks, less warm-ups); read /')
    print('   distinct ce_id: read back by the counting consumer (count_topic.py), assigned before;')
    print('   dropped unread: offsets it never saw because the mock broker (5 MB per partition kept)')
    print('   dropped them while it lagged behind a bare producer.  check: appended = events, and')
    print('   read (all distinct) + dropped unread = appended.')
    print()


# ---- 5. inbox

def report_inbox(d, failures, logged):
    from benchlib import combine
    r = load(d, 'inbox_calls')
    note_errors(d, 'inbox_calls', 'inbox calls', logged)
    if r is None:
        failures.append('the inbox call benchmark left no result')
    else:
        for run in r['runs']:
            if not run['rows_ok']:
                failures.append('inbox %s, %s ids, %d client(s): %d rows added for %d transactions'
                                % (run['side'], run['case'], run['clients'], run['added'],
                                   run['transactions']))
        groups, _ = group_runs(r['runs'], lambda x: (x['case'], x['clients'], x['sync_off'],
                                                     x['side']))
        _, order = group_runs(r['runs'], lambda x: (x['case'], x['clients'], x['sync_off']))
        labels = {'random': 'fresh, random (v4)', 'ordered': 'fresh, time-ordered',
                  'duplicate': 'duplicate'}
        rows = []
        for k in order:
            side = {}
            for s_ in ('receive', 'insert'):
                g = groups.get(k + (s_,))
                if not g:
                    side[s_] = None
                    continue
                c = combine(g)
                c['us'] = 1e6 / c['tps'] if c['tps'] else None
                c['added'] = sum(x['added'] for x in g)
                c['ok'] = all(x['rows_ok'] for x in g)
                side[s_] = c
            rv, iv = side['receive'], side['insert']
            ru, iu = rv and rv['us'], iv and iv['us']
            spread = max(x['spread'] for x in (rv, iv) if x) if (rv or iv) else None
            rows.append([labels.get(k[0], k[0]), '%d' % k[1], 'off' if k[2] else 'on',
                         fmt(rv and rv['tps'], 0), fmt(ru, 1), fmt(iv and iv['tps'], 0),
                         fmt(iu, 1), ratio(ru, iu),
                         fmt(ru - iu, 1) if ru is not None and iu is not None else '-',
                         pct(spread),
                         '%s / %s' % (fmt(rv and rv['added']), fmt(iv and iv['added'])),
                         'ok' if rv and iv and rv['ok'] and iv['ok'] else 'FAIL'])
        table('5a. Inbox: outbox.receive() vs INSERT ... ON CONFLICT DO NOTHING '
              '(pgbench, %d x %d s per side)' % (r['rounds'], r['seconds']),
              ['event ids', 'clients', 'sync commit', 'receive tx/s', 'receive us/call',
               'INSERT tx/s', 'INSERT us/call', 'receive/INSERT', 'extra us/call', 'spread',
               'rows added r / I', 'check'], rows, left=3)
        print("   One call per transaction.  receive('bench', id) vs INSERT INTO a LIKE outbox.inbox")
        print("   INCLUDING ALL table (pkey (consumer, event_id), index on expires_at) VALUES ('bench',")
        print("   id, now(), now() + '7 days') ON CONFLICT DO NOTHING.  Each run starts from the table")
        print('   truncated and preloaded with %s rows, VACUUM ANALYZE, CHECKPOINT; sides alternate'
              % fmt(r['preload']))
        print('   as in 3 (tx/s: mean of the runs; spread: their (max - min) / mean).  ids: random =')
        print('   gen_random_uuid(); time-ordered = 48 bits of clock_timestamp() in us, then client id')
        print('   and a per-client counter (UUID v7-like, always at the right edge of the pkey);')
        print('   duplicate = one of the preloaded ids (nothing inserted).  Same id expression on both')
        print('   sides.  sync commit off: synchronous_commit=off, CPU cost without the WAL flush.')
        print('   receive/INSERT = ratio of us/call.  check: rows added = transactions (fresh), 0 (dup).')
        print()

    rows = []
    runs = []
    for name, label in (('purge_small_function', 'purge_inbox(), one call'),
                        ('purge_small_relay', "relay's own purge"),
                        ('purge_function', 'purge_inbox(), one call'),
                        ('purge_relay', "relay's own purge")):
        p = load(d, 'inbox_' + name)
        note_errors(d, 'inbox_' + name, 'inbox ' + name, logged)
        if p is None:
            continue
        runs.append(p)
        if not p.get('check_ok'):
            failures.append('inbox purge (%s, %s rows): %s rows purged of %s expired, %s left'
                            % (p['method'], p['rows'], p.get('purged'), p['expired'], p.get('left')))
        sb, sa, sv = p.get('size_before'), p.get('size_after'), p.get('size_after_vacuum')
        rows.append([label, fmt(p['rows']), fmt(p['expired']), fmt(p['fill_s'], 1),
                     fmt(p.get('vacuum_analyze_s'), 1),
                     fmt(p.get('purge_s'), 2), fmt(p.get('rows_per_s'), 0),
                     '%s + %s' % (mb(sb and sb['table']), mb(sb and sb['indexes'])),
                     '%s + %s' % (mb(sa and sa['table']), mb(sa and sa['indexes'])),
                     ('%s + %s' % (mb(sv['table']), mb(sv['indexes']))) if sv else '-',
                     fmt(p.get('vacuum_s'), 1),
                     'ok' if p.get('check_ok') else ('TIMEOUT' if p.get('timed_out') else 'FAIL')])
    if not runs:
        failures.append('the inbox purge benchmark left no result')
        return
    table('5b. Inbox purge of expired rows',
          ['purge by', 'inbox rows', 'expired', 'fill s', 'VACUUM ANALYZE s', 'purge s', 'rows/s',
           'MB before (table + idx)', 'after purge', 'after VACUUM', 'VACUUM s', 'check'],
          rows)
    print('   outbox.inbox filled by INSERT ... SELECT (as superuser; fill s) with one consumer,')
    print('   time-ordered ids, received_at over the last 14 days, expires_at = received_at + 7 days')
    print('   (older half expired), then VACUUM ANALYZE.  purge_inbox(): SELECT outbox.purge_inbox(),')
    print('   every batch of outbox.purge_batch_size (%s) in the one calling transaction.  relay\'s own'
          % fmt(runs[0].get('purge_batch_size')))
    print('   purge: outbox.purge_interval set to 100 ms, timed until outbox.stats.purged grew by the')
    print('   expired rows; a transaction per batch.  The relays\' purge is held off (purge_interval')
    print('   at its maximum) otherwise.  rows/s = rows purged / purge s.  MB: pg_table_size +')
    print('   pg_indexes_size; DELETE frees nothing, and VACUUM makes the space reusable but returns')
    print('   none, the freed pages being at the start of the heap.  check: every row expired before')
    print('   the purge is gone, the rest are there.')
    print()


# ---- 6, 7. sustained load

LATENCY_KEYS = ('p50', 'p90', 'p99', 'p99.9', 'max', 'mean')


def sustain_ok(r):
    return not (r['lost'] or r['unexpected'] or r['duplicates'] or r['producer_problems'])


def check_sustain(r, label, failures):
    if not sustain_ok(r):
        failures.append('%s: %d sent, %d received, %d lost, %d duplicates, %d unexpected, '
                        '%d producer failures' % (label, r['sent'], r['received'], r['lost'],
                                                  r['duplicates'], r['unexpected'],
                                                  r['producer_problems']))


def sample_max(r, key):
    v = [x[key] for x in r.get('samples', []) if x[key] is not None]
    return max(v) if v else None


def sustain_arrival(title, runs):
    """What arrived and what the relay cost, a row per (label, result,
    ERROR lines or None)."""
    rows = []
    for label, r, errs in runs:
        rtt = r['commit_rtt_ms']
        rss = sample_max(r, 'relay_rss_kb')
        rows.append([label, fmt(r['sent']), fmt(r['received']), fmt(r['lost']),
                     fmt(r['duplicates']), fmt(r['unexpected']), fmt(r['achieved_rate'], 1),
                     fmt(r['over_100ms']), '%s / %s' % (fmt(rtt['p50'], 2), fmt(rtt['p99'], 2)),
                     pct(r.get('relay_cpu_share')), fmt(rss and rss / 1024.0, 1),
                     fmt(sample_max(r, 'rows')), fmt(len(errs)) if errs is not None else '-',
                     'ok' if sustain_ok(r) else 'FAIL'])
    table(title, ['run', 'sent', 'received', 'lost', 'duplicates', 'unexpected', 'sent/s',
                  'over 100 ms', 'publish+COMMIT p50 / p99 ms', 'relay CPU', 'relay RSS max MB',
                  'rows max', 'log ERRORs', 'check'], rows)
    print('   relay CPU: its CPU time (utime + stime, /proc/PID/stat) over the run / the run\'s')
    print('   duration, in % of one core.  relay RSS max, rows max: largest of the samples below.')
    print()


def sustain_series(title, r):
    """The samples of a sustained run as a time series."""
    rows = []
    prev = None
    for x in r.get('samples', []):
        cpu = None
        if (prev is not None and x['relay_pid'] == prev['relay_pid']
                and x['relay_cpu_s'] is not None and prev['relay_cpu_s'] is not None
                and x['t'] > prev['t']):
            cpu = (x['relay_cpu_s'] - prev['relay_cpu_s']) / (x['t'] - prev['t'])
        rows.append([fmt(x['t'], 1), fmt(x['published']), fmt(x['rows']),
                     fmt(x['total_bytes'] / 1048576.0, 2), pct(cpu),
                     fmt(x['relay_rss_kb'] and x['relay_rss_kb'] / 1024.0, 1),
                     fmt(x['relay_anon_kb'] and x['relay_anon_kb'] / 1024.0, 1)])
        prev = x
    table(title, ['t s', 'published', 'rows in outbox.events', 'outbox.events total MB',
                  'relay CPU', 'relay RSS MB', 'relay RssAnon MB'], rows, left=0)
    print('   t: seconds since the first event was due; the last row is the end of publishing.')
    print('   rows: count(*) of outbox.events (events committed and not yet relayed, which the')
    print('   consumer-side latency includes); total MB: pg_total_relation_size (heap, TOAST,')
    print('   indexes).  relay CPU: in the interval since the row before, % of one core.  RSS:')
    print('   VmRSS, which counts the shared_buffers pages the relay touched; RssAnon: its private')
    print('   memory (/proc/PID/status).')
    print()


def stage(r, part, k):
    """A percentile of one stage of a latency run (latency.py's stages_ms)."""
    st = r.get('stages_ms')
    return fmt(st[part][k], 2) if st else '-'


STAGE_NOTE = ('   COMMIT -> produce(): to the record\'s timestamp, which librdkafka sets when the relay\n'
              '   calls produce() (the wake-up, the read, the WAL flush); produce() -> consumer: from\n'
              '   there to the consumer (librdkafka, the broker, the fetch).  Timestamps are whole ms,\n'
              '   so each stage is +-1 ms; the stages\' percentiles do not add up to the total\'s.')


def report_sustain(d, failures, logged):
    r = load(d, 'sustain_normal')
    errs = note_errors(d, 'sustain_normal', 'sustained load', logged)
    if r is None:
        failures.append('the sustained-load run left no result')
        return
    check_sustain(r, 'sustained load', failures)
    table('6. Sustained load: %s events/s for %s s, one event per transaction from %d sessions'
          % (fmt(r['rate'], 0), fmt(r['seconds'], 0), r['publishers']),
          ['percentile', 'COMMIT -> consumer ms', 'COMMIT -> produce() ms',
           'produce() -> consumer ms'],
          [[k, fmt(r['latency_ms'][k], 2), stage(r, 'to_produce', k), stage(r, 'to_consumer', k)]
           for k in LATENCY_KEYS])
    print('   COMMIT returned -> a confluent-kafka consumer received it (latency.py, as in 2); the')
    print('   sessions share an open-loop schedule (event i due at start + i / rate).')
    print(STAGE_NOTE)
    print()
    sustain_arrival('6b. Sustained load: what arrived, relay cost',
                    [('sustained', r, errs)])
    sustain_series('6c. Sustained load over time', r)


def report_xmin(d, sections, failures, logged):
    h = load(d, 'xmin_hold')
    dr = load(d, 'xmin_drain')
    su = load(d, 'xmin_sustain')
    errs = note_errors(d, 'xmin', 'held xmin', logged)
    if h is None or dr is None or su is None:
        failures.append('the held-xmin section left no result')
        return
    print('7. Held xmin: session %d idle in a REPEATABLE READ transaction (txid %s, backend_xmin %s,'
          % (h['pid'], h['txid'], h['backend_xmin']))
    print('   "%s") throughout 7a and 7b; ERROR lines logged meanwhile: %s'
          % (h['state'], fmt(len(errs)) if errs is not None else '-'))
    print('   Its snapshot was taken %s.'
          % ('reading outbox.events, so it also holds a lock on the table, and the relay cannot'
             ' truncate it' if h.get('lock_events') else
             'reading pg_class; it holds no lock on outbox.events, so the relay truncates the'
             ' table once drained (outbox.truncate_threshold)'))
    print()

    base = load(d, 'drain_single') if 1 in sections else None
    rows = []
    for label, r in (('1 A: normal', base), ('held xmin', dr)):
        if r is None:
            continue
        c = r.get('topic_check')
        ok = topic_ok(c, r['events'])
        if r is dr and not ok:
            failures.append('topic of the held-xmin drain: consumer read %s messages (%s distinct '
                            'ce_id), broker appended %s, purged %s; expected %s'
                            % (c and c['messages'], c and c['distinct_ce_id'],
                               c and c['high_watermark_total'], c and c['purged'], r['events']))
        rows.append([label, fmt(r['events']), fmt(r['drain_s'], 2), fmt(r['events_per_s'], 0)]
                    + ([ratio(r['events_per_s'], base['events_per_s'])] if base else [])
                    + [fmt(r['steady_events_per_s'], 0), fmt(c and c['messages']),
                       fmt(c and c['distinct_ce_id']), 'ok' if ok else 'FAIL'])
    table('7a. Drain of a backlog committed in one transaction, with the xmin held',
          ['run', 'events', 'commit->empty s', 'events/s'] + (['vs normal'] if base else [])
          + ['steady ev/s', 'in topic', 'distinct ce_id', 'check'], rows)
    print('   As 1 A (drain.py --mode single).  %s.'
          % ('vs normal: events/s / those of 1 A (target: at least 50%)' if base
             else 'Section 1 did not run: no normal rate to compare'))
    print()

    normal = load(d, 'sustain_normal') if 6 in sections else None
    check_sustain(su, 'sustained load with the xmin held', failures)
    if normal:
        rows = [[k, fmt(normal['latency_ms'][k], 2), fmt(su['latency_ms'][k], 2),
                 ratio(su['latency_ms'][k], normal['latency_ms'][k], 2),
                 stage(su, 'to_produce', k), stage(su, 'to_consumer', k)] for k in LATENCY_KEYS]
        headers = ['percentile', 'normal (6) ms', 'held xmin ms', 'held / normal',
                   'held: COMMIT -> produce()', 'held: produce() -> consumer']
    else:
        rows = [[k, fmt(su['latency_ms'][k], 2), stage(su, 'to_produce', k),
                 stage(su, 'to_consumer', k)] for k in LATENCY_KEYS]
        headers = ['percentile', 'held xmin ms', 'COMMIT -> produce()', 'produce() -> consumer']
    table('7b. Sustained load with the xmin held: %s events/s for %s s, COMMIT -> consumer'
          % (fmt(su['rate'], 0), fmt(su['seconds'], 0)), headers, rows)
    if not normal:
        print('   section 6 did not run: no normal figures to compare.')
    print(STAGE_NOTE)
    print()
    runs = [('normal (6)', normal, errors(d, 'sustain_normal'))] if normal else []
    sustain_arrival('7c. Sustained load with the xmin held: what arrived, relay cost',
                    runs + [('held xmin', su, errs)])
    sustain_series('7d. Sustained load with the xmin held, over time', su)

    rows = []
    for label, x in (('held (after 7b)', h['held']), ('released', h['released'])):
        rows.append([label, x['holder_xmin'] or '-', fmt(x['n_live_tup']), fmt(x['n_dead_tup']),
                     fmt(x['heap_bytes'] / 1048576.0, 2), fmt(x['total_bytes'] / 1048576.0, 2)])
    table('7e. outbox.events after VACUUM, with the transaction still open and after it ended',
          ['when', 'holder backend_xmin', 'n_live_tup', 'n_dead_tup', 'heap MB', 'total MB'], rows)
    print('   n_dead_tup after a VACUUM: the dead rows it found and could not remove (deleted after')
    print('   the held snapshot).  heap MB: pg_relation_size; total: pg_total_relation_size.  The')
    print('   space VACUUM frees after release is reusable, not returned.')
    print()


# ---- 8. memory

def report_memory(d, failures, logged):
    rows = []
    for name, label in (('memory_small', 'a: JSON events'), ('memory_big', 'b: 1 MB payloads')):
        r = load(d, name)
        errs = note_errors(d, name, 'memory ' + label, logged)
        if r is None:
            failures.append('memory run %s left no result' % name)
            continue
        c = r.get('topic_check')
        ok = topic_delivered(c, r['events'])
        if not ok:
            failures.append('topic of memory run %s: broker appended %s records (%s warm-up), '
                            'consumer read %s (%s distinct ce_id); expected %s'
                            % (name, c and c['high_watermark_total'], c and c['warmup'],
                               c and c['messages'], c and c['distinct_ce_id'], r['events']))
        appended = c and c['high_watermark_total'] - c['warmup']
        m = r.get('relay_memory') or {}

        def mbk(k):
            return fmt(m[k] / 1024.0, 1) if m.get(k) is not None else '-'

        anon = m.get('peak_anon_kb')
        rows.append([label, fmt(r['events']), fmt(r['payload_bytes']) if r['payload_bytes'] else '~100',
                     '%s x %s' % (fmt(r['transactions']), fmt(r['tx_size'])),
                     fmt(r['publish_s'], 1), fmt(r['drain_s'], 2), fmt(r['events_per_s'], 0),
                     mbk('before_kb'), mbk('peak_kb'), mbk('after_kb'), mbk('hwm_kb'),
                     mbk('before_anon_kb'), mbk('peak_anon_kb'), ratio(anon / 1024.0, 100.0) if anon else '-',
                     fmt(len(errs)) if errs is not None else '-',
                     fmt(appended), fmt(c and c['messages']),
                     fmt(c and appended - c['messages']), 'ok' if ok else 'FAIL'])
    if not rows:
        return
    table('8. Relay memory draining a backlog published while it was paused',
          ['backlog', 'events', 'payload bytes', 'tx x events', 'publish s', 'resume->empty s',
           'events/s', 'RSS before MB', 'RSS peak MB', 'RSS after MB', 'VmHWM MB',
           'RssAnon before MB', 'RssAnon peak MB', 'RssAnon peak / 100 MB', 'log ERRORs', 'appended', 'read',
           'dropped unread', 'check'], rows)
    print('   drain.py --mode paused: outbox.pause_relay(), the backlog published, then')
    print('   outbox.resume_relay(); clock from the resume until outbox.events is empty.  RSS')
    print('   (VmRSS, /proc/PID/status) sampled every 0.1 s from just before the resume to the end;')
    print('   VmHWM: the peak RSS over the same span (reset before it; the kernel updates it lazily,')
    print('   so it can be below a sample).  VmRSS counts the pages of shared memory (shared_buffers)')
    print('   the relay touched, which PostgreSQL shares among all its processes (up to')
    print('   shared_buffers, 128 MB here); RssAnon is the relay\'s own memory (its heap, librdkafka\'s')
    print('   buffers), which the 100 MB target is about.  b: publish_binary() of random bytes,')
    print("   outbox.max_message_size and the producer's message.max.bytes raised to 2,000,000.")
    print('   appended: records the broker appended to the topic (high watermarks, less the')
    print('   warm-up); read: by a consumer assigned before publishing (count_topic.py); dropped')
    print('   unread: dropped by the mock broker (5 MB kept per partition) before that consumer')
    print('   fetched them.  check: appended = events, none read twice.')
    print()


# ---- 9. outage

def report_outage(d, failures, logged):
    r = load(d, 'outage_memory')
    errs = note_errors(d, 'outage_memory', 'outage', logged)
    if r is None:
        failures.append('the outage run left no result')
        return
    c = r.get('topic_check')
    if not topic_delivered(c, r['events']):
        failures.append('topic of the outage run: consumer read %s (%s distinct ce_id); expected %s'
                        % (c and c['messages'], c and c['distinct_ce_id'], r['events']))
    if not r['same_pid']:
        failures.append('the relay restarted during the outage run, so its memory is not one series')
    # the relay's memory once it has been through its first minute of failures
    base = next((s for s in r['samples'] if s['t'] >= 60), r['samples'][0])
    rows = []
    last_t = None
    for s in r['samples']:
        if last_t is not None and s['t'] - last_t < 59 and s is not r['samples'][-1]:
            continue
        last_t = s['t']
        rows.append([fmt(s['t'], 0), fmt(s['failed']), fmt(s['pending']),
                     fmt(s['rss_kb'] / 1024.0, 1) if s['rss_kb'] else '-',
                     fmt(s['anon_kb'] / 1024.0, 1) if s['anon_kb'] else '-',
                     ratio(s['anon_kb'], base['anon_kb']) if s['anon_kb'] else '-'])
    table('9. Relay memory through a %s s broker outage, %s events retrying'
          % (fmt(r['seconds'], 0), fmt(r['events'])),
          ['s', 'failed attempts', 'pending', 'VmRSS MB', 'RssAnon MB',
           'RssAnon vs %s s' % fmt(base['t'], 0)], rows)
    print('   Brokers down, message.timeout.ms=1000, retry backoff 100 ms to 2 s, max_attempts')
    print('   1000000: every event fails and is retried.  %s failed attempts in the run; RssAnon'
          % fmt(r['failed_attempts']))
    print('   first %s MB, last %s MB, max %s MB.  Brokers up -> outbox.events empty: %s s;'
          % (fmt(r['first_anon_kb'] / 1024.0, 1), fmt(r['last_anon_kb'] / 1024.0, 1),
             fmt(r['max_anon_kb'] / 1024.0, 1), fmt(r['drain_s'], 1)))
    print('   a consumer assigned before publishing read %s records, %s distinct ce_id; log ERRORs: %s.'
          % (fmt(c and c['messages']), fmt(c and c['distinct_ce_id']),
             fmt(len(errs)) if errs is not None else '-'))
    print()


# ---- 10. peers

PEERS = (('outbox', 'outbox'), ('pgq', 'PgQ relay (pgqd + Python)'),
         ('logical', 'logical decoding relay (Python)'))
DRAINS = PEERS + (('pgq_id', 'PgQ relay, ce_id header only'),
                  ('logical_id', 'logical decoding relay, ce_id header only'))


def report_peers(d, failures, logged):
    drains = {s: load(d, 'peer_drain_' + s) for s, _ in DRAINS}
    bare = load(d, 'peer_drain_bare')
    rows = []
    for s, label in DRAINS:
        r = drains[s]
        errs = note_errors(d, 'peer_drain_' + s, 'peer drain ' + s, logged)
        if r is None:
            failures.append('peer drain %s left no result' % s)
            rows.append([label] + ['-'] * 7)
            continue
        c = r['check']
        ok = topic_accounted(c, r['events'])
        if not ok:
            failures.append('topic of peer drain %s: broker appended %s, read %s (%s distinct); '
                            'expected %s' % (s, c['high_watermark_total'], c['messages'],
                                             c['distinct_ce_id'], r['events']))
        rows.append([label, fmt(r['events']), fmt(r['seconds'], 2), fmt(r['events_per_s'], 0),
                     ratio(drains['outbox'] and drains['outbox']['events_per_s'], r['events_per_s']),
                     fmt(r['cpu_us_per_event'], 1),
                     fmt(len(errs)) if errs is not None else '-', 'ok' if ok else 'FAIL'])
    if bare is None:
        failures.append('the ceiling run left no result')
    else:
        ok = topic_accounted(bare['topic_check'], bare['events'])
        if not ok:
            failures.append('topic of the ceiling run: not every event appended once')
        rows.append(['ceiling: bare C producer, continuous', fmt(bare['events']),
                     fmt(bare['seconds'], 2), fmt(bare['events_per_s'], 0),
                     ratio(drains['outbox'] and drains['outbox']['events_per_s'],
                           bare['events_per_s']), '-', '-', 'ok' if ok else 'FAIL'])
    table('10a. Drain of a backlog, outbox and its peers (6 partitions)',
          ['relay', 'events', 'clock s', 'events/s', 'outbox / this', 'CPU us/event',
           'log ERRORs', 'check'], rows)
    print('   Backlog published while the relay was stopped (transactions of 10000); clock from')
    print('   starting the relay until the topic\'s high watermarks reach the backlog (Kafka holds')
    print('   it all).  CPU: utime+stime of every relaying process over the drain / events:')
    print('   outbox: its relay; PgQ: pgq_relay.py, its session, pgqd and its sessions; logical:')
    print('   logical_relay.py and its walsender.  outbox and the first two peers send the six')
    print('   CloudEvents headers; "ce_id header only": the peers without formatting the rest.')
    print('   Ceiling: test/bench/bare_producer.c, no database, librdkafka defaults (linger.ms=5),')
    print('   no flush until the end.')
    print()

    rows = []
    for load_name in ('idle', 'load'):
        runs = {s: load(d, 'peer_latency_%s_%s' % (load_name, s)) for s, _ in PEERS}
        for s, label in PEERS:
            r = runs[s]
            errs = note_errors(d, 'peer_latency_%s_%s' % (load_name, s),
                               'peer latency %s %s' % (load_name, s), logged)
            if r is None:
                failures.append('peer latency %s %s left no result' % (load_name, s))
                continue
            if r['lost'] or r['unexpected'] or r['producer_problems']:
                failures.append('peer latency %s %s: %d lost, %d unexpected'
                                % (load_name, s, r['lost'], r['unexpected']))
            lat = r['latency_ms']
            ld = runs['logical'] and runs['logical']['latency_ms']
            rows.append([load_name, label, fmt(r['received']), fmt(lat['p50'], 2),
                         fmt(lat['p90'], 2), fmt(lat['p99'], 2), fmt(lat['p99.9'], 2),
                         fmt(lat['max'], 2), ratio(lat['p50'], ld and ld['p50']),
                         ratio(lat['p99'], ld and ld['p99']),
                         '%s / %s' % (stage(r, 'to_produce', 'p50'), stage(r, 'to_produce', 'p99')),
                         fmt(len(errs)) if errs is not None else '-'])
    table('10b. Commit -> consumer latency, one event per transaction, ms',
          ['machine', 'relay', 'received', 'p50', 'p90', 'p99', 'p99.9', 'max',
           'p50 vs logical', 'p99 vs logical', 'COMMIT -> produce() p50 / p99', 'log ERRORs'],
          rows)
    print('   idle: nothing else runs.  load: pgbench (tpcb-like, its own tables in the same')
    print('   database) runs meanwhile.  Clock from COMMIT returning to a confluent-kafka consumer')
    print('   receiving the event (latency.py).  PgQ: pgqd ticks every 10 ms, the queue ticks at')
    print('   any new event (ticker_max_lag 0), the consumer sleeps 5 ms when there is no batch.')
    print('   COMMIT -> produce(): to the record\'s timestamp, set when the relay called produce()')
    print('   (whole ms, so +-1 ms); the rest of the latency is librdkafka, the broker, the fetch.')
    print()


# ---- 11. event contracts

CONTRACT_LABELS = {'unregistered': 'unregistered type',
                   'object': 'registered, {"type": "object"}',
                   'ten': 'registered, ten properties',
                   'ten_noheader': 'ten properties, no ce_dataschema'}


def contract_side(runs, per):
    """Runs of one variant (clock and backend CPU over `per` calls each) as
    one: us per call over all its runs, CPU us per call, spread of the
    runs' us per call."""
    if not runs:
        return None
    n = sum(r[per] for r in runs)
    us = [1e6 * r['seconds'] / r[per] for r in runs]
    cpu = [r.get('backend_cpu_s') for r in runs]
    mean = sum(us) / len(us)
    return {'us': 1e6 * sum(r['seconds'] for r in runs) / n,
            'cpu_us': (1e6 * sum(cpu) / n) if all(v is not None for v in cpu) else None,
            'spread': (max(us) - min(us)) / mean if mean else None,
            'by_round': {r['round']: r['seconds'] / r[per] for r in runs},
            'rows': sum(r['rows'] for r in runs), 'ok': all(r['rows_ok'] for r in runs),
            'runs': len(runs)}


def per_round(side, base):
    """The per-round ratios side/base, ascending (the runs of a round are
    neighbours in time)."""
    if side is None or base is None:
        return []
    return sorted(side['by_round'][k] / base['by_round'][k] for k in side['by_round']
                  if k in base['by_round'] and base['by_round'][k])


def median(v):
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def round_ratios(side, base):
    """median (min-max) of the per-round ratios side/base."""
    v = per_round(side, base)
    if not v:
        return '-'
    return '%.2fx (%.2f-%.2f)' % (median(v), v[0], v[-1])


def against(measured, target):
    """Measured ratio against an upper bound, in words."""
    if measured is None:
        return 'not measured'
    return '%.2fx, %s the %.2fx target' % (measured, 'within' if measured <= target else 'over',
                                           target)


def report_contract(d, failures, logged):
    from benchlib import combine
    r = load(d, 'contract')
    errs = note_errors(d, 'contract', 'contract cost', logged)
    if r is None:
        failures.append('the contract-cost section left no result')
        return
    for run in r['calls_runs'] + r['pgbench_runs'] + r['loop_runs']:
        if not run['rows_ok']:
            failures.append('contract cost: %s run (round %d) left %d rows in outbox.events%s'
                            % (run['variant'], run['round'], run['rows'],
                               ', %d rejected' % run['rejected'] if 'rejected' in run else ''))
    for what, runs in (('calls', r['calls_runs']), ('loop', r['loop_runs'])):
        if not runs:
            failures.append('contract cost: no %s runs' % what)

    # 11a. one statement
    groups, _ = group_runs(r['calls_runs'], lambda x: x['variant'])
    variants = [v for v in CONTRACT_LABELS if v in groups]
    sides = {v: contract_side(groups.get(v), 'events') for v in variants}
    base = sides.get('unregistered')
    ten_s = sides.get('ten')
    rows = []
    for v in variants:
        s = sides[v]
        if s is None:
            rows.append([CONTRACT_LABELS[v]] + ['-'] * 8)
            continue
        rows.append([CONTRACT_LABELS[v], fmt(s['us'], 2), fmt(s['cpu_us'], 2),
                     ratio(s['us'], base and base['us']),
                     ratio(s['cpu_us'], base and base['cpu_us']),
                     fmt(s['us'] - base['us'], 2) if base else '-',
                     round_ratios(s, base) if v != 'unregistered' else '-',
                     pct(s['spread']), fmt(s['rows']), 'ok' if s['ok'] else 'FAIL'])
    table('11a. publish() per call in one statement: %s events per statement, %d runs per type'
          % (fmt(r['events']), r['rounds']),
          ['event type', 'us/event', 'CPU us/event', 'vs unregistered', 'CPU vs unreg.',
           'extra us/event', 'round ratios: median (range)', 'spread', 'rows written', 'check'],
          rows)
    print("   SELECT count(outbox.publish('bench.contract', p.good, event_type => TYPE)) FROM")
    print('   bench_contract.payloads p WHERE p.i <= %d: payloads built beforehand (~%.0f bytes of'
          % (r['events'], r['payload_bytes']['good']))
    print('   JSON, ten properties, varying with i), so publish() is all the statement costs.  One')
    print('   session, which published every type once before (schemas compiled and cached then);')
    print('   types alternating (A B C, C B A, ...); outbox.events truncated + CHECKPOINT before each.')
    print('   us/event: client clock over all runs / events; CPU: the backend\'s utime + stime.  vs')
    print('   unregistered: ratio of us/event; round ratios: of the runs of each round (neighbours')
    print('   in time); spread: (max - min) / mean of the type\'s runs.  Ten-property schema:')
    print('   integer minimum, number exclusiveMinimum, string maxLength, date-time, uuid, enum,')
    print('   boolean, pattern, array of strings maxItems, nested object with required; 6 required,')
    print('   additionalProperties false.  A registered type with a schema also gets a ce_dataschema')
    print('   header (%s); no ce_dataschema: the ten type with'
          % next((x for x in r['settings'].split(', ') if x.startswith('outbox.schema_uri_prefix')),
                 'outbox.schema_uri_prefix'))
    print("   outbox.schema_uri_prefix = '' in the session.")
    print()

    # 11b. pgbench
    pg_groups, _ = group_runs(r['pgbench_runs'], lambda x: (x['sync_off'], x['variant']))
    _, order = group_runs(r['pgbench_runs'], lambda x: x['sync_off'])
    pg_ratio = {}
    rows = []
    for so in order:
        side = {}
        for v in ('unregistered', 'ten'):
            g = pg_groups.get((so, v))
            if not g:
                side[v] = None
                continue
            c = combine(g)
            c['us'] = 1e6 / c['tps'] if c['tps'] else None
            cpu = [x.get('relay_cpu_s') for x in g]
            c['relay_cpu'] = (sum(cpu) / (r['pgbench_seconds'] * len(g))
                              if all(x is not None for x in cpu) else None)
            c['rows'] = sum(x['rows'] for x in g)
            c['ok'] = all(x['rows_ok'] for x in g)
            side[v] = c
        u, t = side['unregistered'], side['ten']
        uu, tu = u and u['us'], t and t['us']
        pg_ratio[so] = tu / uu if uu and tu else None
        spread = max(x['spread'] for x in (u, t) if x) if (u or t) else None
        rows.append(['off' if so else 'on', fmt(u and u['tps'], 0), fmt(uu, 1),
                     fmt(t and t['tps'], 0), fmt(tu, 1), ratio(tu, uu),
                     fmt(tu - uu, 1) if uu is not None and tu is not None else '-', pct(spread),
                     '%s / %s' % (pct(u and u['relay_cpu']), pct(t and t['relay_cpu'])),
                     fmt((u['rows'] if u else 0) + (t['rows'] if t else 0)),
                     'ok' if u and t and u['ok'] and t['ok'] else 'FAIL'])
    table('11b. One publish() per transaction: pgbench -M prepared, 1 client, %d x %d s per side'
          % (r['pgbench_rounds'], r['pgbench_seconds']),
          ['sync commit', 'unregistered tx/s', 'us/tx', 'ten properties tx/s', 'us/tx',
           'ten / unregistered', 'extra us/tx', 'spread', 'relay CPU u / t', 'rows written',
           'check'], rows)
    print("   SELECT outbox.publish('bench.contract', p.good, event_type => TYPE) FROM bench_contract.")
    print('   payloads p WHERE p.i = :i (i at random, autocommit); sides alternating as in 3.  ten /')
    print('   unregistered: ratio of us/tx (1e6 / tx/s).  sync commit on: the WAL flush is most of a')
    print('   transaction and its latency drifts on this machine, so that ratio is mostly noise; off:')
    print('   synchronous_commit=off, the CPU cost without the WAL flush.  relay CPU: the paused')
    print('   relay\'s CPU / run time.')
    print()

    # 11c. rejected vs accepted
    groups, _ = group_runs(r['loop_runs'], lambda x: x['variant'])
    sides = {v: contract_side(groups.get(v), 'calls') for v in ('accepted', 'rejected')}
    acc = sides['accepted']
    rows = []
    for v in ('accepted', 'rejected'):
        s = sides[v]
        if s is None:
            rows.append([v] + ['-'] * 8)
            continue
        caught = sum(x['rejected'] for x in groups[v])
        rows.append([v, fmt(s['us'], 2), fmt(s['cpu_us'], 2), ratio(s['us'], acc and acc['us']),
                     round_ratios(s, acc) if v != 'accepted' else '-', pct(s['spread']),
                     fmt(s['rows']), fmt(caught), 'ok' if s['ok'] else 'FAIL'])
    table('11c. Rejected vs accepted payloads, ten-property type: %s calls per loop, %d runs each'
          % (fmt(r['calls']), r['rounds']),
          ['payloads', 'us/call', 'CPU us/call', 'vs accepted', 'round ratios: median (range)',
           'spread', 'rows written', '22023 caught', 'check'], rows)
    print('   bench_contract.publish_loop(): a plpgsql FOR loop over the payloads, each publish() in')
    print('   BEGIN ... EXCEPTION WHEN invalid_parameter_value THEN count END (a subtransaction on')
    print('   both sides).  rejected: order_id a string and the required "customer" missing (two')
    print('   violations, SQLSTATE 22023, nothing written).  Timed as 11a.')
    print()

    calls = ten_s['us'] / base['us'] if ten_s and base else None
    calls_median = median(per_round(ten_s, base))
    rej = sides['rejected']
    rej_ratio = rej['us'] / acc['us'] if rej and acc else None
    rej_median = median(per_round(rej, acc))
    print('   Target (issue): publish() of a type registered with a ten-property schema costs at')
    print('   most 1.30x publish() of an unregistered type; a rejected payload no more than 1.00x')
    print('   an accepted one.  Measured:')
    def line(label, v, target, note=''):
        print('     %-55s %s%s' % (label + ':', against(v, target), note))

    line('ten properties / unregistered, one statement (11a)', calls, 1.3)
    if calls_median is not None:
        line('  median of the rounds\' ratios', calls_median, 1.3)
    if ten_s and base and ten_s['cpu_us'] and base['cpu_us']:
        line('  backend CPU', ten_s['cpu_us'] / base['cpu_us'], 1.3)
    for so in order:
        line('ten properties / unregistered, pgbench, sync %s (11b)' % ('off' if so else 'on'),
             pg_ratio.get(so), 1.3, '' if so else ' (WAL-flush bound)')
    line('rejected / accepted (11c)', rej_ratio, 1.0)
    if rej_median is not None:
        line('  median of the rounds\' ratios', rej_median, 1.0)
    if errs is not None:
        print('   ERROR lines logged by PostgreSQL during the section: %d' % len(errs))
    print()


def report_notify(d, failures, logged):
    r = load(d, 'notify')
    print()
    if r is None:
        failures.append('the notification section left no result')
        print('12. Delivery notifications: no result')
        return
    rows = []
    rates = {'off': [], 'on': []}
    for run in r['runs']:
        ok = topic_ok(run['topic_check'], r['events'])
        if not ok:
            failures.append('notifications %s, round %d: Kafka did not get every event once'
                            % (run['side'], run['round']))
        if run['side'] == 'on' and (run['events_notified'] != r['events'] + 1
                                    or run['notified_twice']):
            failures.append('notifications on, round %d: the listener did not get every event once'
                            % run['round'])
        rates[run['side']].append(run['events_per_s'])
        rows.append([run['side'], run['round'] + 1, fmt(run['events_per_s'], 0),
                     fmt(run['drain_s'], 2),
                     fmt(run.get('notifications')) if run['side'] == 'on' else '-',
                     fmt(run.get('events_notified')) if run['side'] == 'on' else '-',
                     'ok' if ok else 'FAILED'])
    table('12. Delivery notifications: drain of %s events (one transaction) with outbox.notify_channel off and on'
          % fmt(r['events']),
          ['notify_channel', 'round', 'events/s', 'drain s', 'notifications', 'events notified', 'Kafka'],
          rows)
    off = sum(rates['off']) / len(rates['off']) if rates['off'] else None
    on = sum(rates['on']) / len(rates['on']) if rates['on'] else None
    print('   Mean drain rate: off %s, on %s events/s; on / off: %s.' % (fmt(off, 0), fmt(on, 0), ratio(on, off)))
    print('   On: a psycopg2 listener LISTENs on %s and reads every notification as it comes;'
          % r['channel'])
    print('   it must get each event id exactly once (the warm-up event included).  Sides alternate.')
    note_errors(d, 'notify', 'notifications', logged)


def report_waiting(d, failures, logged):
    r = load(d, 'waiting')
    print()
    if r is None:
        failures.append('the waiting-events section left no result')
        print('13. Waiting events: no result')
        return
    rows = []
    rates = {'none': [], 'scheduled': []}
    for run in r['runs']:
        ok = topic_ok(run['topic_check'], r['events'])
        if not ok:
            failures.append('waiting %s, round %d: Kafka did not get every event once'
                            % (run['side'], run['round']))
        if run['side'] == 'scheduled' and run['waiting_left'] != r['scheduled']:
            failures.append('waiting, round %d: scheduled events went before their time' % run['round'])
        rates[run['side']].append(run['events_per_s'])
        rows.append([run['side'], run['round'] + 1, fmt(run['events_per_s'], 0),
                     fmt(run['drain_s'], 2),
                     fmt(run.get('quiet_scans')) if run['side'] == 'scheduled' else '-',
                     fmt(run.get('waiting_left')) if run['side'] == 'scheduled' else '-',
                     'ok' if ok else 'FAILED'])
    table('13. Waiting events: drain of %s events (one transaction) with none waiting and with %s scheduled an hour ahead'
          % (fmt(r['events']), fmt(r['scheduled'])),
          ['waiting', 'round', 'events/s', 'drain s', 'scans in %gs quiet' % r['quiet_seconds'],
           'still waiting', 'Kafka'],
          rows)
    none = sum(rates['none']) / len(rates['none']) if rates['none'] else None
    sched = sum(rates['scheduled']) / len(rates['scheduled']) if rates['scheduled'] else None
    print('   Mean drain rate: none %s, scheduled %s events/s; scheduled / none: %s.'
          % (fmt(none, 0), fmt(sched, 0), ratio(sched, none)))
    print('   Scheduled: each new event with a key is checked against the waiting ones (a Bloom filter of')
    print('   their keys, an index probe when it says maybe); none of them may go before its time.  Left')
    print('   alone with only them, the relay reads only at its once-per-outbox.poll_interval safety read')
    print('   (that read, what it learns, and the statistics refresh after it: about ten scans).')
    note_errors(d, 'waiting', 'waiting events', logged)


def report_consume(d, failures, logged):
    r = load(d, 'consume')
    print()
    if r is None:
        failures.append('the consuming section left no result')
        print('14. Consuming into the database: no result')
        return
    rows = []
    rates = {'outbox': [], 'python': []}
    for run in r['runs']:
        ok = run['applied'] == r['events'] and run['distinct'] == r['events']
        if not ok:
            failures.append('consume %s, round %d: %s applied, %s distinct of %s'
                            % (run['side'], run['round'] + 1, run['applied'], run['distinct'], r['events']))
        if run['applied_per_s']:
            rates[run['side']].append(run['applied_per_s'])
        rows.append([run['side'], run['round'] + 1, fmt(run['applied']), fmt(run['applied_per_s'], 0),
                     fmt(run['total_s'], 2), 'ok' if ok else 'FAILED'])
    table('14a. Consuming into the database: %s messages applied into a table of database B'
          % fmt(r['events']),
          ['consumer', 'round', 'applied', 'applied/s', 'total s', 'check'], rows)
    ob = sum(rates['outbox']) / len(rates['outbox']) if rates['outbox'] else None
    py = sum(rates['python']) / len(rates['python']) if rates['python'] else None
    print('   Mean applied/s: outbox %s, hand-written %s; outbox / hand-written: %s (target: 5x).'
          % (fmt(ob, 0), fmt(py, 0), ratio(ob, py)))
    print('   outbox: subscribe() of a SQL handler doing one INSERT, batches of 100 (one transaction, a')
    print('   savepoint and an inbox mark per message).  hand-written: Python confluent-kafka (auto commit)')
    print('   and psycopg2, one transaction per message: outbox.receive(), the INSERT, COMMIT.  applied/s')
    print('   from the first row applied to the last (the group joins are left out); total s from the start.')
    lat = r['latency']
    if lat['received'] != lat['events']:
        failures.append('consume latency: %s of %s events applied' % (lat['received'], lat['events']))
    table('14b. Latency from A\'s COMMIT to B\'s handler\'s COMMIT, one event per transaction at %s events/s for %s s'
          % (fmt(lat['rate']), fmt(lat['seconds'])),
          ['events', 'applied', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
          [[fmt(lat['events']), fmt(lat['received']), fmt(lat['p50_ms'], 2), fmt(lat['p90_ms'], 2),
            fmt(lat['p99_ms'], 2), fmt(lat['max_ms'], 2)]])
    print('   The handler NOTIFYs the event id; a listener on B gets it when B\'s transaction commits (target:')
    print('   p50 at most 5 ms).  Both consumers run with fetch.wait.max.ms = 1: the test broker answers a fetch')
    print('   only when that expires, where a real broker answers as soon as data is there.')
    note_errors(d, 'consume', 'consuming', logged)


def main():
    d = sys.argv[1]
    m = load(d, 'machine') or {}
    sections = set((load(d, 'sections') or {}).get('sections', [1, 2]))
    failures = []
    logged = []

    print('machine: %s CPU(s), %s; %s; librdkafka %s' % (
        m.get('nproc', '?'), m.get('cpu', '?'), m.get('postgres', '?'), m.get('librdkafka', '?')))
    print('setup:   %s' % m.get('setup', ''))
    print()

    # ---- 1. drain
    if 1 in sections:
        rows = []
        base = None
        for name, label in (('single', 'A: 1 transaction'),
                            ('fresh', 'A0: 1 transaction, fresh plans'),
                            ('small', 'B: small transactions')):
            r = load(d, 'drain_' + name)
            errs = errors(d, 'drain_' + name)
            if r is None:
                failures.append('drain %s left no result' % name)
                continue
            c = r.get('topic_check')
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
    if 2 in sections:
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
            print('   received (confluent-kafka producer, acks=all, idempotent, linger.ms=0, same events).')
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

    # ---- 3..5
    if 3 in sections:
        report_publish(d, failures, logged)
    if 4 in sections:
        report_drain_compare(d, failures, logged)
    if 5 in sections:
        report_inbox(d, failures, logged)
    if 6 in sections:
        report_sustain(d, failures, logged)
    if 7 in sections:
        report_xmin(d, sections, failures, logged)
    if 8 in sections:
        report_memory(d, failures, logged)
    if 9 in sections:
        report_outage(d, failures, logged)
    if 10 in sections:
        report_peers(d, failures, logged)
    if 11 in sections:
        report_contract(d, failures, logged)
    if 12 in sections:
        report_notify(d, failures, logged)
    if 13 in sections:
        report_waiting(d, failures, logged)
    if 14 in sections:
        report_consume(d, failures, logged)

    for phase, errs in logged:
        print('PostgreSQL logged %d ERROR line(s) during %s, e.g.:' % (len(errs), phase))
        for line in errs[:3]:
            print('   ' + line)
        print()

    if failures:
        for f in failures:
            print('CHECK FAILED: ' + f)
        return 1
    print('checks passed: each topic holds exactly the events published; nothing lost%s%s'
          % ('; nothing duplicated in the sustained runs' if sections & {6, 7} else '',
             '; every benchmark table got exactly the rows written' if sections & {3, 5, 11} else '')
          + ('; each purge removed exactly the expired rows' if 5 in sections else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
