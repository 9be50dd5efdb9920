-- outbox.stats, pause_relay() and resume_relay(), and who may use them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox;
RESET client_min_messages;

-- the view has what an operator needs, one row for this database's relay
SELECT attname FROM pg_attribute WHERE attrelid = 'outbox.stats'::regclass AND attnum > 0 ORDER BY attnum;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM outbox.stats WHERE datname = current_database() AND pid IS NOT NULL);
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) AS rows_for_this_database,
       bool_and(state IN ('starting', 'running', 'waiting for brokers', 'paused')) AS known_state,
       bool_and(pending >= 0 AND delivered >= 0 AND failed >= 0) AS counters
  FROM outbox.stats WHERE datname = current_database();

-- pause: true the first time, false when already paused (the relay's reaction
-- is tested with a real broker in test/t/006_operations.pl)
SELECT outbox.pause_relay() AS paused;
SELECT outbox.pause_relay() AS paused_again;
-- publish keeps working while paused
SELECT outbox.publish('while.paused', '{}') IS NOT NULL AS published;
SELECT count(*) AS paused_rows FROM outbox.paused;
SELECT outbox.resume_relay() AS resumed;
SELECT outbox.resume_relay() AS resumed_again;

-- monitoring roles read the view; applications cannot pause or read it
CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
CREATE ROLE app LOGIN IN ROLE outbox_publisher, outbox_consumer;
SET ROLE monitor;
SELECT count(*) AS monitor_sees FROM outbox.stats WHERE datname = current_database();
RESET ROLE;
SET ROLE app;
SELECT count(*) FROM outbox.stats;
SELECT outbox.pause_relay();
SELECT outbox.resume_relay();
RESET ROLE;
DROP ROLE monitor;
DROP ROLE app;
DELETE FROM outbox.events;
