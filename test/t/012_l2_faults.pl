# Redis trouble (SPEC.md sections 4 and 5): when the worker loses the
# subscription it flushes L1 (other servers' messages will be missed); with
# Redis stopped, reads still answer (from L1 or by fetching) and writes
# apply locally with a WARNING,
# every call within twocache.redis_timeout plus a margin; when Redis comes
# back the worker resubscribes and flushes L1, and backends use Redis again
# after twocache.redis_retry_interval.  With Redis hung (SIGSTOP) calls stay
# bounded and a wait can be cancelled.  A terminated worker comes back
# without taking the server down.  A reload switches to another Redis.
use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

# twocache.redis_timeout is 200ms: no call may take longer than this (ms).
my $BOUND = 1000;

my $redis = TwoCacheRedis->new;

# A node subscribed to $r, with timed(): run a query, return its (first)
# value and how long it took.
sub start_node
{
	my ($name, $r) = @_;
	my $node = l2_node($name, $r, wait_subscribed => 1);
	$node->safe_psql(
		'postgres', q{
CREATE FUNCTION timed(q text, OUT result text, OUT ms int)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	EXECUTE q INTO result;
	ms := round(extract(epoch FROM clock_timestamp() - t0) * 1000);
END
$$;
});
	return $node;
}

sub status
{
	my ($node, $cols) = @_;
	return $node->safe_psql('postgres', "SELECT $cols FROM twocache_status()");
}

# Run $q through timed() in a new session: (result, ms, stderr).  The
# result is the value as text: a boolean is 'true' or 'false'.
sub timed
{
	my ($node, $q) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', "SELECT result || '|' || ms FROM timed(\$q\$$q\$q\$)",
		stdout => \$out, stderr => \$err, on_error_stop => 0);
	my ($result, $ms) = $out =~ /^(.*)\|(\d+)$/s ? ($1, $2) : (undef, undef);
	return ($result, $ms, $err);
}

# Same, in the background session $s.
sub timed_bg
{
	my ($s, $q) = @_;
	$s->{stderr} = '';
	my $out = $s->query("SELECT result || '|' || ms FROM timed(\$q\$$q\$q\$)");
	my $err = $s->{stderr};
	$s->{stderr} = '';
	my ($result, $ms) = $out =~ /^(.*)\|(\d+)$/s ? ($1, $2) : (undef, undef);
	return ($result, $ms, $err);
}

# Just the value of timed_bg.
sub bg_value
{
	my @r = timed_bg(@_);
	return $r[0];
}

# A read: the expected result, within the bound, no ERROR.
sub read_ok
{
	my ($node_or_bg, $q, $expected, $label) = @_;
	my ($r, $ms, $err) =
	  $node_or_bg->isa('PostgreSQL::Test::Cluster')
	  ? timed($node_or_bg, $q)
	  : timed_bg($node_or_bg, $q);
	is($r, $expected, "$label: answers");
	ok(defined $ms && $ms < $BOUND, "$label: within $BOUND ms (" . ($ms // 'n/a') . ' ms)');
	unlike($err, qr/ERROR/, "$label: no error");
	return $err;
}

# A write: the expected result, within the bound, a WARNING naming Redis.
sub write_warns
{
	my ($node_or_bg, $q, $expected, $label) = @_;
	my ($r, $ms, $err) =
	  $node_or_bg->isa('PostgreSQL::Test::Cluster')
	  ? timed($node_or_bg, $q)
	  : timed_bg($node_or_bg, $q);
	is($r, $expected, "$label: applies");
	ok(defined $ms && $ms < $BOUND, "$label: within $BOUND ms (" . ($ms // 'n/a') . ' ms)');
	like($err, qr/WARNING:.*Redis/, "$label: warns");
	unlike($err, qr/ERROR/, "$label: no error");
	return $err;
}

my $node = start_node('node', $redis);
my $peer = start_node('peer', $redis);
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# A session that stays connected throughout, with its own long-lived Redis
# connection.
my $bg = $node->background_psql('postgres', on_error_stop => 0);

# ---------------------------------------------------------------------
# Baseline
# ---------------------------------------------------------------------
my ($lf0, $rc0) = split /\|/, status($node, 'local_flushes, reconnects');
is($rc0, '0', 'no reconnect yet');
is($node->safe_psql('postgres', q{SELECT twocache_set('warm', 'w1')}), 't', 'set warm');
is($redis->cli('GET', 'db:postgres:warm'), 'vw1', 'warm is in L2');
is(bg_value($bg, q{SELECT twocache_get('warm')}), 'w1', 'the long-lived session reads warm');
is(bg_value($bg, q{SELECT twocache_get('bgwarm', 'SELECT ''b''')}), 'b',
	'the long-lived session fills a key through Redis');
is($redis->cli('GET', 'db:postgres:bgwarm'), 'vb', 'its fill reached L2');

# ---------------------------------------------------------------------
# Redis stopped
# ---------------------------------------------------------------------
# the worker's error is one newer than the stop, and it logs the L1 flush
# (done after it shows itself unsubscribed) once it has flushed
my $t_stop = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
my $log_stop = log_offset($node);
$redis->stop;
ok( poll($node, qq{
SELECT NOT subscribed AND NOT redis_connected
	   AND last_error IS NOT NULL AND last_error_at >= '$t_stop'
FROM twocache_status()}),
	'stopped: the worker reports the lost connection');
note 'last_error: ' . status($node, 'last_error');
ok(wait_log($node, qr/twocache worker unsubscribed; flushed \d+ local cache entries/, $log_stop),
	'stopped: the worker logs the L1 flush of the lost subscription');
my $e0 = $node->safe_psql('postgres', 'SELECT redis_errors FROM twocache_stats');
is(in_l1($node, 'warm'), 'f', 'stopped: the worker flushed L1 when it lost the subscription');
is(bg_value($bg, q{SELECT coalesce(twocache_get('warm'), '<null>')}), '<null>',
	'stopped: so warm, cached before, is not served any more');

# What is written or fetched now is cached in L1 and served from there.
write_warns($node, q{SELECT twocache_set('warm', 'w1')}, 'true', 'stopped: set');
read_ok($node, q{SELECT twocache_get('warm')}, 'w1', 'stopped: get from L1');
read_ok($node, q{SELECT twocache_get('fresh', 'SELECT ''f''')}, 'f', 'stopped: get with a fetch');
is(in_l1($node, 'fresh'), 't', 'stopped: the fetched value is cached in L1');
read_ok($bg, q{SELECT twocache_get('fresh2', 'SELECT ''f2''')}, 'f2',
	'stopped: long-lived session, get with a fetch');
read_ok($bg, q{SELECT twocache_get('warm')}, 'w1', 'stopped: long-lived session, get from L1');
read_ok($node, q{SELECT string_agg(key || '=' || value, ' ') FROM twocache_mget(ARRAY['warm', 'nokey'])},
	'warm=w1', 'stopped: mget');
read_ok($node, q{SELECT twocache_exists('warm')}, 'true', 'stopped: exists, in L1');
read_ok($node, q{SELECT twocache_exists('nokey')}, 'false', 'stopped: exists, absent');
read_ok($node, q{SELECT twocache_ttl('warm')}, '-1', 'stopped: ttl, in L1');
read_ok($node, q{SELECT twocache_ttl('nokey')}, '-2', 'stopped: ttl, absent');

write_warns($node, q{SELECT twocache_set('warm', 'w2')}, 'true', 'stopped: set again');
is($node->safe_psql('postgres', q{SELECT twocache_get('warm')}), 'w2',
	'stopped: the set applied to L1');
write_warns($node, q{SELECT twocache_del('fresh')}, 'true', 'stopped: del');
is(in_l1($node, 'fresh'), 'f', 'stopped: the del applied to L1');
write_warns($bg, q{SELECT twocache_set('bgkey', 'b0')}, 'true', 'stopped: long-lived session, set');

cmp_ok($node->safe_psql('postgres', 'SELECT redis_errors FROM twocache_stats'),
	'>', $e0, 'stopped: redis_errors counted');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_stat_activity WHERE backend_type = \'twocache worker\''),
	'1', 'stopped: the worker keeps running');

# ---------------------------------------------------------------------
# Redis restarted: resubscribe, flush L1, use Redis again
# ---------------------------------------------------------------------
is(in_l1($node, 'warm'), 't', 'before the restart: warm is in L1');
$redis->start;
ok( poll($node,
		"SELECT subscribed AND redis_connected AND local_flushes > $lf0 AND reconnects > $rc0
		 FROM twocache_status()"),
	'restarted: the worker resubscribed, flushed L1 and counted a reconnect');
is(in_l1($node, 'warm'), 'f', 'restarted: L1 was flushed');
is(in_l1($node, 'bgkey'), 'f', 'restarted: L1 was flushed (bgkey)');

{
	my ($r, $ms, $err) = timed($node, q{SELECT twocache_set('after', 'a')});
	is($r, 'true', 'restarted: a new session sets');
	is($err, '', 'restarted: without a warning');
	is($redis->cli('GET', 'db:postgres:after'), 'va', 'restarted: the set reached Redis');
}

# The long-lived session failed during the outage; after the retry interval
# it uses Redis again (its old connection is dead, it must open a new one).
{
	my $deadline = time + 15;
	my ($ok, $n, $err) = (0, 0, '');
	while (!$ok && time < $deadline)
	{
		$n++;
		(undef, undef, $err) = timed_bg($bg, "SELECT twocache_set('bgkey', 'b$n')");
		$ok = $err eq '' && ($redis->command('GET', 'db:postgres:bgkey') // '') eq "vb$n";
		usleep(100_000) unless $ok;
	}
	ok($ok, "restarted: the long-lived session writes to Redis again (attempt $n)")
	  or diag "last stderr: $err";
	is(bg_value($bg, q{SELECT twocache_get('after')}), 'a',
		'restarted: the long-lived session reads from Redis again');
}

# ---------------------------------------------------------------------
# Redis hung (SIGSTOP): every call stays bounded
# ---------------------------------------------------------------------
is($node->safe_psql('postgres', q{SELECT twocache_set('pz', 'p1')}), 't', 'set pz');
is(bg_value($bg, q{SELECT twocache_get('pz')}), 'p1', 'the long-lived session reads pz');
my $log_pause = log_offset($node);
$redis->pause;
ok(poll($node, q{SELECT NOT subscribed FROM twocache_status()}),
	'hung: the worker notices (PING timeout)');
ok(wait_log($node, qr/twocache worker unsubscribed; flushed \d+ local cache entries/, $log_pause),
	'hung: the worker logs the L1 flush');
is(in_l1($node, 'pz'), 'f', 'hung: and flushed L1');
write_warns($node, q{SELECT twocache_set('pz', 'p1')}, 'true', 'hung: set pz again');

read_ok($node, q{SELECT twocache_get('pz')}, 'p1', 'hung: get from L1');
read_ok($node, q{SELECT twocache_get('pnew', 'SELECT ''pf''')}, 'pf', 'hung: get with a fetch');
read_ok($bg, q{SELECT twocache_get('pnew2', 'SELECT ''pf2''')}, 'pf2',
	'hung: long-lived session, get with a fetch');
read_ok($node, q{SELECT string_agg(key || '=' || value, ' ') FROM twocache_mget(ARRAY['pz', 'm-a', 'm-b'])},
	'pz=p1', 'hung: mget');
read_ok($node, q{SELECT twocache_exists('p-none')}, 'false', 'hung: exists');
read_ok($node, q{SELECT twocache_ttl('p-none')}, '-2', 'hung: ttl');
write_warns($node, q{SELECT twocache_set('pset', 'x')}, 'true', 'hung: set');
write_warns($node, q{SELECT twocache_del('pz')}, 'true', 'hung: del');
write_warns($bg, q{SELECT twocache_set('pset2', 'x')}, 'true', 'hung: long-lived session, set');

# After one timeout a backend skips Redis for the retry interval: eight
# reads of missing keys in one statement cost one timeout, not eight.
read_ok(
	$node, q{
SELECT string_agg(twocache_get('skip' || i, 'SELECT ' || i), ',' ORDER BY i)
FROM generate_series(1, 8) i},
	'1,2,3,4,5,6,7,8',
	'hung: eight fetches in one statement');

# A Redis wait is interruptible: with a 30 s redis_timeout, cancel a read
# waiting on the hung Redis.
$node->safe_psql('postgres', q{ALTER SYSTEM SET twocache.redis_timeout = '30s'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(poll($node, q{SELECT current_setting('twocache.redis_timeout')}, '30s'),
	'redis_timeout is 30s');
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres') . ' application_name=tc_slow',
			'-c', q{SELECT twocache_get('slowkey', 'SELECT ''s''')}
		],
		'<', '/dev/null', '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	ok( poll($node, q{
SELECT state = 'active' AND query LIKE '%slowkey%'
FROM pg_stat_activity WHERE application_name = 'tc_slow'}),
		'hung: a read waits on Redis');
	# still waiting a moment later: it really is blocked on the hung Redis
	usleep(300_000);
	is( $node->safe_psql('postgres',
			q{SELECT state FROM pg_stat_activity WHERE application_name = 'tc_slow'}),
		'active', 'hung: the read is still waiting');
	my $t0 = time;
	$node->safe_psql('postgres',
		q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'tc_slow'});
	while ($h->pumpable && time < $t0 + 20)
	{
		$h->pump_nb;
		usleep(20_000);
	}
	my $elapsed = time - $t0;
	$h->kill_kill if $h->pumpable;
	$h->finish;
	ok($elapsed < 2, sprintf('hung: the cancel ended the wait (%.2f s)', $elapsed));
	like($err, qr/57014|canceling statement due to user request/,
		'hung: the read was cancelled') or diag "stdout: $out";

	my ($o2, $e2) = ('', '');
	$t0 = time;
	$node->psql(
		'postgres', q{
\set VERBOSITY verbose
SET statement_timeout = '300ms';
SELECT twocache_get('slowkey2', 'SELECT ''s''');
},
		stdout => \$o2, stderr => \$e2, on_error_stop => 0);
	$elapsed = time - $t0;
	ok($elapsed < 3, sprintf('hung: statement_timeout ended the wait (%.2f s)', $elapsed));
	like($e2, qr/57014|canceling statement due to statement timeout/,
		'hung: the read hit statement_timeout');
}
$node->safe_psql('postgres', 'ALTER SYSTEM RESET twocache.redis_timeout');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(poll($node, q{SELECT current_setting('twocache.redis_timeout')}, '200ms'),
	'redis_timeout is 200ms again');

$redis->resume;
{
	my $deadline = time + 15;
	my ($ok, $n, $err) = (0, 0, '');
	while (!$ok && time < $deadline)
	{
		$n++;
		(undef, undef, $err) = timed($node, "SELECT twocache_set('rec', 'r$n')");
		$ok = $err eq '' && ($redis->command('GET', 'db:postgres:rec') // '') eq "vr$n";
		usleep(100_000) unless $ok;
	}
	ok($ok, "resumed: writes reach Redis again (attempt $n)") or diag "last stderr: $err";
}
ok(poll($node, 'SELECT subscribed AND redis_connected FROM twocache_status()'),
	'resumed: the worker is subscribed');

# ---------------------------------------------------------------------
# The worker is terminated: it comes back, the server stays up
# ---------------------------------------------------------------------
{
	my $pid = status($node, 'worker_pid');
	my $lf = status($node, 'local_flushes');
	is($node->safe_psql('postgres', q{SELECT twocache_set('wk', '1')}), 't', 'set wk');
	is(in_l1($node, 'wk'), 't', 'wk is in L1');

	my $t0 = time;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't',
		'pg_terminate_backend(worker_pid)');
	ok( poll($node,
			"SELECT worker_pid IS NOT NULL AND worker_pid <> $pid AND subscribed
			 FROM twocache_status()"),
		'a new worker runs and subscribes');
	my $elapsed = time - $t0;
	ok($elapsed < 30, sprintf('within %.1f s', $elapsed));
	my $new_pid = status($node, 'worker_pid');
	is( $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'twocache worker'}),
		$new_pid, "the new worker is the server's 'twocache worker'");
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, 'the server did not restart');
	is(bg_value($bg, q{SELECT twocache_get('after')}), 'a',
		'a session opened before still works');
	cmp_ok(status($node, 'local_flushes'), '>', $lf, 'the new worker flushed L1 when it subscribed');
	is(in_l1($node, 'wk'), 'f', 'wk is no longer in L1');

	# it applies messages
	is($node->safe_psql('postgres', q{SELECT twocache_get('wk')}), '1', 'wk read again');
	is($peer->safe_psql('postgres', q{SELECT twocache_set('wk', '2')}), 't', 'peer: set wk');
	ok(poll($node, not_in_l1_sql('wk')),
		"the new worker applied peer's message");
}

# ---------------------------------------------------------------------
# SIGHUP: a new twocache.redis_url takes effect in the worker and in
# backends
# ---------------------------------------------------------------------
{
	my $redis_b = TwoCacheRedis->new;
	my $peer_b = start_node('peer_b', $redis_b);
	my $lf = status($node, 'local_flushes');
	my $url_b = $redis_b->url;

	$node->safe_psql('postgres', "ALTER SYSTEM SET twocache.redis_url = '$url_b'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

	my $numsub = sub {
		my ($r, $channel) = @_;
		my $reply = eval { $r->command('PUBSUB', 'NUMSUB', $channel // 'twocache:invalidate') };
		return ref $reply ? $reply->[1] : -1;
	};
	my $deadline = time + 30;
	usleep(100_000) while $numsub->($redis_b) != 2 && time < $deadline;
	is($numsub->($redis_b), 2, 'reload: the worker subscribed on the new Redis');
	$deadline = time + 30;
	usleep(100_000) while $numsub->($redis) != 1 && time < $deadline;
	is($numsub->($redis), 1, 'reload: and dropped its subscription on the old one');
	ok( poll($node, "SELECT subscribed AND local_flushes > $lf FROM twocache_status()"),
		'reload: subscribed, L1 flushed for the new subscription');

	$node->safe_psql('postgres', q{SELECT twocache_local_set('hup', 'x')});
	is($peer_b->safe_psql('postgres', q{SELECT twocache_set('hup', 'y')}), 't',
		'peer_b: set hup on the new Redis');
	ok(poll($node, not_in_l1_sql('hup')),
		"reload: the message from the new Redis was applied");
	is($node->safe_psql('postgres', q{SELECT twocache_get('hup')}), 'y',
		'reload: reads from the new Redis');

	my ($r, $ms, $err) = timed($node, q{SELECT twocache_set('new-hup', '2')});
	is($err, '', 'reload: a new session writes without a warning');
	is($redis_b->cli('GET', 'db:postgres:new-hup'), 'v2', 'reload: to the new Redis');
	is($redis->cli('EXISTS', 'db:postgres:new-hup'), '0', 'reload: not to the old one');

	# the long-lived session, once it has the new setting, uses the new Redis
	$bg->{stderr} = '';
	$deadline = time + 30;
	usleep(100_000)
	  while $bg->query(q{SELECT current_setting('twocache.redis_url')}) ne $url_b
	  && time < $deadline;
	($r, $ms, $err) = timed_bg($bg, q{SELECT twocache_set('bg-hup', '1')});
	is($err, '', 'reload: the long-lived session writes without a warning');
	is($redis_b->cli('GET', 'db:postgres:bg-hup'), 'v1', 'reload: to the new Redis');
	is($redis->cli('EXISTS', 'db:postgres:bg-hup'), '0', 'reload: not to the old one');

	# a new channel: the worker resubscribes on it
	$lf = status($node, 'local_flushes');
	$node->safe_psql('postgres', q{ALTER SYSTEM SET twocache.channel = 'tc:alt'});
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$deadline = time + 30;
	usleep(100_000) while $numsub->($redis_b, 'tc:alt') != 1 && time < $deadline;
	is($numsub->($redis_b, 'tc:alt'), 1, 'reload: the worker subscribed to the new channel');
	$deadline = time + 30;
	usleep(100_000) while $numsub->($redis_b) != 1 && time < $deadline;
	is($numsub->($redis_b), 1, 'reload: and left the old one (peer_b stays)');
	ok(poll($node, "SELECT subscribed AND local_flushes > $lf FROM twocache_status()"),
		'reload: subscribed');

	$peer_b->stop;
	$redis_b->stop;
}

$bg->quit;
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'same postmaster throughout');
foreach my $n ($node, $peer)
{
	my @bad = grep { /terminated by signal|server process .* was terminated|all server processes terminated/ }
	  split /\n/, slurp_file($n->logfile);
	ok(!@bad, $n->name . ': no process crashed') or diag join("\n", @bad);
	# the only FATAL expected is the worker's, terminated on purpose
	@bad = grep { /FATAL|PANIC/ && !/terminating background worker "twocache worker" due to administrator command/ }
	  split /\n/, slurp_file($n->logfile);
	ok(!@bad, $n->name . ': no unexpected FATAL') or diag join("\n", @bad);
}

$node->stop;
$peer->stop;
$redis->stop;
done_testing();
