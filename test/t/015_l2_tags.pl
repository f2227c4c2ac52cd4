# Tags in two-layer mode (1.1): a tagged value carries its tags into Redis
# and into the L1 of a server that reads it from there; each tag has a set
# of its Redis keys whose TTL is never shorter than theirs; invalidating a
# tag on one server deletes its keys from Redis and drops them from every
# server's L1.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new;
my $node1 = l2_node('node1', $redis, wait_subscribed => 1);
my $node2 = l2_node('node2', $redis, wait_subscribed => 1);

foreach my $node ($node1, $node2)
{
	$node->safe_psql(
		'postgres', q{
CREATE TABLE report_src (id int PRIMARY KEY, v text);
INSERT INTO report_src VALUES (1, 'one'), (2, 'two');
});
}

# node1 fills a tagged value: Redis holds it with its tags, and the tag's set
is( $node1->safe_psql('postgres',
		q{SELECT twocache_get('r:1', 'SELECT v FROM report_src WHERE id = 1', '10 min', ARRAY['report_src', 'row:1'])}),
	'one', 'node1: fills r:1 with tags');
like($redis->command('GET', 'db:postgres:r:1'), qr/^t.*report_src.*one$/s,
	'Redis: the value carries its tags');
is_deeply([ sort @{ $redis->command('SMEMBERS', 'tag:db:postgres:report_src') } ],
	['db:postgres:r:1'], "Redis: the tag's set holds the key");
my $key_pttl = $redis->command('PTTL', 'db:postgres:r:1');
my $set_pttl = $redis->command('PTTL', 'tag:db:postgres:report_src');
cmp_ok($set_pttl, '>=', $key_pttl - 1000, "the set lives at least as long as the key ($set_pttl >= $key_pttl)");
cmp_ok($set_pttl, '<=', 600_000, 'and expires');

# Wait until $node has received $n more messages than $r0: each set sends
# one, and the counts below must not take a late one for the next.
sub received
{
	my ($node, $r0, $n, $what) = @_;
	ok(poll($node, 'SELECT invalidations_received >= ' . ($r0 + $n) . ' FROM twocache_stats'),
		$node->name . ": received $what");
}

# a key without expiry makes its tag's set persistent
my $r2 = counter($node2, 'invalidations_received');
is( $node1->safe_psql('postgres',
		q{SELECT twocache_set('r:forever', 'f', '0', NULL, ARRAY['report_src'])}),
	't', 'node1: set r:forever without expiry, tagged');
received($node2, $r2, 1, "node1's set of r:forever");
is($redis->command('PTTL', 'tag:db:postgres:report_src'), -1, 'the set no longer expires');

# node2 reads r:1 from Redis: its L1 copy carries the tags
my $h0 = counter($node2, 'l2_hits');
is($node2->safe_psql('postgres', q{SELECT twocache_get('r:1')}), 'one', 'node2: reads r:1');
is(counter($node2, 'l2_hits'), $h0 + 1, 'node2: from Redis');
is(in_l1($node2, 'r:1'), 't', 'node2: r:1 in its L1');
my $r1 = counter($node1, 'invalidations_received');
is( $node2->safe_psql('postgres', q{SELECT twocache_set('r:2', 'two', '10 min', NULL, ARRAY['report_src'])}),
	't', 'node2: sets r:2 tagged');
# before node1 reads r:2, so that the message cannot drop node1's copy
received($node1, $r1, 1, "node2's set of r:2");
is($node2->safe_psql('postgres', q{SELECT twocache_get('untagged', 'SELECT ''u''')}), 'u',
	'node2: caches an untagged key');
is($node1->safe_psql('postgres', q{SELECT twocache_get('r:2')}), 'two', 'node1: reads r:2');
is($node1->safe_psql('postgres', q{SELECT twocache_exists('r:2')}), 't', 'exists sees a tagged value');
is($node1->safe_psql('postgres', q{SELECT twocache_set('r:2', 'x', NULL, 'absent')}), 'f',
	"only_if 'absent' counts a tagged value as present");

# node1 invalidates the tag: Redis loses the keys and the set, node2's L1
# drops its copies and keeps the untagged key
my $r0 = counter($node2, 'invalidations_received');
is($node1->safe_psql('postgres', q{SELECT twocache_invalidate_tag('report_src')}), '3',
	'node1: invalidate_tag drops its three tagged entries');
is($redis->command('EXISTS', 'db:postgres:r:1', 'db:postgres:r:2', 'db:postgres:r:forever',
		'tag:db:postgres:report_src'), 0, 'Redis: the keys and the set are gone');
ok(poll($node2, "SELECT invalidations_received > $r0 FROM twocache_stats"),
	"node2: received the tag invalidation");
is(in_l1($node2, 'r:1'), 'f', 'node2: r:1 dropped');
is(in_l1($node2, 'r:2'), 'f', 'node2: r:2 dropped');
is(in_l1($node2, 'untagged'), 't', 'node2: the untagged key stays');
is(in_l1($node2, 'r:forever'), 'f', 'node2: r:forever was never in its L1');
is($redis->command('EXISTS', 'db:postgres:untagged'), 1, 'Redis: the untagged key stays');

# another database's tag of the same name is another tag
$r2 = counter($node2, 'invalidations_received');
$node1->safe_psql('postgres', 'CREATE DATABASE other');
$node1->safe_psql('other', 'CREATE EXTENSION twocache');
$node1->safe_psql('other', q{SELECT twocache_set('r:1', 'other db', NULL, NULL, ARRAY['report_src'])});
$node1->safe_psql('postgres', q{SELECT twocache_set('r:1', 'postgres db', NULL, NULL, ARRAY['report_src'])});
is($node1->safe_psql('postgres', q{SELECT twocache_invalidate_tag('report_src')}), '1',
	'postgres: invalidates its own tag');
is($node1->safe_psql('other', q{SELECT twocache_get('r:1')}), 'other db',
	"other: the other database's entry stays");
is($redis->command('SCARD', 'tag:db:other:report_src'), 1, "Redis: other's set stays");

# inside a transaction block the invalidation goes out again after commit
$node1->safe_psql('postgres', q{SELECT twocache_set('r:3', 'three', NULL, NULL, ARRAY['t3'])});
# the set and the invalidation in database postgres, and this set (node2 has
# no database other: those of other are not counted), before r:3 is read
# and the next count begins
received($node2, $r2, 3, "node1's messages since");
is($node2->safe_psql('postgres', q{SELECT twocache_get('r:3')}), 'three', 'node2: reads r:3');
$r0 = counter($node2, 'invalidations_received');
$node1->safe_psql(
	'postgres', q{
BEGIN;
SELECT twocache_invalidate_tag('t3');
SELECT twocache_set('r:3', 'refilled before commit', NULL, NULL, ARRAY['t3']);
COMMIT;
});
ok(poll($node2, "SELECT invalidations_received >= $r0 + 3 FROM twocache_stats"),
	'node2: received the invalidation, the set and the post-commit repeat');
is($redis->command('EXISTS', 'db:postgres:r:3'), 0,
	'Redis: the value set before commit was deleted after commit');
is($node2->safe_psql('postgres', q{SELECT coalesce(twocache_get('r:3'), '<null>')}), '<null>',
	'node2: r:3 is gone');

no_crash_in_log($_) foreach ($node1, $node2);
done_testing();
