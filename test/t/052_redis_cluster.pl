# Redis Cluster (SPEC.md section 9): two servers on a cluster of three
# masters with a replica each, through redis-cluster:// URLs with a
# password.  Keys spread over every master; values written by one server
# read by the other from L2; invalidation messages reaching the other
# server's worker whichever master each subscribes to; read-through fills;
# a key's fill fence in its own slot; a resharding (MOVED), a slot
# migration in progress (ASK) and a master failover while both servers
# read and write.
#
# Tags across slots: a tag's set and its fence share a slot, its keys are
# in other slots; values written with tags on one server, a read-through
# fill with tags, and a tag invalidation deleting keys on every master and
# dropping them on the other server, with no CROSSSLOT; a fill whose tag is
# invalidated while it fetches is stored nowhere.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheRedisCluster;
use TwoCacheTest;

my $PW = 'cluster-secret';
my $NKEYS = 48;

# Both servers start in local mode and are pointed at the cluster below.
my $node1 = l2_node('node1', '', conf => "twocache.instance_id = 'node-one'");
my $node2 = l2_node('node2', '', conf => "twocache.instance_id = 'node-two'");

my $cluster = TwoCacheRedisCluster->new(
	masters => 3,
	replicas_per_master => 1,
	password => $PW);
my @m = $cluster->masters;

# node1 lists the masters in one order, node2 in another: their
# subscriptions are on different masters.
foreach my $pair ([ $node1, [ @m[ 0, 1, 2 ] ] ], [ $node2, [ @m[ 1, 2, 0 ] ] ])
{
	my ($node, $seeds) = @$pair;
	my $url = $cluster->url(seeds => $seeds);
	$node->safe_psql('postgres', "ALTER SYSTEM SET twocache.redis_url = '$url'");
	$node->reload;
}

my @COUNTERS = qw(l2_hits l2_misses fetches invalidations_sent invalidations_received
  redis_errors);

sub stats
{
	my ($node) = @_;
	my %s;
	@s{@COUNTERS} = split /\|/,
	  $node->safe_psql('postgres', 'SELECT ' . join(', ', @COUNTERS) . ' FROM twocache_stats');
	return \%s;
}

sub delta
{
	my ($node, $before) = @_;
	my $now = stats($node);
	return { map { $_ => $now->{$_} - $before->{$_} } @COUNTERS };
}

# The values of keys <prefix>1..<prefix>n read on $node (or in session $s).
sub read_all_sql
{
	my ($prefix, $n) = @_;
	return "SELECT string_agg(coalesce(twocache_get('$prefix' || i), '-'), ',' ORDER BY i) "
	  . "FROM generate_series(1, $n) i";
}

sub expected
{
	my ($vprefix, $n) = @_;
	return join(',', map { "$vprefix$_" } 1 .. $n);
}

sub set_all_sql
{
	my ($prefix, $vprefix, $n) = @_;
	return "SELECT count(*) FILTER (WHERE twocache_set('$prefix' || i, '$vprefix' || i)) "
	  . "FROM generate_series(1, $n) i";
}

# A background session that keeps its backend, and so its cluster
# connection and slot map, from one statement to the next.
sub session
{
	my ($node) = @_;
	return $node->background_psql('postgres', on_error_stop => 0);
}

# The value of a Redis key, from the master that serves it now, without
# the generation it was written in (G<n>:, once the generation was bumped).
sub redis_get
{
	my ($key) = @_;
	my $v = $cluster->node_for_key($key)->command('GET', $key);
	$v =~ s/^G\d+:// if defined $v;
	return $v;
}

# CRC16 (XMODEM) and the fence of a key's slot, as l2.c names it: for each
# slot the first string of 1..3 characters of 0-9A-Za-z that hashes to it.
sub crc16
{
	my ($s) = @_;
	my $crc = 0;
	foreach my $c (unpack 'C*', $s)
	{
		$crc ^= $c << 8;
		$crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) & 0xffff : ($crc << 1) & 0xffff
		  for 1 .. 8;
	}
	return $crc;
}
my %slot_tag;

sub fence_of_slot
{
	my ($slot) = @_;
	if (!%slot_tag)
	{
		my @alpha = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');
		my @strings = @alpha;
		foreach my $len (1 .. 3)
		{
			foreach my $s (@strings)
			{
				my $sl = crc16($s) & 16383;
				$slot_tag{$sl} //= $s;
			}
			last if keys %slot_tag == 16384;
			@strings = map { my $p = $_; map { $p . $_ } @alpha } @strings;
		}
	}
	return "fence:{$slot_tag{$slot}}";
}

# ---------------------------------------------------------------------
# Connected; the worker subscribed on one master
# ---------------------------------------------------------------------
is(crc16('123456789'), 0x31c3, 'the test computes CRC16 (XMODEM) as Redis does');

my %subscribes;
foreach my $node ($node1, $node2)
{
	my $name = $node->name;
	ok(poll($node, q{SELECT subscribed FROM twocache_status()}),
		"$name: the worker subscribed");
	$subscribes{$name} =
	  $node->safe_psql('postgres', 'SELECT subscribed FROM twocache_status()') eq 't';
	is($node->safe_psql('postgres', 'SELECT mode FROM twocache_status()'),
		'two-layer', "$name: two-layer mode");
}
my $workers_subscribe = $subscribes{node1} && $subscribes{node2};
ok($workers_subscribe, 'both workers subscribed (the sections below need it)');

# Which master holds the subscription of each server (CLIENT SETNAME).
sub subscribed_on
{
	my ($id, $c) = @_;
	$c //= $cluster;
	foreach my $n ($c->masters, map { $c->replicas_of($_) } $c->masters)
	{
		my $list = eval { $n->command('CLIENT', 'LIST', { timeout => 2 }) } // '';
		return $n if $list =~ /name=twocache:$id:subscriber:/;
	}
	return undef;
}

SKIP:
{
	skip 'the worker does not subscribe through TwoCacheRedisConnectSubscriber yet', 2
	  unless $workers_subscribe;
	my $s1 = subscribed_on('node-one');
	my $s2 = subscribed_on('node-two');
	ok($s1 && $s2, 'each worker has a subscription on a node of the cluster');
	isnt($s1 && $s1->port, $s2 && $s2->port, 'on different masters (their seeds come in another order)');
}

# ---------------------------------------------------------------------
# Keys over all three masters: written by node1, read by node2 from L2
# ---------------------------------------------------------------------
my %owner_ports;
foreach my $i (1 .. $NKEYS)
{
	my $slot = $cluster->keyslot("db:postgres:k$i");
	$owner_ports{ $cluster->node_for_slot($slot)->port }++;
}
is(scalar(keys %owner_ports), 3, "the $NKEYS keys are served by all three masters");

is($node1->safe_psql('postgres', set_all_sql('k', 'v', $NKEYS)),
	$NKEYS, "node1: $NKEYS twocache_set calls write");
my @bad = grep { (redis_get("db:postgres:k$_") // '') ne "vv$_" } 1 .. $NKEYS;
is(scalar(@bad), 0, "each key is in Redis on the master of its slot") or diag "bad: @bad";

my $b2 = stats($node2);
is($node2->safe_psql('postgres', read_all_sql('k', $NKEYS)),
	expected('v', $NKEYS), 'node2: reads every value node1 wrote');
my $d2 = delta($node2, $b2);
is($d2->{l2_hits}, $NKEYS, "node2: from L2 ($NKEYS hits)");
is($d2->{fetches} + $d2->{redis_errors}, 0, 'node2: no fetch, no Redis error');

# Connections name themselves and authenticate on every master they use.
{
	my $s = session($node2);
	$s->query_safe('SELECT twocache_flush_local()');
	$s->query_safe(read_all_sql('k', $NKEYS));
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	my @named = grep {
		($_->command('CLIENT', 'LIST') // '') =~ /name=twocache:node-two:backend:$pid\b/
	} $cluster->masters;
	is(scalar(@named), 3, "node2: a session's backend has a named connection to each master");
	$s->quit;
}

# ---------------------------------------------------------------------
# Invalidations: from each server to the other, whichever master each is
# subscribed on
# ---------------------------------------------------------------------
SKIP:
{
	skip 'the worker does not subscribe through TwoCacheRedisConnectSubscriber yet', 5
	  unless $workers_subscribe;

	# node2 holds every k in L1 now; node1 rewrites them
	my $r2 = stats($node2)->{invalidations_received};
	$node1->safe_psql('postgres', set_all_sql('k', 'w', $NKEYS));
	ok( poll($node2, "SELECT invalidations_received >= $r2 + $NKEYS FROM twocache_stats"),
		"node2: received node1's $NKEYS messages");
	is($node2->safe_psql('postgres', read_all_sql('k', $NKEYS)),
		expected('w', $NKEYS), "node2: reads node1's new values");

	# and the other way
	$node1->safe_psql('postgres', read_all_sql('k', $NKEYS));
	my $r1 = stats($node1)->{invalidations_received};
	$node2->safe_psql('postgres', set_all_sql('k', 'x', $NKEYS));
	ok( poll($node1, "SELECT invalidations_received >= $r1 + $NKEYS FROM twocache_stats"),
		"node1: received node2's $NKEYS messages");
	is($node1->safe_psql('postgres', read_all_sql('k', $NKEYS)),
		expected('x', $NKEYS), "node1: reads node2's new values");

	# deletes
	$r2 = stats($node2)->{invalidations_received};
	$node1->safe_psql('postgres',
		"SELECT count(*) FROM generate_series(1, $NKEYS) i, twocache_del('k' || i)");
	ok( poll($node2, "SELECT invalidations_received >= $r2 + $NKEYS FROM twocache_stats"),
		"node2: received node1's $NKEYS deletes");
}

# A delete's fill fence is in the slot of its key, on the same master.
{
	$node1->safe_psql('postgres', q{SELECT twocache_set('fenced', 'f'), twocache_del('fenced')});
	my $slot = $cluster->keyslot('db:postgres:fenced');
	my $fence = fence_of_slot($slot);
	is($cluster->keyslot($fence), $slot, "the fence of a key ($fence) is in the key's slot");
	like($cluster->node_for_slot($slot)->command('GET', $fence) // '',
		qr/^\d{16}$/, "a delete set it to Redis's clock, on the key's master");
	is(redis_get('db:postgres:fenced'), undef, 'and deleted the key');
}
is($node2->safe_psql('postgres', read_all_sql('k', $NKEYS)),
	join(',', ('-') x $NKEYS), 'node2: every deleted key is gone') if $workers_subscribe;

# Hash tags, as the cluster spec has them: the bytes between the first '{'
# and the first '}' after it, if any; "{}" and a '{' alone hash the whole
# key.  A delete touches the key and its fence in one script: were the
# extension's slot of a key not Redis's, the fence would be in another slot
# and Redis would refuse the script (CROSSSLOT).
{
	my @keys = ('{user1000}.following', '{user1000}.followers', 'foo{}{bar}',
		'foo{{bar}}zap', 'foo{bar}{zap}', 'x{', '}{y}', '{}', '{', 'a}b{c');
	my $e1 = stats($node1)->{redis_errors};
	my @bad;
	foreach my $k (@keys)
	{
		(my $lit = $k) =~ s/'/''/g;
		my $r = $node1->safe_psql('postgres',
			"SELECT twocache_set('$lit', 'h'), twocache_del('$lit')");
		my $slot = $cluster->keyslot("db:postgres:$k");
		my $fence = fence_of_slot($slot);
		push @bad, $k
		  unless $r eq 't|t'
		  && $cluster->node_for_slot($slot)->command('EXISTS', $fence) == 1
		  && !defined redis_get("db:postgres:$k");
	}
	is(scalar(@bad), 0, 'keys with braces: set, deleted, and their fences in their slots')
	  or diag "bad: @bad";
	is($cluster->keyslot('db:postgres:{user1000}.following'),
		$cluster->keyslot('db:postgres:{user1000}.followers'),
		'(the two keys of one tag share a slot)');
	is(stats($node1)->{redis_errors} - $e1, 0, 'node1: no Redis error (no CROSSSLOT)');
}

# ---------------------------------------------------------------------
# Read-through: a fetch fills L2 on the key's master; the other server
# reads it from there
# ---------------------------------------------------------------------
{
	my $b1 = stats($node1);
	is( $node1->safe_psql(
			'postgres', qq{
SELECT string_agg(twocache_get('rt' || i, format('SELECT %L', 'fetched' || i)), ',' ORDER BY i)
FROM generate_series(1, $NKEYS) i}),
		expected('fetched', $NKEYS),
		'node1: twocache_get with a fetch query returns what it fetched');
	my $d1 = delta($node1, $b1);
	is($d1->{fetches}, $NKEYS, "node1: $NKEYS fetches");
	is($d1->{redis_errors}, 0, 'node1: no Redis error (fills and their fences share slots)');
	my @missing = grep { (redis_get("db:postgres:rt$_") // '') ne "vfetched$_" } 1 .. $NKEYS;
	is(scalar(@missing), 0, 'every fill is in Redis') or diag "missing: @missing";
	$b2 = stats($node2);
	is($node2->safe_psql('postgres', read_all_sql('rt', $NKEYS)),
		expected('fetched', $NKEYS), 'node2: reads them');
	is(delta($node2, $b2)->{l2_hits}, $NKEYS, 'node2: from L2');
}

# ---------------------------------------------------------------------
# Tags across slots
# ---------------------------------------------------------------------
{
	my $b1 = stats($node1);
	is( $node1->safe_psql(
			'postgres', qq{
SELECT count(*) FILTER (WHERE twocache_set('tg' || i, 'tagged' || i, NULL, NULL,
										   ARRAY['t-all', 't-' || (i % 3)]))
FROM generate_series(1, $NKEYS) i}),
		$NKEYS, 'node1: writes keys with two tags each');
	my %masters = map { $cluster->node_for_key("db:postgres:tg$_")->port => 1 } 1 .. $NKEYS;
	is(scalar(keys %masters), 3, '(the tagged keys are on every master)');
	isnt($cluster->keyslot('tag:db:postgres:t-all'), $cluster->keyslot('db:postgres:tg1'),
		"(a tag's set is in another slot than its keys)");
	is($cluster->node_for_key('tag:db:postgres:t-all')->command('SCARD', 'tag:db:postgres:t-all'),
		$NKEYS, "the tag's set holds every key");
	is( $node1->safe_psql(
			'postgres', q{SELECT twocache_get('tf', $$SELECT 'filled with tags'$$, NULL, ARRAY['t-all'])}),
		'filled with tags', 'node1: a read-through fill with a tag');
	like(redis_get('db:postgres:tf') // '', qr/filled with tags/, '... is stored in Redis');
	is($node2->safe_psql('postgres', read_all_sql('tg', $NKEYS)),
		expected('tagged', $NKEYS), 'node2: reads the tagged keys (into L1)');
	is(delta($node1, $b1)->{redis_errors}, 0, 'node1: no Redis error (no CROSSSLOT)');

	$b1 = stats($node1);
	is($node1->safe_psql('postgres', q{SELECT twocache_invalidate_tag('t-all') >= 0}), 't',
		'node1: invalidates the tag');
	is(delta($node1, $b1)->{redis_errors}, 0, 'node1: with no Redis error');
	my @left = grep { defined redis_get("db:postgres:tg$_") } 1 .. $NKEYS;
	is(scalar(@left), 0, 'every tagged key is gone from Redis, on every master')
	  or diag "left: @left";
	ok(!defined redis_get('db:postgres:tf'), 'and the filled one');
	ok(poll($node2, not_in_l1_sql('tg1')) && poll($node2, not_in_l1_sql("tg$NKEYS")),
		"node2's worker dropped them from L1");
	is($node2->safe_psql('postgres', read_all_sql('tg', $NKEYS)),
		join(',', ('-') x $NKEYS), 'node2: reads none of them');

	# a fill whose tag is invalidated while it fetches: stored nowhere
	$node2->safe_psql('postgres', q{CREATE TABLE gate (v text); INSERT INTO gate VALUES ('old')});
	my $lock = session($node2);
	my $filler = session($node2);
	$lock->query_safe('BEGIN');
	$lock->query_safe('LOCK TABLE gate IN ACCESS EXCLUSIVE MODE');
	$filler->{stdin} .= qq{SELECT twocache_get('tfence', 'SELECT v FROM gate', NULL, ARRAY['t-gate']);\n\\echo fill done\n};
	$filler->{run}->pump_nb;
	ok( poll(
			$node2, q{SELECT count(*) = 1 FROM pg_stat_activity
				 WHERE wait_event_type = 'Lock' AND query LIKE '%tfence%'}),
		'node2: a fill with tag t-gate waits in its fetch');
	is($node1->safe_psql('postgres', q{SELECT twocache_invalidate_tag('t-gate') >= 0}), 't',
		'node1: invalidates t-gate meanwhile');
	$lock->query_safe('COMMIT');
	$filler->{run}->pump until $filler->{stdout} =~ /fill done/;
	like($filler->{stdout}, qr/old/, 'the fill returned what it read');
	ok(!defined redis_get('db:postgres:tfence'), 'but did not store it in Redis');
	is(in_l1($node2, 'tfence'), 'f', 'nor in L1');
	$_->quit foreach ($filler, $lock);
}

# ---------------------------------------------------------------------
# Resharding: slots move with their keys; sessions that keep their slot
# map follow MOVED, and Redis errors do not pile up
# ---------------------------------------------------------------------
{
	$node1->safe_psql('postgres', set_all_sql('r', 'r', $NKEYS));
	my $s1 = session($node1);
	my $s2 = session($node2);
	is($s2->query_safe(read_all_sql('r', $NKEYS)), expected('r', $NKEYS),
		'node2: a session reads the keys (and loads its slot map)');
	$s1->query_safe('SELECT twocache_flush_local()');
	is($s1->query_safe(read_all_sql('r', $NKEYS)), expected('r', $NKEYS),
		'node1: a session reads them from L2 (and loads its slot map)');

	# move enough of the first master's slots to take some of the keys
	my ($from, $to) = ($m[0], $m[1]);
	my %from_slots = map { $_ => 1 } $cluster->slots_of($from);
	my @key_slots = sort { $a <=> $b }
	  grep { $from_slots{$_} } map { $cluster->keyslot("db:postgres:r$_") } 1 .. $NKEYS;
	my @fs = $cluster->slots_of($from);
	my ($n) = grep { $fs[$_] == $key_slots[1] } 0 .. $#fs;
	my $moved = $cluster->reshard(from => $from, to => $to, slots => $n + 1);
	ok($moved, 'resharded ' . ($n + 1) . ' slots');
	my %moved = map { $_ => 1 } @{ $moved // [] };
	my @moved_keys = grep { $moved{ $cluster->keyslot("db:postgres:r$_") } } 1 .. $NKEYS;
	cmp_ok(scalar(@moved_keys), '>=', 1, 'keys moved with them: r' . join(', r', @moved_keys));

	my $e1 = stats($node1)->{redis_errors};
	my $e2 = stats($node2)->{redis_errors};
	my $off1 = log_offset($node1);
	my $off2 = log_offset($node2);
	$_->query_safe('SET log_min_messages = debug2') foreach ($s1, $s2);
	$s2->query_safe('SELECT twocache_flush_local()');
	is($s2->query_safe(read_all_sql('r', $NKEYS)), expected('r', $NKEYS),
		'node2: the session reads every key from L2 after the resharding');
	ok(wait_log($node2, qr/Redis Cluster MOVED for slot \d+ to 127\.0\.0\.1:${\ $to->port}/, $off2),
		'node2: it followed MOVED to the new master');
	is($s1->query_safe(set_all_sql('r', 's', $NKEYS)), $NKEYS,
		'node1: the session writes every key after the resharding');
	is(redis_get("db:postgres:r$moved_keys[0]"), "vs$moved_keys[0]",
		'a moved key was written on its new master');
	ok(wait_log($node1, qr/Redis Cluster MOVED for slot \d+ to 127\.0\.0\.1:${\ $to->port}/, $off1),
		'node1: it followed MOVED to the new master');
	if ($workers_subscribe)
	{
		ok(poll($node2, "SELECT twocache_get('r$moved_keys[0]') = 's$moved_keys[0]'"),
			"node2: node1's write of a moved key reached it");
	}
	$_->query_safe('RESET log_min_messages') foreach ($s1, $s2);
	$s1->query_safe(
		"SELECT count(*) FROM generate_series(1, $NKEYS) i, twocache_del('r' || i)");
	my @left = grep { defined redis_get("db:postgres:r$_") } 1 .. $NKEYS;
	is(scalar(@left), 0, 'node1: the session deletes every key after the resharding')
	  or diag "left: @left";
	is(stats($node1)->{redis_errors} - $e1, 0, 'node1: no Redis error (MOVED followed)');
	is(stats($node2)->{redis_errors} - $e2, 0, 'node2: no Redis error (MOVED followed)');
	$s1->quit;
	$s2->quit;
}

# ---------------------------------------------------------------------
# A slot migration in progress: keys moved already are served by the
# target after ASKING, the others by the source, the map stays
# ---------------------------------------------------------------------
{
	my $key = 'a1';
	my $slot = $cluster->keyslot("db:postgres:$key");
	my $src = $cluster->node_for_slot($slot);
	my ($dst) = grep { $_ != $src } $cluster->masters;
	my $fence = fence_of_slot($slot);

	# keys the target holds in the slot (it answers MOVED to plain reads)
	my $on_dst = sub {
		my %k = map { $_ => 1 } @{ $dst->command('CLUSTER', 'GETKEYSINSLOT', $slot, 100) };
		return $k{ $_[0] } ? 1 : 0;
	};

	# the fence exists (a delete), then the key; both will move
	$node1->safe_psql('postgres', "SELECT twocache_del('$key'), twocache_set('$key', 'old')");
	my $s1 = session($node1);
	my $s2 = session($node2);
	is($s2->query_safe("SELECT twocache_get('$key')"), 'old', 'node2: a session reads the key');
	$s1->query_safe("SELECT twocache_get('$key')");

	my $mig = $cluster->migrate_slot_start(
		slot => $slot,
		to => $dst,
		keys => [ "db:postgres:$key", $fence ]);
	my $ask = eval { $src->command('GET', "db:postgres:$key"); '' } // $@;
	like($ask, qr/ASK $slot /, 'the source answers ASK for the moved key');

	my $e1 = stats($node1)->{redis_errors};
	my $e2 = stats($node2)->{redis_errors};
	my $off2 = log_offset($node2);
	$s2->query_safe('SET log_min_messages = debug2');
	$s2->query_safe('SELECT twocache_flush_local()');
	is($s2->query_safe("SELECT twocache_get('$key')"), 'old',
		'node2: reads the moved key from the target (ASK)');
	ok(wait_log($node2, qr/Redis Cluster ASK for slot $slot to 127\.0\.0\.1:${\ $dst->port}/, $off2),
		'node2: it followed ASK');
	$s2->query_safe('RESET log_min_messages');
	is($s1->query_safe("SELECT twocache_set('$key', 'new')"), 't',
		'node1: writes it (ASK)');
	is($on_dst->("db:postgres:$key"), 1, 'on the target');
	like(eval { $src->command('GET', "db:postgres:$key"); '' } // $@,
		qr/ASK $slot /, 'not on the source, which still answers ASK for it');
	if ($workers_subscribe)
	{
		ok(poll($node2, "SELECT twocache_get('$key') = 'new'"),
			"node2: node1's write during the migration reached it");
	}
	is($s1->query_safe("SELECT twocache_del('$key')"), 't',
		'node1: deletes it (the key and its fence, on the target)');
	is($on_dst->("db:postgres:$key"), 0, 'gone from the target');
	is($on_dst->($fence), 1, 'and its fence is there');
	is(stats($node1)->{redis_errors} - $e1, 0, 'node1: no Redis error (ASK followed)');
	is(stats($node2)->{redis_errors} - $e2, 0, 'node2: no Redis error (ASK followed)');

	ok($cluster->migrate_slot_finish($mig), 'the migration ends');
	is($s1->query_safe("SELECT twocache_set('$key', 'after')"), 't',
		'node1: writes the key after the migration (MOVED)');
	$s2->query_safe('SELECT twocache_flush_local()');
	is(redis_get("db:postgres:$key"), 'vafter', 'on the target, its master now');
	is($s2->query_safe("SELECT twocache_get('$key')"), 'after', 'node2: reads it (MOVED)');
	$s1->quit;
	$s2->quit;
}

# ---------------------------------------------------------------------
# A master fails over to its replica while both servers read and write
# ---------------------------------------------------------------------
{
	# a load of sets and gets on each server, in one long statement each
	my @load;
	foreach my $node ($node1, $node2)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[
				$node->installed_command('psql'), '-XAtq',
				'-d', $node->connstr('postgres'),
				'-c', q{
DO $$
BEGIN
  FOR i IN 1..600 LOOP
    PERFORM twocache_set('load' || (i % 30), 'l' || i);
    PERFORM twocache_get('load' || ((i + 7) % 30));
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;
SELECT 'done';}
			],
			'<', '/dev/null', '>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		push @load, [ $h, \$out, \$err ];
	}

	# a value written before the failover: a miss after it (it may be lost)
	is($node1->safe_psql('postgres', q{SELECT twocache_set('prefailover', 'old')}), 't',
		'node1: writes a key before the failover');
	my $off1 = log_offset($node1);
	my $off2 = log_offset($node2);
	my $old = $cluster->node_for_key('db:postgres:load1');
	my $new = $cluster->failover($old);
	ok($new, 'CLUSTER FAILOVER: the replica of the master of load1 took over');
	foreach my $l (@load)
	{
		$l->[0]->finish;
		is(${ $l->[1] }, "done\n", 'a server read and wrote through the failover')
		  or diag ${ $l->[2] };
	}

	# both keep working: each write is read by the other from L2
	ok( TwoCacheRedis::poll_until(
			"node1's writes to reach the new master",
			sub {
				$node1->safe_psql('postgres', set_all_sql('load', 'z', 30));
				my @not = grep { (redis_get("db:postgres:load$_") // '') ne "vz$_" } 1 .. 29;
				return (!@not, "not there: @not");
			}),
		'node1: writes every load key after the failover');
	is($cluster->node_for_key('db:postgres:load1')->port, $new ? $new->port : -1,
		'load1 is served by the new master');
	my $flushed = qr/(a Redis Cluster slot changed owner|twocache worker unsubscribed); flushed/;
	ok(wait_log($node1, $flushed, $off1) && wait_log($node2, $flushed, $off2),
		'both workers saw the change of owner (or lost their subscription) and flushed L1');
	my $bumped = qr/a Redis Cluster replica took over from its master; bumped the cache generation/;
	ok(wait_log($node1, $bumped, $off1) || wait_log($node2, $bumped, $off2),
		'a worker saw a failover and bumped the cache generation');
	# (node2 never read it: not in its L1, so this reads Redis)
	ok(poll($node2, q{SELECT twocache_get('prefailover') IS NULL}),
		'node2: a value written before the failover is a miss');
	$node2->safe_psql('postgres', 'SELECT twocache_flush_local()');
	is($node2->safe_psql('postgres', read_all_sql('load', 29)), expected('z', 29),
		'node2: reads them after the failover');
	my $e1 = stats($node1)->{redis_errors};
	my $e2 = stats($node2)->{redis_errors};
	$node1->safe_psql('postgres', set_all_sql('load', 'y', 30));
	$node2->safe_psql('postgres', read_all_sql('load', 30));
	is(stats($node1)->{redis_errors} - $e1, 0, 'node1: no more Redis errors');
	is(stats($node2)->{redis_errors} - $e2, 0, 'node2: no more Redis errors');
	if ($workers_subscribe)
	{
		ok(poll($node2, "SELECT twocache_get('load1') = 'y1'"),
			"node2: node1's writes after the failover reach it");
		ok(poll($_, 'SELECT subscribed FROM twocache_status()'),
			$_->name . ': the worker is subscribed after the failover')
		  foreach ($node1, $node2);
	}
}

$cluster->stop;

# ---------------------------------------------------------------------
# rediss-cluster://: TLS to every master (the certificate names
# 127.0.0.1, as CLUSTER SLOTS does)
# ---------------------------------------------------------------------
{
	my $tls = TwoCacheRedisCluster->new(
		masters => 3,
		replicas_per_master => 0,
		password => $PW,
		tls => 1);
	my $ca = ($tls->masters)[0]->ca_file;
	like($tls->url, qr{^rediss-cluster://}, 'a TLS cluster');
	$node1->safe_psql('postgres', "ALTER SYSTEM SET twocache.redis_tls_ca_file = '$ca'");
	$node1->safe_psql('postgres', "ALTER SYSTEM SET twocache.redis_url = '${\ $tls->url}'");
	$node1->reload;
	ok( $workers_subscribe
		? TwoCacheRedis::poll_until('a subscription over TLS',
			sub { return (defined subscribed_on('node-one', $tls), 'none yet') })
		: poll($node1, q{
SELECT coalesce(last_error, '') LIKE '%needs a connection to one node%'
FROM twocache_status()}),
		'node1: the worker subscribed on a master over TLS (or said why it cannot)');
	$node1->safe_psql('postgres', 'SELECT twocache_flush_local()');
	my $e1 = stats($node1)->{redis_errors};
	is($node1->safe_psql('postgres', set_all_sql('t', 't', $NKEYS)), $NKEYS,
		'node1: writes keys over TLS');
	my @bad = grep {
		my $k = "db:postgres:t$_";
		(($tls->node_for_key($k)->command('GET', $k) // '') =~ s/^G\d+://r) ne "vt$_"
	} 1 .. $NKEYS;
	is(scalar(@bad), 0, 'each on the master of its slot') or diag "bad: @bad";
	$node1->safe_psql('postgres', 'SELECT twocache_flush_local()');
	my $b1 = stats($node1);
	is($node1->safe_psql('postgres', read_all_sql('t', $NKEYS)), expected('t', $NKEYS),
		'node1: reads them back over TLS');
	is(delta($node1, $b1)->{l2_hits}, $NKEYS, 'node1: from L2');
	is(stats($node1)->{redis_errors} - $e1, 0, 'node1: no Redis error over TLS');
	$tls->stop;
}

no_crash_in_log($_) foreach ($node1, $node2);

$node1->stop;
$node2->stop;
done_testing();
