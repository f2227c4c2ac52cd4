--
-- Limits of version 1.2: twocache.max_ttl caps every lifetime,
-- twocache.max_fetch_depth bounds nested fetches (54001), a trigger takes at
-- most 64 tags, a fill never replaces a value stored after it began, and
-- listing hides other databases' entries and ghosts from roles that are not
-- members of pg_read_all_stats.
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

-- max_ttl: the TTL argument, '0', a fetch-chosen TTL and the placeholder
ALTER SYSTEM SET twocache.max_ttl = '1h';
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.max_ttl', '1h');
\c
SHOW twocache.max_ttl;
SELECT twocache_set('lim:long', 'v', '290000 years');
SELECT twocache_ttl('lim:long') BETWEEN 3590000 AND 3600000 AS capped_argument;
SELECT twocache_set('lim:forever', 'v', '0');
SELECT twocache_ttl('lim:forever') BETWEEN 3590000 AND 3600000 AS capped_no_expiry;
SELECT twocache_local_set('lim:local', 'v', '0');
SELECT twocache_ttl('lim:local') BETWEEN 3590000 AND 3600000 AS capped_local;
SELECT twocache_get('lim:fetched', $$SELECT 'v', interval '100 years'$$);
SELECT twocache_ttl('lim:fetched') BETWEEN 3590000 AND 3600000 AS capped_fetch_ttl;
SET twocache.not_found_ttl = 2147483647;
SELECT twocache_get('lim:absent', 'SELECT NULL::text') IS NULL AS not_found;
SELECT expires_at BETWEEN now() + interval '59 min' AND now() + interval '1 hour 1 min' AS capped_placeholder
FROM twocache_entries() WHERE key = 'lim:absent';
RESET twocache.not_found_ttl;
ALTER SYSTEM RESET twocache.max_ttl;
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.max_ttl', '0');
\c
SELECT twocache_set('lim:forever', 'v', '0');
SELECT twocache_ttl('lim:forever') AS uncapped;

-- max_fetch_depth: eight nested fetches work, a ninth raises 54001 and
-- leaves no flight behind
CREATE FUNCTION nest(n int, stop int) RETURNS text LANGUAGE sql AS $$
	SELECT twocache_get('lim:nest:' || n || ':' || stop,
						CASE WHEN n >= stop THEN 'SELECT ''leaf'''
							 ELSE format('SELECT %s || nest(%s, %s)', n, n + 1, stop) END)
$$;
SHOW twocache.max_fetch_depth;
SELECT nest(1, 8);
\set VERBOSITY terse
SELECT nest(1, 9);
\set VERBOSITY default
SELECT in_flight FROM twocache_stats;
SELECT count(*) AS stored FROM twocache_local_keys() k WHERE k LIKE 'lim:nest:%:9';

-- a trigger takes at most 64 tags
CREATE TABLE lim_t (x int);
DO $$
BEGIN
	EXECUTE format('CREATE TRIGGER lim_many AFTER INSERT ON lim_t FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger(%s)',
				   (SELECT string_agg(quote_literal('tag' || i), ', ') FROM generate_series(1, 65) i));
END
$$;
INSERT INTO lim_t VALUES (1);
DROP TRIGGER lim_many ON lim_t;
DO $$
BEGIN
	EXECUTE format('CREATE TRIGGER lim_max AFTER INSERT ON lim_t FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger(%s)',
				   (SELECT string_agg(quote_literal('tag' || i), ', ') FROM generate_series(1, 64) i));
END
$$;
INSERT INTO lim_t VALUES (2);
DROP TABLE lim_t;

-- listing: ghosts and other databases' entries only for pg_read_all_stats
SELECT count(*) AS filled FROM (SELECT twocache_local_set('lim:g:' || i, 'x') FROM generate_series(1, 3000) i) s;
SELECT count(*) > 0 AS made_ghosts FROM twocache_entries() WHERE list IN ('B1', 'B2');
CREATE DATABASE regress_twocache_lim_other;
\c regress_twocache_lim_other
CREATE EXTENSION twocache;
SELECT twocache_local_set('lim:elsewhere', 'other database');
\c contrib_regression
SELECT twocache_local_set('lim:here', 'this database');
CREATE ROLE regress_twocache_lister;
GRANT EXECUTE ON FUNCTION twocache_entries(), twocache_local_keys() TO regress_twocache_lister;
SET ROLE regress_twocache_lister;
SELECT count(*) FILTER (WHERE list IN ('B1', 'B2')) AS ghosts,
	   count(*) FILTER (WHERE key = 'lim:elsewhere') AS elsewhere,
	   count(*) FILTER (WHERE key = 'lim:here') AS here
FROM twocache_entries();
SELECT count(*) AS elsewhere FROM twocache_local_keys() k WHERE k = 'lim:elsewhere';
RESET ROLE;
GRANT pg_read_all_stats TO regress_twocache_lister;
SET ROLE regress_twocache_lister;
SELECT count(*) FILTER (WHERE list IN ('B1', 'B2')) > 0 AS ghosts,
	   count(*) FILTER (WHERE key = 'lim:elsewhere') AS elsewhere,
	   count(*) FILTER (WHERE key = 'lim:here') AS here
FROM twocache_entries();
SELECT count(*) AS elsewhere FROM twocache_local_keys() k WHERE k = 'lim:elsewhere';
RESET ROLE;
REVOKE EXECUTE ON FUNCTION twocache_entries(), twocache_local_keys() FROM regress_twocache_lister;
DROP ROLE regress_twocache_lister;
DROP DATABASE regress_twocache_lim_other;

-- a fill never replaces a value stored after it began: the fetch of
-- lim:race reads lim:race again, which (its own flight) fills it without a
-- slot and stores 'inner' first; the outer fill returns its value but keeps
-- the stored one
SELECT twocache_local_del('lim:race');
SELECT twocache_get('lim:race', $$SELECT 'outer:' || twocache_get('lim:race', 'SELECT ''inner''')$$);
SELECT twocache_get('lim:race');
SELECT twocache_flush_local() >= 0 AS flushed;
DROP FUNCTION nest(int, int);
DROP FUNCTION wait_for_setting(text, text);
