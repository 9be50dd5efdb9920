#!/usr/bin/env python3
"""A logical-decoding relay to Kafka, written the way its users write one
(psycopg2's replication support, pgoutput, confluent-kafka): the second
peer that section 10 of test/bench/run_bench.sh measures beside outbox.

Publishing (peer_drain.py, latency.py --mode logical) happens in the
application's transaction, with no table at all:

    SELECT pg_logical_emit_message(true, <topic>,
                                   <ce_id> || E'\\n' || <key> || E'\\n' || <payload>)

A transactional message is decoded at its transaction's commit, in commit
order.  This relay streams the slot --slot (pgoutput, proto_version 1,
messages on, publication --publication, which may be empty), produces each
message, and when nothing more is waiting (or after --batch messages)
flushes the producer and only then confirms the position of the last
message it produced (send_feedback(flush_lsn=...)), so the slot keeps
every message Kafka has not acknowledged; after a crash they are sent again.

pgoutput's message ('M'): int8 flags, int64 LSN, the prefix (a
NUL-terminated string), int32 length, the content.  Begin, commit and the
rest are skipped.

The producer has outbox's settings (benchlib.producer_config) and the same
CloudEvents headers as outbox and pgq_relay.py (with --id-only just ce_id).

Runs until stdin closes or says "stop", then prints one JSON object:
events, flushes, failed, the walsender's pid (for the driver's CPU
accounting).  Exit status 0 unless a delivery failed.
"""

import argparse
import datetime
import json
import select
import struct
import sys

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
from benchlib import cloudevents_headers, produce_waiting, producer_config


def parse_message(data):
    """(topic, content) of a pgoutput message, None for anything else."""
    if data[:1] != b'M':
        return None
    end = data.index(b'\0', 10)
    prefix = data[10:end].decode()
    (length,) = struct.unpack_from('>i', data, end + 1)
    return prefix, data[end + 5:end + 5 + length]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dsn', required=True)
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--slot', default='bench_relay')
    ap.add_argument('--publication', default='bench_relay')
    ap.add_argument('--batch', type=int, default=1000)
    ap.add_argument('--id-only', action='store_true',
                    help='send only the ce_id header, not the other CloudEvents ones '
                         '(a leaner relay: what formatting them costs in Python)')
    a = ap.parse_args()

    import psycopg2
    import psycopg2.extras
    from confluent_kafka import Producer

    conn = psycopg2.connect(a.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=a.slot, decode=False,
                          options={'proto_version': '1', 'publication_names': a.publication,
                                   'messages': 'true'})
    p = Producer(producer_config(a.bootstrap, 'bench-logical-relay'))
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(str(err))

    # the walsender serving us is the newest one on our slot
    side = psycopg2.connect(a.dsn)
    side.autocommit = True
    scur = side.cursor()
    scur.execute('SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s', (a.slot,))
    walsender = scur.fetchone()[0]
    side.close()
    sys.stdout.write(json.dumps({'ready': True, 'walsender_pid': walsender}) + '\n')
    sys.stdout.flush()

    events = flushes = 0
    unconfirmed = None          # LSN of the last message produced, not yet confirmed
    pending = 0
    while True:
        msg = cur.read_message()
        if msg is not None:
            m = parse_message(msg.payload)
            if m is not None:
                topic, content = m
                eid, key, value = content.split(b'\n', 2)
                now = datetime.datetime.now(datetime.timezone.utc)
                produce_waiting(p, topic, value, key,
                                cloudevents_headers(eid, topic, now, a.id_only), on_delivery)
                events += 1
                pending += 1
            unconfirmed = msg.data_start
            if pending < a.batch:
                continue
        if unconfirmed is not None:
            if p.flush(60) > 0 or failed:
                print('logical_relay: delivery failed: %s' % (failed[:1] or 'timeout'),
                      file=sys.stderr)
                return 1
            cur.send_feedback(flush_lsn=unconfirmed)
            flushes += 1
            unconfirmed = None
            pending = 0
            continue
        r, _, _ = select.select([conn, sys.stdin], [], [], 1.0)
        if sys.stdin in r and sys.stdin.readline().strip() in ('stop', ''):
            break
        if not r:
            cur.send_feedback()     # keepalive
    conn.close()
    print(json.dumps({'events': events, 'flushes': flushes, 'failed': len(failed),
                      'walsender_pid': walsender}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
