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
REVOKE INSERT ON @extschema@.inbox FROM outbox_consumer;
ALTER FUNCTION @extschema@.receive(text, uuid, interval)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.receive(text, text, interval)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
