# Replication: a streaming standby with outbox preloaded runs no relay and
# publishes nothing (publish() is refused there); after promotion it
# publishes what the old primary had not.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);

# the primary's relay cannot reach any broker: its events stay pending
my $primary = new_node('primary', '127.0.0.1:9', init => { allows_streaming => 1 });
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE published (event_id uuid, n int);
INSERT INTO published SELECT outbox.publish('failover', jsonb_build_object('n', g), key => 'k' || (g % 4)), g
  FROM generate_series(1, 200) g;
});
$primary->backup('b');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
# the standby points at the real broker: only a promotion may use it
$standby->append_conf('postgresql.conf', "outbox.kafka_brokers = '$broker->{bootstrap}'\n");
$standby->start;

$primary->safe_psql('postgres', q{
INSERT INTO published SELECT outbox.publish('failover', jsonb_build_object('n', g), key => 'k' || (g % 4)), g
  FROM generate_series(201, 300) g;
});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT count(*) FROM outbox.events'), '300', 'the standby has the pending events');
# time itself is tested here: no outbox process may appear on the standby
# during these three seconds (on a primary the launcher starts with the server)
sleep(3);
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'outbox%'}),
	'0', 'no launcher and no relay run on a standby');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'failover') }), 0, 'the standby published nothing');
my ($ret, $out, $err) = $standby->psql('postgres', q{SELECT outbox.publish('t', '{}')});
like($err, qr/cannot execute outbox.publish\(\) (in a read-only transaction|during recovery)/,
	'publish() on a standby is refused clearly');

# fail over
$primary->stop('immediate');
$standby->promote;
ok($standby->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay'}),
	'after promotion a relay runs');
ok(wait_drained($standby), 'the new primary drains what the old one had not published');
my $msgs = kcat_read($broker->{bootstrap}, 'failover');
my %want = map { $_ => 1 } split /\n/, $standby->safe_psql('postgres', 'SELECT event_id FROM published');
my %got = map { $_->{headers}{ce_id} => 1 } @$msgs;
is_deeply([ sort keys %got ], [ sort keys %want ], 'every event published on the old primary reached Kafka');
my $keys = by_key($msgs);
my $in_order = 1;
for my $k (keys %$keys)
{
	my @n = map { JSON::PP::decode_json($_->{value})->{n} } @{ $keys->{$k} };
	for my $i (1 .. $#n) { $in_order = 0 if $n[$i] <= $n[ $i - 1 ]; }
}
ok($in_order, 'in per-key order');
diag(sprintf('SCENARIO standby promotion published=300 delivered=%d duplicated=%d lost=%d',
	scalar(keys %got), scalar(@$msgs) - scalar(keys %got), scalar(grep { !$got{$_} } keys %want)));

$standby->stop;
stop_broker($broker);
done_testing();
