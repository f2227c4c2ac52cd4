# Limits of version 1.2 in two-layer mode, with a Redis that keeps its data
# (--appendonly yes, as production runs it):
#  - twocache.max_ttl caps lifetimes in Redis too (argument, '0', the fetch's
#    own TTL, the not-found placeholder);
#  - a fill never replaces what another server stored after the fill began
#    (SET NX: the value in Redis stays);
#  - values carry their encoding: in cluster scope a value filled in a LATIN1
#    database reaches a UTF8 database converted (from L1 and from Redis),
#    and bytes that are not valid text there are a miss, never served.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
my $node1 = l2_node('node1', $redis, wait_subscribed => 1,
	conf => "twocache.max_ttl = '1h'\ntwocache.scope = 'cluster'");
my $node2 = l2_node('node2', $redis, wait_subscribed => 1,
	conf => "twocache.scope = 'cluster'");

# max_ttl in Redis
$node1->safe_psql('postgres', q{SELECT twocache_set('m:long', 'v', '290000 years')});
my $pttl = $redis->command('PTTL', 'cluster:m:long');
ok($pttl > 3_500_000 && $pttl <= 3_600_000, "a TTL argument is capped in Redis ($pttl ms)");
$node1->safe_psql('postgres', q{SELECT twocache_set('m:forever', 'v', '0')});
$pttl = $redis->command('PTTL', 'cluster:m:forever');
ok($pttl > 3_500_000 && $pttl <= 3_600_000, "no expiry is capped in Redis ($pttl ms)");
$node1->safe_psql('postgres', q{SELECT twocache_get('m:fetched', $$SELECT 'v', interval '100 years'$$)});
$pttl = $redis->command('PTTL', 'cluster:m:fetched');
ok($pttl > 3_500_000 && $pttl <= 3_600_000, "a fetch-chosen TTL is capped in Redis ($pttl ms)");
$node1->safe_psql('postgres',
	q{SET twocache.not_found_ttl = 2147483647; SELECT twocache_get('m:absent', 'SELECT NULL::text')});
$pttl = $redis->command('PTTL', 'cluster:m:absent');
ok($pttl > 3_500_000 && $pttl <= 3_600_000, "a placeholder is capped in Redis ($pttl ms)");
# a copy from Redis without expiry is capped in L1 on the capped server
# (wait for node2's message first: arriving late it would drop node1's copy)
my $recv0 = counter($node1, 'invalidations_received');
$node2->safe_psql('postgres', q{SELECT twocache_set('m:node2', 'v', '0')});
ok(poll($node1, "SELECT invalidations_received > $recv0 FROM twocache_stats"),
	"node1 received node2's message");
is($redis->command('PTTL', 'cluster:m:node2'), -1, 'node2 has no cap');
is($node1->safe_psql('postgres', q{SELECT twocache_get('m:node2')}), 'v', 'node1 reads it from Redis');
ok( $node1->safe_psql('postgres',
		q{SELECT expires_at <= now() + interval '1 hour 1 min' FROM twocache_entries() WHERE key = 'm:node2'}) eq 't',
	'its L1 copy on node1 expires within max_ttl');

# a fill does not replace a value stored in Redis after it began: node1's
# fetch waits on a lock while node2 fills the key (a fill sends no message,
# so only Redis can tell node1)
$node1->safe_psql('postgres', q{CREATE TABLE gate (g int); INSERT INTO gate VALUES (1)});
my $locker = $node1->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;');
my $filler = $node1->background_psql('postgres');
$filler->query_until(qr/started/, q{\echo started
SELECT twocache_get('m:race', 'SELECT ''old fill'' FROM gate');
});
ok(poll($node1, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%m:race%'}),
	'the fill waits in its fetch');
is($node2->safe_psql('postgres', q{SELECT twocache_get('m:race', 'SELECT ''newer fill''')}),
	'newer fill', 'node2 fills m:race meanwhile');
$locker->query_safe('COMMIT');
$locker->quit;
$filler->quit;
ok(poll($node1, q{SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE '%m:race%' AND pid <> pg_backend_pid()}),
	'the fill finished');
like($redis->command('GET', 'cluster:m:race'), qr/newer fill$/, 'Redis keeps the newer fill');
is(in_l1($node1, 'm:race'), 'f', "node1's L1 did not take its older fill");
is($node1->safe_psql('postgres', q{SELECT twocache_get('m:race')}), 'newer fill', 'node1 reads the newer fill');

# encodings in cluster scope: one LATIN1 and one UTF8 database on node2
$node2->safe_psql('postgres', q{CREATE DATABASE lat ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node2->safe_psql('postgres', q{CREATE DATABASE utf ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node1->safe_psql('postgres', q{CREATE DATABASE utf ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node2->safe_psql($_, 'CREATE EXTENSION twocache') foreach ('lat', 'utf');
$node1->safe_psql('utf', 'CREATE EXTENSION twocache');

# é in LATIN1 is one byte 0xE9; the client speaks UTF8 to both databases
$node2->safe_psql('lat', q{SET client_encoding = 'UTF8'; SELECT twocache_get('enc:cafe', $$SELECT 'café'$$)});
like($redis->command('GET', 'cluster:enc:cafe'), qr/^E/, 'Redis: the value is marked with its encoding');
is($node2->safe_psql('utf', q{SET client_encoding = 'UTF8'; SELECT twocache_get('enc:cafe')}),
	'café', 'a UTF8 database on the same server reads it converted (L1)');
is($node2->safe_psql('utf', q{SELECT octet_length(twocache_get('enc:cafe'))}), '5', 'as UTF-8 bytes');
is($node1->safe_psql('utf', q{SET client_encoding = 'UTF8'; SELECT twocache_get('enc:cafe')}),
	'café', 'a UTF8 database of another server reads it converted (Redis)');

# bytes that are not valid UTF-8, planted in Redis as an unmarked value,
# are a miss in a UTF8 database, never served
$redis->command('SET', 'cluster:enc:bad', "v\xE9t\xE9");
is($node1->safe_psql('utf', q{SELECT twocache_get('enc:bad') IS NULL}), 't',
	'invalid bytes from Redis are a miss');
is($node1->safe_psql('utf', q{SELECT twocache_get('enc:bad', 'SELECT ''fetched''')}), 'fetched',
	'the read-through form fetches instead');
is($redis->command('GET', 'cluster:enc:bad'), "v\xE9t\xE9", 'and does not overwrite what is there');

no_crash_in_log($_) foreach ($node1, $node2);
$node1->stop;
$node2->stop;
done_testing();
