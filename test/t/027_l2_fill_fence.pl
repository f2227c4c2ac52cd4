# A fill is fenced in Redis, atomically (issue 11, item 6), with a Redis
# that keeps its data (--appendonly yes): a fill that began before another
# server's delete (or tag invalidation) of its key is not stored in Redis,
# nor in L1, even when this server never hears of the delete (its worker is
# stopped with SIGSTOP, so only Redis can tell).  A fill with nothing
# against it still lands in both layers, tags and all.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
my $node1 = l2_node('node1', $redis, wait_subscribed => 1);
my $node2 = l2_node('node2', $redis, wait_subscribed => 1);
$node1->safe_psql('postgres', q{CREATE TABLE gate (g int); INSERT INTO gate VALUES (1)});

# node1 fills $key (tags $tags) with a fetch that waits on a lock; while it
# waits, $on_node2 runs on node2; then the fill finishes
sub fill_across
{
	my ($key, $tags, $on_node2) = @_;
	my $wpid = $node1->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()');
	my $locker = $node1->background_psql('postgres');
	$locker->query_safe('BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;');
	kill 'STOP', $wpid if defined $on_node2;
	my $filler = $node1->background_psql('postgres');
	$filler->query_until(qr/started/, qq{\\echo started
SELECT twocache_get('$key', 'SELECT ''fetched'' FROM gate', NULL, $tags);
});
	ok(poll($node1,
			qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%$key%'}),
		"$key: the fill read Redis and waits in its fetch");
	$node2->safe_psql('postgres', $on_node2) if defined $on_node2;
	$locker->query_safe('COMMIT');
	$locker->quit;
	ok(poll($node1,
			qq{SELECT count(*) = 0 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%$key%' AND pid <> pg_backend_pid()}),
		"$key: the fill finished");
	$filler->quit;
	my $l1 = in_l1($node1, $key);
	kill 'CONT', $wpid if defined $on_node2;
	return $l1;
}

# nothing against it: stored in both layers, with its tags
is(fill_across('ff:free', q{ARRAY['fft']}, undef), 't', 'a fill with nothing against it is kept in L1');
like($redis->command('GET', 'db:postgres:ff:free'), qr/fetched$/, 'and in Redis');
is($redis->command('SISMEMBER', 'tag:db:postgres:fft', 'db:postgres:ff:free'), 1,
	"and in its tag's set");

# another server deletes the key meanwhile
is(fill_across('ff:del', 'NULL', q{SELECT twocache_del('ff:del')}), 'f',
	'a fill that began before another server deleted its key is not kept in L1');
is($redis->command('EXISTS', 'db:postgres:ff:del'), 0, 'nor stored in Redis');
ok(poll($node1, 'SELECT subscribed FROM twocache_status()'), 'node1 is subscribed again');
is($node2->safe_psql('postgres', q{SELECT twocache_get('ff:del') IS NULL}), 't',
	'node2 reads no old value');

# another server invalidates one of its tags meanwhile
is(fill_across('ff:tag', q{ARRAY['fft2', 'fft3']}, q{SELECT twocache_invalidate_tag('fft3')}), 'f',
	'a fill that began before another server invalidated one of its tags is not kept in L1');
is($redis->command('EXISTS', 'db:postgres:ff:tag'), 0, 'nor stored in Redis');
ok(poll($node1, 'SELECT subscribed FROM twocache_status()'), 'node1 is subscribed again');

# a delete of another key of a different stripe does not refuse a fill
is(fill_across('ff:other', 'NULL', q{SELECT twocache_set('ff:unrelated', 'x'), twocache_invalidate_tag('unrelated')}),
	't', 'writes of other keys and tags do not refuse a fill');
like($redis->command('GET', 'db:postgres:ff:other'), qr/fetched$/, 'it is in Redis');

no_crash_in_log($_) foreach ($node1, $node2);
$node1->stop;
$node2->stop;
done_testing();
