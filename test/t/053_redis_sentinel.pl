# Redis Sentinel (issue 12, SPEC section 9): redis-sentinel:// URLs.
# Three Sentinels watch a master and its replica, both persistent
# (appendonly); two servers use the Sentinel URL under a read/write load
# while the master changes three times:
#   1. SENTINEL FAILOVER (the old master is running and may take writes
#      until it is demoted),
#   2. kill -9 of the master,
#   3. SIGSTOP of the master (it comes back, still believing it is master,
#      until Sentinel demotes it).
# After each: writes land on the new master within a few seconds of
# Sentinel's promotion (measured and bounded here; the README states the
# bound), each server's status names the new master, and no server serves
# the value from before the change once a later write was acknowledged
# (L1 is flushed on a change of master, and the cache generation is bumped
# once per new replication ID, so what the old master took and lost is not
# trusted).  Also: a URL pointed at a replica gets READONLY, counted and
# shown, never silent; a Sentinel that does not answer is skipped.
use strict;
use warnings;

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheSentinel;
use TwoCacheTest;

my $a = TwoCacheRedis->new(appendonly => 1);
my $b = TwoCacheRedis->new(appendonly => 1, replicaof => $a);
my $s = TwoCacheSentinel->new(master => $a, replicas => [$b]);

# the first Sentinel of the URL does not answer: it is skipped
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
my $url = $s->url;
$url =~ s{^redis-sentinel://}{redis-sentinel://127.0.0.1:$dead_port,};

# the load's writes warn while Redis is away: keep them out of the log
my $conf = 'log_min_messages = error';
my $node1 = l2_node('node1', $url, conf => $conf, wait_subscribed => 1);
my $node2 = l2_node('node2', $url, conf => $conf, wait_subscribed => 1);

sub node_in_use
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT redis_node || ' ' || redis_role FROM twocache_status()});
}

my $master = $a;
is(node_in_use($node1), '127.0.0.1:' . $a->port . ' master', 'node1 uses the master');
is(node_in_use($node2), '127.0.0.1:' . $a->port . ' master', 'node2 uses the master');

# ---------------------------------------------------------------------
# A load on both servers for the whole test
# ---------------------------------------------------------------------

$_->safe_psql('postgres', 'CREATE TABLE stop_load ()') foreach ($node1, $node2);
my @load;
foreach my $node ($node1, $node2)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->query_safe('SET client_min_messages = error');
	my $name = $node->name;
	$bg->{stdin} .= qq{
DO \$\$
DECLARE i int := 0;
BEGIN
	WHILE NOT EXISTS (SELECT FROM stop_load) LOOP
		PERFORM twocache_set('load:$name:' || (i % 50), i::text);
		PERFORM twocache_get('load:$name:' || ((i + 25) % 50));
		PERFORM pg_sleep(0.002);
		i := i + 1;
	END LOOP;
END
\$\$;
\\echo load done
};
	$bg->{run}->pump_nb;
	push @load, $bg;
}

# ---------------------------------------------------------------------
# One change of master
# ---------------------------------------------------------------------

my $round = 0;

sub change_master
{
	my ($what, $action) = @_;
	$round++;
	my $old = $master;
	my $before = "before-$round";

	is($node1->safe_psql('postgres', qq{SELECT twocache_set('k', '$before')}), 't',
		"$what: node1 writes k");
	ok(poll($node2, qq{SELECT twocache_get('k') IS NOT DISTINCT FROM '$before'}),
		"$what: node2 reads it");
	my $off1 = log_offset($node1);
	my $off2 = log_offset($node2);

	my $new = $action->($old);
	ok(defined $new, "$what: Sentinel promoted a new master");
	my $promoted = time;
	$master = $new;

	# writes land on the new master within the bound
	my $landed;
	my $deadline = $promoted + 30;
	my $after = "after-$round";
	while (time < $deadline)
	{
		my ($ret, $out) = $node1->psql('postgres', qq{SELECT twocache_set('k', '$after')});
		my $got = $new->cli('GET', 'db:postgres:k');
		if ($got =~ /\Q$after\E/)
		{
			$landed = time - $promoted;
			last;
		}
		usleep(50_000);
	}
	ok(defined $landed, "$what: a write landed on the new master");
	note(sprintf('%s: writes landed on the new master %.2f s after the promotion',
			$what, $landed // -1));
	cmp_ok($landed // 99, '<', 10, "$what: within 10 s of Sentinel's promotion");

	# no server serves the old value after the window
	ok(poll($node2, qq{SELECT twocache_get('k') IS NOT DISTINCT FROM '$after'}),
		"$what: node2 serves the write acknowledged after the change");
	is( $node2->safe_psql(
			'postgres', q{SELECT twocache_local_del('k'); SELECT twocache_get('k')}),
		"t\n$after", "$what: and so does Redis (read through L2)");
	is($node1->safe_psql('postgres', q{SELECT twocache_get('k')}), $after,
		"$what: node1 too");

	my $want = '127.0.0.1:' . $new->port . ' master';
	ok(poll($node1, q{SELECT redis_node || ' ' || redis_role FROM twocache_status()}, $want),
		"$what: node1's status names the new master");
	ok(poll($node2, q{SELECT redis_node || ' ' || redis_role FROM twocache_status()}, $want),
		"$what: node2's status names the new master");
	ok(wait_log($node1, qr/twocache worker: (Sentinel announced a new master|the Redis master changed|lost Redis|lost the Redis subscription)/, $off1),
		"$what: node1's worker followed the change");
	ok(wait_log($node2, qr/flushed \d+ local cache entries/, $off2),
		"$what: node2 flushed L1");
	return $old;
}

# 1. SENTINEL FAILOVER
my $old = change_master('SENTINEL FAILOVER', sub { return $s->failover; });
ok(wait_log($node1, qr/new replication ID; bumped the cache generation/)
	  || wait_log($node2, qr/new replication ID; bumped the cache generation/),
	'a server bumped the cache generation for the new master');
ok($old->wait_role('slave'), 'the old master is a replica again');
ok($old->wait_replica_synced($master), 'and in sync');

# 2. kill -9 of the master
$old = change_master(
	'kill -9 of the master',
	sub {
		my ($m) = @_;
		$m->kill9;
		my ($other) = grep { $_ != $m } ($a, $b);
		return $s->wait_master($other) ? $other : undef;
	});
$old->start;
ok($old->wait_role('slave'), 'the killed master comes back as a replica');
ok($old->wait_replica_synced($master), 'and in sync');

# 3. SIGSTOP of the master
$old = change_master(
	'SIGSTOP of the master',
	sub {
		my ($m) = @_;
		$m->pause;
		my ($other) = grep { $_ != $m } ($a, $b);
		my $ok = $s->wait_master($other);
		$m->resume;
		return $ok ? $other : undef;
	});
ok($old->wait_role('slave'), 'the stopped master is demoted once it is back');
is($node1->safe_psql('postgres', q{SELECT twocache_set('k', 'last')}), 't',
	'node1 writes after the demotion');
ok(poll($node2, q{SELECT twocache_get('k') IS NOT DISTINCT FROM 'last'}),
	'node2 reads it');
like($master->cli('GET', 'db:postgres:k'), qr/last/, 'on the master');

# ---------------------------------------------------------------------
# The load ran through it all
# ---------------------------------------------------------------------

$_->safe_psql('postgres', 'INSERT INTO stop_load DEFAULT VALUES') foreach ($node1, $node2);
foreach my $bg (@load)
{
	$bg->{run}->pump until $bg->{stdout} =~ /load done/;
	unlike($bg->{stderr}, qr/ERROR/, 'the load saw no error');
	$bg->quit;
}

# ---------------------------------------------------------------------
# A URL pointed at a replica: READONLY is counted and shown
# ---------------------------------------------------------------------

my $replica = $master == $a ? $b : $a;
my $node3 = l2_node('node3', $replica->url);
my $errors = counter($node3, 'redis_errors');
my ($ret, $out, $err) = $node3->psql('postgres', q{SELECT twocache_del('k')});
like($err, qr/WARNING/, 'a delete refused by a replica warns');
cmp_ok(counter($node3, 'redis_errors'), '>', $errors, 'READONLY is counted');
like($node3->safe_psql('postgres', 'SELECT last_error FROM twocache_status()'),
	qr/READONLY/, 'and shown in last_error');

no_crash_in_log($_) foreach ($node1, $node2, $node3);
$_->stop foreach ($node1, $node2, $node3);
done_testing();
