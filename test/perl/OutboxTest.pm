# OutboxTest: shared pieces of the outbox TAP tests.
#
# - start_broker(): the test Kafka broker (test/kafka_broker, librdkafka's
#   mock cluster on loopback), driven through its stdin with broker_cmd().
# - new_node(): a PostgreSQL::Test::Cluster with outbox preloaded and pointed
#   at a broker.
# - kcat_read() / python_read(): every message of a topic, read back by kcat
#   (librdkafka) or by test/kafka_read.py (python3-kafka, not librdkafka).
# - wait_drained(): waits until outbox.events is empty.
# - check_delivery(): what a topic holds against the ids that committed.
package OutboxTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(start_broker broker_cmd stop_broker new_node kcat_read
  python_read wait_drained delivered wait_delivered by_key first_occurrences check_delivery
  open_session session_send session_wait session_do close_session);

my $srcdir = $ENV{TESTDIR} // '.';

# Start a test broker with $nbrokers brokers; returns a handle whose
# {bootstrap} is the bootstrap server list.
sub start_broker
{
	my ($nbrokers) = @_;
	$nbrokers //= 1;
	my %b = (in => '', out => '');
	$b{h} = IPC::Run::start([ "$srcdir/test/kafka_broker", '-n', $nbrokers ],
		'<', \$b{in}, '>', \$b{out}, '2>', "$PostgreSQL::Test::Utils::tmp_check/broker_$$.log");
	my $deadline = time + 30;
	while ($b{out} !~ /^bootstrap (\S+)\n/m)
	{
		die "test broker did not start" if time > $deadline;
		$b{h}->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	($b{bootstrap}) = $b{out} =~ /^bootstrap (\S+)\n/m;
	$b{out} = '';
	return \%b;
}

# Send one command to the broker and return its answer line ("ok" or
# "error ...").
sub broker_cmd
{
	my ($b, $cmd) = @_;
	$b->{out} = '';
	$b->{in} .= "$cmd\n";
	my $deadline = time + 30;
	while ($b->{out} !~ /\n/)
	{
		die "test broker did not answer '$cmd'" if time > $deadline;
		$b->{h}->pump_nb;
		select(undef, undef, undef, 0.02);
	}
	my ($line) = $b->{out} =~ /^(.*)\n/;
	return $line;
}

sub stop_broker
{
	my ($b) = @_;
	$b->{in} .= "quit\n";
	$b->{h}->finish;
}

# A node with outbox preloaded, producing to $bootstrap; %opts may hold
# extra configuration lines (conf) and init options (allows_streaming...).
sub new_node
{
	my ($name, $bootstrap, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'outbox'
outbox.kafka_brokers = '$bootstrap'
max_worker_processes = 16
} . ($opts{conf} // ''));
	return $node;
}

# An interactive psql session on $db of $node, for transactions kept open
# while the test goes on.
sub open_session
{
	my ($node, $db) = @_;
	my %s = (in => '', out => '', err => '');
	$s{h} = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($db) ],
		'<', \$s{in}, '>', \$s{out}, '2>', \$s{err});
	return \%s;
}

# Send $sql to the session without waiting for it; session_wait() collects
# what it printed.  For a statement expected to block, so that the test can
# wait for the condition it blocks on.
sub session_send
{
	my ($s, $sql) = @_;
	$s->{marker} = 'session-done-' . int(rand(1e9));
	$s->{sql} = $sql;
	($s->{out}, $s->{err}) = ('', '');
	$s->{in} .= "$sql\n\\echo $s->{marker}\n";
	# hand it all to psql now (IPC::Run consumes $s->{in} as it writes)
	my $deadline = time + 180;
	while ($s->{in} ne '')
	{
		die "psql session does not read: $sql" if time > $deadline;
		$s->{h}->pump_nb;
		select(undef, undef, undef, 0.02) if $s->{in} ne '';
	}
	return;
}

# Wait until what session_send() sent is done; returns what it printed
# (stdout and stderr together).
sub session_wait
{
	my ($s) = @_;
	my $marker = $s->{marker};
	my $deadline = time + 180;
	while ($s->{out} !~ /$marker/)
	{
		die "psql session did not finish: $s->{sql}" if time > $deadline;
		$s->{h}->pump_nb;
		select(undef, undef, undef, 0.02);
	}
	$s->{h}->pump_nb;    # stderr of the statement, written before the marker
	(my $out = $s->{out}) =~ s/$marker\n//;
	return $out . $s->{err};
}

# Run $sql in the session and wait until it is done; returns what it printed
# (stdout and stderr together).
sub session_do
{
	my ($s, $sql) = @_;
	session_send($s, $sql);
	return session_wait($s);
}

sub close_session
{
	my ($s) = @_;
	$s->{in} .= "\\q\n";
	$s->{h}->finish;
}

# Every message of $topic, read by kcat from the beginning up to $count
# messages (all of them when $count is undef); a list of hashes
# with topic, partition, offset, key, value and headers (a hash) plus
# header_names (in order).
sub kcat_read
{
	my ($bootstrap, $topic, $count) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-C', '-b', $bootstrap, '-t', $topic, '-o', 'beginning',
		(defined $count ? ('-c', $count) : ()), '-e', '-J', '-X', 'fetch.wait.max.ms=1',
		'-X', 'topic.metadata.refresh.interval.ms=1000' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	my @msgs;
	for my $line (split /\n/, $out)
	{
		next unless $line =~ /^\{/;
		# kcat writes values as raw bytes: decode them as Latin-1 characters
		my $j = JSON::PP->new->decode($line);
		my %h;
		my @names;
		my @hv = @{ $j->{headers} // [] };
		while (@hv)
		{
			my ($k, $v) = splice(@hv, 0, 2);
			$h{$k} = $v;
			push @names, $k;
		}
		push @msgs, { topic => $j->{topic}, partition => $j->{partition},
			offset => $j->{offset}, key => $j->{key}, value => $j->{payload},
			headers => \%h, header_names => \@names };
	}
	return \@msgs;
}

# The same through python3-kafka (test/kafka_read.py).
sub python_read
{
	my ($bootstrap, $topic, $count) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', "$srcdir/test/kafka_read.py", '--bootstrap', $bootstrap,
		'--topic', $topic, '--count', $count, '--timeout', '60' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(180));
	note("kafka_read.py: $err") if $err ne '';
	my @msgs = map { decode_json($_) } grep { /^\{/ } split /\n/, $out;
	return \@msgs;
}

# Wait until outbox.events of $db is empty.
sub wait_drained
{
	my ($node, $db) = @_;
	return $node->poll_query_until($db // 'postgres',
		'SELECT count(*) = 0 FROM outbox.events');
}

# Events the relay of $db delivered since it started (outbox.stats).
sub delivered
{
	my ($node, $db) = @_;
	$db //= 'postgres';
	return $node->safe_psql($db, qq{SELECT delivered FROM outbox.stats WHERE datname = '$db'});
}

# Wait until the relay of $db has delivered at least $n events.
sub wait_delivered
{
	my ($node, $n, $db) = @_;
	$db //= 'postgres';
	return $node->poll_query_until($db,
		qq{SELECT delivered >= $n FROM outbox.stats WHERE datname = '$db'});
}

# Group messages by key, each list in partition order.
sub by_key
{
	my ($msgs) = @_;
	my %k;
	for my $m (sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} } @$msgs)
	{
		push @{ $k{ $m->{key} // '' } }, $m;
	}
	return \%k;
}

# The list of values of $field in order, without repeats after the first
# occurrence (duplicates from at-least-once delivery are dropped).
sub first_occurrences
{
	my @seen;
	my %s;
	for (@_)
	{
		push @seen, $_ unless $s{$_}++;
	}
	return @seen;
}

# Compare what $topic holds with the ids recorded in table published (seq,
# event_id, topic, k) as committed: every id arrived, a duplicate carries the
# same payload, each key's first occurrences are in publish order.  Prints a
# SCENARIO line for the README's fault table; returns the duplicate count.
sub check_delivery
{
	my ($node, $broker, $scenario, $topic) = @_;
	my @want = split /\n/, $node->safe_psql('postgres',
		"SELECT event_id || ' ' || k FROM published WHERE topic = '$topic' ORDER BY seq");
	my $msgs = kcat_read($broker->{bootstrap}, $topic);
	my %count;
	my %payload;
	my $same_payload = 1;
	for my $m (@$msgs)
	{
		my $id = $m->{headers}{ce_id};
		$count{$id}++;
		$same_payload = 0 if defined $payload{$id} && $payload{$id} ne $m->{value};
		$payload{$id} = $m->{value};
	}
	my $lost = grep { !$count{ (split / /)[0] } } @want;
	my $dups = 0;
	$dups += $_ - 1 for values %count;
	is($lost, 0, "$scenario: every committed event arrived");
	ok($same_payload, "$scenario: a duplicate carries the same ce_id and payload");
	my %order;
	push @{ $order{ (split / /)[1] } }, (split / /)[0] for @want;
	my $keys = by_key($msgs);
	my $in_order = 1;
	for my $k (keys %order)
	{
		my @got = first_occurrences(map { $_->{headers}{ce_id} } @{ $keys->{$k} // [] });
		$in_order = 0 unless join(',', @got) eq join(',', @{ $order{$k} });
	}
	ok($in_order, "$scenario: each key's first occurrences are in publish order");
	diag(sprintf('SCENARIO %s published=%d delivered=%d duplicated=%d lost=%d',
		$scenario, scalar(@want), scalar(keys %count), $dups, $lost));
	return $dups;
}


1;
