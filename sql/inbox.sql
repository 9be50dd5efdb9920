-- The inbox: receive(), received(), purge_inbox(), the per-consumer view,
-- every error a caller can cause, and privileges.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;

-- first time true, duplicate false; consumers are independent
SELECT outbox.receive('billing', '01890a5d-ac96-774b-bcce-b302099a8057'::uuid) AS first;
SELECT outbox.receive('billing', '01890a5d-ac96-774b-bcce-b302099a8057'::uuid) AS duplicate;
SELECT outbox.receive('shipping', '01890a5d-ac96-774b-bcce-b302099a8057'::uuid) AS other_consumer;

-- a text id in UUID form is the same id as the uuid, in any case
SELECT outbox.receive('billing', '01890A5D-AC96-774B-BCCE-B302099A8057') AS same_id_as_text;
-- other text ids (from other producers) work too, exactly as given
SELECT outbox.receive('billing', 'order-42:placed') AS text_first;
SELECT outbox.receive('billing', 'order-42:placed') AS text_duplicate;
SELECT outbox.receive('billing', 'Order-42:placed') AS text_is_case_sensitive;

-- received() asks without marking
SELECT outbox.received('billing', 'order-42:placed') AS was_received;
SELECT outbox.received('billing', 'never-seen') AS never_received;
SELECT outbox.receive('billing', 'never-seen') AS still_first;
SELECT outbox.received('audit', '01890a5d-ac96-774b-bcce-b302099a8057'::uuid) AS other_consumer_not_received;

-- a rolled-back transaction leaves no row, so a retry processes again
BEGIN;
SELECT outbox.receive('billing', 'retry-me') AS in_rolled_back_tx;
ROLLBACK;
SELECT outbox.receive('billing', 'retry-me') AS after_rollback;

-- a duplicate never aborts the caller's transaction
BEGIN;
SELECT outbox.receive('billing', 'in-tx') AS first_in_tx;
SELECT outbox.receive('billing', 'in-tx') AS duplicate_in_tx;
SELECT 'transaction still usable' AS status;
COMMIT;

-- ttl: default outbox.inbox_ttl (7 days), per-call override
SHOW outbox.inbox_ttl;
SELECT outbox.receive('ttl', 'default-ttl') AS received;
SELECT outbox.receive('ttl', 'short-ttl', interval '1 hour') AS received;
SELECT event_id IS NOT NULL AS stored, expires_at - received_at AS ttl
  FROM outbox.inbox WHERE consumer = 'ttl' ORDER BY ttl;

-- purge: expired rows go, a purged id is receivable again (the ttl is the dedup window)
SELECT outbox.receive('ttl', 'expiring', interval '1 millisecond') AS received;
SELECT pg_sleep(0.01);
SELECT outbox.receive('ttl', 'expiring', interval '1 hour') AS duplicate_until_purged;
SELECT outbox.purge_inbox() AS purged;
SELECT outbox.purge_inbox() AS purged_again;
SELECT outbox.receive('ttl', 'expiring') AS receivable_after_purge;

-- per-consumer counts
SELECT consumer, received, expired FROM outbox.inbox_consumers ORDER BY consumer;

-- errors: NULL, empty or too long arguments, bad ttl; nothing is written
SELECT outbox.receive(NULL, 'x');
SELECT outbox.receive('', 'x');
SELECT outbox.receive(repeat('c', 201), 'x');
SELECT outbox.receive(repeat('c', 200), 'x') AS longest_consumer_ok;
SELECT outbox.receive('billing', NULL::uuid);
SELECT outbox.receive('billing', NULL::text);
SELECT outbox.receive('billing', '');
SELECT outbox.receive('billing', repeat('i', 1025));
SELECT outbox.receive('billing', 'x', interval '0');
SELECT outbox.receive('billing', 'x', interval '-1 hour');
SELECT outbox.receive('billing', 'x', interval '1 day -1 hour');
SELECT outbox.received(NULL, 'x');
SELECT outbox.received('billing', '');
SELECT outbox.received('billing', 'x') AS x_was_not_written;

-- privileges: a consumer role receives and reads the inbox without owning it,
-- but cannot delete from it, purge it, or touch the outbox
CREATE ROLE plain_consumer LOGIN;
CREATE ROLE billing_app LOGIN IN ROLE outbox_consumer;
SET ROLE plain_consumer;
SELECT outbox.receive('billing', 'by-plain');
RESET ROLE;
SET ROLE billing_app;
SELECT outbox.receive('billing', 'by-role') AS first;
SELECT outbox.receive('billing', 'by-role') AS duplicate;
SELECT outbox.received('billing', 'by-role') AS received;
SELECT count(*) > 0 AS can_read FROM outbox.inbox;
SELECT count(*) > 0 AS can_read_view FROM outbox.inbox_consumers;
DELETE FROM outbox.inbox;
-- only receive() writes the inbox: no row it would refuse (empty consumer, no expiry)
INSERT INTO outbox.inbox VALUES ('', gen_random_uuid(), now(), 'infinity');
UPDATE outbox.inbox SET expires_at = 'infinity';
SELECT outbox.purge_inbox();
SELECT outbox.publish('t', '{}');
SELECT count(*) FROM outbox.events;
RESET ROLE;
DROP ROLE plain_consumer;
DROP ROLE billing_app;

-- nothing the caller puts first in search_path changes what receive() runs
CREATE SCHEMA hijack;
CREATE FUNCTION hijack.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE TABLE hijack.inbox (consumer text, event_id uuid, received_at timestamptz, expires_at timestamptz);
SET search_path = hijack, pg_catalog, public;
SELECT outbox.receive('hijack-test', 'h1') AS first;
SELECT count(*) AS rows_in_hijack_table FROM hijack.inbox;
SELECT received_at > '2001-01-01' AS real_now FROM outbox.inbox WHERE consumer = 'hijack-test';
RESET search_path;
DROP SCHEMA hijack CASCADE;
