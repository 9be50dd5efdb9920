# The inbox end to end: events go through Kafka to a consumer written in
# Python (psycopg2) that reads every message twice and calls
# outbox.receive(consumer, ce_id) in the transaction that applies it; each
# event's effect is applied exactly once.  The relay purges expired inbox
# rows by itself, with no client asking.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

# PostgreSQL 16's PGXS no longer sets TESTDIR; prove runs in the source dir
my $srcdir = $ENV{TESTDIR} // '.';

my $broker = start_broker(1);
my $node = new_node('inbox', $broker->{bootstrap}, conf => "outbox.purge_interval = '200ms'\noutbox.purge_batch_size = 7\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE inbox_test_accounts (account text PRIMARY KEY, balance bigint NOT NULL DEFAULT 0,
                                  applied int NOT NULL DEFAULT 0);
INSERT INTO inbox_test_accounts (account) SELECT 'acct-' || a FROM generate_series(0, 19) a;
});

# 400 payments over 20 accounts, in 40 transactions
for my $tx (0 .. 39)
{
	$node->safe_psql('postgres', qq{
SELECT outbox.publish('payments', jsonb_build_object('amount', $tx * 10 + i), key => 'acct-' || ((($tx * 10) + i) % 20))
  FROM generate_series(0, 9) i;
});
}
ok(wait_drained($node), 'payments relayed');
my $expected = $node->safe_psql('postgres', 'SELECT sum(x) FROM generate_series(0, 399) x');

my $msgs = python_read($broker->{bootstrap}, 'payments', 400);
is(scalar(@$msgs), 400, 'python3-kafka read every payment');

# the consumer sees every message twice (a redelivery of the whole topic)
my $lines = join('', map { JSON::PP->new->canonical->encode($_) . "\n" } (@$msgs, @$msgs));
my ($out, $err) = ('', '');
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
IPC::Run::run([ '/usr/bin/python3', "$srcdir/test/inbox_consumer.py", $dsn, 'billing' ],
	'<', \$lines, '>', \$out, '2>', \$err);
is($err, '', 'consumer ran cleanly');
like($out, qr/messages=800 applied=400 duplicates=400/, 'consumer saw 800 messages, applied 400, skipped 400 duplicates');
is($node->safe_psql('postgres', 'SELECT sum(balance) FROM inbox_test_accounts'), $expected,
	'balances hold each payment exactly once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM inbox_test_accounts WHERE applied <> 20'), '0',
	'every account got exactly its 20 payments');
is($node->safe_psql('postgres', q{SELECT received FROM outbox.inbox_consumers WHERE consumer = 'billing'}),
	'400', 'the inbox holds one row per event');

# a second consumer is independent
($out, $err) = ('', '');
my $once = join('', map { JSON::PP->new->canonical->encode($_) . "\n" } @$msgs);
$node->safe_psql('postgres', 'UPDATE inbox_test_accounts SET balance = 0, applied = 0');
IPC::Run::run([ '/usr/bin/python3', "$srcdir/test/inbox_consumer.py", $dsn, 'audit' ],
	'<', \$once, '>', \$out, '2>', \$err);
like($out, qr/messages=400 applied=400 duplicates=0/, 'another consumer receives every event once more');

# the relay purges expired rows by itself, in batches of outbox.purge_batch_size
$node->safe_psql('postgres', q{
SELECT outbox.receive('short-lived', 'id-' || i, interval '1 millisecond') FROM generate_series(1, 50) i;
});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM outbox.inbox WHERE consumer = 'short-lived'}),
	'expired rows purged by the relay, no client asking');
is($node->safe_psql('postgres', q{SELECT count(*) FROM outbox.inbox WHERE consumer IN ('billing', 'audit')}),
	'800', 'live rows are kept');
is($node->safe_psql('postgres', q{SELECT outbox.receive('short-lived', 'id-1')}), 't',
	'a purged id is received again: the ttl is the dedup window');

$node->stop;
stop_broker($broker);
done_testing();
