# Consistency checker (SPEC.md sections 4 and 5): a realistic workload of
# concurrent readers and writers on three servers sharing one Redis, with
# Redis restarted at random moments, checked for stale cached values.
#
# Topology.  A primary, a streaming hot standby of it and an independent
# server, all on one Redis, each with its own twocache.instance_id, all
# using database "postgres", so that they cache every key under the same
# Redis key db:postgres:row:<k> and read each other's values from L2.  Each
# server reads table src(id int primary key, v text): the standby the
# primary's rows through WAL, the independent server a copy of its own that
# the writers keep equal to the primary's.  A value is '<k>:<version>', and
# the version of a row only ever increases.
#
# Writers (WRITERS sessions on the primary and on the independent server).
# One step updates one row k on both, each in a transaction of its own that
# deletes the key before it commits:
#
#   primary:     BEGIN; UPDATE src SET v = <k>:<version + 1> WHERE id = k
#                RETURNING v; SELECT twocache_del('row:<k>'); COMMIT;
#   independent: BEGIN; UPDATE src SET v = <that value> WHERE id = k
#                AND <its version> < <that version>;
#                SELECT twocache_del('row:<k>'); COMMIT;
#
# The primary picks the version (under the row lock, so concurrent writers of
# one key commit increasing versions); the guard keeps the copy's versions
# increasing too when two writers of one key reach it in the other order.
# Between the two commits the independent server may legitimately put the
# previous version in L2, where the primary finds it: that window is part of
# the protocol (the second transaction's delete closes it).  One step in ten
# is a cache-only twocache_del of a random key on a random server (the
# standby too).  A twocache_del that cannot reach Redis applies locally and
# warns, and other servers keep their copies (README "When Redis fails"):
# as the warning's hint says, the writer deletes the key again, at each
# later step, until a delete goes through without a warning.
#
# Readers (READERS sessions per server) call probe(), a PL/pgSQL function
# that, for BATCH random keys (half of them among the HOT first ones), reads
# the row from the table and then calls
# twocache_get('row:<k>', 'SELECT v FROM src WHERE id = <k>').  Each
# statement takes a new snapshot, so the table read sees every version
# committed (on the standby: replayed) before the cache read began.  A read
# is STALE when the cached version is lower than the table version read just
# before it on the same server; its staleness is the time from the commit of
# the first newer version (on the primary for the primary and the standby,
# on the independent server for itself) to the start of the read.  A cached
# value that is not '<k>:<number>' for the key read is BAD.
#
# The run is a series of intervals of CHECK_EVERY seconds, each followed by a
# checkpoint.  In each interval but the last, with probability RESTART_PROB,
# an outage begins at a random moment of the first RESTART_SPAN of the
# interval and lasts 50 ms to OUTAGE_MAX seconds: Redis is stopped and
# started again on its port (a restart: it keeps its data, --appendonly
# yes, as production runs it), or holds writes back (CLIENT PAUSE WRITE:
# deletes, messages and fills wait and time out, reads are answered), or one
# server loses Redis (a partition: its twocache.redis_url points at a
# closed port, then back).  The short form has one of each, in that order,
# the partition of the primary; the long form picks at random.  Deletes that could not reach
# Redis wait in their server's queue and are sent when it answers.  The
# rest of the interval is quiet, so that what an outage does not explain
# has time to show at the checkpoint.  "After a restart" below means after
# an outage of any kind.
#
# Hard assertions:
# - at every checkpoint (every CHECK_EVERY seconds and at the end): with the
#   writers paused (readers go on reading) and their failed deletes re-sent,
#   Redis up and every worker subscribed again after the last restart, the
#   standby's replay caught up with the primary's current WAL position, its
#   deferred invalidations applied, and every message published before
#   applied by every worker (a marker message published after them has
#   dropped its key from every L1): every server's twocache_get of every key
#   equals the table on
#   that server, every value in Redis ('v' + value; 'n' would be a
#   placeholder) equals the table, and the three tables are equal;
# - during the run: no BAD value, no ERROR other than a standby's recovery
#   conflict, and bounded staleness.  Let an outage last D seconds (from the
#   stop to the start answering PING).  The workers lose their subscription
#   at the stop and retry each after a random time between half and all of
#   0.1, 0.2, 0.4, 0.8 ... s (backoff 100 ms doubling, with jitter): the
#   retry after Redis is back comes at most one delay after D, and that
#   delay is at most twice the time spent before it plus 0.1 s, so they
#   resubscribe, and flush L1, within 3D + 0.1 s of the stop; a writer's
#   failed delete goes through once its backend has skipped Redis for
#   twocache.redis_retry_interval (500 ms, plus up to 125 ms of jitter)
#   after Redis is back.
#   A stale read is "after a restart" when the newer version committed
#   between RESTART_BEFORE s before a stop and 3D + RESTART_AFTER s after
#   it: its staleness is at most 3D + 1.25 s, asserted as at most
#   3 x (longest D) + BOUND_RESTART_EXTRA.  Other stale reads are "quiet":
#   they come only from the windows above (between the two commits of one
#   step, message delivery, WAL replay on the standby), asserted as at most
#   BOUND_QUIET.  Both bounds leave seconds of slack for a loaded machine.
#   A standby that caches a row from a snapshot older than an invalidation
#   it has already received keeps it until the key is written again: that
#   shows as staleness beyond these bounds, and at the next checkpoint.
#
# Two key families.  Everything above is about the 'row' family, kept
# correct by the writers' twocache_del calls.  The 'auto' family checks the
# commit-time trigger path of 1.1 (README "Invalidation from table
# changes") on the same rows, tables and servers: src is tracked
# (twocache_track('src')) on the primary and on the independent server, the
# standby has the primary's trigger through WAL, and the key auto:<k> is
# read with twocache.auto_tag = on, so that its value carries the tag
# 'public.src'.  Nothing ever deletes an auto key: every committed write to
# src on the primary or on the independent server invalidates the tag, so
# every auto key, on every server and in Redis (the tag is shared: same
# database name), after its commit; the standby defers the primary's until
# it has replayed the commit.  probe() reads the two families alternately,
# setting twocache.auto_tag for each read (on for auto, off for row, so that
# no row value is ever tagged and the row family still checks the delete
# path alone).  The same definitions of stale and BAD, the same checkpoint
# assertions (an auto value in Redis is 't', the tag list {'public.src'}
# and the value; 'm' would be a placeholder) and the same bounds apply to
# both families, and the report gives them per family:
# - quiet: the trigger path has the row path's windows, minus the delete
#   before commit.  Its invalidation goes out after the commit is visible
#   (the writer's commit time is taken after COMMIT returned, so after it
#   was sent), the independent server can put the previous version in
#   Redis between the primary's and its own commit, which its own commit
#   (a tag invalidation like any other) closes, and the standby applies the
#   primary's after replay, like a delete.
# - after a restart: an invalidation that cannot reach Redis at commit is
#   not sent again (the commit warns; there is nothing to re-send for the
#   auto family) but the next committed write on either server invalidates
#   the whole tag everywhere, and the writers commit every few ms: once a
#   writer's backend uses Redis again (redis_retry_interval after its last
#   failure, the same delay as a re-sent delete), its next commit closes the
#   window.  So the row family's reasoning, and its bound, hold.  For the
#   same reason the checkpoints need no re-send for auto keys: the quiet
#   part of an interval holds hundreds of commits on both servers.
#
# Short form (make test): SHORT_SECONDS of workload.  Long form (make
# stress): TWOCACHE_STRESS_SECONDS.  Checkpoints add a few seconds each.
# The report (diag) gives reads, writes, restarts, checkpoints and staleness
# per server and key family, and the longest stale reads.
use strict;
use warnings;

use IPC::Run;
use List::Util qw(min);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $SHORT_SECONDS = 26;              # four intervals: three faults, one of each kind
my $long = ($ENV{TWOCACHE_STRESS_SECONDS} // 0) > 0;
my $DURATION = $long ? $ENV{TWOCACHE_STRESS_SECONDS} : $SHORT_SECONDS;
my $CHECK_EVERY = $long ? 10 : 6;    # seconds of workload between checkpoints
my $RESTART_PROB = $long ? 0.8 : 1;  # chance of a Redis restart in an interval
my $RESTART_SPAN = 0.4;              # ... in the first 40% of the interval
my $OUTAGE_MAX = 1.0;                # longest Redis outage, s
my @FAULTS = qw(restart pause partition);    # kinds of outage (see above)
my $NKEYS = 200;
my $HOT = 20;
my $READERS = 2;                     # reader sessions per server
my $WRITERS = 2;
my $BATCH = 20;                      # keys read per probe() call
my $WRITE_PAUSE_MS = 10;             # writers sleep 0..this between steps
my $BOUND_QUIET = 2.0;               # s
my $BOUND_RESTART_EXTRA = 3.5;       # s, on top of 3 x the longest outage
my ($RESTART_BEFORE, $RESTART_AFTER) = (0.5, 1.6);    # s

my $seed = $ENV{TWOCACHE_STRESS_SEED} // int(time * 1000) % 1_000_000;
srand($seed);
note "seed $seed (TWOCACHE_STRESS_SEED reproduces the schedule, not the interleaving)";

# Local helpers.  Everything a child process needs is defined before the
# children are forked.

# ---------------------------------------------------------------------
# A psql session driven through pipes: query() sends SQL and returns its
# standard output and standard error, restarting psql if it died.  Unlike
# BackgroundPsql it logs nothing per query and times each query on its own.
# ---------------------------------------------------------------------
package TcSession
{
	sub new
	{
		my ($class, $node, $appname) = @_;
		my $self = bless { node => $node, appname => $appname, n => 0 }, $class;
		$self->_start;
		return $self;
	}

	sub _start
	{
		my ($self) = @_;
		@$self{qw(in out err)} = ('', '', '');
		$self->{timer} = IPC::Run::timeout(120);
		$self->{h} = IPC::Run::start(
			[
				$self->{node}->installed_command('psql'), '-XAtq', '-d',
				$self->{node}->connstr('postgres') . " application_name=$self->{appname}",
				'-f', '-'
			],
			'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err},
			$self->{timer});
		return;
	}

	# (stdout, stderr); stderr 'SESSION LOST: ...' if psql exited or hung.
	sub query
	{
		my ($self, $sql, $timeout) = @_;
		my $b = '__tc_done_' . ++$self->{n} . '__';
		$self->{in} .= "$sql\n;\n\\echo $b\n\\warn $b\n";
		$self->{timer}->start($timeout // 120);
		my $ok = eval {
			$self->{h}->pump
			  until $self->{out} =~ /\Q$b\E\n/ && $self->{err} =~ /\Q$b\E\n/;
			1;
		};
		if (!$ok)
		{
			my $why = $@;
			my $err = "SESSION LOST: $why; stderr: $self->{err}";
			eval { $self->{h}->kill_kill; };
			$self->_start;
			return ('', $err);
		}
		(my $out = $self->{out}) =~ s/\Q$b\E\n//;
		(my $err = $self->{err}) =~ s/\Q$b\E\n//;
		chomp $out;
		@$self{qw(out err)} = ('', '');
		return ($out, $err);
	}

	sub close
	{
		my ($self) = @_;
		$self->{in} .= "\\q\n";
		eval { $self->{timer}->start(10); $self->{h}->finish; 1 }
		  or eval { $self->{h}->kill_kill; };
		return;
	}
}

package main;

my $dir = PostgreSQL::Test::Utils::tempdir('consistency');
my $parent = $$;

sub pick_key
{
	return rand() < 0.5 ? 1 + int(rand($HOT)) : 1 + int(rand($NKEYS));
}

sub flag { return -e "$dir/$_[0]"; }

sub touch
{
	open(my $fh, '>', "$dir/$_[0]") or die "$dir/$_[0]: $!";
	close $fh;
	return;
}

sub stopping { return flag('stop') || getppid() != $parent; }

# A value read from Redis (README "Redis key layout") as text to compare:
# 'v<value>', 'n', or for a tagged value or placeholder 't[<tag>,...]<value>'
# or 'm[<tag>,...]'; undef stays undef; bytes other than printable ASCII
# are shown as \xHH.
sub l2_decode
{
	my ($r, $generation) = @_;
	return undef unless defined $r;

	# G<n>: the generation it was written in (0 unmarked); an older one
	# than Redis's is a miss for every server
	my $written = $r =~ s/^G(\d+)://s ? $1 : 0;
	return undef if defined $generation && $written < $generation;
	my $out = $r;
	if ($r =~ /^[tm]/ && length($r) >= 5)
	{
		my $len = unpack('N', substr($r, 1, 4));
		my $tl = substr($r, 5, $len);
		my @tags;
		while (length($tl) >= 2)
		{
			my $n = unpack('n', $tl);
			push @tags, substr($tl, 2, $n);
			substr($tl, 0, 2 + $n) = '';
		}
		$out = substr($r, 0, 1) . '[' . join(',', @tags) . ']'
		  . (length($r) >= 5 + $len ? substr($r, 5 + $len) : '<truncated>');
	}
	$out =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord($1))/ge;
	return $out;
}

# ---------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------
my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);

my $TABLE_SQL = qq{
CREATE TABLE src (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO src SELECT i, i || ':0' FROM generate_series(1, $NKEYS) i;
SELECT twocache_track('src');
-- reads of both families alternately: auto keys with twocache.auto_tag on
-- (tagged 'public.src'), row keys with it off (untagged)
CREATE FUNCTION probe(n int, hot int, nkeys int)
RETURNS TABLE (fam text, k int, t0 float8, tbl text, cached text)
LANGUAGE plpgsql VOLATILE AS \$\$
BEGIN
	FOR i IN 1 .. n LOOP
		fam := CASE WHEN i % 2 = 0 THEN 'auto' ELSE 'row' END;
		k := CASE WHEN random() < 0.5 THEN 1 + floor(random() * hot)
				  ELSE 1 + floor(random() * nkeys) END;
		PERFORM set_config('twocache.auto_tag', CASE fam WHEN 'auto' THEN 'on' ELSE 'off' END, true);
		t0 := extract(epoch FROM clock_timestamp());
		SELECT s.v INTO tbl FROM src s WHERE s.id = k;
		cached := twocache_get(fam || ':' || k, 'SELECT v FROM src WHERE id = ' || k);
		RETURN NEXT;
	END LOOP;
END
\$\$;
};
my @FAMS = qw(row auto);

my $primary = l2_node('primary', $redis,
	allows_streaming => 1,
	conf => "twocache.instance_id = 'primary'");
$primary->safe_psql('postgres', $TABLE_SQL);
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->append_conf('postgresql.conf', "twocache.instance_id = 'standby'");
$standby->start;
my $indep = l2_node('indep', $redis, conf => "twocache.instance_id = 'indep'");
$indep->safe_psql('postgres', $TABLE_SQL);
$primary->wait_for_catchup($standby);

my %node = (primary => $primary, standby => $standby, indep => $indep);
my @SERVERS = qw(primary standby indep);
foreach my $name (@SERVERS)
{
	ok(poll($node{$name}, 'SELECT subscribed FROM twocache_status()'),
		"$name: the worker subscribes");
}
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't',
	'the standby is in recovery');
foreach my $name (@SERVERS)
{
	is($node{$name}->safe_psql('postgres',
			q{SELECT tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'src'::regclass}),
		'twocache_invalidate_trigger', "$name: src is tracked");
}

# An auto key as this test reads it is stored in Redis tagged with the
# table, and a committed write to src on either server drops it everywhere.
{
	my $get_auto1 = q{SET twocache.auto_tag = on;
SELECT twocache_get('auto:1', 'SELECT v FROM src WHERE id = 1');};
	is($primary->safe_psql('postgres', $get_auto1), '1:0', 'primary: auto:1 filled');
	is(l2_decode($redis->command('GET', 'db:postgres:auto:1')), 't[public.src]1:0',
		'Redis: auto:1 tagged public.src');
	foreach my $name (qw(standby indep))
	{
		is($node{$name}->safe_psql('postgres', $get_auto1), '1:0', "$name: auto:1 read");
		is(in_l1($node{$name}, 'auto:1'), 't', "$name: auto:1 in L1");
	}
	$indep->safe_psql('postgres', q{UPDATE src SET v = v WHERE id = 1});
	is($redis->command('EXISTS', 'db:postgres:auto:1'), 0,
		"Redis: auto:1 dropped by a write on the independent server");
	foreach my $name (@SERVERS)
	{
		ok(poll($node{$name}, not_in_l1_sql('auto:1')),
			"$name: auto:1 dropped by a write on the independent server");
	}
}

{
	my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
	my $so = `$pg_config --pkglibdir`;
	chomp $so;
	note 'twocache.so: ' . `md5sum $so/twocache.so`;
}

# ---------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------
my @kids;

sub spawn
{
	my ($name, $code) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# The child: no TAP, no END blocks (they would stop the servers).
		untie *STDOUT;
		untie *STDERR;
		open(STDOUT, '>>', "$dir/$name.out");
		open(STDERR, '>&', \*STDOUT);
		open(my $log, '>', "$dir/$name.log") or POSIX::_exit(2);
		srand($seed ^ $$);
		my $ok = eval { $code->($log); 1 };
		print STDOUT "died: $@\n" unless $ok;
		close $log;
		close STDOUT;
		POSIX::_exit($ok ? 0 : 1);
	}
	push @kids, { pid => $pid, name => $name };
	return;
}

# Reader: log lines (<fam>: row or auto)
#   S <server> <fam> <t0> <k> <cached version> <table version>   a stale read
#   B <server> <fam> <t0> <k> <cached value>                     a bad value
#   E <server> <message>                                         an error
#   T <server> <row reads> <auto reads> <errors> <recovery conflicts>
sub reader
{
	my ($server, $i, $log) = @_;
	my $s = TcSession->new($node{$server}, "tc_reader_${server}_$i");
	my %reads;
	my ($errors, $conflicts) = (0, 0);
	until (stopping())
	{
		my ($out, $err) = $s->query("SELECT fam, k, t0, tbl, cached FROM probe($BATCH, $HOT, $NKEYS)", 60);
		if ($err =~ /ERROR|FATAL|SESSION LOST/)
		{
			if ($server eq 'standby' && $err =~ /conflict with recovery/)
			{
				$conflicts++;
			}
			else
			{
				$errors++;
				(my $e = $err) =~ s/\n/ /g;
				print $log "E $server $e\n";
			}
			next;
		}
		foreach my $line (split /\n/, $out)
		{
			my ($fam, $k, $t0, $tbl, $cached) = split /\|/, $line, 5;
			$reads{$fam}++;
			my ($tv) = $tbl =~ /^\Q$k\E:(\d+)$/;
			if (!defined $tv)
			{
				print $log "E $server table row $k is '$tbl'\n";
				$errors++;
				next;
			}
			if ($cached !~ /^(\d+):(\d+)$/ || $1 != $k)
			{
				print $log "B $server $fam $t0 $k '$cached'\n";
				next;
			}
			print $log "S $server $fam $t0 $k $2 $tv\n" if $2 < $tv;
		}
	}
	printf $log "T %s %d %d %d %d\n", $server, $reads{row} // 0, $reads{auto} // 0, $errors, $conflicts;
	$s->close;
	return;
}

# Writer: log lines
#   C <p|i> <k> <version> <time>   the version committed, after COMMIT returned
#   E <message>                    an error
#   T <steps> <dels> <warned> <resent> <errors> <commits that warned after commit>
sub writer
{
	my ($w, $log) = @_;
	my %s = (
		p => TcSession->new($primary, "tc_writer_p_$w"),
		i => TcSession->new($indep, "tc_writer_i_$w"),
		s => TcSession->new($standby, "tc_writer_s_$w"));
	my ($steps, $dels, $warned, $resent, $errors, $cwarned) = (0, 0, 0, 0, 0, 0);
	my %redo;    # "<server> <k>": a delete that did not reach Redis

	my $run = sub {
		my ($srv, $sql) = @_;
		my ($out, $err) = $s{$srv}->query($sql, 60);
		if ($err =~ /ERROR|FATAL|SESSION LOST/)
		{
			$errors++;
			(my $e = $err) =~ s/\n/ /g;
			print $log "E $srv $e\n";
		}
		return ($out, $err);
	};
	# Send failed deletes again; true when none is left.
	my $resend = sub {
		foreach my $r (sort keys %redo)
		{
			my ($srv, $k) = split / /, $r;
			my (undef, $err) = $run->($srv, "SELECT twocache_del('row:$k')");
			next if $err =~ /WARNING|ERROR|FATAL|SESSION LOST/;
			delete $redo{$r};
			$resent++;
		}
		return !%redo;
	};

	until (stopping())
	{
		if (flag('pause'))
		{
			until ($resend->() || stopping()) { usleep(100_000); }
			touch("paused.$w");
			usleep(20_000) while flag('pause') && !stopping();
			unlink "$dir/paused.$w";
			next;
		}
		$resend->() if %redo;

		if (rand() < 0.1)
		{
			my $srv = (qw(p i s))[ int(rand(3)) ];
			my $k = pick_key();
			$run->($srv, "SELECT twocache_del('row:$k')");
			$dels++;
		}
		else
		{
			my $k = pick_key();
			my ($out, $err) = $run->('p', qq{BEGIN;
UPDATE src SET v = id || ':' || (split_part(v, ':', 2)::int + 1) WHERE id = $k RETURNING v;
SELECT twocache_del('row:$k');
COMMIT;});
			my $t = time;
			my ($val) = split /\n/, $out;
			if (defined $val && $val =~ /^\Q$k\E:(\d+)$/ && $err !~ /ERROR/)
			{
				my $ver = $1;
				printf $log "C p %d %d %.6f\n", $k, $ver, $t;
				if ($err =~ /WARNING/) { $redo{"p $k"} = 1; $warned++; }
				# the post-commit invalidations (the row key's delete again and
				# the trigger's tag) could not reach Redis: nothing re-sends the
				# tag (see "after a restart" above)
				$cwarned++ if $err =~ /after commit/;
				($out, $err) = $run->('i', qq{BEGIN;
UPDATE src SET v = '$val' WHERE id = $k AND split_part(v, ':', 2)::int < $ver RETURNING v;
SELECT twocache_del('row:$k');
COMMIT;});
				$t = time;
				printf $log "C i %d %d %.6f\n", $k, $ver, $t
				  if $out =~ /^\Q$val\E\n/ && $err !~ /ERROR/;
				if ($err =~ /WARNING/) { $redo{"i $k"} = 1; $warned++; }
				$cwarned++ if $err =~ /after commit/;
			}
			$steps++;
		}
		usleep(int(rand($WRITE_PAUSE_MS * 1000)));
	}
	$resend->();
	print $log "T $steps $dels $warned $resent $errors $cwarned\n";
	$_->close foreach values %s;
	return;
}

# ---------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------
my ($checkpoints, $checkpoints_ok) = (0, 0);

# id => v of the table on $node
sub table
{
	my ($node) = @_;
	return { map { split /\|/, $_, 2 }
		  split /\n/, $node->safe_psql('postgres', 'SELECT id, v FROM src ORDER BY id') };
}

# Differences between two id => v maps, at most 20 shown.
sub differences
{
	my ($a, $b) = @_;
	my @d = map { "$_: " . ($a->{$_} // 'none') . ' vs ' . ($b->{$_} // 'none') }
	  grep { ($a->{$_} // '') ne ($b->{$_} // '') } 1 .. $NKEYS;
	return '' unless @d;
	return scalar(@d) . ' differ: ' . join(', ', @d[ 0 .. ($#d < 19 ? $#d : 19) ]);
}

# A message in the documented format (README "Message format") from no
# server, which no server skips as its own or defers: a delete of $key.
sub marker_message
{
	my ($key) = @_;
	my ($id, $db) = ('checkpoint', 'postgres');
	return 'TC' . chr(1) . 'd' . chr(0)
	  . pack('Q>', 0) . pack('Q>', 0)
	  . chr(length $id) . $id
	  . chr(length $db) . $db
	  . pack('n', length $key) . $key;
}

# $rc0: each server's reconnects before the interval's Redis restart (undef
# without one).
sub checkpoint
{
	my ($label, $rc0) = @_;
	my $t0 = time;
	my $ok = 1;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$checkpoints++;

	# Redis up (the parent restarts it only between checkpoints) and every
	# worker subscribed again after the last restart: a restart closes the
	# workers' connections, so each resubscribes and counts a reconnect.
	foreach my $name (@SERVERS)
	{
		my $again = ($rc0 && defined $rc0->{$name}) ? " AND reconnects > $rc0->{$name}" : '';
		$ok &= ok(poll($node{$name}, "SELECT subscribed$again FROM twocache_status()"),
			"$label: $name subscribed");
	}

	touch('pause');
	my $deadline = time + 60;
	usleep(20_000) until (grep { flag("paused.$_") } 1 .. $WRITERS) == $WRITERS || time > $deadline;
	$ok &= ok((grep { flag("paused.$_") } 1 .. $WRITERS) == $WRITERS,
		"$label: writers paused, their failed deletes re-sent");

	my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	$ok &= ok(poll($standby, "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn"),
		"$label: the standby replayed up to $lsn");
	# the standby applies (and sends again) the invalidations it deferred
	$ok &= ok(poll($standby, 'SELECT deferred_invalidations = 0 FROM twocache_status()'),
		"$label: the standby applied its deferred invalidations");
	# Redis delivers messages in the order it got them, and a worker applies
	# them in order: once a marker published now has dropped its key from
	# a server's L1, that server has applied every message sent before
	my $marker = "checkpoint:$checkpoints";
	$node{$_}->safe_psql('postgres', "SELECT twocache_local_set('$marker', 'm')") foreach @SERVERS;
	$redis->command('PUBLISH', 'twocache:invalidate', marker_message($marker));
	foreach my $name (@SERVERS)
	{
		$ok &= ok(poll($node{$name}, not_in_l1_sql($marker)),
			"$label: $name applied every message sent before the checkpoint");
	}

	my $tp = table($primary);
	$ok &= is(differences(table($standby), $tp), '', "$label: the standby's table equals the primary's");
	$ok &= is(differences(table($indep), $tp), '',
		"$label: the independent server's table equals the primary's");

	# L2 as it stands, before the reads below fill it again: a row value
	# is 'v' and the value, an auto value 't', its tag list (just
	# 'public.src') and the value (l2_decode shows it as 't[public.src]...')
	my %l2_want = (row => 'v%s', auto => 't[public.src]%s');
	my $generation = $redis->command('GET', 'generation') // 0;
	foreach my $fam (@FAMS)
	{
		my $l2 = $redis->command('MGET', map { "db:postgres:$fam:$_" } 1 .. $NKEYS);
		my %l2;
		my %want = map { $_ => sprintf($l2_want{$fam}, $tp->{$_}) } 1 .. $NKEYS;
		for my $k (1 .. $NKEYS)
		{
			my $r = l2_decode($l2->[ $k - 1 ], $generation);
			$l2{$k} = defined $r ? $r : $want{$k};
		}
		$ok &= is(differences(\%l2, \%want), '',
			"$label: every $fam value in Redis equals the table");
	}

	foreach my $name (@SERVERS)
	{
		foreach my $fam (@FAMS)
		{
			my $got = $node{$name}->safe_psql(
				'postgres', sprintf(q{
SET twocache.auto_tag = %s;
SELECT string_agg(id || ': ' || coalesce(c, 'NULL') || ' vs ' || v, ', ' ORDER BY id)
FROM (SELECT id, v, twocache_get('%s:' || id, 'SELECT v FROM src WHERE id = ' || id) c
	  FROM src) x
WHERE c IS DISTINCT FROM v;}, $fam eq 'auto' ? 'on' : 'off', $fam));
			$ok &= is($got, '', "$label: $name: twocache_get of every $fam key equals its table");
		}
	}

	unlink "$dir/pause";
	$checkpoints_ok++ if $ok;
	note sprintf('%s took %.1f s', $label, time - $t0);
	return;
}

# ---------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------
foreach my $name (@SERVERS)
{
	for my $i (1 .. $READERS)
	{
		spawn("reader_${name}_$i", sub { reader($name, $i, $_[0]) });
	}
}
for my $w (1 .. $WRITERS)
{
	spawn("writer_$w", sub { writer($w, $_[0]) });
}

my @outages;    # [start time, end time, kind]
my $closed_port = PostgreSQL::Test::Cluster::get_free_port();
my $t_start = time;
my $intervals = int($DURATION / $CHECK_EVERY + 0.5) || 1;
my $checkpoint_seconds = 0;
for my $i (1 .. $intervals)
{
	my $t_interval = time;
	my $rc0;
	if ($i < $intervals && rand() < $RESTART_PROB)
	{
		# the short form takes each kind in turn, the long one at random
		my $fault = $long ? $FAULTS[ int(rand(@FAULTS)) ] : $FAULTS[ ($i - 1) % @FAULTS ];
		my $down = 0.05 + rand($OUTAGE_MAX - 0.05);
		usleep(int(1e6 * rand($RESTART_SPAN * $CHECK_EVERY)));
		if ($fault eq 'restart')
		{
			$rc0 = {
				map {
					$_ => $node{$_}->safe_psql('postgres', 'SELECT reconnects FROM twocache_status()')
				} @SERVERS
			};
			my $t_stop = time;
			$redis->stop;
			usleep(int(1e6 * $down));
			$redis->start;
			push @outages, [ $t_stop, time, 'restart' ];
		}
		elsif ($fault eq 'pause')
		{
			# writes (DEL, PUBLISH, scripts) wait and time out; reads go on
			my $t_stop = time;
			$redis->command('CLIENT', 'PAUSE', '60000', 'WRITE');
			usleep(int(1e6 * $down));
			$redis->command('CLIENT', 'UNPAUSE');
			push @outages, [ $t_stop, time, 'pause' ];
		}
		else
		{
			# one server loses Redis (its URL points at a closed port) and
			# gets it back; its worker reconnects.  The short form takes the
			# primary, whose writers' deletes then wait in its queue.
			my $name = $long ? $SERVERS[ int(rand(@SERVERS)) ] : 'primary';
			my $url = $redis->url;
			$rc0 = {
				$name => $node{$name}->safe_psql('postgres', 'SELECT reconnects FROM twocache_status()')
			};
			my $t_stop = time;
			$node{$name}->append_conf('postgresql.conf',
				"twocache.redis_url = 'redis://127.0.0.1:$closed_port'");
			$node{$name}->reload;
			usleep(int(1e6 * $down));
			$node{$name}->append_conf('postgresql.conf', "twocache.redis_url = '$url'");
			$node{$name}->reload;
			push @outages, [ $t_stop, time, "partition of $name" ];
		}
	}
	my $left = $t_interval + $CHECK_EVERY - time;
	usleep(int(1e6 * $left)) if $left > 0;
	my $t_check = time;
	checkpoint(
		$i == $intervals
		? 'final checkpoint'
		: sprintf('checkpoint %d at %.0f s', $i, $t_check - $t_start),
		$rc0);
	$checkpoint_seconds += time - $t_check;
}
my $run_seconds = time - $t_start;

touch('stop');
foreach my $kid (@kids)
{
	my $deadline = time + 60;
	usleep(50_000) while waitpid($kid->{pid}, WNOHANG) == 0 && time < $deadline;
	if (kill(0, $kid->{pid}))
	{
		kill 'KILL', $kid->{pid};
		waitpid($kid->{pid}, 0);
		fail("$kid->{name} exited in time");
	}
	elsif ($? != 0)
	{
		fail("$kid->{name} exited with status $?");
		diag slurp_file("$dir/$kid->{name}.out");
	}
}

# ---------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------
my %commit;    # {p|i}{k}{version} = time the COMMIT returned
my (%reads, %errors, %conflicts, %bad, @errlines);
my ($steps, $dels, $warned, $resent, $werrors, $cwarned) = (0, 0, 0, 0, 0, 0);

sub read_log
{
	my ($kid, $each) = @_;
	open(my $fh, '<', "$dir/$kid->{name}.log") or die "$kid->{name}.log: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		$each->($line, split / /, $line);
	}
	close $fh;
	return;
}

# Writers first: the staleness of a read needs the commit times.
foreach my $kid (grep { $_->{name} =~ /^writer/ } @kids)
{
	read_log(
		$kid,
		sub {
			my ($line, @f) = @_;
			if ($f[0] eq 'C') { $commit{ $f[1] }{ $f[2] }{ $f[3] } = $f[4]; }
			elsif ($f[0] eq 'E') { push @errlines, "writer $kid->{name}: $line"; }
			elsif ($f[0] eq 'T')
			{
				$steps += $f[1];
				$dels += $f[2];
				$warned += $f[3];
				$resent += $f[4];
				$werrors += $f[5];
				$cwarned += $f[6];
			}
		});
}

# Staleness (ms) of the stale reads, by server, key family and quiet (0) or
# after a restart (1); episodes: distinct (server, key, cached version).
my (%ms, %episodes, @worst);
foreach my $kid (grep { $_->{name} =~ /^reader/ } @kids)
{
	read_log(
		$kid,
		sub {
			my ($line, @f) = @_;
			if ($f[0] eq 'S')
			{
				my (undef, $server, $fam, $t0, $k, $cv, $tv) = @f;
				my $src = $server eq 'indep' ? 'i' : 'p';
				# The first newer version committed before any later one;
				# the earliest recorded time of a version in (cv, tv] is the
				# tightest bound on its commit.
				my @t = grep { defined } map { $commit{$src}{$k}{$_} } $cv + 1 .. $tv;
				my $tc = @t ? min(@t) : $t_start;
				my $ms = 1000 * ($t0 > $tc ? $t0 - $tc : 0);
				my $restart =
				  (grep {
						  $tc >= $_->[0] - $RESTART_BEFORE
						  && $tc <= $_->[0] + 3 * ($_->[1] - $_->[0]) + $RESTART_AFTER
				  } @outages) ? 1 : 0;
				push @{ $ms{$server}{$fam}[$restart] }, $ms;
				$episodes{$server}{$fam}[$restart]{"$k $cv"} = 1;
				if (@worst < 10 || $ms > $worst[-1][0])
				{
					@worst = (sort { $b->[0] <=> $a->[0] }
						  @worst, [ $ms, $server, "$fam:$k", $t0, $cv, $tv, $restart ]);
					splice(@worst, 10) if @worst > 10;
				}
			}
			elsif ($f[0] eq 'B') { $bad{ $f[1] }{ $f[2] }++; push @errlines, "reader: $line"; }
			elsif ($f[0] eq 'E') { push @errlines, "reader: $line"; }
			elsif ($f[0] eq 'T')
			{
				$reads{ $f[1] }{row} += $f[2];
				$reads{ $f[1] }{auto} += $f[3];
				$errors{ $f[1] } += $f[4];
				$conflicts{ $f[1] } += $f[5];
			}
		});
}

sub pct
{
	my ($p, $v) = @_;
	return 0 unless $v && @$v;
	my @v = sort { $a <=> $b } @$v;
	return $v[ int($p * $#v + 0.999) ];
}

my $commits_p = 0;
my $commits_i = 0;
$commits_p += keys %$_ foreach values %{ $commit{p} // {} };
$commits_i += keys %$_ foreach values %{ $commit{i} // {} };
my @downs = sort { $a <=> $b } map { $_->[1] - $_->[0] } @outages;
my $bound_restart = 3 * ($downs[-1] // 0) + $BOUND_RESTART_EXTRA;
my @report = (
	sprintf('consistency checker, %s form: %.0f s of workload (%.0f s of it paused at checkpoints), seed %d',
		$long ? 'long' : 'short', $run_seconds, $checkpoint_seconds, $seed),
	sprintf('writes: %d update steps (%d commits on the primary, %d applied on the independent server), '
		  . '%d cache-only dels, %d dels warned and %d re-sent, %d writer errors; '
		  . '%d commits could not send their post-commit invalidations (trigger tag included)',
		$steps, $commits_p, $commits_i, $dels, $warned, $resent, $werrors, $cwarned),
	sprintf('Redis outages: %d (%s; down %.2f-%.2f s); bounds: quiet %.1f s, after an outage %.1f s',
		scalar(@outages), join(', ', map { $_->[2] } @outages) || 'none',
		@downs ? ($downs[0], $downs[-1]) : (0, 0), $BOUND_QUIET, $bound_restart),
	sprintf('checkpoints: %d of %d passed', $checkpoints_ok, $checkpoints),
	'stale reads (episodes = distinct key and cached version), staleness max and p99, per server and key family:',
	sprintf('%-8s %-4s %9s %6s %5s %5s | %-30s | %-30s', 'server', 'fam', 'reads', 'errors', 'confl', 'bad',
		'quiet: reads (episodes) max p99', 'after a restart: same'));
my %max;
foreach my $name (@SERVERS)
{
	foreach my $fam (@FAMS)
	{
		my ($q, $r) = @{ $ms{$name}{$fam} // [] };
		my ($qe, $re) = map { scalar keys %{ $_ // {} } } @{ $episodes{$name}{$fam} // [] }[ 0, 1 ];
		$max{$name}{$fam} = [ pct(1, $q), pct(1, $r) ];
		push @report,
		  sprintf('%-8s %-4s %9d %6s %5s %5d | %6d (%5d) %6.0fms %6.0fms | %6d (%5d) %6.0fms %6.0fms',
			$name, $fam, $reads{$name}{$fam} // 0,
			$fam eq 'row' ? ($errors{$name} // 0, $conflicts{$name} // 0) : ('', ''),
			$bad{$name}{$fam} // 0,
			scalar(@{ $q // [] }), $qe // 0, pct(1, $q), pct(0.99, $q),
			scalar(@{ $r // [] }), $re // 0, pct(1, $r), pct(0.99, $r));
	}
	my $st = $node{$name}->safe_psql('postgres',
		q{SELECT format('L1 hits %s, L2 hits %s, fetches %s, stale fills rejected %s, messages received %s, redis errors %s',
		  l1_hits, l2_hits, fetches, stale_fills_rejected, invalidations_received, redis_errors) FROM twocache_stats});
	my $ss = $node{$name}->safe_psql('postgres',
		q{SELECT format('reconnects %s, L1 flushes %s', reconnects, local_flushes) FROM twocache_status()});
	push @report, "         $st; $ss";
}
diag join("\n", @report);
diag "longest stale reads:\n" . join(
	"\n",
	map {
		my ($ms, $server, $k, $t0, $cv, $tv, $restart) = @$_;
		sprintf('  %s %s at +%.3f s: cached %d, table %d, stale %.0f ms%s',
			$server, $k, $t0 - $t_start, $cv, $tv, $ms, $restart ? ' (after a restart)' : '')
	} @worst) if @worst;
diag "errors and bad values:\n" . join("\n", @errlines[ 0 .. ($#errlines < 19 ? $#errlines : 19) ])
  if @errlines;

foreach my $name (@SERVERS)
{
	is($errors{$name} // 0, 0, "$name: no reader error (other than recovery conflicts)");
	foreach my $fam (@FAMS)
	{
		cmp_ok($reads{$name}{$fam} // 0, '>', 0, "$name: readers read $fam keys");
		is($bad{$name}{$fam} // 0, 0, "$name: no $fam value of another key or malformed");
		cmp_ok($max{$name}{$fam}[0], '<=', 1000 * $BOUND_QUIET,
			"$name: $fam keys: quiet staleness within $BOUND_QUIET s");
		cmp_ok($max{$name}{$fam}[1], '<=', 1000 * $bound_restart,
			sprintf('%s: %s keys: staleness after a Redis restart within %.1f s',
				$name, $fam, $bound_restart));
	}
}
cmp_ok($steps, '>', 0, 'writers wrote');
is($werrors, 0, 'no writer error');
cmp_ok(scalar(@outages), '>', 0, 'Redis had outages');
ok((grep { $_->[2] eq 'restart' } @outages) > 0, 'Redis was restarted') unless $long;
no_crash_in_log($_) foreach ($primary, $standby, $indep);

$standby->stop;
$primary->stop;
$indep->stop;
$redis->stop;
done_testing();
