# Invalidation from table changes (1.1) across servers: a report tagged
# automatically with the tables it read (twocache.auto_tag) and cached on a
# primary, its hot standby and an independent server on one Redis is
# dropped everywhere when a write to a tracked table commits on the primary;
# a rollback drops nothing; a standby whose replay is paused does not cache
# the report from its old snapshot, and applies the invalidation again once
# it has replayed the commit.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new;
my $schema = q{
CREATE TABLE customers (id int PRIMARY KEY, region int);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int);
INSERT INTO customers VALUES (1, 7), (2, 8);
INSERT INTO orders VALUES (1, 1, 10), (2, 2, 20), (3, 1, 5);
SELECT twocache_track('orders'), twocache_track('customers');
};
my $report = q{SELECT twocache_get('report:7',
	'SELECT sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.region = 7')};

my $primary = l2_node('primary', $redis, allows_streaming => 1,
	conf => 'twocache.auto_tag = on', wait_subscribed => 1);
$primary->safe_psql('postgres', $schema);
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
ok(poll($standby, 'SELECT subscribed FROM twocache_status()'), 'standby: subscribed');
my $other = l2_node('other', $redis, conf => 'twocache.auto_tag = on', wait_subscribed => 1);
$other->safe_psql('postgres', $schema);

# the primary fills the report: Redis holds it tagged with both tables
is($primary->safe_psql('postgres', $report), '15', 'primary: report:7 = 15');
is_deeply([ sort @{ $redis->command('KEYS', 'tag:*') } ],
	[ 'tag:db:postgres:public.customers', 'tag:db:postgres:public.orders' ],
	'Redis: one set per table the report read');
is($standby->safe_psql('postgres', $report), '15', 'standby: report:7 from Redis');
is($other->safe_psql('postgres', $report), '15', 'other: report:7 from Redis');
is(in_l1($_, 'report:7'), 't', $_->name . ': report:7 in L1') foreach ($primary, $standby, $other);

# How many messages the primary sends while running $sql.
sub primary_sends
{
	my ($sql) = @_;
	my $s0 = counter($primary, 'invalidations_sent');
	$primary->safe_psql('postgres', $sql);
	return counter($primary, 'invalidations_sent') - $s0;
}

# Wait until $node has received $n more messages than $r0.
sub received
{
	my ($node, $r0, $n) = @_;
	return poll($node, 'SELECT invalidations_received >= ' . ($r0 + $n) . ' FROM twocache_stats');
}

# a rollback drops nothing: not at once, nor by a message that comes later
# (a set after the rollback, whose message comes after any of the
# rollback's, is waited for)
{
	my %r0 = map { $_->name => counter($_, 'invalidations_received') } ($standby, $other);
	my $n = primary_sends(q{BEGIN; UPDATE orders SET amount = 0; ROLLBACK;});
	$n += primary_sends(q{SELECT twocache_set('after-rollback', 'm')});
	ok(received($_, $r0{ $_->name }, $n), $_->name . ': received the messages sent since')
	  foreach ($standby, $other);
}
is(in_l1($_, 'report:7'), 't', $_->name . ': report:7 kept after a rollback')
  foreach ($primary, $standby, $other);
is($redis->command('EXISTS', 'db:postgres:report:7'), 1, 'Redis: report:7 kept after a rollback');

# a committed update on the primary drops it everywhere
my %r0 = map { $_->name => counter($_, 'invalidations_received') } ($standby, $other);
my $n_sent = primary_sends(q{UPDATE orders SET amount = 100 WHERE id = 3});
is(in_l1($primary, 'report:7'), 'f', 'primary: report:7 dropped at commit');
is($redis->command('EXISTS', 'db:postgres:report:7'), 0, 'Redis: report:7 deleted');
foreach my $node ($standby, $other)
{
	ok(poll($node, not_in_l1_sql('report:7')), $node->name . ': report:7 dropped');
	# a worker counts a message after it has applied it: wait for the count
	# (of every message of the commit, so that none is left for below)
	ok(received($node, $r0{ $node->name }, $n_sent), $node->name . ': by the message');
}
$primary->wait_for_catchup($standby);
is($primary->safe_psql('postgres', $report), '110', 'primary: report:7 = 110');
is($standby->safe_psql('postgres', $report), '110', 'standby: report:7 = 110');

# with the standby's replay paused, it does not keep the old report
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
ok(poll($standby, q{SELECT pg_get_wal_replay_pause_state() = 'paused'}), 'standby: replay paused');
my $rs = counter($standby, 'invalidations_received');
$n_sent = primary_sends(q{UPDATE customers SET region = 8 WHERE id = 1});
ok(received($standby, $rs, $n_sent), 'standby: got the invalidation before the WAL');
ok(poll($standby, not_in_l1_sql('report:7')), 'standby: report:7 dropped');
is($standby->safe_psql('postgres', $report), '110', "standby: computes its snapshot's report");
is(in_l1($standby, 'report:7'), 'f', 'standby: but does not cache it');
is($redis->command('EXISTS', 'db:postgres:report:7'), 0, 'standby: nor write it to Redis');
is($primary->safe_psql('postgres', "SELECT coalesce(($report), '<null>')"), '<null>',
	'primary: region 7 has no orders now');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby);
ok(poll($standby, 'SELECT deferred_invalidations = 0 FROM twocache_status()'),
	'standby: the deferred invalidation was applied after replay');
is($standby->safe_psql('postgres', "SELECT coalesce(($report), '<null>')"), '<null>',
	'standby: agrees after replay');

# a write on the independent server invalidates the primary's copy too:
# same database name, same tags
is($primary->safe_psql('postgres', q{SELECT twocache_get('orders:n', 'SELECT count(*) FROM orders')}),
	'3', 'primary: orders:n cached');
$other->safe_psql('postgres', q{INSERT INTO orders VALUES (4, 2, 1)});
ok(poll($primary, not_in_l1_sql('orders:n')), "primary: the other server's commit dropped orders:n");

no_crash_in_log($_) foreach ($primary, $standby, $other);
done_testing();
