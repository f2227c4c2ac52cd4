--
-- ALTER EXTENSION twocache UPDATE to 1.2, from 1.0 and from 1.1: the same
-- functions, labels, comments and PUBLIC privileges as a fresh 1.2 install;
-- roles granted EXECUTE on the old twocache_get get both new forms, PUBLIC
-- does not; the cache survives.  (Runs last: it drops and recreates the
-- extension.)
--
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
-- the shape of the installed extension's functions
CREATE TEMP VIEW twocache_shape AS
SELECT p.oid::regprocedure::text AS fn, pg_get_function_arguments(p.oid) AS args,
	   pg_get_function_result(p.oid) AS result, p.provolatile, p.proparallel,
	   p.proisstrict, p.prosecdef, p.proconfig,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
	   obj_description(p.oid, 'pg_proc') AS comment
FROM pg_depend d
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
WHERE e.extname = 'twocache';
CREATE TEMP TABLE fresh_1_2 AS SELECT * FROM twocache_shape;
-- what differs from the fresh install (EXCEPT: NULLs compare equal)
CREATE TEMP VIEW twocache_shape_diff AS
(SELECT 'now' AS side, * FROM twocache_shape EXCEPT SELECT 'now', * FROM fresh_1_2)
UNION ALL
(SELECT 'fresh', * FROM fresh_1_2 EXCEPT SELECT 'fresh', * FROM twocache_shape);
SELECT count(*) AS functions FROM fresh_1_2;
-- PUBLIC may run the monitoring functions only
SELECT fn FROM fresh_1_2 WHERE public_execute ORDER BY fn;

CREATE ROLE regress_twocache_upgrader;
CREATE ROLE regress_twocache_delegate;

--
-- from 1.0
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT twocache_set('up:a', 'from 1.0');

-- an administrator's grants on 1.0
GRANT EXECUTE ON FUNCTION twocache_set(text, text, interval, text) TO regress_twocache_upgrader;
REVOKE EXECUTE ON FUNCTION twocache_get(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval) TO regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval) TO regress_twocache_delegate
	WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION twocache_mget(text[]) TO regress_twocache_upgrader;

ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';

-- the functions are those of a fresh install, PUBLIC's privileges included
SELECT * FROM twocache_shape_diff;
SELECT has_table_privilege('public', 'twocache_stats', 'SELECT') AS public_stats_view;

-- grants on the old twocache_get carried to both forms (the grant option
-- too); grants on functions that stay, stay; PUBLIC has neither form
SELECT r AS role,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE') AS lookup,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[])', 'EXECUTE') AS fill,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE WITH GRANT OPTION') AS lookup_grant,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[])',
							  'EXECUTE WITH GRANT OPTION') AS fill_grant,
	   has_function_privilege(r, 'twocache_set(text, text, interval, text, text[])', 'EXECUTE') AS may_set,
	   has_function_privilege(r, 'twocache_mget(text[])', 'EXECUTE') AS may_mget,
	   has_function_privilege(r, 'twocache_exists(text)', 'EXECUTE') AS may_exists
FROM unnest(ARRAY['regress_twocache_upgrader', 'regress_twocache_delegate', 'public']) r
ORDER BY r;

-- the cache survived the update; the granted role looks up and fills
SELECT twocache_get('up:a');
SET ROLE regress_twocache_upgrader;
SELECT twocache_get('up:a');
SELECT twocache_get('up:b', 'SELECT ''fetched''', '1 min');
SELECT * FROM twocache_mget(ARRAY['up:a', 'up:b']) ORDER BY key;
SELECT twocache_exists('up:a');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT twocache_set('up:c', 'tagged', NULL, NULL, ARRAY['up']);
SELECT twocache_invalidate_tag('up');
SELECT twocache_get('up:c') IS NULL AS invalidated;

--
-- the flat 1.1 script (what CREATE EXTENSION ... VERSION '1.1' runs) makes
-- what 1.0 and the 1.0 -> 1.1 step make: the same members, functions and
-- privileges
--
CREATE TEMP VIEW twocache_members AS
SELECT pg_describe_object(d.classid, d.objid, 0) AS member,
	   coalesce(p.proacl, c.relacl)::text AS acl
FROM pg_depend d
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
WHERE e.extname = 'twocache' AND d.deptype = 'e';
-- every version has its own install script, so no CREATE EXTENSION runs an
-- upgrade step
SELECT v AS version,
	   (pg_stat_file(format('%s/extension/twocache--%s.sql',
							(SELECT setting FROM pg_config WHERE name = 'SHAREDIR'), v),
					 true)).size IS NOT NULL AS flat_script_installed
FROM (SELECT version AS v FROM pg_available_extension_versions WHERE name = 'twocache') vs
ORDER BY v;
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.0';
ALTER EXTENSION twocache UPDATE TO '1.1';
CREATE TEMP TABLE chain_1_1 AS SELECT * FROM twocache_shape;
CREATE TEMP TABLE chain_1_1_members AS SELECT * FROM twocache_members;
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.1';
SELECT count(*) AS functions, count(*) FILTER (WHERE public_execute) AS public_functions
FROM chain_1_1;
(SELECT 'flat' AS side, * FROM twocache_shape EXCEPT SELECT 'flat', * FROM chain_1_1)
UNION ALL
(SELECT 'chain', * FROM chain_1_1 EXCEPT SELECT 'chain', * FROM twocache_shape);
SELECT count(*) AS members FROM chain_1_1_members;
(SELECT 'flat' AS side, * FROM twocache_members EXCEPT SELECT 'flat', * FROM chain_1_1_members)
UNION ALL
(SELECT 'chain', * FROM chain_1_1_members EXCEPT SELECT 'chain', * FROM twocache_members);

--
-- from 1.1
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT twocache_set('up:a', 'from 1.1', NULL, NULL, ARRAY['up']);

-- grants on 1.1; PUBLIC keeps the EXECUTE it had on twocache_get
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[])
	TO regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[])
	TO regress_twocache_delegate WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION twocache_entries(), twocache_track(regclass)
	TO regress_twocache_delegate;
SELECT has_function_privilege('public', 'twocache_get(text, text, interval, text[])', 'EXECUTE')
	AS public_get_before;

ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';

SELECT * FROM twocache_shape_diff;
SELECT has_table_privilege('public', 'twocache_stats', 'SELECT') AS public_stats_view;

SELECT r AS role,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE') AS lookup,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[])', 'EXECUTE') AS fill,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE WITH GRANT OPTION') AS lookup_grant,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[])',
							  'EXECUTE WITH GRANT OPTION') AS fill_grant,
	   has_function_privilege(r, 'twocache_entries()', 'EXECUTE') AS may_entries,
	   has_function_privilege(r, 'twocache_track(regclass)', 'EXECUTE') AS may_track,
	   has_function_privilege(r, 'twocache_local_keys()', 'EXECUTE') AS may_local_keys
FROM unnest(ARRAY['regress_twocache_upgrader', 'regress_twocache_delegate', 'public']) r
ORDER BY r;

-- the cache survived; the delegate passes its grant on
SET ROLE regress_twocache_delegate;
SELECT twocache_get('up:a');
GRANT EXECUTE ON FUNCTION twocache_get(text) TO regress_twocache_upgrader;
RESET ROLE;
SELECT twocache_invalidate_tag('up');
SELECT twocache_get('up:a') IS NULL AS invalidated;

-- back to a fresh 1.2 for whatever follows
DROP EXTENSION twocache;
CREATE EXTENSION twocache;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT * FROM twocache_shape_diff;
DROP ROLE regress_twocache_upgrader;
DROP ROLE regress_twocache_delegate;
