#!/usr/bin/env bash
# twocache demo: start a throwaway PostgreSQL server with twocache preloaded
# (local mode, no Redis), fill a table of orders, and compare a reporting
# query run directly with the same query read through twocache_get().
#
# Usage: bench/demo.sh          (PG_CONFIG selects the server; default pg_config)
#
# The extension must already be installed (make demo does that).  initdb and
# postgres refuse to run as root: when called as root, the server and psql run
# as the unprivileged account $TWOCACHE_DEMO_USER (default postgres).  The
# server and its temporary directory are removed on exit, error or Ctrl-C.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-pg_config}
ROWS=${TWOCACHE_DEMO_ROWS:-1500000}
CUSTOMERS=${TWOCACHE_DEMO_CUSTOMERS:-20000}
HITS=1000
DIRECT_RUNS=5
PORT=54329

if ! bindir=$("$PG_CONFIG" --bindir 2>/dev/null); then
	echo "demo: cannot run \"$PG_CONFIG --bindir\" (set PG_CONFIG)" >&2
	exit 1
fi
for prog in initdb pg_ctl psql; do
	if [ ! -x "$bindir/$prog" ]; then
		echo "demo: $bindir/$prog not found (PG_CONFIG=$PG_CONFIG)" >&2
		exit 1
	fi
done

# Who runs the server: ourselves, or an unprivileged account when we are root.
as=()
dbuser=$(id -un)
tmpbase=${TMPDIR:-/tmp}
if [ "$(id -u)" = 0 ]; then
	user=${TWOCACHE_DEMO_USER:-postgres}
	if ! id "$user" >/dev/null 2>&1; then
		echo "demo: running as root needs an unprivileged account \"$user\" (set TWOCACHE_DEMO_USER)" >&2
		exit 1
	fi
	as=(runuser -u "$user" --)
	dbuser=$user
	tmpbase=/tmp
fi

tmp=
started=

# Stop the server (by its data directory, never by name) and remove tmp.
cleanup()
{
	local rc=$?

	trap - EXIT INT TERM
	[ -n "$tmp" ] || exit $rc
	if [ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $rc -ne 143 ] && [ -s "$log" ]; then
		echo "demo: failed; last lines of the server log:" >&2
		tail -n 15 "$log" >&2 || true
	fi
	if [ -n "$started" ]; then
		${as[@]+"${as[@]}"} "$bindir/pg_ctl" stop -D "$data" -m fast -w >/dev/null 2>&1 || true
	fi
	cd /
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d "$tmpbase/twocache-demo.XXXXXX")
data=$tmp/data
log=$tmp/server.log

if [ ${#as[@]} -gt 0 ]; then
	chown "$user" "$tmp"
fi
# The server account may not be able to read the caller's directory.
cd "$tmp"

# psql against the demo server; extra arguments are passed on.
run_psql()
{
	${as[@]+"${as[@]}"} "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p "$PORT" -U "$dbuser" -d postgres "$@"
}

# One value from one query read on stdin.
scalar()
{
	run_psql -A -t "$@"
}

echo "twocache demo: starting a throwaway PostgreSQL server in $tmp"
${as[@]+"${as[@]}"} "$bindir/initdb" -D "$data" -U "$dbuser" -A trust -E UTF8 --no-locale >/dev/null
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
${as[@]+"${as[@]}"} "$bindir/pg_ctl" start -D "$data" -l "$log" -w -t 60 >/dev/null

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
echo "Stopping the demo server and removing $tmp."
