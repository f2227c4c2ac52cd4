/* twocache--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION twocache UPDATE TO '1.1'" to load this file. \quit

--
-- Tags: twocache_get and twocache_set take tags text[].  A parameter cannot
-- be added to a function, so both are made again; the privileges granted
-- on the 1.0 functions carry over.
--
CREATE FUNCTION @extschema@.twocache_restore_acl_1_1(fn regprocedure, acl aclitem[])
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g record;
BEGIN
	IF acl IS NULL THEN
		RETURN;					-- the default: EXECUTE to PUBLIC
	END IF;
	EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
	FOR g IN
		SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN 'PUBLIC'
					ELSE pg_catalog.quote_ident(r.rolname::pg_catalog.text) END AS role,
			   a.is_grantable
		FROM pg_catalog.aclexplode(acl) a
		LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
		WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'::pg_catalog.text
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn, g.role,
					   CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;

DO $$
DECLARE
	get_acl aclitem[];
	set_acl aclitem[];
BEGIN
	SELECT p.proacl INTO get_acl FROM pg_catalog.pg_proc p
	WHERE p.oid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_get(text, text, interval)'::pg_catalog.regprocedure;
	SELECT p.proacl INTO set_acl FROM pg_catalog.pg_proc p
	WHERE p.oid OPERATOR(pg_catalog.=)
		'@extschema@.twocache_set(text, text, interval, text)'::pg_catalog.regprocedure;

	DROP FUNCTION @extschema@.twocache_get(text, text, interval);
	DROP FUNCTION @extschema@.twocache_set(text, text, interval, text);

	CREATE FUNCTION @extschema@.twocache_get(key text, fetch_query text DEFAULT NULL,
											 ttl interval DEFAULT NULL,
											 tags text[] DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'twocache_get'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;

	CREATE FUNCTION @extschema@.twocache_set(key text, value text, ttl interval DEFAULT NULL,
											 only_if text DEFAULT NULL,
											 tags text[] DEFAULT NULL)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'twocache_set'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

	PERFORM @extschema@.twocache_restore_acl_1_1(
		'@extschema@.twocache_get(text, text, interval, text[])'::pg_catalog.regprocedure,
		get_acl);
	PERFORM @extschema@.twocache_restore_acl_1_1(
		'@extschema@.twocache_set(text, text, interval, text, text[])'::pg_catalog.regprocedure,
		set_acl);
END
$$;

DROP FUNCTION @extschema@.twocache_restore_acl_1_1(regprocedure, aclitem[]);

COMMENT ON FUNCTION twocache_get(text, text, interval, text[]) IS
'value of key from the local cache, then Redis, else from running fetch_query once per server; NULL if not found; a filled value carries tags';

COMMENT ON FUNCTION twocache_set(text, text, interval, text, text[]) IS
'write key in both layers and tell other servers; only_if ''absent'' or ''present''; returns whether it wrote; the value carries tags';

CREATE FUNCTION twocache_invalidate_tag(tag text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'twocache_invalidate_tag'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION twocache_invalidate_tag(text) IS
'drop every key carrying tag, in both layers and on every server; returns how many this server dropped';

REVOKE ALL ON FUNCTION twocache_invalidate_tag(text) FROM PUBLIC;

--
-- Commit-time invalidation from table changes
--
CREATE FUNCTION twocache_invalidate_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'twocache_invalidate_trigger'
LANGUAGE C;

COMMENT ON FUNCTION twocache_invalidate_trigger() IS
'AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT trigger: invalidate its argument tags (default: the table''s qualified name) after commit';

CREATE FUNCTION twocache_track(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_trigger
			   WHERE tgrelid = tbl AND tgname = 'twocache_invalidate') THEN
		RETURN;
	END IF;
	EXECUTE format('CREATE TRIGGER twocache_invalidate
		AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
		FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.twocache_invalidate_trigger()',
		tbl);
END
$$;

COMMENT ON FUNCTION twocache_track(regclass) IS
'install the twocache_invalidate trigger on a table: a committed change to it invalidates the tag of its qualified name';

CREATE FUNCTION twocache_untrack(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	EXECUTE format('DROP TRIGGER IF EXISTS twocache_invalidate ON %s', tbl);
END
$$;

COMMENT ON FUNCTION twocache_untrack(regclass) IS
'remove the twocache_invalidate trigger of a table';

REVOKE ALL ON FUNCTION twocache_track(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION twocache_untrack(regclass) FROM PUBLIC;
