-- publish(): every argument, every error a caller can cause, and privileges.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;

-- a JSON event with every argument; the id is a UUID version 7
SELECT outbox.publish(topic => 'order.placed', payload => '{"order_id": 42}'::jsonb,
                      key => '42', event_type => 'order.placed.v1',
                      headers => '{"x-tenant": "acme"}'::jsonb,
                      source => '/shop/orders',
                      traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01') AS id \gset
SELECT substr(:'id', 15, 1) AS uuid_version, substr(:'id', 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant;
SELECT topic, key, convert_from(payload, 'UTF8') AS payload, headers, event_type, source,
       traceparent, content_type, attempts, next_attempt_at, last_error,
       created_at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS created_now
  FROM outbox.events WHERE event_id = :'id';

-- only topic and payload are required; jsonb is sent as its text
SELECT outbox.publish('minimal', '[1, "two", {"three": 3}]') IS NOT NULL AS published;
SELECT key, convert_from(payload, 'UTF8') AS payload, headers, event_type, source, content_type
  FROM outbox.events WHERE topic = 'minimal';

-- a NULL payload is a tombstone
SELECT outbox.publish('compacted', NULL, key => 'gone') IS NOT NULL AS published;
SELECT key, payload IS NULL AS tombstone FROM outbox.events WHERE topic = 'compacted';

-- binary payloads, with their content type
SELECT outbox.publish_binary('avro.topic', '\x00010203'::bytea, key => 'k',
                             content_type => 'application/avro') IS NOT NULL AS published;
SELECT outbox.publish_binary('bytes.topic', '\xff'::bytea) IS NOT NULL AS published;
SELECT topic, payload, content_type FROM outbox.events
 WHERE topic IN ('avro.topic', 'bytes.topic') ORDER BY id;

-- ids increase in publish order
SELECT bool_and(a.event_id < b.event_id) AS ids_increase
  FROM outbox.events a JOIN outbox.events b ON b.id = a.id + 1;

-- a rolled-back transaction leaves nothing
BEGIN;
SELECT outbox.publish('rolled.back', '{}') IS NOT NULL AS published;
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM outbox.events WHERE topic = 'rolled.back';

-- a rolled-back subtransaction leaves nothing either
BEGIN;
SAVEPOINT s;
SELECT outbox.publish('rolled.back', '{}') IS NOT NULL AS published;
ROLLBACK TO SAVEPOINT s;
SELECT outbox.publish('kept', '{}') IS NOT NULL AS published;
COMMIT;
SELECT topic, count(*) FROM outbox.events WHERE topic IN ('rolled.back', 'kept') GROUP BY topic;

-- topic errors
SELECT outbox.publish(NULL, '{}');
SELECT outbox.publish('', '{}');
SELECT outbox.publish(repeat('t', 250), '{}');
SELECT outbox.publish(repeat('t', 249), '{}') IS NOT NULL AS longest_topic_ok;
SELECT outbox.publish('.', '{}');
SELECT outbox.publish('..', '{}');
SELECT outbox.publish('has space', '{}');
SELECT outbox.publish('slash/topic', '{}');
SELECT outbox.publish('ünïcode', '{}');
SELECT outbox.publish('a.b_c-D9', '{}') IS NOT NULL AS legal_topic_ok;

-- header errors
SELECT outbox.publish('t', '{}', headers => '[]');
SELECT outbox.publish('t', '{}', headers => '"text"');
SELECT outbox.publish('t', '{}', headers => '{"n": 1}');
SELECT outbox.publish('t', '{}', headers => '{"n": null}');
SELECT outbox.publish('t', '{}', headers => '{"n": {"nested": "x"}}');
SELECT outbox.publish('t', '{}', headers => '{"": "empty name"}');
SELECT outbox.publish('t', '{}', headers => '{}') IS NOT NULL AS empty_headers_ok;

-- headers outbox sets itself cannot be forged, in any case; other ce_* can be given
DO $$
DECLARE
    h text;
BEGIN
    FOREACH h IN ARRAY ARRAY['ce_id', 'ce_source', 'ce_type', 'ce_specversion', 'ce_time',
                             'content-type', 'traceparent', 'ce_datacontenttype']
    LOOP
        BEGIN
            PERFORM outbox.publish('t', '{}', headers => jsonb_build_object(h, 'forged'));
            RAISE NOTICE '% accepted', h;
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE NOTICE '% refused: % (%)', h, SQLERRM, SQLSTATE;
        END;
    END LOOP;
END $$;
SELECT outbox.publish('t', '{}', headers => '{"CE_ID": "forged"}');
SELECT outbox.publish('t', '{}', headers => '{"Content-Type": "text/plain"}');
SELECT outbox.publish('t', '{}', headers => '{"TraceParent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}');
SELECT outbox.publish('t', '{}', headers => '{"x-outbox-error": "forged"}');
SELECT outbox.publish('t', '{}', headers => '{"ce_subject": "order-42", "ce_tenant": "acme", "x-outboxed": "y"}')
       IS NOT NULL AS ce_extension_attributes_ok;

-- other arguments
SELECT outbox.publish('t', '{}', event_type => '');
SELECT outbox.publish('t', '{}', source => '');
SELECT outbox.publish('t', '{}', event_type => repeat('x', 1025));
SELECT outbox.publish('t', '{}', traceparent => 'not-a-trace');
SELECT outbox.publish('t', '{}', traceparent => '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01');
-- W3C trace context forbids version ff, an all-zero trace id and an all-zero parent id
SELECT outbox.publish('t', '{}', traceparent => 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
SELECT outbox.publish('t', '{}', traceparent => '00-00000000000000000000000000000000-00f067aa0ba902b7-01');
SELECT outbox.publish('t', '{}', traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01');
SELECT outbox.publish('t', '{}', traceparent => '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00') IS NOT NULL
       AS other_version_ok;
SELECT outbox.publish_binary('t', '\x00', content_type => '');

-- outbox.commit_order locks the key with a lock no SQL function can take
-- (not an advisory lock, which any role could take to stall publishers)
BEGIN;
SET LOCAL outbox.commit_order = on;
SELECT outbox.publish('t', '{}', key => 'locked') IS NOT NULL AS published;
SELECT locktype, mode, granted FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype IN ('advisory', 'userlock');
ROLLBACK;

-- payload size limit (outbox.max_message_size, default 960 kB) counts key and headers too
SHOW outbox.max_message_size;
SELECT outbox.publish('big', pg_catalog.jsonb_build_object('p', repeat('x', 983040)));
SELECT outbox.publish_binary('big', decode(repeat('00', 983040), 'hex'), key => 'k');
SELECT outbox.publish_binary('big', decode(repeat('00', 983000), 'hex'), key => 'k') IS NOT NULL AS under_limit_ok;
SELECT count(*) AS big_rows FROM outbox.events WHERE topic = 'big';

-- an error aborts the caller's transaction and writes nothing
BEGIN;
SELECT outbox.publish('in.tx', '{}') IS NOT NULL AS published;
SELECT outbox.publish('bad topic', '{}');
COMMIT;
SELECT count(*) AS in_tx_rows FROM outbox.events WHERE topic = 'in.tx';

-- the settings are reserved: a typo is refused
SET outbox.no_such_setting = 1;

-- privileges: a plain role can neither publish nor read the tables; outbox_publisher can publish
CREATE ROLE plain_app LOGIN;
CREATE ROLE publishing_app LOGIN IN ROLE outbox_publisher;
SET ROLE plain_app;
SELECT outbox.publish('t', '{}');
SELECT count(*) FROM outbox.events;
RESET ROLE;
SET ROLE publishing_app;
SELECT outbox.publish('by.publisher', '{}') IS NOT NULL AS published;
SELECT count(*) FROM outbox.events;
DELETE FROM outbox.events;
RESET ROLE;
SELECT count(*) AS by_publisher FROM outbox.events WHERE topic = 'by.publisher';

-- secrets: non-superusers cannot read the librdkafka properties
SET ROLE publishing_app;
-- the error's wording changed in PostgreSQL 16: show only its SQLSTATE (42501)
\set VERBOSITY sqlstate
SHOW outbox.kafka_properties;
\set VERBOSITY default
RESET ROLE;
SHOW outbox.kafka_properties;

-- everything is documented
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'outbox' AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'outbox' AND obj_description(p.oid, 'pg_proc') IS NULL;

DROP ROLE plain_app;
DROP ROLE publishing_app;

-- a read-only transaction cannot publish
BEGIN READ ONLY;
SELECT outbox.publish('read.only', '{}');
ROLLBACK;
