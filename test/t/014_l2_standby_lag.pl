# A hot standby that lags behind its primary (issue: invalidations carry the
# commit LSN).  An invalidation reaches the standby through Redis before the
# WAL that made it true: a fill from the standby's older snapshot must not be
# stored, in L1 or L2, until replay has passed the message's WAL position,
# and then the standby applies the invalidation again in both layers.
# Replay is held back with pg_wal_replay_pause().  A server of another
# cluster on the same Redis is not held back by the standby's LSNs.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new;

my $primary = l2_node('primary', $redis, allows_streaming => 1);
$primary->safe_psql(
	'postgres', q{
CREATE TABLE src (id int PRIMARY KEY, v text);
INSERT INTO src VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five');
});
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
ok(poll($standby, 'SELECT subscribed FROM twocache_status()'), 'standby: subscribed');
ok(poll($primary, 'SELECT subscribed FROM twocache_status()'), 'primary: subscribed');

sub get_sql
{
	my ($id) = @_;
	return "SELECT twocache_get('row:$id', 'SELECT v FROM src WHERE id = $id')";
}

sub status
{
	my ($node, $col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM twocache_status()");
}

sub pause_replay
{
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	ok(poll($standby, q{SELECT pg_get_wal_replay_pause_state() = 'paused'}),
		'standby: replay paused');
}

sub resume_replay
{
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	$primary->wait_for_catchup($standby);
}

# The standby caches rows 1..4, in L1 and L2.
foreach my $id (1 .. 4)
{
	$standby->safe_psql('postgres', get_sql($id));
}
is(in_l1($standby, 'row:1'), 't', 'standby: row:1 cached');
is($redis->cli('GET', 'db:postgres:row:1'), 'vone', 'row:1 in L2');

# ---------------------------------------------------------------------
# An update and a del in one transaction, while the standby's replay is
# paused: the standby gets the message, not the row.
# ---------------------------------------------------------------------
pause_replay();
{
	my $r0 = counter($standby, 'invalidations_received');
	my $d0 = counter($standby, 'invalidations_deferred');
	$primary->safe_psql(
		'postgres', q{
BEGIN;
UPDATE src SET v = 'uno' WHERE id = 1;
SELECT twocache_del('row:1');
COMMIT;
});
	my $commit_lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	ok(poll($standby, "SELECT invalidations_received >= $r0 + 2 FROM twocache_stats"),
		'standby: received the del and its post-commit repeat');
	is(in_l1($standby, 'row:1'), 'f', 'standby: row:1 dropped from L1 at once');
	cmp_ok(counter($standby, 'invalidations_deferred'), '>=', $d0 + 1,
		'standby: the invalidation waits for replay (invalidations_deferred)');
	cmp_ok(status($standby, 'deferred_invalidations'), '>=', 1,
		'standby: twocache_status shows it queued');
	cmp_ok($standby->safe_psql('postgres', 'SELECT pg_last_wal_replay_lsn()'),
		'ne', $commit_lsn, 'standby: has not replayed the commit');

	# The standby still sees the old row; it returns it but caches it nowhere.
	my $s0 = counter($standby, 'stale_fills_rejected');
	is($standby->safe_psql('postgres', get_sql(1)), 'one',
		"standby: reads its snapshot's row");
	is(counter($standby, 'stale_fills_rejected'), $s0 + 1,
		'standby: the fill is rejected as stale');
	is(in_l1($standby, 'row:1'), 'f', 'standby: the old row is not in L1');
	is($redis->cli('EXISTS', 'db:postgres:row:1'), '0',
		'standby: the old row was not written to L2');
	is($standby->safe_psql('postgres', get_sql(1)), 'one',
		'standby: a second read fetches again');
	is(in_l1($standby, 'row:1'), 'f', 'standby: still not cached');

	# So the primary does not read the standby's old row from L2.
	is($primary->safe_psql('postgres', get_sql(1)), 'uno',
		'primary: reads the new row, not the standby\'s old one');
	is($redis->cli('GET', 'db:postgres:row:1'), 'vuno', "primary: filled L2");
	is($standby->safe_psql('postgres', get_sql(1)), 'uno',
		"standby: returns the primary's value from L2");
	is(in_l1($standby, 'row:1'), 'f', 'standby: but does not keep it before replay');
}

# ---------------------------------------------------------------------
# An update committed on its own, then a del outside any transaction
# block: the message's LSN still covers the update.
# ---------------------------------------------------------------------
{
	my $r0 = counter($standby, 'invalidations_received');
	$primary->safe_psql('postgres', q{UPDATE src SET v = 'drei' WHERE id = 3});
	$primary->safe_psql('postgres', q{SELECT twocache_del('row:3')});
	ok(poll($standby, "SELECT invalidations_received > $r0 FROM twocache_stats"),
		'standby: received the del of row:3');
	is($standby->safe_psql('postgres', get_sql(3)), 'three', "standby: old row:3");
	is(in_l1($standby, 'row:3'), 'f', 'standby: not cached in L1');
	is($redis->cli('EXISTS', 'db:postgres:row:3'), '0', 'standby: not written to L2');
}

# ---------------------------------------------------------------------
# A stale copy that reached L2 anyway (a fill that wrote just before the
# message arrived) is deleted when the standby applies the message again.
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
	ok(poll($standby, "SELECT invalidations_received >= $r0 + 2 FROM twocache_stats"),
		'standby: received the del of row:2');
	$redis->cli('SET', 'db:postgres:row:2', 'vtwo');
	is($redis->cli('GET', 'db:postgres:row:2'), 'vtwo', 'an old row:2 in L2');
}

# ---------------------------------------------------------------------
# A tag invalidation waits for replay too: a fill carrying the tag is not
# stored until the standby has replayed the commit.
# ---------------------------------------------------------------------
my $tagged5 = q{SELECT twocache_get('tagged:5', 'SELECT v FROM src WHERE id = 5', NULL, ARRAY['src'])};
{
	my $r0 = counter($standby, 'invalidations_received');
	my $d0 = counter($standby, 'invalidations_deferred');
	$primary->safe_psql(
		'postgres', q{
BEGIN;
UPDATE src SET v = 'fuenf' WHERE id = 5;
SELECT twocache_invalidate_tag('src');
COMMIT;
});
	ok(poll($standby, "SELECT invalidations_received >= $r0 + 2 FROM twocache_stats"),
		'standby: received the tag invalidation and its post-commit repeat');
	cmp_ok(counter($standby, 'invalidations_deferred'), '>=', $d0 + 1,
		'standby: the tag invalidation waits for replay');
	is($standby->safe_psql('postgres', $tagged5), 'five', "standby: reads its snapshot's row 5");
	is(in_l1($standby, 'tagged:5'), 'f', 'standby: a fill carrying the tag is not stored');
	is($redis->cli('EXISTS', 'db:postgres:tagged:5'), '0', 'standby: nor written to L2');
	# an L2 copy that slipped in, listed in the tag's set
	$redis->cli('SET', 'db:postgres:tagged:5', 'vfive');
	$redis->cli('SADD', 'tag:db:postgres:src', 'db:postgres:tagged:5');
}

# ---------------------------------------------------------------------
# A server of another cluster on the same Redis: its LSNs mean nothing to
# the standby, whose L1 drops the key at once and is not held back.
# ---------------------------------------------------------------------
{
	my $other = l2_node('other', $redis, wait_subscribed => 1);
	$standby->safe_psql('postgres', q{SELECT twocache_local_set('row:9', 'nine')});
	my $d0 = counter($standby, 'invalidations_deferred');
	my $q0 = status($standby, 'deferred_invalidations');
	my $r0 = counter($standby, 'invalidations_received');
	# the other cluster's LSN is ahead of the paused standby's
	$other->safe_psql('postgres',
		q{CREATE TABLE filler AS SELECT g FROM generate_series(1, 20000) g});
	$other->safe_psql('postgres', q{SELECT twocache_del('row:9')});
	ok(poll($standby, not_in_l1_sql('row:9')), "standby: the other cluster's del dropped row:9");
	# the worker counts a message received last, after it has deferred it or
	# not: wait for that before reading the deferral counters
	ok(poll($standby, "SELECT invalidations_received > $r0 FROM twocache_stats"),
		"standby: received the other cluster's del");
	is(counter($standby, 'invalidations_deferred'), $d0,
		"standby: the other cluster's message was not deferred");
	is(status($standby, 'deferred_invalidations'), $q0, 'standby: nothing more queued');
	is($standby->safe_psql('postgres', q{SELECT twocache_local_set('row:9', 'nine')}), '',
		'standby: row:9 can be cached again');
	is(in_l1($standby, 'row:9'), 't', 'standby: row:9 in L1');
	$other->stop;
}

# ---------------------------------------------------------------------
# Replay resumes: the queued invalidations are applied again, the old
# L2 copy is deleted, and the standby caches the new rows.
# ---------------------------------------------------------------------
resume_replay();
ok(poll($standby, 'SELECT deferred_invalidations = 0 FROM twocache_status()'),
	'standby: every queued invalidation applied after replay');
ok(poll($primary, q{SELECT true}, 't'), 'primary: alive');
is($redis->cli('EXISTS', 'db:postgres:row:2'), '0',
	'standby: applied the del of row:2 again in L2');
is($redis->cli('EXISTS', 'db:postgres:tagged:5'), '0',
	'standby: applied the tag invalidation again in L2');
is($standby->safe_psql('postgres', $tagged5), 'fuenf', 'standby: row 5 is fuenf');
is(in_l1($standby, 'tagged:5'), 't', 'standby: and cached, with its tag');
foreach my $case ([ 1, 'uno' ], [ 2, 'dos' ], [ 3, 'drei' ], [ 4, 'four' ])
{
	my ($id, $v) = @$case;
	is($standby->safe_psql('postgres', get_sql($id)), $v, "standby: row:$id is $v");
	is(in_l1($standby, "row:$id"), 't', "standby: row:$id cached again");
	is($primary->safe_psql('postgres', get_sql($id)), $v, "primary: row:$id is $v");
}

# ---------------------------------------------------------------------
# Without a pause, a del reaches a standby that is up to date: nothing
# waits.
# ---------------------------------------------------------------------
{
	my $d0 = counter($standby, 'invalidations_deferred');
	my $r0 = counter($standby, 'invalidations_received');
	$primary->safe_psql('postgres', q{SELECT twocache_del('row:4')});
	ok(poll($standby, "SELECT invalidations_received > $r0 FROM twocache_stats"),
		'standby: received the del of row:4');
	ok(poll($standby, not_in_l1_sql('row:4')), 'standby: row:4 dropped');
	ok(poll($standby, 'SELECT deferred_invalidations = 0 FROM twocache_status()'),
		'standby: nothing left queued');
	cmp_ok(counter($standby, 'invalidations_deferred'), '<=', $d0 + 1,
		'standby: at most the one message deferred, briefly');
}

no_crash_in_log($_) foreach ($primary, $standby);

done_testing();
