# Single flight under faults (SPEC.md section 4): when the backend running a
# key's fetch is terminated or cancelled, the backends waiting for it wake at
# once, one of them takes over the fetch, and the others get its value; when
# a waiter is terminated, the filler and the other waiters carry on, and
# nothing the waiter left behind affects the backend that reuses its PGPROC.
# No flight slot is left behind and the server does not restart.
use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Waiters must finish well before the filler's 300 s sleep would end.
my $PROMPT = 60;

my $node = PostgreSQL::Test::Cluster->new('filler_terminate');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION twocache');

my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# A session that stays connected throughout: it holds the advisory lock of
# the last scenario, and a crash-restart of the server would kill it.
my $control = $node->background_psql('postgres');

# Run one statement in a psql of its own, in the background.  The session is
# named by application_name so pg_stat_activity can find it.
sub start_psql
{
	my ($name, $sql) = @_;
	my $s = { name => $name, out => '', err => '' };

	$s->{h} = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres') . " application_name=$name",
			'-c', $sql
		],
		'<', '/dev/null',
		'>', \$s->{out},
		'2>', \$s->{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return $s;
}

# Poll until the session's psql has exited, or the deadline (epoch seconds)
# passes (then kill it).  Returns psql's exit code, or undef on timeout.
sub wait_psql
{
	my ($s, $deadline) = @_;

	while ($s->{h}->pumpable)
	{
		if (time > $deadline)
		{
			diag "$s->{name} still running at the deadline; "
			  . "stdout: $s->{out} stderr: $s->{err}";
			$s->{h}->kill_kill;
			return undef;
		}
		$s->{h}->pump_nb;
		usleep(20_000);
	}
	$s->{h}->finish;
	chomp $s->{out};
	return $s->{h}->result(0);
}

sub stats
{
	my %s;
	@s{qw(fetches fetch_waits fetch_errors in_flight l1_hits)} = split /\|/,
	  $node->safe_psql('postgres',
		'SELECT fetches, fetch_waits, fetch_errors, in_flight, l1_hits FROM twocache_stats');
	return \%s;
}

sub pid_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = '$name'");
}

sub wait_for_filler
{
	my ($wait_event, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE application_name = 'tc_filler' AND wait_event = '$wait_event'}),
		"filler is $what");
}

sub wait_for_waiters
{
	my ($n, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT count(*) FROM pg_stat_activity
WHERE application_name LIKE 'tc_waiter%'
  AND wait_event_type = 'Lock' AND wait_event = 'userlock'},
			$n),
		"$n waiters $what");
}

# Three waiters on key, each fetching $fetch if it ever has to.
sub start_waiters
{
	my ($key, $fetch) = @_;
	return map { start_psql("tc_waiter$_", "SELECT twocache_get('$key', '$fetch')") } 1 .. 3;
}

# Check the flight state while the filler runs and its waiters sleep.
sub check_waiting
{
	my ($label) = @_;
	my $s = stats();
	is($s->{fetches}, 1, "$label: one fetch while waiters wait");
	is($s->{in_flight}, 1, "$label: one flight in progress");
}

sub check_after
{
	my ($label, $key, $value, $fetches) = @_;
	my $s = stats();
	is($s->{fetches}, $fetches, "$label: $fetches fetches in all");
	is($s->{in_flight}, 0, "$label: no flight left in progress");
	is($node->safe_psql('postgres', "SELECT twocache_get('$key')"),
		$value, "$label: '$key' now reads '$value' without a fetch query");
	is(stats()->{l1_hits}, $s->{l1_hits} + 1, "$label: and that read was an L1 hit");
	return $s;
}

# Start a filler of $key whose fetch sleeps for 300 s and three waiters on
# it, whose own fetch would return 'fast'; check the flight while they wait.
sub start_slow_flight
{
	my ($label, $key) = @_;
	$node->safe_psql('postgres', 'SELECT twocache_stats_reset()');

	my $filler = start_psql('tc_filler',
		"SELECT twocache_get('$key', 'SELECT pg_sleep(300)::text || ''slow''')");
	wait_for_filler('PgSleep', 'sleeping in its fetch');
	my @waiters = start_waiters($key, q{SELECT ''fast''});
	wait_for_waiters(3, 'wait for the filler');
	check_waiting($label);
	return ($filler, @waiters);
}

# The filler was stopped at $t0 by a $what: every waiter finishes promptly
# with the value of the one that took over the fetch.
sub waiters_took_over
{
	my ($label, $t0, $what, @waiters) = @_;
	foreach my $w (@waiters)
	{
		my $rc = wait_psql($w, $t0 + $PROMPT);
		is($rc, 0, "$label: $w->{name} finished within $PROMPT s");
		is($w->{out}, 'fast', "$label: $w->{name} got the takeover's value");
	}
	note sprintf("%s: waiters done %.2f s after the %s", $label, time - $t0, $what);
	return;
}

# ---------------------------------------------------------------------
# 1. The filler is terminated: a waiter takes over.
# ---------------------------------------------------------------------
{
	my $label = 'filler terminated';
	my ($filler, @waiters) = start_slow_flight($label, 'k');

	my $t0 = time;
	is( $node->safe_psql('postgres',
			'SELECT pg_terminate_backend(' . pid_of('tc_filler') . ')'),
		't', "$label: pg_terminate_backend");
	waiters_took_over($label, $t0, 'termination', @waiters);

	isnt(wait_psql($filler, $t0 + $PROMPT), 0, "$label: filler's psql failed");
	like($filler->{err}, qr/57P01|terminating connection due to administrator command/,
		"$label: filler was terminated");

	my $s = check_after($label, 'k', 'fast', 2);
	ok($s->{fetch_waits} >= 2 && $s->{fetch_waits} <= 3,
		"$label: the waiters counted as fetch_waits ($s->{fetch_waits})");
}

# ---------------------------------------------------------------------
# 2. The filler is cancelled: it gets 57014, a waiter takes over.
# ---------------------------------------------------------------------
{
	my $label = 'filler cancelled';
	my ($filler, @waiters) = start_slow_flight($label, 'k2');

	my $t0 = time;
	is( $node->safe_psql('postgres',
			'SELECT pg_cancel_backend(' . pid_of('tc_filler') . ')'),
		't', "$label: pg_cancel_backend");

	isnt(wait_psql($filler, $t0 + $PROMPT), 0, "$label: filler's statement failed");
	like($filler->{err}, qr/ERROR:\s+57014: canceling statement due to user request/,
		"$label: filler got 57014");
	like($filler->{err}, qr/twocache fetch for key "k2"/,
		"$label: the error's context names the key");

	waiters_took_over($label, $t0, 'cancel', @waiters);

	my $s = check_after($label, 'k2', 'fast', 2);
	is($s->{fetch_errors}, 1, "$label: the cancelled fetch is a fetch error");
	ok($s->{fetch_waits} >= 2 && $s->{fetch_waits} <= 3,
		"$label: the waiters counted as fetch_waits ($s->{fetch_waits})");
}

# ---------------------------------------------------------------------
# 3. A waiter is terminated: the filler and the other waiters carry on.
#    The filler's fetch blocks on an advisory lock that $control holds.
# ---------------------------------------------------------------------
{
	my $label = 'waiter terminated';
	$node->safe_psql('postgres', 'SELECT twocache_stats_reset()');
	$control->query_safe('SELECT pg_advisory_lock(4242)');

	my $filler = start_psql('tc_filler',
		q{SELECT twocache_get('k3', 'SELECT ''slow'' FROM pg_advisory_xact_lock_shared(4242)')});
	wait_for_filler('advisory', 'blocked in its fetch');
	my $filler_pid = pid_of('tc_filler');
	my @waiters = start_waiters('k3', q{SELECT ''fast''});
	wait_for_waiters(3, 'wait for the filler');
	check_waiting($label);

	my $victim = $waiters[1];
	my $victim_pid = pid_of($victim->{name});
	my $t0 = time;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($victim_pid)"),
		't', "$label: pg_terminate_backend of $victim->{name}");
	isnt(wait_psql($victim, $t0 + $PROMPT), 0, "$label: $victim->{name}'s psql failed");
	like($victim->{err}, qr/57P01|terminating connection due to administrator command/,
		"$label: $victim->{name} was terminated");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $victim_pid"),
		"$label: $victim->{name}'s backend is gone");

	wait_for_waiters(2, 'still wait for the filler');
	is( $node->safe_psql('postgres', q{
SELECT pid || ' ' || wait_event FROM pg_stat_activity
WHERE application_name = 'tc_filler'}),
		"$filler_pid advisory",
		"$label: the same filler is still in its fetch");
	check_waiting("$label (after)");

	$control->query_safe('SELECT pg_advisory_unlock(4242)');
	$t0 = time;
	is(wait_psql($filler, $t0 + $PROMPT), 0, "$label: filler finished");
	is($filler->{out}, 'slow', "$label: filler got its value");
	foreach my $w (@waiters[ 0, 2 ])
	{
		is(wait_psql($w, $t0 + $PROMPT), 0, "$label: $w->{name} finished");
		is($w->{out}, 'slow', "$label: $w->{name} got the filler's value");
	}

	my $s = check_after($label, 'k3', 'slow', 1);
	ok($s->{fetch_waits} >= 2 && $s->{fetch_waits} <= 3,
		"$label: the waiters counted as fetch_waits ($s->{fetch_waits})");
}

# ---------------------------------------------------------------------
# 4. A terminated waiter leaves nothing behind for the backend that reuses
#    its PGPROC.  Waiter W waits for filler F and is terminated; the next
#    new backend, O, gets W's PGPROC (PostgreSQL reuses the most recently
#    freed one first) and owns a flight on key x.  F's fetch then needs x
#    (a nested twocache_get): F must wait for O's flight, not take W's
#    leftover wait for F as a wait cycle and fetch x itself.
# ---------------------------------------------------------------------
{
	my $label = 'after a waiter was terminated';
	$node->safe_psql('postgres', 'SELECT twocache_stats_reset()');
	$control->query_safe('SELECT pg_advisory_lock(4242)');
	$control->query_safe('SELECT pg_advisory_lock(4243)');

	my $filler = start_psql('tc_filler',
		q{SELECT twocache_get('k4', 'SELECT twocache_get(''x'', ''SELECT ''''fx'''''') FROM pg_advisory_xact_lock_shared(4242)')});
	wait_for_filler('advisory', 'blocked in its fetch');
	my ($w) = start_psql('tc_waiter1', q{SELECT twocache_get('k4', 'SELECT ''fast''')});
	wait_for_waiters(1, 'waits for the filler');

	# terminate from the long-lived session, so that no other backend exits
	# around W
	my $w_pid = pid_of('tc_waiter1');
	is($control->query_safe("SELECT pg_terminate_backend($w_pid)"),
		't', "$label: pg_terminate_backend of the waiter");
	isnt(wait_psql($w, time + $PROMPT), 0, "$label: the waiter's psql failed");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $w_pid"),
		"$label: the waiter's backend is gone");

	my $owner = $node->background_psql('postgres');
	$owner->query_until(qr/started/, q{\echo started
SELECT twocache_get('x', 'SELECT ''ox'' FROM pg_advisory_xact_lock_shared(4243)');
});
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 2 FROM pg_stat_activity WHERE wait_event = 'advisory'"),
		"$label: the owner of x is blocked in its fetch");

	# let F reach its nested twocache_get('x'): it must wait for the owner
	$control->query_safe('SELECT pg_advisory_unlock(4242)');
	ok( $node->poll_query_until(
			'postgres', q{
SELECT coalesce((SELECT wait_event FROM pg_stat_activity
				 WHERE application_name = 'tc_filler'), 'gone')
	   IN ('userlock', 'gone')}),
		"$label: the filler waits for x or has finished");
	is( $node->safe_psql(
			'postgres',
			"SELECT wait_event FROM pg_stat_activity WHERE application_name = 'tc_filler'"),
		'userlock',
		"$label: the filler waits for the owner's flight on x");

	$control->query_safe('SELECT pg_advisory_unlock(4243)');
	my $t0 = time;
	is(wait_psql($filler, $t0 + $PROMPT), 0, "$label: filler finished");
	is($filler->{out}, 'ox', "$label: filler got the owner's value of x");
	$owner->quit;

	my $s = stats();
	is($s->{fetches}, 2, "$label: 2 fetches (k4 and x), none twice");
	is($s->{in_flight}, 0, "$label: no flight left in progress");
}

# ---------------------------------------------------------------------
# The server never restarted.
# ---------------------------------------------------------------------
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'same postmaster throughout');
is($control->query_safe('SELECT 1'), '1', 'a session open since the start still works');
is($node->safe_psql('postgres', 'SELECT in_flight FROM twocache_stats'),
	'0', 'no flight in progress at the end');
$control->quit;

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|server process .* was terminated|all server processes terminated/,
	'no backend crashed');

$node->stop;
done_testing();
