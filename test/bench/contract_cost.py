#!/usr/bin/env python3
"""Contract cost: outbox.publish() of an event type registered with a JSON
Schema against publish() of an unregistered type, and a rejected payload
against an accepted one.  Section 11 of test/bench/run_bench.sh.

Event types, registered here (outbox.register_event_type()) and dropped at
the end:
   unregistered   bench.contract.unregistered.v1, not in outbox.event_types:
                  publish() probes the registry's index, finds nothing and
                  writes the row unchecked;
   object         bench.contract.object.v1, schema {"type": "object"}: no
                  property constraint, so the registry lookup, the cached
                  compiled schema and one type check;
   ten            bench.contract.v1, schema TEN_SCHEMA below: ten properties
                  (integer with minimum, number with exclusiveMinimum,
                  string with maxLength, string format date-time, string
                  format uuid, string enum, boolean, string pattern, array
                  of strings with maxItems, nested object with required),
                  six of them required, additionalProperties false.
All events go to topic bench.contract (explicit, not the registry's).  A
registered type with a schema gets a ce_dataschema header (outbox.schema_
uri_prefix at its default) that the unregistered one does not: that is
part of what registering costs and is included; the calls runs also publish
the ten type once more with outbox.schema_uri_prefix set to '' in the
session (ten_noheader: no ce_dataschema header), to show what that header
costs.

Payloads: bench_contract.payloads, filled once before measuring, one row per
event number i in 1..max(--events, --calls): "good", a valid ten-property
object (~330 bytes of JSON) in which every field but the constant ones
varies with i, and "bad", the same object with two violations of the ten
schema: order_id a string instead of an integer, and the required
"customer" missing.  Reading them from a table keeps the cost of building
JSON out of the measurement (building this object in SQL costs about as
much as publish() itself), so the ratios are publish()'s own.

Three measurements, each variant's runs alternating with the others'
(benchlib.alternating: A B C, C B A, ...) so that drift in the machine
falls on all alike:
   calls     per-call CPU cost in one statement, no WAL flush per event:
             SELECT count(outbox.publish('bench.contract', good,
             event_type => TYPE)) FROM bench_contract.payloads WHERE i <=
             --events; for unregistered, object, ten and ten_noheader;
             --rounds runs each.  Clock: the client's, around the statement; CPU: the
             backend's utime + stime (/proc/PID/stat) over the statement.
             One session throughout, which published every type once
             before the first measured run (the schemas are compiled then).
   pgbench   the application's shape: one publish() per transaction
             (autocommit), pgbench -n -M prepared, 1 client, the payload of
             an event number drawn at random (primary-key lookup in
             payloads); unregistered against ten; --seconds per side in
             --pgbench-rounds runs; with --sync-off also with the session's
             synchronous_commit off (the CPU cost without the WAL flush).
   rejected  a plpgsql loop (bench_contract.publish_loop) over --calls
             payloads, each publish() of the ten type inside BEGIN ...
             EXCEPTION WHEN invalid_parameter_value THEN ... END, so both
             sides pay for a subtransaction: accepted (good payloads)
             against rejected (bad payloads, each raising SQLSTATE 22023);
             --rounds runs each, one session, timed as calls.

The relay is paused (outbox.pause_relay()) for the whole section so that it
does not compete for the CPUs, and resumed at the end with outbox.events
emptied first.  outbox.events is truncated and a CHECKPOINT taken before
every run.

Check: after each run outbox.events holds exactly the rows expected, all of
the run's event type: calls, --events; pgbench, one per transaction;
rejected loop, --calls for accepted and none for rejected, with the loop's
count of caught rejections --calls and 0.  An error other than the
expected 22023 fails the run.

Prints one JSON object: calls_runs, pgbench_runs, loop_runs (one per
variant x round), the schema, settings; report.py combines the rounds.
Exit status 0 on success, 1 when a run failed or left a wrong row count;
never because of the numbers.
"""

import argparse
import json
import os
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

from benchlib import (alternating, log, pause_relay, pgbench, process_cpu_s, relay_pid,
                      wait_state)

TOPIC = 'bench.contract'
TYPES = {'unregistered': 'bench.contract.unregistered.v1',
         'object': 'bench.contract.object.v1',
         'ten': 'bench.contract.v1'}

TEN_SCHEMA = {
    'type': 'object',
    'required': ['order_id', 'amount', 'customer', 'placed_at', 'status', 'address'],
    'additionalProperties': False,
    'properties': {
        'order_id': {'type': 'integer', 'minimum': 1},
        'amount': {'type': 'number', 'exclusiveMinimum': 0},
        'customer': {'type': 'string', 'maxLength': 64},
        'placed_at': {'type': 'string', 'format': 'date-time'},
        'order_uuid': {'type': 'string', 'format': 'uuid'},
        'status': {'type': 'string',
                   'enum': ['placed', 'paid', 'shipped', 'delivered', 'cancelled']},
        'gift': {'type': 'boolean'},
        'sku': {'type': 'string', 'pattern': '^[A-Z]{3}-[0-9]{4}$'},
        'tags': {'type': 'array', 'items': {'type': 'string'}, 'maxItems': 8},
        'address': {'type': 'object', 'required': ['city', 'country'],
                    'properties': {'city': {'type': 'string'},
                                   'country': {'type': 'string', 'maxLength': 2}}},
    },
}
OBJECT_SCHEMA = {'type': 'object'}

# the fields of event number i (column alias i); "bad" drops customer and
# makes order_id a string
_FIELDS = [
    ("'order_id', i", "'order_id', i::text"),
    ("'amount', ((i::int8 * 7919) % 100000 + 1) * 0.01", None),
    ("'customer', 'customer-' || pg_catalog.lpad((i % 1000)::text, 6, '0')", ''),
    ("'placed_at', '2024-05-01T' || pg_catalog.lpad((i / 3600 % 24)::text, 2, '0') || ':'"
     " || pg_catalog.lpad((i / 60 % 60)::text, 2, '0') || ':'"
     " || pg_catalog.lpad((i % 60)::text, 2, '0') || 'Z'", None),
    ("'order_uuid', '018f2b6e-0000-7000-8000-' || pg_catalog.lpad(pg_catalog.to_hex(i), 12, '0')",
     None),
    ("'status', (ARRAY['placed', 'paid', 'shipped', 'delivered', 'cancelled'])[i % 5 + 1]", None),
    ("'gift', i % 2 = 0", None),
    ("'sku', 'SKU-' || pg_catalog.lpad((i % 10000)::text, 4, '0')", None),
    ("'tags', pg_catalog.jsonb_build_array('tag' || (i % 10)::text, 'bench')", None),
    ("'address', pg_catalog.jsonb_build_object('city', 'City ' || (i % 100)::text,"
     " 'country', 'DE')", None),
]
GOOD_SQL = 'pg_catalog.jsonb_build_object(%s)' % ', '.join(f for f, _ in _FIELDS)
BAD_SQL = 'pg_catalog.jsonb_build_object(%s)' % ', '.join(
    f if b is None else b for f, b in _FIELDS if b != '')

SETUP_SQL = """
DROP SCHEMA IF EXISTS bench_contract CASCADE;
CREATE SCHEMA bench_contract;
CREATE TABLE bench_contract.payloads (i int PRIMARY KEY, good jsonb NOT NULL, bad jsonb NOT NULL);
INSERT INTO bench_contract.payloads
    SELECT i, {good}, {bad} FROM pg_catalog.generate_series(1, %(rows)s) AS g(i);
CREATE FUNCTION bench_contract.publish_loop(use_bad boolean, etype text, n int)
RETURNS int LANGUAGE plpgsql AS $loop$
DECLARE
    p jsonb;
    rejected int := 0;
BEGIN
    FOR p IN SELECT CASE WHEN use_bad THEN x.bad ELSE x.good END
               FROM bench_contract.payloads x WHERE x.i <= n ORDER BY x.i
    LOOP
        BEGIN
            PERFORM outbox.publish('{topic}', p, event_type => etype);
        EXCEPTION WHEN invalid_parameter_value THEN
            rejected := rejected + 1;
        END;
    END LOOP;
    RETURN rejected;
END
$loop$;
""".format(good=GOOD_SQL, bad=BAD_SQL, topic=TOPIC)

CALLS_VARIANTS = ['unregistered', 'object', 'ten', 'ten_noheader']
CALLS_SQL = ("SELECT pg_catalog.count(outbox.publish('%s', p.good, event_type => %%s))"
             "  FROM bench_contract.payloads p WHERE p.i <= %%s" % TOPIC)


def pgbench_script(etype, top):
    return ("\\set i random(1, %d)\n"
            "SELECT outbox.publish('%s', p.good, event_type => '%s')"
            " FROM bench_contract.payloads p WHERE p.i = :i;\n" % (top, TOPIC, etype))


def fresh(cur):
    cur.execute('TRUNCATE outbox.events')
    cur.execute('CHECKPOINT')


def rows_of(cur, etype):
    """(rows in outbox.events, of them of event type etype)"""
    cur.execute('SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE event_type = %s)'
                '  FROM outbox.events', (etype,))
    return cur.fetchone()


def timed(cur, backend_pid, sql, args):
    """Run one statement: (its single value, clock s, backend CPU s)."""
    cpu0 = process_cpu_s(backend_pid)
    t0 = time.perf_counter()
    cur.execute(sql, args)
    value = cur.fetchone()[0]
    t1 = time.perf_counter()
    cpu1 = process_cpu_s(backend_pid)
    return value, t1 - t0, (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--events', type=int, default=100000,
                    help='events per statement in the calls runs')
    ap.add_argument('--calls', type=int, default=50000,
                    help='publish() calls per loop in the rejected/accepted runs')
    ap.add_argument('--rounds', type=int, default=4,
                    help='runs per variant of calls and of the loop, alternating')
    ap.add_argument('--seconds', type=int, default=10, help='pgbench, per side and configuration')
    ap.add_argument('--pgbench-rounds', type=int, default=2,
                    help='split --seconds into this many pgbench runs per side, alternating')
    ap.add_argument('--sync-off', action='store_true',
                    help='also the pgbench runs with synchronous_commit=off')
    a = ap.parse_args()
    if a.events < 1 or a.calls < 1 or a.rounds < 1 or a.pgbench_rounds < 1:
        ap.error('--events, --calls, --rounds and --pgbench-rounds must be positive')
    nrows = max(a.events, a.calls)

    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute('SELECT pg_catalog.count(*) FROM outbox.events')
    if cur.fetchone()[0] != 0:
        print('contract_cost: outbox.events is not empty at start', file=sys.stderr)
        return 1
    log('filling bench_contract.payloads with %d good and bad payloads' % nrows)
    cur.execute(SETUP_SQL.replace('%(rows)s', str(nrows)))
    cur.execute('VACUUM ANALYZE bench_contract.payloads')
    cur.execute('SELECT pg_catalog.avg(pg_catalog.octet_length(good::text)),'
                ' pg_catalog.avg(pg_catalog.octet_length(bad::text)) FROM bench_contract.payloads')
    good_bytes, bad_bytes = [float(x) for x in cur.fetchone()]
    cur.execute('SELECT good::text, bad::text FROM bench_contract.payloads WHERE i = 1')
    sample_good, sample_bad = cur.fetchone()
    cur.execute('SELECT outbox.drop_event_type(%s)', (TYPES['unregistered'],))
    cur.execute('SELECT outbox.register_event_type(%s, schema => %s)',
                (TYPES['ten'], json.dumps(TEN_SCHEMA)))
    cur.execute('SELECT outbox.register_event_type(%s, schema => %s)',
                (TYPES['object'], json.dumps(OBJECT_SCHEMA)))
    cur.execute("SELECT pg_catalog.string_agg(name || '=' || setting, ', ' ORDER BY name)"
                "  FROM pg_catalog.pg_settings WHERE name IN ('synchronous_commit', 'fsync',"
                " 'wal_level', 'full_page_writes', 'outbox.schema_uri_prefix')")
    settings = cur.fetchone()[0]
    cur.execute('SELECT pg_catalog.pg_backend_pid()')
    backend_pid = cur.fetchone()[0]

    relay = relay_pid(cur)
    if not pause_relay(cur, 'contract_cost'):
        return 1

    calls_runs, pgbench_runs, loop_runs = [], [], []
    rc = 0

    def bad_rows(what, rows, typed, expected):
        nonlocal rc
        if rows != expected or typed != expected:
            print('contract_cost: %s: %d rows (%d of its event type), expected %d'
                  % (what, rows, typed, expected), file=sys.stderr)
            rc = 1
            return False
        return True

    try:
        # this session compiles and caches both schemas before measuring
        fresh(cur)
        for v in ('unregistered', 'object', 'ten'):
            cur.execute(CALLS_SQL, (TYPES[v], min(1000, a.events)))
        cur.execute('SELECT bench_contract.publish_loop(true, %s, %s)',
                    (TYPES['ten'], min(1000, a.calls)))
        if cur.fetchone()[0] != min(1000, a.calls):
            print('contract_cost: warm-up: not every bad payload was rejected', file=sys.stderr)
            rc = 1

        # 1. per-call cost in one statement
        for rnd, v in alternating(CALLS_VARIANTS, a.rounds):
            etype = TYPES['ten' if v == 'ten_noheader' else v]
            fresh(cur)
            log('calls: %d x publish(), %s type, one statement' % (a.events, v))
            if v == 'ten_noheader':
                cur.execute("SET outbox.schema_uri_prefix = ''")
            try:
                n, secs, cpu = timed(cur, backend_pid, CALLS_SQL, (etype, a.events))
            finally:
                if v == 'ten_noheader':
                    cur.execute('RESET outbox.schema_uri_prefix')
            rows, typed = rows_of(cur, etype)
            ok = bad_rows('calls %s' % v, rows, typed, a.events)
            if v == 'ten_noheader':
                cur.execute("SELECT pg_catalog.count(*) FROM outbox.events WHERE headers ? 'ce_dataschema'")
                if cur.fetchone()[0] != 0:
                    print('contract_cost: calls ten_noheader: rows with a ce_dataschema header',
                          file=sys.stderr)
                    ok = False
                    rc = 1
            if n != a.events:
                print('contract_cost: calls %s: count() returned %d' % (v, n), file=sys.stderr)
                ok = False
                rc = 1
            calls_runs.append({'variant': v, 'round': rnd, 'events': a.events, 'seconds': secs,
                               'backend_cpu_s': cpu, 'rows': rows, 'rows_ok': ok})

        # 2. one publish() per transaction, pgbench
        secs = max(1, a.seconds // a.pgbench_rounds)
        for sync_off in ([False, True] if a.sync_off else [False]):
            for rnd, v in alternating(['unregistered', 'ten'], a.pgbench_rounds):
                fresh(cur)
                log('pgbench: %s type, 1 event per transaction, 1 client, %d s%s'
                    % (v, secs, ', synchronous_commit=off' if sync_off else ''))
                cpu0 = process_cpu_s(relay) if relay else None
                r = pgbench(a.dsn, pgbench_script(TYPES[v], nrows), 1, secs, sync_off=sync_off)
                cpu1 = process_cpu_s(relay) if relay else None
                rows, typed = rows_of(cur, TYPES[v])
                r.update({'variant': v, 'round': rnd, 'rows': rows,
                          'relay_cpu_s': (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None
                          else None,
                          'rows_ok': bad_rows('pgbench %s' % v, rows, typed, r['transactions'])})
                pgbench_runs.append(r)

        # 3. rejected vs accepted, each call in a subtransaction
        for rnd, v in alternating(['accepted', 'rejected'], a.rounds):
            fresh(cur)
            log('loop: %d x publish() in BEGIN ... EXCEPTION, %s payloads' % (a.calls, v))
            rejected, secs_, cpu = timed(cur, backend_pid,
                                         'SELECT bench_contract.publish_loop(%s, %s, %s)',
                                         (v == 'rejected', TYPES['ten'], a.calls))
            rows, typed = rows_of(cur, TYPES['ten'])
            want_rows = a.calls if v == 'accepted' else 0
            want_rej = a.calls - want_rows
            ok = bad_rows('loop %s' % v, rows, typed, want_rows)
            if rejected != want_rej:
                print('contract_cost: loop %s: %d rejected, expected %d' % (v, rejected, want_rej),
                      file=sys.stderr)
                ok = False
                rc = 1
            loop_runs.append({'variant': v, 'round': rnd, 'calls': a.calls, 'seconds': secs_,
                              'backend_cpu_s': cpu, 'rows': rows, 'rejected': rejected,
                              'rows_ok': ok})
    except (RuntimeError, psycopg2.Error) as e:
        print('contract_cost: %s' % e, file=sys.stderr)
        rc = 1
    finally:
        # nothing for the relay to send once resumed
        cur.execute('TRUNCATE outbox.events')
        cur.execute('SELECT outbox.resume_relay()')
        if not wait_state(cur, False):
            print('contract_cost: the relay still reported "paused" 30 s after resume',
                  file=sys.stderr)
            rc = 1
        for t in TYPES.values():
            cur.execute('SELECT outbox.drop_event_type(%s)', (t,))
        cur.execute('DROP SCHEMA bench_contract CASCADE')
    print(json.dumps({'events': a.events, 'calls': a.calls, 'rounds': a.rounds,
                      'pgbench_seconds': max(1, a.seconds // a.pgbench_rounds),
                      'pgbench_rounds': a.pgbench_rounds, 'types': TYPES,
                      'calls_runs': calls_runs, 'pgbench_runs': pgbench_runs,
                      'loop_runs': loop_runs, 'schema': TEN_SCHEMA,
                      'payload_bytes': {'good': good_bytes, 'bad': bad_bytes},
                      'sample_payloads': {'good': sample_good, 'bad': sample_bad},
                      'relay_pid': relay, 'backend_pid': backend_pid,
                      'nproc': os.cpu_count(), 'settings': settings}))
    return rc


if __name__ == '__main__':
    sys.exit(main())
