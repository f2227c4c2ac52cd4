--
-- negative: not-found placeholders
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();
SHOW twocache.not_found_ttl;

-- a fetch that returns no row: NULL, and a placeholder is stored
SELECT twocache_get('neg:none', 'SELECT 1 WHERE false') IS NULL AS is_null;
SELECT l1_hits, l1_misses, negative_hits, fetches FROM twocache_stats;
-- the next get is a known-absent hit: the fetch query is not run (it would
-- fail) and negative_hits counts it, not l1_hits
SELECT twocache_get('neg:none', 'SELECT 1/0') IS NULL AS is_null;
SELECT twocache_get('neg:none') IS NULL AS is_null;
SELECT l1_hits, l1_misses, negative_hits, fetches FROM twocache_stats;
-- a placeholder is not a value
SELECT twocache_exists('neg:none');
SELECT twocache_ttl('neg:none');
SELECT count(*) FROM twocache_local_keys() k WHERE k = 'neg:none';
SELECT count(*) FROM twocache_mget(ARRAY['neg:none']);
SELECT l1_hits, l1_misses, negative_hits, fetches FROM twocache_stats;
-- entries() shows it, typed as negative, with no value bytes, expiring after
-- not_found_ttl
SELECT key, list, pos, value_bytes, negative,
       expires_at - now() BETWEEN '50 s' AND '60 s' AS expires_in_1min
FROM twocache_entries() WHERE key = 'neg:none';

-- a NULL value is not-found too, with one or two columns; the placeholder
-- uses not_found_ttl, not the fetcher's TTL
SELECT twocache_get('neg:null', 'SELECT NULL::text') IS NULL AS is_null;
SELECT twocache_get('neg:null2', 'SELECT NULL::int, interval ''1 hour''') IS NULL AS is_null;
SELECT twocache_get('neg:none2',
	'SELECT 1, interval ''1 hour'' WHERE false') IS NULL AS is_null;
SELECT key, value_bytes, negative,
       expires_at - now() BETWEEN '50 s' AND '60 s' AS expires_in_1min
FROM twocache_entries() WHERE key IN ('neg:null', 'neg:null2', 'neg:none2')
ORDER BY key;
-- an empty string is a value, not a placeholder
SELECT twocache_get('neg:empty', 'SELECT ''''') = '' AS empty_string;
SELECT twocache_exists('neg:empty');
SELECT key, value_bytes, negative FROM twocache_entries()
WHERE key = 'neg:empty';

-- set replaces a placeholder; only_if treats it as absent
SELECT twocache_set('neg:none', 'now here', NULL, 'present');
SELECT twocache_exists('neg:none');
SELECT twocache_set('neg:none', 'now here', NULL, 'absent');
SELECT twocache_get('neg:none', 'SELECT 1/0');
SELECT twocache_exists('neg:none'), twocache_ttl('neg:none');
SELECT key, value_bytes, negative FROM twocache_entries()
WHERE key = 'neg:none';
SELECT twocache_local_set('neg:null', 'local value');
SELECT twocache_get('neg:null');

-- del and local_del drop a placeholder: the next get fetches again
SELECT twocache_del('neg:null2');
SELECT twocache_get('neg:null2', 'SELECT ''found''');
SELECT twocache_local_del('neg:none2');
SELECT twocache_get('neg:none2', 'SELECT ''found too''');

-- twocache.not_found_ttl = 0 disables negative caching
SELECT twocache_stats_reset();
SET twocache.not_found_ttl = 0;
SHOW twocache.not_found_ttl;
SELECT twocache_get('neg:off', 'SELECT 1 WHERE false') IS NULL AS is_null;
SELECT count(*) FROM twocache_entries() WHERE key = 'neg:off';
SELECT twocache_get('neg:off', 'SELECT NULL') IS NULL AS is_null;
SELECT count(*) FROM twocache_entries() WHERE key = 'neg:off';
SELECT l1_hits, l1_misses, negative_hits, fetches FROM twocache_stats;
-- a real value is still cached
SELECT twocache_get('neg:off', 'SELECT ''there''');
SELECT twocache_get('neg:off', 'SELECT 1/0');
RESET twocache.not_found_ttl;

-- a short not_found_ttl: the placeholder expires and the fetch runs again
SELECT twocache_stats_reset();
SET twocache.not_found_ttl = '1s';
SELECT twocache_get('neg:short', 'SELECT 1 WHERE false') IS NULL AS is_null;
SELECT twocache_get('neg:short', 'SELECT 1/0') IS NULL AS is_null;
SELECT l1_hits, l1_misses, negative_hits, fetches, expirations FROM twocache_stats;
SELECT pg_sleep(1.1);
SELECT twocache_get('neg:short', 'SELECT ''arrived''');
SELECT l1_hits, l1_misses, negative_hits, fetches, expirations FROM twocache_stats;
-- default_ttl does not apply to placeholders
SET twocache.default_ttl = '1h';
SELECT twocache_get('neg:short2', 'SELECT NULL') IS NULL AS is_null;
SELECT expires_at - now() <= '1 s' AS not_found_ttl_used
FROM twocache_entries() WHERE key = 'neg:short2';
RESET twocache.default_ttl;
RESET twocache.not_found_ttl;

-- flush_local drops placeholders too
SELECT twocache_get('neg:flushed', 'SELECT NULL') IS NULL AS is_null;
SELECT twocache_flush_local() > 0 AS flushed;
SELECT count(*) FROM twocache_entries();
