#!/usr/bin/env bash
# twocache demo, in two parts.
#
# 1. Local mode: start a throwaway PostgreSQL server with twocache preloaded
#    (no Redis), fill a table of orders, and compare a reporting query run
#    directly with the same query read through twocache_get().
# 2. Two-layer mode, when redis-server is installed: start a private Redis on
#    a free loopback port and a second throwaway server, point both servers at
#    that Redis, and show a value written on one being read, replaced and
#    deleted as seen from the other.
#
# Usage: bench/demo.sh          (PG_CONFIG selects the server; default pg_config)
#
# The extension must already be installed (make demo does that).  initdb and
# postgres refuse to run as root: when called as root, the servers, Redis and
# psql run as the unprivileged account $TWOCACHE_DEMO_USER (default postgres).
# The servers listen on unix sockets in the demo's temporary directory only,
# Redis on 127.0.0.1 only.  Everything started is stopped by its data
# directory or pid (never by name), and the temporary directory removed, on
# exit, error or Ctrl-C.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-pg_config}
ROWS=${TWOCACHE_DEMO_ROWS:-1500000}
CUSTOMERS=${TWOCACHE_DEMO_CUSTOMERS:-20000}
HITS=1000
DIRECT_RUNS=5
PORT=54329		# server A (the unix socket is in the demo's own directory)
PORT_B=54330		# server B, in a directory of its own too

me=demo
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

find_pg_bindir initdb pg_ctl psql
# Who runs the server: ourselves, or $TWOCACHE_DEMO_USER when we are root.
choose_account TWOCACHE_DEMO_USER

started=
started_b=
redis_pid=
waiter_pid=

# For cleanup (lib.sh), after an error: the logs.
on_failure()
{
	show_log "server A" "$tmp/server.log"
	show_log "server B" "$tmp/b/server.log"
	show_log "Redis" "$tmp/redis/redis.log"
}

# For cleanup (lib.sh): stop the waiter, the servers (by their data
# directories) and Redis (by its pid).
stop_all()
{
	if [ -n "$waiter_pid" ]; then
		kill "$waiter_pid" 2>/dev/null || true
		wait "$waiter_pid" 2>/dev/null || true
	fi
	if [ -n "$started_b" ]; then
		pg_stop "$data_b"
	fi
	if [ -n "$started" ]; then
		pg_stop "$data"
	fi
	stop_pid "$redis_pid" redis-server
}

make_tmp demo
data=$tmp/data
log=$tmp/server.log
data_b=$tmp/b/data
log_b=$tmp/b/server.log

# psql against the demo server; extra arguments are passed on.
run_psql()
{
	psql_at "$tmp" "$PORT" "$@"
}

# One value from one query read on stdin.
scalar()
{
	run_psql -A -t "$@"
}

echo "twocache demo: starting a throwaway PostgreSQL server in $tmp"
pg_init "$data"
cat >>"$data/postgresql.conf" <<EOF

# twocache demo
shared_preload_libraries = 'twocache'
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $PORT
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
started=1
pg_start "$data" "$log"

echo "Filling table orders with $ROWS rows for $CUSTOMERS customers ..."
run_psql <<EOF
CREATE EXTENSION twocache;

CREATE TABLE orders (
	order_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer_id	int NOT NULL,
	amount		numeric(10,2) NOT NULL
);
SELECT setseed(0.42) \gset
INSERT INTO orders (customer_id, amount)
	SELECT 1 + floor(random() * $CUSTOMERS)::int,
		   round((random() * 500)::numeric, 2)
	FROM generate_series(1, $ROWS);
VACUUM ANALYZE orders;

-- Milliseconds per run of sql, averaged over reps runs in a loop, measured
-- inside the server so that client round trips do not count.
CREATE FUNCTION demo_time(sql text, reps int DEFAULT 1)
RETURNS double precision
LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	FOR i IN 1..reps LOOP
		EXECUTE sql;
	END LOOP;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000 / reps;
END
\$\$;
EOF

# The report: the five best customers, as one text value.
query="SELECT string_agg(format('customer %s: %s', customer_id, total), ', ' ORDER BY total DESC)
FROM (SELECT customer_id, sum(amount) AS total
      FROM orders GROUP BY customer_id
      ORDER BY total DESC LIMIT 5) AS top"
key="report:top-customers"
ttl="5 min"

# The same call through twocache, as SQL text (psql quotes the variables).
get_expr=$(scalar -v q="$query" -v k="$key" -v t="$ttl" <<'EOF'
SELECT format('twocache_get(%L, %L, %L)', :'k', :'q', :'t');
EOF
)
get_call="SELECT $get_expr"
hits_call="SELECT count($get_expr) FROM generate_series(1, $HITS)"

echo "Timing (inside the server, with clock_timestamp()) ..."
# All in one session, so that no timing pays for a new backend's warm-up:
# one direct run to fill the buffer cache, the median of a few direct runs,
# the first twocache_get (a miss: it runs the query and stores the result),
# a second one timed the same way (a hit), then many hits in one SELECT.
timings=$(scalar -F ' ' -v q="$query" -v n="$DIRECT_RUNS" \
	-v get="$get_call" -v hits="$hits_call" -v nhits="$HITS" <<'EOF'
SELECT demo_time(:'q') AS warm \gset
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS direct
FROM (SELECT demo_time(:'q') AS ms FROM generate_series(1, :n)) AS runs \gset
SELECT demo_time(:'get') AS miss \gset
SELECT demo_time(:'get') AS hit \gset
SELECT demo_time(:'hits') / :nhits AS hit_avg \gset
SELECT round(:direct::numeric, 2),
	   round(:miss::numeric, 2),
	   round(:hit::numeric * 1000, 1),
	   round(:hit_avg::numeric * 1000, 2),
	   round(:direct / greatest(:hit, 1e-6)),
	   round(:direct / greatest(:hit_avg, 1e-6));
EOF
)
read -r direct_ms miss_ms hit_us hit_avg_us speedup_single speedup_avg <<<"$timings"

# Check that the cached value (one more hit) is what the query returns.
check_out=$(scalar -v q="$query" -v k="$key" <<'EOF'
SELECT twocache_get(:'k') AS cached \gset
SELECT (:q) IS NOT DISTINCT FROM :'cached';
\echo :cached
EOF
)
mapfile -t check <<<"$check_out"
if [ "${check[0]:-}" != t ]; then
	echo "demo: the cached value differs from the query's result" >&2
	exit 1
fi
value=${check[1]}

cat <<EOF

The query (a report over $ROWS orders):
$(sed 's/^/    /' <<<"$query")

Its result, now cached under key '$key' for $ttl:
    $value

Timings, measured inside the server (no client round trips):

  what                                               time           speed-up
  -------------------------------------------------  -------------  --------
EOF
printf '  %-49s  %10s ms  %8s\n' "query run directly (median of $DIRECT_RUNS runs)" "$direct_ms" "1x"
printf '  %-49s  %10s ms  %8s\n' "twocache_get, first call (miss: runs the query)" "$miss_ms" "-"
printf '  %-49s  %10s µs  %8s\n' "twocache_get, second call (hit)" "$hit_us" "${speedup_single}x"
printf '  %-49s  %10s µs  %8s\n' "twocache_get, average of $HITS hits in one SELECT" "$hit_avg_us" "${speedup_avg}x"

cat <<EOF

A miss costs about one run of the query (twocache runs it and stores the
result); every later call within the TTL is served from shared memory, by any
backend of this server.  The single hit, like the direct runs, includes parsing
and planning its SELECT; the average over $HITS calls in one SELECT is the cost
of twocache_get itself.

Cache counters (twocache_stats view): so far 1 miss (one fetch) and
1 + $HITS + 1 hits (second call, the $HITS, the check of the value).
EOF
run_psql -P footer=off <<'EOF'
SELECT l1_hits, l1_misses, negative_hits, fetches, entries, bytes_used, bytes_total, t1, t2
FROM twocache_stats;
EOF
echo "Mode (twocache_status(); 'local' = shared-memory cache only, no Redis):"
run_psql -P footer=off <<'EOF'
SELECT mode, instance_id, redis_connected FROM twocache_status();
EOF

# ---------------------------------------------------------------------------
# Part 2: two-layer mode, two servers sharing one Redis.
# ---------------------------------------------------------------------------

redis_server=$(command -v redis-server 2>/dev/null || true)
redis_cli=$(command -v redis-cli 2>/dev/null || true)
if [ -z "$redis_server" ] || [ -z "$redis_cli" ]; then
	echo "Two-layer mode: skipped (redis-server/redis-cli not installed; 'make deps' installs them)."
	echo "Stopping the demo server and removing $tmp."
	exit 0
fi

# psql against server B; extra arguments are passed on.
run_psql_b()
{
	psql_at "$tmp/b" "$PORT_B" "$@"
}

scalar_b()
{
	run_psql_b -A -t "$@"
}

# redis-cli against our Redis.
rcli()
{
	"$redis_cli" -h 127.0.0.1 -p "$redis_port" "$@"
}

# Wait (at most $1 seconds) until both workers report a Redis subscription.
wait_subscribed()
{
	local i a b

	for i in $(seq $(($1 * 10))); do
		a=$(scalar <<<"SELECT subscribed FROM twocache_status();")
		b=$(scalar_b <<<"SELECT subscribed FROM twocache_status();")
		if [ "$a" = t ] && [ "$b" = t ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "demo: twocache_status() after $1 s:" >&2
	run_psql -P footer=off <<<"SELECT 'A' AS server, * FROM twocache_status();" >&2 || true
	run_psql_b -P footer=off <<<"SELECT 'B' AS server, * FROM twocache_status();" >&2 || true
	fail "the twocache workers did not subscribe to Redis within $1 s"
}

# One counter of a server's twocache_stats: counter a|b column.
counter()
{
	if [ "$1" = a ]; then
		scalar <<<"SELECT $2 FROM twocache_stats;"
	else
		scalar_b <<<"SELECT $2 FROM twocache_stats;"
	fi
}

# Check one value: expect what got description.
expect()
{
	if [ "$2" != "$1" ]; then
		fail "expected $3 to be '$1', got '$2'"
	fi
}

# Change the key on server A with the SELECT in $2 (a twocache_set or
# twocache_del call, without a semicolon) while server B waits, in one
# session, for its L1 copy of key $1 to be dropped by the invalidation
# message.  Sets change_ms to the time in ms from just before A's call to B
# seeing its copy gone, both read with clock_timestamp() inside the servers.
change_on_a_and_time_b()
{
	local key=$1 sql=$2 i t0 t1 resident

	resident=$(scalar_b -v k="$key" <<<"SELECT :'k' IN (SELECT * FROM twocache_local_keys());")
	expect t "$resident" "'$key' resident in B's L1 before the change"
	scalar_b -v k="$key" >"$tmp/b/waiter.out" 2>&1 \
		<<<"SET application_name = 'twocache-demo-waiter'; SELECT demo_wait_dropped(:'k', 5000);" &
	waiter_pid=$!
	for i in $(seq 50); do
		if [ "$(scalar_b <<<"SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'twocache-demo-waiter' AND state = 'active'
			  AND query LIKE 'SELECT demo_wait_dropped%';")" = 1 ]; then
			break
		fi
		sleep 0.1
	done
	# One session on A: the timestamp, then the call (its result in a variable).
	t0=$(scalar <<EOF
SELECT clock_timestamp() AS t0 \gset
$sql \gset
\echo :t0
EOF
)
	if ! wait "$waiter_pid"; then
		waiter_pid=
		cat "$tmp/b/waiter.out" >&2
		fail "server B's wait for the invalidation failed"
	fi
	waiter_pid=
	t1=$(cat "$tmp/b/waiter.out")
	if [ -z "$t1" ]; then
		fail "server B still had its L1 copy of '$key' 5 s after server A's change"
	fi
	change_ms=$(scalar -v t0="$t0" -v t1="$t1" <<<"SELECT round((extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz) * 1000)::numeric, 1);")
}

echo "=== Two-layer mode: two servers sharing one Redis ==="
echo
start_redis
redis_url="redis://127.0.0.1:$redis_port"

mkdir "$tmp/b"
[ ${#as[@]} -eq 0 ] || chown "$user" "$tmp/b"
pg_init "$data_b"
cat >>"$data_b/postgresql.conf" <<EOF

# twocache demo, server B
shared_preload_libraries = 'twocache'
twocache.redis_url = '$redis_url'
listen_addresses = ''
unix_socket_directories = '$tmp/b'
port = $PORT_B
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
started_b=1
pg_start "$data_b" "$log_b"
run_psql_b <<'EOF'
CREATE EXTENSION twocache;

-- Wait (at most timeout_ms) until key k is no longer resident in this
-- server's L1; return the time it was seen gone, or NULL on timeout.
CREATE FUNCTION demo_wait_dropped(k text, timeout_ms int)
RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout_ms * interval '1 ms';
BEGIN
	LOOP
		IF k NOT IN (SELECT * FROM twocache_local_keys()) THEN
			RETURN clock_timestamp();
		END IF;
		IF clock_timestamp() > deadline THEN
			RETURN NULL;
		END IF;
		PERFORM pg_sleep(0.001);
	END LOOP;
END
$$;
EOF

echo "Started a private redis-server on 127.0.0.1:$redis_port (no persistence), and a"
echo "second throwaway PostgreSQL server, B, in $tmp/b.  The first"
echo "server is called A from now on.  Both get twocache.redis_url = '$redis_url'"
echo "(B in its postgresql.conf; A by ALTER SYSTEM and pg_reload_conf())."

# Server A: the URL is a sighup setting; its worker connects on reload.
run_psql -v url="$redis_url" <<'EOF'
ALTER SYSTEM SET twocache.redis_url = :'url';
SELECT pg_reload_conf() \gset
EOF
wait_subscribed 15
# Start both servers' counters from zero for what follows.
scalar <<<"SELECT twocache_stats_reset();" >/dev/null
scalar_b <<<"SELECT twocache_stats_reset();" >/dev/null

cat <<'EOF'
Both background workers are subscribed to Redis (twocache_status().subscribed).
On subscribing, a worker flushes its server's L1, since it may have missed
messages: server A's cached report is gone.  Counters are reset on both.
EOF
echo "Redis keys are 'db:<database>:<key>'; values are stored as 'v' + the value."

echo
echo "--- 1. A caches a value; B reads it from Redis without running its fetch query"
a_set=$(scalar <<<"SELECT twocache_set('greeting', 'hello from A');")
expect t "$a_set" "A's twocache_set"
echo "  A: SELECT twocache_set('greeting', 'hello from A');                  -> $a_set"
echo "  Redis now holds: db:postgres:greeting = '$(rcli GET db:postgres:greeting)'"
b_get=$(scalar_b <<<"SELECT twocache_get('greeting', 'SELECT ''fetched on B''');")
expect "hello from A" "$b_get" "B's first read"
echo "  B: SELECT twocache_get('greeting', 'SELECT ''fetched on B''');        -> $b_get"
b_fetches=$(counter b fetches)
b_l2=$(counter b l2_hits)
expect 0 "$b_fetches" "B's fetches"
expect 1 "$b_l2" "B's l2_hits"
echo "  B's counters: fetches = $b_fetches (its fetch query did not run), l2_hits = $b_l2."
echo "  B also keeps the value in its own L1 now, so its next reads are shared-memory hits."

echo
echo "--- 2. A writes a new value; B's copy is invalidated and its next read changes"
change_on_a_and_time_b greeting "SELECT twocache_set('greeting', 'hello again from A')"
echo "  A: SELECT twocache_set('greeting', 'hello again from A');"
echo "  B's L1 copy was dropped by the invalidation message $change_ms ms after A's call"
echo "  (measured inside the servers: A's clock_timestamp() before its call, B's when"
echo "  a loop polling twocache_local_keys() saw the key gone)."
b_get=$(scalar_b <<<"SELECT twocache_get('greeting', 'SELECT ''fetched on B''');")
expect "hello again from A" "$b_get" "B's read after A's twocache_set"
echo "  B: SELECT twocache_get('greeting', 'SELECT ''fetched on B''');        -> $b_get"

echo
echo "--- 3. A deletes the key; B's next read finds nothing and runs its fetch query"
change_on_a_and_time_b greeting "SELECT twocache_del('greeting')"
echo "  A: SELECT twocache_del('greeting');   (removes it from A's L1 and from Redis)"
echo "  B's L1 copy was dropped $change_ms ms after A's call."
before=$(counter b fetches)
b_get=$(scalar_b <<<"SELECT twocache_get('greeting', 'SELECT ''fetched on B''');")
expect "fetched on B" "$b_get" "B's read after A's twocache_del"
after=$(counter b fetches)
expect $((before + 1)) "$after" "B's fetches after its read"
echo "  B: SELECT twocache_get('greeting', 'SELECT ''fetched on B''');        -> $b_get"
echo "  B's fetches went from $before to $after.  B stored what it fetched in Redis too,"
a_get=$(scalar <<<"SELECT twocache_get('greeting');")
expect "fetched on B" "$a_get" "A's read of B's fetched value"
echo "  so A now reads it from there:"
echo "  A: SELECT twocache_get('greeting');                                   -> $a_get"

echo
echo "--- 4. Both servers' counters and status"
printf '\n  %-24s  %8s  %8s\n' "twocache_stats" "A" "B"
printf '  %-24s  %8s  %8s\n' "------------------------" "--------" "--------"
for c in l1_hits l1_misses l2_hits l2_misses fetches invalidations_sent invalidations_received redis_errors; do
	printf '  %-24s  %8s  %8s\n' "$c" "$(counter a "$c")" "$(counter b "$c")"
done
expect 3 "$(counter a invalidations_sent)" "A's invalidations_sent"
expect 3 "$(counter b invalidations_received)" "B's invalidations_received"
cat <<'EOF'

  A sent one invalidation message per write (two twocache_set, one twocache_del);
  B's worker received all three and dropped its copy when it had one.  B's two
  reads of A's values were Redis hits (l2_hits); its read after the delete missed
  both layers and ran its fetch.  A's last read was a Redis hit.

EOF
status_cols="mode, instance_id, redis_connected, subscribed, local_flushes"
echo "  twocache_status() ('two-layer' = L1 plus Redis; local_flushes counts the"
echo "  L1 flushes made on (re)subscribing):"
{
	run_psql -P footer=off <<<"SELECT 'A' AS server, $status_cols FROM twocache_status();"
	run_psql_b -P footer=off -P tuples_only=on <<<"SELECT 'B' AS server, $status_cols FROM twocache_status();"
} | sed -e '/^ *$/d' -e 's/^/  /'
for s in "$(scalar <<<"SELECT mode, subscribed FROM twocache_status();")" \
	"$(scalar_b <<<"SELECT mode, subscribed FROM twocache_status();")"; do
	expect "two-layer|t" "$s" "twocache_status() mode|subscribed"
done

echo
echo "--- 5. A table update on A invalidates a cached report on B, with no twocache_del"
tables_sql="CREATE TABLE shops (id int PRIMARY KEY, region int);
CREATE TABLE sales (shop_id int, amount int);
INSERT INTO shops VALUES (1, 7), (2, 7), (3, 8);
INSERT INTO sales VALUES (1, 100), (2, 50), (3, 70);
SELECT twocache_track('shops'), twocache_track('sales');"
report="SELECT twocache_get('report:region:7',
	'SELECT sum(amount) FROM sales JOIN shops ON shops.id = sales.shop_id WHERE region = 7')"
scalar <<<"$tables_sql" >/dev/null
scalar_b <<<"$tables_sql" >/dev/null
echo "  On both servers (same database name, same data), two tables tracked once:"
echo "    SELECT twocache_track('shops'), twocache_track('sales');"
echo "  and SET twocache.auto_tag = on in the sessions: a fetched value is tagged with"
echo "  the tables its plan read."
a_get=$(scalar <<<"SET twocache.auto_tag = on; $report;")
expect 150 "$a_get" "A's report"
echo "  A: twocache_get('report:region:7', 'SELECT sum(amount) FROM sales JOIN shops ...') -> $a_get"
echo "  Redis: the report, and one set per table: $(rcli --raw KEYS 'tag:*' | sort | tr '\n' ' ')"
b_get=$(scalar_b <<<"SET twocache.auto_tag = on; $report;")
expect 150 "$b_get" "B's report"
echo "  B: the same call -> $b_get (a Redis hit, kept in B's L1)"
change_on_a_and_time_b 'report:region:7' "UPDATE sales SET amount = amount + 1 WHERE shop_id = 1 RETURNING 1 AS updated"
expect 0 "$(rcli EXISTS db:postgres:report:region:7)" "the report in Redis after A's update"
echo "  A: UPDATE sales SET amount = amount + 1 WHERE shop_id = 1;   (autocommit)"
echo "  At A's commit its trigger invalidated the tag 'public.sales': B's L1 copy of the"
echo "  report was dropped $change_ms ms after A's UPDATE began, and Redis's copy is gone."
scalar_b <<<"UPDATE sales SET amount = amount + 1 WHERE shop_id = 1;" >/dev/null
b_get=$(scalar_b <<<"SET twocache.auto_tag = on; $report;")
expect 151 "$b_get" "B's report after the update"
echo "  B (after the same update of its own copy): the same call -> $b_get (recomputed)"
echo
echo "Stopping both servers and Redis, and removing $tmp."
