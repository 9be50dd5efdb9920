# The relay reads past the ids it delivered (src/horizon.c) instead of
# rescanning their dead rows.  What that must never cost: an event whose
# transaction took its id early and commits late is still delivered at once;
# so are events while another session holds back vacuum; a row inserted
# behind the relay's back is found at the next full scan; a transaction that
# published cannot be prepared.  outbox.full_scan_interval is 1h where the
# full scan must not be what finds the event.
use strict;
use warnings FATAL => 'all';

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('horizon', $broker->{bootstrap}, conf => qq{
outbox.full_scan_interval = '1h'
outbox.batch_size = 50
max_prepared_transactions = 2
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');

# 1. an id taken early, committed after 500 later events were delivered
my $late = open_session($node, 'postgres');
session_do($late, q{BEGIN; SELECT outbox.publish('horizon.late', '{"n": "early"}', key => 'a');});
for my $t (1 .. 10)
{
	$node->safe_psql('postgres', qq{
SELECT outbox.publish('horizon.late', jsonb_build_object('n', i), key => 'b')
  FROM generate_series(($t - 1) * 50 + 1, $t * 50) i});
}
ok(wait_delivered($node, 500), 'the 500 later events are delivered while the early one is uncommitted');
session_do($late, 'COMMIT;');
ok(wait_drained($node), 'the early event, committed last, is delivered without a full scan');
my @late = map { decode_json($_->{value})->{n} } @{ kcat_read($broker->{bootstrap}, 'horizon.late', 501) };
is(scalar(@late), 501, 'all 501 events in Kafka');
is(scalar(grep { $_ eq 'early' } @late), 1, 'the early event among them');

# 2. another session holds back vacuum (an xid and a snapshot) meanwhile
my $held = open_session($node, 'postgres');
session_do($held, q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT count(*) FROM outbox.events;});
my $before = delivered($node);
for my $t (1 .. 20)
{
	$node->safe_psql('postgres', qq{
SELECT outbox.publish('horizon.held', jsonb_build_object('n', i), key => (i % 7)::text)
  FROM generate_series(($t - 1) * 100 + 1, $t * 100) i});
}
ok(wait_drained($node), 'events are delivered while vacuum is held back');
is(delivered($node) - $before, 2000, 'all 2000 of them');
ok($node->poll_query_until('postgres', q{SELECT n_dead_tup >= 2000 FROM pg_stat_user_tables WHERE relid = 'outbox.events'::regclass}),
	'their rows are dead, not removed (and the relay reports them to the statistics)');
my %held = map { decode_json($_->{value})->{n} => 1 } @{ kcat_read($broker->{bootstrap}, 'horizon.held', 2000) };
is(scalar(keys %held), 2000, 'each of them in Kafka');
session_do($held, 'COMMIT;');
close_session($held);

# 3. PREPARE TRANSACTION after publish() is refused; without it, allowed
like(session_do($late, q{BEGIN; SELECT outbox.publish('horizon.2pc', '{}'); PREPARE TRANSACTION 'p1';}),
	qr/cannot PREPARE a transaction that published outbox events/, 'preparing a publishing transaction is refused');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0', 'nothing was prepared');
session_do($late, q{BEGIN; CREATE TABLE two_phase (x int); PREPARE TRANSACTION 'p2'; COMMIT PREPARED 'p2';});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname = 'two_phase'}), '1',
	'other transactions still prepare');

# 4. a row inserted by a superuser, not through publish(), while later events
#    are delivered: reads start past it, so only the full scan every
#    full_scan_interval finds it
my $direct = delivered($node);
session_do($late, q{BEGIN; INSERT INTO outbox.events (event_id, topic, key, payload, content_type, created_at)
VALUES (gen_random_uuid(), 'horizon.direct', 'd', convert_to('{"n": "direct"}', 'UTF8'), 'application/json', now());});
$node->safe_psql('postgres', q{SELECT outbox.publish('horizon.direct', jsonb_build_object('n', i), key => 'e') FROM generate_series(1, 100) i});
ok(wait_delivered($node, $direct + 100), 'later events delivered');
session_do($late, 'COMMIT;');
$node->safe_psql('postgres', q{SELECT outbox.publish('horizon.direct', '{"n": "wake"}', key => 'e')});
ok(wait_delivered($node, $direct + 101), 'an event published after it is delivered');
is($node->safe_psql('postgres', q{SELECT count(*) FROM outbox.events WHERE topic = 'horizon.direct'}), '1',
	'the row inserted directly is not read again before the full scan (reads start past delivered ids)');
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.full_scan_interval = '2s'; SELECT pg_reload_conf();});
ok(wait_drained($node), 'the full scan finds it');
is(scalar(grep { decode_json($_->{value})->{n} eq 'direct' } @{ kcat_read($broker->{bootstrap}, 'horizon.direct', 102) }),
	1, 'and delivers it');
close_session($late);

$node->stop;
stop_broker($broker);
done_testing();
