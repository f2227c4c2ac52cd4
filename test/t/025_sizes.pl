# Sizes in two-layer mode: two servers on one Redis, "small" with
# twocache.max_value_size = 1kB and "large" with 3MB (more than a partition
# of its 16MB / 4 can hold, about 2MB).  A value and its tags are stored
# together in one L1 chunk, so both count.
#  - A copy read from Redis that does not fit this server's max_value_size
#    (alone or with its tags) is returned but not kept in L1 (too_large):
#    by twocache_get without and with a fetch query, and by twocache_mget.
#  - A fetched value that does not fit with its tags is cached in neither
#    layer.
#  - A twocache_set whose value and tags do not fit the writer's partition
#    raises 54000 before Redis is written, so no server reads a value its
#    L1 does not have: the old value stays in both layers (the writer used
#    to keep the old value in L1 while Redis took the new one).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new;
my $small = l2_node('small', $redis, wait_subscribed => 1,
	conf => "twocache.max_value_size = '1kB'");
my $large = l2_node('large', $redis, wait_subscribed => 1,
	conf => "twocache.max_value_size = '3MB'");

# Run $sql on $node, then wait until $other's worker has applied the $n
# messages (default 1) it sent, so that a late message cannot drop what
# $other reads next.
sub set_and_wait
{
	my ($node, $sql, $other, $n) = @_;
	my $recv = counter($other, 'invalidations_received') + ($n // 1);
	$node->safe_psql('postgres', $sql);
	ok(poll($other, "SELECT invalidations_received >= $recv FROM twocache_stats"),
		$other->name . ' received the message of: ' . substr($sql, 0, 60));
}

sub redis_value
{
	my ($key) = @_;
	return $redis->command('GET', "db:postgres:$key");
}

# ---------------------------------------------------------------------
# Copies from Redis over this server's max_value_size
# ---------------------------------------------------------------------
set_and_wait($large, q{SELECT twocache_set('sz:big', repeat('x', 5000))}, $small);
my $too_large = counter($small, 'too_large');
my $l2_hits = counter($small, 'l2_hits');
is($small->safe_psql('postgres', q{SELECT octet_length(twocache_get('sz:big'))}),
	'5000', 'small: a 5000-byte value from Redis is returned');
is(in_l1($small, 'sz:big'), 'f', 'small: but not kept in L1');
is(counter($small, 'too_large') - $too_large, 1, 'small: counted in too_large');
is($small->safe_psql('postgres', q{SELECT octet_length(twocache_get('sz:big'))}),
	'5000', 'small: read again from Redis');
is(counter($small, 'l2_hits') - $l2_hits, 2, 'small: both reads were L2 hits');
is(in_l1($large, 'sz:big'), 't', 'large: keeps its own copy');

# the read-through form: an L2 hit, no fetch, not kept
is($large->safe_psql('postgres', q{SELECT octet_length(twocache_get('sz:rt', 'SELECT repeat(''r'', 5000)'))}),
	'5000', 'large: fills sz:rt');
my $fetches = counter($small, 'fetches');
is($small->safe_psql('postgres', q{SELECT twocache_get('sz:rt', 'SELECT ''other''') = repeat('r', 5000)}),
	't', 'small: the read-through form returns the copy from Redis');
is(counter($small, 'fetches') - $fetches, 0, 'small: without running its fetch query');
is(in_l1($small, 'sz:rt'), 'f', 'small: sz:rt not kept in L1');

# twocache_mget
set_and_wait($large, q{SELECT twocache_set('sz:m1', repeat('m', 5000)), twocache_set('sz:m2', 'small one')},
	$small, 2);
is( $small->safe_psql('postgres',
		q{SELECT string_agg(key || '=' || octet_length(value), ',') FROM twocache_mget(ARRAY['sz:m1', 'sz:m2'])}),
	'sz:m1=5000,sz:m2=9', 'small: twocache_mget returns both');
is(in_l1($small, 'sz:m1'), 'f', 'small: twocache_mget does not keep the large one');
is(in_l1($small, 'sz:m2'), 't', 'small: and keeps the small one');

# with its tags: 1000 bytes and a 22-byte tag (24 encoded) fit 1kB exactly,
# with a 23-byte tag they do not
set_and_wait($large,
	q{SELECT twocache_set('sz:tag1', repeat('t', 1000), NULL, NULL, ARRAY[repeat('g', 22)]),
	         twocache_set('sz:tag2', repeat('t', 1000), NULL, NULL, ARRAY[repeat('g', 23)])},
	$small, 2);
is($small->safe_psql('postgres', q{SELECT octet_length(twocache_get('sz:tag1'))}), '1000',
	'small: a value that fits with its tags is returned');
is(in_l1($small, 'sz:tag1'), 't', 'small: and kept');
is($small->safe_psql('postgres', q{SELECT octet_length(twocache_get('sz:tag2'))}), '1000',
	'small: a value whose tags take it over max_value_size is returned');
is(in_l1($small, 'sz:tag2'), 'f', 'small: but not kept');
is( $small->safe_psql('postgres',
		q{SELECT count(*) FROM twocache_mget(ARRAY['sz:tag2']) WHERE value = repeat('t', 1000)}),
	'1', 'small: twocache_mget returns it too');
is(in_l1($small, 'sz:tag2'), 'f', 'small: and does not keep it');

# ---------------------------------------------------------------------
# A fetched value over max_value_size with its tags: neither layer
# ---------------------------------------------------------------------
is( $small->safe_psql('postgres',
		q{SELECT octet_length(twocache_get('sz:fetched', 'SELECT repeat(''f'', 1000)', NULL, ARRAY[repeat('g', 23)]))}),
	'1000', 'small: a fetched value over max_value_size with its tags is returned');
is(in_l1($small, 'sz:fetched'), 'f', 'small: not kept in L1');
is($redis->command('EXISTS', 'db:postgres:sz:fetched'), 0, 'small: nor written to Redis');

# ---------------------------------------------------------------------
# A twocache_set that does not fit the writer's partition with its tags
# ---------------------------------------------------------------------
$large->safe_psql('postgres', q{
CREATE FUNCTION try_set(k text, v text, tags text[]) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN 'wrote: ' || twocache_set(k, v, NULL, NULL, tags)::text;
EXCEPTION WHEN others THEN
	RETURN 'SQLSTATE ' || SQLSTATE;
END $$});
set_and_wait($large, q{SELECT twocache_set('sz:old', 'old value')}, $small);
is( $large->safe_psql('postgres',
		q{SELECT try_set('sz:old', repeat('b', 2060000),
		                 ARRAY(SELECT lpad(i::text, 1024, 'g') FROM generate_series(1, 64) i))}),
	'SQLSTATE 54000',
	'large: 2,060,000 bytes with 64 tags of 1024 bytes do not fit a partition: 54000');
my $v = redis_value('sz:old');
ok(substr($v, -9) eq 'old value' && length($v) < 20, 'Redis keeps the old value');
# left 9 bytes and length: what each server reads, without printing 2MB
my $read = q{SELECT left(v, 9) || ':' || octet_length(v) FROM (SELECT twocache_get('sz:old') v) s};
is($large->safe_psql('postgres', $read), 'old value:9', 'large: reads the old value (from L1)');
is($small->safe_psql('postgres', $read), 'old value:9', 'small: reads the old value (from Redis)');
my $recv = counter($small, 'invalidations_received');
is( $large->safe_psql('postgres', q{SELECT try_set('sz:old', repeat('b', 2060000), NULL)}),
	'wrote: true', 'large: the value alone fits');
ok(poll($small, "SELECT invalidations_received > $recv FROM twocache_stats"),
	'small received its message');
is($large->safe_psql('postgres', $read), 'bbbbbbbbb:2060000', 'large: reads the new value');
is($small->safe_psql('postgres', $read), 'bbbbbbbbb:2060000', 'small: reads the new value');

no_crash_in_log($_) foreach ($small, $large);
$small->stop;
$large->stop;
done_testing();
