# Dead letters on Kafka (outbox.dead_letter_topic_suffix): an event that
# fails for good lands in outbox.dead_letters and in <topic>.dlq with its
# key, value and headers and the x-outbox-* headers, read back by
# python3-kafka; a dead-letter topic the broker refuses, or that does not
# exist, keeps the row and is retried with backoff until it goes, once; a
# replayed dead letter that fails again is not forwarded a second time;
# dead letters made while the suffix is empty are never forwarded; a
# database at 1.1 works under this library and updates holding data.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OutboxTest;

my $broker = start_broker(1);
# short backoffs; a message for a topic without metadata gives up after 3 s
my $node = new_node('dead_letter_topics', $broker->{bootstrap}, conf => q{
outbox.dead_letter_topic_suffix = '.dlq'
outbox.retry_backoff_min = 200
outbox.retry_backoff_max = 1000
outbox.kafka_properties = 'topic.metadata.propagation.max.ms=1000;message.timeout.ms=3000'
outbox.poll_interval = '1s'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');

# the next produce request is refused as too large: the event published
# then becomes a dead letter at its first attempt
sub poison
{
	my ($topic, $key, $payload, $headers, $db) = @_;
	$db //= 'postgres';
	$node->safe_psql($db, 'SELECT outbox.pause_relay()');
	is(broker_cmd($broker, 'error 0 10 1'), 'ok', "next produce request answered MESSAGE_TOO_LARGE ($topic)");
	my $id = $node->safe_psql($db, qq{
SELECT outbox.publish('$topic', '$payload', key => '$key', headers => '$headers', event_type => 'orders.failed.v1')});
	$node->safe_psql($db, 'SELECT outbox.resume_relay()');
	ok($node->poll_query_until($db, qq{SELECT count(*) = 1 FROM outbox.dead_letters WHERE event_id = '$id'}),
		"$topic: the event became a dead letter");
	return $id;
}

my $id = poison('orders', 'k1', '{"total": 42}', '{"tenant": "acme"}');
ok($node->poll_query_until('postgres', qq{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '$id'}),
	'forwarded_at set once Kafka took it');
is($node->safe_psql('postgres', qq{
SELECT forward_topic || ' ' || forward_attempts || ' ' || (forward_error IS NULL)
  FROM outbox.dead_letters WHERE event_id = '$id'}), 'orders.dlq 0 true', 'to orders.dlq, at the first attempt');

my $dl = $node->safe_psql('postgres', qq{
SELECT attempts || '|' || error_code || '|' || error || '|' ||
       to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM outbox.dead_letters WHERE event_id = '$id'});
my ($attempts, $code, $error, $failed_at) = split /\|/, $dl;
my $msgs = python_read($broker->{bootstrap}, 'orders.dlq', 1);
is(scalar(@$msgs), 1, 'orders.dlq holds one record (python3-kafka)');
my $m = $msgs->[0];
is($m->{key}, 'k1', 'the original key');
is($m->{value}, '{"total": 42}', 'the original value');
is($m->{headers}{ce_id}, $id, 'ce_id: the event id');
is($m->{headers}{ce_type}, 'orders.failed.v1', 'ce_type as published');
is($m->{headers}{tenant}, 'acme', "the caller's header");
is($m->{headers}{'x-outbox-error-code'}, 'MSG_SIZE_TOO_LARGE', 'x-outbox-error-code');
is($m->{headers}{'x-outbox-error'}, $error, 'x-outbox-error: the error text');
is($m->{headers}{'x-outbox-attempts'}, $attempts, 'x-outbox-attempts');
is($m->{headers}{'x-outbox-failed-at'}, $failed_at, 'x-outbox-failed-at: failed_at in RFC 3339');
is($m->{headers}{'x-outbox-original-topic'}, 'orders', 'x-outbox-original-topic');
is($code, 'MSG_SIZE_TOO_LARGE', 'the row has the same error');

# a dead-letter topic the broker refuses: the row stays and is retried.
# librdkafka 2.8.0 (Debian 13) crashes on a Metadata answer that refuses a
# topic (TOPIC_AUTHORIZATION_FAILED), in its own thread, whoever produces
# (kcat too; librdkafka issue 4907): there the refusal is an outage instead,
# all brokers down while the forward waits, which is retried the same way.
my ($kcat_version) = (`kcat -V 2>&1` =~ /librdkafka ([0-9]+\.[0-9.]+)/);
my @v = split /\./, ($kcat_version // '0');
my $refusal_crashes = ($v[0] // 0) > 2 || (($v[0] // 0) == 2 && ($v[1] // 0) >= 6);
note('librdkafka ' . ($kcat_version // '?') . ': ' . ($refusal_crashes ? 'refusal shown as an outage' : 'refusal by the broker'));
my $pid;
if ($refusal_crashes)
{
	# the dead letter is made by hand, found within outbox.poll_interval
	is(broker_cmd($broker, 'down all'), 'ok', 'the brokers go down');
	$pid = $node->safe_psql('postgres', q{
INSERT INTO outbox.dead_letters (event_id, topic, key, payload, content_type, created_at, attempts,
                                 error_code, error, forward_topic)
VALUES (gen_random_uuid(), 'payments', 'p1', '\x7b22616d6f756e74223a20357d', 'application/json', now(), 1,
        'MSG_SIZE_TOO_LARGE', 'Broker: Message size too large', 'payments.dlq')
RETURNING event_id});
}
else
{
	is(broker_cmd($broker, 'topic_error payments.dlq 29'), 'ok', 'payments.dlq refused (TOPIC_AUTHORIZATION_FAILED)');
	$pid = poison('payments', 'p1', '{"amount": 5}', '{}');
}
ok($node->poll_query_until('postgres', qq{
SELECT forward_attempts >= 2 AND forwarded_at IS NULL AND forward_error IS NOT NULL
  FROM outbox.dead_letters WHERE event_id = '$pid'}), 'refused: the forward is retried, the row kept');
# librdkafka 2.0.2 keeps the message until it times out
note('forward_error: ' . $node->safe_psql('postgres', qq{SELECT forward_error FROM outbox.dead_letters WHERE event_id = '$pid'}));
is($node->safe_psql('postgres', qq{SELECT next_forward_at > failed_at FROM outbox.dead_letters WHERE event_id = '$pid'}),
	't', 'the next attempt is scheduled');
if ($refusal_crashes)
{
	is(broker_cmd($broker, 'up all'), 'ok', 'the brokers are back');
}
else
{
	is(broker_cmd($broker, 'topic_error payments.dlq 0'), 'ok', 'payments.dlq allowed again');
}
ok($node->poll_query_until('postgres', qq{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '$pid'}),
	'forwarded once the topic is allowed');
$msgs = kcat_read($broker->{bootstrap}, 'payments.dlq');
is(scalar(@$msgs), 1, 'payments.dlq holds it once');
is($msgs->[0]{headers}{ce_id}, $pid, 'the dead letter');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.dead_letters'), '2', 'both rows still there');

# a dead-letter topic that does not exist (the broker says so): the same
is(broker_cmd($broker, 'topic_error stock.dlq 3'), 'ok', 'stock.dlq unknown (UNKNOWN_TOPIC_OR_PART)');
my $sid = poison('stock', 's1', '{"sku": 7}', '{}');
ok($node->poll_query_until('postgres', qq{
SELECT forward_attempts >= 1 AND forwarded_at IS NULL FROM outbox.dead_letters WHERE event_id = '$sid'}),
	'missing: the forward failed and the row is kept');
note('forward_error: ' . $node->safe_psql('postgres', qq{SELECT forward_error FROM outbox.dead_letters WHERE event_id = '$sid'}));
is(broker_cmd($broker, 'topic_error stock.dlq 0'), 'ok', 'stock.dlq created');
ok($node->poll_query_until('postgres', qq{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '$sid'}),
	'forwarded once the topic exists');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'stock.dlq') }), 1, 'stock.dlq holds it once');

# a paused relay forwards nothing; a row it did not make itself is found
# within outbox.poll_interval
$node->safe_psql('postgres', q{
SELECT outbox.pause_relay();
INSERT INTO outbox.dead_letters (event_id, topic, key, payload, content_type, created_at, attempts,
                                 error_code, error, forward_topic)
VALUES ('01890a5d-ac96-774b-bcce-00000000dead', 'manual', 'm1', '\x7b7d', 'application/json', now(), 1,
        'MSG_SIZE_TOO_LARGE', 'Broker: Message size too large', 'manual.dlq');
});
usleep(3_000_000);
is($node->safe_psql('postgres', q{SELECT forwarded_at IS NULL FROM outbox.dead_letters WHERE event_id = '01890a5d-ac96-774b-bcce-00000000dead'}),
	't', 'paused: not forwarded');
$node->safe_psql('postgres', 'SELECT outbox.resume_relay()');
ok($node->poll_query_until('postgres', q{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '01890a5d-ac96-774b-bcce-00000000dead'}),
	'resumed: forwarded');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'manual.dlq') }), 1, 'manual.dlq holds it once');

# a replayed dead letter that fails again is a dead letter again, but is
# not forwarded a second time
$node->safe_psql('postgres', 'SELECT outbox.pause_relay()');
is(broker_cmd($broker, 'error 0 10 1'), 'ok', 'the replay will be refused too');
is($node->safe_psql('postgres', qq{SELECT outbox.replay_dead_letters(ARRAY['$pid']::uuid[])}), '1', 'replayed');
is($node->safe_psql('postgres', qq{SELECT forwarded_at IS NOT NULL FROM outbox.events WHERE event_id = '$pid'}),
	't', 'the requeued event remembers its forward');
$node->safe_psql('postgres', 'SELECT outbox.resume_relay()');
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM outbox.dead_letters WHERE event_id = '$pid'}),
	'a dead letter again');
is($node->safe_psql('postgres', qq{
SELECT forward_topic IS NOT NULL AND forwarded_at IS NOT NULL AND forward_attempts = 0
  FROM outbox.dead_letters WHERE event_id = '$pid'}), 't', 'recorded as forwarded already');
# a marker after it: once it is in payments.dlq, the replay would be too
my $mark = poison('payments', 'p2', '{"amount": 6}', '{}');
ok($node->poll_query_until('postgres', qq{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '$mark'}),
	'a later dead letter forwarded');
$msgs = kcat_read($broker->{bootstrap}, 'payments.dlq');
is(join(',', map { $_->{headers}{ce_id} } @$msgs), "$pid,$mark", 'the replayed one is not in payments.dlq twice');

# a replay that succeeds goes to the original topic only
is($node->safe_psql('postgres', qq{SELECT outbox.replay_dead_letters(ARRAY['$pid']::uuid[])}), '1', 'replayed again');
ok(wait_drained($node), 'delivered');
is(join(',', map { $_->{headers}{ce_id} } @{ kcat_read($broker->{bootstrap}, 'payments') }), $pid,
	'in payments');

# with the suffix empty, dead letters are not forwarded, not even later
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_topic_suffix = ''; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{SELECT current_setting('outbox.dead_letter_topic_suffix') = ''}), 'suffix emptied');
# the relay reloads at its next pass: give it one
$node->safe_psql('postgres', q{SELECT outbox.publish('warmup', '{}')});
ok(wait_drained($node), 'a pass after the reload');
my $oid = poison('quiet', 'q1', '{}', '{}');
is($node->safe_psql('postgres', qq{SELECT forward_topic IS NULL FROM outbox.dead_letters WHERE event_id = '$oid'}),
	't', 'no dead-letter topic recorded');
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_topic_suffix = '-dead'; SELECT pg_reload_conf();});
my $nid = poison('loud', 'l1', '{}', '{}');
ok($node->poll_query_until('postgres', qq{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '$nid'}),
	'a new suffix: the next dead letter goes to loud-dead');
is(scalar(@{ kcat_read($broker->{bootstrap}, "loud-dead") }), 1, 'loud-dead holds it');
is($node->safe_psql('postgres', qq{SELECT forward_topic IS NULL AND forwarded_at IS NULL FROM outbox.dead_letters WHERE event_id = '$oid'}),
	't', 'the one made while it was empty stays unforwarded');

# the suffix must make a legal topic name
my ($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_topic_suffix = '.d l q'});
like($err, qr/invalid value for parameter "outbox.dead_letter_topic_suffix"/, 'a space is refused');
like($err, qr/Kafka topic names hold only ASCII letters, digits/, 'saying what is allowed');
($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET outbox.dead_letter_topic_suffix = '} . ('x' x 65) . q{'});
like($err, qr/at most 64 characters/, 'too long is refused');

# a database still at 1.1 under this library: delivered and dead-lettered
# as before (no forwarding: its tables lack the columns); then updated,
# holding a pending event, an inbox row and that dead letter
$node->safe_psql('postgres', 'CREATE DATABASE from_1_1');
$node->safe_psql('from_1_1', q{CREATE EXTENSION outbox VERSION '1.1'; SELECT outbox.receive('billing', 'kept-1');});
$node->safe_psql('from_1_1', q{SELECT outbox.publish('old.topic', '{"n": 1}', key => 'o')});
ok(wait_drained($node, 'from_1_1'), '1.1: delivered');
my $old = poison('old.topic', 'o', '{"n": 2}', '{}', 'from_1_1');
$node->safe_psql('from_1_1', q{SELECT outbox.pause_relay(); SELECT outbox.publish('old.topic', '{"n": 3}', key => 'o');});
$node->safe_psql('from_1_1', 'ALTER EXTENSION outbox UPDATE');
is($node->safe_psql('from_1_1', q{SELECT extversion FROM pg_extension WHERE extname = 'outbox'}), '1.2', 'updated to 1.2');
is($node->safe_psql('from_1_1', qq{
SELECT forward_topic IS NULL AND forwarded_at IS NULL AND forward_attempts = 0 AND error_code = 'MSG_SIZE_TOO_LARGE'
  FROM outbox.dead_letters WHERE event_id = '$old'}), 't', 'the dead letter kept, not to be forwarded');
is($node->safe_psql('from_1_1', q{SELECT count(*) || ' ' || bool_and(forwarded_at IS NULL) FROM outbox.events}),
	'1 true', 'the pending event kept');
is($node->safe_psql('from_1_1', q{SELECT outbox.receive('billing', 'kept-1')}), 'f', 'inbox rows kept');
is($node->safe_psql('from_1_1', q{
SELECT count(*) FROM outbox.subscriptions, outbox.consumer_offsets, outbox.consumer_dead_letters, outbox.consumer_stats}),
	'0', 'the consumer\'s tables and view are there, empty');
is($node->safe_psql('from_1_1', qq{SELECT holds_key FROM outbox.dead_letters WHERE event_id = '$old'}), 'f',
	'it holds no key');
is($node->safe_psql('from_1_1', q{
SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'outbox'
   AND indexname IN ('events_waiting_idx', 'events_due_idx', 'events_retry_idx', 'dead_letters_held_idx')}),
	'dead_letters_held_idx,events_due_idx,events_waiting_idx', 'the indexes of waiting events replace the one of retries');
is($node->safe_psql('from_1_1', q{SELECT scheduled || ' ' || held FROM outbox.stats WHERE datname = 'from_1_1'}),
	'0 0', 'outbox.stats has the new columns');
$node->safe_psql('from_1_1', 'SELECT outbox.resume_relay()');
ok(wait_drained($node, 'from_1_1'), 'delivered after the update');
$node->safe_psql('from_1_1', q{SELECT outbox.publish('old.topic', '{"n": 5}', key => 'o', deliver_at => now() + interval '1 second')});
ok(wait_drained($node, 'from_1_1'), 'publish() takes deliver_at after the update');
is(join(',', map { $_->{value} } @{ kcat_read($broker->{bootstrap}, 'old.topic') }), '{"n": 1},{"n": 3},{"n": 5}',
	'the events before and after, the dead letter not');
my $new = poison('old.topic', 'o', '{"n": 4}', '{}', 'from_1_1');
ok($node->poll_query_until('from_1_1', qq{SELECT forwarded_at IS NOT NULL FROM outbox.dead_letters WHERE event_id = '$new'}),
	'a dead letter after the update is forwarded');
is(join(',', map { $_->{headers}{ce_id} } @{ kcat_read($broker->{bootstrap}, 'old.topic-dead') }), $new,
	'to old.topic-dead, alone');
is($node->safe_psql('from_1_1', qq{SELECT outbox.replay_dead_letters(ARRAY['$old']::uuid[])}), '1',
	'the dead letter from 1.1 replays');
ok(wait_drained($node, 'from_1_1'), 'and is delivered');

$node->stop;
stop_broker($broker);
done_testing();
