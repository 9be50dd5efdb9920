-- Dead letters and their replay: all, by event ids, by topic; only an admin may.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;
DELETE FROM outbox.events;

INSERT INTO outbox.dead_letters (event_id, topic, key, payload, headers, content_type, created_at,
                                 attempts, error_code, error)
VALUES ('01890a5d-ac96-774b-bcce-000000000001', 'orders', 'k1', '\x7b7d', '{"h": "1"}', 'application/json', now(), 10, '_MSG_TIMED_OUT', 'Local: Message timed out'),
       ('01890a5d-ac96-774b-bcce-000000000002', 'orders', 'k2', '\x7b7d', NULL, 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE', 'Broker: Message size too large'),
       ('01890a5d-ac96-774b-bcce-000000000003', 'payments', 'k3', NULL, NULL, 'application/json', now(), 1, 'TOPIC_AUTHORIZATION_FAILED', 'Broker: Topic authorization failed'),
       ('01890a5d-ac96-774b-bcce-000000000004', 'payments', 'k4', '\x00', NULL, 'application/octet-stream', now(), 3, '_MSG_TIMED_OUT', 'Local: Message timed out');

-- by event ids
SELECT outbox.replay_dead_letters(ARRAY['01890a5d-ac96-774b-bcce-000000000002']::uuid[]) AS replayed;
SELECT event_id, topic, key, attempts, next_attempt_at, last_error FROM outbox.events ORDER BY id;
-- ids that are not dead letters replay nothing
SELECT outbox.replay_dead_letters(ARRAY['01890a5d-ac96-774b-bcce-0000000000ff']::uuid[]) AS replayed;
SELECT outbox.replay_dead_letters(ARRAY[]::uuid[]) AS replayed;
-- by topic
SELECT outbox.replay_dead_letters(topic => 'payments') AS replayed;
-- ids and topic together must both match
SELECT outbox.replay_dead_letters(ARRAY['01890a5d-ac96-774b-bcce-000000000001']::uuid[], 'payments') AS replayed;
-- all the rest
SELECT outbox.replay_dead_letters() AS replayed;
SELECT count(*) AS dead_letters_left FROM outbox.dead_letters;
-- the whole original message came back, in replay order, at the end of the queue
SELECT event_id, topic, key, payload, headers, content_type, attempts FROM outbox.events ORDER BY id;

-- a dead letter forwarded to its dead-letter topic takes the time along, so
-- that failing again does not forward it twice; one never forwarded does not
INSERT INTO outbox.dead_letters (event_id, topic, key, content_type, created_at, attempts, error_code, error,
                                 forward_topic, forwarded_at)
VALUES ('01890a5d-ac96-774b-bcce-000000000005', 'orders', 'k5', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE',
        'Broker: Message size too large', 'orders.dlq', '2026-01-02 03:04:05+00'),
       ('01890a5d-ac96-774b-bcce-000000000006', 'orders', 'k6', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE',
        'Broker: Message size too large', 'orders.dlq', NULL);
SELECT outbox.replay_dead_letters(topic => 'orders') AS replayed;
SELECT event_id, forwarded_at AT TIME ZONE 'UTC' AS forwarded_at FROM outbox.events
 WHERE event_id IN ('01890a5d-ac96-774b-bcce-000000000005', '01890a5d-ac96-774b-bcce-000000000006') ORDER BY id;

-- only an admin replays: the application roles cannot, nor read dead letters
CREATE ROLE app_both LOGIN IN ROLE outbox_publisher, outbox_consumer;
SET ROLE app_both;
SELECT outbox.replay_dead_letters();
SELECT count(*) FROM outbox.dead_letters;
DELETE FROM outbox.dead_letters;
RESET ROLE;
DROP ROLE app_both;
DELETE FROM outbox.events;
