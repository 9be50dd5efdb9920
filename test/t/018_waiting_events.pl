# Events that wait in outbox.events.
# Delayed delivery: an event published with deliver_at arrives no earlier
# than then, later events of its key wait for it and keep their order,
# other keys go on; outbox.stats counts it as scheduled; while events only
# wait the relay reads nothing (no spinning, no rescans).
# Per-key hold (outbox.dead_letter_policy = hold_key): a dead letter holds
# exactly its key; later events of it wait (outbox.stats counts them held)
# and go, after it, in order, when it is replayed; or without it when it is
# discarded.  What arrived is read by python3-kafka.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('waiting_events', $broker->{bootstrap});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');

# the values of a key's records in partition order
sub values_of
{
	my ($msgs, $key) = @_;
	return join(',', map { $_->{value} } grep { ($_->{key} // '') eq $key } @$msgs);
}

# index scans on outbox.events so far, as the statistics show them
sub events_scans
{
	return $node->safe_psql('postgres', q{
SELECT COALESCE(idx_scan, 0) + seq_scan FROM pg_stat_all_tables WHERE relid = 'outbox.events'::regclass});
}

# Delayed delivery ----------------------------------------------------------------

my $deliver_at = $node->safe_psql('postgres', q{
SELECT extract(epoch FROM now() + interval '3 seconds') * 1000;
SELECT outbox.publish('delayed', '"k1-first"', key => 'k1', deliver_at => now() + interval '3 seconds');
SELECT outbox.publish('delayed', '"k1-second"', key => 'k1');
SELECT outbox.publish('delayed', '"k2-now"', key => 'k2');
});
($deliver_at) = split /\n/, $deliver_at;
my $msgs = python_read($broker->{bootstrap}, 'delayed', 1);
is(values_of($msgs, 'k2'), '"k2-now"', 'another key goes at once');
is(values_of($msgs, 'k1'), '', 'the delayed event and the later one of its key wait');
ok($node->poll_query_until('postgres', q{SELECT scheduled = 1 FROM outbox.stats WHERE datname = 'postgres'}),
	'outbox.stats counts one scheduled');
ok(wait_drained($node), 'delivered after deliver_at');
$msgs = python_read($broker->{bootstrap}, 'delayed', 3);
is(values_of($msgs, 'k1'), '"k1-first","k1-second"', 'in key order: the delayed one, then the one that waited');
my ($first) = grep { $_->{value} eq '"k1-first"' } @$msgs;
cmp_ok($first->{timestamp}, '>=', int($deliver_at), 'produced no earlier than deliver_at');
ok($node->poll_query_until('postgres', q{SELECT scheduled = 0 FROM outbox.stats WHERE datname = 'postgres'}),
	'none scheduled any more');

# many delayed events over a few keys come out in each key's order
$node->safe_psql('postgres', q{
SELECT outbox.publish('many', to_jsonb(n), key => 'key-' || (n % 5),
                      deliver_at => CASE WHEN n % 7 = 0 THEN now() + interval '2 seconds' END)
  FROM generate_series(1, 200) n;
});
ok(wait_drained($node), '200 events delivered');
$msgs = python_read($broker->{bootstrap}, 'many', 200);
is(scalar(@$msgs), 200, 'all of them, once');
for my $k (0 .. 4)
{
	my @expected = grep { $_ % 5 == $k } 1 .. 200;
	is(values_of($msgs, "key-$k"), join(',', @expected), "key-$k in publish order");
}

# a relay that restarts while events wait learns them again from the table
$node->safe_psql('postgres', q{
SELECT outbox.publish('restart', '"r-first"', key => 'r', deliver_at => now() + interval '4 seconds');
SELECT outbox.publish('restart', '"r-second"', key => 'r');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM outbox.events WHERE topic = 'restart' AND next_attempt_at IS NOT NULL}),
	'both wait (the second parked behind the first)');
my $old_pid = $node->safe_psql('postgres', q{SELECT pid FROM outbox.stats WHERE datname = 'postgres'});
$node->safe_psql('postgres', qq{SELECT pg_terminate_backend($old_pid)});
ok($node->poll_query_until('postgres', qq{SELECT pid IS NOT NULL AND pid <> $old_pid FROM outbox.stats WHERE datname = 'postgres'}),
	'the relay was started again');
$node->safe_psql('postgres', q{SELECT outbox.publish('restart', '"other"', key => 'o')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM outbox.events WHERE topic = 'restart'}),
	'another key goes at once after the restart');
ok(wait_drained($node), 'the waiting ones go at their time');
is(values_of(python_read($broker->{bootstrap}, 'restart', 3), 'r'), '"r-first","r-second"',
	'in key order, once each');

# while events only wait, the relay reads nothing
$node->safe_psql('postgres', q{
SELECT outbox.publish('far', '{}', key => 'f', deliver_at => now() + interval '1 hour') FROM generate_series(1, 100);
});
ok($node->poll_query_until('postgres', q{SELECT scheduled = 100 FROM outbox.stats WHERE datname = 'postgres'}),
	'a hundred scheduled an hour ahead');
my $before = events_scans();
usleep(3_000_000);
my $after = events_scans();
cmp_ok($after - $before, '<=', 10, "no spinning or rescanning while events only wait ($before -> $after scans in 3 s)");
$node->safe_psql('postgres', q{SELECT outbox.publish('now', '{}', key => 'f2')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 100 FROM outbox.events}), 'a new event still goes at once');

# they arrive when their time comes: an update brings it forward
$node->safe_psql('postgres', q{UPDATE outbox.events SET next_attempt_at = now() + interval '1 second' WHERE topic = 'far'});
ok(wait_drained($node), 'brought forward by hand, they go (the relay looks again within outbox.poll_interval)');
is(scalar(@{ python_read($broker->{bootstrap}, 'far', 100) }), 100, 'all hundred');

# Per-key hold -----------------------------------------------------------------

$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_policy = 'hold_key'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{SELECT current_setting('outbox.dead_letter_policy') = 'hold_key'}), 'hold_key');

# the next produce request is refused as too large: the one event published
# then becomes a dead letter at once
sub poison
{
	my ($topic, $key, $value) = @_;
	$node->safe_psql('postgres', 'SELECT outbox.pause_relay()');
	is(broker_cmd($broker, 'error 0 10 1'), 'ok', "next produce request refused ($key)");
	my $id = $node->safe_psql('postgres', qq{SELECT outbox.publish('$topic', '"$value"', key => '$key')});
	$node->safe_psql('postgres', 'SELECT outbox.resume_relay()');
	ok($node->poll_query_until('postgres', qq{SELECT holds_key FROM outbox.dead_letters WHERE event_id = '$id'}),
		"$value: a dead letter that holds $key");
	return $id;
}

my $a1 = poison('held', 'a', 'a1');
$node->safe_psql('postgres', q{
SELECT outbox.publish('held', '"a2"', key => 'a');
SELECT outbox.publish('held', '"b1"', key => 'b');
SELECT outbox.publish('held', '"a3"', key => 'a');
SELECT outbox.publish('held', '"b2"', key => 'b');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM outbox.events WHERE key = 'a' AND next_attempt_at IS NOT NULL}),
	'the held key waits');
$msgs = python_read($broker->{bootstrap}, 'held', 2);
is(values_of($msgs, 'b'), '"b1","b2"', 'the other key goes on');
is(values_of($msgs, 'a'), '', 'nothing of the held key');
ok($node->poll_query_until('postgres', q{SELECT held = 2 FROM outbox.stats WHERE datname = 'postgres'}),
	'outbox.stats counts two held');
is($node->safe_psql('postgres', qq{SELECT outbox.replay_dead_letters(ARRAY['$a1']::uuid[])}), '1', 'replayed');
ok(wait_drained($node), 'the key goes');
$msgs = python_read($broker->{bootstrap}, 'held', 5);
is(values_of($msgs, 'a'), '"a1","a2","a3"', 'the replayed event first, then those that waited, in order');
ok($node->poll_query_until('postgres', q{SELECT held = 0 FROM outbox.stats WHERE datname = 'postgres'}), 'none held');

# a discard releases the key without the dead letter
my $c1 = poison('held', 'c', 'c1');
$node->safe_psql('postgres', q{SELECT outbox.publish('held', '"c2"', key => 'c')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM outbox.events WHERE key = 'c' AND next_attempt_at IS NOT NULL}),
	'c waits');
is($node->safe_psql('postgres', qq{SELECT outbox.discard_dead_letters(ARRAY['$c1']::uuid[])}), '1', 'discarded');
ok(wait_drained($node), 'the key goes');
is(values_of(python_read($broker->{bootstrap}, 'held', 6), 'c'), '"c2"', 'without the discarded event');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.dead_letters'), '0', 'no dead letter left');

# back to continue: a key held then goes on
my $d1 = poison('held', 'd', 'd1');
$node->safe_psql('postgres', q{SELECT outbox.publish('held', '"d2"', key => 'd')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM outbox.events WHERE key = 'd'}), 'd waits');
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_policy = 'continue'; SELECT pg_reload_conf();});
ok(wait_drained($node), 'with continue, the waiting event goes');
is(values_of(python_read($broker->{bootstrap}, 'held', 7), 'd'), '"d2"', 'd2 delivered, d1 still a dead letter');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM outbox.dead_letters WHERE event_id = '$d1'}), '1', 'kept');

my ($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_policy = 'hold'});
like($err, qr/Available values: continue, hold_key/, 'an unknown policy is refused');

$node->stop;
stop_broker($broker);
done_testing();
