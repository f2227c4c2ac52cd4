--
-- ALTER EXTENSION twocache UPDATE from 1.0 to 1.1: the same functions as a
-- fresh 1.1 install, tags work, and privileges granted on the 1.0
-- functions carry over.  (Runs last: it drops and recreates the extension.)
--
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
CREATE TEMP TABLE fresh_1_1 AS
SELECT p.oid::regprocedure::text AS fn, pg_get_function_arguments(p.oid) AS args,
	   pg_get_function_result(p.oid) AS result, p.provolatile, p.proparallel,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
FROM pg_depend d
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
WHERE e.extname = 'twocache';

DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT twocache_set('up:a', 'from 1.0');

-- an administrator's grants on 1.0
CREATE ROLE regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_set(text, text, interval, text) TO regress_twocache_upgrader;
REVOKE EXECUTE ON FUNCTION twocache_get(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval) TO regress_twocache_upgrader;

ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';

-- the functions are those of a fresh install, but for the grants
SELECT fn, args, result, provolatile, proparallel
FROM (SELECT p.oid::regprocedure::text AS fn, pg_get_function_arguments(p.oid) AS args,
			 pg_get_function_result(p.oid) AS result, p.provolatile, p.proparallel
	  FROM pg_depend d
	  JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
	  JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	  WHERE e.extname = 'twocache') now
FULL JOIN (SELECT fn, args, result, provolatile, proparallel FROM fresh_1_1) fresh
	USING (fn, args, result, provolatile, proparallel)
WHERE now IS NULL OR fresh IS NULL;

-- the grants carried over; PUBLIC still may not set or invalidate
SELECT has_function_privilege('regress_twocache_upgrader',
		'twocache_set(text, text, interval, text, text[])', 'EXECUTE') AS upgrader_set,
	   has_function_privilege('regress_twocache_upgrader',
		'twocache_get(text, text, interval, text[])', 'EXECUTE') AS upgrader_get,
	   has_function_privilege('public',
		'twocache_get(text, text, interval, text[])', 'EXECUTE') AS public_get,
	   has_function_privilege('public',
		'twocache_set(text, text, interval, text, text[])', 'EXECUTE') AS public_set,
	   has_function_privilege('public', 'twocache_invalidate_tag(text)', 'EXECUTE') AS public_invalidate;

-- the cache survived the update, calls with 1.0 argument lists still
-- work, and tags work
SELECT twocache_get('up:a');
SELECT twocache_get('up:b', 'SELECT ''fetched''', '1 min');
SELECT twocache_set('up:c', 'tagged', NULL, NULL, ARRAY['up']);
SELECT twocache_invalidate_tag('up');
SELECT twocache_get('up:c') IS NULL AS invalidated;

-- back to a fresh 1.1 for whatever follows
DROP EXTENSION twocache;
CREATE EXTENSION twocache;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
DROP ROLE regress_twocache_upgrader;
