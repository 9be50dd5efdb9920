# Crashes: the relay killed with SIGKILL mid-batch, and the postmaster
# stopped with -m immediate mid-batch; after restart everything is delivered,
# duplicates only for what was produced but not yet deleted, with the same
# ce_id.  No phantom events: with synchronous_commit = off, Kafka never holds
# an event whose transaction a crash lost, because the relay flushes WAL up
# to what it read before producing.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('crash', $broker->{bootstrap}, conf => q{
outbox.batch_size = 500
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE published (seq bigserial, event_id uuid, topic text, k text);
});

sub relay_pid
{
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay'})
	  or die 'timed out waiting for the relay to run';
	return $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'outbox relay'});
}

# publish $n events in one transaction (a backlog the relay works through)
sub backlog
{
	my ($topic, $n, $nkeys) = @_;
	$node->safe_psql('postgres', qq{
INSERT INTO published (event_id, topic, k)
SELECT outbox.publish('$topic', jsonb_build_object('n', g), key => 'k' || (g % $nkeys)), '$topic', 'k' || (g % $nkeys)
  FROM generate_series(1, $n) g;
});
}

# slow the broker so batches are in flight when the blow comes
is(broker_cmd($broker, 'rtt 1 50'), 'ok', 'broker latency 50 ms');

# 1. relay killed with SIGKILL mid-batch (the postmaster then resets every backend)
backlog('kill9', 20000, 20);
$node->poll_query_until('postgres', q{SELECT count(*) < 19000 FROM outbox.events})
  or die 'relay made no progress';
my $pid = relay_pid();
kill 'KILL', $pid;
note("killed relay $pid with SIGKILL");
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND pid <> $pid}),
	'a new relay runs after the kill');
ok(wait_drained($node), 'backlog drained after the kill');
my $dups = check_delivery($node, $broker, 'relay SIGKILL mid-batch', 'kill9');
cmp_ok($dups, '<=', 1000, 'duplicates at most the two batches in flight (produced but not yet deleted)');

# 2. postmaster stopped with -m immediate mid-batch
backlog('immediate', 20000, 20);
$node->poll_query_until('postgres', q{SELECT count(*) < 19000 FROM outbox.events})
  or die 'relay made no progress';
$node->stop('immediate');
$node->start;
ok(wait_drained($node), 'backlog drained after an immediate shutdown and restart');
$dups = check_delivery($node, $broker, 'postmaster immediate stop mid-batch', 'immediate');
cmp_ok($dups, '<=', 1000, 'duplicates at most the two batches in flight');

# 3. no phantom events with synchronous_commit = off: when Kafka holds an
# event, its commit record must already be flushed, or a crash of the machine
# could lose the transaction while Kafka keeps the event.  The WAL writer is
# made slow and every session of the database commits asynchronously (the
# relay's own commits included, which would otherwise flush the WAL), so only
# the relay's flush before producing (to the commit records of what it read)
# can make the commit durable in time.
is(broker_cmd($broker, 'rtt 1 0'), 'ok', 'broker latency back to 0');
$node->append_conf('postgresql.conf', "wal_writer_delay = '10s'\nwal_writer_flush_after = '1GB'\n");
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET synchronous_commit = off');
$node->restart;
relay_pid();
$node->safe_psql('postgres', 'CREATE EXTENSION pg_walinspect');
my $wal_start = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my $xid = $node->safe_psql('postgres', q{
SET synchronous_commit = off;
BEGIN;
INSERT INTO published (event_id, topic, k) SELECT outbox.publish('async', jsonb_build_object('i', g), key => 'a'), 'async', 'a'
  FROM generate_series(1, 5) g;
SELECT txid_current();
COMMIT;
});
my $seen = [];
for (1 .. 200)
{
	$seen = kcat_read($broker->{bootstrap}, 'async', 5);
	last if @$seen >= 5;
	select(undef, undef, undef, 0.05);
}
is(scalar(@$seen), 5, 'the asynchronously committed events reached Kafka');
# the end of that transaction's commit record, if it lies in the WAL flushed
# by then (pg_walinspect reads only flushed WAL)
my $flushed = $node->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
my $durable = 'f';
$durable = $node->safe_psql('postgres', qq{
SELECT coalesce(bool_or(end_lsn <= '$flushed'::pg_lsn), false)
  FROM pg_get_wal_records_info('$wal_start', '$flushed')
 WHERE xid = '$xid'::xid AND record_type = 'COMMIT'})
  if $node->safe_psql('postgres', qq{SELECT '$flushed'::pg_lsn > '$wal_start'::pg_lsn}) eq 't';
is($durable, 't', 'by then their commit was flushed: a crash could not lose them');
$node->stop('immediate');
$node->start;
my $in_kafka = kcat_read($broker->{bootstrap}, 'async');
my %survived = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', q{SELECT event_id FROM published WHERE topic = 'async'});
my $phantoms = grep { !$survived{ $_->{headers}{ce_id} } } @$in_kafka;
is($phantoms, 0, 'after a crash every event in Kafka belongs to a transaction that survived');
ok(wait_drained($node), 'the surviving events drain');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET synchronous_commit');
diag(sprintf('SCENARIO synchronous_commit=off crash published=5 survived=%d in_kafka=%d phantoms=%d flushed_before_kafka=%s',
	scalar(keys %survived), scalar(@$in_kafka), $phantoms, $durable));

$node->stop;
stop_broker($broker);
done_testing();
