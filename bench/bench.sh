#!/usr/bin/env bash
# twocache benchmark: everything side by side in one run, on servers that
# this script starts and stops itself.
#
#   A  PostgreSQL with twocache (two-layer, on our Redis) and pgmemcache (on
#      our memcached) preloaded; the expensive query, the unlogged-table cache
#   B  PostgreSQL with twocache on the same Redis: invalidation delay from A
#   C  PostgreSQL with twocache in local mode, one partition and a small
#      max_entries: ARC's hit ratio on generated traces
#
# It measures the in-SQL cost of a call, pgbench rates, an L2 hit against a
# bare Redis round trip, a miss against the query alone, single flight,
# invalidation delay, L1 hit throughput by clients, and ARC against LRU;
# then writes results.md (figures, ratios, targets with PASS/MISS) and
# results.png (gnuplot).  Every figure is the median of several runs.
# Last, bench/hotkeys.sh (its own servers; hotkeys.md and hotkeys.png).
#
# Usage: bench/bench.sh [--smoke] [--out DIR]
#
#   --smoke    tiny sizes, a few seconds: every section runs end to end and
#              the report is written, but the figures mean nothing (make test)
#   --out DIR  where results.md and results.png go (default: this script's
#              directory, bench/)
#
# PG_CONFIG selects the PostgreSQL installation (default pg_config); the
# extension must already be installed (make bench does that).  initdb and
# postgres refuse to run as root: when called as root, the servers, Redis,
# memcached and the clients run as $TWOCACHE_BENCH_USER (default postgres).
# Servers listen on unix sockets in the benchmark's temporary directory only;
# Redis and memcached on free 127.0.0.1 ports.  Everything started is stopped
# by its data directory or pid (never by name) on exit, error or Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}

smoke=
outdir=$here
while [ $# -gt 0 ]; do
	case $1 in
		--smoke) smoke=1 ;;
		--out)
			[ $# -ge 2 ] || { echo "bench: --out needs a directory" >&2; exit 2; }
			outdir=$2
			shift
			;;
		--out=*) outdir=${1#--out=} ;;
		-h | --help)
			sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
			exit 0
			;;
		*) echo "bench: unknown argument \"$1\" (try --help)" >&2; exit 2 ;;
	esac
	shift
done
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
if [ ! -w "$outdir" ]; then
	echo "bench: cannot write to $outdir (use --out DIR)" >&2
	exit 1
fi

# Sizes.  Full: about four minutes on two cores.
if [ -n "$smoke" ]; then
	ROWS=5000 CUSTOMERS=500		# the expensive query's table
	N_L1=20000 N_KV=2000 N_MC=2000	# calls per in-SQL timing
	N_L2=200 N_MISS=50 N_MISS_EXP=5	# L2 hits, misses per timing
	N_RTT=2000					# bare Redis GETs per timing
	REPS=1						# timings per in-SQL figure (median)
	PGB_REPS=1 PGB_LEN=(-t 50) PGB_SCALE_LEN=(-t 50)
	SF_CLIENTS=50 SF_REPS=1
	INVAL_N=20 INVAL_WARMUP=5
	ARC_C=100 ZIPF_PHASES=2 LOOP_PASSES=3 MIX_LEN=1000
else
	ROWS=20000 CUSTOMERS=2000
	N_L1=1000000 N_KV=100000 N_MC=20000
	N_L2=5000 N_MISS=2000 N_MISS_EXP=30
	N_RTT=10000
	REPS=5
	PGB_REPS=5 PGB_LEN=(-T 3) PGB_SCALE_LEN=(-T 2)
	SF_CLIENTS=50 SF_REPS=3
	INVAL_N=2000 INVAL_WARMUP=100
	ARC_C=1000 ZIPF_PHASES=8 LOOP_PASSES=10 MIX_LEN=20000
fi
PGB_CLIENTS=4 PGB_THREADS=2
SCALE_CLIENTS=(1 2 4 8)
SF_SLEEP=0.2
PORT_A=54341 PORT_B=54342 PORT_C=54343	# unix sockets, in our own directories

me=bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"

find_pg_bindir initdb pg_ctl psql pgbench postgres
sharedir=$("$PG_CONFIG" --sharedir)
for ext in twocache pgmemcache dblink; do
	[ -f "$sharedir/extension/$ext.control" ] ||
		fail "extension $ext is not installed ('make bench' installs what is missing)"
done
redis_server=$(command -v redis-server || true)
redis_cli=$(command -v redis-cli || true)
redis_benchmark=$(command -v redis-benchmark || true)
memcached=$(command -v memcached || true)
[ -n "$memcached" ] || [ ! -x /usr/bin/memcached ] || memcached=/usr/bin/memcached
[ -n "$redis_server" ] && [ -n "$redis_cli" ] && [ -n "$redis_benchmark" ] ||
	fail "redis-server, redis-cli and redis-benchmark are needed ('make bench' installs them)"
[ -n "$memcached" ] || fail "memcached is needed ('make bench' installs it)"
gnuplot=$(command -v gnuplot || true)
cc=$(command -v cc || true)

# Who runs the servers: ourselves, or $TWOCACHE_BENCH_USER when we are root.
choose_account TWOCACHE_BENCH_USER

started=()
redis_pid=
memcached_pid=

# For cleanup (lib.sh), after an error: the logs.
on_failure()
{
	local s

	for s in a b c; do
		show_log "server ${s^^}" "$tmp/$s/server.log"
	done
	show_log Redis "$tmp/redis/redis.log"
	show_log memcached "$tmp/memcached.log"
}

# For cleanup (lib.sh): stop the servers (by their data directories), Redis
# and memcached (by their pids).
stop_all()
{
	local s

	for s in ${started[@]+"${started[@]}"}; do
		pg_stop "$tmp/$s/data"
	done
	stop_pid "$redis_pid" redis-server
	stop_pid "$memcached_pid" memcached
}

make_tmp bench
chmod 755 "$tmp"

log()
{
	printf '[%s] %s\n' "$(date +%T)" "$*"
}

# ---------------------------------------------------------------------------
# Helpers: clients, arithmetic
# ---------------------------------------------------------------------------

# psql against server a|b|c; extra arguments are passed on.
sql()
{
	local s=$1 port
	shift
	case $s in a) port=$PORT_A ;; b) port=$PORT_B ;; c) port=$PORT_C ;; esac
	psql_at "$tmp/$s" "$port" "$@"
}

# Unaligned, tuples only, fields separated by spaces.
scalar()
{
	local s=$1
	shift
	sql "$s" -A -t -F ' ' "$@"
}

# awk arithmetic: calc EXPR [DECIMALS]
calc()
{
	awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"
}

# The median of the numbers given as arguments.
median()
{
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------
# memcached, in the foreground of a background job ($! is its pid); Redis:
# start_redis in lib.sh
# ---------------------------------------------------------------------------

start_memcached()
{
	local i port

	for _ in $(seq 10); do
		port=$(free_port)
		${daemon_as[@]+"${daemon_as[@]}"} "$memcached" -l 127.0.0.1 -p "$port" -U 0 -m 64 \
			</dev/null >"$tmp/memcached.log" 2>&1 &
		memcached_pid=$!
		for i in $(seq 50); do
			kill -0 "$memcached_pid" 2>/dev/null || break	# exited: port taken
			if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
				memcached_port=$port
				return 0
			fi
			sleep 0.1
		done
		kill -0 "$memcached_pid" 2>/dev/null && fail "memcached did not listen within 5 s"
		wait "$memcached_pid" 2>/dev/null || true
		memcached_pid=
	done
	fail "could not start memcached on a free loopback port"
}

# ---------------------------------------------------------------------------
# PostgreSQL servers: one initdb, copied
# ---------------------------------------------------------------------------

# start_server NAME PORT SHARED_BUFFERS EXTRA_CONF
start_server()
{
	local s=$1 port=$2 sb=$3 extra=$4

	${as[@]+"${as[@]}"} mkdir "$tmp/$s"
	${as[@]+"${as[@]}"} cp -a "$tmp/template" "$tmp/$s/data"
	${as[@]+"${as[@]}"} tee -a "$tmp/$s/data/postgresql.conf" >/dev/null <<EOF

# twocache benchmark, server ${s^^}
listen_addresses = ''
unix_socket_directories = '$tmp/$s'
port = $port
max_connections = 100
shared_buffers = $sb
work_mem = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
max_parallel_workers_per_gather = 0
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
	fail "server ${1^^}'s twocache worker did not subscribe to Redis within 15 s"
}

mode=full
[ -z "$smoke" ] || mode=smoke
load_before=$(cut -d ' ' -f 1 /proc/loadavg)
log "twocache benchmark ($mode) in $tmp"
start_redis
start_memcached
log "redis-server on 127.0.0.1:$redis_port (pid $redis_pid), memcached on 127.0.0.1:$memcached_port (pid $memcached_pid)"

pg_init "$tmp/template"
redis_url="redis://127.0.0.1:$redis_port"
start_server a "$PORT_A" 256MB "shared_preload_libraries = 'twocache,pgmemcache'
twocache.redis_url = '$redis_url'
pgmemcache.default_servers = '127.0.0.1:$memcached_port'"
start_server b "$PORT_B" 32MB "shared_preload_libraries = 'twocache'
twocache.redis_url = '$redis_url'"
start_server c "$PORT_C" 32MB "shared_preload_libraries = 'twocache'
twocache.partitions = 1
twocache.max_entries = $ARC_C"
log "servers A, B (two-layer, one Redis) and C (local, 1 partition, max_entries $ARC_C) started"

# ---------------------------------------------------------------------------
# Set-up: the expensive query, the three caches holding its result
# ---------------------------------------------------------------------------

query="SELECT string_agg(format('customer %s: %s', customer_id, total), ', ' ORDER BY total DESC)
FROM (SELECT customer_id, sum(amount) AS total
      FROM orders GROUP BY customer_id
      ORDER BY total DESC LIMIT 5) AS top"
# A cheap query for the miss overhead: one row by primary key.
cheap_query="SELECT amount::text FROM orders WHERE order_id = 4242"

sql a -v rows="$ROWS" -v customers="$CUSTOMERS" -v q="$query" <<'EOF'
CREATE EXTENSION twocache;
CREATE EXTENSION pgmemcache;
CREATE EXTENSION dblink;

CREATE TABLE orders (
	order_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer_id	int NOT NULL,
	amount		numeric(10,2) NOT NULL
);
SELECT setseed(0.42) \gset
INSERT INTO orders (customer_id, amount)
	SELECT 1 + floor(random() * :customers)::int, round((random() * 500)::numeric, 2)
	FROM generate_series(1, :rows);
VACUUM ANALYZE orders;

-- The usual home-made cache: an unlogged table and a PL/pgSQL reader that
-- checks expiry (declared STABLE, which is cheaper than the default).
CREATE UNLOGGED TABLE kv (k text PRIMARY KEY, v text NOT NULL, expires_at timestamptz);
CREATE FUNCTION kv_get(key text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
	r text;
BEGIN
	SELECT v INTO r FROM kv WHERE k = key AND (expires_at IS NULL OR expires_at > now());
	RETURN r;
END
$$;

-- The value every cache holds under key 'k': the expensive query's result.
SELECT (:q) AS v \gset
SELECT twocache_set('k', :'v') \gset
INSERT INTO kv VALUES ('k', :'v', now() + interval '1 day');
SELECT memcache_set('k', :'v') \gset
SELECT twocache_set('inv', 'v0') \gset

-- Run sql once; its run time in microseconds, measured inside the server.
CREATE FUNCTION bench_us(sql text) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	EXECUTE sql;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6;
END
$$;

CREATE FUNCTION bench_median(a float8[]) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(a) AS x
$$;

-- Cost of one evaluation of expr in SELECT count(expr) FROM
-- generate_series(1, n) AS g(i), above the same loop over floor_expr: the
-- median of reps timings of each (alternating, after one warm-up of each).
-- before, when given, runs untimed before every timing.  All in µs.
CREATE FUNCTION bench_percall(expr text, n int, reps int,
							  floor_expr text DEFAULT 'i', before text DEFAULT NULL,
							  OUT per_call float8, OUT total float8, OUT floor float8)
LANGUAGE plpgsql AS $$
DECLARE
	q text := format('SELECT count(%s) FROM generate_series(1, %s) AS g(i)', expr, n);
	f text := format('SELECT count(%s) FROM generate_series(1, %s) AS g(i)', floor_expr, n);
	tq float8[] := '{}';
	tf float8[] := '{}';
BEGIN
	FOR r IN 0..reps LOOP
		IF before IS NOT NULL THEN
			EXECUTE before;
		END IF;
		IF r = 0 THEN
			PERFORM bench_us(f), bench_us(q);
		ELSE
			tf := tf || bench_us(f);
			tq := tq || bench_us(q);
		END IF;
	END LOOP;
	floor := bench_median(tf) / n;
	total := bench_median(tq) / n;
	per_call := total - floor;
END
$$;

-- n misses of twocache_get on fresh keys (tag:1 .. tag:n) fetching q,
-- alternating with q run by EXECUTE; mean µs per call of each.
CREATE FUNCTION bench_miss(q text, n int, tag text, OUT direct float8, OUT miss float8)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	t1 timestamptz;
BEGIN
	direct := 0;
	miss := 0;
	FOR i IN 1..n LOOP
		t0 := clock_timestamp();
		EXECUTE q;
		t1 := clock_timestamp();
		PERFORM twocache_get(tag || ':' || i, q);
		direct := direct + extract(epoch FROM t1 - t0);
		miss := miss + extract(epoch FROM clock_timestamp() - t1);
	END LOOP;
	direct := direct * 1e6 / n;
	miss := miss * 1e6 / n;
END
$$;

-- Single flight: open n connections to this server (conninfo) and warm
-- them, then, on a key absent from L1 and Redis, send twocache_get(key,
-- fetch_query) on all of them at once and wait for every result.  Returns the
-- wall time from the first send to the last result, this server's fetches
-- and fetch_waits, and how many callers got the value 'v'.
CREATE FUNCTION bench_sf(conninfo text, n int, key text, fetch_query text,
						 OUT wall_ms float8, OUT fetches bigint, OUT waits bigint,
						 OUT got int)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	v text;
BEGIN
	FOR i IN 1..n LOOP
		PERFORM dblink_connect('sf' || i, conninfo);
		-- catalog caches, twocache's Redis connection
		PERFORM * FROM dblink('sf' || i, 'SELECT twocache_get(''sf:warm'')') AS r(v text);
	END LOOP;
	PERFORM twocache_del(key);
	PERFORM twocache_stats_reset();
	t0 := clock_timestamp();
	FOR i IN 1..n LOOP
		PERFORM dblink_send_query('sf' || i, format('SELECT twocache_get(%L, %L)', key, fetch_query));
	END LOOP;
	got := 0;
	FOR i IN 1..n LOOP
		SELECT r.v INTO v FROM dblink_get_result('sf' || i) AS r(v text);
		IF v = 'v' THEN
			got := got + 1;
		END IF;
		PERFORM FROM dblink_get_result('sf' || i) AS r(v text);
	END LOOP;
	wall_ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
	SELECT s.fetches, s.fetch_waits INTO fetches, waits FROM twocache_stats AS s;
	FOR i IN 1..n LOOP
		PERFORM dblink_disconnect('sf' || i);
	END LOOP;
END
$$;

-- For the invalidation test: the time just before a twocache_set.
CREATE FUNCTION bench_set_at(k text, v text) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
	t timestamptz := clock_timestamp();
BEGIN
	PERFORM twocache_set(k, v);
	RETURN t;
END
$$;
EOF

sql b <<'EOF'
CREATE EXTENSION twocache;
CREATE EXTENSION dblink;

-- warmup + n times: make key 'inv' resident in this server's L1 (an L2
-- read), have server A (through dblink, asynchronously) twocache_set it, and
-- spin until our worker has dropped it from L1.  Delay = our
-- clock_timestamp() when we see it gone minus A's just before its
-- twocache_set (one machine, one clock).  Returns the last n delays in ms.
CREATE FUNCTION bench_inval(conninfo text, n int, warmup int) RETURNS SETOF float8
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	t1 timestamptz;
	deadline timestamptz;
BEGIN
	PERFORM dblink_connect('bench_a', conninfo);
	FOR i IN 1..warmup + n LOOP
		PERFORM twocache_get('inv');
		IF NOT EXISTS (SELECT FROM twocache_local_keys() AS k WHERE k = 'inv') THEN
			RAISE EXCEPTION 'key "inv" is not resident in L1 after an L2 read (round %)', i;
		END IF;
		PERFORM dblink_send_query('bench_a', format('SELECT bench_set_at(%L, %L)', 'inv', 'v' || i));
		deadline := clock_timestamp() + interval '5 s';
		LOOP
			EXIT WHEN NOT EXISTS (SELECT FROM twocache_local_keys() AS k WHERE k = 'inv');
			IF clock_timestamp() > deadline THEN
				RAISE EXCEPTION 'key "inv" still resident 5 s after server A''s twocache_set (round %)', i;
			END IF;
		END LOOP;
		t1 := clock_timestamp();
		SELECT t INTO t0 FROM dblink_get_result('bench_a') AS r(t timestamptz);
		PERFORM FROM dblink_get_result('bench_a') AS r(t timestamptz);
		IF i > warmup THEN
			RETURN NEXT extract(epoch FROM t1 - t0) * 1000;
		END IF;
	END LOOP;
	PERFORM dblink_disconnect('bench_a');
END
$$;
EOF

sql c <<'EOF'
CREATE EXTENSION twocache;
CREATE TABLE trace (name text, i int, k text, PRIMARY KEY (name, i));

-- Replay trace tname through twocache_get(k, 'SELECT 1') from an empty L1.
CREATE FUNCTION bench_arc(tname text, OUT hits bigint, OUT misses bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	PERFORM twocache_flush_local();
	PERFORM twocache_stats_reset();
	FOR r IN SELECT k FROM trace WHERE name = tname ORDER BY i LOOP
		PERFORM twocache_get(r.k, 'SELECT 1');
	END LOOP;
	SELECT l1_hits, l1_misses INTO hits, misses FROM twocache_stats;
END
$$;
EOF
wait_subscribed a
wait_subscribed b
# The workers flush L1 on subscribing: fill it again.
scalar a <<<"SELECT twocache_get('k'); SELECT twocache_get('inv');" >/dev/null
value_len=$(scalar a <<<"SELECT length(twocache_get('k'));")
query_ms=$(scalar a -v q="$query" <<'EOF'
SELECT bench_us(:'q') \gset
SELECT round((bench_median(ARRAY[bench_us(:'q'), bench_us(:'q'), bench_us(:'q')]) / 1000)::numeric, 2);
EOF
)
log "set-up done: orders has $ROWS rows; the expensive query takes $query_ms ms; its value is $value_len bytes"
conninfo_a="host=$tmp/a port=$PORT_A dbname=postgres user=$dbuser"

# ---------------------------------------------------------------------------
# 5. Invalidation delay from A's twocache_set to B's L1 copy being dropped
# ---------------------------------------------------------------------------

log "5. invalidation delay A -> B, $INVAL_N rounds (after $INVAL_WARMUP unrecorded)"
read -r inv_p50 inv_p99 inv_p999 inv_max inv_over1 inv_n < <(scalar b -v ci="$conninfo_a" -v n="$INVAL_N" -v w="$INVAL_WARMUP" <<'EOF'
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric, 3),
	   round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric, 3),
	   round(percentile_cont(0.999) WITHIN GROUP (ORDER BY d)::numeric, 3),
	   round(max(d)::numeric, 3), count(*) FILTER (WHERE d > 1), count(*)
FROM bench_inval(:'ci', :n, :w) AS d;
EOF
)
[ "$inv_n" = "$INVAL_N" ] || fail "invalidation: $inv_n of $INVAL_N rounds"
log "   p50 $inv_p50 ms, p99 $inv_p99 ms, p99.9 $inv_p999 ms, max $inv_max ms ($inv_over1 over 1 ms)"

# ---------------------------------------------------------------------------
# 1. In-SQL cost per call, above the bare loop
# ---------------------------------------------------------------------------

# percall NAME EXPR N [FLOOR_EXPR [BEFORE]]: sets pc_NAME, tot_NAME, floor_NAME
percall()
{
	local name=$1 expr=$2 n=$3 floor_expr=${4:-i} before=${5:-} out
	out=$(scalar a -v e="$expr" -v n="$n" -v r="$REPS" -v f="$floor_expr" -v b="$before" <<'EOF'
SELECT round(per_call::numeric, 3), round(total::numeric, 3), round(floor::numeric, 3)
FROM bench_percall(:'e', :n, :r, :'f', nullif(:'b', ''));
EOF
)
	read -r "pc_$name" "tot_$name" "floor_$name" <<<"$out"
}

log "1. in-SQL cost per call (N = $N_L1 / $N_KV / $N_MC, median of $REPS)"
percall l1 "twocache_get('k')" "$N_L1"
percall kv "kv_get('k')" "$N_KV"
percall mc "memcache_get('k')" "$N_MC"
log "   L1 hit $pc_l1 µs, unlogged table $pc_kv µs, pgmemcache $pc_mc µs (loop floor $floor_l1 µs/row)"

# ---------------------------------------------------------------------------
# 2. pgbench: one call per transaction
# ---------------------------------------------------------------------------

# pgb CLIENTS SCRIPT LENGTH...: prints the tps of one pgbench run.
pgb()
{
	local c=$1 f=$2 j out
	shift 2
	j=$((c < PGB_THREADS ? c : PGB_THREADS))
	if ! out=$(${as[@]+"${as[@]}"} "$bindir/pgbench" -n -M prepared -c "$c" -j "$j" "$@" \
		-f "$f" -h "$tmp/a" -p "$PORT_A" -U "$dbuser" postgres 2>&1); then
		echo "$out" >&2
		fail "pgbench -f $f failed"
	fi
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

pgb_names=(select1 l1 kv mc query)
printf '%s\n' "SELECT 1;" >"$tmp/select1.sql"
printf '%s\n' "SELECT twocache_get('k');" >"$tmp/l1.sql"
printf '%s\n' "SELECT kv_get('k');" >"$tmp/kv.sql"
printf '%s\n' "SELECT memcache_get('k');" >"$tmp/mc.sql"
printf '%s;\n' "$(tr '\n' ' ' <<<"$query")" >"$tmp/query.sql"
declare -A tps_runs=()
log "2. pgbench -M prepared -c $PGB_CLIENTS -j $PGB_THREADS ${PGB_LEN[*]}, $PGB_REPS rounds"
for r in $(seq "$PGB_REPS"); do
	for name in "${pgb_names[@]}"; do
		tps_runs[$name]+=" $(pgb "$PGB_CLIENTS" "$tmp/$name.sql" "${PGB_LEN[@]}")"
	done
done
declare -A tps=()
for name in "${pgb_names[@]}"; do
	# shellcheck disable=SC2086
	tps[$name]=$(calc "$(median ${tps_runs[$name]})" 0)
done
for name in "${pgb_names[@]}"; do
	log "   $name: ${tps[$name]} tps (runs:$(printf ' %.0f' ${tps_runs[$name]}))"
done

# ---------------------------------------------------------------------------
# 6. L1 hit throughput by clients (random key among 1000)
# ---------------------------------------------------------------------------

sql a <<'EOF'
DO $$
BEGIN
	FOR i IN 1..1000 LOOP
		PERFORM twocache_local_set('t:' || i, 'value ' || i);
	END LOOP;
END
$$;
EOF
printf '%s\n' '\set r random(1, 1000)' "SELECT twocache_get('t:' || :r::text);" >"$tmp/scale_l1.sql"
printf '%s\n' '\set r random(1, 1000)' "SELECT 1;" >"$tmp/scale_select1.sql"
declare -A scale_runs=()
log "6. L1 hit throughput with ${SCALE_CLIENTS[*]} clients (${PGB_SCALE_LEN[*]}, $PGB_REPS rounds)"
for r in $(seq "$PGB_REPS"); do
	for c in "${SCALE_CLIENTS[@]}"; do
		for name in l1 select1; do
			scale_runs[$name.$c]+=" $(pgb "$c" "$tmp/scale_$name.sql" "${PGB_SCALE_LEN[@]}")"
		done
	done
done
declare -A scale=()
for key in "${!scale_runs[@]}"; do
	# shellcheck disable=SC2086
	scale[$key]=$(calc "$(median ${scale_runs[$key]})" 0)
done
for c in "${SCALE_CLIENTS[@]}"; do
	log "   $c clients: twocache ${scale[l1.$c]} tps (runs:$(printf ' %.0f' ${scale_runs[l1.$c]})), SELECT 1 ${scale[select1.$c]}"
done

# ---------------------------------------------------------------------------
# 3. L2 hit against a bare Redis round trip; a miss against the query alone
# ---------------------------------------------------------------------------

log "3. L2 hits ($N_L2 keys in Redis, not in L1) and bare Redis GETs"
scalar a -v n="$N_L2" <<'EOF' >/dev/null
SELECT twocache_get('k') AS v \gset
SELECT count(twocache_set('l2:' || i, :'v')) FROM generate_series(1, :n) AS i;
EOF
percall l2 "twocache_get('l2:' || i)" "$N_L2" "'l2:' || i" "SELECT twocache_flush_local()"
# Every key must have been an L2 hit: count the hits of one more pass.
l2_check=$(scalar a -v n="$N_L2" <<'EOF'
SELECT twocache_flush_local() \gset
SELECT twocache_stats_reset() \gset
SELECT count(twocache_get('l2:' || i)) FROM generate_series(1, :n) AS i \gset
SELECT l2_hits FROM twocache_stats;
EOF
)
[ "$l2_check" = "$N_L2" ] || fail "expected $N_L2 L2 hits, got $l2_check"
scalar a <<<"SELECT twocache_get('k');" >/dev/null

# The bare round trip: a hiredis client (bench/redis_rtt.c) doing sequential
# GETs of one of those keys, and redis-benchmark with one client.
rtt_key="db:postgres:l2:1"
rtt_c=
if [ -n "$cc" ] && "$cc" -O2 -o "$tmp/redis_rtt" "$here/redis_rtt.c" -lhiredis 2>"$tmp/cc.log"; then
	rtt_c_runs=()
	for r in $(seq "$REPS"); do
		rtt_c_runs+=("$("$tmp/redis_rtt" 127.0.0.1 "$redis_port" "$rtt_key" "$N_RTT")")
	done
	rtt_c=$(median "${rtt_c_runs[@]}")
else
	echo "bench: could not build bench/redis_rtt.c; using redis-benchmark only" >&2
	cat "$tmp/cc.log" >&2 || true
fi
rtt_rb_runs=()
for r in $(seq "$REPS"); do
	rps=$("$redis_benchmark" -h 127.0.0.1 -p "$redis_port" -c 1 -n "$N_RTT" -t get -q 2>/dev/null |
		tr '\r' '\n' | sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' | tail -n 1)
	[ -n "$rps" ] || fail "could not read redis-benchmark's GET rate"
	rtt_rb_runs+=("$(calc "1e6 / $rps" 3)")
done
rtt_rb=$(median "${rtt_rb_runs[@]}")
rtt=$rtt_rb
[ -z "$rtt_c" ] || rtt=$(awk -v a="$rtt_c" -v b="$rtt_rb" 'BEGIN { print (a < b ? a : b) }')
log "   L2 hit $pc_l2 µs; bare GET ${rtt_c:-?} µs (hiredis), $rtt_rb µs (redis-benchmark)"

log "3b. misses with a fetch, against the query alone ($N_MISS cheap, $N_MISS_EXP expensive)"
# miss NAME QUERY N: sets direct_NAME, miss_NAME (medians over REPS rounds)
miss()
{
	local name=$1 q=$2 n=$3 r d m ds=() ms=()
	for r in $(seq "$REPS"); do
		read -r d m < <(scalar a -v q="$q" -v n="$n" -v tag="miss:$name:$r:$RANDOM" <<'EOF'
SELECT round(direct::numeric, 2), round(miss::numeric, 2) FROM bench_miss(:'q', :n, :'tag');
EOF
)
		ds+=("$d")
		ms+=("$m")
	done
	printf -v "direct_$name" '%s' "$(median "${ds[@]}")"
	printf -v "miss_$name" '%s' "$(median "${ms[@]}")"
}
miss cheap "$cheap_query" "$N_MISS"
miss exp "$query" "$N_MISS_EXP"
log "   cheap query $direct_cheap µs, miss+fetch $miss_cheap µs; expensive $direct_exp µs, miss+fetch $miss_exp µs"

# ---------------------------------------------------------------------------
# 4. Single flight: concurrent misses of one key whose fetch takes 200 ms
# ---------------------------------------------------------------------------

log "4. single flight: $SF_CLIENTS concurrent misses, fetch ${SF_SLEEP}s, $SF_REPS rounds"
sf_walls=() sf_fetches=() sf_waits=()
for r in $(seq "$SF_REPS"); do
	read -r wall f w got < <(scalar a -v ci="$conninfo_a" -v n="$SF_CLIENTS" \
		-v fq="SELECT pg_sleep($SF_SLEEP)::text || 'v'" <<'EOF'
SELECT round(wall_ms::numeric, 1), fetches, waits, got FROM bench_sf(:'ci', :n, 'sf', :'fq');
EOF
)
	[ "$got" = "$SF_CLIENTS" ] || fail "single flight: $got of $SF_CLIENTS callers got the value"
	sf_walls+=("$wall")
	sf_fetches+=("$f")
	sf_waits+=("$w")
done
sf_wall=$(median "${sf_walls[@]}")
sf_fetch_max=$(printf '%s\n' "${sf_fetches[@]}" | sort -n | tail -n 1)
sf_fetch_min=$(printf '%s\n' "${sf_fetches[@]}" | sort -n | head -n 1)
sf_wait=$(median "${sf_waits[@]}")
log "   fetches per round: ${sf_fetches[*]}; fetch_waits ${sf_waits[*]}; wall ${sf_walls[*]} ms"

# ---------------------------------------------------------------------------
# 7. Hit ratio: ARC (twocache, one partition, c = ARC_C) against LRU
# ---------------------------------------------------------------------------

# Write the traces (fixed seed, Park-Miller generator: the same on every
# platform) as name<TAB>i<TAB>key lines, and print each trace's LRU hits:
#   scan-zipf   Zipf(0.9) requests over 10c keys, each 4c of them followed
#               by a scan of 2c keys never seen again
#   loop        a loop over 1.1c keys, repeated
#   loop-zipf   each request from the loop or (one in two) from the Zipf keys
# shellcheck disable=SC2016
trace_pl='
use strict;
use warnings;
my ($c, $phases, $passes, $mixlen, $file) = @ARGV;
my $seed = 20030331;
sub rnd { $seed = ($seed * 48271) % 2147483647; return $seed; }
my @cdf;
my $total = 0;
for my $i (1 .. 10 * $c) { $total += 1 / $i**0.9; push @cdf, $total; }
@cdf = map { $_ / $total } @cdf;
sub zipf
{
	my $u = rnd() / 2147483647;
	my ($lo, $hi) = (0, $#cdf);
	while ($lo < $hi)
	{
		my $mid = int(($lo + $hi) / 2);
		if ($cdf[$mid] < $u) { $lo = $mid + 1; } else { $hi = $mid; }
	}
	return "z$lo";
}
my %trace = ("scan-zipf" => [], "loop" => [], "loop-zipf" => []);
my $scan = 0;
for (1 .. $phases)
{
	push @{ $trace{"scan-zipf"} }, zipf() for 1 .. 4 * $c;
	push @{ $trace{"scan-zipf"} }, "s" . $scan++ for 1 .. 2 * $c;
}
my $len = int(1.1 * $c);
for (1 .. $passes) { push @{ $trace{loop} }, "l$_" for 1 .. $len; }
my $pos = 0;
for (1 .. $mixlen)
{
	push @{ $trace{"loop-zipf"} }, rnd() % 2 ? "l" . (1 + $pos++ % $len) : zipf();
}
open my $fh, ">", $file or die "$file: $!";
for my $name (sort keys %trace)
{
	my $i = 0;
	print $fh "$name\t", ++$i, "\t$_\n" for @{ $trace{$name} };
	# LRU of capacity c: a doubly linked list through two hashes.
	my (%prev, %next, %in);
	my ($head, $tail, $n, $hits) = (undef, undef, 0, 0);
	for my $k (@{ $trace{$name} })
	{
		if ($in{$k})
		{
			$hits++;
			next if $k eq $head;
			$next{ $prev{$k} } = $next{$k};
			if ($k eq $tail) { $tail = $prev{$k}; } else { $prev{ $next{$k} } = $prev{$k}; }
		}
		else
		{
			if ($n == $c)
			{
				my $old = $tail;
				$tail = $prev{$old};
				if (defined $tail) { $next{$tail} = undef; } else { $head = undef; }
				delete $in{$old}; delete $prev{$old}; delete $next{$old};
				$n--;
			}
			$in{$k} = 1;
			$n++;
		}
		$prev{$k} = undef;
		$next{$k} = $head;
		$prev{$head} = $k if defined $head;
		$head = $k;
		$tail = $k unless defined $tail;
	}
	print "$name ", scalar @{ $trace{$name} }, " $hits\n";
}
close $fh or die "$file: $!";
'
log "7. ARC (twocache, 1 partition, max_entries $ARC_C) against LRU on generated traces"
declare -A trace_len=() lru_hits=() arc_hits=()
trace_names=()
while read -r name n h; do
	trace_names+=("$name")
	trace_len[$name]=$n
	lru_hits[$name]=$h
done < <(perl -e "$trace_pl" "$ARC_C" "$ZIPF_PHASES" "$LOOP_PASSES" "$MIX_LEN" "$tmp/trace.tsv")
chmod 644 "$tmp/trace.tsv"
sql c <<<"\\copy trace FROM '$tmp/trace.tsv'"
for name in "${trace_names[@]}"; do
	read -r h m < <(scalar c -v t="$name" <<<"SELECT * FROM bench_arc(:'t');")
	[ $((h + m)) = "${trace_len[$name]}" ] ||
		fail "trace $name: $((h + m)) requests counted, ${trace_len[$name]} sent"
	arc_hits[$name]=$h
	log "   $name: ARC $h, LRU ${lru_hits[$name]} hits of ${trace_len[$name]}"
done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# PASS/MISS: check VALUE OP LIMIT
check()
{
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
		ok = (op == "<=") ? (v <= l) : (op == ">=") ? (v >= l) : (v == l)
		print ok ? "PASS" : "MISS" }'
}
ratio()
{
	calc "$1 / $2" "${3:-2}"
}
# Whole numbers, comma-separated: runs "A B C"
runs()
{
	# shellcheck disable=SC2086
	printf '%.0f\n' $1 | paste -sd ' '
}
pct()
{
	calc "100 * $1 / $2" 1
}

pg_version=$("$bindir/postgres" --version | sed 's/^postgres (PostgreSQL) //')
redis_version=$("$redis_server" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
memcached_version=$("$memcached" -V | awk '{ print $2 }')
pgmemcache_version=$(scalar a <<<"SELECT extversion FROM pg_extension WHERE extname = 'pgmemcache';")
twocache_version=$(scalar a <<<"SELECT extversion FROM pg_extension WHERE extname = 'twocache';")
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || true)
if [ -n "$commit" ] && [ -n "$(git -C "$root" status --porcelain -- src sql 2>/dev/null)" ]; then
	commit="$commit (src/ or sql/ modified)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")
kernel=$(uname -r)

t_l1=$(check "$pc_l1" "<=" 0.3)
r_select1=$(ratio "${tps[l1]}" "${tps[select1]}")
r_kv=$(ratio "${tps[l1]}" "${tps[kv]}")
r_mc=$(ratio "${tps[l1]}" "${tps[mc]}")
r_query=$(ratio "${tps[l1]}" "${tps[query]}" 0)
t_select1=$(check "$r_select1" ">=" 0.95)
t_kv=$(check "$r_kv" ">=" 1.5)
t_mc=$(check "$r_mc" ">=" 2)
r_l2=$(ratio "$pc_l2" "$rtt")
t_l2=$(check "$r_l2" "<=" 1.3)
t_sf=$( [ "$sf_fetch_min" = 1 ] && [ "$sf_fetch_max" = 1 ] && echo PASS || echo MISS)
t_inv=$(check "$inv_p99" "<=" 2)
if [ "$sf_fetch_min" = "$sf_fetch_max" ]; then
	sf_fetch_text=$sf_fetch_max
else
	sf_fetch_text="$sf_fetch_min to $sf_fetch_max"
fi

note_smoke=
[ -z "$smoke" ] ||
	note_smoke="
> **Smoke run** (\`--smoke\`): tiny sizes and single runs, to check that every section works.
> These figures mean nothing; \`make bench\` gives real ones.
"

report=$tmp/results.md
{
	cat <<EOF
# twocache benchmark

$(date -u '+%Y-%m-%d %H:%M UTC'), \`make bench\` ($mode run; twocache $twocache_version${commit:+, commit $commit}).
$note_smoke
## Machine

| | |
|---|---|
| CPU | $cpu, $(nproc) cores (\`nproc\`) |
| Memory | $mem |
| Load before the run | $load_before (1-minute load average; other work on the machine skews the figures) |
| OS | $os, Linux $kernel |
| PostgreSQL | $pg_version |
| Redis | $redis_version (loopback TCP) |
| memcached | $memcached_version (loopback TCP), pgmemcache $pgmemcache_version |

Servers: PostgreSQL A (twocache two-layer on the Redis, pgmemcache on the memcached,
\`shared_buffers = 256MB\`, \`fsync = off\`, \`jit = off\`, unix socket), B (twocache on the same
Redis), C (twocache local mode, \`twocache.partitions = 1\`, \`twocache.max_entries = $ARC_C\`).
Each figure is the median of $REPS timings (pgbench: of $PGB_REPS runs).

## Targets

| Target | Measured | Result |
|---|---|---|
| L1 hit: at most 0.3 µs per call above the loop floor | $pc_l1 µs | $t_l1 |
| pgbench, L1 hit: at least 0.95 × \`SELECT 1\` | $r_select1 × | $t_select1 |
| pgbench, L1 hit: at least 1.5 × the unlogged-table cache | $r_kv × | $t_kv |
| pgbench, L1 hit: at least 2 × pgmemcache | $r_mc × | $t_mc |
| L2 hit: at most 1.3 × a bare Redis GET round trip | $r_l2 × ($pc_l2 µs vs $rtt µs) | $t_l2 |
| $SF_CLIENTS concurrent misses of one key: exactly one fetch | $sf_fetch_text (each of $SF_REPS rounds) | $t_sf |
| Invalidation between two servers: p99 at most 2 ms | $inv_p99 ms | $t_inv |

![chart](results.png)

## 1. In-SQL cost per call

\`SELECT count(f) FROM generate_series(1, N)\` timed inside the server (\`clock_timestamp()\` around
\`EXECUTE\` in PL/pgSQL), minus the bare loop \`SELECT count(i) FROM generate_series(1, N) AS g(i)\`
(floor: $floor_l1 µs per row at N = $N_L1), divided by N.  The value is the expensive query's
result, $value_len bytes, under key \`'k'\` in every cache.

| Call | N | µs per call above the floor | × twocache L1 hit |
|---|---:|---:|---:|
| \`twocache_get('k')\`, L1 hit | $N_L1 | **$pc_l1** | 1 |
| \`kv_get('k')\`: unlogged table + PL/pgSQL (STABLE) checking expiry | $N_KV | $pc_kv | $(ratio "$pc_kv" "$pc_l1" 0) |
| \`memcache_get('k')\`: pgmemcache + local memcached | $N_MC | $pc_mc | $(ratio "$pc_mc" "$pc_l1" 0) |

## 2. pgbench, one call per transaction

\`pgbench -M prepared -c $PGB_CLIENTS -j $PGB_THREADS ${PGB_LEN[*]} -n -f script\`, median of $PGB_REPS runs (rounds alternate the scripts).

| Transaction | TPS | twocache L1 hit ÷ this | each run |
|---|---:|---:|---|
| \`SELECT 1\` | ${tps[select1]} | $r_select1 | $(runs "${tps_runs[select1]}") |
| \`SELECT twocache_get('k')\` (L1 hit) | **${tps[l1]}** | 1 | $(runs "${tps_runs[l1]}") |
| \`SELECT kv_get('k')\` (unlogged table) | ${tps[kv]} | $r_kv | $(runs "${tps_runs[kv]}") |
| \`SELECT memcache_get('k')\` (pgmemcache) | ${tps[mc]} | $r_mc | $(runs "${tps_runs[mc]}") |
| the expensive query itself ($query_ms ms alone, $ROWS rows) | ${tps[query]} | $r_query | $(runs "${tps_runs[query]}") |

## 3. L2 hits and misses

| What | µs per call | Ratio |
|---|---:|---:|
| L2 hit: \`twocache_get\` of a key in Redis but not in L1 (above the loop floor; N = $N_L2, L1 flushed before each timing) | **$pc_l2** | $r_l2 × bare GET |
| bare Redis GET round trip: hiredis client, sequential GETs (\`bench/redis_rtt.c\`, $N_RTT GETs) | ${rtt_c:-n/a} | |
| bare Redis GET round trip: \`redis-benchmark -c 1 -n $N_RTT -t get\` (1 / rate) | $rtt_rb | |
| cheap query (\`$cheap_query\`) by \`EXECUTE\` | $direct_cheap | 1 |
| miss + fetch of that query: \`twocache_get\` of a new key (Redis GET miss, fetch, Redis SET, L1 fill) | $miss_cheap | $(ratio "$miss_cheap" "$direct_cheap") × (+$(calc "$miss_cheap - $direct_cheap" 1) µs) |
| expensive query by \`EXECUTE\` | $direct_exp | 1 |
| miss + fetch of the expensive query | $miss_exp | $(ratio "$miss_exp" "$direct_exp" 3) × (+$(calc "$miss_exp - $direct_exp" 1) µs) |

The L2 hit is compared with the lower of the two bare round trips. An L2 hit sends \`GET\` and
\`PTTL\` in one round trip and copies the value into L1.

## 4. Single flight

$SF_CLIENTS sessions on A, opened and warmed beforehand, are sent (\`dblink_send_query\`, all within
a few ms) \`twocache_get('sf', 'SELECT pg_sleep($SF_SLEEP)::text || ''v''')\` on a key absent from L1 and
Redis; every one must return \`'v'\`.  Fetches and waiters are A's \`twocache_stats\` counters.

| Rounds | Callers per round | Fetches per round | Waiters (\`fetch_waits\`, median) | Wall time, first send to last result (median) |
|---:|---:|---:|---:|---:|
| $SF_REPS | $SF_CLIENTS | **$sf_fetch_text** | $sf_wait | $sf_wall ms |

## 5. Invalidation delay between two servers

A PL/pgSQL loop on B reads key \`'inv'\` into its L1 (from Redis), has A \`twocache_set\` it (through
\`dblink\`, asynchronously) and spins on \`twocache_local_keys()\` until B's worker has dropped it.
Delay = B's \`clock_timestamp()\` when gone − A's just before its \`twocache_set\` (same machine clock).
Run first, on quiet servers, after $INVAL_WARMUP unrecorded rounds.  The spinning session takes a
whole core of two while it watches, so the tail is partly the observer's.

| Rounds | p50 | p99 | p99.9 | max | rounds over 1 ms |
|---:|---:|---:|---:|---:|---:|
| $inv_n | $inv_p50 ms | **$inv_p99 ms** | $inv_p999 ms | $inv_max ms | $inv_over1 |

## 6. L1 hit throughput by clients

\`pgbench -M prepared -c N -j min(N,$PGB_THREADS) ${PGB_SCALE_LEN[*]}\`; each transaction \`\\set r random(1, 1000)\` then
\`SELECT twocache_get('t:' || :r::text)\` (1000 resident keys, spread over the partitions), beside
the same with \`SELECT 1\`. Median of $PGB_REPS runs.

| Clients | twocache TPS | \`SELECT 1\` TPS | ratio | twocache, each run |
|---:|---:|---:|---:|---|
EOF
	for c in "${SCALE_CLIENTS[@]}"; do
		echo "| $c | ${scale[l1.$c]} | ${scale[select1.$c]} | $(ratio "${scale[l1.$c]}" "${scale[select1.$c]}") | $(runs "${scale_runs[l1.$c]}") |"
	done
	cat <<EOF

## 7. Hit ratio: ARC against LRU

Traces generated by the script (fixed seed), replayed through \`twocache_get(k, 'SELECT 1')\` on
server C (one partition: one exact ARC of capacity c = $ARC_C) from an empty cache; LRU of the
same capacity simulated in Perl over the same traces.

- **scan-zipf**: Zipf (s = 0.9) requests over $((10 * ARC_C)) keys; after every $((4 * ARC_C)) of them a scan
  of $((2 * ARC_C)) keys never seen again ($ZIPF_PHASES phases).
- **loop**: a loop over $((ARC_C * 11 / 10)) keys (1.1 c), $LOOP_PASSES times.
- **loop-zipf**: each request, at random, the loop's next key or a Zipf key.

| Trace | Requests | ARC hits | ARC hit ratio | LRU hit ratio |
|---|---:|---:|---:|---:|
EOF
	for name in "${trace_names[@]}"; do
		echo "| $name | ${trace_len[$name]} | ${arc_hits[$name]} | $(pct "${arc_hits[$name]}" "${trace_len[$name]}") % | $(pct "${lru_hits[$name]}" "${trace_len[$name]}") % |"
	done
	cat <<EOF

On a pure loop longer than the cache both keep nothing useful: ARC's T1 stays full, so it
makes no ghosts and behaves as LRU does.

## Reproduce

\`\`\`
make bench                  # installs what is missing, builds, installs, runs (about 4 minutes)
bench/bench.sh --smoke      # seconds; what make test runs
bench/bench.sh --out DIR    # results.md and results.png into DIR
\`\`\`

The script starts its own servers (three PostgreSQL servers on unix sockets, redis-server and
memcached on free loopback ports), as the \`postgres\` account when run as root, and stops them
by pid or data directory at exit.
EOF
} >"$report"

# Chart data: label value lines.
{
	echo "\"L1 hit\" $pc_l1"
	echo "\"unlogged table\" $pc_kv"
	echo "\"pgmemcache\" $pc_mc"
	echo "\"L2 hit\" $pc_l2"
	echo "\"Redis GET RTT\" $rtt"
} >"$tmp/percall.dat"
{
	echo "\"SELECT 1\" ${tps[select1]}"
	echo "\"L1 hit\" ${tps[l1]}"
	echo "\"unlogged table\" ${tps[kv]}"
	echo "\"pgmemcache\" ${tps[mc]}"
	echo "\"query, $(calc "$query_ms" 1) ms\" ${tps[query]}"
} >"$tmp/tps.dat"
for c in "${SCALE_CLIENTS[@]}"; do
	echo "$c ${scale[l1.$c]} ${scale[select1.$c]}"
done >"$tmp/scale.dat"
for name in "${trace_names[@]}"; do
	echo "\"$name\" $(pct "${arc_hits[$name]}" "${trace_len[$name]}") $(pct "${lru_hits[$name]}" "${trace_len[$name]}")"
done >"$tmp/hits.dat"

chart=
if [ -n "$gnuplot" ]; then
	term="png size 1400,1000"
	if "$gnuplot" -e 'set terminal' 2>&1 | grep -qw pngcairo; then
		term="pngcairo size 1400,1000 font 'sans,10'"
	fi
	cat >"$tmp/chart.gp" <<EOF
set terminal $term
set termoption noenhanced
set output '$tmp/results.png'
set multiplot layout 2,2 title "twocache benchmark, $(date -u +%Y-%m-%d), $(nproc) cores$([ -z "$smoke" ] || echo ' (SMOKE RUN: figures meaningless)')"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7 border -1
set boxwidth 0.8
set grid ytics
set key top left
set xtics nomirror

set title "twocache vs alternatives: cost per call inside SQL (µs, log scale; lower is better)"
set logscale y
set yrange [0.01:*]
plot '$tmp/percall.dat' using 2:xtic(1) notitle lc rgb '#4477aa', \
	'' using 0:2:(sprintf('%.2f', \$2)) with labels offset 0,0.8 notitle
unset logscale y
set yrange [0:*]

set title "pgbench -M prepared -c $PGB_CLIENTS: transactions per second"
set autoscale y
stats '$tmp/tps.dat' using 2 nooutput
set yrange [0:STATS_max * 1.12]
plot '$tmp/tps.dat' using 2:xtic(1) notitle lc rgb '#228833', \
	'' using 0:2:(sprintf('%.0f', \$2)) with labels offset 0,0.8 notitle

set title "L1 hit throughput by clients (TPS)"
set autoscale y
stats '$tmp/scale.dat' using (\$2 > \$3 ? \$2 : \$3) nooutput
set yrange [0:STATS_max * 1.2]
set xlabel "clients"
plot '$tmp/scale.dat' using 2:xtic(1) title 'twocache_get (L1 hit)' lc rgb '#4477aa', \
	'' using 3 title 'SELECT 1' lc rgb '#bbbbbb'
unset xlabel

set title "Hit ratio (%), capacity $ARC_C: ARC (twocache) vs LRU"
set key top right
set yrange [0:100]
plot '$tmp/hits.dat' using 2:xtic(1) title 'ARC (twocache)' lc rgb '#4477aa', \
	'' using 3 title 'LRU' lc rgb '#ee6677'
unset multiplot
EOF
	if "$gnuplot" "$tmp/chart.gp" 2>"$tmp/gnuplot.log" && [ -s "$tmp/results.png" ]; then
		chart=1
	else
		cat "$tmp/gnuplot.log" >&2
		fail "gnuplot failed"
	fi
else
	echo "bench: gnuplot not installed: no chart ('make bench' installs gnuplot-nox)" >&2
fi

cp "$report" "$outdir/results.md"
[ -z "$chart" ] || cp "$tmp/results.png" "$outdir/results.png"
log "wrote $outdir/results.md${chart:+ and $outdir/results.png}"
echo
[ -z "$smoke" ] || echo "Smoke run: tiny sizes, single runs; these figures mean nothing."
sed -n '/^## Targets/,/^!\[chart\]/p' "$report" | sed '$d'

# The hot-key benchmarks (issue 13), on servers of their own: ours stop first.
stop_all
PG_CONFIG=$PG_CONFIG HOTKEYS_QUICK=$smoke "$here/hotkeys.sh" --out "$outdir"
