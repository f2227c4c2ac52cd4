# shellcheck shell=bash
# Shared shell code of bench/demo.sh and bench/bench.sh: the account that runs
# the servers, the PostgreSQL binaries, the temporary directory and its
# cleanup trap, throwaway PostgreSQL servers, and a private redis-server.
#
# Sourced after "set -euo pipefail", with me set to the name used in messages
# (demo, bench).  The sourcing script defines two functions for the cleanup:
# on_failure (show its logs, run only after an error) and stop_all (stop what
# it started, by data directory or pid, never by name).
#
# Variables set here and read by the scripts (SC2034), and read here but set
# by the scripts (SC2154: me, redis_server, redis_cli):
# shellcheck disable=SC2034,SC2154

# Print an error and exit.
fail()
{
	echo "$me: $*" >&2
	exit 1
}

# Set bindir from $PG_CONFIG and check that the programs given exist there.
find_pg_bindir()
{
	local prog

	if ! bindir=$("$PG_CONFIG" --bindir 2>/dev/null); then
		fail "cannot run \"$PG_CONFIG --bindir\" (set PG_CONFIG)"
	fi
	for prog in "$@"; do
		[ -x "$bindir/$prog" ] || fail "$bindir/$prog not found (PG_CONFIG=$PG_CONFIG)"
	done
}

# Who runs the servers: ourselves, or an unprivileged account when we are
# root, named by the variable $1 (default postgres).  Sets as (a command
# prefix), daemon_as (the same, but setpriv execs where runuser forks, so that
# $! is the daemon's own pid), dbuser, tmpbase and, as root, user.
choose_account()
{
	as=()
	daemon_as=()
	dbuser=$(id -un)
	tmpbase=${TMPDIR:-/tmp}
	if [ "$(id -u)" = 0 ]; then
		user=${!1:-postgres}
		id "$user" >/dev/null 2>&1 ||
			fail "running as root needs an unprivileged account \"$user\" (set $1)"
		as=(runuser -u "$user" --)
		daemon_as=(setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups --)
		dbuser=$user
		tmpbase=/tmp
	fi
}

# The last lines of a log, on a failure: show_log WHAT FILE
show_log()
{
	if [ -s "$2" ]; then
		echo "$me: last lines of the $1 log ($2):" >&2
		tail -n 15 "$2" >&2 || true
	fi
}

# Stop a daemon we started, by its pid, checking that the pid is still that
# program: politely, then KILL after 5 s.  stop_pid PID COMM
stop_pid()
{
	local pid=$1 comm=$2 i

	[ -n "$pid" ] || return 0
	if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# Stop a PostgreSQL server by its data directory.
pg_stop()
{
	${as[@]+"${as[@]}"} "$bindir/pg_ctl" stop -D "$1" -m fast -w >/dev/null 2>&1 || true
}

# The EXIT trap: on an error, say so and show the logs (on_failure); then stop
# everything (stop_all) and remove tmp.  Keeps the exit status.
cleanup()
{
	local rc=$?

	trap - EXIT INT TERM
	[ -n "$tmp" ] || exit $rc
	if [ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $rc -ne 143 ]; then
		echo "$me: failed" >&2
		on_failure
	fi
	stop_all
	cd /
	rm -rf "$tmp"
	exit $rc
}

# Install the cleanup trap, then create tmp (twocache-NAME.XXXXXX, owned by
# the server account) and change to it: the server account may not be able
# to read the caller's directory.
make_tmp()
{
	tmp=
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	tmp=$(mktemp -d "$tmpbase/twocache-$1.XXXXXX")
	[ ${#as[@]} -eq 0 ] || chown "$user" "$tmp"
	cd "$tmp" || exit
}

# initdb a throwaway cluster in $1 (trust authentication, no locale).
pg_init()
{
	${as[@]+"${as[@]}"} "$bindir/initdb" -D "$1" -U "$dbuser" -A trust -E UTF8 --no-locale >/dev/null
}

# Start the server of data directory $1, logging to $2; wait up to 60 s.
pg_start()
{
	${as[@]+"${as[@]}"} "$bindir/pg_ctl" start -D "$1" -l "$2" -w -t 60 >/dev/null
}

# psql as dbuser to database postgres on socket directory $1, port $2; stops
# at the first error; further arguments are passed on.
psql_at()
{
	local host=$1 port=$2
	shift 2
	${as[@]+"${as[@]}"} "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$port" \
		-U "$dbuser" -d postgres "$@"
}

# A free loopback TCP port (nothing answers a connect there).
free_port()
{
	local port
	while :; do
		port=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
}

# Start redis-server (no persistence, files in $tmp/redis) on a free loopback
# port, in the foreground of a background job so that $! is its pid; sets
# redis_pid and redis_port.  A port that turns out to be taken makes
# redis-server exit: try another.  Needs redis_server and redis_cli.
start_redis()
{
	local i port

	mkdir "$tmp/redis"
	[ ${#as[@]} -eq 0 ] || chown "$user" "$tmp/redis"
	for _ in $(seq 10); do
		port=$(free_port)
		rm -f "$tmp/redis/redis.pid"
		${daemon_as[@]+"${daemon_as[@]}"} "$redis_server" \
			--bind 127.0.0.1 --port "$port" --protected-mode yes \
			--save '' --appendonly no --daemonize no \
			--dir "$tmp/redis" --logfile "$tmp/redis/redis.log" \
			--pidfile "$tmp/redis/redis.pid" </dev/null >/dev/null 2>&1 &
		redis_pid=$!
		# The pid file is written once the port is bound.
		for i in $(seq 50); do
			kill -0 "$redis_pid" 2>/dev/null || break	# exited: port taken
			if [ -s "$tmp/redis/redis.pid" ] &&
				[ "$("$redis_cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
				redis_port=$port
				return 0
			fi
			sleep 0.1
		done
		kill -0 "$redis_pid" 2>/dev/null && fail "redis-server did not answer within 5 s"
		wait "$redis_pid" 2>/dev/null || true
		redis_pid=
	done
	fail "could not start redis-server on a free loopback port"
}
