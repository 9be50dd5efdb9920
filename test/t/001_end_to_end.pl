# End to end: events published in many transactions reach Kafka exactly as
# published, in per-key order, with CloudEvents headers; rolled-back events
# never appear; outbox.events drains; the relay is woken at commit (the poll
# interval is an hour); the partition is the Java client's; read back by kcat
# (librdkafka) and by python3-kafka (not librdkafka).
use strict;
use warnings FATAL => 'all';

use Digest::MD5 qw(md5_hex);
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
is(broker_cmd($broker, 'topic orders 4'), 'ok', 'topic orders created with 4 partitions');

my $node = new_node('e2e', $broker->{bootstrap}, conf => "outbox.poll_interval = '1h'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE published (event_id uuid, tx int, i int, k int);
});

# the relay and the launcher show in pg_stat_activity
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = 'postgres'})
  or die 'relay did not start';
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'outbox launcher'}),
	'1', 'launcher runs');

# 300 transactions of 10 events over 25 keys; every 10th transaction rolls back
my $ntx = 300;
my $per_tx = 10;
my $sql = '';
for my $tx (1 .. $ntx)
{
	my $end = ($tx % 10 == 0) ? 'ROLLBACK' : 'COMMIT';
	$sql .= qq{BEGIN;
INSERT INTO published
SELECT outbox.publish(topic => 'orders',
                      payload => jsonb_build_object('tx', $tx, 'i', i, 'k', (($tx * $per_tx + i) % 25), 'rolled_back', '$end' = 'ROLLBACK'),
                      key => 'key-' || (($tx * $per_tx + i) % 25),
                      headers => ('{"x-tenant": "acme", "x-seq": "' || i || '"}')::jsonb,
                      event_type => 'order.placed.v1'),
       $tx, i, ($tx * $per_tx + i) % 25
  FROM generate_series(1, $per_tx) i;
$end;
};
}
$node->safe_psql('postgres', $sql);
my $committed = $node->safe_psql('postgres', 'SELECT count(*) FROM published');
is($committed, ($ntx - $ntx / 10) * $per_tx, 'committed events recorded');

ok(wait_drained($node), 'outbox.events drained with a one-hour poll interval: woken at commit');

my $msgs = kcat_read($broker->{bootstrap}, 'orders', $committed);
is(scalar(@$msgs), $committed, 'kcat read every committed event');

my %want = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', 'SELECT event_id FROM published');
my %got;
$got{ $_->{headers}{ce_id} }++ for @$msgs;
is_deeply([ sort keys %got ], [ sort keys %want ], 'the ce_id set is the committed event id set');
is(scalar(grep { $_ > 1 } values %got), 0, 'no duplicates in a clean run');
is(scalar(grep { $_->{value} =~ /"rolled_back": true/ } @$msgs), 0, 'no rolled-back event reached Kafka');

# per-key order: within a key, (tx, i) strictly increases
my $keys = by_key($msgs);
my $ordered = 1;
my $one_partition = 1;
for my $k (keys %$keys)
{
	my @seq = map { my $v = decode_json($_->{value}); $v->{tx} * 1000 + $v->{i} } @{ $keys->{$k} };
	for my $n (1 .. $#seq)
	{
		$ordered = 0 if $seq[$n] <= $seq[ $n - 1 ];
	}
	my %parts = map { $_->{partition} => 1 } @{ $keys->{$k} };
	$one_partition = 0 if keys %parts != 1;
}
ok($ordered, 'each key\'s events arrived in publish order');
ok($one_partition, 'each key stayed on one partition');
is(scalar(keys %$keys), 25, 'all 25 keys present');

# payloads, keys and headers exactly as published
my $first = $node->safe_psql('postgres', q{SELECT event_id, k FROM published WHERE tx = 1 AND i = 1});
my ($first_id, $first_k) = split /\|/, $first;
my ($m) = grep { $_->{headers}{ce_id} eq $first_id } @$msgs;
is($m->{value}, qq({"i": 1, "k": $first_k, "tx": 1, "rolled_back": false}), 'value is the jsonb text');
is($m->{key}, "key-$first_k", 'key as published');
is_deeply($m->{header_names},
	[ qw(ce_specversion ce_id ce_source ce_type ce_time content-type x-seq x-tenant) ],
	'CloudEvents headers first, then the caller\'s');
is($m->{headers}{ce_specversion}, '1.0', 'ce_specversion');
is($m->{headers}{ce_source}, '/outbox/postgres', 'default ce_source');
is($m->{headers}{ce_type}, 'order.placed.v1', 'ce_type is event_type');
like($m->{headers}{ce_time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'ce_time is RFC 3339');
is($m->{headers}{'content-type'}, 'application/json', 'content-type');
is($m->{headers}{'x-tenant'}, 'acme', 'caller header kept');

# the same through python3-kafka, which is not built on librdkafka
my $py = python_read($broker->{bootstrap}, 'orders', $committed);
is(scalar(@$py), $committed, 'python3-kafka read every committed event');
my %pyids = map { $_->{headers}{ce_id} => 1 } @$py;
is_deeply([ sort keys %pyids ], [ sort keys %want ], 'python3-kafka sees the same event ids');

# Java-compatible partitioning: kafka-python's murmur2 is the Java client's
my $mismatch = 0;
my $script = 'import sys, json; from kafka.partitioner.default import murmur2
for line in sys.stdin:
    m = json.loads(line)
    want = (murmur2(m["key"].encode()) & 0x7fffffff) % 4
    if want != m["partition"]: print("mismatch", m["key"], m["partition"], want)
';
my $in = join("\n", map { encode_json({ key => $_->{key}, partition => $_->{partition} }) } @$msgs) . "\n";
my ($out, $err) = ('', '');
IPC::Run::run([ '/usr/bin/python3', '-c', $script ], '<', \$in, '>', \$out, '2>', \$err)
  or die "the partition check script failed: $err";
is($out, '', 'every key is on the partition the Java client would choose');

# a tombstone and a binary payload
$node->safe_psql('postgres', q{
SELECT outbox.publish('misc', NULL, key => 'gone');
SELECT outbox.publish_binary('misc', '\x00ff10'::bytea, key => 'bin', content_type => 'application/x-protobuf',
                             traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
                             source => '/custom', event_type => 'custom.v1');
});
ok(wait_drained($node), 'misc events drained');
my $misc = kcat_read($broker->{bootstrap}, 'misc', 2);
my ($tomb) = grep { $_->{key} eq 'gone' } @$misc;
ok(defined $tomb && !defined $tomb->{value}, 'NULL payload arrives as a tombstone');
my ($bin) = grep { $_->{key} eq 'bin' } @$misc;
is($bin->{headers}{'content-type'}, 'application/x-protobuf', 'binary content type');
is($bin->{headers}{traceparent}, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'traceparent header');
is($bin->{headers}{ce_source}, '/custom', 'ce_source from the caller');
is($bin->{headers}{ce_type}, 'custom.v1', 'ce_type from the caller');

# payloads larger than outbox.batch_max_bytes: batches stop at the budget
# (at least one event each), and every event still arrives whole, in order
$node->append_conf('postgresql.conf', "outbox.batch_max_bytes = '64kB'");
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('outbox.batch_max_bytes') = '64kB'})
  or die 'timed out waiting for the reload of outbox.batch_max_bytes';
$node->safe_psql('postgres', q{
SELECT outbox.publish('big', jsonb_build_object('n', i, 'blob', repeat(md5(i::text), 6250)), key => 'big')
  FROM generate_series(1, 12) i;
});
ok(wait_drained($node), 'large events drained with a 64kB batch budget');
my @big = map { decode_json($_->{value}) } @{ kcat_read($broker->{bootstrap}, 'big', 12) };
is_deeply([ map { $_->{n} } @big ], [ 1 .. 12 ], 'large events arrive once each, in order');
is(scalar(grep { $big[$_]{blob} eq md5_hex($_ + 1) x 6250 } 0 .. $#big), 12,
	'each 200 kB payload arrives intact');

$node->stop;
stop_broker($broker);
done_testing();
