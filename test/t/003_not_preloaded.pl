# twocache without shared_preload_libraries: CREATE EXTENSION works, every
# function raises 55000 with a hint naming shared_preload_libraries, and the
# server is unaffected.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'twocache is not preloaded');
$node->safe_psql('postgres', 'CREATE EXTENSION twocache');
pass('CREATE EXTENSION works without preloading');

my @calls = (
	q{SELECT twocache_get('k', 'SELECT 1')},
	q{SELECT twocache_set('k', 'v')},
	q{SELECT twocache_del('k')},
	q{SELECT twocache_local_set('k', 'v')},
	q{SELECT twocache_local_del('k')},
	q{SELECT * FROM twocache_local_keys()},
	q{SELECT twocache_flush_local()},
	q{SELECT twocache_exists('k')},
	q{SELECT twocache_ttl('k')},
	q{SELECT * FROM twocache_mget(ARRAY['k'])},
	q{SELECT * FROM twocache_entries()},
	q{SELECT * FROM twocache_stats},
	q{SELECT twocache_stats_reset()},
	q{SELECT * FROM twocache_status()});

foreach my $sql (@calls)
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "fails: $sql");
	like($stderr, qr/ERROR:\s+55000: twocache must be loaded via shared_preload_libraries/,
		"55000: $sql");
	like($stderr, qr/HINT:\s+Add twocache to shared_preload_libraries/,
		"hint names shared_preload_libraries: $sql");
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still answers');
$node->stop;
done_testing();
