-- Events that wait: publish() with deliver_at, the dead-letter policy, and
-- discard_dead_letters() with who may call it.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;
SELECT outbox.pause_relay() AS paused;
DELETE FROM outbox.events;
DELETE FROM outbox.dead_letters;

SHOW outbox.dead_letter_policy;

-- a deliver_at in the future waits until then; one in the past or -infinity
-- goes at once; infinity would never go
SELECT outbox.publish('reminders', '{"n": 1}', key => 'r1', deliver_at => now() + interval '1 hour') IS NOT NULL AS later;
SELECT outbox.publish('reminders', '{"n": 2}', key => 'r2', deliver_at => now() - interval '1 hour') IS NOT NULL AS past;
SELECT outbox.publish('reminders', '{"n": 3}', key => 'r3', deliver_at => '-infinity') IS NOT NULL AS minus_infinity;
SELECT outbox.publish('reminders', '{"n": 4}', key => 'r4', deliver_at => 'infinity');
SELECT outbox.publish_binary('reminders', '\x01', key => 'r5', deliver_at => now() + interval '1 day') IS NOT NULL AS binary_later;
SELECT key, next_attempt_at IS NOT NULL AS waits, attempts,
       next_attempt_at - created_at > interval '50 minutes' AS until_deliver_at
  FROM outbox.events ORDER BY id;

-- a derived event waits with its source
SELECT outbox.register_event_type('remind.v1', topic => 'reminders');
SELECT outbox.register_event_type('remind.v2', topic => 'reminders',
                                  derived_from => 'remind.v1', derive_with => 'pg_catalog.jsonb_strip_nulls(jsonb)'::regprocedure);
SELECT outbox.publish(NULL, '{"n": 6}', key => 'r6', event_type => 'remind.v1', deliver_at => now() + interval '1 hour') IS NOT NULL AS derived_later;
SELECT event_type, next_attempt_at IS NOT NULL AS waits FROM outbox.events WHERE key = 'r6' ORDER BY id;
SELECT outbox.drop_event_type('remind.v2'), outbox.drop_event_type('remind.v1');

-- a publisher may publish with deliver_at
CREATE ROLE app_pub LOGIN IN ROLE outbox_publisher;
SET ROLE app_pub;
SELECT outbox.publish('reminders', '{}', deliver_at => now() + interval '1 minute') IS NOT NULL AS publisher_may;
RESET ROLE;
DELETE FROM outbox.events;

-- discard: by ids, by topic, all; nothing goes back to the outbox
INSERT INTO outbox.dead_letters (event_id, topic, key, content_type, created_at, attempts, error_code, error, holds_key, outbox_id)
VALUES ('01890a5d-ac96-774b-bcce-0000000000a1', 'orders', 'k1', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE', 'too large', true, 11),
       ('01890a5d-ac96-774b-bcce-0000000000a2', 'orders', 'k2', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE', 'too large', false, 12),
       ('01890a5d-ac96-774b-bcce-0000000000a3', 'payments', 'k3', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE', 'too large', true, 13),
       ('01890a5d-ac96-774b-bcce-0000000000a4', 'payments', 'k4', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE', 'too large', true, 14);
SELECT outbox.discard_dead_letters(ARRAY['01890a5d-ac96-774b-bcce-0000000000a2']::uuid[]) AS by_id;
SELECT outbox.discard_dead_letters(ARRAY['01890a5d-ac96-774b-bcce-0000000000a2']::uuid[]) AS again;
SELECT outbox.discard_dead_letters(ARRAY['01890a5d-ac96-774b-bcce-0000000000a1']::uuid[], 'payments') AS both_must_match;
SELECT outbox.discard_dead_letters(topic => 'payments') AS by_topic;
SELECT count(*) AS events FROM outbox.events;

-- a replayed dead letter that holds its key goes back under its own id,
-- waiting, ahead of the events of its key; one that does not, under a new id
INSERT INTO outbox.dead_letters (event_id, topic, key, content_type, created_at, attempts, error_code, error, holds_key, outbox_id)
VALUES ('01890a5d-ac96-774b-bcce-0000000000a5', 'orders', 'k5', 'application/json', now(), 1, 'MSG_SIZE_TOO_LARGE', 'too large', false, 15);
SELECT outbox.replay_dead_letters() AS replayed;
SELECT id = 11 AS own_id, key, next_attempt_at IS NOT NULL AS waits FROM outbox.events ORDER BY key;
DELETE FROM outbox.events;
SELECT outbox.discard_dead_letters() AS none_left;

-- only the owner and outbox_admin discard
CREATE ROLE app_admin LOGIN IN ROLE outbox_admin;
SET ROLE app_pub;
SELECT outbox.discard_dead_letters();
SELECT outbox._release_waiting();
RESET ROLE;
SET ROLE app_admin;
SELECT outbox.discard_dead_letters() AS admin_may;
RESET ROLE;
DROP ROLE app_pub;
DROP ROLE app_admin;
SELECT outbox.resume_relay() AS resumed;
