/* twocache--1.3--1.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION twocache UPDATE TO '1.4'" to load this file. \quit

--
-- Version 1.4: fetch queries take parameters, and twocache_mget gains a
-- batch read-through form.
--
-- - twocache_get(key, fetch_query, ttl, tags) gains params text[] at the
--   end: bound to $1..$n, the plan kept per backend.
-- - twocache_mget(keys, fetch_query, ttl, tags, params): new, a fill
--   function (not PUBLIC), granted like the read-through twocache_get.
--
-- While this script runs, search_path is the extension's schema, where
-- other roles may be able to create objects: every function, operator and
-- type it uses is schema-qualified or runs under SET search_path =
-- pg_catalog, pg_temp, and the extension's own objects are named through
-- @extschema@.
--

--
-- A function cannot gain an argument in place, and an overload with one
-- more defaulted argument would make every shorter call ambiguous, so the
-- read-through twocache_get is made again.  (A view that calls it keeps
-- ALTER EXTENSION from dropping it: the update then fails and changes
-- nothing; drop the view, update, and create it again.)  The privileges an
-- administrator set on it carry over as they are, to it and to the new
-- batch form, which is a fill as it is, and the initial privileges are
-- kept so that pg_dump dumps the administrator's, as in the 1.3 update.
--
CREATE FUNCTION @extschema@.twocache_copy_grants_1_4(fn regprocedure, acl aclitem[],
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
	get_acl aclitem[];
	get_init_acl aclitem[];
BEGIN
	SELECT p.proacl INTO get_acl FROM pg_catalog.pg_proc p
	WHERE p.oid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_get(text, text, interval, text[])'::pg_catalog.regprocedure;
	SELECT i.initprivs INTO get_init_acl FROM pg_catalog.pg_init_privs i
	WHERE i.objoid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_get(text, text, interval, text[])'::pg_catalog.regprocedure
		AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
		AND i.objsubid OPERATOR(pg_catalog.=) 0;

	DROP FUNCTION @extschema@.twocache_get(text, text, interval, text[]);

	CREATE FUNCTION @extschema@.twocache_get(key text, fetch_query text,
											 ttl interval DEFAULT NULL,
											 tags text[] DEFAULT NULL,
											 params text[] DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'twocache_get'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;

	CREATE FUNCTION @extschema@.twocache_mget(keys text[], fetch_query text,
											  ttl interval DEFAULT NULL,
											  tags text[] DEFAULT NULL,
											  params text[] DEFAULT NULL)
	RETURNS TABLE(key text, value text)
	AS 'MODULE_PATHNAME', 'twocache_mget'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;

	PERFORM @extschema@.twocache_copy_grants_1_4(
		'@extschema@.twocache_get(text, text, interval, text[], text[])'::pg_catalog.regprocedure,
		get_acl, get_init_acl);
	PERFORM @extschema@.twocache_copy_grants_1_4(
		'@extschema@.twocache_mget(text[], text, interval, text[], text[])'::pg_catalog.regprocedure,
		get_acl, get_init_acl);
END
$$;

DROP FUNCTION @extschema@.twocache_copy_grants_1_4(regprocedure, aclitem[], aclitem[]);

COMMENT ON FUNCTION @extschema@.twocache_get(text, text, interval, text[], text[]) IS
'value of key from the local cache, then Redis, else from running fetch_query (params bound to $1..$n, its plan kept per backend) once per server; NULL if not found; a filled value carries tags';

COMMENT ON FUNCTION @extschema@.twocache_mget(text[], text, interval, text[], text[]) IS
'batch read-through: one row per key found; keys missing from both layers are fetched together, fetch_query getting them as $1 text[] (params as $2..) and returning rows (key, value[, ttl])';
