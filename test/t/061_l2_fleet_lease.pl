# Fleet-wide single flight (SPEC section 10, twocache.lease_ttl), three
# servers on one Redis that keeps its data (--appendonly yes): concurrent
# misses of one key on several servers run its fetch once in the fleet, and
# the waiters get the value when it reaches Redis, woken by the holder's
# message, not by the lease running out (the lease here lasts far longer
# than the test waits); a holder whose fetch fails ends its lease and a
# waiter fetches; a holder that dies leaves its lease behind, which its own
# server's next filler takes over at once, and which other servers wait
# out; fetch_wait_timeout bounds the wait; lease_ttl = 0 turns
# it off; with Redis down a fill runs as before.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
my @nodes = map { l2_node("node$_", $redis, wait_subscribed => 1,
		conf => "twocache.lease_ttl = '10min'") } (1 .. 3);
my ($node1, $node2, $node3) = @nodes;
foreach my $node (@nodes)
{
	$node->safe_psql('postgres', q{
CREATE TABLE gate (v text); INSERT INTO gate VALUES ('from ' || current_setting('cluster_name'));
});
}

sub reset_stats { $_->safe_psql('postgres', 'SELECT twocache_stats_reset()') foreach @nodes; }

sub set_all
{
	my ($setting) = @_;
	foreach my $node (@nodes)
	{
		$node->safe_psql('postgres', "ALTER SYSTEM SET $setting; SELECT pg_reload_conf();");
	}
}

# node1 starts a fill of $key whose fetch waits on its gate's lock; returns
# the locker and the filler
sub hold_on_node1
{
	my ($key, $query) = @_;
	my $locker = $node1->background_psql('postgres');
	$locker->query_safe('BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;');
	my $filler = $node1->background_psql('postgres', on_error_stop => 0);
	$filler->query_until(qr/started/, qq{\\echo started
SELECT twocache_get('$key', '$query');
});
	ok(poll($node1,
			qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%$key%'}),
		"$key: node1 holds the lease and waits in its fetch");
	return ($locker, $filler);
}

# start a get of $key on $node, to be collected later
sub start_get
{
	my ($node, $key) = @_;
	my $s = $node->background_psql('postgres');
	$s->query_until(qr/started/, qq{\\echo started
SELECT 'got:' || twocache_get('$key', 'SELECT v FROM gate');
});
	return $s;
}

# wait until $n backends of $node wait on a fleet lease for $key
sub waiting_on_lease
{
	my ($node, $key) = @_;
	return poll($node,
		qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%$key%' AND pid <> pg_backend_pid()});
}

sub collect
{
	my ($s) = @_;
	$s->{timeout}->start(60) if $s->{timeout};
	pump_until($s->{run}, $s->{timeout}, \$s->{stdout}, qr/got:[^\n]*\n/);
	my ($v) = $s->{stdout} =~ /got:([^\n]*)\n/;
	$s->quit;
	return $v;
}

# ---------------------------------------------------------------------
# one fetch in the fleet; the others woken by its message
# ---------------------------------------------------------------------
reset_stats();
my ($locker, $filler) = hold_on_node1('fl:1', 'SELECT v FROM gate');
my $g2 = start_get($node2, 'fl:1');
my $g3 = start_get($node3, 'fl:1');
ok(waiting_on_lease($node2, 'fl:1'), 'node2 waits on the lease instead of fetching');
ok(waiting_on_lease($node3, 'fl:1'), 'node3 too');
$locker->query_safe('COMMIT');
$locker->quit;
is(collect($g2), 'from node1', "node2 gets node1's value");
is(collect($g3), 'from node1', "node3 gets node1's value");
$filler->quit;
is(join(',', map { $_->safe_psql('postgres', 'SELECT fetches FROM twocache_stats') } @nodes),
	'1,0,0', 'one fetch in the fleet');
is(join(',', map { $_->safe_psql('postgres', 'SELECT fetch_waits FROM twocache_stats') } ($node2, $node3)),
	'1,1', 'the waits are counted in fetch_waits');
is(scalar @{ $redis->command('KEYS', 'lease:*') }, 0, 'no lease left in Redis');

# ---------------------------------------------------------------------
# the holder's fetch fails: it ends the lease, a waiter fetches at once
# ---------------------------------------------------------------------
reset_stats();
($locker, $filler) = hold_on_node1('fl:2', 'SELECT v::int::text FROM gate');
$g2 = start_get($node2, 'fl:2');
ok(waiting_on_lease($node2, 'fl:2'), 'node2 waits on the lease');
$locker->query_safe('COMMIT');
$locker->quit;
is(collect($g2), 'from node2', 'the holder failed: node2 fetched its own value');
$filler->quit;
is($node2->safe_psql('postgres', 'SELECT fetches FROM twocache_stats'), '1', 'node2 fetched once');

# ---------------------------------------------------------------------
# a holder that dies leaves its lease behind: its own server's next filler
# takes it over at once (the lease lasts 10 minutes here)
# ---------------------------------------------------------------------
($locker, $filler) = hold_on_node1('fl:8', 'SELECT v FROM gate');
$node1->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%fl:8%' AND pid <> pg_backend_pid()});
$locker->query_safe('COMMIT');
$locker->quit;
eval { $filler->quit; 1 };
ok(scalar @{ $redis->command('KEYS', 'lease:*') } >= 1, "the dead holder's lease is left in Redis");
is($node1->safe_psql('postgres',
		q{SET statement_timeout = '20s'; SELECT twocache_get('fl:8', 'SELECT v FROM gate')}),
	'from node1', "the holder's server fills the key at once, taking its lease over");

# ---------------------------------------------------------------------
# the holder dies: its lease expires, then a waiter fetches
# ---------------------------------------------------------------------
set_all("twocache.lease_ttl = '2s'");
ok(poll($_, q{SELECT current_setting('twocache.lease_ttl') = '2s'}), $_->name . ': lease_ttl reloaded')
  foreach @nodes;
reset_stats();
($locker, $filler) = hold_on_node1('fl:3', 'SELECT v FROM gate');
$g2 = start_get($node2, 'fl:3');
ok(waiting_on_lease($node2, 'fl:3'), 'node2 waits on the lease');
$node1->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%fl:3%' AND pid <> pg_backend_pid()});
is(collect($g2), 'from node2', "the holder died: once its lease expired node2 fetched");
$locker->query_safe('COMMIT');
$locker->quit;
# its psql lost its connection and exited
eval { $filler->quit; 1 };

# ---------------------------------------------------------------------
# fetch_wait_timeout bounds the wait on a lease
# ---------------------------------------------------------------------
set_all("twocache.lease_ttl = '10min'");
ok(poll($_, q{SELECT current_setting('twocache.lease_ttl') = '10min'}), $_->name . ': lease_ttl reloaded')
  foreach @nodes;
($locker, $filler) = hold_on_node1('fl:4', 'SELECT v FROM gate');
is($node2->safe_psql('postgres',
		q{SET twocache.fetch_wait_timeout = '300ms'; SELECT twocache_get('fl:4', 'SELECT v FROM gate')}),
	'from node2', 'after fetch_wait_timeout a waiter fetches itself');
$locker->query_safe('COMMIT');
$locker->quit;
$filler->quit;

# ---------------------------------------------------------------------
# lease_ttl = 0: no lease
# ---------------------------------------------------------------------
set_all("twocache.lease_ttl = 0");
ok(poll($_, q{SELECT current_setting('twocache.lease_ttl') = '0'}), $_->name . ': lease off')
  foreach @nodes;
($locker, $filler) = hold_on_node1('fl:5', 'SELECT v FROM gate');
is($node2->safe_psql('postgres', q{SELECT twocache_get('fl:5', 'SELECT v FROM gate')}),
	'from node2', 'lease_ttl = 0: each server fetches for itself');
$locker->query_safe('COMMIT');
$locker->quit;
$filler->quit;

# ---------------------------------------------------------------------
# Redis down: a fill runs as before
# ---------------------------------------------------------------------
set_all("twocache.lease_ttl = '10s'");
ok(poll($_, q{SELECT current_setting('twocache.lease_ttl') = '10s'}), $_->name . ': lease on')
  foreach @nodes;
$redis->stop;
is($node2->safe_psql('postgres', q{SELECT twocache_get('fl:6', 'SELECT v FROM gate')}),
	'from node2', 'Redis down: the fill fetches');
$redis->start;

no_crash_in_log($_) foreach ($node2, $node3);
# node1: one backend was terminated on purpose (its FATAL); nothing else
my @bad = grep { /terminated by signal|PANIC|twocache worker.*(exited|FATAL)|FATAL.*twocache worker/ }
  split /\n/, slurp_file($node1->logfile);
ok(!@bad, 'node1: no process crashed, the worker never exited') or diag join("\n", @bad);
$_->stop foreach @nodes;
done_testing();
