#!/usr/bin/env bash
# twocache hot-key benchmarks (issue 13, SPEC.md section 10), each workload
# beside the same workload on today's behaviour, on servers that this script
# starts and stops itself:
#
#   L      PostgreSQL with twocache in local mode
#   F1-F4  PostgreSQL with twocache in two-layer mode, all on one Redis
#
#   1  hot-key expiry: one key (TTL 3 s, fetch 1 s), 4 pgbench clients
#      through several expiries on L: per-call p99 and max latency, throughput;
#      "new" = refresh ahead (twocache.refresh_after)
#   2  fleet: 2 and 4 servers x 10 callers missing one key at once (fetch
#      0.5 s): fetches in the fleet; "new" = twocache.lease_ttl
#   3  N+1 cold: 1000 ids, direct against twocache_get per id, the manual
#      mget + query + set, and "new" batch read-through twocache_mget(keys,
#      fetch_query); on L and on F1
#   4  parameters against format(): twocache_get misses over 1000 keys
#
# A "new" mode runs only where the installed extension offers it (found in
# pg_settings / pg_proc); otherwise the report says "not in this version".
# Writes hotkeys.md and hotkeys.png (gnuplot).  Every figure is measured;
# a set-up error or an unexpected result stops the script (non-zero).
#
# Usage: bench/hotkeys.sh [--quick] [--out DIR]
#
#   --quick    about a minute: shorter runs, fewer rounds (also HOTKEYS_QUICK=1)
#   --out DIR  where hotkeys.md and hotkeys.png go (default: bench/)
#
# PG_CONFIG selects the PostgreSQL installation (default pg_config); twocache
# and dblink must be installed (make bench does that).  As root, the servers,
# Redis and the clients run as $TWOCACHE_BENCH_USER (default postgres).
# PostgreSQL listens on unix sockets in the temporary directory only, Redis on
# a free 127.0.0.1 port; everything started is stopped by data directory or
# pid (never by name) on exit, error or Ctrl-C.
# The figures of workload 1 are set through read and namerefs (hot_MODE_*):
# shellcheck disable=SC2154
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}

quick=${HOTKEYS_QUICK:-}
[ "$quick" != 0 ] || quick=
outdir=$here
while [ $# -gt 0 ]; do
	case $1 in
		--quick) quick=1 ;;
		--out)
			[ $# -ge 2 ] || { echo "hotkeys: --out needs a directory" >&2; exit 2; }
			outdir=$2
			shift
			;;
		--out=*) outdir=${1#--out=} ;;
		-h | --help)
			sed -n '2,/^# The figures of/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
			exit 0
			;;
		*) echo "hotkeys: unknown argument \"$1\" (try --help)" >&2; exit 2 ;;
	esac
	shift
done
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
[ -w "$outdir" ] || { echo "hotkeys: cannot write to $outdir (use --out DIR)" >&2; exit 1; }

# Sizes.  Full: about three minutes on two cores; quick: about one.
HOT_TTL=3 HOT_FETCH=1 HOT_CLIENTS=4	# workload 1: TTL, fetch time (s), clients,
HOT_RATE=1000						# and calls per second of them all
HOT_REFRESH=${HOTKEYS_REFRESH_AFTER:-1500ms}	# refresh age in the new mode
FLEET_PER=10 FLEET_FETCH=0.5		# workload 2: callers per server, fetch (s)
FLEET_SIZES=(2 4)
N_IDS=1000							# workloads 3 and 4
if [ -n "$quick" ]; then
	HOT_SECONDS=8 HOT_RUNS=1 FLEET_ROUNDS=1 REPS=1
else
	HOT_SECONDS=12 HOT_RUNS=3 FLEET_ROUNDS=5 REPS=9
fi

me=hotkeys
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"

find_pg_bindir initdb pg_ctl psql pgbench postgres
sharedir=$("$PG_CONFIG" --sharedir)
for ext in twocache dblink; do
	[ -f "$sharedir/extension/$ext.control" ] ||
		fail "extension $ext is not installed ('make bench' installs what is missing)"
done
redis_server=$(command -v redis-server || true)
redis_cli=$(command -v redis-cli || true)
if [ -z "$redis_server" ] || [ -z "$redis_cli" ]; then
	fail "redis-server and redis-cli are needed ('make bench' installs them)"
fi
gnuplot=$(command -v gnuplot || true)

choose_account TWOCACHE_BENCH_USER

started=()
redis_pid=
declare -A port=()

# For cleanup (lib.sh), after an error: the logs.
on_failure()
{
	local s

	for s in ${started[@]+"${started[@]}"}; do
		show_log "server $s" "$tmp/$s/server.log"
	done
	show_log Redis "$tmp/redis/redis.log"
}

# For cleanup (lib.sh): the servers by data directory, Redis by pid.
stop_all()
{
	local s

	for s in ${started[@]+"${started[@]}"}; do
		pg_stop "$tmp/$s/data"
	done
	stop_pid "$redis_pid" redis-server
}

make_tmp hotkeys
chmod 755 "$tmp"

log()
{
	printf '[%s] %s\n' "$(date +%T)" "$*"
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# psql against server NAME (l, f1 .. f4); extra arguments are passed on.
sql()
{
	local s=$1
	shift
	psql_at "$tmp/$s" "${port[$s]}" "$@"
}

# Unaligned, tuples only, fields separated by spaces.
scalar()
{
	local s=$1
	shift
	sql "$s" -A -t -F ' ' "$@"
}

calc()
{
	awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"
}

median()
{
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Fail unless every argument after the first (a description) is a number.
numbers()
{
	local what=$1 v
	shift
	[ $# -gt 0 ] || fail "$what: no figure measured"
	for v in "$@"; do
		[[ $v =~ ^-?[0-9]+([.][0-9]+)?(e[-+]?[0-9]+)?$ ]] || fail "$what: not a number: \"$v\""
	done
}

# start_server NAME EXTRA_CONF
start_server()
{
	local s=$1 extra=$2

	port[$s]=$(free_port)
	${as[@]+"${as[@]}"} mkdir "$tmp/$s"
	${as[@]+"${as[@]}"} cp -a "$tmp/template" "$tmp/$s/data"
	${as[@]+"${as[@]}"} tee -a "$tmp/$s/data/postgresql.conf" >/dev/null <<EOF

# twocache hot-key benchmark, server $s
listen_addresses = ''
unix_socket_directories = '$tmp/$s'
port = ${port[$s]}
max_connections = 60
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
max_parallel_workers_per_gather = 0
shared_preload_libraries = 'twocache'
twocache.memory = 32MB
twocache.max_entries = 20000
$extra
EOF
	started+=("$s")
	pg_start "$tmp/$s/data" "$tmp/$s/server.log"
}

# Wait (at most 15 s) until server $1's twocache worker is subscribed.
wait_subscribed()
{
	for _ in $(seq 150); do
		[ "$(scalar "$1" <<<"SELECT subscribed FROM twocache_status();")" = t ] && return 0
		sleep 0.1
	done
	sql "$1" <<<"SELECT * FROM twocache_status();" >&2 || true
	fail "server $1's twocache worker did not subscribe to Redis within 15 s"
}

# Set twocache setting NAME to VALUE (DEFAULT: reset) on the servers given,
# reload, and wait (at most 5 s) until a new session sees it: the default
# itself, or any change (none is waited for when VALUE, as written, is the
# setting already; another form of the value in force waits 5 s).
set_conf()
{
	local name=$1 value=$2 s want before got
	shift 2
	for s in "$@"; do
		[ "$(scalar "$s" -v n="$name" <<<"SELECT context FROM pg_settings WHERE name = :'n';")" != postmaster ] ||
			fail "$name can only be set at server start: this script cannot switch it"
		before=$(scalar "$s" -v n="$name" <<<"SELECT setting FROM pg_settings WHERE name = :'n';")
		if [ "$value" = DEFAULT ]; then
			sql "$s" -v n="$name" <<<"ALTER SYSTEM RESET :\"n\";"
			want=$(scalar "$s" -v n="$name" <<<"SELECT boot_val FROM pg_settings WHERE name = :'n';")
		else
			sql "$s" -v n="$name" -v v="$value" <<<"ALTER SYSTEM SET :\"n\" = :'v';"
			want=
		fi
		scalar "$s" <<<"SELECT pg_reload_conf();" >/dev/null
		[ "$value" != "$before" ] || continue
		for _ in $(seq 50); do
			got=$(scalar "$s" -v n="$name" <<<"SELECT setting FROM pg_settings WHERE name = :'n';")
			if [ -n "$want" ]; then
				[ "$got" != "$want" ] || break
			else
				[ "$got" = "$before" ] || break
			fi
			sleep 0.1
		done
	done
}

# The value of a setting as SHOW prints it, on server $1.
show()
{
	scalar "$1" -v n="$2" <<<"SELECT current_setting(:'n');"
}

flushdb()
{
	[ "$("$redis_cli" -h 127.0.0.1 -p "$redis_port" FLUSHDB)" = OK ] || fail "redis FLUSHDB failed"
}

# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------

load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)
log "twocache hot-key benchmark ($([ -n "$quick" ] && echo quick || echo full)) in $tmp"
start_redis
redis_url="redis://127.0.0.1:$redis_port"
log "redis-server on 127.0.0.1:$redis_port (pid $redis_pid)"
pg_init "$tmp/template"
start_server l ""
fleet=(f1 f2 f3 f4)
for s in "${fleet[@]}"; do
	start_server "$s" "twocache.redis_url = '$redis_url'"
done
log "servers l (local) and ${fleet[*]} (two-layer, one Redis) started"

setup_sql="
CREATE EXTENSION twocache;
CREATE TABLE t (id int PRIMARY KEY, payload text NOT NULL);
INSERT INTO t SELECT i, 'payload ' || i || ' ' || repeat('x', 40)
	FROM generate_series(1, $N_IDS) AS i;
VACUUM ANALYZE t;
"
for s in l "${fleet[@]}"; do
	sql "$s" <<<"$setup_sql"
done

# What the installed extension offers.
twocache_version=$(scalar l <<<"SELECT extversion FROM pg_extension WHERE extname = 'twocache';")
has_setting()
{
	[ "$(scalar l -v n="$1" <<<"SELECT count(*) FROM pg_settings WHERE name = :'n';")" = 1 ]
}
has_arg()
{
	[ "$(scalar l -v f="$1" -v a="$2" <<<"SELECT count(*) FROM pg_proc WHERE proname = :'f' AND :'a' = ANY (proargnames);")" -ge 1 ]
}
has_refresh='' has_lease='' has_batch='' has_params=''
has_setting twocache.refresh_after && has_refresh=1
has_setting twocache.lease_ttl && has_lease=1
has_arg twocache_mget fetch_query && has_batch=1
has_arg twocache_get params && has_params=1
offers()
{
	[ -n "$1" ] && echo yes || echo "not in this version"
}
log "twocache $twocache_version: refresh ahead $(offers "$has_refresh"); lease $(offers "$has_lease"); batch read-through $(offers "$has_batch"); params $(offers "$has_params")"

# Timing functions for workloads 3 and 4, on l and f1: ms, measured inside
# the server, for ids 1..n under keys prefix || id; checks that every id got
# its value.  (PL/pgSQL resolves a call when it first runs it, so the forms
# of newer versions may appear here.)
timing_sql=$(cat <<'EOF'
CREATE FUNCTION hk_n1(variant text, n int, prefix text, OUT ms float8, OUT got bigint)
LANGUAGE plpgsql AS $$
DECLARE
	ids int[] := ARRAY(SELECT generate_series(1, n));
	keys text[] := ARRAY(SELECT prefix || i FROM generate_series(1, n) AS i);
	batch_fq text := format('SELECT %L || id, payload FROM t WHERE id = ANY (SELECT split_part(k, '':'', 2)::int FROM unnest($1) AS k)', prefix);
	missing text[];
	i int;
	t0 timestamptz;
	v text;
	r record;
BEGIN
	got := 0;
	t0 := clock_timestamp();
	IF variant = 'direct' THEN
		SELECT count(payload) INTO got FROM t WHERE id = ANY (ids);
	ELSIF variant = 'direct_each' THEN
		FOREACH i IN ARRAY ids LOOP
			SELECT payload INTO v FROM t WHERE id = i;
			got := got + (v IS NOT NULL)::int;
		END LOOP;
	ELSIF variant = 'get' THEN
		FOREACH i IN ARRAY ids LOOP
			v := twocache_get(prefix || i, format('SELECT payload FROM t WHERE id = %s', i));
			got := got + (v IS NOT NULL)::int;
		END LOOP;
	ELSIF variant = 'manual' THEN
		SELECT count(m.value), array_agg(k) FILTER (WHERE m.key IS NULL)
			INTO got, missing
			FROM unnest(keys) AS k LEFT JOIN twocache_mget(keys) AS m ON m.key = k;
		FOR r IN SELECT prefix || id AS k, payload FROM t
				 WHERE id = ANY (SELECT split_part(x, ':', 2)::int FROM unnest(missing) AS x) LOOP
			PERFORM twocache_set(r.k, r.payload);
			got := got + 1;
		END LOOP;
	ELSIF variant = 'batch' THEN
		SELECT count(value) INTO got FROM twocache_mget(keys, batch_fq);
	ELSIF variant = 'format' THEN
		FOREACH i IN ARRAY ids LOOP
			v := twocache_get(prefix || i, format('SELECT payload FROM t WHERE id = %L', i));
			got := got + (v IS NOT NULL)::int;
		END LOOP;
	ELSIF variant = 'params' THEN
		FOREACH i IN ARRAY ids LOOP
			v := twocache_get(prefix || i, 'SELECT payload FROM t WHERE id = $1',
							  params => ARRAY[i::text]);
			got := got + (v IS NOT NULL)::int;
		END LOOP;
	ELSE
		RAISE EXCEPTION 'unknown variant %', variant;
	END IF;
	ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
	IF got <> n THEN
		RAISE EXCEPTION '%: % of % ids got their value', variant, got, n;
	END IF;
END
$$;
EOF
)
sql l <<<"$timing_sql"
sql f1 <<<"$timing_sql"

# The fleet: from f1, conninfos[s] x per callers send twocache_get(k, fq) at
# once (connections opened and warmed first, kept for later rounds); each
# server's counters are reset before.  Returns the fleet's fetches and
# fetch_waits, the wall time from the first send to the last result, and how
# many callers got 'v' (other: what the others got).
sql f1 <<'EOF'
CREATE EXTENSION dblink;
CREATE FUNCTION hk_fleet(conninfos text[], per int, k text, fq text,
						 OUT fetches bigint, OUT waits bigint, OUT wall_ms float8,
						 OUT got int, OUT other text)
LANGUAGE plpgsql AS $$
DECLARE
	nserv int := array_length(conninfos, 1);
	conns text[] := coalesce(dblink_get_connections(), '{}');
	c text;
	t0 timestamptz;
	v text;
	f bigint;
	w bigint;
BEGIN
	FOR s IN 1..nserv LOOP
		FOR j IN 1..per LOOP
			c := format('f%s_%s', s, j);
			IF NOT c = ANY (conns) THEN
				PERFORM dblink_connect(c, conninfos[s]);
				-- catalog caches, twocache's Redis connection
				PERFORM * FROM dblink(c, 'SELECT twocache_get(''fleet:warm'')') AS r(v text);
			END IF;
		END LOOP;
		PERFORM * FROM dblink(format('f%s_1', s),
			'SELECT count(*) FROM (SELECT twocache_stats_reset()) AS s') AS r(n bigint);
	END LOOP;
	t0 := clock_timestamp();
	FOR s IN 1..nserv LOOP
		FOR j IN 1..per LOOP
			PERFORM dblink_send_query(format('f%s_%s', s, j),
									  format('SELECT twocache_get(%L, %L)', k, fq));
		END LOOP;
	END LOOP;
	got := 0;
	FOR s IN 1..nserv LOOP
		FOR j IN 1..per LOOP
			c := format('f%s_%s', s, j);
			SELECT r.v INTO v FROM dblink_get_result(c) AS r(v text);
			IF v = 'v' THEN
				got := got + 1;
			ELSE
				other := coalesce(other || ', ', '') || coalesce(quote_literal(v), 'NULL');
			END IF;
			PERFORM FROM dblink_get_result(c) AS r(v text);
		END LOOP;
	END LOOP;
	wall_ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
	fetches := 0;
	waits := 0;
	FOR s IN 1..nserv LOOP
		SELECT r.f, r.w INTO f, w
			FROM dblink(format('f%s_1', s), 'SELECT fetches, fetch_waits FROM twocache_stats')
			AS r(f bigint, w bigint);
		fetches := fetches + f;
		waits := waits + w;
	END LOOP;
END
$$;
EOF
for s in "${fleet[@]}"; do
	wait_subscribed "$s"
done
log "set-up done: table t of $N_IDS ids on every server; workers subscribed"

# ---------------------------------------------------------------------------
# 1. Hot-key expiry: 4 clients on one key, TTL 3 s, fetch 1 s
# ---------------------------------------------------------------------------

hot_fq="SELECT (SELECT 'v' FROM pg_sleep($HOT_FETCH))"

# hot MODE KEY (no ":" in KEY: pgbench variables): pgbench on l, one transaction log; sets hot_MODE_* figures.
hot()
{
	local mode=$1 key=$2 call out stats
	call="SELECT twocache_get('$key', '${hot_fq//\'/\'\'}', '$HOT_TTL s');"
	printf '%s\n' "$call" >"$tmp/hot_$mode.sql"
	chmod 644 "$tmp/hot_$mode.sql"
	# The key filled, the counters reset: the run starts with a fresh value.
	[ "$(scalar l <<<"${call%;} = 'v';")" = t ] || fail "hot key: the fetch did not return 'v'"
	scalar l <<<"SELECT twocache_stats_reset();" >/dev/null
	# At a fixed rate (-R): the latency is counted from each call's scheduled
	# start, so a call held up behind a stalled one counts its wait; and
	# pgbench's clock is exact (unthrottled, most calls are logged as 0 µs).
	if ! out=$(${as[@]+"${as[@]}"} "$bindir/pgbench" -n -M prepared -c "$HOT_CLIENTS" -j 2 \
		-R "$HOT_RATE" -T "$HOT_SECONDS" -l --log-prefix="$tmp/hot_$mode" -f "$tmp/hot_$mode.sql" \
		-h "$tmp/l" -p "${port[l]}" -U "$dbuser" postgres 2>&1); then
		echo "$out" >&2
		fail "pgbench (hot key, $mode) failed"
	fi
	stats=$(scalar l <<<"SELECT fetches, fetch_waits, coalesce(to_jsonb(s) ->> 'refreshes', '-'), coalesce(to_jsonb(s) ->> 'refresh_errors', '-') FROM twocache_stats AS s;")
	read -r "hot_${mode}_fetches" "hot_${mode}_waits" "hot_${mode}_refreshes" "hot_${mode}_rerrors" <<<"$stats"
	# Per transaction: client, number, latency (µs), script, epoch s, µs
	# (completion), schedule lag.  Times from the first start; throughput per whole second.
	cat "$tmp/hot_$mode".[0-9]* | awk -v dat="$tmp/hot_$mode.dat" -v lats="$tmp/hot_$mode.lat" '
		{ lat[NR] = $3 / 1000; end[NR] = $5 + $6 / 1e6; st = end[NR] - $3 / 1e6
		  if (NR == 1 || st < t0) t0 = st; if (NR == 1 || end[NR] > t1) t1 = end[NR]
		  if (lat[NR] > mx) mx = lat[NR]; if (lat[NR] > 10) slow++ }
		END {
			if (NR == 0) exit 1
			for (i = 1; i <= NR; i++) {
				print lat[i] > lats
				printf "%.6f %.3f\n", end[i] - t0, lat[i] > dat
				b = int(4 * (end[i] - t0)); per[b]++
			}
			# calls completed per second in the slowest whole quarter second
			full = int(4 * (t1 - t0)); minps = -1
			for (b = 0; b < full; b++) if (minps < 0 || per[b] + 0 < minps) minps = per[b] + 0
			printf "%d %.3f %.0f %d %d %.2f\n", NR, mx, NR / (t1 - t0), 4 * minps, slow + 0, t1 - t0
		}' >"$tmp/hot_$mode.sum" || fail "hot key ($mode): no transaction logged"
	read -r "hot_${mode}_n" "hot_${mode}_max" "hot_${mode}_tps" "hot_${mode}_minps" \
		"hot_${mode}_slow" "hot_${mode}_secs" <"$tmp/hot_$mode.sum"
	# p50 and p99 (the nearest rank); the longest time in which no call ended
	read -r "hot_${mode}_p50" "hot_${mode}_p99" < <(sort -g "$tmp/hot_$mode.lat" |
		awk '{ v[NR] = $1 } END { printf "%.3f %.3f\n", v[int(0.5 * (NR - 1)) + 1], v[int(0.99 * (NR - 1)) + 1] }')
	read -r "hot_${mode}_gap" < <(cut -d ' ' -f 1 "$tmp/hot_$mode.dat" | sort -g |
		awk 'NR > 1 && $1 - p > g { g = $1 - p } { p = $1 } END { printf "%.1f\n", 1000 * g }')
	rm -f "$tmp/hot_$mode".[0-9]* "$tmp/hot_$mode.lat"
	local -n n_=hot_${mode}_n p99_=hot_${mode}_p99 max_=hot_${mode}_max tps_=hot_${mode}_tps \
		minps_=hot_${mode}_minps f_=hot_${mode}_fetches gap_=hot_${mode}_gap
	numbers "hot key ($mode)" "$n_" "$p99_" "$max_" "$tps_" "$minps_" "$f_" "$gap_"
	log "   $mode: $n_ calls, p99 $p99_ ms, max $max_ ms, $tps_ calls/s (slowest quarter second $minps_/s), longest gap $gap_ ms, fetches $f_"
}

# hot_mode MODE: HOT_RUNS runs of hot, each on a fresh key; hot_MODE_* are
# then the medians, hot_runs[MODE.*] each run's figures, and the chart shows
# the first run.
hot_fields=(n p50 p99 max slow tps minps gap fetches waits refreshes rerrors)
declare -A hot_runs=()
hot_mode()
{
	local mode=$1 r f v
	for r in $(seq "$HOT_RUNS"); do
		hot "$mode" "hot-$mode-$r"
		[ "$r" != 1 ] || cp "$tmp/hot_$mode.dat" "$tmp/hot_$mode.plot"
		for f in "${hot_fields[@]}"; do
			v=hot_${mode}_$f
			hot_runs[$mode.$f]+=" ${!v}"
		done
	done
	for f in "${hot_fields[@]}"; do
		# shellcheck disable=SC2086
		set -- ${hot_runs[$mode.$f]}
		if [ "$1" = - ]; then v=-; else v=$(median "$@"); fi
		printf -v "hot_${mode}_$f" '%s' "$v"
	done
}

log "1. hot-key expiry: $HOT_CLIENTS clients, TTL ${HOT_TTL}s, fetch ${HOT_FETCH}s, $HOT_RUNS runs of ${HOT_SECONDS}s per mode"
hot_mode today
if [ -n "$has_refresh" ]; then
	set_conf twocache.refresh_after "$HOT_REFRESH" l
	hot_refresh_setting=$(show l twocache.refresh_after)
	hot_mode new
	set_conf twocache.refresh_after DEFAULT l
else
	log "   new (refresh ahead): not in this version"
fi

# ---------------------------------------------------------------------------
# 2. Fleet: 2 and 4 servers x 10 callers miss one key at once
# ---------------------------------------------------------------------------

fleet_fq="SELECT (SELECT 'v' FROM pg_sleep($FLEET_FETCH))"
# The first $1 fleet servers' conninfos, as a text[] literal.
conninfo_array()
{
	local i s out=
	for ((i = 0; i < $1; i++)); do
		s=${fleet[$i]}
		out+="${out:+,}\"host=$tmp/$s port=${port[$s]} dbname=postgres user=$dbuser\""
	done
	echo "{$out}"
}

declare -A fleet_f=() fleet_w=() fleet_wall=()
# fleet_mode MODE: every fleet size, FLEET_ROUNDS rounds each, a fresh key each.
fleet_mode()
{
	local mode=$1 size r f w wall got
	for size in "${FLEET_SIZES[@]}"; do
		while IFS='|' read -r f w wall got other; do
			numbers "fleet ($mode, $size servers)" "$f" "$w" "$wall" "$got"
			[ "$got" = $((size * FLEET_PER)) ] ||
				fail "fleet ($mode, $size servers): $got of $((size * FLEET_PER)) callers got the value 'v'; the others got: $other"
			fleet_f[$mode.$size]+=" $f"
			fleet_w[$mode.$size]+=" $w"
			fleet_wall[$mode.$size]+=" $wall"
		done < <(
			for r in $(seq "$FLEET_ROUNDS"); do
				printf "SELECT fetches, waits, round(wall_ms::numeric, 1), got, other FROM hk_fleet((:'ci')::text[], %d, %s, :'fq');\n" \
					"$FLEET_PER" "'fleet:$mode:$size:$r:$RANDOM'"
			done | scalar f1 -F '|' -v ci="$(conninfo_array "$size")" -v fq="$fleet_fq"
		)
		# shellcheck disable=SC2086
		[ "$(wc -w <<<"${fleet_f[$mode.$size]}")" = "$FLEET_ROUNDS" ] ||
			fail "fleet ($mode, $size servers): $(wc -w <<<"${fleet_f[$mode.$size]}") of $FLEET_ROUNDS rounds"
		log "   $mode, $size servers: fetches per round${fleet_f[$mode.$size]}; waits${fleet_w[$mode.$size]}; wall${fleet_wall[$mode.$size]} ms"
	done
}

log "2. fleet: ${FLEET_SIZES[*]} servers x $FLEET_PER callers, fetch ${FLEET_FETCH}s, $FLEET_ROUNDS rounds"
if [ -n "$has_lease" ]; then
	set_conf twocache.lease_ttl 0 "${fleet[@]}"
	fleet_mode today
	lease_default=$(scalar f1 <<<"SELECT boot_val FROM pg_settings WHERE name = 'twocache.lease_ttl';")
	if [ "$lease_default" = 0 ]; then
		set_conf twocache.lease_ttl 5s "${fleet[@]}"
	else
		set_conf twocache.lease_ttl DEFAULT "${fleet[@]}"
	fi
	lease_setting=$(show f1 twocache.lease_ttl)
	fleet_mode new
else
	fleet_mode today
	log "   new (fleet-wide single flight): not in this version"
fi

# ---------------------------------------------------------------------------
# 3 and 4. N+1 cold, and parameters against format()
# ---------------------------------------------------------------------------

# cold SERVER VARIANT PREFIX: one timing of hk_n1 from cold (L1 flushed, and
# Redis emptied on a two-layer server), after an untimed warm-up of the same
# variant on 10 other keys in the same session; prints ms.  A cache hit in
# the timed run is an error.
cold()
{
	local s=$1 v=$2 p=$3 out ms hits
	[ "$s" = l ] || flushdb
	out=$(scalar "$s" -v v="$v" -v n="$N_IDS" -v p="$p" -v wp="warm$RANDOM$RANDOM:" <<'EOF'
SELECT * FROM hk_n1(:'v', 10, :'wp') \gset
SELECT twocache_flush_local() \gset
SELECT twocache_stats_reset() \gset
SELECT round(ms::numeric, 3) FROM hk_n1(:'v', :n, :'p');
SELECT l1_hits + l2_hits + negative_hits FROM twocache_stats;
EOF
)
	{ read -r ms; read -r hits; } <<<"$out"
	numbers "$v on $s" "$ms" "$hits"
	[ "$hits" = 0 ] || fail "$v on $s: $hits cache hits in a cold run"
	echo "$ms"
}

n1_variants=(direct direct_each get manual)
[ -z "$has_batch" ] || n1_variants+=(batch)
p_variants=(format)
[ -z "$has_params" ] || p_variants+=(params)
declare -A runs=() fig=()
log "3. N+1 cold, $N_IDS ids (${n1_variants[*]}), and 4. misses by format() / params, $REPS rounds"
for r in $(seq "$REPS"); do
	for s in l f1; do
		for v in "${n1_variants[@]}"; do
			runs[$s.$v]+=" $(cold "$s" "$v" u:)"
		done
		for v in "${p_variants[@]}"; do
			runs[$s.$v]+=" $(cold "$s" "$v" w:)"
		done
	done
done
for key in "${!runs[@]}"; do
	# shellcheck disable=SC2086
	fig[$key]=$(calc "$(median ${runs[$key]})" 2)
done
for s in l f1; do
	for v in "${n1_variants[@]}" "${p_variants[@]}"; do
		log "   $s $v: ${fig[$s.$v]} ms (runs:${runs[$s.$v]})"
	done
done
[ -n "$has_batch" ] || log "   batch read-through: not in this version"
[ -n "$has_params" ] || log "   params: not in this version"

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

load_after=$(cut -d ' ' -f 1-3 /proc/loadavg)
na="not in this version"
# A figure of the new mode, or the words above.
new_or()
{
	if [ -n "$1" ]; then echo "$2"; else echo "$na"; fi
}
check()
{
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
		ok = (op == "<=") ? (v <= l) : (v == l); print ok ? "PASS" : "MISS" }'
}
ratio()
{
	calc "$1 / $2" "${3:-2}"
}
# Per call, in µs, of a timing over N_IDS calls in ms.
percall()
{
	calc "$1 * 1000 / $N_IDS" 1
}
runs_of()
{
	# shellcheck disable=SC2086
	printf '%s\n' $1 | paste -sd ' '
}
fleet_text()
{
	local mode=$1 size=$2 lo hi
	# shellcheck disable=SC2086
	lo=$(printf '%s\n' ${fleet_f[$mode.$size]} | sort -n | head -n 1)
	# shellcheck disable=SC2086
	hi=$(printf '%s\n' ${fleet_f[$mode.$size]} | sort -n | tail -n 1)
	if [ "$lo" = "$hi" ]; then echo "$hi"; else echo "$lo to $hi"; fi
}

pg_version=$("$bindir/postgres" --version | sed 's/^postgres (PostgreSQL) //')
redis_version=$("$redis_server" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || true)
if [ -n "$commit" ] && [ -n "$(git -C "$root" status --porcelain -- src sql 2>/dev/null)" ]; then
	commit="$commit (src/ or sql/ modified)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)

hot_row()
{
	local m=$1 label=$2
	local -n n_=hot_${m}_n p50_=hot_${m}_p50 p99_=hot_${m}_p99 max_=hot_${m}_max \
		tps_=hot_${m}_tps minps_=hot_${m}_minps slow_=hot_${m}_slow f_=hot_${m}_fetches \
		w_=hot_${m}_waits rf_=hot_${m}_refreshes re_=hot_${m}_rerrors gap_=hot_${m}_gap
	echo "| $label | $n_ | $p50_ | **$p99_** | **$max_** | $slow_ | $tps_ | $minps_ | $gap_ | $f_ | $w_ | $rf_ | $re_ |"
}
if [ -n "$has_refresh" ]; then
	hot_new_row=$(hot_row new "refresh ahead (\`twocache.refresh_after = '$hot_refresh_setting'\`)")
	t_hot=$(check "$hot_new_max" "<=" 10)
	t_hot_text="$hot_new_max ms (today $hot_today_max ms)"
else
	hot_new_row="| refresh ahead | $na | | | | | | | | | | | |"
	t_hot="—" t_hot_text="$na (today $hot_today_max ms)"
fi

fleet_rows=
t_fleet_text='' t_fleet=PASS
for size in "${FLEET_SIZES[@]}"; do
	today_lbl="today"
	[ -z "$has_lease" ] || today_lbl="today (\`twocache.lease_ttl = 0\`)"
	fleet_rows+="| $size | $today_lbl | **$(fleet_text today "$size")** | $(runs_of "${fleet_f[today.$size]}") | $(runs_of "${fleet_w[today.$size]}") | $(runs_of "${fleet_wall[today.$size]}") |"$'\n'
	if [ -n "$has_lease" ]; then
		fleet_rows+="| $size | lease (\`twocache.lease_ttl = '$lease_setting'\`) | **$(fleet_text new "$size")** | $(runs_of "${fleet_f[new.$size]}") | $(runs_of "${fleet_w[new.$size]}") | $(runs_of "${fleet_wall[new.$size]}") |"$'\n'
		t_fleet_text+="${t_fleet_text:+; }$size servers: $(fleet_text new "$size")"
		[ "$(fleet_text new "$size")" = 1 ] || t_fleet=MISS
	else
		fleet_rows+="| $size | fleet-wide single flight | $na | | | |"$'\n'
		t_fleet_text+="${t_fleet_text:+; }$size servers: today $(fleet_text today "$size")"
	fi
done
if [ -n "$has_lease" ]; then
	t_fleet_text="$t_fleet_text (today: $(for size in "${FLEET_SIZES[@]}"; do printf '%s ' "$(fleet_text today "$size")"; done | sed 's/ $//'))"
else
	t_fleet="—" t_fleet_text="$na ($t_fleet_text)"
fi

# N+1 rows: variant label
declare -A n1_label=(
	[direct]="(a) direct: one query for the $N_IDS ids (\`WHERE id = ANY (ids)\`)"
	[direct_each]="(a') direct, one query per id (PL/pgSQL loop, no cache)"
	[get]="(b) \`twocache_get('u:' \|\| id, format('SELECT payload FROM t WHERE id = %s', id))\` per id"
	[manual]="(c) manual: \`twocache_mget(keys)\`, one query for the misses, \`twocache_set\` per miss"
	[batch]="(d) batch read-through: \`twocache_mget(keys, fetch_query)\`"
)
n1_rows=
for v in direct direct_each get manual batch; do
	if [ "$v" = batch ] && [ -z "$has_batch" ]; then
		n1_rows+="| ${n1_label[$v]} | $na | | | |"$'\n'
		continue
	fi
	n1_rows+="| ${n1_label[$v]} | **${fig[l.$v]}** | $(ratio "${fig[l.$v]}" "${fig[l.direct]}" 1) | **${fig[f1.$v]}** | $(ratio "${fig[f1.$v]}" "${fig[f1.direct]}" 1) |"$'\n'
done
if [ -n "$has_batch" ]; then
	r_l=$(ratio "${fig[l.batch]}" "${fig[l.direct]}")
	r_f=$(ratio "${fig[f1.batch]}" "${fig[f1.direct]}")
	t_n1=$( [ "$(check "$r_l" "<=" 2)" = PASS ] && [ "$(check "$r_f" "<=" 2)" = PASS ] && echo PASS || echo MISS)
	t_n1_text="local $r_l ×, two-layer $r_f × (today, (b): $(ratio "${fig[l.get]}" "${fig[l.direct]}" 0) ×, $(ratio "${fig[f1.get]}" "${fig[f1.direct]}" 0) ×); against (a'), one query per id: $(ratio "${fig[l.batch]}" "${fig[l.direct_each]}") ×, $(ratio "${fig[f1.batch]}" "${fig[f1.direct_each]}") ×"
else
	t_n1="—"
	t_n1_text="$na (today, (b): local $(ratio "${fig[l.get]}" "${fig[l.direct]}" 0) ×, two-layer $(ratio "${fig[f1.get]}" "${fig[f1.direct]}" 0) ×)"
fi

p_rows="| \`twocache_get(key, format('SELECT payload FROM t WHERE id = %L', id))\` (today) | **$(percall "${fig[l.format]}")** | **$(percall "${fig[f1.format]}")** |"$'\n'
if [ -n "$has_params" ]; then
	p_rows+="| \`twocache_get(key, 'SELECT payload FROM t WHERE id = \$1', params => ARRAY[id::text])\` | **$(percall "${fig[l.params]}")** | **$(percall "${fig[f1.params]}")** |"$'\n'
else
	p_rows+="| \`twocache_get(key, 'SELECT payload FROM t WHERE id = \$1', params => ARRAY[id::text])\` | $na | $na |"$'\n'
fi
p_rows+="| the query alone, per id ((a') above, no cache) | $(percall "${fig[l.direct_each]}") | $(percall "${fig[f1.direct_each]}") |"

note_quick=
[ -z "$quick" ] ||
	note_quick="
> **Quick run** (\`--quick\` / \`HOTKEYS_QUICK=1\`): shorter runs, one round each, to check that
> every section works.  \`make bench\` gives the real figures.
"

report=$tmp/hotkeys.md
cat >"$report" <<EOF
# twocache hot-key benchmarks (issue 13)

$(date -u '+%Y-%m-%d %H:%M UTC'), \`bench/hotkeys.sh\` ($([ -n "$quick" ] && echo quick || echo full) run; twocache $twocache_version${commit:+, commit $commit}).
$note_quick
Each workload on today's behaviour beside the new one (SPEC.md section 10), where the installed
version offers it: refresh ahead $(offers "$has_refresh"); fleet-wide lease $(offers "$has_lease");
batch read-through $(offers "$has_batch"); fetch query parameters $(offers "$has_params").

## Machine

| | |
|---|---|
| CPU | $cpu, **$(nproc) cores** (\`nproc\`) |
| Memory | $mem |
| Load average (1, 5, 15 min) | before $load_before; after $load_after (other work on the machine skews the figures) |
| PostgreSQL | $pg_version, five servers (\`fsync = off\`, \`jit = off\`, unix sockets) |
| Redis | $redis_version (loopback TCP) |

Servers: **L** (twocache in local mode) and **F1 to F4** (two-layer mode, all on the one Redis).

## Goals

| Goal | Measured | Result |
|---|---|---|
| Hot-key expiry: readers' max latency under 10 ms | $t_hot_text | $t_hot |
| Fleet: one fetch in the fleet | $t_fleet_text | $t_fleet |
| N+1 cold: batch read-through at most 2 × the direct query (a) | $t_n1_text | $t_n1 |

![chart](hotkeys.png)

## 1. Hot-key expiry

One key on L, TTL $HOT_TTL s, fetch query \`$hot_fq\` (${HOT_FETCH} s); \`pgbench -M prepared -c $HOT_CLIENTS -j 2
-R $HOT_RATE -T $HOT_SECONDS -l\`, every call \`twocache_get(key, fetch_query, '$HOT_TTL s')\`, the key filled just
before the run.  Latencies (ms) of every call from pgbench's per-transaction log: at a fixed rate
pgbench counts each call's latency from its scheduled start, so the calls queued behind a stalled
one count their wait (what a reader sees).  Calls per second over the run, and in its slowest
whole quarter second (the calls held up by a stall end together, in the same second); the
longest time in which no call ended.  Counters from \`twocache_stats\`, reset before.  Median of
$HOT_RUNS runs of $HOT_SECONDS s, each on a fresh key (the chart shows the first).

| Mode | Calls | p50 ms | p99 ms | max ms | calls over 10 ms | calls/s | calls/s, slowest ¼ s | longest gap, ms | fetches | fetch_waits | refreshes | refresh_errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$(hot_row today "today (the entry expires; every reader waits for the refetch)")
$hot_new_row

Each run: today p99${hot_runs[today.p99]} ms, max${hot_runs[today.max]} ms, fetches${hot_runs[today.fetches]}$(
	[ -z "$has_refresh" ] || printf '; refresh ahead p99%s ms, max%s ms, fetches%s, refreshes%s' "${hot_runs[new.p99]}" "${hot_runs[new.max]}" "${hot_runs[new.fetches]}" "${hot_runs[new.refreshes]}").

## 2. Fleet: several servers miss one key at once

$FLEET_PER callers on each of the first N of F1 to F4, connections opened and warmed beforehand,
are sent \`twocache_get(key, fetch_query)\`, fetch query \`$fleet_fq\`, at once (\`dblink_send_query\` from F1, all within a few
ms) on a fresh key absent from every L1 and from Redis; every caller must get \`'v'\`.  Fetches
and waits: the sum of \`fetches\` and \`fetch_waits\` over those servers' \`twocache_stats\`, reset
before each round.  $FLEET_ROUNDS rounds per row, a fresh key each.

| Servers | Mode | Fetches in the fleet | each round | fetch_waits, each round | wall ms (first send to last result), each round |
|---:|---|---:|---|---|---|
${fleet_rows%$'\n'}

## 3. N+1, cold

$N_IDS ids of table \`t (id int PRIMARY KEY, payload text)\`, keys \`'u:' || id\`.  Each timing runs
inside the server (\`clock_timestamp()\` around the work, in PL/pgSQL), from cold: before it
\`twocache_flush_local()\` and, on F1, \`FLUSHDB\` of the Redis; a timing that saw a cache hit
stops the script.  Each after an untimed warm-up of the same code on 10 other keys in the same
session.  Median of $REPS timings, ms for all $N_IDS ids.  The batch's fetch query is
\`SELECT 'u:' || id, payload FROM t WHERE id = ANY (SELECT split_part(k, ':', 2)::int FROM unnest(\$1) AS k)\`.

| Variant | L (local), ms | × (a) | F1 (two-layer), ms | × (a) |
|---|---:|---:|---:|---:|
${n1_rows%$'\n'}

## 4. Fetch query parameters against format()

Misses over $N_IDS distinct keys (\`'w:' || id\`), cold as above; µs per call (median of $REPS
timings of $N_IDS calls).

| Call | L (local), µs per call | F1 (two-layer), µs per call |
|---|---:|---:|
$p_rows

## Each timing (ms)

| Server | Variant | runs |
|---|---|---|
$(for s in l f1; do for v in "${n1_variants[@]}" "${p_variants[@]}"; do echo "| $s | $v | $(runs_of "${runs[$s.$v]}") |"; done; done)

## Reproduce

\`\`\`
make bench                                      # bench.sh, then this script
PG_CONFIG=\$(which pg_config) bench/hotkeys.sh   # this script alone (about 3 minutes)
HOTKEYS_QUICK=1 bench/hotkeys.sh                # about a minute; figures mean little
bench/hotkeys.sh --out DIR                      # hotkeys.md and hotkeys.png into DIR
\`\`\`
EOF

# ---------------------------------------------------------------------------
# Chart
# ---------------------------------------------------------------------------

# Fleet: median fetches per size, today and new ('?' where absent).
for size in "${FLEET_SIZES[@]}"; do
	# shellcheck disable=SC2086
	echo "\"$size servers\" $(median ${fleet_f[today.$size]}) $([ -n "$has_lease" ] && median ${fleet_f[new.$size]} || echo '?')"
done >"$tmp/fleet.dat"
for v in direct direct_each get manual batch; do
	case $v in
		direct) lbl="(a) direct" ;;
		direct_each) lbl="(a') per id" ;;
		get) lbl="(b) get" ;;
		manual) lbl="(c) manual" ;;
		batch) lbl="(d) batch" ;;
	esac
	echo "\"$lbl\" ${fig[l.$v]:-?} ${fig[f1.$v]:-?}"
done >"$tmp/n1.dat"
{
	echo "\"format(%L)\" $(percall "${fig[l.format]}") $(percall "${fig[f1.format]}")"
	if [ -n "$has_params" ]; then
		echo "\"params\" $(percall "${fig[l.params]}") $(percall "${fig[f1.params]}")"
	else
		echo "\"params (n/a)\" ? ?"
	fi
} >"$tmp/params.dat"
[ -n "$has_refresh" ] || echo "? ?" >"$tmp/hot_new.plot"

chart=
if [ -n "$gnuplot" ]; then
	term="png size 1400,1000"
	if "$gnuplot" -e 'set terminal' 2>&1 | grep -qw pngcairo; then
		term="pngcairo size 1400,1000 font 'sans,10'"
	fi
	cat >"$tmp/chart.gp" <<EOF
set terminal $term
set termoption noenhanced
set output '$tmp/hotkeys.png'
set datafile missing '?'
set multiplot layout 2,2 title "twocache hot-key benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, twocache $twocache_version$([ -z "$quick" ] || echo ' (QUICK RUN)')"
set grid ytics
set key top right

set title "1. Hot key (TTL ${HOT_TTL}s, fetch ${HOT_FETCH}s, $HOT_CLIENTS clients, $HOT_RATE calls/s): latency of each call (ms, log scale)"
set logscale y
set xlabel "seconds into the run"
plot '$tmp/hot_today.plot' using 1:2 with points pt 7 ps 0.4 lc rgb '#ee6677' title 'today', \
	'$tmp/hot_new.plot' using 1:2 with points pt 7 ps 0.4 lc rgb '#4477aa' title '$([ -n "$has_refresh" ] && echo 'refresh ahead' || echo "refresh ahead: $na")'
unset logscale y
unset xlabel

set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7 border -1
set boxwidth 0.8
set xtics nomirror

set title "2. Fleet: $FLEET_PER callers per server miss one key at once: fetches in the fleet (goal 1)"
set yrange [0:${FLEET_SIZES[-1]} + 1]
plot '$tmp/fleet.dat' using 2:xtic(1) title 'today' lc rgb '#ee6677', \
	'' using 3 title '$([ -n "$has_lease" ] && echo 'lease' || echo "lease: $na")' lc rgb '#4477aa'

set title "3. N+1 cold, $N_IDS ids: ms (log scale)"
set logscale y
set yrange [*:*]
set key top left
plot '$tmp/n1.dat' using 2:xtic(1) title 'L (local)' lc rgb '#228833', \
	'' using 3 title 'F1 (two-layer)' lc rgb '#4477aa'
unset logscale y

set title "4. Misses: µs per call, format(%L) against params"
set yrange [0:*]
plot '$tmp/params.dat' using 2:xtic(1) title 'L (local)' lc rgb '#228833', \
	'' using 3 title 'F1 (two-layer)' lc rgb '#4477aa'
unset multiplot
EOF
	if "$gnuplot" "$tmp/chart.gp" 2>"$tmp/gnuplot.log" && [ -s "$tmp/hotkeys.png" ]; then
		chart=1
	else
		cat "$tmp/gnuplot.log" >&2
		fail "gnuplot failed"
	fi
else
	echo "hotkeys: gnuplot not installed: no chart ('make bench' installs gnuplot-nox)" >&2
fi

cp "$report" "$outdir/hotkeys.md"
[ -z "$chart" ] || cp "$tmp/hotkeys.png" "$outdir/hotkeys.png"
log "wrote $outdir/hotkeys.md${chart:+ and $outdir/hotkeys.png}"
echo
sed -n '/^## Goals/,/^!\[chart\]/p' "$report" | sed '$d'
