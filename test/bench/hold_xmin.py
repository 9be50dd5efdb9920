#!/usr/bin/env python3
"""Holds vacuum back for section 7 of test/bench/run_bench.sh: a session
stays idle in an open transaction, so that no row deleted from
outbox.events after it began can be removed, as when an application leaves
a transaction open.  It times nothing.

Protocol: the session runs BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT
txid_current(); SELECT count(*) FROM pg_catalog.pg_class (a report on
tables of its own, as an application's forgotten transaction would have
run); and stays idle in that transaction.  With --lock-events it reads
SELECT count(*) FROM outbox.events instead, so that it also holds a lock
on the table for as long as it stays open, which keeps the relay from
truncating it (src/reclaim.c).  A second session checks in pg_stat_activity that it is "idle
in transaction" with backend_xmin set, and this prints one JSON line (pid,
txid, backend_xmin, state), or nothing and exits with status 1 when the
check failed.  Then it waits for a line (or end of file) on stdin.  At that
point, from the second session: VACUUM outbox.events, which can remove no
row deleted after the held snapshot and records the dead rows it had to
leave in n_dead_tup; read n_live_tup, n_dead_tup, pg_relation_size and
pg_total_relation_size of outbox.events, and that backend_xmin is still set
("held").  Then the transaction ends (ROLLBACK), VACUUM again, the same
figures again ("released").  Prints one JSON line: the first line's fields,
held, released.
"""

import argparse
import json
import sys

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
import psycopg2

STATE_SQL = ("SELECT state, backend_xmin::text FROM pg_catalog.pg_stat_activity"
             " WHERE pid = %s")


def table_state(cur, holder_pid):
    """VACUUM outbox.events, then its figures and the holder's backend_xmin."""
    cur.execute('VACUUM outbox.events')
    cur.execute("SELECT n_live_tup, n_dead_tup, pg_catalog.pg_relation_size(relid),"
                " pg_catalog.pg_total_relation_size(relid)"
                "  FROM pg_catalog.pg_stat_user_tables"
                " WHERE relid = 'outbox.events'::regclass")
    live, dead, heap, total = cur.fetchone()
    cur.execute(STATE_SQL, (holder_pid,))
    row = cur.fetchone()
    return {'n_live_tup': live, 'n_dead_tup': dead, 'heap_bytes': heap, 'total_bytes': total,
            'holder_xmin': row[1] if row else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--lock-events', action='store_true',
                    help='read outbox.events in the held transaction, holding a lock on it')
    a = ap.parse_args()

    holder = psycopg2.connect(a.dsn)
    holder.autocommit = True    # psycopg2 sends the BEGIN and ROLLBACK as written
    hcur = holder.cursor()
    hcur.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')
    hcur.execute('SELECT pg_catalog.txid_current(), pg_catalog.pg_backend_pid()')
    txid, pid = hcur.fetchone()
    hcur.execute('SELECT pg_catalog.count(*) FROM %s'
                 % ('outbox.events' if a.lock_events else 'pg_catalog.pg_class'))

    watcher = psycopg2.connect(a.dsn)
    watcher.autocommit = True
    wcur = watcher.cursor()
    wcur.execute(STATE_SQL, (pid,))
    state, xmin = wcur.fetchone()
    if state != 'idle in transaction' or xmin is None:
        print('hold_xmin: the holding session is %r with backend_xmin %s' % (state, xmin),
              file=sys.stderr)
        return 1
    start = {'pid': pid, 'txid': txid, 'backend_xmin': xmin, 'state': state,
             'lock_events': a.lock_events}
    print(json.dumps(start), flush=True)

    sys.stdin.readline()
    held = table_state(wcur, pid)
    hcur.execute('ROLLBACK')
    holder.close()
    released = table_state(wcur, pid)
    watcher.close()
    print(json.dumps(dict(start, held=held, released=released)), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
