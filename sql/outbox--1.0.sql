/* outbox--1.0.sql: transactional outbox to Apache Kafka */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION outbox" to load this file. \quit

-- Roles: applications get these instead of superuser.  Roles are cluster-wide,
-- so a second database installing the extension finds them already there.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'outbox_publisher') THEN
        CREATE ROLE outbox_publisher NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'outbox_consumer') THEN
        CREATE ROLE outbox_consumer NOLOGIN;
    END IF;
END
$roles$;

REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO outbox_publisher, outbox_consumer;

-- Pending events --------------------------------------------------------------

CREATE SEQUENCE @extschema@.events_id_seq;

CREATE TABLE @extschema@.events (
    id              bigint      NOT NULL DEFAULT pg_catalog.nextval('@extschema@.events_id_seq'),
    event_id        uuid        NOT NULL,
    topic           text        NOT NULL,
    key             text,
    payload         bytea,
    headers         jsonb,
    event_type      text,
    source          text,
    traceparent     text,
    content_type    text        NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    CONSTRAINT events_pkey PRIMARY KEY (id)
);
ALTER SEQUENCE @extschema@.events_id_seq OWNED BY @extschema@.events.id;

-- finds an earlier event of the same key that waits for a retry
CREATE INDEX events_retry_idx ON @extschema@.events (topic, key, id) WHERE attempts > 0;

COMMENT ON TABLE @extschema@.events IS
    'Pending outbox events: a row exists iff its transaction committed and Kafka has not yet acknowledged it';
COMMENT ON COLUMN @extschema@.events.id IS 'Relay order: events are produced in id order';
COMMENT ON COLUMN @extschema@.events.event_id IS 'Event id (UUID version 7), sent as the ce_id header';
COMMENT ON COLUMN @extschema@.events.topic IS 'Kafka topic';
COMMENT ON COLUMN @extschema@.events.key IS 'Kafka record key (partition key); NULL for none';
COMMENT ON COLUMN @extschema@.events.payload IS 'Kafka record value; NULL for a tombstone';
COMMENT ON COLUMN @extschema@.events.headers IS 'Caller''s Kafka headers, sent after the CloudEvents headers';
COMMENT ON COLUMN @extschema@.events.event_type IS 'ce_type header; NULL sends the topic';
COMMENT ON COLUMN @extschema@.events.source IS 'ce_source header; NULL sends /outbox/<database>';
COMMENT ON COLUMN @extschema@.events.traceparent IS 'W3C traceparent header, when given';
COMMENT ON COLUMN @extschema@.events.content_type IS 'content-type header';
COMMENT ON COLUMN @extschema@.events.created_at IS 'When publish() ran; sent as ce_time';
COMMENT ON COLUMN @extschema@.events.attempts IS 'Failed delivery attempts so far';
COMMENT ON COLUMN @extschema@.events.next_attempt_at IS 'Earliest time of the next attempt; NULL means now';
COMMENT ON COLUMN @extschema@.events.last_error IS 'Error of the last failed attempt';

-- Dead letters -----------------------------------------------------------------

CREATE SEQUENCE @extschema@.dead_letters_id_seq;

CREATE TABLE @extschema@.dead_letters (
    id              bigint      NOT NULL DEFAULT pg_catalog.nextval('@extschema@.dead_letters_id_seq'),
    event_id        uuid        NOT NULL,
    topic           text        NOT NULL,
    key             text,
    payload         bytea,
    headers         jsonb,
    event_type      text,
    source          text,
    traceparent     text,
    content_type    text        NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL,
    error_code      text        NOT NULL,
    error           text        NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT dead_letters_pkey PRIMARY KEY (id)
);
ALTER SEQUENCE @extschema@.dead_letters_id_seq OWNED BY @extschema@.dead_letters.id;
CREATE INDEX dead_letters_event_id_idx ON @extschema@.dead_letters (event_id);

COMMENT ON TABLE @extschema@.dead_letters IS
    'Events the relay gave up on, with the whole original message and the error; see outbox.replay_dead_letters()';
COMMENT ON COLUMN @extschema@.dead_letters.error_code IS 'librdkafka error name, e.g. MSG_SIZE_TOO_LARGE';
COMMENT ON COLUMN @extschema@.dead_letters.error IS 'Error text';
COMMENT ON COLUMN @extschema@.dead_letters.attempts IS 'Delivery attempts made';
COMMENT ON COLUMN @extschema@.dead_letters.failed_at IS 'When the event was moved here';

-- pending events and dead letters travel in pg_dump
SELECT pg_catalog.pg_extension_config_dump('@extschema@.events', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.dead_letters_id_seq', '');

-- Publishing ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.publish(
    topic       text,
    payload     jsonb,
    key         text DEFAULT NULL,
    headers     jsonb DEFAULT NULL,
    event_type  text DEFAULT NULL,
    source      text DEFAULT NULL,
    traceparent text DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_publish';

COMMENT ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text) IS
    'Publish a JSON event to a Kafka topic when the calling transaction commits; returns its event id (UUID v7). A NULL payload publishes a tombstone.';

CREATE FUNCTION @extschema@.publish_binary(
    topic        text,
    payload      bytea,
    key          text DEFAULT NULL,
    headers      jsonb DEFAULT NULL,
    event_type   text DEFAULT NULL,
    source       text DEFAULT NULL,
    traceparent  text DEFAULT NULL,
    content_type text DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_publish_binary';

COMMENT ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text) IS
    'Publish a binary event (Avro, Protobuf...) to a Kafka topic when the calling transaction commits; content_type defaults to application/octet-stream.';

REVOKE ALL ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text) TO outbox_publisher;
GRANT EXECUTE ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text) TO outbox_publisher;

-- Relay start-up -----------------------------------------------------------------

CREATE FUNCTION @extschema@._start_relay()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'outbox_start_relay';

COMMENT ON FUNCTION @extschema@._start_relay() IS
    'Internal: asks the launcher to start this database''s relay when the transaction commits';
REVOKE ALL ON FUNCTION @extschema@._start_relay() FROM PUBLIC;

SELECT @extschema@._start_relay();

-- Inbox --------------------------------------------------------------------------

-- One row per (consumer, event id) received.  Ids are uuid: UUID v7 ids from
-- publish() arrive in time order, so inserts land at the right edge of the
-- primary key, like a serial.  Rows expire by expires_at and are deleted in
-- small batches; time-partitioning would make purging a DROP, but a unique
-- key on a partitioned table must include the partition key, which would let
-- a duplicate in through another partition.
CREATE TABLE @extschema@.inbox (
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    received_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT inbox_pkey PRIMARY KEY (consumer, event_id)
) WITH (fillfactor = 100, autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX inbox_expires_at_idx ON @extschema@.inbox (expires_at);

COMMENT ON TABLE @extschema@.inbox IS
    'Event ids each consumer has received: outbox.receive() de-duplicates against it until the row expires';
COMMENT ON COLUMN @extschema@.inbox.consumer IS 'Consumer name (at most 200 bytes)';
COMMENT ON COLUMN @extschema@.inbox.event_id IS 'Event id; a text id not in UUID form is stored as its MD5 (version 3) UUID';
COMMENT ON COLUMN @extschema@.inbox.received_at IS 'When receive() first returned true for it';
COMMENT ON COLUMN @extschema@.inbox.expires_at IS 'When it may be purged; after that the same id is received again';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.inbox', '');

GRANT SELECT, INSERT ON @extschema@.inbox TO outbox_consumer;

CREATE FUNCTION @extschema@.receive(consumer text, event_id uuid, ttl interval DEFAULT NULL)
RETURNS boolean
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_receive_uuid';

CREATE FUNCTION @extschema@.receive(consumer text, event_id text, ttl interval DEFAULT NULL)
RETURNS boolean
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_receive_text';

COMMENT ON FUNCTION @extschema@.receive(text, uuid, interval) IS
    'Mark an event received by a consumer in the calling transaction: true the first time, false for a duplicate; ttl defaults to outbox.inbox_ttl';
COMMENT ON FUNCTION @extschema@.receive(text, text, interval) IS
    'receive() for text event ids (e.g. from other producers); ids in UUID form match their uuid';

CREATE FUNCTION @extschema@.received(consumer text, event_id uuid)
RETURNS boolean
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'outbox_received_uuid';

CREATE FUNCTION @extschema@.received(consumer text, event_id text)
RETURNS boolean
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'outbox_received_text';

COMMENT ON FUNCTION @extschema@.received(text, uuid) IS
    'Has this consumer received this event id (and not yet purged it)? Does not mark it';
COMMENT ON FUNCTION @extschema@.received(text, text) IS
    'received() for text event ids';

CREATE FUNCTION @extschema@.purge_inbox()
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_purge_inbox';

COMMENT ON FUNCTION @extschema@.purge_inbox() IS
    'Delete every expired inbox row now and return how many went (the relays also do this every outbox.purge_interval)';

CREATE VIEW @extschema@.inbox_consumers AS
SELECT consumer,
       pg_catalog.count(*) AS received,
       pg_catalog.count(*) FILTER (WHERE expires_at < pg_catalog.now()) AS expired,
       pg_catalog.min(received_at) AS oldest_received_at,
       pg_catalog.max(received_at) AS newest_received_at
  FROM @extschema@.inbox
 GROUP BY consumer;

COMMENT ON VIEW @extschema@.inbox_consumers IS
    'Per consumer: ids held in the inbox, how many of them expired (awaiting purge), oldest and newest';

REVOKE ALL ON FUNCTION @extschema@.receive(text, uuid, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.receive(text, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.received(text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.received(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.purge_inbox() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.receive(text, uuid, interval) TO outbox_consumer;
GRANT EXECUTE ON FUNCTION @extschema@.receive(text, text, interval) TO outbox_consumer;
GRANT EXECUTE ON FUNCTION @extschema@.received(text, uuid) TO outbox_consumer;
GRANT EXECUTE ON FUNCTION @extschema@.received(text, text) TO outbox_consumer;
GRANT SELECT ON @extschema@.inbox_consumers TO outbox_consumer;

-- Dead-letter replay ---------------------------------------------------------------

-- Moves dead letters back to outbox.events, at the end of the queue (new ids,
-- attempts reset), and returns how many moved.  With no argument every dead
-- letter moves; otherwise those with the given event ids and/or topic.
CREATE FUNCTION @extschema@._wake_relay()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'outbox_wake_relay';

COMMENT ON FUNCTION @extschema@._wake_relay() IS
    'Internal: wakes this database''s relay when the transaction commits';
REVOKE ALL ON FUNCTION @extschema@._wake_relay() FROM PUBLIC;

CREATE FUNCTION @extschema@.replay_dead_letters(event_ids uuid[] DEFAULT NULL, topic text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $replay$
DECLARE
    n bigint;
BEGIN
    WITH moved AS (
        DELETE FROM @extschema@.dead_letters d
         WHERE (replay_dead_letters.event_ids IS NULL OR d.event_id = ANY (replay_dead_letters.event_ids))
           AND (replay_dead_letters.topic IS NULL OR d.topic = replay_dead_letters.topic)
        RETURNING d.*
    ), requeued AS (
        INSERT INTO @extschema@.events (event_id, topic, key, payload, headers, event_type,
                                        source, traceparent, content_type, created_at)
        SELECT m.event_id, m.topic, m.key, m.payload, m.headers, m.event_type,
               m.source, m.traceparent, m.content_type, m.created_at
          FROM moved m ORDER BY m.id
        RETURNING 1
    )
    SELECT count(*) INTO n FROM requeued;
    IF n > 0 THEN
        PERFORM @extschema@._wake_relay();
    END IF;
    RETURN n;
END
$replay$;

COMMENT ON FUNCTION @extschema@.replay_dead_letters(uuid[], text) IS
    'Move dead letters (all, or those with the given event ids and/or topic) back to the outbox; returns how many';
REVOKE ALL ON FUNCTION @extschema@.replay_dead_letters(uuid[], text) FROM PUBLIC;
