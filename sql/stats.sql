--
-- stats: the counters and gauges of twocache_stats for a scripted sequence
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();

-- after a flush and a reset everything is zero, except bytes_total
SELECT l1_hits, l1_misses, l2_hits, l2_misses, negative_hits, fetches,
       fetch_errors, fetch_waits, stale_fills_rejected, uncacheable, too_large,
       evictions, expirations, invalidations_sent, invalidations_received,
       redis_errors, entries, bytes_used, arc_p, t1, t2, b1, b2, in_flight
FROM twocache_stats;
-- twocache.memory is split over the partitions, less alignment
SELECT bytes_total BETWEEN 16 * 1024 * 1024 - 1024 AND 16 * 1024 * 1024 AS bytes_total_ok
FROM twocache_stats;
-- the view and the function agree
SELECT count(*) FROM (SELECT * FROM twocache_stats
                      EXCEPT SELECT * FROM twocache_stats()) d;

-- hits, misses, fetches, negative hits, fetch errors
SELECT twocache_get('st:a') IS NULL AS miss;
SELECT twocache_get('st:a', 'SELECT ''a''');
SELECT twocache_get('st:a', 'SELECT ''a''');
SELECT twocache_get('st:a');
SELECT twocache_get('st:none', 'SELECT 1 WHERE false') IS NULL AS not_found;
SELECT twocache_get('st:none', 'SELECT 1 WHERE false') IS NULL AS not_found;
SELECT twocache_get('st:err', 'SELECT 1/0');
SELECT twocache_set('st:b', 'b');
SELECT twocache_get('st:b');
SELECT count(*) FROM twocache_mget(ARRAY['st:a', 'st:b', 'st:none', 'st:c']);
-- exists, ttl, entries, local_keys, del and flush count nothing
SELECT twocache_exists('st:a'), twocache_ttl('st:b'), twocache_exists('st:c');
SELECT count(*) FROM twocache_entries();
SELECT count(*) FROM twocache_local_keys();
SELECT twocache_del('st:b');
SELECT l1_hits, l1_misses, negative_hits, fetches, fetch_errors, fetch_waits,
       stale_fills_rejected, uncacheable, too_large, evictions, expirations,
       in_flight
FROM twocache_stats;
-- gauges: st:a in T2, st:none (placeholder) in T2
SELECT entries, t1, t2, b1, b2, arc_p, bytes_used > 0 AS bytes_used,
       bytes_used <= bytes_total AS fits
FROM twocache_stats;

-- too_large: a fetched value over max_value_size is returned, not cached
SELECT octet_length(twocache_get('st:big', 'SELECT repeat(''x'', 1024 * 1024 + 1)'));
SELECT twocache_exists('st:big');
SELECT octet_length(twocache_get('st:big', 'SELECT repeat(''y'', 1024 * 1024 + 1)'));
SELECT fetches, too_large FROM twocache_stats;

-- stale_fills_rejected: a fetch whose key is invalidated while it runs does
-- not store its result (here the fetch query drops its own key)
SELECT twocache_get('st:stale', $$SELECT 'v' FROM (SELECT twocache_del('st:stale')) d$$);
SELECT twocache_exists('st:stale');
SELECT fetches, stale_fills_rejected FROM twocache_stats;

-- uncacheable: a fetch in a transaction that wrote
CREATE TEMP TABLE stats_t (a int);
BEGIN;
INSERT INTO stats_t VALUES (1);
SELECT twocache_get('st:uncacheable', 'SELECT count(*) FROM stats_t');
COMMIT;
SELECT twocache_exists('st:uncacheable');
SELECT fetches, uncacheable FROM twocache_stats;

-- expirations
SELECT twocache_set('st:short', 'v', '10 ms');
SELECT pg_sleep(0.05);
SELECT twocache_get('st:short') IS NULL AS expired;
SELECT expirations FROM twocache_stats;

-- stats_reset zeroes the counters, not the gauges, and moves stats_reset
SELECT twocache_set('st:c', 'c');
CREATE TEMP TABLE stats_before AS SELECT * FROM twocache_stats;
SELECT twocache_stats_reset();
SELECT l1_hits, l1_misses, l2_hits, l2_misses, negative_hits, fetches,
       fetch_errors, fetch_waits, stale_fills_rejected, uncacheable, too_large,
       evictions, expirations, invalidations_sent, invalidations_received,
       redis_errors
FROM twocache_stats;
SELECT s.entries = b.entries AS entries, s.bytes_used = b.bytes_used AS bytes_used,
       s.bytes_total = b.bytes_total AS bytes_total, s.arc_p = b.arc_p AS arc_p,
       s.t1 = b.t1 AS t1, s.t2 = b.t2 AS t2, s.b1 = b.b1 AS b1, s.b2 = b.b2 AS b2,
       s.stats_reset > b.stats_reset AS reset_moved,
       s.stats_reset <= clock_timestamp() AS reset_in_past
FROM twocache_stats s, stats_before b;
SELECT twocache_get('st:c') FROM twocache_stats;

-- evictions: fill more than the capacity (1000 entries over 4 partitions)
SHOW twocache.max_entries;
SELECT twocache_flush_local() > 0 AS flushed;
SELECT twocache_stats_reset();
-- 4000 new keys, each read once after it is written: every partition ends
-- with c/4 keys in T2 and as many ghosts in B2, and every key beyond c was
-- evicted once
SELECT count(*) FILTER (WHERE twocache_set('st:fill:' || i, 'value ' || i)
                        AND twocache_get('st:fill:' || i) = 'value ' || i) AS stored
FROM generate_series(1, 4000) i;
SELECT l1_hits, l1_misses, evictions, entries, t1, t2, b1, b2, arc_p,
       bytes_used > 0 AS bytes_used, bytes_used <= bytes_total AS fits
FROM twocache_stats;
SELECT count(*) FROM twocache_local_keys();
-- entries() agrees: ghosts have no value_bytes and no expiry
SELECT list, count(*), count(value_bytes) AS with_bytes,
       count(expires_at) AS with_expiry, bool_or(negative) AS negative,
       min(pos) AS min_pos
FROM twocache_entries() GROUP BY list ORDER BY list;
-- the most recent keys are resident, the oldest are gone altogether
SELECT count(*) FROM twocache_local_keys() k
WHERE k IN (SELECT 'st:fill:' || i FROM generate_series(3901, 4000) i);
SELECT count(*) FROM twocache_entries()
WHERE key IN (SELECT 'st:fill:' || i FROM generate_series(1, 100) i);
-- a ghost is a miss: a get with a fetch brings the key back into T2
SELECT min(key) AS ghost FROM twocache_entries() WHERE list = 'B2' \gset
SELECT twocache_get(:'ghost') IS NULL AS miss;
SELECT twocache_get(:'ghost', 'SELECT ''back''');
SELECT list, value_bytes FROM twocache_entries() WHERE key = :'ghost';
SELECT l1_misses, fetches, evictions, entries, t1 + t2 AS resident,
       b1 + b2 AS ghosts FROM twocache_stats;
-- flush drops residents and ghosts, and leaves the counters alone
SELECT twocache_flush_local();
SELECT evictions, entries, bytes_used, t1, t2, b1, b2, arc_p, in_flight
FROM twocache_stats;
SELECT count(*) FROM twocache_entries();

-- bytes_used counts keys and values with their chunk headers
SELECT twocache_set('st:small', 'x');
SELECT bytes_used BETWEEN 2 AND 256 AS small FROM twocache_stats;
SELECT twocache_set('st:small', repeat('x', 100000));
SELECT bytes_used BETWEEN 100000 AND 100000 + 256 AS about_100k FROM twocache_stats;
SELECT twocache_del('st:small');
SELECT bytes_used FROM twocache_stats;
