# A tag with a million keys: invalidating it empties its set in Redis in
# bounded rounds, so Redis never answers BUSY to another client meanwhile
# and no server's worker loses its connection and flushes L1 over it.  The
# same for a tag invalidation applied after commit (the trigger's queue) and
# one inside a transaction block.  The test's Redis answers BUSY to every
# other client as soon as a script has run 100 ms, so one long script fails
# the test deterministically.
use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(
	args => [ '--appendonly', 'yes', '--busy-reply-threshold', '100' ]);
my $node = l2_node('node1', $redis, wait_subscribed => 1);

# Put $n members, "db:postgres:<tag>:<i>", into the set of tag $tag in the
# layout of src/l2.c: each a tagged value ('t', the length of the encoded
# tags, each tag as a 2-byte length and its bytes, then the value "v<i>").
# In chunks short enough that no script runs near the BUSY threshold.
my $fill_script = q{
local tag = ARGV[1]
local set = 'tag:db:postgres:' .. tag
local tags = string.char(0, #tag) .. tag
local head = 't' .. string.char(0, 0, 0, #tags) .. tags
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  local k = 'db:postgres:' .. tag .. ':' .. i
  redis.call('SET', k, head .. 'v' .. i)
  redis.call('SADD', set, k)
end
return redis.call('SCARD', set)
};

sub fill_tag
{
	my ($tag, $n) = @_;
	my $chunk = 10_000;
	my $card = 0;
	for (my $i = 1; $i <= $n; $i += $chunk)
	{
		my $last = $i + $chunk - 1;
		$last = $n if $last > $n;
		$card = $redis->command('EVAL', $fill_script, 0, $tag, $i, $last);
	}
	return $card;
}

# A client that PINGs Redis in a loop on one connection until told to stop,
# counting BUSY replies and recording the slowest answer.  Runs in a child
# process; stop_monitor returns { pings, busy, max_ms }.
sub start_monitor
{
	my ($name) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir("monitor_$name");
	my %m = (dir => $dir, stop => "$dir/stop", out => "$dir/result", ready => "$dir/ready");
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		my ($pings, $busy, $max, $err) = (0, 0, 0, '');
		eval {
			my $sock = IO::Socket::INET->new(
				PeerAddr => $redis->host,
				PeerPort => $redis->port,
				Proto => 'tcp',
				Timeout => 10) or die "connect: $!";
			binmode $sock;
			my $sel = IO::Select->new($sock);
			my $buf = '';
			until (-e $m{stop})
			{
				my $t0 = time;
				syswrite($sock, "*1\r\n\$4\r\nPING\r\n") or die "write: $!";
				my $i;
				while (($i = index($buf, "\r\n")) < 0)
				{
					die "no answer within 30 s" unless $sel->can_read(30);
					my $got = sysread($sock, my $chunk, 4096);
					die "read: $!" unless $got;
					$buf .= $chunk;
				}
				my $line = substr($buf, 0, $i);
				substr($buf, 0, $i + 2) = '';
				my $ms = (time - $t0) * 1000;
				$max = $ms if $ms > $max;
				$busy++ if $line =~ /^-BUSY/;
				die "unexpected reply: $line" unless $line eq '+PONG' || $line =~ /^-BUSY/;
				$pings++;
				if ($pings == 1)
				{
					open(my $fh, '>', $m{ready}) or die;
					close $fh;
				}
				usleep(500);
			}
		};
		$err = $@ if $@;
		$err =~ s/\s+/ /g;
		if (open(my $fh, '>', "$m{out}.tmp"))
		{
			printf $fh "%d %d %.1f %s\n", $pings, $busy, $max, $err;
			close $fh;
			rename("$m{out}.tmp", $m{out});
		}
		POSIX::_exit(0);
	}
	$m{pid} = $pid;
	# poll until it has had an answer (or died)
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until (-e $m{ready} || -e $m{out} || time > $deadline)
	{
		usleep(10_000);
	}
	return \%m;
}

sub stop_monitor
{
	my ($m) = @_;
	open(my $fh, '>', $m->{stop}) or die "could not create $m->{stop}: $!";
	close $fh;
	waitpid($m->{pid}, 0);
	my $line = -e $m->{out} ? slurp_file($m->{out}) : '';
	my ($pings, $busy, $max, $err) = $line =~ /^(\d+) (\d+) ([\d.]+) ?(.*)$/;
	return { pings => $pings // 0, busy => $busy // -1, max_ms => $max // 0, error => $err // 'no result' };
}

sub local_flushes
{
	return $node->safe_psql('postgres', 'SELECT local_flushes FROM twocache_status()');
}

# Run $sql on $node; returns (stdout, stderr) and fails the test on an error.
sub run_sql
{
	my ($sql, $name) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err);
	is($rc, 0, "$name: runs without error");
	return ($out, $err);
}

# How many keys matching a pattern Redis holds.
sub count_keys
{
	my ($pattern) = @_;
	return $redis->command('EVAL', "return #redis.call('KEYS', ARGV[1])", 0, $pattern);
}

# DBSIZE without the fill fences (fence:{...} of the stripes the deletes
# touch, tagfence:{...}:... of the tags invalidated).
sub data_size
{
	return $redis->command('DBSIZE') - count_keys('fence:{*') - count_keys('tagfence:{*');
}

# What data_size will be once tag $tag is invalidated: its members and its
# set gone.
sub dbsize_without
{
	my ($tag) = @_;
	return data_size() - $redis->command('SCARD', "tag:db:postgres:$tag") - 1;
}

# Check the state after an invalidation of $tag: its set and its keys gone
# from Redis, the monitor never refused, no WARNING, no flush by the worker.
sub check_invalidated
{
	my ($tag, $n, $mon, $stderr, $flushes0, $dbsize) = @_;
	my $m = stop_monitor($mon);
	note(sprintf('%s: the monitor made %d PINGs, the slowest answered in %.1f ms',
			$tag, $m->{pings}, $m->{max_ms}));
	is($m->{error}, '', "$tag: the monitor kept its connection");
	cmp_ok($m->{pings}, '>', 0, "$tag: the monitor pinged meanwhile");
	is($m->{busy}, 0, "$tag: Redis never answered BUSY to another client");
	is($stderr, '', "$tag: no WARNING");

	# (a long script, which this test must catch, may still be running)
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	usleep(10_000) until $redis->ping || time > $deadline;
	is($redis->command('EXISTS', "tag:db:postgres:$tag"), 0, "$tag: the set is gone");
	is($redis->command('SCARD', "tag:db:postgres:$tag"), 0, "$tag: SCARD is 0");
	is($redis->command('EXISTS', map { "db:postgres:$tag:$_" } (1, 2, int($n / 2), $n - 1, $n)),
		0, "$tag: sampled member keys are gone from Redis");
	is(data_size(), $dbsize, "$tag: DBSIZE went down by the members and the set");
	is(count_keys("tagfence:{*}:db:postgres:$tag"), 1, "$tag: the tag's fill fence is set");
	is($node->safe_psql('postgres', 'SELECT subscribed FROM twocache_status()'), 't',
		"$tag: the worker is still subscribed");

	# a worker that lost Redis flushes L1 when it subscribes again
	ok(poll($node, 'SELECT subscribed FROM twocache_status()'), "$tag: the worker is subscribed");
	is(local_flushes(), $flushes0, "$tag: the worker did not flush L1");
	return;
}

$node->safe_psql(
	'postgres', q{
CREATE TABLE src (id int PRIMARY KEY, v text);
INSERT INTO src VALUES (1, 'one');
CREATE TABLE orders (id int);
INSERT INTO orders VALUES (1);
CREATE TRIGGER orders_inval AFTER INSERT OR UPDATE OR DELETE ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger('queued');
});
my $dbsize0 = data_size();

# ---- one million members, invalidated by twocache_invalidate_tag
my $n = 1_000_000;
is(fill_tag('big', $n), $n, "Redis: the set of tag 'big' holds $n members");

# the filled layout is ours: a server reads a member from Redis
is($node->safe_psql('postgres', q{SELECT twocache_get('big:777', 'SELECT NULL::text', '10 min')}),
	'v777', 'node1: reads a filled member from Redis');
is($node->safe_psql('postgres', q{SELECT twocache_set('big:s1', 's1', '10 min', NULL, ARRAY['big'])}),
	't', 'node1: sets big:s1 tagged');
is($node->safe_psql('postgres', q{SELECT twocache_set('big:s2', 's2', NULL, NULL, ARRAY['big', 'other'])}),
	't', 'node1: sets big:s2 with two tags');
is( $node->safe_psql('postgres',
		q{SELECT twocache_get('big:f1', 'SELECT v FROM src WHERE id = 1', '10 min', ARRAY['big'])}),
	'one', 'node1: fills big:f1 tagged');
is($node->safe_psql('postgres', q{SELECT twocache_set('untagged', 'u')}), 't',
	'node1: sets an untagged key');
is(in_l1($node, $_), 't', "node1: $_ in L1") foreach ('big:777', 'big:s1', 'big:s2', 'big:f1');
is($redis->command('SCARD', 'tag:db:postgres:big'), $n + 3, 'Redis: the three joined the set');
my $dbsize_big = dbsize_without('big');
is($dbsize_big, $dbsize0 + 2, "what stays: the untagged key and the set of tag 'other'");

my $flushes0 = local_flushes();
my $errors0 = counter($node, 'redis_errors');
my $mon = start_monitor('big');
my ($out, $err) = run_sql(q{SELECT twocache_invalidate_tag('big')}, 'invalidate big');
is($out, '4', 'invalidate big: dropped the four L1 entries');
check_invalidated('big', $n, $mon, $err, $flushes0, $dbsize_big);
is(in_l1($node, $_), 'f', "node1: $_ dropped from L1") foreach ('big:777', 'big:s1', 'big:s2', 'big:f1');
is(in_l1($node, 'untagged'), 't', 'node1: the untagged key stays in L1');
is($redis->command('EXISTS', 'db:postgres:untagged'), 1, 'Redis: the untagged key stays');
is(counter($node, 'redis_errors'), $errors0, 'no Redis error counted');
is($node->safe_psql('postgres', q{SELECT twocache_get('big:777')}), '',
	'node1: big:777 is a miss in both layers now');

# a member added after the invalidation stays indexed
is($node->safe_psql('postgres', q{SELECT twocache_set('big:new', 'n', NULL, NULL, ARRAY['big'])}),
	't', 'node1: sets big:new tagged after the invalidation');
is_deeply($redis->command('SMEMBERS', 'tag:db:postgres:big'), ['db:postgres:big:new'],
	"Redis: the set holds the new member alone");

# ---- 200,000 members, invalidated after commit (queued by the trigger)
my $m2 = 200_000;
is(fill_tag('queued', $m2), $m2, "Redis: the set of tag 'queued' holds $m2 members");
is($node->safe_psql('postgres', q{SELECT twocache_set('queued:s', 's', NULL, NULL, ARRAY['queued'])}),
	't', 'node1: sets queued:s tagged');
my $dbsize1 = dbsize_without('queued');
$flushes0 = local_flushes();
$mon = start_monitor('queued');
($out, $err) = run_sql(
	q{BEGIN; UPDATE orders SET id = id + 1; COMMIT;},
	'update orders in a transaction block');
check_invalidated('queued', $m2, $mon, $err, $flushes0, $dbsize1);
is(in_l1($node, 'queued:s'), 'f', 'node1: queued:s dropped from L1 after commit');

# ---- 200,000 members, invalidated inside a transaction block (at once, and
# again after commit)
is(fill_tag('inxact', $m2), $m2, "Redis: the set of tag 'inxact' holds $m2 members");
is($node->safe_psql('postgres', q{SELECT twocache_set('inxact:s', 's', NULL, NULL, ARRAY['inxact'])}),
	't', 'node1: sets inxact:s tagged');
my $dbsize2 = dbsize_without('inxact');
$flushes0 = local_flushes();
$mon = start_monitor('inxact');
($out, $err) = run_sql(
	q{BEGIN; SELECT twocache_invalidate_tag('inxact'); COMMIT;},
	'invalidate inxact in a transaction block');
check_invalidated('inxact', $m2, $mon, $err, $flushes0, $dbsize2);
is(in_l1($node, 'inxact:s'), 'f', 'node1: inxact:s dropped from L1');

# ---- a Redis error reply (here WRONGTYPE: the tag's "set" is a string) is
# an error, counted and warned about, never silent
$redis->command('SET', 'tag:db:postgres:wrongtype', 'x');
$errors0 = counter($node, 'redis_errors');
($out, $err) = run_sql(q{SELECT twocache_invalidate_tag('wrongtype')}, 'invalidate wrongtype');
like($err, qr/WARNING:  could not invalidate cache tag in Redis.*\n.*DETAIL:  Redis refused the tag invalidation: .*WRONGTYPE/,
	'wrongtype: the error reply is a WARNING naming it');
is(counter($node, 'redis_errors'), $errors0 + 1, 'wrongtype: counted in redis_errors');

no_crash_in_log($node);
$node->stop;
done_testing();
