#!/usr/bin/env python3
"""A hand-written polling outbox relay, the way teams write one when they
have no extension: Python, psycopg2, confluent-kafka.  The comparison point
of section 4 of test/bench/run_bench.sh (driven by drain_compare.py); it
measures nothing itself.

Each pass, in one transaction:
    SELECT id, event_id, topic, key, payload, headers, created_at
      FROM outbox_poll.events ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1000;
    produce each row (the relay's CloudEvents headers: ce_specversion,
      ce_id, ce_source, ce_type, ce_time, content-type, then the row's own
      headers);
    producer.flush()  -- wait for every delivery report;
    DELETE FROM outbox_poll.events WHERE id = ANY(ids);  COMMIT
(created_at is read for ce_time.)  A failed delivery rolls the transaction
back, so the rows stay for the next pass.  The producer has the relay's
settings: acks=all, enable.idempotence=true, linger.ms=1,
partitioner=murmur2_random, message.timeout.ms=30000.

outbox_poll.events is created by create_table() with outbox.events' shape
("LIKE outbox.events INCLUDING ALL", its own sequence).
"""

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
from benchlib import cloudevents_headers, produce_waiting

BATCH = 1000

SELECT_SQL = ('SELECT id, event_id, topic, key, payload, headers, created_at'
              '  FROM outbox_poll.events ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s')
DELETE_SQL = 'DELETE FROM outbox_poll.events WHERE id = ANY(%s)'

CREATE_SQL = """
CREATE SCHEMA IF NOT EXISTS outbox_poll;
DROP TABLE IF EXISTS outbox_poll.events;
DROP SEQUENCE IF EXISTS outbox_poll.events_id_seq;
CREATE SEQUENCE outbox_poll.events_id_seq;
CREATE TABLE outbox_poll.events (LIKE outbox.events INCLUDING ALL);
ALTER TABLE outbox_poll.events
    ALTER COLUMN id SET DEFAULT pg_catalog.nextval('outbox_poll.events_id_seq');
ALTER SEQUENCE outbox_poll.events_id_seq OWNED BY outbox_poll.events.id;
"""

PRODUCER_CONFIG = {
    'client.id': 'bench-poll-relay',
    'acks': 'all',
    'enable.idempotence': True,
    'linger.ms': 1,
    'message.timeout.ms': 30000,
    'partitioner': 'murmur2_random',
}


def create_table(cur):
    cur.execute(CREATE_SQL)


def make_producer(bootstrap):
    from confluent_kafka import Producer
    conf = dict(PRODUCER_CONFIG)
    conf['bootstrap.servers'] = bootstrap
    return Producer(conf)


class PollingRelay:
    def __init__(self, conn, producer, batch=BATCH):
        self.conn = conn            # psycopg2 connection, autocommit off
        self.producer = producer
        self.batch = batch
        self.failed = []
        self.passes = 0

    def _on_delivery(self, err, msg):
        if err is not None:
            self.failed.append(err)

    def relay_once(self):
        """One pass; returns the number of rows relayed and deleted (0 when
        there was nothing to do).  Raises when a delivery failed (after
        rolling back)."""
        cur = self.conn.cursor()
        cur.execute(SELECT_SQL, (self.batch,))
        rows = cur.fetchall()
        if not rows:
            self.conn.commit()
            return 0
        self.failed = []
        ids = []
        for id_, event_id, topic, key, payload, headers, created_at in rows:
            hdrs = cloudevents_headers(str(event_id), topic, created_at)
            if headers:
                hdrs += [(k, v.encode()) for k, v in headers.items()]
            produce_waiting(self.producer, topic, None if payload is None else bytes(payload),
                            None if key is None else key.encode(), hdrs, self._on_delivery)
            ids.append(id_)
        self.producer.flush()
        if self.failed:
            self.conn.rollback()
            raise RuntimeError('%d deliveries failed, e.g. %s' % (len(self.failed), self.failed[0]))
        cur.execute(DELETE_SQL, (ids,))
        self.conn.commit()
        self.passes += 1
        return len(rows)

    def drain(self):
        """Relay until a pass finds nothing; returns the rows relayed."""
        total = 0
        while True:
            n = self.relay_once()
            if n == 0:
                return total
            total += n
