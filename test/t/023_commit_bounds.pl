# The post-commit re-delete is bounded (issue 11, item 3):
#  - 2,700,000 twocache_del in one transaction (Redis unreachable, so each is
#    applied locally with a WARNING) commit without a PANIC: the commit
#    callback allocates nothing that grows with them (before: 400 bytes per
#    key in one allocation, "invalid memory alloc request size", "cannot
#    abort transaction ... already committed", a server restart);
#  - the same key deleted a million times in a block is remembered once;
#  - 50,000 deletes in a block are sent again after commit in bounded
#    batches, each within twocache.redis_timeout (20 ms here; before: one
#    pipeline of 100,000 commands, which took longer and was lost).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
my $node = l2_node('node', $redis, wait_subscribed => 1,
	conf => "log_min_messages = error\ntwocache.redis_timeout = '20ms'");
# a crash restart would end every session: this one must live to the end
my $witness = $node->background_psql('postgres');

# 50,000 deletes in one transaction block: the re-delete after commit reaches Redis
$node->safe_psql('postgres', q{SELECT count(twocache_set('b:' || i, 'v')) FROM generate_series(1, 50000) i});
my $sent0 = counter($node, 'invalidations_sent');
my $off = log_offset($node);
my ($rc, $out, $err) = $node->psql('postgres', q{
BEGIN;
SELECT count(twocache_del('b:' || i)) FROM generate_series(1, 50000) i;
COMMIT;
});
is($rc, 0, '50,000 deletes in a block commit');
unlike($err, qr/again in Redis after commit/, 'no WARNING: the re-delete reached Redis');
my $sent = counter($node, 'invalidations_sent') - $sent0;
ok($sent >= 100000, "each key was sent at the del and again after commit ($sent messages)");

# Redis unreachable: a closed port (the retry interval makes each del fail
# at once, locally applied)
my $closed = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf('postgresql.conf', "twocache.redis_url = 'redis://127.0.0.1:$closed'");
$node->reload;
ok(poll($node, q{SELECT last_error IS NOT NULL AND NOT redis_connected FROM twocache_status()}),
	'Redis is unreachable');
# one key deleted a million times in a block is remembered once (with Redis
# unreachable each del is quick)
($rc, $out, $err) = $node->psql('postgres', q{
SET client_min_messages = error;
BEGIN;
SELECT count(twocache_local_set('same', 'v')) FROM generate_series(1, 1);
DO $$
BEGIN
	FOR i IN 1..1000000 LOOP
		PERFORM twocache_del('same');
	END LOOP;
END
$$;
SELECT sum(total_bytes) < 64 * 1024 * 1024 FROM pg_backend_memory_contexts;
COMMIT;
});
is($rc, 0, 'a million deletes of one key commit');
like($out, qr/^1\nt$/m, 'and the backend did not keep a million entries (under 64MB)');

($rc, $out, $err) = $node->psql('postgres', q{
SET client_min_messages = error;
BEGIN;
SELECT count(twocache_del('p:' || i)) FROM generate_series(1, 2700000) i;
SET client_min_messages = warning;
COMMIT;
}, timeout => 600);
is($rc, 0, '2,700,000 deletes in one transaction commit');
is($out, '2700000', 'all of them ran');
unlike($err, qr/PANIC|invalid memory alloc/, 'no PANIC, no allocation failure');
like($err, qr/too many cache invalidations in one transaction to apply again after commit: 2600000 were not/,
	'beyond the bound the commit warns, and flushes L1 instead');
is($witness->query_safe('SELECT 1'), '1', 'the server was not restarted: a session from before lives');
$witness->quit;

no_crash_in_log($node);
$node->stop;
done_testing();
