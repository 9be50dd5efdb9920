-- Causation chains: receive() then publish() in one transaction; explicit
-- correlation_id and causation_id; every error a caller can cause.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;
DELETE FROM outbox.events;
DELETE FROM outbox.inbox WHERE consumer = 'chain';

-- nothing received: no causation headers
SELECT outbox.publish('chain', '{"n": 0}') IS NOT NULL AS published;
SELECT headers FROM outbox.events WHERE topic = 'chain';

-- received, then published: caused by it, correlated by its id
BEGIN;
SELECT outbox.receive('chain', '01890a5d-ac96-774b-bcce-b302099a8057'::uuid) AS first;
SELECT outbox.publish('chain', '{"n": 1}', headers => '{"x-tenant": "acme"}') IS NOT NULL AS published;
COMMIT;
-- a new transaction starts with nothing received
SELECT outbox.publish('chain', '{"n": 2}') IS NOT NULL AS published;
-- the consumer passes the message's ce_correlationid; a duplicate counts too
BEGIN;
SELECT outbox.receive('chain', '01890a5d-ac96-774b-bcce-b302099a8057', correlation_id => 'order-process-7') AS first;
SELECT outbox.publish('chain', '{"n": 3}') IS NOT NULL AS published;
ROLLBACK;
BEGIN;
SELECT outbox.receive('chain', 'legacy-id-42', correlation_id => 'order-process-7') AS first;
SELECT outbox.publish('chain', '{"n": 4}') IS NOT NULL AS published;
-- the last receive() counts
SELECT outbox.receive('chain', 'legacy-id-43') AS first;
SELECT outbox.publish('chain', '{"n": 5}') IS NOT NULL AS published;
-- explicit arguments win; a causation alone is its own correlation
SELECT outbox.publish('chain', '{"n": 6}', correlation_id => 'process-9', causation_id => 'evt-8') IS NOT NULL AS published;
SELECT outbox.publish('chain', '{"n": 7}', causation_id => 'evt-8') IS NOT NULL AS published;
SELECT outbox.publish('chain', '{"n": 8}', correlation_id => 'process-9') IS NOT NULL AS published;
SELECT outbox.publish_binary('chain', '\x09'::bytea, correlation_id => 'process-10') IS NOT NULL AS published;
COMMIT;
-- after a rolled-back transaction, nothing is left either
BEGIN;
SELECT outbox.receive('chain', 'legacy-id-44') AS first;
ROLLBACK;
SELECT outbox.publish('chain', '{"n": 9}') IS NOT NULL AS published;
SELECT CASE WHEN content_type = 'application/json' THEN convert_from(payload, 'UTF8') ELSE encode(payload, 'hex') END AS payload, headers
  FROM outbox.events WHERE topic = 'chain' ORDER BY id;
-- the receives of rolled-back transactions left no row
SELECT count(*) FROM outbox.inbox WHERE consumer = 'chain';

-- derived events carry the causation of their source
SELECT outbox.register_event_type('chain.made.v2', topic => 'chain.derived');
CREATE FUNCTION pg_temp.same(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
SELECT outbox.register_event_type('chain.made.v1', derived_from => 'chain.made.v2',
                                  derive_with => 'pg_temp.same(jsonb)');
BEGIN;
SELECT outbox.receive('chain', 'legacy-id-45') AS first;
SELECT outbox.publish(NULL, '{"n": 10}', event_type => 'chain.made.v2') IS NOT NULL AS published;
COMMIT;
SELECT event_type, headers - 'ce_derivedfrom' AS headers FROM outbox.events
 WHERE topic = 'chain.derived' ORDER BY id;
SELECT outbox.drop_event_type('chain.made.v1'), outbox.drop_event_type('chain.made.v2');

-- errors
SELECT outbox.publish('chain', '{}', headers => '{"ce_causationid": "forged"}');
SELECT outbox.publish('chain', '{}', headers => '{"CE_CorrelationId": "forged"}');
SELECT outbox.publish('chain', '{}', correlation_id => '');
SELECT outbox.publish('chain', '{}', causation_id => repeat('x', 1025));
SELECT outbox.receive('chain', 'legacy-id-46', correlation_id => '');
SELECT outbox.receive('chain', 'legacy-id-46', correlation_id => repeat('x', 1025));

DELETE FROM outbox.events;
DELETE FROM outbox.inbox WHERE consumer = 'chain';
