#!/usr/bin/env python3
"""The inbox: cost of outbox.receive() against a plain INSERT ... ON
CONFLICT DO NOTHING, and how fast expired rows are purged.  Section 5 of
test/bench/run_bench.sh.

inbox_bench.py calls ...
    outbox.receive('bench', id) against
        INSERT INTO bench_plain_inbox.inbox (consumer, event_id, received_at,
            expires_at) VALUES ('bench', id, now(), now() + '7 days')
        ON CONFLICT DO NOTHING
    on bench_plain_inbox.inbox, "LIKE outbox.inbox INCLUDING ALL" (uuid
    event_id, primary key (consumer, event_id), index on expires_at, same
    fillfactor).  Each run: both tables truncated, the table under test
    preloaded with --preload rows (ids 00000000-...-000000000001 up, one
    consumer, expiring in 7 days), VACUUM ANALYZE, CHECKPOINT, then pgbench
    (-n -M prepared, one custom script, one call per transaction).  Each
    side gets --seconds in all, split into --rounds runs, the sides
    alternating (receive, insert, insert, receive, ...); report.py combines
    them.  --sync-off adds random and ordered at 1 client with
    synchronous_commit=off.  Ids, the same expression on both sides:
      random    gen_random_uuid() (v4): every call a new id, anywhere in the
                primary key;
      ordered   a new time-ordered id per call, like publish()'s UUID v7:
                48 bits of clock_timestamp() in microseconds, then the
                pgbench client id and a per-client counter; every insert at
                the right edge of the primary key;
      duplicate an id already there (one of the preloaded ones, at random):
                nothing is inserted, receive() returns false.
    Check: the table gained exactly one row per transaction (random,
    ordered) or none (duplicate).

inbox_bench.py purge --rows N --method function|relay ...
    Fills outbox.inbox (as superuser, INSERT ... SELECT in statements of
    --chunk rows) with N rows for one consumer: ids time-ordered (48 bits of
    milliseconds, then the row number), received_at spread evenly over the
    last 14 days, expires_at = received_at + 7 days, so the older half is
    expired.  The relays' own purge is held off meanwhile (outbox.
    purge_interval set to its maximum by ALTER SYSTEM and a reload).  Then
    VACUUM ANALYZE, sizes, and:
      function  SELECT outbox.purge_inbox() (one call: every batch of
                outbox.purge_batch_size rows in the caller's transaction),
                timed by the client;
      relay     the relay's own purge (a transaction per batch): purge_
                interval set to 100 ms and reloaded, timed until outbox.
                stats.purged has grown by the expired rows.
    Then sizes again, and with --vacuum a VACUUM (timed) and sizes once
    more.  outbox.purge_interval is reset at the end.
    Check: every row that had expired before the purge started is gone and
    every other row is still there.

Each prints one JSON object; exit status 0 on success, 1 on a failure.
"""

import argparse
import json
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2
import psycopg2.errors

from benchlib import alternating, log, pgbench, relation_sizes

CONSUMER = 'bench'
PLAIN = 'bench_plain_inbox.inbox'
INBOX = 'outbox.inbox'

SETUP_SQL = """
DROP SCHEMA IF EXISTS bench_plain_inbox CASCADE;
CREATE SCHEMA bench_plain_inbox;
CREATE TABLE bench_plain_inbox.inbox (LIKE outbox.inbox INCLUDING ALL)
    WITH (fillfactor = 100, autovacuum_vacuum_scale_factor = 0.02);
"""

# the id expressions, on pgbench variables (:n per-client counter, :r random)
ID_EXPR = {
    'random': 'pg_catalog.gen_random_uuid()',
    'ordered': ("(pg_catalog.lpad(pg_catalog.to_hex((pg_catalog.date_part('epoch',"
                " pg_catalog.clock_timestamp()) * 1000000)::bigint), 16, '0')"
                " || pg_catalog.lpad(pg_catalog.to_hex(:client_id::bigint * 1000000000000"
                " + :n), 16, '0'))::uuid"),
    'duplicate': "pg_catalog.lpad(pg_catalog.to_hex(:r::bigint), 32, '0')::uuid",
}


def script(case, side, preload):
    head = ''
    if case == 'ordered':
        head = '\\set n :n + 1\n'
    elif case == 'duplicate':
        head = '\\set r random(1, %d)\n' % preload
    idx = ID_EXPR[case]
    if side == 'receive':
        return head + "SELECT outbox.receive('%s', %s);\n" % (CONSUMER, idx)
    return head + ("INSERT INTO %s (consumer, event_id, received_at, expires_at)"
                   " VALUES ('%s', %s, pg_catalog.now(), pg_catalog.now() + interval '7 days')"
                   " ON CONFLICT DO NOTHING;\n" % (PLAIN, CONSUMER, idx))


def calls(a):
    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(SETUP_SQL)
    cur.execute("SELECT pg_catalog.count(*) FROM outbox.inbox")
    if cur.fetchone()[0] != 0:
        print('inbox_bench: outbox.inbox is not empty at start', file=sys.stderr)
        return 1
    clients = [int(x) for x in a.clients.split()]
    cases = a.cases.split()
    configs = [(case, c, False) for case in cases for c in clients]
    if a.sync_off:
        # a duplicate writes nothing, so its commit waits for no WAL flush
        configs += [(case, 1, True) for case in cases if case != 'duplicate']
    secs = max(1, a.seconds // a.rounds)
    runs = []
    rc = 0
    try:
        for case, c, sync_off in configs:
            for rnd, side in alternating(a.sides.split(), a.rounds):
                table = INBOX if side == 'receive' else PLAIN
                cur.execute('TRUNCATE outbox.inbox, %s' % PLAIN)
                cur.execute("INSERT INTO %s (consumer, event_id, received_at, expires_at)"
                            " SELECT %%s, pg_catalog.lpad(pg_catalog.to_hex(g::bigint), 32, '0')::uuid,"
                            "        pg_catalog.now(), pg_catalog.now() + interval '7 days'"
                            "   FROM pg_catalog.generate_series(1, %%s) g" % table,
                            (CONSUMER, a.preload))
                cur.execute('VACUUM ANALYZE %s' % table)
                cur.execute('CHECKPOINT')
                log('%s, %s ids, %d client(s), %d s%s' % (side, case, c, secs,
                    ', synchronous_commit=off' if sync_off else ''))
                r = pgbench(a.dsn, script(case, side, a.preload), c, secs,
                            defines={'n': 0} if case == 'ordered' else None,
                            sync_off=sync_off)
                cur.execute('SELECT pg_catalog.count(*) FROM %s' % table)
                added = cur.fetchone()[0] - a.preload
                want = 0 if case == 'duplicate' else r['transactions']
                r.update({'case': case, 'side': side, 'added': added, 'round': rnd,
                          'rows_ok': added == want})
                if added != want:
                    print('inbox_bench: %s %s c%d: %d rows added, expected %d'
                          % (side, case, c, added, want), file=sys.stderr)
                    rc = 1
                runs.append(r)
    except RuntimeError as e:
        print('inbox_bench: %s' % e, file=sys.stderr)
        rc = 1
    finally:
        cur.execute('TRUNCATE outbox.inbox')
        cur.execute('DROP SCHEMA bench_plain_inbox CASCADE')
    print(json.dumps({'seconds': secs, 'rounds': a.rounds, 'preload': a.preload, 'runs': runs}))
    return rc


def set_purge_interval(cur, value, settle=True):
    """ALTER SYSTEM outbox.purge_interval (None: RESET) and reload; unless
    settle is false, give the relay half a second to take it."""
    if value is None:
        cur.execute('ALTER SYSTEM RESET outbox.purge_interval')
    else:
        cur.execute('ALTER SYSTEM SET outbox.purge_interval = %s', (str(value),))
    cur.execute('SELECT pg_catalog.pg_reload_conf()')
    if settle:
        time.sleep(0.5)     # the relay reloads when SIGHUP sets its latch


def purged_counter(cur):
    cur.execute('SELECT purged FROM outbox.stats WHERE datname = pg_catalog.current_database()')
    row = cur.fetchone()
    return row[0] if row else None


def fill(cur, n, chunk):
    """n rows, time-ordered ids over the last 14 days, the older half expired."""
    cur.execute("SELECT pg_catalog.now() - interval '14 days'")
    base = cur.fetchone()[0]
    t0 = time.monotonic()
    done = 0
    while done < n:
        hi = min(n, done + chunk)
        cur.execute(
            "INSERT INTO outbox.inbox (consumer, event_id, received_at, expires_at)"
            " SELECT %s, (pg_catalog.lpad(pg_catalog.to_hex((pg_catalog.date_part('epoch', t)"
            "                  * 1000)::bigint), 12, '0')"
            "             || pg_catalog.lpad(pg_catalog.to_hex(g), 20, '0'))::uuid,"
            "        t, t + interval '7 days'"
            "   FROM (SELECT g, %s::timestamptz + interval '14 days' * (g::float8 / %s) AS t"
            "           FROM pg_catalog.generate_series(%s::bigint, %s::bigint) g) s",
            (CONSUMER, base, n, done + 1, hi))
        done = hi
        if done % (chunk * 5) == 0 or done == n:
            log('filled %d of %d rows (%.0f s)' % (done, n, time.monotonic() - t0))
    return time.monotonic() - t0


def purge(a):
    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute('SET synchronous_commit = off')   # the fill only; not measured
    res = {'rows': a.rows, 'method': a.method}
    rc = 0
    try:
        set_purge_interval(cur, 2147483647)
        cur.execute('TRUNCATE outbox.inbox')
        res['fill_s'] = fill(cur, a.rows, a.chunk)
        cur.execute('RESET synchronous_commit')
        t = time.monotonic()
        cur.execute('VACUUM ANALYZE outbox.inbox')
        res['vacuum_analyze_s'] = time.monotonic() - t
        cur.execute('CHECKPOINT')
        res['size_before'] = relation_sizes(cur, INBOX)
        cur.execute('SHOW outbox.purge_batch_size')
        res['purge_batch_size'] = int(cur.fetchone()[0])

        # rows expired now; the purge must remove all of these and only
        # those (plus any that expire while it runs)
        cur.execute('SELECT pg_catalog.now()')
        t_ref = cur.fetchone()[0]
        cur.execute('SELECT pg_catalog.count(*) FROM outbox.inbox WHERE expires_at < %s', (t_ref,))
        res['expired'] = cur.fetchone()[0]
        log('%d rows, %d expired; purging with %s' % (a.rows, res['expired'],
            'outbox.purge_inbox()' if a.method == 'function' else "the relay's own purge"))

        if a.method == 'function':
            cur.execute('SET statement_timeout = %s', (str(int(a.timeout * 1000)),))
            t = time.monotonic()
            try:
                cur.execute('SELECT outbox.purge_inbox()')
                res['purged'] = cur.fetchone()[0]
            except psycopg2.errors.QueryCanceled:
                print('inbox_bench: outbox.purge_inbox() did not finish within %s s' % a.timeout,
                      file=sys.stderr)
                res['timed_out'] = True
                rc = 1
            res['purge_s'] = time.monotonic() - t
            cur.execute('RESET statement_timeout')
        else:
            before = purged_counter(cur)
            if before is None:
                print('inbox_bench: no relay in outbox.stats', file=sys.stderr)
                return 1
            t = time.monotonic()
            set_purge_interval(cur, 100, settle=False)
            deadline = t + a.timeout
            while True:
                now = purged_counter(cur)
                if now - before >= res['expired']:
                    break
                if time.monotonic() > deadline:
                    print('inbox_bench: the relay purged %d of %d rows within %s s'
                          % (now - before, res['expired'], a.timeout), file=sys.stderr)
                    res['timed_out'] = True
                    rc = 1
                    break
                time.sleep(0.05)
            res['purge_s'] = time.monotonic() - t
            res['purged'] = now - before
            set_purge_interval(cur, 2147483647)

        cur.execute('SELECT pg_catalog.count(*) FROM outbox.inbox WHERE expires_at < %s', (t_ref,))
        left_expired = cur.fetchone()[0]
        cur.execute('SELECT pg_catalog.count(*) FROM outbox.inbox')
        left = cur.fetchone()[0]
        res['left'] = left
        res['check_ok'] = (left_expired == 0 and res.get('purged') is not None
                           and left == a.rows - res['purged']
                           and res['purged'] >= res['expired'])
        if not res['check_ok'] and not res.get('timed_out'):
            print('inbox_bench: after the purge %d rows are left, %d of them expired before it;'
                  ' %s purged of %d expired' % (left, left_expired, res.get('purged'),
                                                res['expired']), file=sys.stderr)
            rc = 1
        res['rows_per_s'] = (res['purged'] / res['purge_s']
                             if res.get('purged') and res['purge_s'] > 0 else None)
        res['size_after'] = relation_sizes(cur, INBOX)
        if a.vacuum:
            t = time.monotonic()
            cur.execute('VACUUM outbox.inbox')
            res['vacuum_s'] = time.monotonic() - t
            res['size_after_vacuum'] = relation_sizes(cur, INBOX)
    finally:
        set_purge_interval(cur, None)
        if not a.keep:
            cur.execute('TRUNCATE outbox.inbox')
    print(json.dumps(res, default=str))
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('calls')
    c.add_argument('--dsn', required=True)
    c.add_argument('--seconds', type=int, default=10, help='per side and configuration')
    c.add_argument('--rounds', type=int, default=2,
                   help='split --seconds into this many runs per side, alternating sides')
    c.add_argument('--clients', default='1')
    c.add_argument('--preload', type=int, default=100000)
    c.add_argument('--cases', default='random ordered duplicate')
    c.add_argument('--sides', default='receive insert')
    c.add_argument('--sync-off', action='store_true',
                   help='also random and ordered, 1 client, synchronous_commit=off')
    p = sub.add_parser('purge')
    p.add_argument('--dsn', required=True)
    p.add_argument('--rows', type=int, required=True)
    p.add_argument('--method', choices=('function', 'relay'), required=True)
    p.add_argument('--chunk', type=int, default=1000000, help='rows per fill statement')
    p.add_argument('--timeout', type=float, default=1800, help='give up the purge after (s)')
    p.add_argument('--vacuum', action='store_true', help='VACUUM after the purge, sizes again')
    p.add_argument('--keep', action='store_true', help='leave the rows (default: TRUNCATE)')
    a = ap.parse_args()
    return calls(a) if a.cmd == 'calls' else purge(a)


if __name__ == '__main__':
    sys.exit(main())
