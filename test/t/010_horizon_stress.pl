# Stress the read horizon (src/horizon.c, and the cursor in src/pipeline.c):
# many short publishing transactions, WAL pressure, the brokers going down
# and up.  Only the cursor logic delivers here: outbox.poll_interval and
# outbox.full_scan_interval are 1h, so an event the cursor moved past before
# its transaction committed stays in outbox.events (until a full scan, which
# then delivers it after later events of its key).  Every committed event must
# reach Kafka within a bounded time after the load, without a full scan, and
# each key's events in order.
#
# What this catches: a mark (horizon.c) is only as good as the last id the
# relay believes the sequence handed out.  A plain SELECT of the sequence's
# last_value reads the tuple after releasing the buffer lock, and nextval()
# rewrites that tuple in place, for the length of its XLogInsert(), with the
# value it pre-logs, 32 ahead (see pipeline_last_id() in pipeline.c).
# Taken as a mark, such a value makes final ids that transactions not yet
# publishing will take, and the cursor moves past them while they are
# uncommitted.  The race
# needs a nextval() that logs to take the lock in the few instructions between
# the scan's release of the lock and its reading of the columns, and its WAL
# insertion to be slow; to see it in seconds rather than hours:
#  - WAL pressure: the smallest wal_buffers, fsync on, commit_delay (the
#    flusher sleeps holding WALWriteLock, so an insertion that needs a WAL
#    buffer waits), frequent checkpoints, and sessions writing WAL in bulk;
#  - jit_above_cost = 0 for the relay (the load turns JIT off for itself):
#    the expression reading the tuple is compiled at its first evaluation,
#    after the scan released the lock, which widens that window from
#    microseconds to milliseconds;
#  - publishers that take an id and stay in their transaction a few
#    milliseconds longer (three events with pauses between), among others
#    that publish one event and commit.
# With the relay reading SELECT last_value (the code before 1.2) this failed
# every run here (2 CPUs: 15 of 15 on that code, and 8 of 8 on 1.2's first
# code with only that read put back); the ids left behind were a few of the
# 32 above the id the relay read, of transactions whose later events were
# delivered on time.  With pg_sequence_last_value() it passed 13 of 13.
use strict;
use warnings FATAL => 'all';

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use OutboxTest;

my $load_seconds = 30;
my $clients = 16;
my $nkeys = 1000;

# three brokers, one partition each: the mock broker leaves Nagle's algorithm
# on, so two produce requests in flight on one connection cost a delayed ACK
# (see test/bench/tcp_nodelay.c); with one partition per broker the relay's
# round trips stay short and it reads often
my $broker = start_broker(3);
is(broker_cmd($broker, 'topic stress 3'), 'ok', 'topic created');
my $node = new_node('stress', $broker->{bootstrap}, conf => q{
max_connections = 60
# WAL pressure
wal_buffers = 32kB
fsync = on
commit_delay = 5000
commit_siblings = 1
max_wal_size = 32MB
min_wal_size = 32MB
checkpoint_timeout = 30s
# JIT for everything but the load, which turns it off; only the relay's
# queries matter
jit = on
jit_above_cost = 0
jit_tuple_deforming = off
# only the cursor delivers: no poll, no full scan during the test
outbox.poll_interval = '1h'
outbox.full_scan_interval = '1h'
outbox.purge_interval = '1h'
outbox.commit_order = on
outbox.batch_size = 100
# truncations (src/reclaim.c) whenever the relay catches up and can take
# the lock, carrying over what committed since its last read
outbox.truncate_threshold = '64kB'
outbox.kafka_properties = 'reconnect.backoff.ms=50;reconnect.backoff.max.ms=200'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE TABLE published (seq bigserial, event_id uuid, topic text, k text);
CREATE TABLE ballast (id bigint, pad text);
});
my $loadconn = $node->connstr('postgres') . " options='-c jit=off'";

# The load, recording in published every event that committed.  With
# commit_order = on a transaction holds each key it published until it ends,
# so a key's events are published and committed one transaction at a time,
# and published.seq, taken after publish() returned, follows their ids (keys
# taken in ascending order cannot deadlock).
my $dir = $PostgreSQL::Test::Utils::tmp_check;
my $record = q{INSERT INTO published (event_id, topic, k) VALUES (':e', 'stress', 'k' || :key);};
# one event
append_to_file("$dir/stress_one.sql", qq{
\\set key random(0, @{[ $nkeys - 1 ]})
BEGIN;
SELECT outbox.publish('stress', '{"n": 1}', key => 'k' || :key) AS e \\gset
$record
COMMIT;
});
# three events with pauses between: the first id stays uncommitted a while
append_to_file("$dir/stress_three.sql", qq{
\\set k random(0, @{[ $nkeys - 3 ]})
BEGIN;
\\set key :k
SELECT outbox.publish('stress', '{"n": 1}', key => 'k' || :key) AS e \\gset
$record
\\sleep 5 ms
\\set key :k + 1
SELECT outbox.publish('stress', '{"n": 2}', key => 'k' || :key) AS e \\gset
$record
\\sleep 5 ms
\\set key :k + 2
SELECT outbox.publish('stress', '{"n": 3}', key => 'k' || :key) AS e \\gset
$record
COMMIT;
});
# WAL volume: rows that do not compress
append_to_file("$dir/stress_wal.sql", q{
INSERT INTO ballast SELECT g, repeat(md5(random()::text), 50) FROM generate_series(1, 10) g;
});

my $filenode = $node->safe_psql('postgres', q{SELECT pg_relation_filenode('outbox.events')});
my ($pgb_out, $pgb_err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $load_seconds,
	  '-f', "$dir/stress_one.sql\@1", '-f', "$dir/stress_three.sql\@2",
	  '-f', "$dir/stress_wal.sql\@4", $loadconn ],
	'>', \$pgb_out, '2>', \$pgb_err);

# meanwhile every broker goes down for 2 s, half-way through
usleep(1_000_000 * $load_seconds / 2);
is(broker_cmd($broker, 'down all'), 'ok', 'brokers down');
usleep(2_000_000);
is(broker_cmd($broker, 'up all'), 'ok', 'brokers up');
ok($pgbench->finish, 'pgbench ran without errors') or diag($pgb_err);
note('outbox.events was ' . ($node->safe_psql('postgres', q{SELECT pg_relation_filenode('outbox.events')}) eq $filenode
	? 'not ' : '') . 'truncated during the load');
my ($tps) = $pgb_out =~ /^(tps = [\d.]+)/m;
my $published = $node->safe_psql('postgres', 'SELECT count(*) FROM published');
note("published $published events in $load_seconds s, " . ($tps // 'tps unknown'));
cmp_ok($published, '>', 1000, 'the load published');

# Every committed event leaves outbox.events soon: each commit wakes the
# relay, and nothing but the cursor finds an event (no poll, no full scan).
my $deadline = time + 40;
my $left;
while (1)
{
	$left = $node->safe_psql('postgres', 'SELECT count(*) FROM outbox.events');
	last if $left == 0 || time > $deadline;
	usleep(200_000);
}
is($left, 0, 'every committed event left outbox.events within 40 s of the load, without a full scan');
if ($left != 0)
{
	diag('left behind: ' . $node->safe_psql('postgres', q{
SELECT string_agg(format('id %s key %s attempts %s age %s', id, key, attempts,
                         date_trunc('second', now() - created_at)), '; ' ORDER BY id)
  FROM outbox.events}));
	# a full scan finds them; the order check below shows what that cost
	$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.full_scan_interval = '1s'; SELECT pg_reload_conf();});
	ok(wait_drained($node), 'a full scan delivers what was left behind');
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.dead_letters'), '0', 'no dead letters');

check_delivery($node, $broker, 'horizon stress', 'stress');

$node->stop;
stop_broker($broker);
done_testing();
