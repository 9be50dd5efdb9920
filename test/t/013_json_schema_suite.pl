# The official JSON-Schema-Test-Suite (Debian's json-schema-test-suite,
# tests/draft7/) through the real API: each case's schema is registered with
# outbox.register_event_type(), each of its payloads published with
# outbox.publish(), and the verdict (published, or refused with outbox's
# schema error) must be the suite's.  A schema outbox refuses at
# registration fails every payload of the case.
#
# The files are those of the keywords outbox implements (issue 13), plus
# the formats date-time, date, time, email, ipv4, ipv6, uri, uri-reference
# and regex (the suite has no uuid file in this version).  Left out:
# refRemote.json, which needs a web server for its remote schemas, and the
# other optional files (formats outbox does not implement, bignum, content,
# ECMA 262 regular expressions, zero-terminated floats).
#
# The JSON files are loaded into the database as jsonb, so numbers keep
# their text (1.0 stays 1.0) and strings their characters.  The counts per
# file are written to tmp_check/json_schema_suite.txt.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $suite = '/usr/share/json-schema-test-suite/tests/draft7';
my @files = qw(
  additionalItems additionalProperties allOf anyOf boolean_schema const
  contains default definitions dependencies enum exclusiveMaximum
  exclusiveMinimum if-then-else items maxItems maxLength maxProperties
  maximum minItems minLength minProperties minimum multipleOf not oneOf
  pattern patternProperties properties propertyNames ref required type
  uniqueItems
  optional/format/date-time optional/format/date optional/format/time
  optional/format/email optional/format/ipv4 optional/format/ipv6
  optional/format/uri optional/format/uri-reference optional/format/regex
);

# no broker: nothing is delivered, every transaction rolls back
my $node = new_node('suite', '127.0.0.1:9');
$node->start;
$node->safe_psql('postgres',
	q{CREATE DATABASE suite ENCODING 'UTF8' LOCALE 'C' TEMPLATE template0});
$node->safe_psql('suite', 'CREATE EXTENSION outbox');

my $load = "CREATE TABLE suite_files (file text PRIMARY KEY, doc jsonb NOT NULL);\n";
foreach my $file (@files)
{
	my $json = slurp_file("$suite/$file.json");
	$json =~ s/'/''/g;
	$load .= "INSERT INTO suite_files VALUES ('$file', '$json');\n";
}
$node->safe_psql('suite', $load);

$node->safe_psql('suite', q{
CREATE FUNCTION run_suite()
RETURNS TABLE (file text, name text, expected boolean, verdict text)
LANGUAGE plpgsql AS $run$
DECLARE
    f record;
    g record;
    t record;
    type_name text;
    refused text;
BEGIN
    FOR f IN SELECT s.file, s.doc FROM suite_files s ORDER BY s.file LOOP
        FOR g IN SELECT e.value AS grp, e.ordinality AS n
                   FROM jsonb_array_elements(f.doc) WITH ORDINALITY e LOOP
            type_name := 'suite.' || f.file || '.' || g.n;
            refused := NULL;
            BEGIN
                PERFORM outbox.register_event_type(type_name, g.grp->'schema');
            EXCEPTION WHEN OTHERS THEN
                refused := SQLERRM;
            END;
            FOR t IN SELECT e.value AS test
                       FROM jsonb_array_elements(g.grp->'tests') e LOOP
                file := f.file;
                name := (g.grp->>'description') || ': ' || (t.test->>'description');
                expected := (t.test->>'valid')::boolean;
                IF refused IS NOT NULL THEN
                    verdict := 'schema refused: ' || refused;
                ELSE
                    BEGIN
                        PERFORM outbox.publish('suite', t.test->'data', event_type => type_name);
                        verdict := 'valid';
                    EXCEPTION WHEN invalid_parameter_value THEN
                        verdict := CASE WHEN SQLERRM LIKE 'payload does not match the schema of event type%'
                                        THEN 'invalid' ELSE 'error: ' || SQLERRM END;
                    WHEN OTHERS THEN
                        verdict := 'error: ' || SQLERRM;
                    END;
                END IF;
                RETURN NEXT;
            END LOOP;
        END LOOP;
    END LOOP;
END
$run$;
});

my $out = $node->safe_psql('suite', q{
BEGIN;
SELECT file, replace(name, '|', '/'), expected, replace(verdict, E'\n', ' ') FROM run_suite();
ROLLBACK;
});

my (%passed, %total);
foreach my $line (split /\n/, $out)
{
	my ($file, $name, $expected, $verdict) = split /\|/, $line, 4;
	my $want = $expected eq 't' ? 'valid' : 'invalid';
	my $id = "$file: $name";
	$total{$file}++;
	$passed{$file}++ if $verdict eq $want;
	is($verdict, $want, $id);
}

is(scalar(keys %total), scalar(@files), 'every file ran');

# the counts, for the README and the closing note
my ($all_passed, $all_total) = (0, 0);
open my $fh, '>', "$PostgreSQL::Test::Utils::tmp_check/json_schema_suite.txt" or die $!;
foreach my $file (@files)
{
	my $p = $passed{$file} // 0;
	printf $fh "%-28s %3d / %3d\n", $file, $p, $total{$file} // 0;
	$all_passed += $p;
	$all_total += $total{$file} // 0;
}
printf $fh "%-28s %3d / %3d\n", 'all', $all_passed, $all_total;
close $fh;
diag("JSON-Schema-Test-Suite draft7: $all_passed of $all_total cases");

$node->stop;
done_testing();
