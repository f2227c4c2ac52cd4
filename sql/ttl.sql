--
-- ttl: TTL arguments, default_ttl, fetcher TTLs and expiry
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();

-- ttl of an absent key is -2, of a key without expiry -1
SELECT twocache_ttl('ttl:absent');
SELECT twocache_set('ttl:forever', 'v');
SELECT twocache_ttl('ttl:forever');

-- NULL means twocache.default_ttl, which is 0 (no expiry) by default
SHOW twocache.default_ttl;
SELECT twocache_set('ttl:null', 'v', NULL);
SELECT twocache_ttl('ttl:null');
SET twocache.default_ttl = '10min';
SELECT twocache_set('ttl:default', 'v');
SELECT twocache_ttl('ttl:default') BETWEEN 590000 AND 600000 AS about_10min;
SELECT twocache_local_set('ttl:default-local', 'v');
SELECT twocache_ttl('ttl:default-local') BETWEEN 590000 AND 600000 AS about_10min;
SELECT twocache_get('ttl:default-get', 'SELECT 1');
SELECT twocache_ttl('ttl:default-get') BETWEEN 590000 AND 600000 AS about_10min;
-- '0' means no expiry, whatever default_ttl says
SELECT twocache_set('ttl:zero', 'v', '0');
SELECT twocache_ttl('ttl:zero');
SELECT twocache_get('ttl:zero-get', 'SELECT 1', '0 seconds');
SELECT twocache_ttl('ttl:zero-get');
RESET twocache.default_ttl;

-- an explicit TTL
SELECT twocache_set('ttl:1h', 'v', '1 hour');
SELECT twocache_ttl('ttl:1h') BETWEEN 3590000 AND 3600000 AS about_1h;
-- entries() shows the same expiry as a timestamp
SELECT expires_at - now() BETWEEN '59 min' AND '60 min' AS about_1h
FROM twocache_entries() WHERE key = 'ttl:1h';
-- a set without TTL replaces the TTL, as Redis SET does
SELECT twocache_set('ttl:1h', 'w');
SELECT twocache_ttl('ttl:1h');

-- units: a day is 24 hours, a month 30 days, a year 12 months
SELECT twocache_set('ttl:day', 'v', '1 day');
SELECT twocache_set('ttl:25h', 'v', '1 day 1 hour');
SELECT twocache_set('ttl:mon', 'v', '1 mon');
SELECT twocache_set('ttl:year', 'v', '1 year');
SELECT twocache_set('ttl:mixed', 'v', '-1 day +25 hours');
SELECT k, twocache_ttl(k) BETWEEN ms - 10000 AND ms AS ok
FROM (VALUES ('ttl:day', 86400000::bigint),
             ('ttl:25h', 90000000),
             ('ttl:mon', 2592000000),
             ('ttl:year', 31104000000),
             ('ttl:mixed', 3600000)) AS t(k, ms)
ORDER BY k;
-- very long TTLs are kept as they are
SELECT twocache_set('ttl:long', 'v', '250000 years');
SELECT twocache_ttl('ttl:long') BETWEEN 7776000000000000 - 10000
                                    AND 7776000000000000 AS ok;
-- sub-millisecond TTLs round up to 1 ms: the entry expires, it does not live
-- forever
SELECT twocache_set('ttl:sub-ms', 'v', '0.4 ms');
SELECT twocache_set('ttl:1us', 'v', '1 microsecond');
SELECT key, expires_at IS NOT NULL AS expires FROM twocache_entries()
WHERE key IN ('ttl:sub-ms', 'ttl:1us') ORDER BY key;
SELECT pg_sleep(0.01);
SELECT twocache_ttl('ttl:sub-ms'), twocache_ttl('ttl:1us');
SELECT twocache_exists('ttl:sub-ms'), twocache_exists('ttl:1us');

-- a fetch query's own TTL column overrides the ttl argument
SELECT twocache_get('ttl:fetch', $$SELECT 'v', interval '2 hours'$$, '1 min');
SELECT twocache_ttl('ttl:fetch') BETWEEN 7190000 AND 7200000 AS about_2h;
SELECT twocache_get('ttl:fetch-0', $$SELECT 'v', interval '0'$$, '1 min');
SELECT twocache_ttl('ttl:fetch-0');
-- a NULL TTL column falls back to the ttl argument, then to default_ttl
SELECT twocache_get('ttl:fetch-null', $$SELECT 'v', NULL::interval$$, '1 min');
SELECT twocache_ttl('ttl:fetch-null') BETWEEN 50000 AND 60000 AS about_1min;
SET twocache.default_ttl = '3min';
SELECT twocache_get('ttl:fetch-null2', $$SELECT 'v', NULL::interval$$);
SELECT twocache_ttl('ttl:fetch-null2') BETWEEN 170000 AND 180000 AS about_3min;
RESET twocache.default_ttl;
-- the TTL column may be computed from the data
SELECT twocache_get('ttl:fetch-computed',
	$$SELECT x::text, x * interval '1 minute' FROM (VALUES (5)) v(x)$$);
SELECT twocache_ttl('ttl:fetch-computed') BETWEEN 290000 AND 300000 AS about_5min;

-- expiry: entries with a 2 s TTL are live until it passes ...
SELECT twocache_stats_reset();
SELECT twocache_get('ttl:short', 'SELECT ''first''', '2 s');
SELECT twocache_get('ttl:short', 'SELECT ''second''', '2 s');
SELECT twocache_ttl('ttl:short') BETWEEN 1 AND 2000 AS counting_down;
SELECT twocache_get('ttl:fetch-ttl', $$SELECT 'a', interval '2 s'$$);
SELECT twocache_get('ttl:fetch-ttl', $$SELECT 'b', interval '1 hour'$$);
SELECT twocache_set('ttl:set-short', 'v', '2 s');
SELECT twocache_set('ttl:mget-short', 'v', '2 s');
SELECT twocache_set('ttl:nx', 'old', '2 s');
SELECT twocache_set('ttl:del', 'v', '2 s');
SELECT twocache_set('ttl:hour', 'v', '1 hour');
SELECT l1_hits, l1_misses, fetches, expirations FROM twocache_stats;
SELECT pg_sleep(2.1);
-- ... and gone after it: ttl says absent, exists is false, local_keys and
-- mget do not list them
SELECT twocache_ttl('ttl:short');
SELECT twocache_exists('ttl:short');
SELECT k FROM twocache_local_keys() k
WHERE k IN ('ttl:short', 'ttl:fetch-ttl', 'ttl:set-short', 'ttl:mget-short',
            'ttl:nx', 'ttl:del', 'ttl:hour')
ORDER BY k;
SELECT * FROM twocache_mget(ARRAY['ttl:mget-short', 'ttl:hour']);
SELECT l1_hits, l1_misses, fetches, expirations FROM twocache_stats;
-- get runs the fetch query again
SELECT twocache_get('ttl:short', 'SELECT ''third''', '2 s');
SELECT l1_hits, l1_misses, fetches, expirations FROM twocache_stats;
SELECT twocache_get('ttl:short');
-- the fetcher's own TTL expires too
SELECT twocache_get('ttl:fetch-ttl', $$SELECT 'c', interval '1 hour'$$);
-- a get without fetch query returns NULL
SELECT twocache_get('ttl:set-short') IS NULL AS expired;
SELECT l1_hits, l1_misses, fetches, expirations FROM twocache_stats;
-- only_if treats an expired key as absent
SELECT twocache_set('ttl:nx', 'new', NULL, 'present');
SELECT twocache_set('ttl:nx', 'new', NULL, 'absent');
SELECT twocache_get('ttl:nx');
-- del of an expired key returns false
SELECT twocache_del('ttl:del');
-- an expired entry leaves the directory, without a ghost, when it is looked
-- up; until then entries() lists it with its past expiry
SELECT key, list, coalesce(expires_at < now(), false) AS expired
FROM twocache_entries()
WHERE key IN ('ttl:short', 'ttl:fetch-ttl', 'ttl:set-short', 'ttl:mget-short',
              'ttl:nx', 'ttl:del', 'ttl:hour', 'ttl:sub-ms', 'ttl:1us')
ORDER BY key;
SELECT twocache_flush_local() > 0 AS flushed;
