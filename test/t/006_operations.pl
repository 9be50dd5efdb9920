# Operations: outbox.stats moves with real work; pause/resume with a real
# consumer counting; upgrade from 1.0 with data in the tables; a search_path
# hijack attempt reaches neither publish() nor the relay; relay log lines
# name the relay; a shortage of worker slots is logged with a hint.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('ops', $broker->{bootstrap});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM outbox.stats WHERE pid IS NOT NULL})
  or die 'no relay';

# stats move with real work
$node->safe_psql('postgres', q{SELECT outbox.publish('stats.topic', jsonb_build_object('n', g), key => 'k') FROM generate_series(1, 250) g});
ok(wait_drained($node), 'drained');
ok($node->poll_query_until('postgres',
	q{SELECT delivered = 250 AND pending = 0 AND last_delivery_at IS NOT NULL AND state = 'running' AND brokers = 'up'
	    FROM outbox.stats WHERE datname = 'postgres'}),
	'outbox.stats counts the deliveries and shows an empty backlog');
my $stats = $node->safe_psql('postgres', q{SELECT * FROM outbox.stats});
note("outbox.stats after 250 events:\n$stats");

# pause: nothing reaches Kafka, publish goes on, the backlog shows in stats
is($node->safe_psql('postgres', 'SELECT outbox.pause_relay()'), 't', 'paused');
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM outbox.stats WHERE datname = 'postgres'}),
	'the relay reports paused');
$node->safe_psql('postgres', q{SELECT outbox.publish('paused.topic', jsonb_build_object('n', g), key => 'k' || (g % 3)) FROM generate_series(1, 300) g});
# time itself is tested here: nothing may arrive during these two seconds
# (an unpaused relay delivers within milliseconds of the commit)
sleep(2);
is(scalar(@{ kcat_read($broker->{bootstrap}, 'paused.topic') }), 0, 'while paused a consumer sees nothing');
ok($node->poll_query_until('postgres',
	q{SELECT pending = 300 AND oldest_pending_age > interval '0' FROM outbox.stats WHERE datname = 'postgres'}),
	'stats show the waiting backlog and its age');
is($node->safe_psql('postgres', 'SELECT outbox.resume_relay()'), 't', 'resumed');
ok(wait_drained($node), 'drained after resume');
my $msgs = kcat_read($broker->{bootstrap}, 'paused.topic');
is(scalar(@$msgs), 300, 'after resume the consumer counts every event');
my $in_order = 1;
my $keys = by_key($msgs);
for my $k (keys %$keys)
{
	my @n = map { JSON::PP::decode_json($_->{value})->{n} } @{ $keys->{$k} };
	for my $i (1 .. $#n) { $in_order = 0 if $n[$i] <= $n[ $i - 1 ]; }
}
ok($in_order, 'nothing reordered by the pause');

# a pause survives a restart (it is a row, not a flag in memory)
$node->safe_psql('postgres', 'SELECT outbox.pause_relay()');
$node->restart;
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM outbox.stats WHERE datname = 'postgres'}),
	'still paused after a restart');
$node->safe_psql('postgres', 'SELECT outbox.resume_relay()');

# search_path hijack: functions and operators named like built-ins, first in
# the path of the database (which the relay connects to) and of the caller
$node->safe_psql('postgres', q{
CREATE TABLE hijacked (what text);
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8eq);
CREATE FUNCTION evil.count(bigint) RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('count'); RETURN 0; END $$;
GRANT ALL ON TABLE hijacked TO PUBLIC;
ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;
});
# the relay reconnects with the database's settings
$node->restart;
$node->safe_psql('postgres', q{
SET search_path = evil, pg_catalog, public;
SELECT outbox.publish('hijack.topic', '{"n": 1}', key => 'h');
SELECT outbox.receive('hijacker', 'id-1');
SELECT outbox.receive('hijacker', 'id-1');
});
ok(wait_drained($node), 'events drain with an evil search_path');
$node->safe_psql('postgres', q{SELECT outbox.pause_relay(); SELECT outbox.resume_relay(); SELECT outbox.replay_dead_letters(); SELECT outbox.purge_inbox();});
# the relay has reacted to them once it delivers an event published after them
$node->safe_psql('postgres', q{SET search_path = evil, pg_catalog, public; SELECT outbox.publish('hijack.after', '{"n": 2}', key => 'h');});
ok(wait_drained($node), 'the relay delivers after the pause, resume, replay and purge calls');
is($node->safe_psql('postgres', 'SELECT count(*) FROM hijacked'), '0', 'no hijacking function or operator was ever called');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'hijack.topic') }), 1, 'the event still reached Kafka');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET search_path');

# upgrade: install 1.0 with data in every table, then update to the current version
$node->safe_psql('postgres', 'CREATE DATABASE old_version');
$node->safe_psql('old_version', q{
CREATE EXTENSION outbox VERSION '1.0';
SELECT outbox.receive('billing', 'kept-1');
INSERT INTO outbox.dead_letters (event_id, topic, content_type, created_at, attempts, error_code, error)
VALUES ('01890a5d-ac96-774b-bcce-b302099a8057', 'dead.topic', 'application/json', now(), 3, '_MSG_TIMED_OUT', 'timed out');
SELECT outbox.publish('upgrade.topic', '{"before": true}', key => 'u');
});
ok(wait_drained($node, 'old_version'), 'a 1.0 installation relays');
is($node->safe_psql('old_version', q{SELECT extversion FROM pg_extension WHERE extname = 'outbox'}), '1.0', 'installed 1.0');
$node->safe_psql('old_version', 'ALTER EXTENSION outbox UPDATE');
is($node->safe_psql('old_version', q{SELECT extversion FROM pg_extension WHERE extname = 'outbox'}), '1.2', 'updated to 1.2');
is($node->safe_psql('old_version', q{SELECT outbox.receive('billing', 'kept-1')}), 'f', 'inbox rows kept');
is($node->safe_psql('old_version', 'SELECT count(*) FROM outbox.dead_letters'), '1', 'dead letters kept');
$node->safe_psql('old_version', q{SELECT outbox.publish('upgrade.topic', '{"after": true}', key => 'u')});
ok(wait_drained($node, 'old_version'), 'the relay goes on after the update');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'upgrade.topic') }), 2, 'both events in Kafka');
ok($node->poll_query_until('old_version', q{SELECT count(*) = 1 FROM outbox.stats WHERE datname = 'old_version'}),
	'the new view works after the update');

# log lines of the relay name it and its database
ok($node->log_contains('outbox relay for database "old_version" started'), 'relay log lines name the database');

# too few worker slots: said clearly, with a hint
$node->append_conf('postgresql.conf', "max_worker_processes = 3\n");
$node->restart;
ok($node->wait_for_log('no background worker slot free for the relay', 0),
	'a shortage of worker slots is logged');
ok($node->log_contains('Raise max_worker_processes'), 'with a hint');

$node->stop;
stop_broker($broker);
done_testing();
