#!/usr/bin/env bash
# Run twocache's pg_regress topics on servers running under valgrind memcheck,
# then read valgrind's logs and fail if any error involves twocache.
#
# Usage: test/valgrind.sh [--short] [--out DIR]
#
#   --short    most pg_regress topics, on one server in local mode: about a
#              minute on an idle two-core machine (make test)
#   (default)  every topic of the Makefile's REGRESS line in local mode; then
#              two-layer mode: two servers under memcheck on one private
#              redis-server, the topics whose expected output holds there,
#              and a workload between the servers (invalidations, awkward
#              keys, mget, only_if, malformed messages, Redis stopped and
#              restarted, the worker terminated, a channel change on
#              reload): about three minutes (make valgrind)
#   --out DIR  where the logs go (default test/output/valgrind): one directory
#              per server with valgrind.PID.log (one per process),
#              server.log, pg_regress's output and workload.log
#
# Runs as an unprivileged user (test/run.sh switches to one when called as
# root).  Uses the installed twocache and the PostgreSQL of $PG_CONFIG.
#
# The servers.  One valgrind runs each postmaster.  The postmaster forks its
# children without exec, so every backend, the background worker and the
# auxiliary processes run under that valgrind, each writing its own log (%p).
# Servers listen on a unix socket in a private directory only.  Debian's
# PostgreSQL is not built with USE_VALGRIND, so memcheck does not see palloc
# chunks or buffer pins: it checks reads of uninitialised values, accesses
# outside malloc'd blocks and the arguments of system calls, and (with
# --leak-check=full) finds malloc'd blocks that are definitely lost, such as
# a hiredis reply or context that twocache never frees.  "Still reachable"
# memory (memory contexts live until exit) is not reported.  --error-exitcode
# is not used: a backend exiting with a code other than 0 or 1 makes the
# postmaster restart every process, which would turn one report into
# unrelated pg_regress failures; errors are counted from the logs instead.
#
# The policy.  test/valgrind.supp holds PostgreSQL's own suppressions
# (src/tools/valgrind.supp, not shipped by Debian) and the same noise spelled
# for Debian's stripped binary, each with a comment; none names a twocache
# function.  After the servers have stopped, each error record (between
# valgrind's error markers) is classified:
#   - it involves twocache if a frame of any of its stacks (where it
#     happened, where the block was allocated or freed, where an
#     uninitialised value was created) is twocache's: a function defined in
#     one of twocache's .c files, or a frame shown "in .../twocache.so".
#     Such an error fails the suite, whatever else is on the stack (a
#     hiredis call made by twocache, a PostgreSQL function given a bad
#     pointer by twocache).  If it is PostgreSQL noise that twocache merely
#     triggers (as when it flushes WAL holding other records' padding),
#     suppress it in valgrind.supp by PostgreSQL's frames, with a comment.
#   - otherwise it is PostgreSQL's, libc's or another library's business:
#     counted and its first stacks printed, but it does not fail the suite.
#     Known noise belongs in valgrind.supp.
# The suite also fails if pg_regress reports a failed topic, if a step of the
# two-layer workload fails, if a server does not start or stop, or if a
# process's log has no ERROR SUMMARY (it did not exit normally).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
me=valgrind.sh
short=
out=

usage()
{
	sed -n '5,18s/^# \{0,1\}//p' "$0"
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case $1 in
		--short) short=1 ;;
		--out) [ $# -ge 2 ] || usage >&2; out=$2; shift ;;
		--out=*) out=${1#--out=} ;;
		-h | --help) usage 0 ;;
		*) echo "$me: unknown argument: $1" >&2; usage >&2 ;;
	esac
	shift
done

fail()
{
	echo "$me: $*" >&2
	exit 1
}

[ "$(id -u)" != 0 ] || fail "run as an unprivileged user (test/run.sh valgrind does that as root)"
command -v valgrind >/dev/null || fail "valgrind not found (make deps installs it)"
bindir=$("$PG_CONFIG" --bindir) || fail "cannot run \"$PG_CONFIG --bindir\""
pkglibdir=$("$PG_CONFIG" --pkglibdir)
pgxs=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)
pg_regress="$pgxs/src/test/regress/pg_regress"
library="$pkglibdir/twocache.so"
supp="$root/test/valgrind.supp"
for f in "$bindir/postgres" "$bindir/initdb" "$bindir/pg_ctl" "$bindir/psql" \
	"$pg_regress" "$library" "$supp"; do
	[ -e "$f" ] || fail "$f not found"
done
if [ -z "$short" ]; then
	for f in redis-server redis-cli; do
		command -v "$f" >/dev/null || fail "$f not found (make deps installs it)"
	done
fi

out=${out:-$root/test/output/valgrind}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)

read -ra topics <<<"$(sed -n 's/^REGRESS *= *//p' "$root/Makefile")"
[ ${#topics[@]} -gt 0 ] || fail "no pg_regress topics found in $root/Makefile"

# The short form's topics (those of them in REGRESS): every SQL function,
# fetches through SPI, placeholders, expiry, eviction, and the error paths
# of failed, cancelled and rejected calls.  Left out: settings and
# privileges, which add little C code that the others do not run.
short_topics=" api ttl negative errors stats bad_input "
if [ -n "$short" ]; then
	all=("${topics[@]}")
	topics=()
	for t in "${all[@]}"; do
		[[ $short_topics != *" $t "* ]] || topics+=("$t")
	done
fi

# Topics whose expected output is local mode's: they show twocache_status()'s
# mode, or use twocache_local_del, ghosts and placeholders where Redis still
# holds the value (api, negative, stats, privileges).  Not run on the
# two-layer server; the workload below covers those functions there.
local_only=" api negative stats privileges "

# A free TCP port on the loopback interface.
free_port()
{
	perl -MIO::Socket::INET -e \
		'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport, "\n"'
}

sock=$(mktemp -d /tmp/twocache-vg.XXXXXX) || exit 1
declare -A srv_pid srv_port
servers=()
redis_pid=
redis_port=

# Stop a server (fast), wait for its valgrind to write the logs.
stop_server()
{
	local name=$1 rc=0
	[ -n "${srv_pid[$name]:-}" ] || return 0
	if ! "$bindir/pg_ctl" stop -D "$out/$name/data" -m fast -w -t 600 >/dev/null; then
		echo "$name: server did not stop"
		rc=1
		"$bindir/pg_ctl" stop -D "$out/$name/data" -m immediate -w -t 60 >/dev/null 2>&1 ||
			kill -KILL "${srv_pid[$name]}" 2>/dev/null
	fi
	wait "${srv_pid[$name]}" 2>/dev/null
	srv_pid[$name]=
	# The logs stay; the cluster itself is of no use afterwards.
	[ $rc -ne 0 ] || rm -rf "$out/$name/data"
	return $rc
}

# Stop redis-server by its pid, if it is still ours.
stop_redis()
{
	[ -n "$redis_pid" ] || return 0
	if [ "$(cat "/proc/$redis_pid/comm" 2>/dev/null)" = redis-server ]; then
		kill -TERM "$redis_pid"
		for _ in $(seq 100); do
			kill -0 "$redis_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	redis_pid=
}

# The EXIT trap: stop whatever is still running, keep the exit status.
# shellcheck disable=SC2317
cleanup()
{
	local rc=$? name
	trap - EXIT INT TERM
	for name in "${servers[@]}"; do
		stop_server "$name" >/dev/null
	done
	stop_redis
	rm -rf "$sock"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start redis-server on redis_port (a free one if unset), no persistence.
start_redis()
{
	local dir="$out/redis-server" pidfile
	mkdir -p "$dir"
	pidfile="$dir/redis.pid"
	rm -f "$pidfile"
	redis_port=${redis_port:-$(free_port)}
	redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes \
		--pidfile "$pidfile" --dir "$dir" --logfile "$dir/redis.log" \
		--save '' --appendonly no >/dev/null || return 1
	for _ in $(seq 100); do
		[ -s "$pidfile" ] && [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ] &&
			break
		sleep 0.1
	done
	redis_pid=$(cat "$pidfile" 2>/dev/null)
	[ -n "$redis_pid" ] || { echo "could not start redis-server"; return 1; }
}

# start_server NAME [REDIS_URL]: initdb a fresh cluster in $out/NAME and start
# its postmaster under valgrind.
start_server()
{
	local name=$1 url=${2:-} dir="$out/$1" port start
	rm -rf "$dir"
	mkdir -p "$dir"
	if ! "$bindir/initdb" -D "$dir/data" -A trust -N --no-instructions >"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log"
		return 1
	fi
	port=$(free_port)
	{
		cat "$root/test/twocache.conf"
		echo
		echo "# test/valgrind.sh"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$sock'"
		echo "port = $port"
		# Less work for memcheck, nothing the topics depend on.
		echo "shared_buffers = 16MB"
		echo "huge_pages = off"
		echo "jit = off"
		echo "autovacuum = off"
		echo "fsync = off"
		echo "max_parallel_workers_per_gather = 0"
		# Every process says who it is, so that a valgrind log (named by
		# pid) can be matched to a process type.
		echo "log_line_prefix = '%m [%p] [%b] '"
		echo "log_connections = on"
		echo "log_disconnections = on"
		[ -z "$url" ] || echo "twocache.redis_url = '$url'"
	} >>"$dir/data/postgresql.conf"

	start=$SECONDS
	valgrind --tool=memcheck --trace-children=yes --track-origins=yes \
		--read-var-info=no --num-callers=30 --error-limit=no \
		--leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
		--error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
		--gen-suppressions=all --suppressions="$supp" \
		--log-file="$dir/valgrind.%p.log" \
		"$bindir/postgres" -D "$dir/data" >"$dir/server.log" 2>&1 &
	srv_pid[$name]=$!
	echo "$!" >"$dir/postmaster.vgpid"
	srv_port[$name]=$port
	servers+=("$name")
	for _ in $(seq 600); do
		"$bindir/pg_isready" -q -h "$sock" -p "$port" -d postgres && break
		kill -0 "${srv_pid[$name]}" 2>/dev/null || break
		sleep 1
	done
	if ! "$bindir/pg_isready" -q -h "$sock" -p "$port" -d postgres; then
		echo "$name: server did not start"
		tail -20 "$dir/server.log"
		return 1
	fi
	echo "$name: server up after $((SECONDS - start)) s"
}

# run_topics NAME TOPIC...: pg_regress against server NAME.
run_topics()
{
	local name=$1 dir="$out/$1" rc start=$SECONDS
	shift
	echo "$name: pg_regress $*"
	(cd "$root" && "$pg_regress" --bindir="$bindir" --host="$sock" --port="${srv_port[$name]}" \
		--inputdir="$root" --outputdir="$dir" --dbname=contrib_regression \
		--load-extension=twocache "$@") >"$dir/regress.log" 2>&1
	rc=$?
	grep -E '^(test| *[a-z_]+ +\.\.\.|ok|not ok|#|=+$| *(All|[0-9]+ of))' "$dir/regress.log" ||
		cat "$dir/regress.log"
	if [ $rc -ne 0 ] && [ -f "$dir/regression.diffs" ]; then
		head -100 "$dir/regression.diffs"
	fi
	echo "$name: pg_regress took $((SECONDS - start)) s"
	return $rc
}

# ---- the two-layer workload between servers a and b

workload_failures=0
workload_log=

# q NAME SQL...: run statements on NAME's postgres database (each -c in the
# same session), print the last one's result unaligned.
q()
{
	local name=$1 arg
	local -a args=()
	shift
	for arg in "$@"; do
		args+=(-c "$arg")
	done
	"$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$sock" -p "${srv_port[$name]}" \
		-d postgres "${args[@]}" 2>>"$workload_log"
}

# expect NAME WANT SQL...: the result of SQL on NAME is WANT.
expect()
{
	local name=$1 want=$2 got
	shift 2
	got=$(q "$name" "$@")
	echo "[$name] $* => $got" >>"$workload_log"
	if [ "$got" != "$want" ]; then
		echo "  FAILED on $name: ${*: -1}"
		echo "    expected: $want"
		echo "    got:      $got"
		workload_failures=$((workload_failures + 1))
		return 1
	fi
}

# poll NAME SQL [SECONDS]: wait until SQL returns true on NAME (default 120 s:
# memcheck slows every process down some 20 to 50 times).
poll()
{
	local name=$1 sql=$2 limit=${3:-120} start=$SECONDS got
	while [ $((SECONDS - start)) -lt "$limit" ]; do
		got=$(q "$name" "$sql")
		[ "$got" = t ] && { echo "[$name] poll $sql => t" >>"$workload_log"; return 0; }
		sleep 0.2
	done
	echo "  FAILED on $name: timed out waiting for: $sql"
	workload_failures=$((workload_failures + 1))
	return 1
}

# step DESCRIPTION: announce a step.
step()
{
	echo "  $*"
	echo "-- $*" >>"$workload_log"
}

# Publish raw bytes (from printf's format $2) on channel $1.
publish_bytes()
{
	# shellcheck disable=SC2059
	printf "$2" | redis-cli -h 127.0.0.1 -p "$redis_port" -x PUBLISH "$1" >>"$workload_log" 2>&1
}

two_layer_workload()
{
	local long old s chan=twocache:invalidate
	workload_log="$out/a/workload.log"
	: >"$workload_log"
	echo "workload between a and b (log: $workload_log)"

	step "both servers subscribed"
	expect a "" "CREATE EXTENSION twocache"
	expect b "" "CREATE EXTENSION twocache"
	poll a "SELECT subscribed FROM twocache_status()"
	poll b "SELECT subscribed FROM twocache_status()"

	step "read-through: a fetches into Redis, b reads it without a fetch query"
	expect a "from a" "SELECT twocache_get('vg:1', 'SELECT ''from a''', '1 hour')"
	expect b "from a" "SELECT twocache_get('vg:1')"
	expect b "t" "SELECT twocache_ttl('vg:1') BETWEEN 1 AND 3600000"

	step "set and del on b invalidate a's L1"
	expect b "t" "SELECT twocache_set('vg:1', 'from b')"
	poll a "SELECT twocache_get('vg:1') IS NOT DISTINCT FROM 'from b'"
	expect b "t" "SELECT twocache_del('vg:1')"
	poll a "SELECT twocache_get('vg:1') IS NULL"

	step "awkward keys and a large value through Redis and messages"
	long=$(printf 'k%.0s' $(seq 1024))
	expect b "t" "SELECT twocache_set(E'vg:odd\\nkey \"q\" \\u00e9', repeat('x', 100000))"
	expect b "t" "SELECT twocache_set('$long', 'long key')"
	expect a "100000" "SELECT length(twocache_get(E'vg:odd\\nkey \"q\" \\u00e9'))"
	expect a "long key" "SELECT twocache_get('$long')"
	expect b "t" "SELECT twocache_del(E'vg:odd\\nkey \"q\" \\u00e9')"
	expect b "t" "SELECT twocache_del('$long')"
	poll a "SELECT twocache_get(E'vg:odd\\nkey \"q\" \\u00e9') IS NULL AND twocache_get('$long') IS NULL"

	step "mget: 200 keys set on b, read on a from Redis (pipelined), then from L1"
	expect b "200" "SELECT count(*) FILTER (WHERE twocache_set('vg:m:' || i, 'm' || i, '1 hour'))
		FROM generate_series(1, 200) i"
	expect a "200" "SELECT count(*) FROM twocache_mget(array(SELECT 'vg:m:' || i FROM generate_series(1, 250) i))"
	expect a "200" "SELECT count(*) FROM twocache_mget(array(SELECT 'vg:m:' || i FROM generate_series(1, 250) i))"

	step "only_if (a script on the Redis side)"
	expect b "t" "SELECT twocache_set('vg:nx', 'one', NULL, 'absent')"
	expect b "f" "SELECT twocache_set('vg:nx', 'two', NULL, 'absent')"
	expect b "t" "SELECT twocache_set('vg:nx', 'three', NULL, 'present')"
	expect a "three" "SELECT twocache_get('vg:nx')"

	step "not-found placeholders through Redis"
	expect a "t" "SELECT twocache_get('vg:neg', 'SELECT 1 WHERE false') IS NULL"
	expect b "t" "SELECT twocache_get('vg:neg', 'SELECT 1/0') IS NULL"

	step "del in a transaction block (again after commit), and in one that aborts"
	expect b "t" "BEGIN" "SELECT twocache_del('vg:m:1')" "COMMIT"
	expect b "t" "BEGIN" "SELECT twocache_del('vg:m:2')" "ROLLBACK"
	poll a "SELECT twocache_get('vg:m:1') IS NULL AND twocache_get('vg:m:2') IS NULL"

	step "malformed and foreign invalidation messages: the worker survives them"
	old=$(q a "SELECT worker_pid FROM twocache_status()")
	expect a "" "SELECT twocache_local_set('vg:forged', 'v')"
	publish_bytes "$chan" 'garbage'
	publish_bytes "$chan" 'TC'
	publish_bytes "$chan" 'TC\001d\000\000\000\000\000\000\000\000\000'
	publish_bytes "$chan" 'TC\001d\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\001\377abc'
	publish_bytes "$chan" 'TC\001x\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\001\004fake\010postgres\377\377vg'
	# A well-formed del of vg:forged from another cluster (the format of
	# README's "Message format"): applied if that format is current.
	publish_bytes "$chan" 'TC\001d\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\001\004fake\010postgres\000\011vg:forged'
	expect b "t" "SELECT twocache_set('vg:after', 'after')"
	poll a "SELECT twocache_get('vg:after') IS NOT DISTINCT FROM 'after'"
	expect a "$old|t" "SELECT worker_pid, subscribed FROM twocache_status()"
	echo "    (forged del of vg:forged applied: $(q a "SELECT NOT 'vg:forged' IN (SELECT twocache_local_keys())"))"

	step "Redis stopped: reads fall back, writes warn, the worker notices"
	stop_redis
	expect a "fetched" "SELECT twocache_get('vg:down', 'SELECT ''fetched''')"
	expect a "t" "SELECT twocache_set('vg:down2', 'v')"
	poll a "SELECT NOT subscribed FROM twocache_status()"
	expect a "t" "SELECT redis_errors > 0 FROM twocache_stats"

	step "Redis restarted: both workers resubscribe, invalidations flow again"
	start_redis || workload_failures=$((workload_failures + 1))
	poll a "SELECT subscribed FROM twocache_status()"
	poll b "SELECT subscribed FROM twocache_status()"
	expect a "cached" "SELECT twocache_get('vg:back', 'SELECT ''cached''')"
	expect b "t" "SELECT twocache_set('vg:back', 'changed')"
	poll a "SELECT twocache_get('vg:back') IS NOT DISTINCT FROM 'changed'"

	step "the worker terminated: restarted, resubscribed"
	old=$(q a "SELECT worker_pid FROM twocache_status()")
	expect a "t" "SELECT pg_terminate_backend($old)"
	poll a "SELECT worker_pid <> $old AND subscribed FROM twocache_status()"

	step "a new channel on reload: workers resubscribe"
	for s in a b; do
		expect $s "t" "ALTER SYSTEM SET twocache.channel = 'vg:channel'" "SELECT pg_reload_conf()"
	done
	poll a "SELECT current_setting('twocache.channel') = 'vg:channel'"
	poll b "SELECT current_setting('twocache.channel') = 'vg:channel'"
	expect a "old" "SELECT twocache_get('vg:chan', 'SELECT ''old''')"
	expect b "t" "SELECT twocache_set('vg:chan', 'new')"
	poll a "SELECT twocache_get('vg:chan') IS NOT DISTINCT FROM 'new'"
	poll a "SELECT subscribed FROM twocache_status()"

	step "counters"
	expect a "t|t|t" "SELECT l2_hits > 0, invalidations_received > 0, redis_errors > 0 FROM twocache_stats"
	expect b "t" "SELECT invalidations_sent > 0 FROM twocache_stats"

	echo "workload: $workload_failures failed"
	[ "$workload_failures" -eq 0 ]
}

# ---- run

status=0
start_all=$SECONDS

echo "== local mode"
if start_server local; then
	run_topics local "${topics[@]}" || status=1
	stop_server local || status=1
else
	status=1
fi

if [ -z "$short" ]; then
	echo
	echo "== two-layer mode"
	two_layer=()
	for t in "${topics[@]}"; do
		[[ $local_only == *" $t "* ]] || two_layer+=("$t")
	done
	if start_redis && start_server a "redis://127.0.0.1:$redis_port/0" &&
		start_server b "redis://127.0.0.1:$redis_port/0"; then
		run_topics a "${two_layer[@]}" || status=1
		two_layer_workload || status=1
	else
		status=1
	fi
	stop_server a || status=1
	stop_server b || status=1
	stop_redis
fi
echo "servers ran for $((SECONDS - start_all)) s"

# twocache's own functions: defined in twocache.so from one of its .c files
# (not a header's static inline function, whose name PostgreSQL's frames
# may share).
nm -l --defined-only "$library" 2>/dev/null |
	awk '$2 ~ /^[tTwW]$/ && $4 ~ /\.c:[0-9]+$/ { print $3 }' | sort -u >"$out/twocache-functions.txt"
[ -s "$out/twocache-functions.txt" ] ||
	echo "note: no debugging symbols in $library: matching frames by object name only"

echo
echo "== valgrind findings"
dirs=()
for name in "${servers[@]}"; do
	dirs+=("$out/$name")
done
perl - "$library" "$out/twocache-functions.txt" "${dirs[@]}" <<'EOF' || status=1
use strict;
use warnings;

my ($library, $funcfile, @dirs) = @ARGV;
my %ours;
if (open my $fh, '<', $funcfile)
{
	chomp(my @f = <$fh>);
	@ours{@f} = ();
}
(my $libbase = $library) =~ s{.*/}{};

# Is this stack line a twocache frame?
sub ours
{
	my ($line) = @_;
	return 0 unless $line =~ /^\s*(?:at|by) 0x[0-9A-Fa-f]+: (\S+) \((.*)\)\s*$/;
	my ($fn, $where) = ($1, $2);
	return 1 if $where =~ m{^in (?:.*/)?\Q$libbase\E$};
	return exists $ours{$fn} ? 1 : 0;
}

# The process type of each pid, from the server log's "[pid] [type]".
sub process_types
{
	my ($dir) = @_;
	my %type;
	open my $fh, '<', "$dir/server.log" or return \%type;
	while (<$fh>)
	{
		next unless /\[(\d+)\] \[([^\]]+)\]/;
		$type{$1} = $2 unless $2 eq 'not initialized' && exists $type{$1};
	}
	return \%type;
}

my ($procs, $incomplete, $total, $suppressed) = (0, 0, 0, 0);
my (@ourrecs, @theirrecs);
for my $dir (@dirs)
{
	my $types = process_types($dir);
	my $postmaster = '';
	if (open my $fh, '<', "$dir/postmaster.vgpid")
	{
		chomp($postmaster = <$fh> // '');
	}
	(my $server = $dir) =~ s{.*/}{};
	for my $log (sort glob("$dir/valgrind.*.log"))
	{
		my ($pid) = $log =~ /valgrind\.(\d+)\.log$/;
		my $type = $types->{$pid} // 'a process that logged nothing';
		$type = 'postmaster' if $pid eq $postmaster;
		open my $fh, '<', $log or die "$log: $!";
		$procs++;
		my ($in, @rec, $summary);
		while (my $line = <$fh>)
		{
			$line =~ s/^==\d+== ?//;
			if ($line =~ /^VALGRINDERROR-BEGIN/)
			{
				($in, @rec) = (1);
				next;
			}
			if ($line =~ /^VALGRINDERROR-END/)
			{
				$in = 0;
				$total++;
				# the record, without valgrind's suggested suppression
				my @text = grep { !/^\s*$/ } @rec;
				my $r = { where => "$server/" . ($log =~ s{.*/}{}r) . " ($type)", text => join('', @text) };
				if (grep { ours($_) } @rec)
				{
					push @ourrecs, $r;
				}
				else
				{
					push @theirrecs, $r;
				}
				next;
			}
			push @rec, $line if $in;
			if ($line =~ /^ERROR SUMMARY: \d+ errors from \d+ contexts \(suppressed: (\d+) from/)
			{
				$summary = 1;
				$suppressed += $1;
			}
		}
		unless ($summary)
		{
			$incomplete++;
			print "no ERROR SUMMARY (the process did not exit normally): $server/",
			  ($log =~ s{.*/}{}r), " ($type)\n";
		}
	}
}

printf "processes checked:          %d\n", $procs;
printf "errors reported:            %d (and %d suppressed as known noise)\n", $total, $suppressed;
printf "errors involving twocache:  %d\n", scalar @ourrecs;
printf "other errors (not failing): %d\n", scalar @theirrecs;

my $n = 0;
for my $r (@ourrecs)
{
	last if ++$n > 5;
	print "\n---- twocache error, $r->{where}\n$r->{text}";
}
$n = 0;
for my $r (@theirrecs)
{
	last if ++$n > 3;
	print "\n---- other error (not failing), $r->{where}\n$r->{text}";
}
exit((@ourrecs || $incomplete || !$procs) ? 1 : 0);
EOF

echo
if [ $status -eq 0 ]; then
	echo "valgrind: no memory errors in twocache code"
else
	echo "valgrind: FAILED (logs in $out)"
fi
exit $status
