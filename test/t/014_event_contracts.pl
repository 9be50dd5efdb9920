# Event contracts end to end (issue 13): the seeds' migration story.  V2 of
# an order event is registered with its schema and topic; V1 is registered
# as derived from V2 with a mapping function and a deprecation date.  Each
# publish() of V2 puts both on Kafka, read back by python3-kafka (not built
# on librdkafka): right payloads, own ids, the same key, ce_type, the
# ce_dataschema of each contract and ce_derivedfrom naming the V2 event.
# After V1's deprecation date only V2 goes out.  Then an upgrade from 1.1
# holding events, inbox rows and dead letters.
use strict;
use warnings FATAL => 'all';

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $node = new_node('contracts', $broker->{bootstrap});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE SCHEMA shop;
CREATE FUNCTION shop.v2_to_v1(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT jsonb_build_object('id', p->'order_id', 'amount', p->'total') $$;
SELECT outbox.register_event_type('order.placed.v2',
    '{"type": "object", "required": ["order_id", "total"],
      "properties": {"order_id": {"type": "integer"}, "total": {"type": "number", "minimum": 0}},
      "additionalProperties": false}',
    topic => 'orders');
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["id", "amount"],
      "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'orders', deprecated_after => now() + interval '1 hour',
    derived_from => 'order.placed.v2', derive_with => 'shop.v2_to_v1(jsonb)');
CREATE TABLE published (event_id uuid, n int);
});

# three V2 events, each with its V1
$node->safe_psql('postgres', q{
INSERT INTO published
SELECT outbox.publish(NULL, jsonb_build_object('order_id', n, 'total', n + 0.5),
                      key => 'order-' || n, event_type => 'order.placed.v2',
                      headers => '{"x-tenant": "acme"}'), n
  FROM generate_series(1, 3) n;
});
# a rejected payload writes nothing, not even its V1
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT outbox.publish(NULL, '{"order_id": "x", "total": -1}', event_type => 'order.placed.v2')});
like($err, qr/payload does not match the schema of event type "order.placed.v2"/, 'an invalid V2 is refused');
like($err, qr{at /total: must be at least 0}, 'with its violations');
ok(wait_drained($node), 'V1 and V2 delivered');

my $msgs = python_read($broker->{bootstrap}, 'orders', 6);
is(scalar(@$msgs), 6, 'six messages on the topic');
my %v2_ids = map { my ($id, $n) = split /\|/; ($id => $n) }
  split /\n/, $node->safe_psql('postgres', 'SELECT event_id, n FROM published');
my (@v1, @v2);
for my $m (@$msgs)
{
	push @v1, $m if $m->{headers}{ce_type} eq 'order.placed.v1';
	push @v2, $m if $m->{headers}{ce_type} eq 'order.placed.v2';
}
is(scalar(@v2), 3, 'three V2 events');
is(scalar(@v1), 3, 'three V1 events');
for my $m (@v2)
{
	my $n = $v2_ids{ $m->{headers}{ce_id} };
	ok(defined $n, "V2 $m->{key} carries the id publish() returned");
	is_deeply(decode_json($m->{value}), { order_id => $n, total => $n + 0.5 }, "V2 $m->{key} payload");
	is($m->{headers}{ce_dataschema}, 'urn:outbox:schema:order.placed.v2', "V2 $m->{key} ce_dataschema");
	ok(!exists $m->{headers}{ce_derivedfrom}, "V2 $m->{key} is not derived");
}
my %seen_ids;
for my $m (@v1)
{
	my $from = $m->{headers}{ce_derivedfrom} // '';
	my $n = $v2_ids{$from};
	ok(defined $n, "V1 $m->{key} names the V2 event it was derived from");
	is($m->{key}, "order-$n", "V1 $m->{key} has the key of its V2");
	is_deeply(decode_json($m->{value}), { id => $n, amount => $n + 0.5 }, "V1 $m->{key} payload mapped");
	is($m->{headers}{ce_dataschema}, 'urn:outbox:schema:order.placed.v1', "V1 $m->{key} ce_dataschema");
	is($m->{headers}{'x-tenant'}, 'acme', "V1 $m->{key} keeps the caller's headers");
	ok(!exists $v2_ids{ $m->{headers}{ce_id} }, "V1 $m->{key} has an id of its own");
	$seen_ids{ $m->{headers}{ce_id} }++;
}
is(scalar(keys %seen_ids), 3, 'the V1 ids are distinct');
# within a key, V2 comes first (it is written first)
my $keys = by_key($msgs);
is_deeply([ map { $_->{headers}{ce_type} } @{ $keys->{'order-2'} } ],
	[ 'order.placed.v2', 'order.placed.v1' ], 'V2 then V1 within a key');

# V1 past its deprecation date: no longer derived; publishing it warns
$node->safe_psql('postgres', q{
SELECT outbox.register_event_type('order.placed.v1',
    '{"type": "object", "required": ["id", "amount"],
      "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}}}',
    topic => 'orders', deprecated_after => now() - interval '1 second',
    derived_from => 'order.placed.v2', derive_with => 'shop.v2_to_v1(jsonb)');
SELECT outbox.publish(NULL, '{"order_id": 4, "total": 6}', key => 'order-4', event_type => 'order.placed.v2');
});
($rc, $out, $err) = $node->psql('postgres', q{SELECT outbox.publish(NULL, '{"id": 5, "amount": 1}', key => 'order-5', event_type => 'order.placed.v1')});
like($err, qr/WARNING:  event type "order.placed.v1" is deprecated since/, 'publishing V1 warns');
like($err, qr/HINT:  Publish "order.placed.v2" instead/, 'naming V2');
ok(wait_drained($node), 'delivered');
$msgs = python_read($broker->{bootstrap}, 'orders', 8);
is_deeply([ map { $_->{headers}{ce_type} } grep { $_->{key} eq 'order-4' } @$msgs ],
	[ 'order.placed.v2' ], 'after its date, V1 is no longer derived');

# upgrade from 1.1 holding events, inbox rows and dead letters
$node->safe_psql('postgres', 'CREATE DATABASE from_1_1');
$node->safe_psql('from_1_1', q{
CREATE EXTENSION outbox VERSION '1.1';
SELECT outbox.pause_relay();
SELECT outbox.publish('upgrade.topic', jsonb_build_object('n', n), key => 'u') FROM generate_series(1, 5) n;
SELECT outbox.receive('billing', 'kept-1');
INSERT INTO outbox.dead_letters (event_id, topic, content_type, created_at, attempts, error_code, error)
VALUES ('01890a5d-ac96-774b-bcce-b302099a8057', 'dead.topic', 'application/json', now(), 3, '_MSG_TIMED_OUT', 'timed out');
});
is($node->safe_psql('from_1_1', q{SELECT extversion FROM pg_extension WHERE extname = 'outbox'}), '1.1', 'installed 1.1');
$node->safe_psql('from_1_1', 'ALTER EXTENSION outbox UPDATE');
is($node->safe_psql('from_1_1', q{SELECT extversion FROM pg_extension WHERE extname = 'outbox'}), '1.2', 'updated to 1.2');
is($node->safe_psql('from_1_1', 'SELECT count(*) FROM outbox.events'), '5', 'pending events kept');
is($node->safe_psql('from_1_1', q{SELECT outbox.receive('billing', 'kept-1')}), 'f', 'inbox rows kept');
is($node->safe_psql('from_1_1', 'SELECT count(*) FROM outbox.dead_letters'), '1', 'dead letters kept');
is($node->safe_psql('from_1_1', q{SELECT count(*) FROM pg_roles WHERE rolname = 'outbox_admin'}), '1', 'outbox_admin exists');
$node->safe_psql('from_1_1', q{
SELECT outbox.register_event_type('upgrade.done.v1', '{"required": ["n"]}', topic => 'upgrade.topic');
});
($rc, $out, $err) = $node->psql('from_1_1', q{SELECT outbox.publish(NULL, '{}', event_type => 'upgrade.done.v1')});
like($err, qr/"n" is required/, 'the registry checks payloads after the update');
$node->safe_psql('from_1_1', q{
SELECT outbox.publish(NULL, '{"n": 6}', key => 'u', event_type => 'upgrade.done.v1');
SELECT outbox.resume_relay();
});
ok(wait_drained($node, 'from_1_1'), 'the events published before and after the update are delivered');
$msgs = python_read($broker->{bootstrap}, 'upgrade.topic', 6);
is_deeply([ map { decode_json($_->{value})->{n} } @$msgs ], [ 1 .. 6 ], 'in order, none lost');
is($msgs->[5]{headers}{ce_dataschema}, 'urn:outbox:schema:upgrade.done.v1', 'the new event carries its contract');

$node->stop;
stop_broker($broker);
done_testing();
