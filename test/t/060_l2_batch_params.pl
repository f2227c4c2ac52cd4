# Version 1.4 in two-layer mode, against a Redis that keeps its data
# (--appendonly yes): batch read-through writes every key it fetched to
# Redis in one pipeline, where another server reads them without fetching;
# a batch fill is fenced in Redis like a single one (another server's delete
# or tag invalidation during the fetch keeps that key out, the others
# stored); with Redis down a batch still answers and caches locally; fetch
# query parameters in two-layer mode; and twocache.skip_local (reads and
# writes Redis only, drops this server's L1 copy on a write, and with Redis
# down fetches every time and caches nothing).
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
foreach my $node ($node1, $node2)
{
	$node->safe_psql('postgres', q{
CREATE TABLE users (id int PRIMARY KEY, name text);
INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 100) i;
CREATE TABLE gate (g int); INSERT INTO gate VALUES (1);
});
}

# a value in Redis, without the generation prefix a bump may have added
sub redis_value
{
	my ($key) = @_;
	my $v = $redis->command('GET', "db:postgres:$key");
	return undef unless defined $v;
	$v =~ s/^G\d+://;
	return $v;
}

my $BATCH = q{'SELECT ''u:'' || id, name FROM users WHERE ''u:'' || id = ANY ($1)'};

# ---------------------------------------------------------------------
# a batch fills Redis; the other server reads it without fetching
# ---------------------------------------------------------------------
is( $node1->safe_psql('postgres', qq{
SELECT string_agg(key || '=' || value, ',' ORDER BY key)
FROM twocache_mget(ARRAY['u:1', 'u:2', 'u:3', 'u:999'], $BATCH, '1 hour')}),
	'u:1=user 1,u:2=user 2,u:3=user 3',
	'node1: a batch returns the rows found');
is(counter($node1, 'fetches'), '1', 'node1: one fetch for the batch');
like(redis_value('u:2'), qr/user 2$/, 'the batch wrote its values to Redis');
ok($redis->command('PTTL', 'db:postgres:u:2') > 3_000_000, 'with the TTL given');
ok(defined $redis->command('GET', 'db:postgres:u:999'),
	'and a not-found placeholder for the key without a row');
is( $node2->safe_psql('postgres', qq{
SELECT string_agg(key || '=' || value, ',' ORDER BY key)
FROM twocache_mget(ARRAY['u:1', 'u:2', 'u:3', 'u:999'], $BATCH)}),
	'u:1=user 1,u:2=user 2,u:3=user 3',
	'node2: the same batch is answered from Redis');
is($node2->safe_psql('postgres', 'SELECT fetches, l2_hits, negative_hits FROM twocache_stats'),
	'0|3|1', 'node2: no fetch; three L2 hits and the placeholder');

# ---------------------------------------------------------------------
# a batch is fenced in Redis key by key
# ---------------------------------------------------------------------
$node2->safe_psql('postgres', q{SELECT twocache_set('f:1', 'old'), twocache_set('f:3', 'old', NULL, NULL, ARRAY['ftag'])});
$node1->safe_psql('postgres', q{SELECT twocache_flush_local()});
$node2->safe_psql('postgres', q{SELECT twocache_del('f:1'), twocache_del('f:3')});
my $locker = $node1->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;');
my $filler = $node1->background_psql('postgres');
$filler->query_until(qr/started/, q{\echo started
SELECT string_agg(key || '=' || value, ',' ORDER BY key)
FROM twocache_mget(ARRAY['f:1', 'f:2', 'f:3'], 'SELECT k, ''fetched'' FROM unnest($1) k, gate',
				   NULL, ARRAY['ftag']);
});
ok(poll($node1,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%f:1%'}),
	'node1: the batch read Redis and waits in its fetch');
# while it fetches: node2 deletes f:1
$node2->safe_psql('postgres', q{SELECT twocache_del('f:1')});
$locker->query_safe('COMMIT');
$locker->quit;
ok(poll($node1,
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%f:1%' AND pid <> pg_backend_pid()}),
	'node1: the batch finished');
$filler->quit;
is($redis->command('EXISTS', 'db:postgres:f:1'), 0,
	'the key another server deleted during the fetch is not stored in Redis');
like(redis_value('f:2'), qr/fetched$/, 'the others are');
is(in_l1($node1, 'f:1'), 'f', 'nor in L1');
ok(counter($node1, 'stale_fills_rejected') >= 1, 'counted in stale_fills_rejected');
is($redis->command('SISMEMBER', 'tag:db:postgres:ftag', 'db:postgres:f:2'), 1,
	"the stored keys are in their tag's set");
$node2->safe_psql('postgres', q{SELECT twocache_invalidate_tag('ftag')});
ok(poll($node1, not_in_l1_sql('f:2')), 'a tag invalidation reaches the batch-filled keys');
is($redis->command('EXISTS', 'db:postgres:f:2'), 0, 'in Redis too');

# ---------------------------------------------------------------------
# a batch filler terminated mid-fetch, and one cancelled: its keys' waiters
# take over, no flight is left behind
# ---------------------------------------------------------------------
foreach my $how ('pg_terminate_backend', 'pg_cancel_backend')
{
	my $k = $how eq 'pg_cancel_backend' ? 'c' : 't';
	$locker = $node1->background_psql('postgres');
	$locker->query_safe('BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;');
	$filler = $node1->background_psql('postgres', on_error_stop => 0);
	$filler->query_until(qr/started/, qq{\\echo started
SELECT count(*) FROM twocache_mget(ARRAY['$k:1', '$k:2'], 'SELECT k, ''batch'' FROM unnest(\$1) k, gate');
});
	ok(poll($node1,
			qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%$k:1%'}),
		"$how: the batch waits in its fetch");
	my $waiter = $node1->background_psql('postgres');
	$waiter->query_until(qr/started/, qq{\\echo started
SELECT 'got:' || twocache_get('$k:2', 'SELECT ''own''');
});
	ok(poll($node1,
			qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'userlock' AND query LIKE '%$k:2%'}),
		"$how: a get of one of its keys waits for the batch");
	$node1->safe_psql('postgres',
		qq{SELECT $how(pid) FROM pg_stat_activity WHERE query LIKE '%twocache_mget(ARRAY[''$k:1''%' AND pid <> pg_backend_pid()});
	pump_until($waiter->{run}, $waiter->{timeout}, \$waiter->{stdout}, qr/got:[^\n]*\n/);
	like($waiter->{stdout}, qr/got:own/, "$how: the waiter took over and fetched");
	$waiter->quit;
	$locker->query_safe('COMMIT');
	$locker->quit;
	eval { $filler->quit; 1 };
	is($node1->safe_psql('postgres', 'SELECT in_flight FROM twocache_stats'), '0',
		"$how: no flight left behind");
	is($node1->safe_psql('postgres', qq{SELECT twocache_get('$k:1', 'SELECT ''again''')}), 'again',
		"$how: the batch's other key is fetched anew");
}

# ---------------------------------------------------------------------
# parameters in two-layer mode
# ---------------------------------------------------------------------
is( $node1->safe_psql('postgres',
		q{SELECT twocache_get('p:7', 'SELECT name FROM users WHERE id = $1', NULL, NULL, ARRAY['7'])}),
	'user 7', 'node1: a fill with a parameter');
like(redis_value('p:7'), qr/user 7$/, 'stored in Redis');
is( $node2->safe_psql('postgres',
		q{SELECT twocache_get('p:7', 'SELECT ''not run'' WHERE $1 IS NULL', params => ARRAY['x'])}),
	'user 7', 'node2 reads it from Redis');

# ---------------------------------------------------------------------
# twocache.skip_local
# ---------------------------------------------------------------------
$node1->safe_psql('postgres', q{SELECT twocache_stats_reset()});
is( $node1->safe_psql('postgres', q{
SET twocache.skip_local = on;
SELECT twocache_get('s:1', 'SELECT ''fetched''');
SELECT twocache_get('s:1', 'SELECT ''not run''');
SELECT count(*) FROM twocache_mget(ARRAY['s:1']);}),
	"fetched\nfetched\n1", 'skip_local: a fill, then reads from Redis');
is(in_l1($node1, 's:1'), 'f', 'skip_local: L1 keeps nothing');
like(redis_value('s:1'), qr/fetched$/, 'skip_local: Redis has it');
is($node1->safe_psql('postgres', 'SELECT fetches, l1_hits, l1_misses, l2_hits FROM twocache_stats'),
	'1|0|0|2', 'skip_local: one fetch, no L1 access, two L2 hits');
# a write drops this server's L1 copy and the other server's
$node1->safe_psql('postgres', q{SELECT twocache_set('s:2', 'in L1')});
$node2->safe_psql('postgres', q{SELECT twocache_get('s:2')});
is(in_l1($node1, 's:2'), 't', 'without skip_local a set is kept in L1');
is($node1->safe_psql('postgres', q{SET twocache.skip_local = on; SELECT twocache_set('s:2', 'new')}),
	't', 'skip_local: a set');
is(in_l1($node1, 's:2'), 'f', "skip_local: the set dropped this server's L1 copy");
like(redis_value('s:2'), qr/new$/, 'skip_local: the set reached Redis');
ok(poll($node2, q{SELECT twocache_get('s:2') = 'new'}), 'and the other server');
# batch with skip_local
is( $node1->safe_psql('postgres', qq{
SET twocache.skip_local = on;
SELECT string_agg(key || '=' || value, ',' ORDER BY key)
FROM twocache_mget(ARRAY['u:4', 'u:5'], $BATCH)}),
	'u:4=user 4,u:5=user 5', 'skip_local: a batch');
is(in_l1($node1, 'u:4'), 'f', 'skip_local: the batch keeps nothing in L1');
like(redis_value('u:5'), qr/user 5$/, 'skip_local: the batch wrote Redis');

# ---------------------------------------------------------------------
# Redis down
# ---------------------------------------------------------------------
$redis->stop;
$node1->safe_psql('postgres', q{SELECT twocache_stats_reset()});
my ($rc, $out, $err) = $node1->psql('postgres', q{
SET twocache.skip_local = on;
SELECT twocache_get('d:1', 'SELECT ''fetched''');
SELECT twocache_get('d:1', 'SELECT ''fetched again''');
SELECT twocache_set('d:2', 'x');});
is($rc, 0, 'skip_local with Redis down: no error');
is($out, "fetched\nfetched again\nf", 'skip_local with Redis down: every read fetches, a set writes nothing');
like($err, qr/with twocache.skip_local it was not cached/, 'and warns');
is(in_l1($node1, 'd:1'), 'f', 'skip_local with Redis down: nothing in L1');
is( $node1->safe_psql('postgres', qq{
SELECT string_agg(key || '=' || value, ',' ORDER BY key)
FROM twocache_mget(ARRAY['u:6', 'u:7'], $BATCH)}),
	'u:6=user 6,u:7=user 7', 'Redis down: a batch still answers');
is(in_l1($node1, 'u:6'), 't', 'and caches locally');
$redis->start;
ok(poll($node1, 'SELECT subscribed FROM twocache_status()'), 'node1 subscribed again');

no_crash_in_log($node2);
# node1: one backend was terminated on purpose (its FATAL); nothing else
my @bad = grep { /terminated by signal|PANIC|twocache worker.*(exited|FATAL)|FATAL.*twocache worker/ }
  split /\n/, slurp_file($node1->logfile);
ok(!@bad, 'node1: no process crashed, the worker never exited') or diag join("\n", @bad);
$node1->stop;
$node2->stop;
done_testing();
