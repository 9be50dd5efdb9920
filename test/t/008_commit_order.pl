# Order under concurrency: which order a key's events reach Kafka in when
# transactions publish concurrently.  By default it is id order (the order
# publish() was called), which differs from commit order when a transaction
# that published later commits earlier; outbox.commit_order = on makes the
# two coincide (publish() then waits for an earlier publisher of the same
# key); writing the business row before publishing gives commit order too.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('order', $broker->{bootstrap}, conf => "deadlock_timeout = '200ms'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE account (id int PRIMARY KEY, balance int);
INSERT INTO account VALUES (1, 0);
CREATE TABLE commits (seq serial, tx text, topic text);
});

# the order of the "tx" field of a topic's messages in Kafka (all of them
# when $n is undef)
sub kafka_order
{
	my ($topic, $n) = @_;
	return join(',', map { JSON::PP::decode_json($_->{value})->{tx} } @{ kcat_read($broker->{bootstrap}, $topic, $n) });
}

# Two transactions, B and A, interleaved in two sessions while the relay is
# paused (so it sees both at once): B runs $steps{b_first}; then A runs
# $steps{a}, to its end, or, with $steps{a_blocks}, until it waits for a lock
# (B's row lock or outbox.commit_order's key lock); then B runs
# $steps{b_rest}; then A's end is collected.  Returns the order of the rows
# in table commits and what the two sessions printed.
sub scenario
{
	my ($topic, %steps) = @_;
	$node->safe_psql('postgres', 'SELECT outbox.pause_relay()');
	my $sb = open_session($node, 'postgres');
	my $sa = open_session($node, 'postgres');
	(my $a_pid = session_do($sa, 'SELECT pg_backend_pid();')) =~ s/\s+//g;
	my $eb = session_do($sb, $steps{b_first});
	my $ea;
	if ($steps{a_blocks})
	{
		session_send($sa, $steps{a});
		$node->poll_query_until('postgres',
			"SELECT count(*) > 0 FROM pg_locks WHERE pid = $a_pid AND NOT granted")
		  or die "$topic: timed out waiting for A to wait for a lock";
		$eb .= session_do($sb, $steps{b_rest});
		$ea = session_wait($sa);
	}
	else
	{
		$ea = session_do($sa, $steps{a});
		$eb .= session_do($sb, $steps{b_rest});
	}
	close_session($sa);
	close_session($sb);
	$node->safe_psql('postgres', 'SELECT outbox.resume_relay()');
	ok(wait_drained($node), "$topic: drained");
	my $commit_order = $node->safe_psql('postgres', "SELECT string_agg(tx, ',' ORDER BY seq) FROM commits WHERE topic = '$topic'");
	return ($commit_order, $eb, $ea);
}

# 1. default: B publishes first and commits last; A publishes second and commits first
my ($commits) = scenario('ids',
	b_first => q{BEGIN; SELECT outbox.publish('ids', '{"tx": "B"}', key => 'acct-1');},
	a => q{BEGIN; SELECT outbox.publish('ids', '{"tx": "A"}', key => 'acct-1');
	  INSERT INTO commits (tx, topic) VALUES ('A', 'ids'); COMMIT;},
	b_rest => q{INSERT INTO commits (tx, topic) VALUES ('B', 'ids'); COMMIT;});
is($commits, 'A,B', 'default: A committed first');
is(kafka_order('ids', 2), 'B,A', 'default: Kafka has publish (id) order, not commit order');

# 2. outbox.commit_order = on: A's publish() waits for B, so ids follow commit order
($commits) = scenario('commit.order',
	b_first => q{SET outbox.commit_order = on; BEGIN; SELECT outbox.publish('commit.order', '{"tx": "B"}', key => 'acct-1');},
	a => q{SET outbox.commit_order = on; BEGIN; SELECT outbox.publish('commit.order', '{"tx": "A"}', key => 'acct-1');
	  INSERT INTO commits (tx, topic) VALUES ('A', 'commit.order'); COMMIT;},
	a_blocks => 1,
	b_rest => q{INSERT INTO commits (tx, topic) VALUES ('B', 'commit.order'); COMMIT;});
is($commits, 'B,A', 'commit_order: A waited for B');
is(kafka_order('commit.order', 2), $commits, 'commit_order: Kafka has commit order');

# 3. the two transactions update the same row; writing it before publishing
#    (the usual shape) orders the ids by the row lock, hence by commit
($commits) = scenario('row.first',
	b_first => q{BEGIN; UPDATE account SET balance = balance + 1 WHERE id = 1;},
	a => q{BEGIN; UPDATE account SET balance = balance + 10 WHERE id = 1;
	  SELECT outbox.publish('row.first', '{"tx": "A"}', key => 'acct-1');
	  INSERT INTO commits (tx, topic) VALUES ('A', 'row.first'); COMMIT;},
	a_blocks => 1,
	b_rest => q{SELECT outbox.publish('row.first', '{"tx": "B"}', key => 'acct-1');
	  INSERT INTO commits (tx, topic) VALUES ('B', 'row.first'); COMMIT;});
is($commits, 'B,A', 'row first: B committed first');
is(kafka_order('row.first', 2), 'B,A', 'row first: Kafka has commit order with default settings');

# 4. the issue's case: same row, the one that commits second published first
#    (A publishes, then waits for B's row lock; B publishes and commits first)
my ($e1, $e2);
($commits, $e1, $e2) = scenario('publish.first',
	b_first => q{BEGIN; UPDATE account SET balance = balance + 1 WHERE id = 1;},
	a => q{BEGIN; SELECT outbox.publish('publish.first', '{"tx": "A"}', key => 'acct-1');
	  UPDATE account SET balance = balance + 10 WHERE id = 1;
	  INSERT INTO commits (tx, topic) VALUES ('A', 'publish.first'); COMMIT;},
	a_blocks => 1,
	b_rest => q{SELECT outbox.publish('publish.first', '{"tx": "B"}', key => 'acct-1');
	  INSERT INTO commits (tx, topic) VALUES ('B', 'publish.first'); COMMIT;});
is($commits, 'B,A', 'publish first: B committed first');
is(kafka_order('publish.first', 2), 'A,B', 'publish first, default: Kafka has publish order A,B (commit order was B,A)');

#    with outbox.commit_order = on the same interleaving is a deadlock (A
#    waits for B's row lock, B's publish() for A's key lock), which
#    PostgreSQL breaks by aborting one transaction; what commits is in order
($commits, $e1, $e2) = scenario('publish.first.ordered',
	b_first => q{SET outbox.commit_order = on; BEGIN; UPDATE account SET balance = balance + 1 WHERE id = 1;},
	a => q{SET outbox.commit_order = on; BEGIN; SELECT outbox.publish('publish.first.ordered', '{"tx": "A"}', key => 'acct-1');
	  UPDATE account SET balance = balance + 10 WHERE id = 1;
	  INSERT INTO commits (tx, topic) VALUES ('A', 'publish.first.ordered'); COMMIT;},
	a_blocks => 1,
	b_rest => q{SELECT outbox.publish('publish.first.ordered', '{"tx": "B"}', key => 'acct-1');
	  INSERT INTO commits (tx, topic) VALUES ('B', 'publish.first.ordered'); COMMIT;});
like($e1 . $e2, qr/deadlock detected/, 'commit_order, publish first: one transaction is aborted as a deadlock');
my $survivor = $commits;
like($survivor, qr/^[AB]$/, 'the other transaction committed');
is(kafka_order('publish.first.ordered'), $survivor, 'what committed reached Kafka, nothing else');

$node->stop;
stop_broker($broker);
done_testing();
