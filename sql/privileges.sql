--
-- privileges (SPEC section 2a): reading, filling, writing and listing are
-- granted explicitly, PUBLIC only monitors; fetch queries run as the
-- calling role
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();

CREATE ROLE regress_twocache_nobody;
CREATE ROLE regress_twocache_reader;
CREATE ROLE regress_twocache_filler;
CREATE ROLE regress_twocache_writer;

-- what PUBLIC (any role without grants) may execute
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_twocache_nobody', p.oid, 'EXECUTE') AS public_execute
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
WHERE e.extname = 'twocache'
ORDER BY p.oid::regprocedure::text;
-- the view twocache_stats is readable by PUBLIC, like pg_stat_statements
SELECT has_table_privilege('regress_twocache_nobody', 'twocache_stats', 'SELECT')
	AS public_select_stats_view;

SELECT twocache_set('priv:a', 'alpha');

-- three roles: read; read and fill; write and list
GRANT EXECUTE ON FUNCTION
	twocache_get(text),
	twocache_mget(text[]),
	twocache_exists(text),
	twocache_ttl(text)
TO regress_twocache_reader, regress_twocache_filler;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[], text[]),
	twocache_mget(text[], text, interval, text[], text[])
TO regress_twocache_filler;
GRANT EXECUTE ON FUNCTION
	twocache_set(text, text, interval, text, text[]),
	twocache_del(text),
	twocache_local_set(text, text, interval),
	twocache_local_del(text),
	twocache_flush_local(),
	twocache_stats_reset(),
	twocache_local_keys(),
	twocache_entries()
TO regress_twocache_writer;

-- a role without grants: monitoring only, everything else 42501
SET ROLE regress_twocache_nobody;
SELECT twocache_get('priv:a');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('priv:b', 'SELECT ''beta''');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_exists('priv:a');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_ttl('priv:a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM twocache_mget(ARRAY['priv:a']);
\echo :LAST_ERROR_SQLSTATE
SELECT key FROM twocache_entries();
\echo :LAST_ERROR_SQLSTATE
SELECT k FROM twocache_local_keys() k;
\echo :LAST_ERROR_SQLSTATE
SELECT l1_hits, fetches FROM twocache_stats();
SELECT l1_hits FROM twocache_stats;
SELECT mode FROM twocache_status();
RESET ROLE;

-- readers look up, never fill
SET ROLE regress_twocache_reader;
SELECT current_user;
SELECT twocache_get('priv:a');
SELECT twocache_get('priv:b', 'SELECT ''beta''');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('priv:b', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('priv:b') IS NULL AS not_filled;
SELECT twocache_exists('priv:a'), twocache_ttl('priv:a');
SELECT * FROM twocache_mget(ARRAY['priv:a', 'priv:b']) ORDER BY key;
-- the batch form fills: not a reader's
SELECT * FROM twocache_mget(ARRAY['priv:c'], 'SELECT k, ''gamma'' FROM unnest($1) k');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('priv:p', 'SELECT $1', params => ARRAY['p']);
\echo :LAST_ERROR_SQLSTATE
SELECT key FROM twocache_entries();
\echo :LAST_ERROR_SQLSTATE
SELECT l1_hits, fetches FROM twocache_stats();
RESET ROLE;

-- fillers fill
SET ROLE regress_twocache_filler;
SELECT twocache_get('priv:b', 'SELECT ''beta''');
SELECT * FROM twocache_mget(ARRAY['priv:a', 'priv:b']) ORDER BY key;
SELECT * FROM twocache_mget(ARRAY['priv:a', 'priv:c'], 'SELECT k, ''gamma'' FROM unnest($1) k')
ORDER BY key;
-- writers: 42501
SELECT twocache_set('priv:a', 'changed');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_del('priv:a');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_local_set('priv:a', 'changed');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_local_del('priv:a');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_flush_local();
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_stats_reset();
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_invalidate_tag('priv');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- nothing changed
SELECT twocache_get('priv:a');
SELECT l1_hits, fetches FROM twocache_stats();

-- fetch queries run as the calling role
SELECT twocache_get('priv:whoami', 'SELECT current_user') = current_user AS as_caller;
SET ROLE regress_twocache_filler;
SELECT twocache_get('priv:whoami-filler', 'SELECT current_user');
RESET ROLE;
CREATE TABLE priv_secret (v text);
INSERT INTO priv_secret VALUES ('secret');
REVOKE ALL ON priv_secret FROM PUBLIC;
SET ROLE regress_twocache_filler;
SELECT twocache_get('priv:secret', 'SELECT v FROM priv_secret');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_exists('priv:secret');
RESET ROLE;
SELECT fetch_errors FROM twocache_stats();
-- a role with SELECT may fetch it
GRANT SELECT ON priv_secret TO regress_twocache_filler;
SET ROLE regress_twocache_filler;
SELECT twocache_get('priv:secret', 'SELECT v FROM priv_secret');
RESET ROLE;
REVOKE SELECT ON priv_secret FROM regress_twocache_filler;
-- the cache is shared by the roles that may read it: once cached, the value
-- is returned to any role granted the lookup, whatever the fetch query would
-- say
SET ROLE regress_twocache_filler;
SELECT twocache_get('priv:secret', 'SELECT v FROM priv_secret');
RESET ROLE;
SET ROLE regress_twocache_reader;
SELECT twocache_get('priv:secret');
RESET ROLE;

-- the writer role may write, flush and list
SET ROLE regress_twocache_writer;
SELECT twocache_set('priv:a', 'written');
-- writing does not grant reading
SELECT twocache_get('priv:a');
\echo :LAST_ERROR_SQLSTATE
SELECT key, list FROM twocache_entries() WHERE key IN ('priv:a', 'priv:b') ORDER BY key;
SELECT k FROM twocache_local_keys() k WHERE k IN ('priv:a', 'priv:b') ORDER BY k;
SELECT twocache_del('priv:a');
SELECT twocache_local_set('priv:c', 'local');
SELECT twocache_local_del('priv:c');
SELECT twocache_stats_reset();
SELECT twocache_flush_local() >= 0 AS flushed;
RESET ROLE;
-- still not the reader
SET ROLE regress_twocache_reader;
SELECT twocache_set('priv:a', 'changed');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- membership in the writer role is enough
GRANT regress_twocache_writer TO regress_twocache_reader;
SET ROLE regress_twocache_reader;
SELECT twocache_set('priv:a', 'by member');
RESET ROLE;
REVOKE regress_twocache_writer FROM regress_twocache_reader;
SELECT twocache_get('priv:a');

-- clean up
DROP TABLE priv_secret;
DROP OWNED BY regress_twocache_reader;
DROP OWNED BY regress_twocache_filler;
DROP OWNED BY regress_twocache_writer;
DROP ROLE regress_twocache_nobody;
DROP ROLE regress_twocache_reader;
DROP ROLE regress_twocache_filler;
DROP ROLE regress_twocache_writer;
-- PUBLIC still may not read, fill or write
SELECT has_function_privilege('public', 'twocache_get(text)', 'EXECUTE') AS public_may_read,
	   has_function_privilege('public', 'twocache_get(text, text, interval, text[], text[])', 'EXECUTE')
		AS public_may_fill,
	   has_function_privilege('public', 'twocache_set(text, text, interval, text, text[])', 'EXECUTE')
		AS public_may_set;
SELECT twocache_flush_local() > 0 AS flushed;
