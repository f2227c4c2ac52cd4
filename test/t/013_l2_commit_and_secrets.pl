# Commit-aware delete (SPEC.md section 4): a twocache_del made inside a
# transaction block acts at once and again after commit, in both layers and
# on every server, so a reader that refilled the key from a snapshot taken
# before the commit is corrected; an abort adds nothing.
#
# Secrets: the Redis password in twocache.redis_url is never visible to
# non-superusers (SHOW, pg_settings, twocache_status) nor in the logs, also
# when Redis is down or refuses the password.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $FETCH = q{'SELECT v FROM src WHERE id = 1'};

# The worker that was running at the start is still running, and the log
# shows no FATAL or PANIC and no worker exit: nothing here should make the
# worker exit.  Call before stopping the node.
my %first_worker;

sub remember_worker
{
	my ($node) = @_;
	$first_worker{ $node->name } =
	  $node->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()');
}

sub worker_never_exited
{
	my ($node) = @_;
	is($node->safe_psql('postgres', 'SELECT worker_pid FROM twocache_status()'),
		$first_worker{ $node->name }, $node->name . ': the same worker throughout');
	my @bad = grep { /FATAL|PANIC|terminated by signal|twocache worker.*exited/ }
	  split /\n/, slurp_file($node->logfile);
	ok(!@bad, $node->name . ': no FATAL, no crash, no worker exit in the log')
	  or diag join("\n", @bad);
}

# =====================================================================
# Commit-aware delete
# =====================================================================
my $redis = TwoCacheRedis->new;
my $node1 = l2_node('node1', $redis, wait_subscribed => 1);
my $node2 = l2_node('node2', $redis, wait_subscribed => 1);
remember_worker($_) foreach ($node1, $node2);
$node1->safe_psql(
	'postgres', q{
CREATE TABLE src (id int PRIMARY KEY, v text);
INSERT INTO src VALUES (1, 'old');
});

{
	is($node1->safe_psql('postgres', "SELECT twocache_get('row:1', $FETCH)"), 'old',
		'node1: row:1 cached');
	is($node2->safe_psql('postgres', q{SELECT twocache_get('row:1')}), 'old',
		'node2: row:1 read from L2');
	is(in_l1($node2, 'row:1'), 't', 'node2: row:1 in its L1');

	my $sent0 = counter($node1, 'invalidations_sent');
	my $recv0 = counter($node2, 'invalidations_received');

	# A writer: update the row and delete its key, in one transaction block.
	my $writer = $node1->background_psql('postgres');
	$writer->query_safe('BEGIN');
	$writer->query_safe(q{UPDATE src SET v = 'new' WHERE id = 1});
	is($writer->query_safe(q{SELECT twocache_del('row:1')}), 't', 'writer: del inside the block');
	is($redis->cli('EXISTS', 'db:postgres:row:1'), '0', 'the del acted on L2 at once');
	is(in_l1($node1, 'row:1'), 'f', 'the del acted on L1 at once');
	ok(poll($node2, "SELECT invalidations_received >= $recv0 + 1 FROM twocache_stats"),
		"node2: received the del's message");
	is(in_l1($node2, 'row:1'), 'f', "node2: it dropped its L1 copy");
	is(counter($node1, 'invalidations_sent'), $sent0 + 1, 'node1: one message sent so far');

	# A reader refills from a snapshot taken before the commit.
	is($node1->safe_psql('postgres', "SELECT twocache_get('row:1', $FETCH)"), 'old',
		'reader: refills row:1 from the pre-commit snapshot');
	is(in_l1($node1, 'row:1'), 't', 'reader: the stale value is in L1');
	is($redis->cli('GET', 'db:postgres:row:1'), 'vold', 'reader: the stale value is in L2');
	is($node2->safe_psql('postgres', q{SELECT twocache_get('row:1')}), 'old',
		'node2: reads the stale value from L2');
	is(in_l1($node2, 'row:1'), 't', 'node2: the stale value is in its L1');
	$sent0 = counter($node1, 'invalidations_sent');
	$recv0 = counter($node2, 'invalidations_received');

	$writer->query_safe('COMMIT');
	is($redis->cli('EXISTS', 'db:postgres:row:1'), '0',
		'after commit: the stale value is gone from L2');
	is(in_l1($node1, 'row:1'), 'f', 'after commit: and from L1');
	is(counter($node1, 'invalidations_sent'), $sent0 + 1,
		'after commit: the del was sent again');
	ok(poll($node2, "SELECT invalidations_received >= $recv0 + 1 FROM twocache_stats"),
		'node2: received the post-commit message');
	is(in_l1($node2, 'row:1'), 'f', 'node2: it dropped the stale value from its L1');
	is(counter($node2, 'invalidations_received'), $recv0 + 1,
		'node2: one more message received');

	is($node1->safe_psql('postgres', "SELECT twocache_get('row:1', $FETCH)"), 'new',
		'node1: the next read fetches the committed value');
	is($node2->safe_psql('postgres', q{SELECT twocache_get('row:1')}), 'new',
		'node2: reads the committed value from L2');
	$writer->quit;
}

# How many messages a script sends from node1.
sub sends
{
	my ($sql) = @_;
	my $s0 = counter($node1, 'invalidations_sent');
	$node1->psql('postgres', $sql, on_error_stop => 0);
	return counter($node1, 'invalidations_sent') - $s0;
}

is(sends(q{SELECT twocache_del('ac')}), 1, 'a del outside a transaction block is sent once');
is(sends(q{BEGIN; SELECT twocache_del('ab'); ROLLBACK;}), 1,
	'a del in a block that rolls back is sent once (an abort adds nothing)');
is(sends(q{BEGIN; SELECT twocache_del('ae'); SELECT 1/0; COMMIT;}), 1,
	'a del in a block that fails is sent once');
is(sends(q{BEGIN; SELECT twocache_del('b1'); SELECT twocache_del('b2'); COMMIT;}), 4,
	'two dels in a committed block are each sent twice');
is(sends(q{BEGIN; SELECT twocache_set('st', 'x'); COMMIT;}), 1,
	'a set in a block is sent once');
is( sends(
		q{WITH u AS (UPDATE src SET v = 'newer' WHERE id = 1 RETURNING id)
		  SELECT twocache_del('row:' || id) FROM u}),
	2,
	'a del in a transaction that has written is sent again after commit');

worker_never_exited($_) foreach ($node1, $node2);
$node1->stop;
$node2->stop;
$redis->stop;

# =====================================================================
# Secrets
# =====================================================================
my $PW = 's3cr3t-pw';
my $WRONG = 'not-the-pw-42';
my $rs = TwoCacheRedis->new(password => $PW);

# The URL is in postgresql.conf before start (a reload would make
# PostgreSQL itself log the new value).
my $node3 = l2_node('secret', $rs, conf => 'log_min_messages = debug1');
my $node4 = l2_node('wrongpw', $rs->url(password => $WRONG), conf => 'log_min_messages = debug1');
like($rs->url, qr/:\Q$PW\E@/, 'the URL carries the password');

ok(poll($node3, 'SELECT subscribed AND redis_connected FROM twocache_status()'),
	'with the password: subscribed');
remember_worker($_) foreach ($node3, $node4);
is($node3->safe_psql('postgres', 'SELECT mode FROM twocache_status()'), 'two-layer',
	'with the password: two-layer mode');
{
	my ($out, $err) = ('', '');
	$node3->psql('postgres', q{SELECT twocache_set('sk', 'sv')},
		stdout => \$out, stderr => \$err);
	is($out, 't', 'with the password: set');
	is($err, '', 'with the password: no warning');
	is($rs->cli('GET', 'db:postgres:sk'), 'vsv', 'with the password: the set reached Redis');
}

$node3->safe_psql('postgres', 'CREATE ROLE reader LOGIN; GRANT EXECUTE ON FUNCTION twocache_get(text) TO reader');

# Run $sql as reader: (exit code, stdout, stderr).
sub as_reader
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err, on_error_stop => 0,
		extra_params => [ '-U', 'reader' ]);
	return ($rc, $out, $err);
}

{
	my ($rc, $out, $err) = as_reader($node3, 'SHOW twocache.redis_url');
	like($err, qr/42501/, 'reader: SHOW twocache.redis_url is refused (42501)');
	unlike($out . $err, qr/\Q$PW\E/, 'reader: SHOW does not show the password');

	($rc, $out, $err) = as_reader($node3, q{SELECT current_setting('twocache.redis_url')});
	like($err, qr/42501/, 'reader: current_setting is refused (42501)');
	unlike($out . $err, qr/\Q$PW\E/, 'reader: current_setting does not show the password');

	($rc, $out, $err) = as_reader($node3, q{SELECT * FROM pg_settings});
	is($rc, 0, 'reader: pg_settings can be read');
	unlike($out . $err, qr/\Q$PW\E/, 'reader: pg_settings does not show the password');

	($rc, $out, $err) = as_reader($node3, 'SHOW ALL');
	is($rc, 0, 'reader: SHOW ALL works');
	unlike($out . $err, qr/\Q$PW\E/, 'reader: SHOW ALL does not show the password');

	($rc, $out, $err) = as_reader($node3, 'SELECT * FROM twocache_status()');
	is($rc, 0, 'reader: twocache_status() can be read');
	like($out, qr/two-layer/, 'reader: twocache_status() answers');
	unlike($out . $err, qr/\Q$PW\E/, 'reader: twocache_status() does not show the password');

	($rc, $out, $err) = as_reader($node3, 'SELECT * FROM twocache_stats');
	unlike($out . $err, qr/\Q$PW\E/, 'reader: twocache_stats does not show the password');

	($rc, $out, $err) = as_reader($node3, q{SELECT twocache_get('sk')});
	is($out, 'sv', 'reader: reads the cache');
}

# Redis down: the worker's and the backends' errors do not show it either.
{
	# an error newer than the stop, not one left from before
	my $t0 = $node3->safe_psql('postgres', 'SELECT clock_timestamp()');
	$rs->stop;
	ok( poll(
			$node3,
			"SELECT NOT subscribed AND last_error IS NOT NULL AND last_error_at >= '$t0' FROM twocache_status()"
		),
		'Redis down: the worker reports an error');
	my ($out, $err) = ('', '');
	$node3->psql('postgres', q{SELECT twocache_set('sk', 'down')}, stdout => \$out, stderr => \$err);
	like($err, qr/WARNING:.*Redis/, 'Redis down: a set warns');
	unlike($err, qr/\Q$PW\E/, 'Redis down: the warning does not show the password');
	$node3->psql('postgres', q{SELECT twocache_get('nope', 'SELECT 1')}, stdout => \$out, stderr => \$err);
	unlike($err, qr/\Q$PW\E/, 'Redis down: a read does not show the password');
	unlike($node3->safe_psql('postgres', 'SELECT * FROM twocache_status()'), qr/\Q$PW\E/,
		'Redis down: twocache_status() does not show the password');
	$rs->start;
	ok(poll($node3, 'SELECT subscribed FROM twocache_status()'), 'Redis back: subscribed again');
}

# A wrong password: refused, reported, not shown.
{
	# node4 uses the same Redis as node3, which was just stopped and started
	# again: its last_error may still be a "connection refused" from then.
	# Wait for the error this check is about, the refused password.
	ok(poll($node4, q{SELECT NOT subscribed AND last_error IS NOT NULL FROM twocache_status()}),
		'wrong password: the worker reports an error');
	my $auth_error = q{last_error ~* 'WRONGPASS|auth|password'};
	my $says_why = poll($node4,
		"SELECT NOT subscribed AND coalesce($auth_error, false) FROM twocache_status()");
	my $last_error = $node4->safe_psql('postgres', 'SELECT last_error FROM twocache_status()');
	note "last_error: $last_error";
	ok($says_why, 'wrong password: last_error says why') or diag "last_error: $last_error";
	unlike($last_error, qr/\Q$WRONG\E/, 'wrong password: last_error does not show the password');

	my ($out, $err) = ('', '');
	$node4->psql('postgres', q{SELECT twocache_get('wk', 'SELECT ''fetched''')},
		stdout => \$out, stderr => \$err);
	is($out, 'fetched', 'wrong password: reads still answer');
	unlike($err, qr/ERROR/, 'wrong password: without an error');
	unlike($err, qr/\Q$WRONG\E/, 'wrong password: nor the password');
	$node4->psql('postgres', q{SELECT twocache_set('wk', 'x')}, stdout => \$out, stderr => \$err);
	like($err, qr/WARNING:.*Redis/, 'wrong password: a set warns');
	unlike($err, qr/\Q$WRONG\E/, 'wrong password: the warning does not show the password');
	is($rs->cli('EXISTS', 'db:postgres:wk'), '0', 'wrong password: nothing written to Redis');
	cmp_ok(counter($node4, 'redis_errors'), '>', 0, 'wrong password: redis_errors counted');
}

# An ACL user: redis://user:password@host:port
my $USERPW = 'user-pw-77';
is($rs->cli('ACL', 'SETUSER', 'tcuser', 'on', ">$USERPW", '~*', '&*', '+@all'), 'OK',
	'ACL user tcuser created');
my $node5 = l2_node('acluser',
	'redis://tcuser:' . $USERPW . '@' . $rs->host . ':' . $rs->port,
	conf => 'log_min_messages = debug1');
ok(poll($node5, 'SELECT subscribed AND redis_connected FROM twocache_status()'),
	'ACL user: subscribed');
remember_worker($node5);
is($node5->safe_psql('postgres', q{SELECT twocache_set('acl', 'a')}), 't', 'ACL user: set');
is($rs->cli('GET', 'db:postgres:acl'), 'va', 'ACL user: the set reached Redis');
unlike($node5->safe_psql('postgres', 'SELECT * FROM twocache_status()'), qr/\Q$USERPW\E/,
	'ACL user: twocache_status() does not show the password');

foreach my $node ($node3, $node4, $node5)
{
	my $log = slurp_file($node->logfile);
	my @leaks = grep { /\Q$PW\E|\Q$WRONG\E|\Q$USERPW\E/ } split /\n/, $log;
	ok(!@leaks, $node->name . ': the server log never shows a password')
	  or diag join("\n", @leaks);
	worker_never_exited($node);
}

$node3->stop;
$node4->stop;
$node5->stop;
$rs->stop;
done_testing();
