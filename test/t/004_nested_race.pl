# Nested fetches racing in opposite orders (A's fetch reads B, B's reads A)
# from many clients at once: the waits-for cycle check must catch every
# cycle, including two backends closing one at the same moment on keys in
# different partitions.  Without it, pairs of backends wait for each other's
# flight until the deadlock detector fails one of them (40P01).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nested_race');
$node->init;
$node->append_conf('postgresql.conf', "twocache.partitions = 4\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION twocache');

# Short TTLs keep the keys missing, so fetches (and nesting) happen all the
# time; a 3 s statement_timeout turns a deadlock into a failed transaction.
$node->pgbench(
	'--no-vacuum --client=8 --jobs=2 --time=8',
	0,
	[qr{number of failed transactions: 0}],
	[qr{^$}],
	'nested fetches in opposite orders never deadlock',
	{
		'004_nested_race' => q{
\set n random(1, 20)
\set d random(0, 1)
SET statement_timeout = '3s';
\if :d = 0
SELECT twocache_get('a:' || :n, 'SELECT twocache_get(''b:' || :n || ''', ''SELECT 1'', ''1 ms'')', '1 ms');
\else
SELECT twocache_get('b:' || :n, 'SELECT twocache_get(''a:' || :n || ''', ''SELECT 1'', ''1 ms'')', '1 ms');
\endif
}
	});

is($node->safe_psql('postgres', 'SELECT in_flight FROM twocache_stats'),
	'0', 'no flight slot left behind');
ok($node->safe_psql('postgres', 'SELECT fetches > 0 FROM twocache_stats') eq 't',
	'fetches ran');
$node->stop;
done_testing();
