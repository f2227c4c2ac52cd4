# Deletes, tag invalidations and fills while Redis holds back writes
# (CLIENT PAUSE ... WRITE: reads are answered, writes wait), with a Redis that
# keeps its data (--appendonly yes):
#  - a reader that misses L1 while twocache_del (or twocache_invalidate_tag)
#    waits on Redis may read the old value from Redis, but once the del
#    returns nothing on this server serves it again (issue 11, item 1);
#  - a fill cancelled by statement_timeout while its Redis write waits leaves
#    no flight behind: in_flight returns to 0, another backend fetches the key
#    without waiting, and the cancelled backend exits normally (item 4).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
# a Redis exchange may wait 60 s here: only CLIENT UNPAUSE or a cancel ends it
my $node = l2_node('node', $redis, wait_subscribed => 1,
	conf => "twocache.redis_timeout = '60s'");

# wait until a backend running $like waits on Redis
sub waits_on_redis
{
	my ($like) = @_;
	return poll($node,
		qq{SELECT count(*) = 1 FROM pg_stat_activity
		   WHERE wait_event_type = 'Extension' AND query LIKE '$like'
		   AND pid <> pg_backend_pid()});
}

# A reader during a stalled invalidation: $start runs in the background and
# waits on Redis; a reader refills $key from Redis meanwhile; once Redis
# resumes and $start returns, $key must not be in L1.
sub stalled_invalidation
{
	my ($what, $key, $start) = @_;

	is($node->safe_psql('postgres', "SELECT twocache_get('$key')"), 'old',
		"$what: the key is cached");
	is(in_l1($node, $key), 't', "$what: in L1");
	$redis->command('CLIENT', 'PAUSE', '60000', 'WRITE');
	my $inval = $node->background_psql('postgres');
	$inval->query_until(qr/started/, "\\echo started\n$start;\n\\echo finished\n");
	ok(waits_on_redis('%' . (split /\(/, $start)[0] . '(%'), "$what: waits on Redis");
	is(in_l1($node, $key), 'f', "$what: the local copy is gone at once");
	is($node->safe_psql('postgres', "SELECT twocache_get('$key')"), 'old',
		"$what: a reader meanwhile reads the old value from Redis (concurrent)");
	$redis->command('CLIENT', 'UNPAUSE');
	ok($inval->query_until(qr/finished/, ''), "$what: returned once Redis resumed");
	$inval->quit;
	is(in_l1($node, $key), 'f', "$what: after it returned, L1 does not hold the old value");
	is($node->safe_psql('postgres', "SELECT twocache_get('$key') IS NULL"), 't',
		"$what: and no read serves it");
}

$node->safe_psql('postgres', q{SELECT twocache_set('d:k', 'old')});
stalled_invalidation('twocache_del', 'd:k', q{SELECT twocache_del('d:k')});

$node->safe_psql('postgres', q{SELECT twocache_set('d:t', 'old', NULL, NULL, ARRAY['d:tag'])});
stalled_invalidation('twocache_invalidate_tag', 'd:t', q{SELECT twocache_invalidate_tag('d:tag')});

# a fill cancelled while its Redis write waits
$redis->command('CLIENT', 'PAUSE', '60000', 'WRITE');
my $filler = $node->background_psql('postgres', on_error_stop => 0);
$filler->query_safe(q{SET statement_timeout = '1s'});
my $pid = $filler->query_safe('SELECT pg_backend_pid()');
$pid =~ s/\s+//g;
my ($out, $failed) = $filler->query(q{SELECT twocache_get('f:k', $$SELECT 'fetched'$$)});
like($filler->{stderr}, qr/canceling statement due to statement timeout/,
	'the fill was cancelled while Redis held its write back');
$filler->{stderr} = '';
$redis->command('CLIENT', 'UNPAUSE');
is($node->safe_psql('postgres', 'SELECT in_flight FROM twocache_stats'), '0',
	'no flight is left behind');
# (the cancelled fill's SET, already sent, may have reached Redis on UNPAUSE)
like( $node->safe_psql('postgres',
		q{SET statement_timeout = '10s'; SELECT twocache_get('f:k', $$SELECT 'other'$$)}),
	qr/^(other|fetched)$/, 'another backend gets the key without waiting on a stale flight');
is($filler->query_safe('SELECT 1'), '1', 'the cancelled session goes on');
$filler->quit;
ok(poll($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'and its backend exits');

no_crash_in_log($node);
$node->stop;
done_testing();
