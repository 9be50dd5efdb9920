/* outbox--1.1--1.2.sql: trust: pause without publishing, an inbox only receive() writes */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION outbox UPDATE TO '1.2'" to load this file. \quit

-- Pause and resume wake the relay but take no event ids, so they no longer
-- count as publishing: PREPARE TRANSACTION works after them, and the relay's
-- read horizon does not wait for them.
CREATE FUNCTION @extschema@._nudge_relay()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'outbox_nudge_relay';
COMMENT ON FUNCTION @extschema@._nudge_relay() IS
    'Internal: wakes this database''s relay when the transaction commits';
REVOKE ALL ON FUNCTION @extschema@._nudge_relay() FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.pause_relay()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $pause$
DECLARE
    n bigint;
BEGIN
    INSERT INTO @extschema@.paused DEFAULT VALUES ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@._nudge_relay();
    RETURN n > 0;
END
$pause$;

CREATE OR REPLACE FUNCTION @extschema@.resume_relay()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $resume$
DECLARE
    n bigint;
BEGIN
    DELETE FROM @extschema@.paused;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@._nudge_relay();
    RETURN n > 0;
END
$resume$;

-- The inbox is written by receive() only: outbox_consumer keeps reading it,
-- but may no longer insert rows of its own (an empty consumer, an expiry of
-- infinity...).  receive() runs as the extension's owner; every name in its
-- statement is schema-qualified, operators too.
--
-- Causation chains: receive() takes the correlation id of the message
-- received, and the events the transaction publishes afterwards carry
-- ce_causationid and ce_correlationid; publish() and publish_binary() take
-- them explicitly too; publish() and publish_binary() also take deliver_at
-- (delayed delivery, below).  A new argument is a new signature: the functions
-- are dropped and created again (an object of yours that depends on one,
-- a view for instance, stops the update with a clear error: drop it first).
REVOKE INSERT ON @extschema@.inbox FROM outbox_consumer;
DROP FUNCTION @extschema@.receive(text, uuid, interval);
DROP FUNCTION @extschema@.receive(text, text, interval);

CREATE FUNCTION @extschema@.receive(consumer text, event_id uuid, ttl interval DEFAULT NULL,
                                    correlation_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'outbox_receive_uuid';

CREATE FUNCTION @extschema@.receive(consumer text, event_id text, ttl interval DEFAULT NULL,
                                    correlation_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'outbox_receive_text';

COMMENT ON FUNCTION @extschema@.receive(text, uuid, interval, text) IS
    'Mark an event received by a consumer in the calling transaction: true the first time, false for a duplicate; ttl defaults to outbox.inbox_ttl; events published afterwards in the transaction name it as their cause, with correlation_id (default: its id)';
COMMENT ON FUNCTION @extschema@.receive(text, text, interval, text) IS
    'receive() for text event ids (e.g. from other producers); ids in UUID form match their uuid';
REVOKE ALL ON FUNCTION @extschema@.receive(text, uuid, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.receive(text, text, interval, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.receive(text, uuid, interval, text) TO outbox_consumer;
GRANT EXECUTE ON FUNCTION @extschema@.receive(text, text, interval, text) TO outbox_consumer;

DROP FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text);
DROP FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text);

CREATE FUNCTION @extschema@.publish(
    topic          text,
    payload        jsonb,
    key            text DEFAULT NULL,
    headers        jsonb DEFAULT NULL,
    event_type     text DEFAULT NULL,
    source         text DEFAULT NULL,
    traceparent    text DEFAULT NULL,
    correlation_id text DEFAULT NULL,
    causation_id   text DEFAULT NULL,
    deliver_at     timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_publish';
COMMENT ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text, text, text, timestamptz) IS
    'Publish a JSON event to a Kafka topic when the calling transaction commits (not before deliver_at when given; later events of its key wait for it); returns its event id (UUID v7). A NULL payload publishes a tombstone.';

CREATE FUNCTION @extschema@.publish_binary(
    topic          text,
    payload        bytea,
    key            text DEFAULT NULL,
    headers        jsonb DEFAULT NULL,
    event_type     text DEFAULT NULL,
    source         text DEFAULT NULL,
    traceparent    text DEFAULT NULL,
    content_type   text DEFAULT NULL,
    correlation_id text DEFAULT NULL,
    causation_id   text DEFAULT NULL,
    deliver_at     timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_publish_binary';
COMMENT ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text, text, text, timestamptz) IS
    'Publish a binary event (Avro, Protobuf...) to a Kafka topic when the calling transaction commits (not before deliver_at when given); content_type defaults to application/octet-stream.';

REVOKE ALL ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text, text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text, text, text, timestamptz) TO outbox_publisher;
GRANT EXECUTE ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text, text, text, timestamptz) TO outbox_publisher;

-- Event contracts ---------------------------------------------------------------
--
-- One row per event type: its JSON Schema (draft-07), the topic a publish()
-- with a NULL topic goes to, a deprecation date, and for a type published
-- side by side with another during a migration, the type it is derived from
-- and the function that maps the payload.  Registered, changed and dropped
-- through register_event_type() and drop_event_type() only; publishers and
-- consumers read it.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'outbox_admin') THEN
        CREATE ROLE outbox_admin NOLOGIN;
    END IF;
END
$roles$;
GRANT USAGE ON SCHEMA @extschema@ TO outbox_admin;

CREATE TABLE @extschema@.event_types (
    event_type       text COLLATE "C" NOT NULL,
    topic            text,
    schema           jsonb,
    description      text,
    deprecated_after timestamptz,
    derived_from     text COLLATE "C",
    derive_with      regprocedure,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT event_types_pkey PRIMARY KEY (event_type),
    CONSTRAINT event_types_derivation CHECK ((derived_from IS NULL) = (derive_with IS NULL))
);
-- finds the types derived from the one being published
CREATE INDEX event_types_derived_from_idx ON @extschema@.event_types (derived_from)
    WHERE derived_from IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_types', '');

COMMENT ON TABLE @extschema@.event_types IS
    'Registered event types: the contract publish() checks (outbox.register_event_type)';
COMMENT ON COLUMN @extschema@.event_types.event_type IS 'ce_type, by convention {domain}.{action}.v{N}';
COMMENT ON COLUMN @extschema@.event_types.topic IS 'Kafka topic of a publish() whose topic is NULL';
COMMENT ON COLUMN @extschema@.event_types.schema IS 'JSON Schema (draft-07) every payload must match; NULL for none';
COMMENT ON COLUMN @extschema@.event_types.description IS 'What the event means, for people';
COMMENT ON COLUMN @extschema@.event_types.deprecated_after IS 'After this time publishing it warns or fails (outbox.deprecated_types)';
COMMENT ON COLUMN @extschema@.event_types.derived_from IS 'Event type whose publish() also publishes this one';
COMMENT ON COLUMN @extschema@.event_types.derive_with IS 'Function (jsonb) RETURNS jsonb mapping the source payload to this type''s';
COMMENT ON COLUMN @extschema@.event_types.created_at IS 'When the type was first registered';
COMMENT ON COLUMN @extschema@.event_types.updated_at IS 'When its registration last changed';

REVOKE ALL ON @extschema@.event_types FROM PUBLIC;
GRANT SELECT ON @extschema@.event_types TO outbox_publisher, outbox_consumer, outbox_admin;

CREATE FUNCTION @extschema@.register_event_type(
    event_type       text,
    schema           jsonb DEFAULT NULL,
    topic            text DEFAULT NULL,
    deprecated_after timestamptz DEFAULT NULL,
    derived_from     text DEFAULT NULL,
    derive_with      regprocedure DEFAULT NULL,
    description      text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_register_event_type';
COMMENT ON FUNCTION @extschema@.register_event_type(text, jsonb, text, timestamptz, text, regprocedure, text) IS
    'Registers an event type, or changes it when its consumers keep working';

CREATE FUNCTION @extschema@.drop_event_type(event_type text)
RETURNS boolean
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_drop_event_type';
COMMENT ON FUNCTION @extschema@.drop_event_type(text) IS
    'Removes an event type from the registry; false when it was not registered';

CREATE FUNCTION @extschema@.event_schema(event_type text)
RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT t.schema FROM @extschema@.event_types t
     WHERE t.event_type OPERATOR(pg_catalog.=) event_schema.event_type;
END;
COMMENT ON FUNCTION @extschema@.event_schema(text) IS
    'The JSON Schema of a registered event type, or NULL';

REVOKE ALL ON FUNCTION @extschema@.register_event_type(text, jsonb, text, timestamptz, text, regprocedure, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.drop_event_type(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.event_schema(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.register_event_type(text, jsonb, text, timestamptz, text, regprocedure, text) TO outbox_admin;
GRANT EXECUTE ON FUNCTION @extschema@.drop_event_type(text) TO outbox_admin;
GRANT EXECUTE ON FUNCTION @extschema@.event_schema(text) TO outbox_publisher, outbox_consumer, outbox_admin;

-- Dead letters on Kafka -----------------------------------------------------------
--
-- With outbox.dead_letter_topic_suffix set, every event that becomes a dead
-- letter is also produced to <topic><suffix>.  The row in dead_letters stays
-- the source of truth: forward_topic says where it goes (NULL: the suffix was
-- not set when it failed, so it is not forwarded), forwarded_at when Kafka
-- took it, and a forward that failed waits for next_forward_at.  A replayed
-- dead letter takes its forwarded_at back to outbox.events (replay, below),
-- so that failing again does not forward it a second time.
ALTER TABLE @extschema@.events ADD COLUMN forwarded_at timestamptz;
COMMENT ON COLUMN @extschema@.events.forwarded_at IS
    'For a replayed dead letter: when it was forwarded to the dead-letter topic (it is not forwarded again)';

ALTER TABLE @extschema@.dead_letters
    ADD COLUMN forward_topic    text,
    ADD COLUMN forwarded_at     timestamptz,
    ADD COLUMN forward_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN next_forward_at  timestamptz,
    ADD COLUMN forward_error    text;
-- the relay's queue of forwards to make
CREATE INDEX dead_letters_forward_idx ON @extschema@.dead_letters (id)
    WHERE forward_topic IS NOT NULL AND forwarded_at IS NULL;
COMMENT ON COLUMN @extschema@.dead_letters.forward_topic IS
    'Dead-letter topic it is produced to (outbox.dead_letter_topic_suffix when it failed); NULL: not forwarded';
COMMENT ON COLUMN @extschema@.dead_letters.forwarded_at IS 'When Kafka acknowledged it on forward_topic';
COMMENT ON COLUMN @extschema@.dead_letters.forward_attempts IS 'Failed attempts to forward it';
COMMENT ON COLUMN @extschema@.dead_letters.next_forward_at IS 'Earliest time of the next forward attempt; NULL means now';
COMMENT ON COLUMN @extschema@.dead_letters.forward_error IS 'Error of the last failed forward attempt';

-- Delayed delivery and per-key hold ---------------------------------------------
--
-- An event waits in outbox.events while next_attempt_at is set: for a retry
-- (attempts > 0), until its deliver_at (publish(..., deliver_at)), or
-- behind an earlier waiting event of its key.  The relay reads waiting
-- events through these two partial indexes, which hold only them, so an
-- event that does not wait costs nothing more; they replace the index on
-- retries.
DROP INDEX @extschema@.events_retry_idx;
-- an earlier waiting event of the same key
CREATE INDEX events_waiting_idx ON @extschema@.events (topic, key, id)
    WHERE next_attempt_at IS NOT NULL;
-- waiting events by the time they may go
CREATE INDEX events_due_idx ON @extschema@.events (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
COMMENT ON COLUMN @extschema@.events.next_attempt_at IS
    'Set while the event waits: for a retry, its deliver_at, or an earlier waiting event of its key; NULL: goes now';

-- Under outbox.dead_letter_policy = hold_key a dead letter holds its (topic,
-- key): later events of the key wait until it is replayed (first: with its
-- original id) or discarded.
ALTER TABLE @extschema@.dead_letters
    ADD COLUMN holds_key boolean NOT NULL DEFAULT false,
    ADD COLUMN outbox_id bigint;
CREATE INDEX dead_letters_held_idx ON @extschema@.dead_letters (topic, key) WHERE holds_key;
COMMENT ON COLUMN @extschema@.dead_letters.holds_key IS
    'Made under outbox.dead_letter_policy = hold_key: later events of its topic and key wait until it is replayed or discarded';
COMMENT ON COLUMN @extschema@.dead_letters.outbox_id IS
    'Its id in outbox.events: a replay of a dead letter that holds its key puts it back there, ahead of the events that waited';

-- Internal: at commit, tells the relay that waiting events may go now (a
-- replay or discard released a key), and wakes it.
CREATE FUNCTION @extschema@._release_waiting()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'outbox_release_waiting';
COMMENT ON FUNCTION @extschema@._release_waiting() IS
    'Internal: tells this database''s relay at commit that waiting events may go now';
REVOKE ALL ON FUNCTION @extschema@._release_waiting() FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.replay_dead_letters(event_ids uuid[] DEFAULT NULL, topic text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $replay$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@._wake_relay();
    PERFORM @extschema@._release_waiting();
    -- a dead letter that holds its key goes back under its own id, waiting
    -- (so that it goes first among the events of its key that waited);
    -- the others at the end of the queue
    WITH moved AS (
        DELETE FROM @extschema@.dead_letters d
         WHERE (replay_dead_letters.event_ids IS NULL OR d.event_id = ANY (replay_dead_letters.event_ids))
           AND (replay_dead_letters.topic IS NULL OR d.topic = replay_dead_letters.topic)
        RETURNING d.*
    ), requeued AS (
        INSERT INTO @extschema@.events (id, event_id, topic, key, payload, headers, event_type,
                                        source, traceparent, content_type, created_at,
                                        forwarded_at, next_attempt_at)
        SELECT CASE WHEN m.holds_key AND m.outbox_id IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM @extschema@.events e WHERE e.id = m.outbox_id)
                    THEN m.outbox_id
                    ELSE nextval('@extschema@.events_id_seq') END,
               m.event_id, m.topic, m.key, m.payload, m.headers, m.event_type,
               m.source, m.traceparent, m.content_type, m.created_at, m.forwarded_at,
               CASE WHEN m.holds_key THEN now() END
          FROM moved m ORDER BY m.id
        RETURNING 1
    )
    SELECT count(*) INTO n FROM requeued;
    RETURN n;
END
$replay$;

CREATE FUNCTION @extschema@.discard_dead_letters(event_ids uuid[] DEFAULT NULL, topic text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $discard$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@._release_waiting();
    DELETE FROM @extschema@.dead_letters d
     WHERE (discard_dead_letters.event_ids IS NULL OR d.event_id = ANY (discard_dead_letters.event_ids))
       AND (discard_dead_letters.topic IS NULL OR d.topic = discard_dead_letters.topic);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$discard$;
COMMENT ON FUNCTION @extschema@.discard_dead_letters(uuid[], text) IS
    'Give dead letters up for good (all, or those with the given event ids and/or topic), releasing the keys they hold; returns how many';
REVOKE ALL ON FUNCTION @extschema@.discard_dead_letters(uuid[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.discard_dead_letters(uuid[], text) TO outbox_admin;

-- outbox.stats: how many events wait for their deliver_at, and how many wait
-- behind a dead letter that holds their key
DROP VIEW @extschema@.stats;
DROP FUNCTION @extschema@.relay_stats();
CREATE FUNCTION @extschema@.relay_stats(
    OUT datname text,
    OUT pid integer,
    OUT state text,
    OUT brokers text,
    OUT pending bigint,
    OUT oldest_pending_at timestamptz,
    OUT delivered bigint,
    OUT failed bigint,
    OUT dead_lettered bigint,
    OUT dead_letters bigint,
    OUT purged bigint,
    OUT events_per_second double precision,
    OUT last_delivery_at timestamptz,
    OUT last_error text,
    OUT last_error_at timestamptz,
    OUT scheduled bigint,
    OUT held bigint)
RETURNS SETOF record
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'outbox_relay_stats';
COMMENT ON FUNCTION @extschema@.relay_stats() IS
    'Every relay''s state and counters, from shared memory; see the outbox.stats view';

CREATE VIEW @extschema@.stats AS
SELECT s.datname,
       s.state,
       s.brokers,
       s.pending,
       pg_catalog.now() OPERATOR(pg_catalog.-) s.oldest_pending_at AS oldest_pending_age,
       s.scheduled,
       s.held,
       s.delivered,
       s.failed,
       s.dead_lettered,
       s.dead_letters,
       s.purged,
       s.events_per_second,
       s.last_delivery_at,
       s.last_error,
       s.last_error_at,
       s.pid
  FROM @extschema@.relay_stats() s;
COMMENT ON VIEW @extschema@.stats IS
    'One row per database served by a relay: state, backlog (pending, oldest_pending_age; of those, scheduled for a later deliver_at and held behind a dead letter of their key), counters since the relay started (delivered, failed attempts, dead_lettered), dead letters held, inbox rows purged, delivery rate, last delivery and last error';

REVOKE ALL ON FUNCTION @extschema@.relay_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.relay_stats() TO pg_monitor;
GRANT SELECT ON @extschema@.stats TO pg_monitor;

-- Consuming into the database (issue 15, in progress) ---------------------------
--
-- A subscription names Kafka topics and a handler, a function
-- (outbox.message) RETURNS void that the consumer applies each message with,
-- running as the role that subscribed.  This part records and checks
-- subscriptions; each database's consumer worker applies them.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'outbox_subscriber') THEN
        CREATE ROLE outbox_subscriber NOLOGIN;
    END IF;
END
$roles$;
GRANT USAGE ON SCHEMA @extschema@ TO outbox_subscriber;

-- What a handler gets: one Kafka record
CREATE TYPE @extschema@.message AS (
    topic      text,
    partition  integer,
    "offset"   bigint,
    key        text,
    payload    jsonb,
    value      bytea,
    headers    jsonb,
    event_id   text,
    event_type text,
    time       timestamptz
);
COMMENT ON TYPE @extschema@.message IS
    'A Kafka record as a subscription''s handler gets it: payload is the value as jsonb when it is JSON, event_id ce_id, event_type ce_type, time ce_time or the record timestamp';

CREATE TABLE @extschema@.subscriptions (
    consumer        text COLLATE "C" NOT NULL,
    group_id        text COLLATE "C" NOT NULL,
    topics          text[] NOT NULL,
    handler         regprocedure NOT NULL,
    run_as          oid NOT NULL,
    start_from      text NOT NULL,
    batch_size      integer NOT NULL,
    max_attempts    integer NOT NULL,
    backoff_min     interval NOT NULL,
    backoff_max     interval NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT subscriptions_pkey PRIMARY KEY (consumer),
    CONSTRAINT subscriptions_group_id UNIQUE (group_id),
    CONSTRAINT subscriptions_start_from CHECK (start_from IN ('earliest', 'latest')),
    CONSTRAINT subscriptions_batch_size CHECK (batch_size BETWEEN 1 AND 10000),
    CONSTRAINT subscriptions_max_attempts CHECK (max_attempts >= 1),
    CONSTRAINT subscriptions_backoff CHECK (backoff_min > interval '0' AND backoff_max >= backoff_min)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.subscriptions', '');
COMMENT ON TABLE @extschema@.subscriptions IS
    'Kafka topics consumed into this database, each message applied by a handler (outbox.subscribe)';
COMMENT ON COLUMN @extschema@.subscriptions.consumer IS 'The subscription''s name, and its name in the inbox';
COMMENT ON COLUMN @extschema@.subscriptions.group_id IS 'Kafka consumer group (default: the consumer name)';
COMMENT ON COLUMN @extschema@.subscriptions.handler IS 'Function (outbox.message) RETURNS void applying each message';
COMMENT ON COLUMN @extschema@.subscriptions.run_as IS 'The role that subscribed: the handler runs as it';
COMMENT ON COLUMN @extschema@.subscriptions.start_from IS 'Where a group with no stored offset starts: earliest or latest';
COMMENT ON COLUMN @extschema@.subscriptions.batch_size IS 'Messages applied per transaction, each in a savepoint';
COMMENT ON COLUMN @extschema@.subscriptions.max_attempts IS 'Handler attempts before a message becomes a consumer dead letter';
COMMENT ON COLUMN @extschema@.subscriptions.backoff_min IS 'Wait after the first failed attempt, doubling up to backoff_max';
COMMENT ON COLUMN @extschema@.subscriptions.paused IS 'Paused by outbox.pause_consumer()';
REVOKE ALL ON @extschema@.subscriptions FROM PUBLIC;
GRANT SELECT ON @extschema@.subscriptions TO outbox_subscriber, outbox_admin;

CREATE FUNCTION @extschema@.subscribe(
    consumer     text,
    topics       text[],
    handler      regprocedure,
    group_id     text DEFAULT NULL,
    start_from   text DEFAULT 'earliest',
    batch_size   integer DEFAULT 100,
    max_attempts integer DEFAULT 5,
    backoff_min  interval DEFAULT '100 milliseconds',
    backoff_max  interval DEFAULT '30 seconds')
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_subscribe';
COMMENT ON FUNCTION @extschema@.subscribe(text, text[], regprocedure, text, text, integer, integer, interval, interval) IS
    'Consume topics into this database: each message applied once by handler, as the calling role; subscribing again changes the subscription';

CREATE FUNCTION @extschema@.unsubscribe(consumer text)
RETURNS boolean
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_unsubscribe';
COMMENT ON FUNCTION @extschema@.unsubscribe(text) IS
    'Stop consuming for a subscription and remove it (its stored offsets stay); false when there was none';

CREATE FUNCTION @extschema@.pause_consumer(consumer text)
RETURNS boolean
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_pause_consumer';
COMMENT ON FUNCTION @extschema@.pause_consumer(text) IS
    'Stop applying messages for a subscription until resume_consumer(); false when already paused';

CREATE FUNCTION @extschema@.resume_consumer(consumer text)
RETURNS boolean
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_resume_consumer';
COMMENT ON FUNCTION @extschema@.resume_consumer(text) IS
    'Apply messages for a paused subscription again; false when it was not paused';

REVOKE ALL ON FUNCTION @extschema@.subscribe(text, text[], regprocedure, text, text, integer, integer, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unsubscribe(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.pause_consumer(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.resume_consumer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.subscribe(text, text[], regprocedure, text, text, integer, integer, interval, interval) TO outbox_subscriber;
GRANT EXECUTE ON FUNCTION @extschema@.unsubscribe(text) TO outbox_subscriber;
GRANT EXECUTE ON FUNCTION @extschema@.pause_consumer(text) TO outbox_subscriber;
GRANT EXECUTE ON FUNCTION @extschema@.resume_consumer(text) TO outbox_subscriber;

-- Where each group is: the next offset to apply per partition, stored in the
-- transaction that applied the messages before it, with what applying them
-- counted.  The consumer resumes from here.
CREATE TABLE @extschema@.consumer_offsets (
    group_id        text COLLATE "C" NOT NULL,
    topic           text COLLATE "C" NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    consumer        text COLLATE "C" NOT NULL,
    high_watermark  bigint,
    last_message_at timestamptz,
    processed       bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    dead_lettered   bigint NOT NULL DEFAULT 0,
    last_error      text,
    last_error_at   timestamptz,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT consumer_offsets_pkey PRIMARY KEY (group_id, topic, partition)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.consumer_offsets', '');
COMMENT ON TABLE @extschema@.consumer_offsets IS
    'Per group and partition: the next offset to apply, stored with the effects of the messages before it';
COMMENT ON COLUMN @extschema@.consumer_offsets."offset" IS 'The next offset to apply';
COMMENT ON COLUMN @extschema@.consumer_offsets.consumer IS 'The subscription that stored it last';
COMMENT ON COLUMN @extschema@.consumer_offsets.high_watermark IS 'The partition''s end offset when it was stored';
COMMENT ON COLUMN @extschema@.consumer_offsets.last_message_at IS 'Time of the last message applied (its time, see outbox.message)';
COMMENT ON COLUMN @extschema@.consumer_offsets.processed IS 'Messages the handler applied';
COMMENT ON COLUMN @extschema@.consumer_offsets.duplicates IS 'Messages skipped because the inbox had their event id';
COMMENT ON COLUMN @extschema@.consumer_offsets.failed IS 'Failed handler attempts';
COMMENT ON COLUMN @extschema@.consumer_offsets.dead_lettered IS 'Messages moved to outbox.consumer_dead_letters';
REVOKE ALL ON @extschema@.consumer_offsets FROM PUBLIC;
GRANT SELECT ON @extschema@.consumer_offsets TO outbox_subscriber, outbox_admin;

-- Messages a handler failed on max_attempts times, kept whole for replay
CREATE TABLE @extschema@.consumer_dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    consumer        text COLLATE "C" NOT NULL,
    group_id        text COLLATE "C" NOT NULL,
    topic           text COLLATE "C" NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    key             bytea,
    value           bytea,
    headers         jsonb,
    event_id        text,
    event_type      text,
    time            timestamptz,
    error           text NOT NULL,
    error_code      text NOT NULL,
    attempts        integer NOT NULL,
    first_failed_at timestamptz NOT NULL,
    failed_at       timestamptz NOT NULL,
    CONSTRAINT consumer_dead_letters_pkey PRIMARY KEY (id)
);
CREATE INDEX consumer_dead_letters_consumer_idx
    ON @extschema@.consumer_dead_letters (consumer, id);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.consumer_dead_letters', '');
COMMENT ON TABLE @extschema@.consumer_dead_letters IS
    'Messages a subscription''s handler failed on max_attempts times (or that broke their event type''s schema), with the last error';
COMMENT ON COLUMN @extschema@.consumer_dead_letters.headers IS 'The record''s headers as an object of strings (a header that is not valid text is null)';
COMMENT ON COLUMN @extschema@.consumer_dead_letters.error_code IS 'SQLSTATE of the last error';
REVOKE ALL ON @extschema@.consumer_dead_letters FROM PUBLIC;
GRANT SELECT ON @extschema@.consumer_dead_letters TO outbox_admin;

CREATE FUNCTION @extschema@.replay_consumer_dead_letters(consumer text, ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_replay_consumer_dead_letters';
COMMENT ON FUNCTION @extschema@.replay_consumer_dead_letters(text, bigint[]) IS
    'Run a subscription''s dead letters (those of ids, or all) through its handler again, in this transaction; returns how many were applied, the rest stay with their new error';
REVOKE ALL ON FUNCTION @extschema@.replay_consumer_dead_letters(text, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.replay_consumer_dead_letters(text, bigint[]) TO outbox_subscriber;

-- What this database's consumer says of each subscription (shared memory)
CREATE FUNCTION @extschema@._consumer_states(
    OUT consumer text, OUT state text, OUT assigned_partitions integer,
    OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_consumer_states';
COMMENT ON FUNCTION @extschema@._consumer_states() IS
    'What this database''s consumer says of each subscription it serves (behind outbox.consumer_stats)';
REVOKE ALL ON FUNCTION @extschema@._consumer_states() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._consumer_states() TO outbox_subscriber, outbox_admin;

-- Per subscription and partition: state, offsets, lag and counts
CREATE VIEW @extschema@.consumer_stats AS
SELECT s.consumer,
       s.group_id,
       CASE WHEN s.paused THEN 'paused' ELSE COALESCE(c.state, 'stopped') END AS state,
       COALESCE(c.assigned_partitions, 0) AS assigned_partitions,
       o.topic,
       o.partition,
       o."offset" AS stored_offset,
       o.high_watermark,
       GREATEST(o.high_watermark OPERATOR(pg_catalog.-) o."offset", 0) AS lag,
       CASE WHEN o.high_watermark OPERATOR(pg_catalog.>) o."offset"
            THEN pg_catalog.now() OPERATOR(pg_catalog.-) o.last_message_at
            ELSE interval '0' END AS lag_age,
       o.processed,
       o.duplicates,
       o.failed,
       o.dead_lettered,
       COALESCE(c.last_error, o.last_error) AS last_error,
       CASE WHEN c.last_error IS NOT NULL THEN c.last_error_at ELSE o.last_error_at END AS last_error_at,
       o.updated_at
  FROM @extschema@.subscriptions s
  LEFT JOIN @extschema@._consumer_states() c ON c.consumer OPERATOR(pg_catalog.=) s.consumer
  LEFT JOIN @extschema@.consumer_offsets o ON o.group_id OPERATOR(pg_catalog.=) s.group_id;
COMMENT ON VIEW @extschema@.consumer_stats IS
    'Per subscription and partition: the consumer''s state, assigned partitions, stored offset, high watermark and lag (as of the last batch stored), lag age (at most: since the last applied message''s time), counts and last error';
REVOKE ALL ON @extschema@.consumer_stats FROM PUBLIC;
GRANT SELECT ON @extschema@.consumer_stats TO outbox_subscriber, outbox_admin;
