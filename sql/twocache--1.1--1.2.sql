/* twocache--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION twocache UPDATE TO '1.2'" to load this file. \quit

--
-- Version 1.2 separates reading, filling, writing and listing, and none of
-- them belongs to PUBLIC any more (SPEC section 2a).
--
-- While this script runs, search_path is the extension's schema, where
-- other roles may be able to create objects: every function, operator and
-- type it uses is schema-qualified or runs under SET search_path =
-- pg_catalog, pg_temp, and the extension's own objects are named through
-- @extschema@.
--

--
-- Grants carry over where the new model allows: a role granted EXECUTE on
-- the 1.1 twocache_get (with or without GRANT OPTION) gets it on both new
-- forms; what PUBLIC had is not carried.
--
CREATE FUNCTION @extschema@.twocache_copy_grants_1_2(fn regprocedure, acl aclitem[])
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT DISTINCT r.rolname, a.is_grantable
		FROM pg_catalog.aclexplode(acl) a
		JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
		WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'::pg_catalog.text
		ORDER BY r.rolname, a.is_grantable
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I%s', fn, g.rolname,
								  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION'
								  ELSE '' END);
	END LOOP;
END
$$;

--
-- twocache_get: fetch_query loses its default (a default cannot be
-- removed, so the function is made again), and the key-only call becomes a
-- function of its own, the lookup.
--
DO $$
DECLARE
	get_acl aclitem[];
BEGIN
	SELECT p.proacl INTO get_acl FROM pg_catalog.pg_proc p
	WHERE p.oid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_get(text, text, interval, text[])'::pg_catalog.regprocedure;

	DROP FUNCTION @extschema@.twocache_get(text, text, interval, text[]);

	CREATE FUNCTION @extschema@.twocache_get(key text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'twocache_get'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;

	CREATE FUNCTION @extschema@.twocache_get(key text, fetch_query text,
											 ttl interval DEFAULT NULL,
											 tags text[] DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'twocache_get'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;

	REVOKE ALL ON FUNCTION @extschema@.twocache_get(text) FROM PUBLIC;
	REVOKE ALL ON FUNCTION @extschema@.twocache_get(text, text, interval, text[]) FROM PUBLIC;

	PERFORM @extschema@.twocache_copy_grants_1_2(
		'@extschema@.twocache_get(text)'::pg_catalog.regprocedure, get_acl);
	PERFORM @extschema@.twocache_copy_grants_1_2(
		'@extschema@.twocache_get(text, text, interval, text[])'::pg_catalog.regprocedure,
		get_acl);
END
$$;

DROP FUNCTION @extschema@.twocache_copy_grants_1_2(regprocedure, aclitem[]);

COMMENT ON FUNCTION @extschema@.twocache_get(text) IS
'value of key from the local cache, then Redis; NULL if not found; never runs a query';

COMMENT ON FUNCTION @extschema@.twocache_get(text, text, interval, text[]) IS
'value of key from the local cache, then Redis, else from running fetch_query once per server; NULL if not found; a filled value carries tags';

--
-- The other readers, the listers and the trigger function: no longer
-- PUBLIC's.  Grants to roles stay, since the functions do.
--
REVOKE EXECUTE ON FUNCTION @extschema@.twocache_mget(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.twocache_exists(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.twocache_ttl(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.twocache_local_keys() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.twocache_entries() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.twocache_invalidate_trigger() FROM PUBLIC;
