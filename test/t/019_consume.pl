# Consuming into the database.  Service A's cluster publishes with outbox;
# service B's cluster subscribes to the topic with a handler.  Checked in
# B's tables: every event applied exactly once and in per-key order,
# whatever happens in between (the consumer killed mid-batch, B's
# postmaster crashed, the brokers down, a second member of the group in
# another database); a poison message becomes a consumer dead letter after
# max_attempts while later messages go on; the handler runs as the role
# that subscribed, with a safe search_path.  Each fault prints a line of
# the fault table: scenario, published, applied, duplicates applied, lost.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use OutboxTest;

my $srcdir = $ENV{TESTDIR} // '.';
my $broker = start_broker(3);
my $a = new_node('consume_a', $broker->{bootstrap});
$a->start;
$a->safe_psql('postgres', 'CREATE EXTENSION outbox');
# a member that died leaves the group after 6 s instead of 45 s (the test
# broker does not implement static membership, which spares real Kafka
# this wait)
my $b = new_node('consume_b', $broker->{bootstrap}, conf => q{
outbox.poll_interval = '500ms'
outbox.consumer_properties = 'session.timeout.ms=6000;heartbeat.interval.ms=500'
restart_after_crash = on
});
$b->start;

# B: a team role that subscribes, its schema and handler
$b->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE ROLE billing LOGIN;
GRANT outbox_subscriber TO billing;
CREATE SCHEMA billing AUTHORIZATION billing;
SET ROLE billing;
CREATE TABLE billing.applied (
    n        bigserial PRIMARY KEY,
    key      text,
    seq      int,
    event_id text,
    topic    text,
    part     int,
    off      bigint,
    who      name,
    path     text
);
CREATE FUNCTION billing.on_payment(m outbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO billing.applied (key, seq, event_id, topic, part, off, who, path)
    VALUES (m.key, (m.payload->>'seq')::int, m.event_id, m.topic, m.partition, m."offset",
            current_user, current_setting('search_path'));
END $$;
});

# publish $n events over $nkeys keys on A, with seq numbering from $from
sub publish
{
	my ($topic, $from, $n, $nkeys) = @_;
	$a->safe_psql('postgres', qq{
SELECT outbox.publish('$topic', jsonb_build_object('seq', s), key => 'k' || (s % $nkeys))
  FROM generate_series($from, $from + $n - 1) s});
}

# B's applied rows of a topic: count, distinct ids, and whether each key's
# seq values come in increasing order of application
sub applied_summary
{
	my ($topic) = @_;
	return $b->safe_psql('postgres', qq{
SELECT count(*), count(DISTINCT event_id),
       count(*) FILTER (WHERE seq <= prev)
  FROM (SELECT seq, event_id, lag(seq) OVER (PARTITION BY key ORDER BY n) AS prev
          FROM billing.applied WHERE topic = '$topic') x});
}

sub wait_applied
{
	my ($topic, $n) = @_;
	return $b->poll_query_until('postgres',
		"SELECT count(DISTINCT event_id) >= $n FROM billing.applied WHERE topic = '$topic'");
}

my @fault_table;

sub fault_line
{
	my ($scenario, $topic, $published) = @_;
	my ($count, $distinct, $disorder) = split /\|/, applied_summary($topic);
	my $dups = $count - $distinct;
	my $lost = $published - $distinct;
	push @fault_table, sprintf("%-34s %9d %8d %11d %5d", $scenario, $published, $distinct, $dups, $lost);
	is($dups, 0, "$scenario: no event applied twice");
	is($lost, 0, "$scenario: none lost");
	is($disorder, 0, "$scenario: every key in publish order");
}

# Thousands of events over many keys ----------------------------------------------------

$a->safe_psql('postgres', q{SELECT outbox.publish('payments', '{"seq": 0}', key => 'warmup')});
ok(wait_drained($a), 'A delivered the first event (the topic exists)');
$b->safe_psql('postgres', q{
SET ROLE billing;
SELECT outbox.subscribe(consumer => 'billing', topics => '{payments}',
                        handler => 'billing.on_payment(outbox.message)');
});
publish('payments', 1, 3000, 50);
ok(wait_drained($a), 'A delivered 3000 events');
ok(wait_applied('payments', 3001), 'B applied them');
fault_line('steady', 'payments', 3001);

my $row = $b->safe_psql('postgres', q{SELECT DISTINCT who || ' ' || path FROM billing.applied});
is($row, 'billing pg_catalog, pg_temp', 'the handler runs as the role that subscribed, with search_path pg_catalog, pg_temp');
is($b->safe_psql('postgres', q{
SELECT sum("offset") = (SELECT count(*) FROM billing.applied) FROM outbox.consumer_offsets WHERE group_id = 'billing'}),
	't', 'the stored offsets add up to what was applied');
is($b->safe_psql('postgres', q{SELECT sum(processed) FROM outbox.consumer_offsets WHERE group_id = 'billing'}),
	'3001', 'consumer_offsets counts every message processed');
is($b->safe_psql('postgres', q{SELECT count(*) FROM outbox.inbox WHERE consumer = 'billing'}),
	'3001', "each event id is in B's inbox");

# outbox.consumer_stats: the consumer's view of the subscription
ok($b->poll_query_until('postgres', q{
SELECT bool_and(state = 'running' AND assigned_partitions = 4 AND lag = 0 AND lag_age = '0')
       AND sum(processed) = 3001 AND count(*) = 4
  FROM outbox.consumer_stats WHERE consumer = 'billing'}),
	'consumer_stats: running, 4 partitions assigned, no lag, 3001 processed over 4 partitions');
is($b->safe_psql('postgres', q{SET ROLE billing; SELECT count(*) FROM outbox.consumer_stats}), '4',
	'a subscriber may read it');

# The consumer SIGKILLed mid-batch ------------------------------------------------------

$b->safe_psql('postgres', q{
CREATE OR REPLACE FUNCTION billing.on_payment(m outbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO billing.applied (key, seq, event_id, topic, part, off, who, path)
    VALUES (m.key, (m.payload->>'seq')::int, m.event_id, m.topic, m.partition, m."offset",
            current_user, current_setting('search_path'));
    PERFORM pg_catalog.pg_sleep(0.002);
END $$;
});
publish('payments', 3001, 2000, 50);
ok($b->poll_query_until('postgres', q{SELECT count(*) > 3300 FROM billing.applied}), 'B is applying');
my $pid = $b->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'outbox consumer'});
ok($pid > 0, 'the consumer runs');
kill 'KILL', $pid;
ok(wait_applied("payments", 5001), 'B applied all after the crash restart');
fault_line('consumer SIGKILLed mid-batch', 'payments', 5001);

# B's postmaster crashed -----------------------------------------------------------------

publish('payments', 5001, 2000, 50);
ok($b->poll_query_until('postgres', q{SELECT count(*) > 5300 FROM billing.applied}), 'B is applying');
$b->stop('immediate');
$b->start;
ok(wait_applied('payments', 7001), 'B applied all after its postmaster crashed');
fault_line('B postmaster crashed', 'payments', 7001);

# The brokers down for a while -------------------------------------------------------------

publish('payments', 7001, 2000, 50);
ok($b->poll_query_until('postgres', q{SELECT count(*) > 7200 FROM billing.applied}), 'B is applying');
is(broker_cmd($broker, 'down all'), 'ok', 'all brokers down');
sleep 3;
my $during = $b->safe_psql('postgres', q{SELECT count(*) FROM billing.applied});
is(broker_cmd($broker, 'up all'), 'ok', 'brokers back');
ok(wait_drained($a), 'A delivered the rest');
ok(wait_applied('payments', 9001), 'B applied all after the brokers came back');
fault_line('brokers down 3 s', 'payments', 9001);
note("applied while the brokers were down: $during");

# Kafka knows the group's progress -----------------------------------------------------------

# committed asynchronously after each batch, read by python3-kafka's admin client
sub group_offsets
{
	my ($group) = @_;
	return `python3 $srcdir/test/kafka_group_offsets.py --bootstrap $broker->{bootstrap} --group $group --topic payments`;
}
my $stored = $b->safe_psql('postgres', q{
SELECT string_agg(topic || ' ' || partition || ' ' || "offset", E'\n' ORDER BY topic, partition)
  FROM outbox.consumer_offsets WHERE group_id = 'billing'});
my $committed = '';
for (1 .. 50)
{
	$committed = group_offsets('billing');
	chomp $committed;
	last if $committed eq $stored;
	usleep(100_000);
}
is($committed, $stored, "the group's offsets in Kafka are the ones stored in the database");

# A second member of the group in another database ------------------------------------------
#
# A rebalance hands partitions over: the member giving them up commits its
# stored offsets to Kafka, the one taking them, with no stored offsets of
# its own, starts from Kafka's.  Each database applies what it was given
# exactly once; between the two, exactly once as long as Kafka took the
# last commit (it had, above).

$b->safe_psql('postgres', q{CREATE DATABASE b2 OWNER billing});
$b->safe_psql('b2', q{
CREATE EXTENSION outbox;
SET ROLE billing;
CREATE SCHEMA billing;
CREATE TABLE billing.applied (n bigserial PRIMARY KEY, key text, seq int, event_id text, topic text);
CREATE FUNCTION billing.on_payment(m outbox.message) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO billing.applied (key, seq, event_id, topic)
    VALUES (m.key, (m.payload->>'seq')::int, m.event_id, m.topic)
$$;
SELECT outbox.subscribe(consumer => 'billing', topics => '{payments}', group_id => 'billing',
                        handler => 'billing.on_payment(outbox.message)');
});
ok($b->poll_query_until('b2', q{SELECT sum(assigned_partitions) = 2 FROM (SELECT DISTINCT consumer, assigned_partitions FROM outbox.consumer_stats) s}),
	'the member in database b2 was given half the partitions');
ok($b->poll_query_until('postgres', q{SELECT sum(assigned_partitions) = 2 FROM (SELECT DISTINCT consumer, assigned_partitions FROM outbox.consumer_stats WHERE consumer = 'billing') s}),
	'and the first member kept the other half');
publish('payments', 9001, 2000, 50);
ok(wait_drained($a), 'A delivered 2000 more');
sub ids_of
{
	my ($db) = @_;
	return split /\n/, $b->safe_psql($db, q{SELECT event_id FROM billing.applied WHERE topic = 'payments'});
}
{
	my $deadline = time + 120;
	my $n;
	do { my %u = map { $_ => 1 } (ids_of('postgres'), ids_of('b2')); $n = keys %u; sleep 1 if $n < 11001; }
	  while ($n < 11001 && time < $deadline);
	is($n, 11001, 'the two databases applied every event between them');
}
{
	my @pg = ids_of('postgres');
	my @b2 = ids_of('b2');
	my %in_pg = map { $_ => 1 } @pg;
	my %in_b2 = map { $_ => 1 } @b2;
	my $both = grep { $in_pg{$_} } keys %in_b2;
	my %u = (%in_pg, %in_b2);
	my $dups = (@pg - keys %in_pg) + (@b2 - keys %in_b2) + $both;
	push @fault_table, sprintf("%-34s %9d %8d %11d %5d", 'rebalance: a member in database b2', 11001, scalar(keys %u), $dups, 11001 - keys %u);
	is(@pg - keys %in_pg, 0, 'rebalance: no event applied twice in the first database');
	is(@b2 - keys %in_b2, 0, 'rebalance: nor in b2');
	is($both, 0, 'rebalance: nor in both');
	is(11001 - keys %u, 0, 'rebalance: none lost');
	cmp_ok(scalar(@b2), '>', 0, 'the member in b2 applied some');
	is($b->safe_psql('b2', q{SELECT count(*) FILTER (WHERE seq <= prev) FROM (
	    SELECT seq, lag(seq) OVER (PARTITION BY key ORDER BY n) AS prev FROM billing.applied) x}),
		'0', 'b2 applied every key in publish order');
}
$b->safe_psql('b2', q{SET ROLE billing; SELECT outbox.unsubscribe('billing')});
ok($b->poll_query_until('b2', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'outbox consumer' AND datname = 'b2'}),
	'the consumer of b2 exits with its last subscription');

# A poison message --------------------------------------------------------------------------

$b->safe_psql('postgres', q{
SET ROLE billing;
CREATE TABLE billing.fixed (ok boolean);
CREATE TABLE billing.orders (n bigserial, key text, seq int, event_id text);
CREATE FUNCTION billing.on_order(m outbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF (m.payload->>'poison')::boolean AND NOT EXISTS (SELECT FROM billing.fixed) THEN
        RAISE EXCEPTION 'cannot apply order %', m.payload->>'seq';
    END IF;
    INSERT INTO billing.orders (key, seq, event_id) VALUES (m.key, (m.payload->>'seq')::int, m.event_id);
END $$;
SELECT outbox.subscribe(consumer => 'ledger', topics => '{orders}',
                        handler => 'billing.on_order(outbox.message)',
                        max_attempts => 3, backoff_min => '100 ms', backoff_max => '200 ms');
});
$a->safe_psql('postgres', q{
SELECT outbox.publish('orders', jsonb_build_object('seq', s, 'poison', s = 50), key => 'k' || (s % 5))
  FROM generate_series(1, 100) s});
ok(wait_drained($a), 'A delivered 100 orders');
ok($b->poll_query_until('postgres', q{SELECT count(*) = 99 FROM billing.orders}),
	'every order but the poison one applied');
is($b->safe_psql('postgres', q{SELECT sum(dead_lettered) || ' ' || max(last_error) FROM outbox.consumer_stats WHERE consumer = 'ledger'}),
	'1 cannot apply order 50', 'consumer_stats shows the dead letter and the error');
is($b->safe_psql('postgres', q{
SELECT attempts || ' ' || error || ' ' || (event_id IS NOT NULL) || ' ' || (convert_from(value, 'UTF8')::jsonb->>'poison')
  FROM outbox.consumer_dead_letters WHERE consumer = 'ledger'}),
	'3 cannot apply order 50 true true', 'the poison message is a consumer dead letter after 3 attempts, whole, with its error');
is($b->safe_psql('postgres', q{
SELECT sum(failed) || ' ' || sum(dead_lettered) || ' ' || sum(processed) FROM outbox.consumer_offsets WHERE group_id = 'ledger'}),
	'3 1 99', 'consumer_offsets counts 3 failed attempts, 1 dead letter, 99 processed');
is($b->safe_psql('postgres', q{SELECT count(*) FROM billing.orders WHERE key = 'k0' AND seq > 50}),
	'10', 'the later orders of its key went on');
$b->safe_psql('postgres', q{CREATE ROLE stranger LOGIN; GRANT outbox_subscriber TO stranger});
my ($ret, $out, $err) = $b->psql('postgres', q{SET ROLE stranger; SELECT outbox.replay_consumer_dead_letters('ledger')});
like($err, qr/subscription "ledger" belongs to role "billing"/, 'another role may not replay them');
is($b->safe_psql('postgres', q{SET ROLE billing; SELECT outbox.replay_consumer_dead_letters('ledger')}),
	'0', 'a replay before the fix applies nothing');
is($b->safe_psql('postgres', q{SELECT attempts FROM outbox.consumer_dead_letters WHERE consumer = 'ledger'}),
	'4', 'and counts one attempt more');
is($b->safe_psql('postgres', q{SET ROLE billing; INSERT INTO billing.fixed VALUES (true);
SELECT outbox.replay_consumer_dead_letters('ledger')}), '1', 'after the fix the replay applies it');
is($b->safe_psql('postgres', q{SELECT count(*) || ' ' || count(DISTINCT event_id) FROM billing.orders}),
	'100 100', 'once');
{
	my ($count, $distinct) = split / /, $b->safe_psql('postgres', q{SELECT count(*) || ' ' || count(DISTINCT event_id) FROM billing.orders});
	push @fault_table, sprintf("%-34s %9d %8d %11d %5d", 'poison message, replayed', 100, $distinct, $count - $distinct, 100 - $distinct);
}
is($b->safe_psql('postgres', q{SELECT count(*) FROM outbox.consumer_dead_letters}), '0', 'no dead letter left');
is($b->safe_psql('postgres', q{SET ROLE billing; SELECT outbox.replay_consumer_dead_letters('ledger')}),
	'0', 'replaying again applies nothing');

# Registered event types are checked on the way in ----------------------------------------

$b->safe_psql('postgres', q{
SELECT outbox.register_event_type('order.checked',
    schema => '{"type": "object", "required": ["seq", "amount"],
                "properties": {"amount": {"type": "number", "minimum": 0}}}');
});
$a->safe_psql('postgres', q{
SELECT outbox.publish('orders', jsonb_build_object('seq', 200 + s, 'amount', CASE WHEN s = 2 THEN -5 ELSE s END),
                      key => 'k' || (s % 5), event_type => 'order.checked')
  FROM generate_series(1, 3) s;
SELECT outbox.publish('orders', '{"seq": 204}', key => 'k4', event_type => 'order.checked');
});
ok($b->poll_query_until('postgres', q{SELECT count(*) = 2 FROM outbox.consumer_dead_letters WHERE consumer = 'ledger'}),
	'the two orders that break the schema of their registered type are dead letters');
{
	my @letters = split /\n/, $b->safe_psql('postgres', q{
SELECT attempts || ' ' || error_code || ' ' || error FROM outbox.consumer_dead_letters
 WHERE consumer = 'ledger' ORDER BY error});
	is(scalar(@letters), 2, 'two of them');
	like($letters[0], qr/^0 22023 payload does not match the schema of event type "order\.checked": .*"amount" is required/,
		'at once (no attempt), the missing property named');
	like($letters[1], qr/^0 22023 payload does not match the schema of event type "order\.checked": at \/amount: must be at least 0/,
		'the value out of range, with its JSON pointer');
}
ok($b->poll_query_until('postgres', q{SELECT count(*) = 2 FROM billing.orders WHERE seq IN (201, 203)}),
	'the orders that match it are applied');
is($b->safe_psql('postgres', q{SET ROLE billing; SELECT outbox.replay_consumer_dead_letters('ledger')}),
	'0', 'a replay applies none while they still break the schema');
$b->safe_psql('postgres', q{SELECT outbox.drop_event_type('order.checked')});
is($b->safe_psql('postgres', q{SET ROLE billing; SELECT outbox.replay_consumer_dead_letters('ledger')}),
	'2', 'once the type is dropped, the replay applies them');
is($b->safe_psql('postgres', q{SELECT count(*) FROM billing.orders WHERE seq > 200}), '4', 'all four, once');

# A handler that tries to leave something behind ---------------------------------------------

$b->safe_psql('postgres', q{
SET ROLE billing;
CREATE TABLE billing.seen (seq int, path text, timeout text, role name);
CREATE FUNCTION billing.on_hostile(m outbox.message) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO billing.seen VALUES ((m.payload->>'seq')::int, current_setting('search_path'),
                                     current_setting('statement_timeout'), current_user);
    PERFORM pg_catalog.set_config('search_path', 'billing, public', false);
    PERFORM pg_catalog.set_config('statement_timeout', '1', false);
    IF (m.payload->>'seq')::int = 2 THEN
        CREATE TEMP TABLE left_behind (x int);
    END IF;
END $$;
SELECT outbox.subscribe(consumer => 'hostile', topics => '{hostile}',
                        handler => 'billing.on_hostile(outbox.message)', max_attempts => 1);
});
$a->safe_psql('postgres', q{
SELECT outbox.publish('hostile', jsonb_build_object('seq', s), key => 'one') FROM generate_series(1, 3) s});
ok($b->poll_query_until('postgres', q{SELECT count(*) = 2 FROM billing.seen}), 'the hostile handler ran for each message');
is($b->safe_psql('postgres', q{SELECT string_agg(seq || ' ' || path || ' ' || timeout || ' ' || role, ',' ORDER BY seq) FROM billing.seen}),
	'1 pg_catalog, pg_temp 0 billing,3 pg_catalog, pg_temp 0 billing',
	'what a handler sets is undone before the next message');
like($b->safe_psql('postgres', q{SELECT error FROM outbox.consumer_dead_letters WHERE consumer = 'hostile'}),
	qr/cannot create temporary table within security-restricted operation/,
	'a handler cannot create temporary objects (its message is a dead letter)');
$b->safe_psql('postgres', q{SET ROLE billing; SELECT outbox.unsubscribe('hostile')});

# A handler dropped: nothing is consumed (nor dead-lettered) until it is back ----------------------

$b->safe_psql('postgres', q{SET ROLE billing; DROP FUNCTION billing.on_order(outbox.message)});
$a->safe_psql('postgres', q{
SELECT outbox.publish('orders', jsonb_build_object('seq', s), key => 'k' || (s % 5)) FROM generate_series(101, 120) s});
ok(wait_drained($a), 'A delivered 20 orders more');
ok($b->poll_query_until('postgres', q{SELECT true FROM pg_sleep(2)}), 'two seconds later');
is($b->safe_psql('postgres', q{SELECT count(*) FROM billing.orders}), '104', 'nothing applied without the handler');
is($b->safe_psql('postgres', q{SELECT count(*) FROM outbox.consumer_dead_letters WHERE consumer = 'ledger'}), '0', 'nothing dead-lettered either');
ok($b->log_contains(qr/outbox consumer "ledger" in database "postgres" does not consume: handler \(OID \d+\) no longer exists/),
	'the log says why');
like($b->safe_psql('postgres', q{SELECT DISTINCT state || ': ' || last_error FROM outbox.consumer_stats WHERE consumer = 'ledger'}),
	qr/^not consuming: handler \(OID \d+\) no longer exists$/, 'and so does consumer_stats');
$b->safe_psql('postgres', q{
SET ROLE billing;
CREATE FUNCTION billing.on_order2(m outbox.message) RETURNS void LANGUAGE sql AS $$
    INSERT INTO billing.orders (key, seq, event_id) VALUES (m.key, (m.payload->>'seq')::int, m.event_id) $$;
SELECT outbox.subscribe(consumer => 'ledger', topics => '{orders}', handler => 'billing.on_order2(outbox.message)');
});
ok($b->poll_query_until('postgres', q{SELECT count(*) = 124 FROM billing.orders}),
	'subscribed again with a new handler, the rest is applied from the stored offsets');
is($b->safe_psql('postgres', q{SELECT count(DISTINCT event_id) FROM billing.orders}), '124', 'each once');

done_testing();
diag("fault table:\n" . sprintf("%-34s %9s %8s %11s %5s\n", 'scenario', 'published', 'applied', 'dup applied', 'lost') . join("\n", @fault_table));
