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
-- them explicitly too.  A new argument is a new signature: the functions
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
    causation_id   text DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_publish';
COMMENT ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text, text, text) IS
    'Publish a JSON event to a Kafka topic when the calling transaction commits; returns its event id (UUID v7). A NULL payload publishes a tombstone.';

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
    causation_id   text DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'outbox_publish_binary';
COMMENT ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text, text, text) IS
    'Publish a binary event (Avro, Protobuf...) to a Kafka topic when the calling transaction commits; content_type defaults to application/octet-stream.';

REVOKE ALL ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.publish(text, jsonb, text, jsonb, text, text, text, text, text) TO outbox_publisher;
GRANT EXECUTE ON FUNCTION @extschema@.publish_binary(text, bytea, text, jsonb, text, text, text, text, text, text) TO outbox_publisher;

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
-- dead letter takes its forwarded_at back to outbox.events, so that failing
-- again does not forward it a second time.
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

CREATE OR REPLACE FUNCTION @extschema@.replay_dead_letters(event_ids uuid[] DEFAULT NULL, topic text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $replay$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@._wake_relay();
    WITH moved AS (
        DELETE FROM @extschema@.dead_letters d
         WHERE (replay_dead_letters.event_ids IS NULL OR d.event_id = ANY (replay_dead_letters.event_ids))
           AND (replay_dead_letters.topic IS NULL OR d.topic = replay_dead_letters.topic)
        RETURNING d.*
    ), requeued AS (
        INSERT INTO @extschema@.events (event_id, topic, key, payload, headers, event_type,
                                        source, traceparent, content_type, created_at,
                                        forwarded_at)
        SELECT m.event_id, m.topic, m.key, m.payload, m.headers, m.event_type,
               m.source, m.traceparent, m.content_type, m.created_at, m.forwarded_at
          FROM moved m ORDER BY m.id
        RETURNING 1
    )
    SELECT count(*) INTO n FROM requeued;
    RETURN n;
END
$replay$;
