# A primary and its streaming hot standby on one Redis (SPEC.md section 5):
# the worker starts at consistent state, so the standby runs it too; the
# standby's twocache_get fetches (read-only, in recovery) and reads L2; the
# primary's set and del drop the standby's L1 entries; the standby's own
# writes reach the primary.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new;

# instance_id stays empty: each server generates its own at start, so a
# standby made from a copy of the primary does not share the primary's.
my $primary = l2_node('primary', $redis, allows_streaming => 1);
$primary->safe_psql(
	'postgres', q{
CREATE TABLE src (id int PRIMARY KEY, v text);
INSERT INTO src VALUES (1, 'one'), (2, 'two');
});

$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't',
	'the standby is in recovery');

# ---------------------------------------------------------------------
# The worker runs on both
# ---------------------------------------------------------------------
foreach my $node ($primary, $standby)
{
	my $name = $node->name;
	ok(poll($node, 'SELECT subscribed FROM twocache_status()'), "$name: the worker subscribes");
	is( $node->safe_psql(
			'postgres', q{
SELECT mode, redis_connected,
	   worker_pid = (SELECT pid FROM pg_stat_activity
					 WHERE backend_type = 'twocache worker')
FROM twocache_status()}),
		'two-layer|t|t',
		"$name: two-layer, connected, worker_pid is its 'twocache worker'");
}
my $primary_id = $primary->safe_psql('postgres', 'SELECT instance_id FROM twocache_status()');
my $standby_id = $standby->safe_psql('postgres', 'SELECT instance_id FROM twocache_status()');
isnt($standby_id, $primary_id, 'the standby has an instance_id of its own');
my $standby_worker = $standby->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()');

# ---------------------------------------------------------------------
# The standby fetches, read-only, and fills L1 and L2
# ---------------------------------------------------------------------
{
	my $f0 = counter($standby, 'fetches');
	is( $standby->safe_psql('postgres',
			q{SELECT twocache_get('row:1', 'SELECT v FROM src WHERE id = 1')}),
		'one', 'standby: twocache_get fetches from the standby');
	is(counter($standby, 'fetches'), $f0 + 1, 'standby: one fetch');
	is(in_l1($standby, 'row:1'), 't', 'standby: the value is in its L1');
	is($redis->cli('GET', 'db:postgres:row:1'), 'vone', "standby: its fetch filled L2");

	my $l2 = counter($primary, 'l2_hits');
	my $pf0 = counter($primary, 'fetches');
	is( $primary->safe_psql('postgres',
			q{SELECT twocache_get('row:1', 'SELECT v FROM src WHERE id = 1')}),
		'one', "primary: reads the standby's value");
	is(counter($primary, 'l2_hits'), $l2 + 1, 'primary: from L2');
	is(counter($primary, 'fetches'), $pf0, 'primary: without a fetch');
}

# ---------------------------------------------------------------------
# A del on the primary drops the standby's L1 entry
# ---------------------------------------------------------------------
{
	my $r0 = counter($standby, 'invalidations_received');
	$primary->safe_psql('postgres', q{UPDATE src SET v = 'uno' WHERE id = 1});
	is($primary->safe_psql('postgres', q{SELECT twocache_del('row:1')}), 't',
		'primary: del');
	ok(poll($standby, "SELECT invalidations_received > $r0 FROM twocache_stats"),
		"standby: received the primary's message");
	is(in_l1($standby, 'row:1'), 'f', "standby: the primary's del dropped its L1 entry");

	$primary->wait_for_catchup($standby);
	is( $standby->safe_psql('postgres',
			q{SELECT twocache_get('row:1', 'SELECT v FROM src WHERE id = 1')}),
		'uno', 'standby: refetches the replicated row');
}

# ---------------------------------------------------------------------
# A set on the primary is read on the standby from L2, and drops the
# standby's L1 copy of the key
# ---------------------------------------------------------------------
{
	my $r0 = counter($standby, 'invalidations_received');
	is($primary->safe_psql('postgres', q{SELECT twocache_set('cfg', 'on', '1 min')}), 't',
		'primary: set cfg');
	# wait for the message of the first set before the standby reads cfg and
	# before the next set, so that the drop seen below is the one of the
	# second set (a late first message would drop the copy read here)
	ok(poll($standby, "SELECT invalidations_received > $r0 FROM twocache_stats"),
		"standby: the first set's message arrived");
	my $h0 = counter($standby, 'l2_hits');
	my $f0 = counter($standby, 'fetches');
	is($standby->safe_psql('postgres', q{SELECT twocache_get('cfg', 'SELECT ''fetched''')}),
		'on', "standby: reads the primary's value");
	is(counter($standby, 'l2_hits'), $h0 + 1, 'standby: from L2');
	is(counter($standby, 'fetches'), $f0, 'standby: without a fetch');
	is(in_l1($standby, 'cfg'), 't', 'standby: cfg in its L1');
	is($primary->safe_psql('postgres', q{SELECT twocache_set('cfg', 'off', '1 min')}), 't',
		'primary: set cfg again');
	ok(poll($standby, not_in_l1_sql('cfg')), "standby: the set dropped its L1 copy");
	is($standby->safe_psql('postgres', q{SELECT twocache_get('cfg')}), 'off',
		'standby: reads the new value');
}

# ---------------------------------------------------------------------
# Writes made on the standby reach the primary
# ---------------------------------------------------------------------
{
	is($primary->safe_psql('postgres', q{SELECT twocache_get('row:2', 'SELECT v FROM src WHERE id = 2')}),
		'two', 'primary: row:2 cached');
	is(in_l1($primary, 'row:2'), 't', 'primary: row:2 in its L1');
	is($standby->safe_psql('postgres', q{SELECT twocache_del('row:2')}), 't',
		'standby: del row:2');
	is($redis->cli('EXISTS', 'db:postgres:row:2'), '0', 'standby: the del reached L2');
	ok(poll($primary, not_in_l1_sql('row:2')), "primary: the standby's del dropped its L1 entry");

	is($standby->safe_psql('postgres', q{SELECT twocache_set('from-standby', 's')}), 't',
		'standby: set');
	is($primary->safe_psql('postgres', q{SELECT twocache_get('from-standby')}), 's',
		"primary: reads the standby's value");
}

# ---------------------------------------------------------------------
# A del in a transaction block on the primary reaches the standby twice
# (at once and after commit)
# ---------------------------------------------------------------------
{
	my $r0 = counter($standby, 'invalidations_received');
	$primary->safe_psql(
		'postgres', q{
BEGIN;
UPDATE src SET v = 'dos' WHERE id = 2;
SELECT twocache_del('row:2');
COMMIT;
});
	ok(poll($standby, 'SELECT invalidations_received FROM twocache_stats', $r0 + 2),
		'standby: received the del and its post-commit repeat');
}

is($standby->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()'),
	$standby_worker, 'standby: the same worker throughout');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't',
	'the standby is still in recovery');
no_crash_in_log($_) foreach ($primary, $standby);

$standby->stop;
$primary->stop;
$redis->stop;
done_testing();
