# Connection hygiene (issue 11, item 11): how twocache holds its Redis
# connections.
#  - Connections name themselves (CLIENT SETNAME): twocache:<instance_id>:
#    backend:<pid>, worker:<pid> (commands), subscriber:<pid>.
#  - A connection whose exchange failed or was interrupted is dropped, never
#    reused, so late replies cannot answer the next command: the worker's
#    command connection after its PING timed out (Redis SIGSTOPped) and after
#    a standby's deferred re-delete timed out (CLIENT PAUSE WRITE); a
#    backend's connection after a cancelled exchange is closed at once.
#  - A connect cancelled while it waits for Redis (statement_timeout,
#    pg_cancel_backend) leaves no socket behind.
#  - Every Redis socket is accounted with fd.c (AcquireExternalFD): a
#    backend's Redis connection takes as many of the descriptors PostgreSQL
#    allows for external connections as it holds open (seen through dblink,
#    which counts them too), and a backend that has none left treats Redis
#    as unavailable (no ERROR on the read path, a WARNING on writes).
#  - Reconnections are jittered: the worker waits between half and all of its
#    backoff, a backend skips Redis for between redis_retry_interval and a
#    quarter more.
# Processes are matched to Redis connections through /proc (Linux): the
# local ports of a process's sockets against CLIENT LIST's addr.
use strict;
use warnings;

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

# ---------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------

# The open descriptors of process $pid that are sockets or epoll instances
# (what a Redis connection adds: its socket and the wait set on it).
sub net_fds
{
	my ($pid) = @_;
	opendir(my $d, "/proc/$pid/fd") or die "could not open /proc/$pid/fd: $!";
	my @fds = grep { /^\d+$/ } readdir $d;
	closedir $d;
	return grep { defined && /^socket:|eventpoll/ } map { readlink "/proc/$pid/fd/$_" } @fds;
}

# The local TCP ports of the sockets process $pid holds.
sub tcp_ports_of
{
	my ($pid) = @_;
	my %inode = map { /^socket:\[(\d+)\]$/ ? ($1 => 1) : () } net_fds($pid);
	my @ports;
	foreach my $f ('/proc/net/tcp', '/proc/net/tcp6')
	{
		open(my $fh, '<', $f) or next;
		<$fh>;
		while (my $line = <$fh>)
		{
			my @f = split ' ', $line;
			next unless $inode{ $f[9] };
			push @ports, hex($1) if $f[1] =~ /:([0-9A-Fa-f]+)$/;
		}
		close $fh;
	}
	return @ports;
}

# CLIENT LIST of $redis, one hash per connection.
sub clients
{
	my ($redis) = @_;
	my $list = $redis->command('CLIENT', 'LIST');
	return map {
		my %c = map { split /=/, $_, 2 } split ' ', $_;
		\%c
	} grep { /\S/ } split /\r?\n/, $list;
}

# The connections of $redis that process $pid holds.
sub clients_of
{
	my ($redis, $pid) = @_;
	my %mine = map { $_ => 1 } tcp_ports_of($pid);
	return grep { $_->{addr} =~ /:(\d+)$/ && $mine{$1} } clients($redis);
}

# Poll $cond (a sub) every 100 ms for up to $secs seconds (default 30).
sub wait_until
{
	my ($cond, $secs) = @_;
	my $deadline = time + ($secs // 30);
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return $cond->() ? 1 : 0;
}

sub status
{
	my ($node, $col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM twocache_status()");
}

# A background session and its backend's pid.
sub session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	return ($s, $pid);
}

# Run $sql in session $s: (stdout, stderr), stderr cleared for the next one.
sub run_in
{
	my ($s, $sql) = @_;
	$s->{stderr} = '';
	my $out = $s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err);
}

my $redis = TwoCacheRedis->new;

# ---------------------------------------------------------------------
# Connection names
# ---------------------------------------------------------------------
my $node = l2_node(
	'node', $redis,
	wait_subscribed => 1,
	conf => q{
twocache.instance_id = 'node-1'
max_files_per_process = 100
max_connections = 100
});
my $wpid = status($node, 'worker_pid');
{
	my ($s, $pid) = session($node);
	is((run_in($s, q{SELECT coalesce(twocache_get('n:k'), 'none')}))[0], 'none',
		'a backend reads through Redis');
	my @mine = clients_of($redis, $pid);
	is(scalar(@mine), 1, 'the backend holds one Redis connection');
	is($mine[0]{name}, "twocache:node-1:backend:$pid",
		'it is named twocache:<instance_id>:backend:<pid>');
	my %w = map { ($_->{sub} > 0 ? 'sub' : 'cmd') => $_ } clients_of($redis, $wpid);
	is($w{cmd}{name} // '', "twocache:node-1:worker:$wpid",
		"the worker's command connection is named twocache:<instance_id>:worker:<pid>");
	is($w{sub}{name} // '', "twocache:node-1:subscriber:$wpid",
		"its subscription is named twocache:<instance_id>:subscriber:<pid>");
	$s->quit;
}

# ---------------------------------------------------------------------
# (a) The worker's PING times out: both connections are replaced
# ---------------------------------------------------------------------
{
	my @before = clients_of($redis, $wpid);
	is(scalar(@before), 2, 'the worker holds two Redis connections');
	my %old = map { $_->{id} => 1 } @before;
	my $off = log_offset($node);
	$redis->pause;
	ok(poll($node, 'SELECT NOT subscribed FROM twocache_status()'),
		'ping timeout: the worker notices the hung Redis');
	ok(wait_log($node, qr/twocache worker: lost Redis; reconnecting/, $off),
		'ping timeout: it logs the lost Redis');
	$redis->resume;
	ok(poll($node, 'SELECT subscribed AND redis_connected FROM twocache_status()'),
		'ping timeout: resubscribed once Redis resumed');
	ok( wait_until(
			sub {
				my @now = clients_of($redis, $wpid);
				return @now == 2 && !grep { $old{ $_->{id} } } @now;
			}),
		'ping timeout: the worker holds two new connections');
	ok(wait_until(sub { !grep { $old{ $_->{id} } } clients($redis) }),
		'ping timeout: its old connections are closed');
}

# ---------------------------------------------------------------------
# (a) A standby's deferred re-delete times out on the worker's command
# connection (CLIENT PAUSE WRITE holds the DEL back; a PING would be
# answered): that connection is replaced, not left with replies in flight
# for the next PING.
# ---------------------------------------------------------------------
{
	my $redis2 = TwoCacheRedis->new;
	my $primary = l2_node('primary', $redis2, allows_streaming => 1);
	$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
	$primary->backup('b1');
	my $standby = PostgreSQL::Test::Cluster->new('standby');
	$standby->init_from_backup($primary, 'b1', has_streaming => 1);
	# a Redis exchange of the standby may wait 3 s
	$standby->append_conf('postgresql.conf', "twocache.redis_timeout = '3s'");
	$standby->start;
	$primary->wait_for_catchup($standby);
	ok(poll($standby, 'SELECT subscribed FROM twocache_status()'), 'standby: subscribed');
	ok(poll($primary, 'SELECT subscribed FROM twocache_status()'), 'primary: subscribed');
	my $spid = status($standby, 'worker_pid');

	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	ok(poll($standby, q{SELECT pg_get_wal_replay_pause_state() = 'paused'}),
		'standby: replay paused');
	$primary->safe_psql('postgres',
		q{BEGIN; INSERT INTO t VALUES (1); SELECT twocache_del('c:k'); COMMIT;});
	ok(poll($standby, 'SELECT deferred_invalidations > 0 FROM twocache_status()'),
		'standby: the del waits for replay');
	# a stale copy that the standby's re-delete must remove
	$redis2->command('SET', 'db:postgres:c:k', 'vstale');

	my ($cmd_before) = grep { $_->{sub} == 0 } clients_of($redis2, $spid);
	ok(defined $cmd_before, "standby: the worker's command connection");
	my $t0 = $standby->safe_psql('postgres', 'SELECT clock_timestamp()');
	my $e0 = counter($standby, 'redis_errors');

	$redis2->command('CLIENT', 'PAUSE', '60000', 'WRITE');
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	ok( poll($standby, qq{
SELECT last_error LIKE '%timed out%' AND last_error_at > '$t0' FROM twocache_status()}),
		'standby: the re-delete timed out while Redis held writes back');
	$redis2->command('CLIENT', 'UNPAUSE');
	ok(poll($standby, 'SELECT deferred_invalidations = 0 FROM twocache_status()'),
		'standby: the re-delete went through once Redis resumed');
	is($redis2->command('EXISTS', 'db:postgres:c:k'), 0,
		'standby: the stale copy in Redis is deleted');
	# the PING after the failure may come first: wait past a few of them
	ok( wait_until(
			sub {
				my ($c) = grep { $_->{sub} == 0 } clients_of($redis2, $spid);
				return defined $c && $c->{id} ne $cmd_before->{id};
			},
			10),
		"standby: the worker's command connection was replaced after the timeout");
	ok(wait_until(sub { !grep { $_->{id} eq $cmd_before->{id} } clients($redis2) }, 10),
		'standby: and the old one closed');
	unlike(status($standby, 'last_error'), qr/refused|unexpected/,
		'standby: no reply was taken for another command');
	is(counter($standby, 'redis_errors'), $e0, 'standby: no Redis error counted');
	is(status($standby, 'worker_pid'), $spid, 'standby: the same worker throughout');
	no_crash_in_log($_) foreach ($primary, $standby);
	$standby->stop;
	$primary->stop;
	$redis2->stop;
}

# ---------------------------------------------------------------------
# A backend on a Redis database (SELECT at connect) with a 10 s timeout,
# for the cancels below
# ---------------------------------------------------------------------
my $slow = l2_node('slow', $redis->url(db => 1),
	wait_subscribed => 1,
	conf => "twocache.redis_timeout = '10s'");
$redis->cli('-n', '1', 'SET', 'db:postgres:d:k', 'vd1');
$redis->cli('-n', '1', 'SET', 'db:postgres:d:r', 'vr1');
my ($s, $pid) = session($slow);
my $base = scalar(net_fds($pid));

# ---------------------------------------------------------------------
# (a) A backend's exchange is cancelled: its connection is closed at once
# ---------------------------------------------------------------------
{
	is((run_in($s, q{SELECT twocache_get('d:k')}))[0], 'd1', 'backend: reads d:k from Redis');
	my @mine = clients_of($redis, $pid);
	is(scalar(@mine), 1, 'backend: one Redis connection');
	cmp_ok(scalar(net_fds($pid)), '>', $base, 'backend: it holds descriptors');

	$redis->pause;
	my ($out, $err) = run_in($s,
		q{SET statement_timeout = '300ms'; SELECT twocache_get('d:k2'); RESET statement_timeout;});
	like($err, qr/canceling statement due to statement timeout/,
		'cancelled exchange: the read was cancelled while Redis hung');
	is(scalar(net_fds($pid)), $base,
		'cancelled exchange: the backend closed its connection at once');
}

# ---------------------------------------------------------------------
# (b) Connects cancelled while they wait for Redis leave nothing behind
# ---------------------------------------------------------------------
{
	my $n = 5;
	my $cancelled = 0;
	foreach my $i (1 .. $n)
	{
		my ($out, $err) = run_in($s,
			qq{SET statement_timeout = '300ms'; SELECT twocache_get('e:k$i', 'SELECT 1'); RESET statement_timeout;});
		$cancelled++ if $err =~ /canceling statement due to statement timeout/;
	}
	is($cancelled, $n, "cancelled connect: $n connects hit statement_timeout");
	is(scalar(net_fds($pid)), $base, 'cancelled connect: no descriptor left behind');

	$s->{stderr} = '';
	$s->query_until(qr/started/,
		"\\echo started\nSELECT twocache_get('e:c', 'SELECT 1');\n\\echo finished\n");
	ok( poll($slow, qq{
SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $pid}),
		'cancelled connect: a connect waits on the hung Redis');
	$slow->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$s->query_until(qr/finished/, '');
	like($s->{stderr}, qr/canceling statement due to user request/,
		'cancelled connect: pg_cancel_backend ended it');
	$s->{stderr} = '';
	is(scalar(net_fds($pid)), $base, 'cancelled connect: still no descriptor left behind');

	$redis->resume;
	is((run_in($s, q{SELECT twocache_get('d:r')}))[0], 'r1',
		'after the cancels: the backend reads from Redis again');
	my @mine = clients_of($redis, $pid);
	is(scalar(@mine), 1, 'after the cancels: on one connection');
	is($mine[0]{name} // '', 'twocache:' . status($slow, 'instance_id') . ":backend:$pid",
		'after the cancels: named after the backend');
	is((run_in($s, q{SELECT twocache_get('d:k')}))[0], 'd1',
		'after the cancels: replies belong to their commands');
}
$s->quit;
no_crash_in_log($slow);
$slow->stop;

# ---------------------------------------------------------------------
# (c) Redis sockets are accounted with fd.c
# ---------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION dblink;
-- Open dblink connections to this server until fd.c refuses one; keep them
-- or close them again.  Returns how many opened and why the next failed.
CREATE FUNCTION dblink_capacity(connstr text, keep bool, OUT n int, OUT err text)
LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	n := 0;
	LOOP
		BEGIN
			PERFORM dblink_connect('c' || (n + 1), connstr);
		EXCEPTION WHEN others THEN
			GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
			err := SQLERRM || ' ' || coalesce(d, '');
			EXIT;
		END;
		n := n + 1;
		EXIT WHEN n >= 90;
	END LOOP;
	IF NOT keep THEN
		FOR i IN 1..n LOOP
			PERFORM dblink_disconnect('c' || i);
		END LOOP;
	END IF;
END
$$;
});
{
	my $connstr = $node->connstr('postgres');
	my $capacity = sub {
		my ($sess, $keep) = @_;
		my ($out, $err) = run_in($sess,
			"SELECT n || '|' || err FROM dblink_capacity(\$q\$$connstr\$q\$, $keep)");
		my ($k, $why) = split /\|/, $out, 2;
		note "dblink capacity: $k ($why)";
		like($why // '', qr/too many open files/i, 'dblink stopped at the descriptor limit');
		return $k;
	};

	my ($sa, $apid) = session($node);
	my $k0 = $capacity->($sa, 'false');
	$sa->quit;

	my ($sb, $bpid) = session($node);
	my $b0 = scalar(net_fds($bpid));
	is((run_in($sb, q{SELECT coalesce(twocache_get('f:x'), 'none')}))[0], 'none',
		'fd accounting: a backend opens its Redis connection');
	my $held = scalar(net_fds($bpid)) - $b0;
	cmp_ok($held, '>=', 1, "fd accounting: it holds $held descriptors for it");
	my $k1 = $capacity->($sb, 'false');
	is($k0 - $k1, $held,
		'fd accounting: each descriptor it holds is one fewer for dblink');
	$sb->quit;

	my ($sc, $cpid) = session($node);
	my $k2 = $capacity->($sc, 'true');
	is($k2, $k0, 'fd accounting: a new session reaches the limit with dblink');
	my ($out, $err) = run_in($sc, q{SELECT twocache_set('f:y', 'v')});
	is($out, 't', 'at the limit: a write applies locally');
	like($err, qr/WARNING:.*Redis.*\n.*too many open files/i,
		'at the limit: with a WARNING naming the descriptor limit');
	($out, $err) = run_in($sc, q{SELECT twocache_get('f:z', $$SELECT 'fetched'$$)});
	is($out, 'fetched', 'at the limit: a read fetches (Redis unavailable)');
	unlike($err, qr/ERROR/, 'at the limit: no ERROR on the read path');
	is(scalar(clients_of($redis, $cpid)), 0, 'at the limit: no Redis connection opened');
	$sc->quit;
}

# ---------------------------------------------------------------------
# (d) Jitter
# ---------------------------------------------------------------------
my $closed = PostgreSQL::Test::Cluster::get_free_port();
my $lonely = l2_node('lonely', "redis://127.0.0.1:$closed");
{
	# the worker's attempts: gaps of half to all of 100 ms doubling
	my $re = qr/^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)\.(\d+) .*twocache worker: could not connect to Redis at 127\.0\.0\.1:$closed/m;
	my @t;
	ok( wait_until(
			sub {
				my $log = slurp_file($lonely->logfile);
				@t = ();
				while ($log =~ /$re/g)
				{
					push @t, ((($4 * 60 + $5) * 60 + $6) * 1000 + $7) + $3 * 86_400_000;
				}
				return @t >= 8;
			},
			60),
		'worker: eight failed attempts to connect');
	my @gaps = map { $t[ $_ + 1 ] - $t[$_] } 0 .. 6;
	note 'gaps (ms): ' . join(' ', @gaps);
	my ($below, $jittered) = (0, 0);
	foreach my $i (0 .. 6)
	{
		my $backoff = 100 * 2**$i;
		$below++ if $gaps[$i] < $backoff / 2 - 1;
		$jittered++ if $gaps[$i] < 0.9 * $backoff;
	}
	is($below, 0, 'worker: no retry came before half its backoff');
	cmp_ok($jittered, '>', 0, 'worker: the retries are jittered (not all at the full backoff)');

	# a backend's retry interval: 500 ms and up to a quarter more
	my @skips;
	foreach my $i (1 .. 8)
	{
		my ($rc, $out, $err) = $lonely->psql('postgres',
			q{SET client_min_messages = debug1; SELECT twocache_get('g:k')});
		push @skips, $1 if $err =~ /Redis unavailable for (\d+) ms/;
	}
	note 'skips (ms): ' . join(' ', @skips);
	is(scalar(@skips), 8, 'backend: each new session fails once and skips Redis');
	is(scalar(grep { $_ < 500 || $_ > 625 } @skips), 0,
		'backend: for 500 to 625 ms');
	my %distinct = map { $_ => 1 } @skips;
	cmp_ok(scalar(keys %distinct), '>', 1, 'backend: not all for the same time');
}

no_crash_in_log($_) foreach ($node, $lonely);
$lonely->stop;
$node->stop;
$redis->stop;
done_testing();
