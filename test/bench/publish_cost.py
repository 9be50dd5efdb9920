#!/usr/bin/env python3
"""Publish cost: outbox.publish() against the same rows written by a plain
INSERT into an equivalent table.  Section 3 of test/bench/run_bench.sh.

The equivalent table is bench_plain.events, created here as
"LIKE outbox.events INCLUDING ALL" (same columns, NOT NULLs, primary key on
id and the partial index on (topic, key, id) WHERE attempts > 0), with its
own sequence behind id.  Both sides write the same rows: the ~100-byte JSON
payload of benchlib.PAYLOAD_SQL (event number i drawn at random from
1..200000, as in the drain section), key i % 100, topic bench.publish,
content_type application/json, created_at clock_timestamp(), attempts 0.
The INSERT side does the work publish() does in SQL: gen_random_uuid() for
the event id (publish makes a UUID v7) and convert_to(payload::text, 'UTF8')
for the jsonb-to-bytea conversion.

Transaction shapes, each run with pgbench (-n -M prepared, one custom
script) at each client count of --clients:
   1 event   one statement per transaction (autocommit);
   N events  one statement writing N rows (generate_series) per
             transaction: 100 as drain.py publishes (--shapes), and with
             --bulk N a bulk load of N rows, 1 client, as an application's
             backfill or batch job would.
With --sync-off, also 1 event, 1 client, with the sessions' synchronous_
commit off (PGOPTIONS), where the CPU cost is not hidden by the WAL flush.
Each side of each configuration gets --seconds in all, split into --rounds
runs of pgbench -T seconds/rounds, the sides alternating (publish, insert,
insert, publish, ...) so that drift in the machine (the WAL flush latency
of this VM wanders by tens of percent) falls on both alike.

The relay is paused (outbox.pause_relay()) for the whole section so that it
does not compete for the CPUs, and resumed at the end, with outbox.events
emptied first so it has nothing to send.  Both tables are truncated and a
CHECKPOINT is taken before every run.  A paused relay still wakes at each
publishing COMMIT (publish() sets its latch) and looks at outbox.paused:
that cost is part of publish() and is included; the CPU time the relay
process used during each run is recorded (relay_cpu_s, from /proc).

Check: after each run the table holds exactly transactions x events rows.

Prints one JSON object: runs (one per shape x clients x sync x side x
round: tps, latency_ms, transactions, rows, relay_cpu_s), the index
definitions of both tables, and the settings that matter; report.py
combines the rounds (benchlib.combine).
Exit status 0 on success, 1 when a run failed or left a wrong row count.
"""

import argparse
import json
import sys

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import (KEY_SQL, PAYLOAD_SQL, alternating, log, pause_relay, pgbench,
                      process_cpu_s, relay_pid, wait_state)

TOPIC = 'bench.publish'
MAX_I = 200000          # event numbers 1..MAX_I, drawn at random per row

SETUP_SQL = """
DROP SCHEMA IF EXISTS bench_plain_pub CASCADE;
CREATE SCHEMA bench_plain_pub;
CREATE SEQUENCE bench_plain_pub.events_id_seq;
CREATE TABLE bench_plain_pub.events (LIKE outbox.events INCLUDING ALL);
ALTER TABLE bench_plain_pub.events
    ALTER COLUMN id SET DEFAULT pg_catalog.nextval('bench_plain_pub.events_id_seq');
ALTER SEQUENCE bench_plain_pub.events_id_seq OWNED BY bench_plain_pub.events.id;
"""
PLAIN = 'bench_plain_pub.events'

PUBLISH_ARGS = "topic => '%s', payload => %s, key => %s" % (TOPIC, PAYLOAD_SQL, KEY_SQL)
INSERT_HEAD = ("INSERT INTO %s (event_id, topic, key, payload, content_type, created_at)"
               " SELECT pg_catalog.gen_random_uuid(), '%s', %s,"
               " pg_catalog.convert_to((%s)::text, 'UTF8'), 'application/json',"
               " pg_catalog.clock_timestamp()" % (PLAIN, TOPIC, KEY_SQL, PAYLOAD_SQL))



def script(side, shape):
    """pgbench script writing shape rows in one statement per transaction."""
    if shape == 1:
        rows = "(VALUES (:i::int)) AS g(i)"
        top = MAX_I
    else:
        rows = ("pg_catalog.generate_series(:i::int, :i::int + %d) AS g(i)" % (shape - 1))
        top = max(1, MAX_I - shape + 1)
    if side == 'publish':
        body = ("SELECT pg_catalog.count(outbox.publish(%s)) FROM %s" % (PUBLISH_ARGS, rows)
                if shape > 1 else "SELECT outbox.publish(%s) FROM %s" % (PUBLISH_ARGS, rows))
    else:
        body = "%s FROM %s" % (INSERT_HEAD, rows)
    return "\\set i random(1, %d)\n%s;\n" % (top, body)


TABLE_OF = {'publish': 'outbox.events', 'insert': PLAIN}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--seconds', type=int, default=10, help='per side and configuration')
    ap.add_argument('--rounds', type=int, default=2,
                    help='split --seconds into this many runs per side, alternating sides')
    ap.add_argument('--clients', default='1 2', help='client counts, space-separated')
    ap.add_argument('--shapes', default='1 100', help='events per transaction, space-separated')
    ap.add_argument('--bulk', type=int, default=0,
                    help='also this many events in one statement, 1 client (0: none)')
    ap.add_argument('--sync-off', action='store_true',
                    help='also 1 event per transaction, 1 client, synchronous_commit=off')
    a = ap.parse_args()
    clients = [int(x) for x in a.clients.split()]
    shapes = [int(x) for x in a.shapes.split()]
    if any(s < 1 for s in shapes) or a.bulk < 0:
        ap.error('--shapes and --bulk: events per transaction must be positive')

    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(SETUP_SQL)
    cur.execute("SELECT c.relname, pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid),"
                " ' ON [^ ]+', ' ON ' || n.nspname || '.' || c.relname)"
                "  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid"
                "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE i.indrelid IN ('outbox.events'::regclass, %s::regclass) ORDER BY 2", (PLAIN,))
    indexes = [r[1] for r in cur.fetchall()]
    cur.execute("SELECT pg_catalog.string_agg(name || '=' || setting, ', ' ORDER BY name)"
                "  FROM pg_catalog.pg_settings WHERE name IN ('synchronous_commit', 'fsync',"
                " 'wal_level', 'full_page_writes')")
    settings = cur.fetchone()[0]

    cur.execute('SELECT pg_catalog.count(*) FROM outbox.events')
    if cur.fetchone()[0] != 0:
        print('publish_cost: outbox.events is not empty at start', file=sys.stderr)
        return 1
    relay = relay_pid(cur)
    if not pause_relay(cur, 'publish_cost'):
        return 1

    secs = max(1, a.seconds // a.rounds)
    configs = [(shape, c, False) for shape in shapes for c in clients]
    if a.sync_off and 1 in shapes:
        configs.insert(len(clients), (1, 1, True))
    if a.bulk > 0:
        configs.append((a.bulk, 1, False))
    runs = []
    rc = 0
    try:
        for shape, c, sync_off in configs:
            for rnd, side in alternating(['publish', 'insert'], a.rounds):
                cur.execute('TRUNCATE outbox.events, %s' % PLAIN)
                cur.execute('CHECKPOINT')
                log('%s, %d event(s) per transaction, %d client(s), %d s%s'
                    % (side, shape, c, secs, ', synchronous_commit=off' if sync_off else ''))
                cpu0 = process_cpu_s(relay) if relay else None
                r = pgbench(a.dsn, script(side, shape), c, secs, sync_off=sync_off)
                cpu1 = process_cpu_s(relay) if relay else None
                cur.execute('SELECT pg_catalog.count(*) FROM %s' % TABLE_OF[side])
                rows = cur.fetchone()[0]
                r.update({'side': side, 'events_per_tx': shape, 'rows': rows, 'round': rnd,
                          'relay_cpu_s': (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None
                          else None,
                          'rows_ok': rows == r['transactions'] * shape})
                if not r['rows_ok']:
                    print('publish_cost: %s x%d c%d: %d rows for %d transactions'
                          % (side, shape, c, rows, r['transactions']), file=sys.stderr)
                    rc = 1
                runs.append(r)
    except RuntimeError as e:
        print('publish_cost: %s' % e, file=sys.stderr)
        rc = 1
    finally:
        # nothing for the relay to send once resumed
        cur.execute('TRUNCATE outbox.events, %s' % PLAIN)
        cur.execute('SELECT outbox.resume_relay()')
        if not wait_state(cur, False):
            print('publish_cost: the relay still reported "paused" 30 s after resume', file=sys.stderr)
            rc = 1
        cur.execute('DROP SCHEMA bench_plain_pub CASCADE')
    print(json.dumps({'seconds': secs, 'rounds': a.rounds, 'runs': runs, 'relay_pid': relay,
                      'indexes': indexes, 'settings': settings, 'max_i': MAX_I}))
    return rc


if __name__ == '__main__':
    sys.exit(main())
