# When it has caught up, the relay truncates outbox.events if it
# has grown to outbox.truncate_threshold (src/reclaim.c), so that an old
# snapshot holding back vacuum does not make it grow without end; the few
# events it holds are carried over.  What that must never cost: a committed
# row, whoever wrote it.  And a session holding a lock on the table makes
# the relay wait, not fail.  Under a steady load: test/t/010_horizon_stress.pl.
use strict;
use warnings FATAL => 'all';

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('truncate', $broker->{bootstrap}, conf => qq{
outbox.truncate_threshold = '64kB'
outbox.full_scan_interval = '1h'
outbox.batch_size = 200
autovacuum = off
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE elsewhere (x int);
INSERT INTO elsewhere VALUES (1);
});

sub heap_bytes
{
	return $node->safe_psql('postgres', q{SELECT pg_relation_size('outbox.events')});
}

sub publish_many
{
	my ($topic, $from, $to) = @_;
	for (my $i = $from; $i <= $to; $i += 250)
	{
		my $last = $i + 249 > $to ? $to : $i + 249;
		$node->safe_psql('postgres', qq{
SELECT outbox.publish('$topic', jsonb_build_object('n', i, 'pad', repeat('x', 200)), key => (i % 5)::text)
  FROM generate_series($i, $last) i});
	}
	return;
}

# 1. a snapshot held elsewhere (no lock on outbox.events): vacuum can free
#    nothing, the relay truncates once the 3000 events are delivered
my $holder = open_session($node, 'postgres');
session_do($holder, q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT count(*) FROM elsewhere;});
publish_many('truncate.held', 1, 3000);
ok(wait_delivered($node, 3000), 'the 3000 events are delivered while the snapshot is held');
ok($node->poll_query_until('postgres', q{SELECT pg_relation_size('outbox.events') = 0}),
	'then outbox.events is truncated: its heap is empty');
is($node->safe_psql('postgres', q{SELECT backend_xmin IS NOT NULL FROM pg_stat_activity
	WHERE state = 'idle in transaction' AND query LIKE '%elsewhere%'}), 't',
	'while the snapshot is still held (vacuum could have freed nothing)');
my $msgs = python_read($broker->{bootstrap}, 'truncate.held', 3000);
my %n = map { decode_json($_->{value})->{n} => 1 } @$msgs;
is(scalar(@$msgs), 3000, 'python3-kafka reads 3000 messages');
is(scalar(keys %n), 3000, 'each event once');

# 2. a session that read outbox.events and stays open holds a lock on it:
#    no truncation until it ends, and nothing lost meanwhile
my $reader = open_session($node, 'postgres');
session_do($reader, q{BEGIN; SELECT count(*) FROM outbox.events;});
publish_many('truncate.locked', 1, 3000);
ok(wait_delivered($node, 6000), 'events are delivered while a session holds a lock on outbox.events');
ok(wait_drained($node), 'outbox.events holds no event');
sleep(3);
cmp_ok(heap_bytes(), '>', 64 * 1024, 'the table is not truncated while the lock is held');
like($node->safe_psql('postgres', q{SELECT state FROM outbox.stats WHERE datname = 'postgres'}),
	qr/^running$/, 'and the relay keeps running');
session_do($reader, 'COMMIT;');
ok($node->poll_query_until('postgres', q{SELECT pg_relation_size('outbox.events') = 0}),
	'once the session ends, the table is truncated');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'truncate.locked', 3000) }), 3000,
	'all 3000 events in Kafka');

# 3. a row written behind the relay's back (a superuser's INSERT with an id
#    long delivered, below the relay's cursor) while the table is large and
#    the relay drained: the relay does not find it before the full scan, so
#    its truncation must carry it over, as it does the events committed
#    since its last read
$node->safe_psql('postgres', 'SELECT outbox.pause_relay()');
$node->poll_query_until('postgres', q{SELECT state = 'paused' FROM outbox.stats WHERE datname = 'postgres'})
	or die 'relay not paused';
publish_many('truncate.behind', 1, 3000);
$node->safe_psql('postgres', q{
INSERT INTO outbox.events (id, event_id, topic, key, payload, content_type, created_at, attempts, last_error)
VALUES (1, 'aaaaaaaa-0000-7000-8000-000000000001', 'truncate.behind', 'manual',
        convert_to('{"n": "manual"}', 'UTF8'), 'application/json', '2026-01-02 03:04:05+00', 0, 'kept');
SELECT outbox.resume_relay();
});
ok(wait_delivered($node, 9000), 'the 3000 published events are delivered');
ok($node->poll_query_until('postgres', q{SELECT pg_relation_size('outbox.events') < 65536}),
	'the table is truncated');
is($node->safe_psql('postgres', q{SELECT id, event_id, topic, key, convert_from(payload, 'UTF8'), created_at, last_error
	FROM outbox.events}),
	qq{1|aaaaaaaa-0000-7000-8000-000000000001|truncate.behind|manual|{"n": "manual"}|2026-01-02 03:04:05+00|kept},
	'the manual row was carried over as it was');
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.full_scan_interval = '1s'; SELECT pg_reload_conf();});
ok(wait_drained($node), 'the full scan delivers the manual row');
my @behind = map { decode_json($_->{value})->{n} } @{ kcat_read($broker->{bootstrap}, 'truncate.behind', 3001) };
is(scalar(@behind), 3001, '3001 events in Kafka');
is(scalar(grep { $_ eq 'manual' } @behind), 1, 'the manual row among them');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET outbox.full_scan_interval; SELECT pg_reload_conf();});

session_do($holder, 'COMMIT;');
close_session($holder);
close_session($reader);

# 4. outbox.truncate_threshold = 0: never
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.truncate_threshold = 0; SELECT pg_reload_conf();});
$node->poll_query_until('postgres', q{SELECT current_setting('outbox.truncate_threshold') = '0'})
	or die 'setting not reloaded';
$holder = open_session($node, 'postgres');
session_do($holder, q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT count(*) FROM elsewhere;});
publish_many('truncate.never', 1, 3000);
ok(wait_delivered($node, 12001), 'with truncation off, events are delivered');
ok(wait_drained($node), 'outbox.events holds no event');
sleep(3);
cmp_ok(heap_bytes(), '>', 64 * 1024, 'and the table keeps its size');
session_do($holder, 'COMMIT;');
close_session($holder);

$node->stop;
stop_broker($broker);
done_testing();
