# What happens around a delivered event (issue 14), as it lands.
# The Kafka record timestamp (outbox.record_timestamp): "produce", the
# default, is when the relay produced the event; "event" is when publish()
# ran (ce_time).  Events published while the relay is paused and delivered
# 1.5 s later show which one a consumer (python3-kafka) gets.
# Causation chains across two hops: an event read from Kafka is received
# and causes the next, whose ce_causationid and ce_correlationid a consumer
# reads back and passes on.
# Delivery notifications (outbox.notify_channel): a listening session gets,
# once the relay recorded them, one JSON object per delivered event with
# the partition and offset Kafka holds it at, packed under NOTIFY's 8000
# bytes.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use Time::Local qw(timegm);
use JSON::PP;
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

# delivery notifications
($rc, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET outbox.notify_channel = '" . ('c' x 64) . "'");
like($err, qr/A channel name has at most 63 bytes/, 'a channel name NOTIFY would refuse is refused');
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.notify_channel = 'outbox_delivered'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{SELECT current_setting('outbox.notify_channel') = 'outbox_delivered'}),
	'notify_channel reloaded');
my $listener = open_session($node, 'postgres');
session_do($listener, 'LISTEN outbox_delivered;');

# the notifications the listener got since the last call, as payload strings
sub notifications
{
	my $got = session_do($listener, 'SELECT 1;');
	return [ $got =~ /Asynchronous notification "outbox_delivered" with payload "(.*)" received from server process with PID \d+\./g ];
}

$node->safe_psql('postgres', q{
SELECT outbox.publish('notify.few', jsonb_build_object('n', n), key => 'k' || n, event_type => 'thing.done.v1')
  FROM generate_series(1, 5) n;
});
$node->safe_psql('postgres', q{BEGIN; SELECT outbox.publish('notify.few', '{"never": true}'); ROLLBACK;});
ok(wait_drained($node), 'notified events delivered');
$msgs = python_read($broker->{bootstrap}, 'notify.few', 5);
my @notes;
for (1 .. 50)
{
	push @notes, @{ notifications() };
	last if @notes;
	usleep(100_000);
}
my @objs = map { @{ decode_json($_) } } @notes;
is(scalar(@objs), 5, 'one notification object per delivered event, none for the rolled-back one');
my %kafka = map { ($_->{headers}{ce_id} => $_) } @$msgs;
for my $o (@objs)
{
	my $m = $kafka{ $o->{event_id} };
	ok(defined $m, "notified event $o->{event_id} is in Kafka");
	is_deeply([ $o->{topic}, $o->{key}, $o->{partition}, $o->{offset}, $o->{event_type} ],
		[ $m->{topic}, $m->{key}, $m->{partition}, $m->{offset}, 'thing.done.v1' ],
		"notification of $o->{key}: topic, key, partition and offset as Kafka holds it");
}
is_deeply([ map { $_->{key} } @objs ], [ map { "k$_" } 1 .. 5 ], 'in the order they were published');

# many events: several notifications, each under the limit; a huge key is left out
$node->safe_psql('postgres', q{
SELECT outbox.publish('notify.many', '{}', key => repeat('k', 90) || n) FROM generate_series(1, 300) n;
SELECT outbox.publish('notify.many', '{}', key => repeat('x', 9000));
});
ok(wait_drained($node), 'many delivered');
@notes = ();
for (1 .. 100)
{
	push @notes, @{ notifications() };
	@objs = map { @{ decode_json($_) } } @notes;
	last if @objs >= 301;
	usleep(100_000);
}
is(scalar(@objs), 301, 'every delivered event notified');
cmp_ok(scalar(@notes), '>', 1, 'in several notifications');
ok(!(grep { length($_) >= 8000 } @notes), 'each under 8000 bytes');
my ($huge) = grep { $_->{key_omitted} } @objs;
ok(defined $huge && !defined $huge->{key}, 'a key too large for a notification is left out, and said so');
close_session($listener);

# a database in LATIN1: the payload is in its encoding, the key intact
$node->safe_psql('postgres', q{CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'});
$node->safe_psql('latin', 'CREATE EXTENSION outbox');
$listener = open_session($node, 'latin');
session_do($listener, "SET client_encoding = 'UTF8'; LISTEN outbox_delivered;");
$node->safe_psql('latin', q{SET client_encoding = 'UTF8'; SELECT outbox.publish('notify.latin', '{}', key => 'café "quoted"')});
ok(wait_drained($node, 'latin'), 'delivered from the LATIN1 database');
@objs = ();
for (1 .. 50)
{
	@objs = map { @{ decode_json($_) } } @{ notifications() };
	last if @objs;
	usleep(100_000);
}
is($objs[0]{key}, "caf\x{e9} \"quoted\"", 'the key of a LATIN1 database, escaped and converted');
close_session($listener);

$node->stop;
stop_broker($broker);
done_testing();
