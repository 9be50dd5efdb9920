# What hostile and careless users and operators can do, and what outbox
# does about it: a schema owned by an ordinary role, a trigger on the
# relay's table, database and role defaults that break the relay's
# transactions, pausing then PREPARE, stats while paused, DROP EXTENSION
# with pending events, DROP DATABASE of a served database, a restarted
# launcher, a LATIN1 database, secrets in a malformed properties file, a bad
# edit of that file, and postmaster death while the relay waits for room in
# librdkafka's queue.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker = start_broker(1);
my $props = "$PostgreSQL::Test::Utils::tmp_check/hostile.properties";
open(my $fh, '>', $props) or die;
print $fh "linger.ms=1\n";
close($fh);

my $node = new_node('hostile', $broker->{bootstrap}, conf => qq{
max_prepared_transactions = 5
outbox.poll_interval = '1h'
outbox.kafka_properties_file = '$props'
});
$node->start;
# outbox.stats, read from here, shows every database's relay
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');
$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
CREATE DATABASE app OWNER mallory;
});
$node->safe_psql('app', 'CREATE EXTENSION outbox');
$node->safe_psql('postgres', 'CREATE ROLE app_user LOGIN IN ROLE outbox_publisher');

# published by app_user, whose sessions the defaults below do not touch
sub publish_as_app
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql, extra_params => [ '-U', 'app_user' ]);
}

sub relay_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = '$db'");
}

sub wait_relay
{
	my ($db) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = '$db'")
	  or die "relay of $db did not start";
	return relay_pid($db);
}

# --- 9: CREATE EXTENSION into a schema an ordinary role owns -------------------
$node->safe_psql('postgres', 'CREATE DATABASE mallorys OWNER mallory');
$node->safe_psql('mallorys', 'CREATE SCHEMA outbox AUTHORIZATION mallory');
my ($ret, $out, $err) = $node->psql('mallorys', 'CREATE EXTENSION outbox');
isnt($ret, 0, 'CREATE EXTENSION into a schema owned by an ordinary role is refused');
like($err, qr/schema "outbox" is owned by role "mallory"/, 'and says whose it is');
is($node->safe_psql('mallorys', q{SELECT count(*) FROM pg_extension WHERE extname = 'outbox'}),
	'0', 'nothing was installed');
# a table of the same name that is not the extension's is mallory's to drop
$node->safe_psql('mallorys', q{CREATE TABLE outbox.events (n int); INSERT INTO outbox.events VALUES (1)},
	extra_params => [ '-U', 'mallory' ]);
($ret, $out, $err) = $node->psql('mallorys', 'DROP TABLE outbox.events', extra_params => [ '-U', 'mallory' ]);
is($ret, 0, 'an unrelated table named outbox.events can be dropped') or diag($err);

# the relay refuses objects that are not what the extension made: a trigger
wait_relay('app');
$node->safe_psql('app', q{
CREATE TABLE public.fired (what text);
CREATE FUNCTION public.spy() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.fired VALUES (TG_OP); RETURN OLD; END $$;
CREATE TRIGGER spy AFTER DELETE ON outbox.events FOR EACH ROW EXECUTE FUNCTION public.spy();
ALTER TABLE outbox.events ENABLE ALWAYS TRIGGER spy;
});
publish_as_app('app', q{SELECT outbox.publish('hostile.trigger', '{"n": 1}', key => 't')});
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE '%refuses to work on outbox.events: it has triggers%' FROM outbox.stats WHERE datname = 'app'}),
	'the relay refuses a table with a trigger, and says so in outbox.stats');
is($node->safe_psql('app', 'SELECT count(*) FROM outbox.events'), '1', 'the event waits');
$node->safe_psql('app', 'DROP TRIGGER spy ON outbox.events');
ok(wait_drained($node, 'app'), 'delivered once the trigger is gone');
is($node->safe_psql('app', 'SELECT count(*) FROM public.fired'), '0', 'the trigger never fired');

# ... and a schema handed to an ordinary role
$node->safe_psql('app', 'ALTER SCHEMA outbox OWNER TO mallory');
publish_as_app('app', q{SELECT outbox.publish('hostile.trigger', '{"n": 2}', key => 't')});
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE '%refuses to work on schema outbox%' FROM outbox.stats WHERE datname = 'app'}),
	'the relay refuses a schema owned by an ordinary role');
$node->safe_psql('app', 'ALTER SCHEMA outbox OWNER TO postgres');
ok(wait_drained($node, 'app'), 'delivered once the schema is the superuser\'s again');
is(scalar(@{ kcat_read($broker->{bootstrap}, 'hostile.trigger', 2) }), 2, 'both events in Kafka, once each');

# --- 10: database and role defaults that broke the relay's transactions --------
$node->safe_psql('postgres', q{
ALTER DATABASE app SET default_transaction_read_only = on;
ALTER DATABASE app SET default_transaction_isolation = 'serializable';
ALTER ROLE postgres IN DATABASE app SET statement_timeout = '1ms';
ALTER ROLE postgres IN DATABASE app SET lock_timeout = '1ms';
ALTER ROLE postgres IN DATABASE app SET idle_in_transaction_session_timeout = '1ms';
ALTER ROLE postgres IN DATABASE app SET search_path = public;
ALTER ROLE postgres IN DATABASE app SET session_replication_role = 'origin';
});
my $old_pid = relay_pid('app');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = 'app' AND pid <> $old_pid")
  or die 'relay did not restart';
my $delivered = $node->safe_psql('postgres', q{SELECT delivered FROM outbox.stats WHERE datname = 'app'});
my $sql = "SET default_transaction_read_only = off;\n";
for my $t (1 .. 40)
{
	$sql .= 'BEGIN; ' . join(' ', map { "SELECT outbox.publish('hostile.settings', '{\"n\": $_}', key => 'k" . ($_ % 7) . "');" } (($t - 1) * 10 + 1 .. $t * 10)) . " COMMIT;\n";
}
publish_as_app('app', $sql);
# (the defaults would cancel this test's own queries in app: ask outbox.stats)
ok($node->poll_query_until('postgres',
	"SELECT delivered = $delivered + 400 AND pending = 0 FROM outbox.stats WHERE datname = 'app'"),
	'events drain whatever the database and role defaults say');
my $msgs = kcat_read($broker->{bootstrap}, 'hostile.settings');
my %ids;
$ids{ $_->{headers}{ce_id} }++ for @$msgs;
is(scalar(keys %ids), 400, 'every event arrived');
is(scalar(@$msgs), 400, 'none twice');
is($node->safe_psql('postgres', q{SELECT last_error IS NULL OR last_error NOT LIKE '%read-only%' FROM outbox.stats WHERE datname = 'app'}),
	't', 'no read-only failure on record');
$node->safe_psql('postgres', q{
ALTER DATABASE app RESET ALL;
ALTER ROLE postgres IN DATABASE app RESET ALL;
});

# --- 3 and 5: pausing, then PREPARE; outbox.stats while paused -----------------
is($node->safe_psql('app', q{
BEGIN; SELECT outbox.pause_relay(); PREPARE TRANSACTION 'pause';
COMMIT PREPARED 'pause';
SELECT count(*) FROM outbox.paused}), "t\n1", 'PREPARE TRANSACTION works after pause_relay()');
# a prepared transaction's commit wakes no relay: nudge it
$node->safe_psql('app', 'SELECT outbox.pause_relay()');
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM outbox.stats WHERE datname = 'app'}),
	'the relay is paused');
publish_as_app('app', join("\n", map { "SELECT outbox.publish('hostile.paused', '{}', key => 'p');" } 1 .. 10));
ok($node->poll_query_until('postgres',
	q{SELECT pending = 10 AND oldest_pending_age IS NOT NULL FROM outbox.stats WHERE datname = 'app'}),
	'outbox.stats shows the backlog growing while paused (no poll interval passes)');

# --- 11: DROP EXTENSION with committed, undelivered events ----------------------
($ret, $out, $err) = $node->psql('app', 'DROP EXTENSION outbox');
isnt($ret, 0, 'DROP EXTENSION is refused while events are pending');
like($err, qr/cannot drop outbox.events while it holds events/, 'with a clear message');
like($err, qr/DELETE FROM outbox.events/, 'and a hint');
($ret, $out, $err) = $node->psql('app', 'DROP SCHEMA outbox CASCADE');
isnt($ret, 0, 'DROP SCHEMA outbox CASCADE too');
is($node->safe_psql('app', 'SELECT count(*) FROM outbox.events'), '10', 'the events are still there');
is($node->safe_psql('app', q{BEGIN; SELECT outbox.resume_relay(); PREPARE TRANSACTION 'resume'; COMMIT PREPARED 'resume'; SELECT 1}),
	"t\n1", 'PREPARE TRANSACTION works after resume_relay()');
$node->safe_psql('app', 'SELECT outbox.resume_relay()');
ok(wait_drained($node, 'app'), 'resumed, the relay delivers them');

# --- 6: DROP DATABASE of a database the relay serves -----------------------------
$node->safe_psql('postgres', 'CREATE DATABASE served');
$node->safe_psql('served', 'CREATE EXTENSION outbox');
wait_relay('served');
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE served');
is($ret, 0, 'DROP DATABASE of a served database succeeds') or diag($err);
($ret, $out, $err) = $node->psql('postgres', 'BEGIN; DROP DATABASE app; COMMIT');
isnt($ret, 0, 'a DROP DATABASE that fails ...');
my $app_pid = wait_relay('app');
ok($app_pid, '... leaves the relay running, or starts it again');

# --- 2: a restarted launcher adopts the relays that run --------------------------
my $launcher = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'outbox launcher'});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox launcher' AND pid <> $launcher AND wait_event_type = 'Extension'")
  or die 'launcher did not restart';
# a ghost relay, if one were started, logs within milliseconds: give it two seconds
my $ghost = 0;
for (1 .. 20)
{
	$ghost = 1 if $node->log_contains(qr/is no longer ours/, $log_offset);
	last if $ghost;
	select(undef, undef, undef, 0.1);
}
ok(!$ghost, 'the restarted launcher starts no second relay');
is(relay_pid('app'), $app_pid, 'the running relay was adopted');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($app_pid)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = 'app' AND pid <> $app_pid")
  or die 'adopted relay not restarted';
pass('the new launcher restarts an adopted relay that exits');

# --- 17: a LATIN1 database sends UTF-8 ----------------------------------------------
$node->safe_psql('postgres', q{CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('latin1', q{
CREATE EXTENSION outbox;
SELECT outbox.publish('hostile.latin1', '{"name": "caf\u00e9"}', key => U&'cl\00E9',
                      headers => '{"x-city": "Z\u00fcrich"}', source => U&'/b\00E4ckerei');
SELECT outbox.publish_binary('hostile.latin1', '\xe9', key => 'bin');
});
ok(wait_drained($node, 'latin1'), 'a LATIN1 database relays');
# kcat gives each byte as one character
my %by_key = map { $_->{key} => $_ } @{ kcat_read($broker->{bootstrap}, 'hostile.latin1', 2) };
my $text = $by_key{"cl\xc3\xa9"};
ok($text, 'the key is UTF-8');
is($text->{value}, "{\"name\": \"caf\xc3\xa9\"}", 'the JSON payload is UTF-8');
is($text->{headers}{'x-city'}, "Z\xc3\xbcrich", 'caller headers are UTF-8');
is($text->{headers}{ce_source}, "/b\xc3\xa4ckerei", 'CloudEvents attributes are UTF-8');
is($by_key{bin}{value}, "\xe9", 'a binary payload is sent unchanged');

# --- 12: no secret in any message from a malformed properties file -----------------
open($fh, '>', "$props.bad") or die;
print $fh "linger.ms=1\nsasl.password: hunter2=x\nsasl.pass word=hunter3\nhunter4\n";
close($fh);
($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET outbox.kafka_properties_file = '$props.bad'");
isnt($ret, 0, 'a malformed properties file is refused');
unlike($err, qr/hunter/, 'the error shows no secret') or diag($err);
like($err, qr/No such configuration property: "sasl.pass"/, 'and names the bad property');

# --- 13: a bad edit of the properties file keeps the last good producer ------------
open($fh, '>', $props) or die;
print $fh "linger.ms=not-a-number\nsasl.password=hunter5\n";
close($fh);
$log_offset = -s $node->logfile;
$node->reload;
ok($node->wait_for_log(qr/new Kafka producer configuration refused, keeping the last good one/, $log_offset),
	'the relay refuses the bad file and says so');
publish_as_app('app', q{SELECT outbox.publish('hostile.badfile', '{}', key => 'b')});
ok(wait_drained($node, 'app'), 'and goes on delivering with the last good producer');
like($node->safe_psql('postgres', q{SELECT last_error FROM outbox.stats WHERE datname = 'app'}),
	qr/refused/, 'outbox.stats shows the refusal');
ok(!$node->log_contains(qr/hunter/), 'no secret in the server log');
open($fh, '>', $props) or die;
print $fh "linger.ms=2\n";
close($fh);
$log_offset = -s $node->logfile;
$node->reload;
ok($node->wait_for_log(qr/recreating the Kafka producer \(configuration changed\)/, $log_offset),
	'the fixed file is picked up at the next reload');

$node->stop;

# --- 7: postmaster death while the relay waits for room in librdkafka's queue ------
my $dying = new_node('dying', $broker->{bootstrap}, conf => q{
outbox.kafka_properties = 'queue.buffering.max.messages=5;message.timeout.ms=600000'
});
$dying->start;
$dying->safe_psql('postgres', 'CREATE EXTENSION outbox');
is(broker_cmd($broker, 'down all'), 'ok', 'brokers down');
$dying->safe_psql('postgres', join("\n", map { "SELECT outbox.publish('hostile.full', '{}');" } 1 .. 50));
$dying->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND query = 'producing to Kafka'})
  or die 'relay never waited for queue room';
my $dying_relay = $dying->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'outbox relay'});
kill 'KILL', $dying->{_pid};
my $gone = 0;
for (1 .. 100)
{
	$gone = 1 unless kill 0, $dying_relay;
	last if $gone;
	select(undef, undef, undef, 0.1);
}
ok($gone, 'the relay exits when the postmaster dies while it waits for queue room');
kill 'KILL', $dying_relay unless $gone;
# the node is gone: nothing for the test framework to stop
$dying->{_pid} = undef;
is(broker_cmd($broker, 'up all'), 'ok', 'brokers up');

stop_broker($broker);
done_testing();
