/* twocache--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION twocache UPDATE TO '1.3'" to load this file. \quit

--
-- Version 1.3: twocache_status() gains two columns at the end, redis_node
-- and redis_role (the Redis node the worker uses, and what it answered to
-- ROLE).
--
-- While this script runs, search_path is the extension's schema, where
-- other roles may be able to create objects: every function, operator and
-- type it uses is schema-qualified or runs under SET search_path =
-- pg_catalog, pg_temp, and the extension's own objects are named through
-- @extschema@.
--

--
-- A function's result cannot gain columns, so twocache_status() is made
-- again, and the privileges an administrator set on it carry over as they
-- are: PUBLIC's EXECUTE revoked or not, each role's EXECUTE with or without
-- GRANT OPTION.  (The grants are made by the role running the update, so a
-- grant a delegate made is now the owner's.)
--
-- A GRANT run by an extension script is recorded as the extension's own
-- initial privilege (pg_init_privs), which pg_dump does not dump: the
-- copies would be lost by a dump and restore, a revoke from PUBLIC
-- included.  So the new function is given the initial privileges the old
-- one had, and pg_dump dumps the administrator's privileges as before.
--
CREATE FUNCTION @extschema@.twocache_copy_grants_1_3(fn regprocedure, acl aclitem[],
														init_acl aclitem[])
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g record;
BEGIN
	-- NULL is the default, EXECUTE to PUBLIC, which fn has
	IF acl IS NOT NULL THEN
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		FOR g IN
			SELECT a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid AS to_public,
				   r.rolname, pg_catalog.bool_or(a.is_grantable) AS is_grantable
			FROM pg_catalog.aclexplode(acl) a
			LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
			WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'::pg_catalog.text
				AND (a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid
					 OR r.rolname IS NOT NULL)
			GROUP BY 1, 2
			ORDER BY 1, 2
		LOOP
			IF g.to_public THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
			ELSE
				EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I%s', fn,
										  g.rolname,
										  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION'
										  ELSE '' END);
			END IF;
		END LOOP;
	END IF;

	-- the initial privileges of the old function, not the GRANTs above
	DELETE FROM pg_catalog.pg_init_privs i
	WHERE i.objoid OPERATOR(pg_catalog.=) fn::pg_catalog.oid
		AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
		AND i.objsubid OPERATOR(pg_catalog.=) 0;
	IF init_acl IS NOT NULL THEN
		INSERT INTO pg_catalog.pg_init_privs (objoid, classoid, objsubid, privtype, initprivs)
		VALUES (fn::pg_catalog.oid, 'pg_catalog.pg_proc'::pg_catalog.regclass, 0,
				'e'::pg_catalog."char", init_acl);
	END IF;
END
$$;

DO $$
DECLARE
	status_acl aclitem[];
	status_init_acl aclitem[];
BEGIN
	SELECT p.proacl INTO status_acl FROM pg_catalog.pg_proc p
	WHERE p.oid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_status()'::pg_catalog.regprocedure;
	SELECT i.initprivs INTO status_init_acl FROM pg_catalog.pg_init_privs i
	WHERE i.objoid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_status()'::pg_catalog.regprocedure
		AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
		AND i.objsubid OPERATOR(pg_catalog.=) 0;

	DROP FUNCTION @extschema@.twocache_status();

	CREATE FUNCTION @extschema@.twocache_status(
		OUT mode text,
		OUT instance_id text,
		OUT worker_pid int,
		OUT redis_connected boolean,
		OUT subscribed boolean,
		OUT reconnects bigint,
		OUT local_flushes bigint,
		OUT last_error text,
		OUT last_error_at timestamptz,
		OUT deferred_invalidations bigint,
		OUT redis_node text,
		OUT redis_role text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'twocache_status'
	LANGUAGE C VOLATILE PARALLEL SAFE;

	PERFORM @extschema@.twocache_copy_grants_1_3(
		'@extschema@.twocache_status()'::pg_catalog.regprocedure,
		status_acl, status_init_acl);
END
$$;

DROP FUNCTION @extschema@.twocache_copy_grants_1_3(regprocedure, aclitem[], aclitem[]);

COMMENT ON FUNCTION @extschema@.twocache_status() IS
'mode (local or two-layer), instance id, the state of the Redis connection, and the Redis node in use and its role';
