--
-- Sizes: a value and its tags are stored together in one L1 chunk (each tag
-- as 2 bytes of length and its bytes), so together they count toward
-- twocache.max_value_size and toward what a partition can hold.  A
-- twocache_set that does not fit raises 54000 and leaves the old value; a
-- fetched value (or a not-found placeholder) that does not fit with its
-- tags, its auto_tag tables included, is returned but not kept
-- (too_large).
--
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT twocache_flush_local() >= 0 AS flushed;

-- wait until a new backend sees a setting's value after pg_reload_conf()
CREATE FUNCTION wait_for_setting(name text, value text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	connstr text := format('dbname=%s port=%s host=%s', current_database(),
						   current_setting('port'),
						   coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
									'localhost'));
BEGIN
	FOR i IN 1..3000 LOOP
		IF (SELECT s FROM dblink(connstr, format('SHOW %s', name)) AS t(s text)) = value THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END
$$;

-- a small max_value_size makes the arithmetic exact
ALTER SYSTEM SET twocache.max_value_size = 100;
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.max_value_size', '100B');
\c
SHOW twocache.max_value_size;

-- the value alone: 100 bytes fit, 101 do not
SELECT twocache_set('sz:a', repeat('a', 100));
SELECT twocache_set('sz:a', repeat('a', 101));
SELECT twocache_local_set('sz:a', repeat('a', 101));
SELECT twocache_get('sz:a') = repeat('a', 100) AS old_value_kept;

-- with tags: 97 bytes and the tag 'x' (3 bytes) fit, 98 do not
SELECT twocache_set('sz:t', repeat('t', 97), NULL, NULL, ARRAY['x']);
SELECT value_bytes FROM twocache_entries() WHERE key = 'sz:t';
SELECT twocache_set('sz:t', repeat('u', 98), NULL, NULL, ARRAY['x']);
SELECT twocache_set('sz:t', 'short', NULL, NULL, ARRAY['x', repeat('y', 95)]);
SELECT twocache_set('sz:t', repeat('u', 98), NULL, 'present', ARRAY['x']);
SELECT twocache_get('sz:t') = repeat('t', 97) AS old_value_kept;
SELECT twocache_set('sz:new', repeat('n', 98), NULL, 'absent', ARRAY['x']);
SELECT twocache_exists('sz:new');

-- fetched values: returned, kept only when they fit with their tags
SELECT too_large AS too_large_before FROM twocache_stats \gset
SELECT octet_length(twocache_get('sz:f1', 'SELECT repeat(''f'', 97)', NULL, ARRAY['x'])) AS fits;
SELECT octet_length(twocache_get('sz:f2', 'SELECT repeat(''f'', 98)', NULL, ARRAY['x'])) AS too_large;
SELECT octet_length(twocache_get('sz:f2', 'SELECT repeat(''g'', 98)', NULL, ARRAY['x'])) AS fetched_again;
SELECT k FROM twocache_local_keys() k WHERE k LIKE 'sz:f%' ORDER BY k;
SELECT too_large - :too_large_before AS too_large FROM twocache_stats;

-- a not-found placeholder's tags count too: 98 + 2 bytes fit, 99 + 2 do not
SELECT twocache_get('sz:n1', 'SELECT NULL::text', NULL, ARRAY[repeat('n', 98)]) IS NULL AS not_found;
SELECT twocache_get('sz:n2', 'SELECT NULL::text', NULL, ARRAY[repeat('n', 99)]) IS NULL AS not_found;
SELECT key, negative FROM twocache_entries() WHERE key LIKE 'sz:n%' ORDER BY key;

-- twocache.auto_tag: the table read, 'public.sz_table' (2 + 15 bytes), is a
-- tag of the value too
CREATE TABLE sz_table (n int);
INSERT INTO sz_table VALUES (1);
SET twocache.auto_tag = on;
SELECT octet_length(twocache_get('sz:auto1', 'SELECT repeat(''a'', 83) FROM sz_table')) AS fits;
SELECT octet_length(twocache_get('sz:auto2', 'SELECT repeat(''a'', 84) FROM sz_table')) AS too_large;
RESET twocache.auto_tag;
SELECT k FROM twocache_local_keys() k WHERE k LIKE 'sz:auto%' ORDER BY k;
SELECT too_large - :too_large_before AS too_large FROM twocache_stats;

-- a partition (16MB / 4 here) holds a key and value of about 2MB: with a
-- larger max_value_size, 2,060,000 bytes fit alone but not with 64 tags of
-- 1024 bytes (65,664 bytes encoded)
ALTER SYSTEM SET twocache.max_value_size = '3MB';
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.max_value_size', '3MB');
\c
SHOW twocache.max_value_size;
CREATE TEMP TABLE big_tags AS
	SELECT array_agg(lpad(i::text, 1024, 'g')) AS tags FROM generate_series(1, 64) i;
SELECT twocache_set('sz:big', repeat('b', 2060000)) AS fits_alone;
SELECT twocache_set('sz:big', 'old');
\set VERBOSITY terse
SELECT twocache_set('sz:big', repeat('b', 2060000), NULL, NULL, tags) FROM big_tags;
SELECT twocache_local_set('sz:big', repeat('b', 3000000));
\set VERBOSITY default
SELECT twocache_get('sz:big') AS old_value_kept;
SELECT too_large AS too_large_before FROM twocache_stats \gset
SELECT twocache_del('sz:big');
SELECT octet_length(twocache_get('sz:big', 'SELECT repeat(''b'', 2060000)', NULL, tags)) AS fetched
FROM big_tags;
SELECT twocache_exists('sz:big');
SELECT too_large - :too_large_before AS too_large FROM twocache_stats;

-- clean up
DROP TABLE sz_table;
ALTER SYSTEM RESET twocache.max_value_size;
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.max_value_size', '1MB');
\c
SHOW twocache.max_value_size;
SELECT twocache_flush_local() >= 0 AS flushed;
DROP FUNCTION wait_for_setting(text, text);
