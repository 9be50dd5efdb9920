-- Subscriptions: subscribe(), unsubscribe(), pause_consumer(),
-- resume_consumer(), what they check, and who may call them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;

CREATE SCHEMA billing;
CREATE TABLE billing.accounts (id int PRIMARY KEY, balance numeric NOT NULL);
CREATE FUNCTION billing.on_payment(m outbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE billing.accounts SET balance = balance + (m.payload->>'amount')::numeric
     WHERE id = (m.payload->>'account')::int;
END $$;

-- the issue's example, with the defaults
SELECT outbox.subscribe(consumer => 'billing', topics => '{payments.captured}',
                        handler => 'billing.on_payment(outbox.message)');
SELECT consumer, group_id, topics, handler, run_as::regrole, start_from, batch_size, max_attempts,
       backoff_min, backoff_max, paused, created_at = updated_at AS unchanged
  FROM outbox.subscriptions;

-- subscribing again changes it
SELECT outbox.subscribe('billing', '{payments.captured,payments.refunded}', 'billing.on_payment(outbox.message)',
                        group_id => 'billing-v2', start_from => 'latest', batch_size => 500,
                        max_attempts => 3, backoff_min => '1 second', backoff_max => '1 minute');
SELECT consumer, group_id, topics, start_from, batch_size, max_attempts, backoff_min, backoff_max
  FROM outbox.subscriptions;

-- bad arguments: each a clear error, nothing written
SELECT outbox.subscribe(NULL, '{t}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('', '{t}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe(repeat('c', 201), '{t}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', NULL, 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', '{}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', '{t,NULL}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', '{t,t}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', '{"a b"}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', '{{a},{b}}', 'billing.on_payment(outbox.message)');
SELECT outbox.subscribe('c', '{t}', NULL);
SELECT outbox.subscribe('c', '{t}', 'billing.missing(outbox.message)');
SELECT outbox.subscribe('c', '{t}', 'pg_catalog.lower(text)');
CREATE FUNCTION billing.returns_int(m outbox.message) RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT outbox.subscribe('c', '{t}', 'billing.returns_int(outbox.message)');
CREATE PROCEDURE billing.a_procedure(m outbox.message) LANGUAGE sql AS 'SELECT 1';
SELECT outbox.subscribe('c', '{t}', 'billing.a_procedure(outbox.message)');
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', group_id => '');
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', start_from => 'beginning');
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', batch_size => 0);
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', batch_size => 10001);
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', max_attempts => 0);
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', backoff_min => '0');
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', backoff_min => '1 minute', backoff_max => '1 second');
SELECT outbox.subscribe('c', '{t}', 'billing.on_payment(outbox.message)', batch_size => NULL);
SELECT count(*) AS subscriptions FROM outbox.subscriptions;

-- pause, resume, unsubscribe: true when they changed something
SELECT outbox.pause_consumer('billing') AS paused, outbox.pause_consumer('billing') AS again;
SELECT paused FROM outbox.subscriptions;
SELECT outbox.resume_consumer('billing') AS resumed, outbox.resume_consumer('billing') AS again;
SELECT outbox.pause_consumer('nobody') AS no_such, outbox.unsubscribe('nobody') AS no_such;

-- who may: members of outbox_subscriber, each changing only its own
CREATE ROLE sub_a LOGIN IN ROLE outbox_subscriber;
CREATE ROLE sub_b LOGIN IN ROLE outbox_subscriber;
CREATE ROLE app_pub LOGIN IN ROLE outbox_publisher;
GRANT USAGE ON SCHEMA billing TO sub_a, sub_b, app_pub;
REVOKE EXECUTE ON FUNCTION billing.on_payment(outbox.message) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing.on_payment(outbox.message) TO sub_a;
SET ROLE app_pub;
SELECT outbox.subscribe('app', '{t}', 'billing.on_payment(outbox.message)');
RESET ROLE;
SET ROLE sub_a;
SELECT outbox.subscribe('a', '{t}', 'billing.on_payment(outbox.message)');
SELECT consumer, run_as::regrole FROM outbox.subscriptions ORDER BY consumer;
SELECT outbox.pause_consumer('billing');
SELECT outbox.subscribe('billing', '{t}', 'billing.on_payment(outbox.message)');
RESET ROLE;
-- a handler the caller may not execute
SET ROLE sub_b;
SELECT outbox.subscribe('b', '{t}', 'billing.on_payment(outbox.message)');
SELECT outbox.unsubscribe('a');
INSERT INTO outbox.subscriptions SELECT * FROM outbox.subscriptions;
RESET ROLE;
-- a handler whose owner may not subscribe
CREATE ROLE not_sub;
CREATE FUNCTION billing.foreign_handler(m outbox.message) RETURNS void LANGUAGE sql AS 'SELECT';
ALTER FUNCTION billing.foreign_handler(outbox.message) OWNER TO not_sub;
GRANT EXECUTE ON FUNCTION billing.foreign_handler(outbox.message) TO sub_b;
SET ROLE sub_b;
SELECT outbox.subscribe('b', '{t}', 'billing.foreign_handler(outbox.message)');
RESET ROLE;
SET ROLE sub_a;
SELECT outbox.unsubscribe('a') AS unsubscribed;
RESET ROLE;

-- a group is one subscription's in a database
SELECT outbox.subscribe('billing2', '{t}', 'billing.on_payment(outbox.message)', group_id => 'billing-v2');
SELECT outbox.subscribe('billing2', '{t}', 'billing.on_payment(outbox.message)', group_id => 'billing-2');
SELECT consumer, group_id FROM outbox.subscriptions WHERE consumer LIKE 'billing%' ORDER BY consumer;
SELECT outbox.unsubscribe('billing2') AS unsubscribed;

-- replaying consumer dead letters
SELECT outbox.replay_consumer_dead_letters('nobody');
SELECT outbox.replay_consumer_dead_letters(NULL);
SELECT outbox.replay_consumer_dead_letters('billing') AS replayed;
SELECT outbox.replay_consumer_dead_letters('billing', '{}') AS replayed;
SET ROLE sub_b;
SELECT outbox.replay_consumer_dead_letters('billing');
RESET ROLE;
SET ROLE app_pub;
SELECT outbox.replay_consumer_dead_letters('billing');
RESET ROLE;
-- what the consumer writes is not the applications' to change
SET ROLE sub_a;
SELECT count(*) FROM outbox.consumer_offsets;
SELECT count(*) FROM outbox.consumer_dead_letters;
INSERT INTO outbox.consumer_offsets (group_id, topic, partition, "offset", consumer, updated_at)
VALUES ('a', 't', 0, 0, 'a', now());
RESET ROLE;

SELECT outbox.unsubscribe('billing') AS unsubscribed;
SELECT count(*) AS subscriptions FROM outbox.subscriptions;
-- the extension's owner may change any subscription
SELECT outbox.subscribe('owned', '{t}', 'billing.on_payment(outbox.message)');
UPDATE outbox.subscriptions SET run_as = 'sub_a'::regrole WHERE consumer = 'owned';
SELECT outbox.pause_consumer('owned') AS owner_may, outbox.unsubscribe('owned') AS owner_may;
DROP SCHEMA billing CASCADE;
DROP ROLE sub_a;
DROP ROLE sub_b;
DROP ROLE app_pub;
DROP ROLE not_sub;
