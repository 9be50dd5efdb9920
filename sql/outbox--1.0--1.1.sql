/* outbox--1.0--1.1.sql: operations: outbox.stats, pause and resume */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION outbox UPDATE TO '1.1'" to load this file. \quit

-- Pause ------------------------------------------------------------------------------

-- A row here pauses this database's relay: transactional, kept across
-- restarts, and replicated, so a promoted standby stays paused too.
CREATE TABLE @extschema@.paused (
    paused_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    paused_by name        NOT NULL DEFAULT CURRENT_USER,
    singleton boolean     NOT NULL DEFAULT true PRIMARY KEY CHECK (singleton)
);
COMMENT ON TABLE @extschema@.paused IS
    'One row while this database''s relay is paused (see outbox.pause_relay())';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.paused', '');

CREATE FUNCTION @extschema@.pause_relay()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $pause$
DECLARE
    n bigint;
BEGIN
    INSERT INTO @extschema@.paused DEFAULT VALUES ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@._wake_relay();
    RETURN n > 0;
END
$pause$;
COMMENT ON FUNCTION @extschema@.pause_relay() IS
    'Pause this database''s relay after its current batch: nothing is produced until resume_relay(); publish() keeps working. Returns false if already paused';

CREATE FUNCTION @extschema@.resume_relay()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $resume$
DECLARE
    n bigint;
BEGIN
    DELETE FROM @extschema@.paused;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@._wake_relay();
    RETURN n > 0;
END
$resume$;
COMMENT ON FUNCTION @extschema@.resume_relay() IS
    'Resume this database''s relay; returns false if it was not paused';

REVOKE ALL ON FUNCTION @extschema@.pause_relay() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.resume_relay() FROM PUBLIC;

-- Statistics ---------------------------------------------------------------------------

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
    OUT last_error_at timestamptz)
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
    'One row per database served by a relay: state, backlog (pending, oldest_pending_age), counters since the relay started (delivered, failed attempts, dead_lettered), dead letters held, inbox rows purged, delivery rate, last delivery and last error';

REVOKE ALL ON FUNCTION @extschema@.relay_stats() FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.relay_stats() TO pg_monitor;
GRANT SELECT ON @extschema@.stats TO pg_monitor;

-- Dead-letter replay ---------------------------------------------------------------

-- As in 1.0, but _wake_relay() comes first: it also tells the relay that this
-- transaction is about to take event ids, which lets the relay read past the
-- ids it delivered (horizon.c).  Under 1.0 the relay finds replayed events
-- all the same, at its next full scan (within outbox.poll_interval).
COMMENT ON FUNCTION @extschema@._wake_relay() IS
    'Internal: marks this transaction as taking event ids, and wakes this database''s relay when it commits';

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
                                        source, traceparent, content_type, created_at)
        SELECT m.event_id, m.topic, m.key, m.payload, m.headers, m.event_type,
               m.source, m.traceparent, m.content_type, m.created_at
          FROM moved m ORDER BY m.id
        RETURNING 1
    )
    SELECT count(*) INTO n FROM requeued;
    RETURN n;
END
$replay$;
