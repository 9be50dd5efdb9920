# The launcher serves a database that installs the extension after the
# server started (no restart, no configuration), leaves databases without it
# alone, and a reload with a new broker list moves the relays to the new
# brokers; an invalid setting is refused and the old value stays.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $broker1 = start_broker(1);
my $broker2 = start_broker(1);

my $node = new_node('dbs', $broker1->{bootstrap});
$node->start;

# a database created and given the extension while the server runs
$node->safe_psql('postgres', 'CREATE DATABASE late');
$node->safe_psql('postgres', 'CREATE DATABASE without_outbox');
$node->safe_psql('late', 'CREATE EXTENSION outbox');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = 'late'})
  or die 'no relay for database late';
pass('a database that creates the extension after start gets a relay');

$node->safe_psql('late', q{SELECT outbox.publish('late.topic', '{"n": 1}', key => 'a')});
ok(wait_drained($node, 'late'), 'its events drain');
my $msgs = kcat_read($broker1->{bootstrap}, 'late.topic', 1);
is(scalar(@$msgs), 1, 'its event reached Kafka');
is($msgs->[0]{headers}{ce_source}, '/outbox/late', 'ce_source names the database');

# no relay stays connected to a database without the extension
# (the launcher probes each database once; the probe exits at once)
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname IN ('without_outbox', 'postgres')})
  or die 'relay lingers in a database without the extension';
pass('no relay lingers in databases without the extension');

# dropping the extension stops the relay; creating it again starts one
$node->safe_psql('late', 'DROP EXTENSION outbox');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = 'late'})
  or die 'relay survived DROP EXTENSION';
pass('DROP EXTENSION stops the relay');
$node->safe_psql('late', 'CREATE EXTENSION outbox');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox relay' AND datname = 'late'})
  or die 'no relay after CREATE EXTENSION again';
pass('CREATE EXTENSION again restarts it');
$node->safe_psql('late', q{SELECT outbox.publish('late.topic', '{"n": 1}', key => 'a')});
ok(wait_drained($node, 'late'), 'the new relay delivers to the first broker list');

# reload with a new broker list: later events go to the new brokers
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.kafka_brokers = '$broker2->{bootstrap}'\n");
$node->reload;
$node->poll_query_until('late', qq{SELECT current_setting('outbox.kafka_brokers') = '$broker2->{bootstrap}'})
  or die 'setting not reloaded';
$node->safe_psql('late', q{SELECT outbox.publish('after.reload', '{"n": 2}', key => 'b')});
ok(wait_drained($node, 'late'), 'event after reload drained');
$msgs = kcat_read($broker2->{bootstrap}, 'after.reload', 1);
is(scalar(@$msgs), 1, 'the event went to the new broker list');
ok($node->log_contains('recreating the Kafka producer \(configuration changed\)', $log_offset),
	'the relay says it recreated its producer');

# an invalid value is refused at reload, with a clear message; the old value stays
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.kafka_properties = 'no.such.property=1'\n");
$node->reload;
ok($node->wait_for_log('invalid value for parameter "outbox.kafka_properties"', $log_offset),
	'invalid librdkafka property refused at reload');
ok($node->log_contains('No such configuration property: "no.such.property"', $log_offset),
	'the message names the property');
is($node->safe_psql('postgres', 'SHOW outbox.kafka_properties'), '', 'the old value stays');

$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.kafka_properties = 'enable.idempotence=false'\n");
$node->reload;
ok($node->wait_for_log('property "enable.idempotence" is set by outbox itself', $log_offset),
	'overriding idempotence is refused');

$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.batch_size = 0\n");
$node->reload;
ok($node->wait_for_log('outside the valid range for parameter "outbox.batch_size"', $log_offset),
	'an out-of-range batch size is refused');
is($node->safe_psql('postgres', 'SHOW outbox.batch_size'), '1000', 'the old batch size stays');
$node->append_conf('postgresql.conf', "outbox.batch_size = 1000\noutbox.kafka_properties = ''\n");

# a properties file (Kafka style) is read and validated too
my $props = $node->basedir . '/producer.properties';
open my $fh, '>', $props or die;
print $fh "# producer settings\ncompression.type = lz4\nlinger.ms: 2\n";
close $fh;
$node->append_conf('postgresql.conf', "outbox.kafka_properties_file = '$props'\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('outbox.kafka_properties_file') = '$props'")
  or die 'properties file not accepted';
$node->safe_psql('late', q{SELECT outbox.publish('after.file', '{"n": 3}', key => 'c')});
ok(wait_drained($node, 'late'), 'event with a properties file drained');
is(scalar(@{ kcat_read($broker2->{bootstrap}, 'after.file', 1) }), 1, 'and reached Kafka');

my $bad = $node->basedir . '/bad.properties';
open $fh, '>', $bad or die;
print $fh "compression.type = nonsense\n";
close $fh;
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.kafka_properties_file = '$bad'\n");
$node->reload;
ok($node->wait_for_log('invalid value for parameter "outbox.kafka_properties_file"', $log_offset),
	'a file with an invalid value is refused');
is($node->safe_psql('postgres', 'SHOW outbox.kafka_properties_file'), $props, 'the old file stays');

# secrets: refused inline (PostgreSQL logs changed settings), taken from the
# properties file, and never in the log either way
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.kafka_properties = 'sasl.username=u;sasl.password=TopSecret42'\n");
$node->reload;
ok($node->wait_for_log('property "sasl.password" holds a secret; set it in outbox.kafka_properties_file', $log_offset),
	'a secret given inline is refused, pointing to the properties file');
$node->append_conf('postgresql.conf', "outbox.kafka_properties = ''\n");

my $secret = $node->basedir . '/secret.properties';
open $fh, '>', $secret or die;
print $fh "sasl.username = u\nsasl.password = TopSecret42\n";
close $fh;
$node->append_conf('postgresql.conf', "outbox.kafka_properties_file = '$secret'\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('outbox.kafka_properties_file') = '$secret'")
  or die 'secret properties file not accepted';
open $fh, '>', $bad or die;
print $fh "sasl.password = TopSecret42\nsasl.kerberos.min.time.before.relogin = minus-one\n";
close $fh;
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "outbox.kafka_properties_file = '$bad'\n");
$node->reload;
ok($node->wait_for_log('invalid value for parameter "outbox.kafka_properties_file"', $log_offset),
	'a file with a secret and an invalid value is refused');
$node->safe_psql('late', q{SELECT outbox.publish('after.secret', '{"n": 4}', key => 'd')});
ok(wait_drained($node, 'late'), 'events flow with SASL properties set (plaintext broker ignores them)');
ok(!$node->log_contains('TopSecret42'), 'the SASL password never appears in the server log');

$node->stop;
stop_broker($broker1);
stop_broker($broker2);
done_testing();
