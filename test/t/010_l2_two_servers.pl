# Two independent servers sharing one Redis (SPEC.md sections 2, 3 and 5):
# read-through from L2 without a fetch, write-through and delete dropping
# the other server's L1 by message, keys of any bytes surviving the
# messages, own messages skipped, twocache_mget, not-found placeholders and
# TTLs in L2, only_if decided by Redis, and the Redis key layout of each
# scope with twocache.key_prefix.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(unixsocket => 1);

# The key tests need UTF-8.
my @UTF8 = (extra => [ '--encoding=UTF8', '--locale=C' ]);

my @COUNTERS = qw(l1_hits l1_misses l2_hits l2_misses negative_hits fetches
  invalidations_sent invalidations_received redis_errors);

sub stats
{
	my ($node) = @_;
	my %s;
	@s{@COUNTERS} = split /\|/,
	  $node->safe_psql('postgres', 'SELECT ' . join(', ', @COUNTERS) . ' FROM twocache_stats');
	return \%s;
}

# Counter changes since $before.
sub delta
{
	my ($node, $before) = @_;
	my $now = stats($node);
	return { map { $_ => $now->{$_} - $before->{$_} } @COUNTERS };
}

# Wait until $node's worker has applied at least $n messages in all.  The
# worker drops the key from L1 before it counts the message, so once the
# count is reached the drops are done.
sub wait_received
{
	my ($node, $n) = @_;
	return poll($node, "SELECT invalidations_received >= $n FROM twocache_stats");
}

my $node1 = l2_node('node1', $redis, @UTF8, conf => "twocache.instance_id = 'node-one'");
my $node2 = l2_node('node2', $redis, @UTF8);

# ---------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------
foreach my $node ($node1, $node2)
{
	my $name = $node->name;
	ok( poll($node, q{SELECT subscribed FROM twocache_status()}),
		"$name: the worker subscribes");
	is( $node->safe_psql(
			'postgres', q{
SELECT mode, redis_connected, subscribed, reconnects, local_flushes >= 1,
	   worker_pid = (SELECT pid FROM pg_stat_activity
					 WHERE backend_type = 'twocache worker')
FROM twocache_status()}),
		'two-layer|t|t|0|t|t',
		"$name: two-layer mode, connected, subscribed, no reconnect yet, "
		  . "L1 flushed at the first subscribe, worker_pid is the worker");
	is($node->safe_psql('postgres', 'SELECT redis_node, redis_role FROM twocache_status()'),
		$redis->host . ':' . $redis->port . '|master',
		"$name: twocache_status shows the Redis node in use and its role");
}
is($node1->safe_psql('postgres', 'SELECT instance_id FROM twocache_status()'),
	'node-one', 'node1: instance_id as configured');
my $id2 = $node2->safe_psql('postgres', 'SELECT instance_id FROM twocache_status()');
my %worker_pid =
  map { $_->name => $_->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()') }
  ($node1, $node2);
like($id2, qr/^[0-9a-f]{16}$/, 'node2: a generated 16-hex-digit instance_id');

# ---------------------------------------------------------------------
# Read-through: node1 fetches and fills L2, node2 reads L2 without a fetch
# ---------------------------------------------------------------------
{
	my $s1 = stats($node1);
	is($node1->safe_psql('postgres', q{SELECT twocache_get('rt', 'SELECT ''v1''')}),
		'v1', 'node1: read-through fetches');
	my $d1 = delta($node1, $s1);
	is($d1->{fetches}, 1, 'node1: one fetch');
	is($d1->{l2_misses}, 1, 'node1: after an L2 miss');

	is($redis->cli('GET', 'db:postgres:rt'), 'vv1',
		"L2 holds 'v' + the value under db:<dbname>:<key>");
	is($redis->cli('PTTL', 'db:postgres:rt'), '-1', 'no TTL in L2 (default_ttl 0)');

	my $s2 = stats($node2);
	is( $node2->safe_psql('postgres', q{SELECT twocache_get('rt', 'SELECT ''other''')}),
		'v1', 'node2: reads the value node1 fetched');
	my $d2 = delta($node2, $s2);
	is($d2->{fetches}, 0, 'node2: no fetch');
	is($d2->{l1_misses}, 1, 'node2: an L1 miss');
	is($d2->{l2_hits}, 1, 'node2: an L2 hit');
	is(in_l1($node2, 'rt'), 't', 'node2: the value is now in L1');

	$s2 = stats($node2);
	is($node2->safe_psql('postgres', q{SELECT twocache_get('rt')}), 'v1',
		'node2: reads again');
	$d2 = delta($node2, $s2);
	is($d2->{l1_hits} . ' ' . $d2->{l2_hits}, '1 0', 'node2: the second read is an L1 hit');
}

# ---------------------------------------------------------------------
# A set on node1 drops node2's L1 copy; node1 skips its own message
# ---------------------------------------------------------------------
{
	my $s1 = stats($node1);
	my $s2 = stats($node2);
	is($node1->safe_psql('postgres', q{SELECT twocache_set('rt', 'v2')}),
		't', 'node1: set');
	is($redis->cli('GET', 'db:postgres:rt'), 'vv2', 'node1: set wrote L2');
	ok(wait_received($node2, $s2->{invalidations_received} + 1),
		"node2: received node1's message");
	is(in_l1($node2, 'rt'), 'f', "node2: the set dropped its L1 copy");
	is(delta($node2, $s2)->{invalidations_received}, 1, 'node2: one message received');
	is(delta($node1, $s1)->{invalidations_sent}, 1, 'node1: one message sent');

	$s2 = stats($node2);
	is($node2->safe_psql('postgres', q{SELECT twocache_get('rt', 'SELECT ''other''')}),
		'v2', 'node2: reads the new value');
	is(delta($node2, $s2)->{l2_hits}, 1, 'node2: from L2');
	is(delta($node2, $s2)->{fetches}, 0, 'node2: without a fetch');

	# Redis delivers one subscriber's messages in order: once node1 has
	# received node2's marker, it has also seen (and skipped) its own
	# message about 'rt'.
	is($node2->safe_psql('postgres', q{SELECT twocache_set('marker', 'm')}),
		't', 'node2: set a marker');
	ok( poll($node1,
			"SELECT invalidations_received > $s1->{invalidations_received} FROM twocache_stats"),
		"node1: received node2's marker");
	is(delta($node1, $s1)->{invalidations_received}, 1,
		'node1: only the marker was applied, not its own message');
	is(in_l1($node1, 'rt'), 't', 'node1: keeps its own new value in L1');
	$s1 = stats($node1);
	is($node1->safe_psql('postgres', q{SELECT twocache_get('rt')}), 'v2',
		'node1: reads its new value');
	is(delta($node1, $s1)->{l1_hits}, 1, 'node1: as an L1 hit');
}

# ---------------------------------------------------------------------
# A del on node1 drops node2's L1 copy
# ---------------------------------------------------------------------
{
	is(in_l1($node2, 'rt'), 't', 'node2: has rt in L1');
	my $s2 = stats($node2);
	is($node1->safe_psql('postgres', q{SELECT twocache_del('rt')}), 't', 'node1: del');
	is($redis->cli('EXISTS', 'db:postgres:rt'), '0', 'node1: del removed the key from L2');
	ok(poll($node2, not_in_l1_sql('rt')),
		'node2: the del dropped its L1 copy');
	is($node2->safe_psql('postgres', q{SELECT twocache_get('rt') IS NULL}), 't',
		'node2: the key is gone');
	is($node2->safe_psql('postgres', q{SELECT twocache_get('rt', 'SELECT ''refetched''')}),
		'refetched', 'node2: a read with a fetch query fetches');
	is(delta($node2, $s2)->{fetches}, 1, 'node2: one fetch');
	is($redis->cli('GET', 'db:postgres:rt'), 'vrefetched', "node2's fetch filled L2");
}

# ---------------------------------------------------------------------
# A message fences a fill in progress on the receiving server: the fetch
# that began before node1's del returns its value but stores it nowhere
# ---------------------------------------------------------------------
{
	my $ctl = $node2->background_psql('postgres');
	$ctl->query_safe('SELECT pg_advisory_lock(77)');
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			$node2->installed_command('psql'), '-XAtq',
			'-d', $node2->connstr('postgres') . ' application_name=tc_filler',
			'-c', q{SELECT twocache_get('fence', 'SELECT ''slow'' FROM pg_advisory_xact_lock_shared(77)')}
		],
		'<', '/dev/null', '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	ok( poll($node2, q{
SELECT wait_event = 'advisory' FROM pg_stat_activity WHERE application_name = 'tc_filler'}),
		'node2: a fetch of fence is in progress');

	my $s2 = stats($node2);
	my $rej0 = $node2->safe_psql('postgres', 'SELECT stale_fills_rejected FROM twocache_stats');
	$node1->safe_psql('postgres', q{SELECT twocache_del('fence')});
	ok(wait_received($node2, $s2->{invalidations_received} + 1),
		"node2: received node1's del of fence");
	$ctl->query_safe('SELECT pg_advisory_unlock(77)');
	$h->finish;
	is($out, "slow\n", "node2: the fetch returns its value") or diag $err;
	is($node2->safe_psql('postgres', 'SELECT stale_fills_rejected FROM twocache_stats'),
		$rej0 + 1, 'node2: the fill was rejected as stale');
	is(in_l1($node2, 'fence'), 'f', 'node2: nothing stored in L1');
	is($redis->cli('EXISTS', 'db:postgres:fence'), '0', 'nothing stored in L2');
	$ctl->quit;
}

# ---------------------------------------------------------------------
# Keys with newlines, |, :, UTF-8, control bytes and 1024 bytes survive
# the messages (and the Redis keys), and invalidate nothing else.
# ---------------------------------------------------------------------
{
	my $keys_sql = q{
CREATE TABLE keys (id int PRIMARY KEY, k text NOT NULL);
INSERT INTO keys VALUES
	(1, 'line1' || chr(10) || 'line2' || chr(13) || chr(10)),
	(2, 'a|b|c'),
	(3, 'x:y::z:'),
	(4, 'utf8-' || chr(1082) || chr(955) || chr(26085) || chr(128512)),
	(5, rpad('long|:' || chr(10), 1020, 'y') || chr(128512)),
	(6, chr(9) || ' \ ' || chr(1) || chr(127) || '"''%s%25'),
	(7, 'TC' || chr(1) || 'd' || chr(2)),
	(8, 'db:postgres:x');
-- prefixes and neighbours of those keys, which must survive
CREATE TABLE neighbours (k text NOT NULL);
INSERT INTO neighbours VALUES
	('line1'), ('line1' || chr(10) || 'line2'), ('a|b'), ('a'), ('x:y:'),
	('utf8-' || chr(1082)), (rpad('long|:' || chr(10), 1020, 'y')),
	('TC'), ('x');
};
	$node1->safe_psql('postgres', $keys_sql);
	$node2->safe_psql('postgres', $keys_sql);
	is($node1->safe_psql('postgres', 'SELECT octet_length(k) FROM keys WHERE id = 5'),
		'1024', 'the long key is 1024 bytes');

	my $n_keys = $node1->safe_psql('postgres', 'SELECT count(*) FROM keys');
	my $n_nb = $node1->safe_psql('postgres', 'SELECT count(*) FROM neighbours');
	my $count_keys = 'SELECT count(*) FROM keys WHERE k IN (SELECT twocache_local_keys())';
	my $count_nb = 'SELECT count(*) FROM neighbours WHERE k IN (SELECT twocache_local_keys())';

	$node2->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT twocache_local_set(k, 'stale') FROM keys) s;
SELECT count(*) FROM (SELECT twocache_local_set(k, 'neighbour') FROM neighbours) s;
});
	is($node2->safe_psql('postgres', $count_keys), $n_keys, 'node2: every key in L1');
	is($node2->safe_psql('postgres', $count_nb), $n_nb, 'node2: every neighbour in L1');

	my $s2 = stats($node2);
	is( $node1->safe_psql('postgres', q{SELECT bool_and(twocache_set(k, 'new' || id)) FROM keys}),
		't', 'node1: set every key');
	ok(wait_received($node2, $s2->{invalidations_received} + $n_keys),
		"node2: received node1's messages");
	is($node2->safe_psql('postgres', $count_keys), '0',
		"node2: every key dropped from L1 by node1's sets");
	is(delta($node2, $s2)->{invalidations_received}, $n_keys,
		'node2: one message per key');
	is($node2->safe_psql('postgres', $count_nb), $n_nb,
		'node2: no neighbour was dropped');
	is( $node2->safe_psql(
			'postgres',
			q{SELECT string_agg(id::text, ',' ORDER BY id) FROM keys
			  WHERE twocache_get(k) IS DISTINCT FROM 'new' || id}),
		'', 'node2: reads every new value from L2');

	# the Redis key of each is db:postgres: followed by the key's bytes
	foreach my $row (split /\n/,
		$node1->safe_psql('postgres',
			q{SELECT id || ' ' || encode(convert_to(k, 'UTF8'), 'hex') FROM keys ORDER BY id}))
	{
		my ($id, $hex) = split / /, $row;
		is($redis->command('GET', 'db:postgres:' . pack('H*', $hex)),
			"vnew$id", "key $id: its bytes follow db:postgres: in the Redis key");
	}

	$s2 = stats($node2);
	is($node2->safe_psql('postgres', $count_keys), $n_keys, 'node2: every key in L1 again');
	is($node1->safe_psql('postgres', q{SELECT bool_and(twocache_del(k)) FROM keys}),
		't', 'node1: del every key');
	ok(wait_received($node2, $s2->{invalidations_received} + $n_keys),
		"node2: received node1's messages");
	is($node2->safe_psql('postgres', $count_keys), '0',
		"node2: every key dropped from L1 by node1's dels");
	is(delta($node2, $s2)->{invalidations_received}, $n_keys,
		'node2: one message per key');
	is($node2->safe_psql('postgres', $count_nb), $n_nb,
		'node2: still no neighbour dropped');
	is( $node2->safe_psql('postgres',
			'SELECT count(*) FROM keys WHERE twocache_get(k) IS NOT NULL'),
		'0', 'node2: every key is gone');
	is($redis->cli('EXISTS', 'db:postgres:a|b|c', 'db:postgres:x:y::z:'),
		'0', 'and gone from L2');
}

# ---------------------------------------------------------------------
# twocache_mget: L1 first, then L2 for the rest
# ---------------------------------------------------------------------
{
	my $s2 = stats($node2);
	$node1->safe_psql('postgres',
		q{SELECT twocache_set('m1', 'a'), twocache_set('m2', 'b'), twocache_set('m3', 'c')});
	ok( poll($node2,
			'SELECT invalidations_received >= '
			  . ($s2->{invalidations_received} + 3) . ' FROM twocache_stats'),
		"node2: node1's three messages arrived");
	$node2->safe_psql('postgres', q{SELECT twocache_local_set('m1', 'local')});

	$s2 = stats($node2);
	is( $node2->safe_psql(
			'postgres',
			q{SELECT string_agg(key || '=' || coalesce(value, 'NULL'), ' ')
			  FROM twocache_mget(ARRAY['m1', 'm2', 'nope', 'm3'])}),
		'm1=local m2=b m3=c',
		'node2: mget returns the L1 value and the L2 values, in array order');
	my $d2 = delta($node2, $s2);
	is($d2->{l1_hits}, 1, 'node2: mget had one L1 hit');
	is($d2->{l2_hits}, 2, 'node2: and two L2 hits');
	is($d2->{fetches}, 0, 'node2: and no fetch');
}

# ---------------------------------------------------------------------
# Not-found placeholders in L2
# ---------------------------------------------------------------------
{
	my $s1 = stats($node1);
	is($node1->safe_psql('postgres', q{SELECT twocache_get('nf', 'SELECT NULL::text') IS NULL}),
		't', 'node1: a fetch that finds nothing returns NULL');
	is(delta($node1, $s1)->{fetches}, 1, 'node1: one fetch');
	is($redis->cli('GET', 'db:postgres:nf'), 'n', "L2 holds the placeholder 'n'");
	my $pttl = $redis->cli('PTTL', 'db:postgres:nf');
	ok($pttl > 0 && $pttl <= 60000,
		"the placeholder expires in L2 after not_found_ttl (PTTL $pttl)");

	my $s2 = stats($node2);
	is( $node2->safe_psql('postgres',
			q{SELECT twocache_get('nf', 'SELECT ''should not run''') IS NULL}),
		't', "node2: the placeholder from L2 answers NULL");
	is(delta($node2, $s2)->{fetches}, 0, 'node2: without running its fetch');
	is($node2->safe_psql('postgres', q{SELECT twocache_exists('nf')}), 'f',
		'node2: a placeholder does not exist');
	is($node2->safe_psql('postgres', q{SELECT twocache_ttl('nf')}), '-2',
		'node2: a placeholder has ttl -2');
}

# ---------------------------------------------------------------------
# TTL: an L1 copy filled from L2 expires when the L2 copy was to expire
# ---------------------------------------------------------------------
{
	# node2 reads only once node1's message is applied: a late one would
	# drop the copy it reads (also for lmt below)
	my $r2 = counter($node2, 'invalidations_received');
	is($node1->safe_psql('postgres', q{SELECT twocache_set('ttlk', 'tv', '3 s')}),
		't', 'node1: set with ttl 3 s');
	ok(wait_received($node2, $r2 + 1), "node2: received node1's set of ttlk");
	my $pttl = $redis->cli('PTTL', 'db:postgres:ttlk');
	ok($pttl > 0 && $pttl <= 3000, "L2 copy expires in 3 s (PTTL $pttl)");

	my $s2 = stats($node2);
	is($node2->safe_psql('postgres', q{SELECT twocache_get('ttlk')}), 'tv',
		'node2: reads the key');
	is(delta($node2, $s2)->{l2_hits}, 1, 'node2: from L2');
	is( $node2->safe_psql(
			'postgres', q{
SELECT expires_at IS NOT NULL AND expires_at <= now() + interval '3 s'
FROM twocache_entries() WHERE key = 'ttlk'}),
		't', "node2: its L1 copy expires no later than the L2 copy");
	my $ttl = $node2->safe_psql('postgres', q{SELECT twocache_ttl('ttlk')});
	ok($ttl > 0 && $ttl <= 3000, "node2: twocache_ttl is the remaining PTTL ($ttl)");

	# Make the L2 copy immortal: the L1 copy still expires on time.
	is($redis->cli('PERSIST', 'db:postgres:ttlk'), '1', 'PERSIST the L2 copy');
	ok(poll($node2, not_in_l1_sql('ttlk'), 't', 15), 'node2: the L1 copy expired');
	$s2 = stats($node2);
	is($node2->safe_psql('postgres', q{SELECT twocache_get('ttlk')}), 'tv',
		'node2: reads the key again');
	is(delta($node2, $s2)->{l2_hits}, 1, 'node2: from L2, which still has it');
	is($node2->safe_psql('postgres', q{SELECT twocache_ttl('ttlk')}), '-1',
		'node2: an L1 copy of an L2 key without expiry has none');

	# ... but never outlives twocache.local_max_ttl
	$node2->safe_psql('postgres', q{ALTER SYSTEM SET twocache.local_max_ttl = '2s'});
	$node2->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok(poll($node2, q{SELECT current_setting('twocache.local_max_ttl')}, '2s'),
		'node2: local_max_ttl reloaded');
	$r2 = counter($node2, 'invalidations_received');
	is($node1->safe_psql('postgres', q{SELECT twocache_set('lmt', 'v')}), 't',
		'node1: set without a TTL');
	ok(wait_received($node2, $r2 + 1), "node2: received node1's set of lmt");
	is($node2->safe_psql('postgres', q{SELECT twocache_get('lmt')}), 'v', 'node2: reads it');
	is( $node2->safe_psql(
			'postgres', q{
SELECT expires_at IS NOT NULL AND expires_at <= now() + interval '2 s'
FROM twocache_entries() WHERE key = 'lmt'}),
		't', 'node2: its L1 copy expires within local_max_ttl');
	$node2->safe_psql('postgres', 'ALTER SYSTEM RESET twocache.local_max_ttl');
	$node2->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok(poll($node2, q{SELECT current_setting('twocache.local_max_ttl')}, '0'),
		'node2: local_max_ttl back to 0');
}

# ---------------------------------------------------------------------
# only_if is decided by L2; exists, ttl and del see keys only in L2
# ---------------------------------------------------------------------
{
	my $s2 = stats($node2);
	is($node1->safe_psql('postgres', q{SELECT twocache_set('oi', 'a')}), 't', 'node1: set oi');
	ok( poll($node2,
			"SELECT invalidations_received > $s2->{invalidations_received} FROM twocache_stats"),
		"node2: node1's message arrived");
	is(in_l1($node2, 'oi'), 'f', 'node2: oi is not in its L1');
	is($node2->safe_psql('postgres', q{SELECT twocache_set('oi', 'b', NULL, 'absent')}),
		'f', "node2: set 'absent' does not write a key present in L2");
	is($redis->cli('GET', 'db:postgres:oi'), 'va', 'L2 unchanged');
	is($node2->safe_psql('postgres', q{SELECT twocache_set('oi-none', 'x', NULL, 'present')}),
		'f', "node2: set 'present' does not write a key absent from L2");
	is($redis->cli('EXISTS', 'db:postgres:oi-none'), '0', 'L2 unchanged');

	is($node1->safe_psql('postgres', q{SELECT twocache_get('oi')}), 'a', 'node1: oi in L1');
	is($node2->safe_psql('postgres', q{SELECT twocache_set('oi', 'c', NULL, 'present')}),
		't', "node2: set 'present' writes a key present in L2");
	ok(poll($node1, not_in_l1_sql('oi')),
		"node1: node2's conditional set dropped its L1 copy");
	is($node1->safe_psql('postgres', q{SELECT twocache_get('oi')}), 'c', 'node1: reads the new value');

	$s2 = stats($node2);
	$node1->safe_psql('postgres', q{SELECT twocache_set('l2only', 'x', '1 min')});
	ok( poll($node2,
			"SELECT invalidations_received > $s2->{invalidations_received} FROM twocache_stats"),
		"node2: node1's message arrived");
	is(in_l1($node2, 'l2only'), 'f', 'node2: l2only is not in its L1');
	is($node2->safe_psql('postgres', q{SELECT twocache_exists('l2only')}), 't',
		'node2: twocache_exists sees a key only in L2');
	my $ttl = $node2->safe_psql('postgres', q{SELECT twocache_ttl('l2only')});
	ok($ttl > 0 && $ttl <= 60000, "node2: twocache_ttl sees its PTTL ($ttl)");
	is($node2->safe_psql('postgres', q{SELECT twocache_del('l2only')}), 't',
		'node2: del of a key only in L2 returns true');
	is($redis->cli('EXISTS', 'db:postgres:l2only'), '0', 'and removes it from L2');
	is($node2->safe_psql('postgres', q{SELECT twocache_del('l2only')}), 'f',
		'node2: del of a key in neither layer returns false');
}

# ---------------------------------------------------------------------
# Messages in the documented format from elsewhere are applied; malformed
# ones, the receiver's own and those for unknown databases are ignored
# ---------------------------------------------------------------------
{
	# README "Message format": all integers big-endian
	my $message = sub {
		my (%m) = @_;
		my $db = $m{db} // 'postgres';
		return ($m{magic} // 'TC')
		  . chr($m{version} // 1)
		  . ($m{op} // 'd')
		  . chr($m{flags} // 0)
		  . pack('Q>', $m{lsn} // 0)
		  . pack('Q>', $m{sysid} // 0)
		  . chr($m{idlen} // length $m{id})
		  . $m{id}
		  . chr(length $db)
		  . $db
		  . pack('n', $m{keylen} // length $m{key})
		  . $m{key};
	};
	my $publish = sub {
		return $redis->command('PUBLISH', 'twocache:invalidate', $_[0]);
	};

	$node2->safe_psql('postgres',
		q{SELECT twocache_local_set('crafted', 'x'), twocache_local_set('keep', 'x'),
				 twocache_local_set('sentinel', 'x')});
	my $r0 = $node2->safe_psql('postgres', 'SELECT invalidations_received FROM twocache_stats');
	is($publish->($message->(id => 'elsewhere', key => 'crafted')), 2,
		'a crafted message reaches both workers');
	ok(poll($node2, not_in_l1_sql('crafted')),
		'node2: a message in the documented format drops the key');

	my $keep = 'keep';
	my $valid = $message->(id => 'elsewhere', key => $keep);
	my @bad = (
		'',
		'garbage',
		$message->(magic => 'XX', id => 'elsewhere', key => $keep),
		$message->(version => 9, id => 'elsewhere', key => $keep),
		$message->(op => 'z', id => 'elsewhere', key => $keep),
		$message->(flags => 0x80, id => 'elsewhere', key => $keep),
		$message->(idlen => 200, id => 'elsewhere', key => $keep),
		$message->(keylen => 10, id => 'elsewhere', key => $keep),
		$message->(keylen => 5000, id => 'elsewhere', key => $keep . ('k' x 4996)),
		substr($valid, 0, length($valid) - 1),
		substr($valid, 0, 10),
		$valid . 'trailing',
		$message->(id => $id2, key => $keep),
		$message->(id => 'elsewhere', db => 'nosuchdb', key => $keep),
		$message->(id => 'elsewhere', key => ''));
	$publish->($_) foreach @bad;
	$publish->($message->(id => 'elsewhere', key => 'sentinel'));
	ok(wait_received($node2, $r0 + 2), 'node2: the worker went on past the malformed messages');
	is(in_l1($node2, 'sentinel'), 'f', 'node2: and applied the valid one after them');
	is(in_l1($node2, 'keep'), 't',
		"node2: malformed messages, its own and other databases' were ignored");
	is($node2->safe_psql('postgres', 'SELECT invalidations_received FROM twocache_stats'),
		$r0 + 2, 'node2: only the two valid messages counted');
	is($node2->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()'),
		$worker_pid{node2}, 'node2: the same worker');
}

# ---------------------------------------------------------------------
# Key layout: database names are escaped, key_prefix, cluster scope
# ---------------------------------------------------------------------
{
	my $db = 'we:ird%db';
	$node1->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	$node1->safe_psql($db, 'CREATE EXTENSION twocache');
	is($node1->safe_psql($db, q{SELECT twocache_set('ek', 'ev')}), 't',
		"node1: set in database \"$db\"");
	is($redis->cli('GET', 'db:we%3Aird%25db:ek'), 'vev',
		"':' and '%' in the database name are %-escaped in the Redis key");
	is($node1->safe_psql('postgres', q{SELECT twocache_get('ek') IS NULL}), 't',
		'database scope: another database does not see the key');

	foreach my $node ($node1, $node2)
	{
		$node->safe_psql('postgres', q{ALTER SYSTEM SET twocache.key_prefix = 'app1:'});
		$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
		ok(poll($node, q{SELECT current_setting('twocache.key_prefix')}, 'app1:'),
			$node->name . ': key_prefix reloaded');
	}
	my $r2 = counter($node2, 'invalidations_received');
	is($node1->safe_psql('postgres', q{SELECT twocache_set('pk', 'pv')}), 't',
		'node1: set with key_prefix');
	ok(wait_received($node2, $r2 + 1), "node2: received node1's set of pk");
	is($redis->cli('GET', 'app1:db:postgres:pk'), 'vpv',
		'key_prefix is prepended to the Redis key');
	is($redis->cli('EXISTS', 'db:postgres:pk'), '0', 'and not stored without it');
	my $s2 = stats($node2);
	is($node2->safe_psql('postgres', q{SELECT twocache_get('pk')}), 'pv',
		'node2: reads it with the same prefix');
	is(delta($node2, $s2)->{l2_hits}, 1, 'node2: from L2');

	$node2->safe_psql('postgres', 'CREATE DATABASE other');
	$node2->safe_psql('other', 'CREATE EXTENSION twocache');
	foreach my $node ($node1, $node2)
	{
		$node->safe_psql('postgres', q{ALTER SYSTEM SET twocache.scope = 'cluster'});
		$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
		ok(poll($node, q{SELECT current_setting('twocache.scope')}, 'cluster'),
			$node->name . ': scope reloaded');
	}
	$r2 = counter($node2, 'invalidations_received');
	is($node1->safe_psql('postgres', q{SELECT twocache_set('ck', 'cv')}), 't',
		'node1: set in cluster scope');
	# before node2 reads ck: a late message would drop its copy, and the
	# drop waited for below must be the del's
	ok(wait_received($node2, $r2 + 1), "node2: received node1's set of ck");
	is($redis->cli('GET', 'app1:cluster:ck'), 'vcv',
		'cluster scope: <key_prefix>cluster:<key>');
	is($node2->safe_psql('other', q{SELECT twocache_get('ck')}), 'cv',
		'node2: another database reads the cluster-scope key');
	is(in_l1($node2, 'ck', 'other'), 't', 'node2: now in its L1');
	is($node1->safe_psql($db, q{SELECT twocache_del('ck')}), 't',
		'node1: del from yet another database');
	is($redis->cli('EXISTS', 'app1:cluster:ck'), '0', 'the key is gone from L2');
	ok(poll($node2, not_in_l1_sql('ck'), 't', 30, 'other'),
		"node2: the cluster-scope message dropped its L1 copy");
}

# ---------------------------------------------------------------------
# Other URL forms: unix:///path, and a database number
# ---------------------------------------------------------------------
my $node3 = l2_node('node3', $redis->unix_url, @UTF8);
my $node4 = l2_node('node4', $redis->url(db => 3), @UTF8);
foreach my $node ($node3, $node4)
{
	ok(poll($node, 'SELECT subscribed AND redis_connected FROM twocache_status()'),
		$node->name . ': subscribed');
}
is($node3->safe_psql('postgres', 'SELECT redis_node, redis_role FROM twocache_status()'),
	'unix:' . $redis->socket_path . '|master', 'node3 (unix socket): the node is the socket');
is($node3->safe_psql('postgres', q{SELECT twocache_set('ux', 'u')}), 't', 'node3 (unix socket): set');
is($redis->cli('GET', 'db:postgres:ux'), 'vu', 'node3 (unix socket): the set reached Redis');
is($node4->safe_psql('postgres', q{SELECT twocache_set('d3', 'd')}), 't', 'node4 (/3): set');
is($redis->cli('-n', '3', 'GET', 'db:postgres:d3'), 'vd', 'node4 (/3): the set is in database 3');
is($redis->cli('EXISTS', 'db:postgres:d3'), '0', 'node4 (/3): and not in database 0');
is($node4->safe_psql('postgres', q{SELECT twocache_local_del('d3'), twocache_get('d3')}), 't|d',
	'node4 (/3): reads it back from database 3');
$node3->stop;
$node4->stop;

# ---------------------------------------------------------------------
# Still healthy
# ---------------------------------------------------------------------
foreach my $node ($node1, $node2)
{
	is( $node->safe_psql('postgres',
			'SELECT mode, subscribed, reconnects FROM twocache_status()'),
		'two-layer|t|0', $node->name . ': still subscribed, never reconnected');
	is($node->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()'),
		$worker_pid{ $node->name }, $node->name . ': the same worker throughout');
	no_crash_in_log($node);
}

$node1->stop;
$node2->stop;
$redis->stop;
done_testing();
