# No delete is lost across a partition or an error reply (issue 11, item 2),
# with a Redis that keeps its data (--appendonly yes, as production runs it):
#  - a twocache_del (and a tag invalidation) made while this server cannot
#    reach Redis is queued; after the partition heals this server does not
#    read the old value back, the worker sends the delete, and the other
#    server drops its copy;
#  - a DEL answered with an error (NOPERM here, READONLY on a replica) is
#    not taken as done: counted in redis_errors, the key is withheld from L2
#    on this server while queued, and sent once Redis accepts it;
#  - when more deletes fail than the queue holds, the worker bumps the
#    cache generation in Redis once it answers: every value written before
#    is a miss on every server, and new values carry the new generation.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
# twocache connects as a user that may be refused DEL
$redis->command('ACL', 'SETUSER', 'tc', 'on', '>tcpw', '~*', '&*', '+@all');
my $url = 'redis://tc:tcpw@' . $redis->host . ':' . $redis->port;
my $node1 = l2_node('node1', $url, wait_subscribed => 1);
my $node2 = l2_node('node2', $url, wait_subscribed => 1);
my $closed = PostgreSQL::Test::Cluster::get_free_port();

sub set_url
{
	my ($node, $u) = @_;
	$node->append_conf('postgresql.conf', "twocache.redis_url = '$u'");
	$node->reload;
	return poll($node, "SELECT current_setting('twocache.redis_url') = '$u'");
}

# both servers hold copies of k and t (tagged)
$node1->safe_psql('postgres',
	q{SELECT twocache_set('p:k', 'old'), twocache_set('p:t', 'old', NULL, NULL, ARRAY['p:tag'])});
my $recv0 = counter($node2, 'invalidations_received');
is($node2->safe_psql('postgres', q{SELECT twocache_get('p:k') || twocache_get('p:t')}), 'oldold',
	'node2 reads both');
is(in_l1($node2, $_), 't', "node2 holds $_") foreach ('p:k', 'p:t');

# partition node1 from Redis
ok(set_url($node1, "redis://127.0.0.1:$closed"), 'node1 points at a closed port');
ok(poll($node1, 'SELECT NOT subscribed FROM twocache_status()'), 'node1 lost Redis');
my ($rc, $out, $err) = $node1->psql('postgres',
	q{SELECT twocache_del('p:k'), twocache_invalidate_tag('p:tag')});
like($err, qr/will be deleted in Redis when it answers/, 'the del is queued, with a WARNING');
like($err, qr/will be in Redis when it answers/, 'so is the tag invalidation');
is($redis->command('EXISTS', 'db:postgres:p:k'), 1, 'Redis still has the key (persistent)');

# heal
ok(set_url($node1, $url), 'node1 points at Redis again');
is($node1->safe_psql('postgres', q{SELECT twocache_get('p:k') IS NULL AND twocache_get('p:t') IS NULL}),
	't', 'node1 does not read the old values back from Redis');
ok(poll($node1, q{SELECT subscribed FROM twocache_status()}), 'node1 resubscribed');
ok(poll_redis(sub { $redis->command('EXISTS', 'db:postgres:p:k') == 0 }),
	'the worker sent the queued del');
ok(poll_redis(sub { $redis->command('EXISTS', 'db:postgres:p:t') == 0 }),
	'and the queued tag invalidation');
ok(poll($node2, TwoCacheTest::not_in_l1_sql('p:k')), 'node2 dropped its copy of p:k');
ok(poll($node2, TwoCacheTest::not_in_l1_sql('p:t')), 'and of p:t');
is($node2->safe_psql('postgres', q{SELECT twocache_get('p:k') IS NULL}), 't', 'node2 reads nothing');

# an error reply to DEL: not done, counted, withheld while queued
$node1->safe_psql('postgres', q{SELECT twocache_set('e:k', 'old')});
is($node1->safe_psql('postgres', q{SELECT twocache_local_del('e:k')}), 't',
	'node1 drops its L1 copy (so the next read asks Redis)');
$redis->command('ACL', 'SETUSER', 'tc', '-del');
my $errors0 = counter($node1, 'redis_errors');
($rc, $out, $err) = $node1->psql('postgres', q{SELECT twocache_del('e:k')});
like($err, qr/Redis refused DEL: .*(NOPERM|can't run this command)/, 'Redis refused the DEL, and the WARNING says so');
ok(counter($node1, 'redis_errors') > $errors0, 'counted in redis_errors');
like($node1->safe_psql('postgres', 'SELECT last_error FROM twocache_status()'),
	qr/Redis refused DEL/, 'and shown in twocache_status().last_error');
is($redis->command('EXISTS', 'db:postgres:e:k'), 1, 'Redis still has the key');
# past the retry interval that the error started, node1 reads Redis again
$redis->command('SET', 'db:postgres:e:probe', 'vfrom redis');
ok(poll($node1, q{SELECT twocache_get('e:probe') IS NOT DISTINCT FROM 'from redis'}),
	'node1 reads from Redis again');
is($node1->safe_psql('postgres', q{SELECT twocache_get('e:k') IS NULL}), 't',
	'node1 does not read it from Redis while the del is queued');
is($node1->safe_psql('postgres', q{SELECT twocache_get('e:k', $$SELECT 'fetched'$$)}), 'fetched',
	'a fill fetches instead');
$redis->command('ACL', 'SETUSER', 'tc', '+del');
ok(poll_redis(sub { $redis->command('EXISTS', 'db:postgres:e:k') == 0 }),
	'once Redis accepts DEL the worker sends it');

# overflow: more failed deletes than the queue holds
$node1->safe_psql('postgres',
	q{SELECT count(twocache_set('o:' || i, 'old')) FROM generate_series(1, 1100) i});
$node1->safe_psql('postgres', q{SELECT twocache_set('o:kept', 'old')});
is($node2->safe_psql('postgres', q{SELECT twocache_get('o:1100') || twocache_get('o:kept')}),
	'oldold', 'node2 reads two of them');
ok(set_url($node1, "redis://127.0.0.1:$closed"), 'node1 partitioned again');
ok(poll($node1, 'SELECT NOT subscribed FROM twocache_status()'), 'node1 lost Redis');
($rc, $out, $err) = $node1->psql('postgres',
	q{SET client_min_messages = error; SELECT count(twocache_del('o:' || i)) FROM generate_series(1, 1100) i});
is($out, '1100', '1100 deletes fail to reach Redis');
my $off = log_offset($node1);
ok(set_url($node1, $url), 'healed');
is($node1->safe_psql('postgres', q{SELECT twocache_get('o:1100') IS NULL}), 't',
	'node1 reads nothing old meanwhile');
ok(wait_log($node1, qr/bumped the cache generation to 1/, $off), 'the worker bumped the generation');
is($redis->command('GET', 'generation'), '1', 'Redis holds generation 1');
ok(poll($node2, TwoCacheTest::not_in_l1_sql('o:kept')), 'node2 flushed its L1');
is($node2->safe_psql('postgres', q{SELECT twocache_get('o:1100') IS NULL}), 't',
	'node2 does not read a value deleted beyond the queue');
is($node2->safe_psql('postgres', q{SELECT twocache_get('o:kept') IS NULL}), 't',
	'nor any value written before the bump');
is($node2->safe_psql('postgres', q{SELECT twocache_get('o:kept', $$SELECT 'new'$$)}), 'new',
	'a fill stores over the old generation');
like($redis->command('GET', 'db:postgres:o:kept'), qr/^G1:/, 'new values carry the generation');
is($node1->safe_psql('postgres', q{SELECT twocache_get('o:kept')}), 'new', 'node1 reads it');

no_crash_in_log($_) foreach ($node1, $node2);
$node1->stop;
$node2->stop;
done_testing();

# poll a condition on Redis for up to 30 s
sub poll_redis
{
	my ($cond) = @_;
	foreach (1 .. 300)
	{
		return 1 if $cond->();
		select(undef, undef, undef, 0.1);
	}
	return 0;
}
