# What happens around a delivered event (issue 14), as it lands.
# The Kafka record timestamp (outbox.record_timestamp): "produce", the
# default, is when the relay produced the event; "event" is when publish()
# ran (ce_time).  Events published while the relay is paused and delivered
# 1.5 s later show which one a consumer (python3-kafka) gets.
# Causation chains across two hops: an event read from Kafka is received
# and causes the next, whose ce_causationid and ce_correlationid a consumer
# reads back and passes on.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use Time::Local qw(timegm);
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('after_delivery', $broker->{bootstrap});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');

# ce_time (RFC 3339, UTC, microseconds) as Unix milliseconds, truncated
sub ce_time_ms
{
	my ($t) = @_;
	$t =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$/
	  or die "unexpected ce_time $t";
	return timegm($6, $5, $4, $3, $2 - 1, $1) * 1000 + int($7 / 1000);
}

# three events published while paused, delivered 1.5 s later
sub publish_late
{
	my ($topic) = @_;
	$node->safe_psql('postgres', qq{
SELECT outbox.pause_relay();
SELECT outbox.publish('$topic', jsonb_build_object('n', n), key => 'k') FROM generate_series(1, 3) n;
});
	usleep(1_500_000);
	$node->safe_psql('postgres', 'SELECT outbox.resume_relay()');
	ok(wait_drained($node), "$topic delivered");
	return python_read($broker->{bootstrap}, $topic, 3);
}

is($node->safe_psql('postgres', 'SHOW outbox.record_timestamp'), 'produce', 'produce is the default');
my $msgs = publish_late('ts.produce');
is(scalar(@$msgs), 3, 'three events');
for my $m (@$msgs)
{
	cmp_ok($m->{timestamp} - ce_time_ms($m->{headers}{ce_time}), '>=', 1400,
		'produce: the record timestamp is when the relay sent it, after ce_time');
}

$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.record_timestamp = 'event'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{SELECT current_setting('outbox.record_timestamp') = 'event'}),
	'reloaded');
$msgs = publish_late('ts.event');
is(scalar(@$msgs), 3, 'three events');
for my $m (@$msgs)
{
	is($m->{timestamp}, ce_time_ms($m->{headers}{ce_time}),
		'event: the record timestamp is ce_time, to the millisecond');
}

my ($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET outbox.record_timestamp = 'later'});
like($err, qr/invalid value for parameter "outbox.record_timestamp": "later"/, 'an unknown value is refused');
like($err, qr/Available values: produce, event/, 'naming the values');

# three hops: each step receives the last event as a consumer would (its
# ce_id, and its ce_correlationid when it has one) and publishes the next
$node->safe_psql('postgres', q{SELECT outbox.publish('hop.1', '{"step": 1}', key => 'process')});
ok(wait_drained($node), 'hop 1 delivered');
my @hops = (python_read($broker->{bootstrap}, 'hop.1', 1)->[0]);
ok(!exists $hops[0]{headers}{ce_causationid}, 'the first event has no cause');
for my $step (2, 3)
{
	my $prev = $hops[-1]{headers};
	my $corr = defined $prev->{ce_correlationid} ? "'$prev->{ce_correlationid}'" : 'NULL';
	$node->safe_psql('postgres', qq{
BEGIN;
SELECT outbox.receive('service-$step', '$prev->{ce_id}', correlation_id => $corr);
SELECT outbox.publish('hop.$step', '{"step": $step}', key => 'process');
COMMIT;
});
	ok(wait_drained($node), "hop $step delivered");
	push @hops, python_read($broker->{bootstrap}, "hop.$step", 1)->[0];
}
is($hops[1]{headers}{ce_causationid}, $hops[0]{headers}{ce_id}, 'hop 2 was caused by hop 1');
is($hops[1]{headers}{ce_correlationid}, $hops[0]{headers}{ce_id}, 'hop 2 is correlated by the id of hop 1');
is($hops[2]{headers}{ce_causationid}, $hops[1]{headers}{ce_id}, 'hop 3 was caused by hop 2');
is($hops[2]{headers}{ce_correlationid}, $hops[0]{headers}{ce_id}, 'hop 3 carries the correlation id of the process');

$node->stop;
stop_broker($broker);
done_testing();
