--
-- ALTER EXTENSION twocache UPDATE to the default version (1.4), from 1.0,
-- 1.1, 1.2 and 1.3: the same functions, labels, comments and PUBLIC
-- privileges as a fresh install;
-- roles granted EXECUTE on the old twocache_get get both new forms, PUBLIC
-- does not (1.2); the privileges set on twocache_status carry over to the
-- new one as they were, PUBLIC's and grant options included (1.3);
-- twocache_status() answers at every version with that version's columns;
-- grants on the read-through twocache_get reach its 1.4 form and the batch
-- form (1.4); the cache survives.  (Runs last: it drops and recreates the extension.)
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
CREATE TEMP TABLE fresh_install AS SELECT * FROM twocache_shape;
-- the initial privileges a fresh install records (what pg_dump leaves out)
CREATE TEMP VIEW twocache_init_privs AS
SELECT p.oid::regprocedure::text AS fn, i.initprivs::text AS initprivs
FROM pg_depend d
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
LEFT JOIN pg_init_privs i ON i.objoid = p.oid AND i.classoid = 'pg_proc'::regclass
WHERE e.extname = 'twocache';
CREATE TEMP TABLE fresh_init_privs AS SELECT * FROM twocache_init_privs;
-- what differs from the fresh install (EXCEPT: NULLs compare equal)
CREATE TEMP VIEW twocache_shape_diff AS
(SELECT 'now' AS side, * FROM twocache_shape EXCEPT SELECT 'now', * FROM fresh_install)
UNION ALL
(SELECT 'fresh', * FROM fresh_install EXCEPT SELECT 'fresh', * FROM twocache_shape);
SELECT count(*) AS functions FROM fresh_install;
-- PUBLIC may run the monitoring functions only
SELECT fn FROM fresh_install WHERE public_execute ORDER BY fn;

-- who may run twocache_status() besides its owner, granted by whom; and
-- whether initial privileges (pg_init_privs, what pg_dump leaves out) are
-- recorded for it.  (By name: these views must not depend on it.)
CREATE TEMP VIEW twocache_status_privs AS
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee,
	   a.privilege_type, a.is_grantable,
	   CASE WHEN a.grantor = p.proowner THEN 'owner' ELSE a.grantor::regrole::text END AS grantor
FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.proname = 'twocache_status' AND a.grantee <> p.proowner
ORDER BY 1;
CREATE TEMP VIEW twocache_status_init_privs AS
SELECT count(i.*) AS status_init_privs
FROM pg_proc p
LEFT JOIN pg_init_privs i ON i.objoid = p.oid AND i.classoid = 'pg_proc'::regclass
WHERE p.proname = 'twocache_status';
-- the columns of the row twocache_status() returns
CREATE FUNCTION pg_temp.status_columns() RETURNS text LANGUAGE sql AS
$$SELECT string_agg(k, ', ') FROM json_object_keys((SELECT row_to_json(s) FROM twocache_status() s)) k$$;

-- a fresh 1.3: the Redis node and its role last, NULL in local mode
SELECT pg_temp.status_columns();
SELECT mode, redis_connected, redis_node, redis_role FROM twocache_status();
SELECT * FROM twocache_status_privs;
SELECT * FROM twocache_status_init_privs;

CREATE ROLE regress_twocache_upgrader;
CREATE ROLE regress_twocache_delegate;
CREATE ROLE regress_twocache_monitor;
CREATE ROLE regress_twocache_outsider;

--
-- from 1.0
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT twocache_set('up:a', 'from 1.0');
-- the library serves 1.0's twocache_status(), with its ten columns
SELECT pg_temp.status_columns();

-- an administrator's grants on 1.0
GRANT EXECUTE ON FUNCTION twocache_set(text, text, interval, text) TO regress_twocache_upgrader;
REVOKE EXECUTE ON FUNCTION twocache_get(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval) TO regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval) TO regress_twocache_delegate
	WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION twocache_mget(text[]) TO regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_twocache_upgrader;

ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';

-- the functions are those of a fresh install, PUBLIC's privileges included
SELECT * FROM twocache_shape_diff;
SELECT has_table_privilege('public', 'twocache_stats', 'SELECT') AS public_stats_view;

-- twocache_status: 1.3's columns, PUBLIC's EXECUTE and the grant kept, no
-- initial privileges recorded
SELECT pg_temp.status_columns();
SELECT * FROM twocache_status_privs;
SELECT * FROM twocache_status_init_privs;

-- grants on the old twocache_get carried to both forms (the grant option
-- too); grants on functions that stay, stay; PUBLIC has neither form
SELECT r AS role,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE') AS lookup,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[], text[])', 'EXECUTE') AS fill,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE WITH GRANT OPTION') AS lookup_grant,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[], text[])',
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
-- what a chain of steps made, and how what the flat script makes differs
CREATE TEMP TABLE chain_shape AS SELECT * FROM twocache_shape WITH NO DATA;
CREATE TEMP TABLE chain_members AS SELECT * FROM twocache_members WITH NO DATA;
CREATE TEMP VIEW chain_shape_diff AS
(SELECT 'flat' AS side, * FROM twocache_shape EXCEPT SELECT 'flat', * FROM chain_shape)
UNION ALL
(SELECT 'chain', * FROM chain_shape EXCEPT SELECT 'chain', * FROM twocache_shape);
CREATE TEMP VIEW chain_members_diff AS
(SELECT 'flat' AS side, * FROM twocache_members EXCEPT SELECT 'flat', * FROM chain_members)
UNION ALL
(SELECT 'chain', * FROM chain_members EXCEPT SELECT 'chain', * FROM twocache_members);
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
INSERT INTO chain_shape SELECT * FROM twocache_shape;
INSERT INTO chain_members SELECT * FROM twocache_members;
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.1';
SELECT count(*) AS functions, count(*) FILTER (WHERE public_execute) AS public_functions
FROM chain_shape;
SELECT * FROM chain_shape_diff;
SELECT count(*) AS members FROM chain_members;
SELECT * FROM chain_members_diff;

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
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_twocache_delegate WITH GRANT OPTION;
SELECT has_function_privilege('public', 'twocache_get(text, text, interval, text[])', 'EXECUTE')
	AS public_get_before;
SELECT pg_temp.status_columns();

ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';

SELECT * FROM twocache_shape_diff;
SELECT has_table_privilege('public', 'twocache_stats', 'SELECT') AS public_stats_view;
SELECT * FROM twocache_status_privs;

SELECT r AS role,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE') AS lookup,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[], text[])', 'EXECUTE') AS fill,
	   has_function_privilege(r, 'twocache_get(text)', 'EXECUTE WITH GRANT OPTION') AS lookup_grant,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[], text[])',
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

--
-- from 1.2: the 1.2 -> 1.3 step makes what the flat 1.3 script makes
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.2';
ALTER EXTENSION twocache UPDATE TO '1.3';
TRUNCATE chain_shape, chain_members;
INSERT INTO chain_shape SELECT * FROM twocache_shape;
INSERT INTO chain_members SELECT * FROM twocache_members;
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.3';
SELECT count(*) AS functions, count(*) FILTER (WHERE public_execute) AS public_functions
FROM chain_shape;
SELECT * FROM chain_shape_diff;
SELECT count(*) AS members FROM chain_members;
SELECT * FROM chain_members_diff;

--
-- from 1.2, with twocache_status kept from PUBLIC
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT twocache_set('up:a', 'from 1.2', NULL, NULL, ARRAY['up']);

-- the new library serves 1.2's twocache_status(): its ten columns
SELECT pg_temp.status_columns();
SELECT mode, redis_connected, subscribed, deferred_invalidations FROM twocache_status();

-- PUBLIC revoked; a role granted, a delegate granted WITH GRANT OPTION, and
-- a role the delegate granted
REVOKE EXECUTE ON FUNCTION twocache_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_twocache_delegate WITH GRANT OPTION;
SET ROLE regress_twocache_delegate;
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_twocache_monitor;
RESET ROLE;
SELECT * FROM twocache_status_privs;
SELECT * FROM twocache_status_init_privs;

ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';

-- a fresh install but for PUBLIC's EXECUTE on twocache_status, still revoked
SELECT side, fn, public_execute FROM twocache_shape_diff ORDER BY side;
SELECT count(*) AS other_differences
FROM ((SELECT fn, args, result, provolatile, proparallel, proisstrict, prosecdef, proconfig, comment
	   FROM twocache_shape
	   EXCEPT
	   SELECT fn, args, result, provolatile, proparallel, proisstrict, prosecdef, proconfig, comment
	   FROM fresh_install)
	  UNION ALL
	  (SELECT fn, args, result, provolatile, proparallel, proisstrict, prosecdef, proconfig, comment
	   FROM fresh_install
	   EXCEPT
	   SELECT fn, args, result, provolatile, proparallel, proisstrict, prosecdef, proconfig, comment
	   FROM twocache_shape)) d;

-- the same grantees and grant options (the delegate's grant is now the
-- owner's), and still no initial privileges, so pg_dump dumps them all
SELECT * FROM twocache_status_privs;
SELECT * FROM twocache_status_init_privs;

-- the granted roles run it, with 1.3's columns; others cannot; the
-- delegate still passes it on
SET ROLE regress_twocache_monitor;
SELECT pg_temp.status_columns();
SELECT mode, redis_node, redis_role FROM twocache_status();
SET ROLE regress_twocache_upgrader;
SELECT mode FROM twocache_status();
SET ROLE regress_twocache_outsider;
SELECT mode FROM twocache_status();
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_twocache_delegate;
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_twocache_outsider;
SET ROLE regress_twocache_outsider;
SELECT mode FROM twocache_status();
RESET ROLE;

-- the cache survived
SELECT twocache_get('up:a');
SELECT twocache_invalidate_tag('up');
SELECT twocache_get('up:a') IS NULL AS invalidated;

--
-- from 1.3: the 1.3 -> 1.4 step makes what the flat 1.4 script makes
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.3';
ALTER EXTENSION twocache UPDATE TO '1.4';
TRUNCATE chain_shape, chain_members;
INSERT INTO chain_shape SELECT * FROM twocache_shape;
INSERT INTO chain_members SELECT * FROM twocache_members;
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.4';
SELECT count(*) AS functions, count(*) FILTER (WHERE public_execute) AS public_functions
FROM chain_shape;
SELECT * FROM chain_shape_diff;
SELECT count(*) AS members FROM chain_members;
SELECT * FROM chain_members_diff;

--
-- from 1.3, with grants on the read-through twocache_get
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.3';
SELECT twocache_set('up:a', 'from 1.3');
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[])
	TO regress_twocache_upgrader;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[])
	TO regress_twocache_delegate WITH GRANT OPTION;

-- a view calling it keeps the update from dropping it: the update fails and
-- changes nothing
CREATE VIEW up_view AS SELECT twocache_get('up:v', 'SELECT 1') AS v;
\set VERBOSITY terse
ALTER EXTENSION twocache UPDATE TO '1.4';
\set VERBOSITY default
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
DROP VIEW up_view;

ALTER EXTENSION twocache UPDATE TO '1.4';
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT * FROM twocache_shape_diff;

-- the grants reach both fill forms, the grant option too; PUBLIC has none
SELECT r AS role,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[], text[])',
							  'EXECUTE') AS fill,
	   has_function_privilege(r, 'twocache_get(text, text, interval, text[], text[])',
							  'EXECUTE WITH GRANT OPTION') AS fill_grant,
	   has_function_privilege(r, 'twocache_mget(text[], text, interval, text[], text[])',
							  'EXECUTE') AS batch,
	   has_function_privilege(r, 'twocache_mget(text[], text, interval, text[], text[])',
							  'EXECUTE WITH GRANT OPTION') AS batch_grant,
	   has_function_privilege(r, 'twocache_mget(text[])', 'EXECUTE') AS lookup
FROM unnest(ARRAY['regress_twocache_upgrader', 'regress_twocache_delegate', 'public']) r
ORDER BY r;
-- and the initial privileges are a fresh install's, so pg_dump dumps the
-- grants
SELECT n.fn, n.initprivs = f.initprivs AS same_as_fresh
FROM twocache_init_privs n JOIN fresh_init_privs f USING (fn)
WHERE n.fn LIKE 'twocache_get%' OR n.fn LIKE 'twocache_mget%'
ORDER BY n.fn;

-- the granted role fills with parameters and in batches; the cache survived
SET ROLE regress_twocache_upgrader;
SELECT twocache_get('up:p', 'SELECT $1', params => ARRAY['param']);
SELECT * FROM twocache_mget(ARRAY['up:m'], 'SELECT k, ''batch'' FROM unnest($1) k');
RESET ROLE;
SELECT twocache_get('up:a');

-- back to a fresh install for whatever follows
DROP EXTENSION twocache;
CREATE EXTENSION twocache;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT * FROM twocache_shape_diff;
SELECT * FROM twocache_status_privs;
DROP ROLE regress_twocache_upgrader;
DROP ROLE regress_twocache_delegate;
DROP ROLE regress_twocache_monitor;
DROP ROLE regress_twocache_outsider;
