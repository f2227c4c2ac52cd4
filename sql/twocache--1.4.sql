/* twocache--1.4.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION twocache" to load this file. \quit

--
-- The whole of version 1.4 in one script, so that CREATE EXTENSION runs no
-- upgrade script.
--
-- While this script runs, search_path is the extension's schema, where
-- other roles may be able to create objects.  So every function, operator
-- and type it uses, and every SQL or PL/pgSQL body it defines, is
-- schema-qualified or runs under SET search_path = pg_catalog, pg_temp;
-- the extension's own objects are named through @extschema@.
--
-- Privileges (SPEC section 2a): reading, filling, writing and listing are
-- granted explicitly; only monitoring belongs to PUBLIC.  See the REVOKEs at
-- the end.
--

--
-- Reading (read: lookup only, never runs a query)
--

CREATE FUNCTION @extschema@.twocache_get(key text)
RETURNS text
AS 'MODULE_PATHNAME', 'twocache_get'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.twocache_get(text) IS
'value of key from the local cache, then Redis; NULL if not found; never runs a query';

CREATE FUNCTION @extschema@.twocache_mget(keys text[])
RETURNS TABLE(key text, value text)
AS 'MODULE_PATHNAME', 'twocache_mget'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.twocache_mget(text[]) IS
'one row per key found, from the local cache first, then one Redis round trip';

CREATE FUNCTION @extschema@.twocache_exists(key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'twocache_exists'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.twocache_exists(text) IS
'whether a real value (not a not-found placeholder) is cached for key; never fetches';

CREATE FUNCTION @extschema@.twocache_ttl(key text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'twocache_ttl'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.twocache_ttl(text) IS
'remaining lifetime of key in milliseconds; -1 no expiry, -2 absent';

--
-- Filling (fill: read-through; fetch_query has no default, so a call with
-- the key alone is the lookup above)
--

CREATE FUNCTION @extschema@.twocache_get(key text, fetch_query text,
										 ttl interval DEFAULT NULL,
										 tags text[] DEFAULT NULL,
										 params text[] DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'twocache_get'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.twocache_get(text, text, interval, text[], text[]) IS
'value of key from the local cache, then Redis, else from running fetch_query (params bound to $1..$n, its plan kept per backend) once per server; NULL if not found; a filled value carries tags';

CREATE FUNCTION @extschema@.twocache_mget(keys text[], fetch_query text,
										  ttl interval DEFAULT NULL,
										  tags text[] DEFAULT NULL,
										  params text[] DEFAULT NULL)
RETURNS TABLE(key text, value text)
AS 'MODULE_PATHNAME', 'twocache_mget'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.twocache_mget(text[], text, interval, text[], text[]) IS
'batch read-through: one row per key found; keys missing from both layers are fetched together, fetch_query getting them as $1 text[] (params as $2..) and returning rows (key, value[, ttl])';

--
-- Writing
--

CREATE FUNCTION @extschema@.twocache_set(key text, value text, ttl interval DEFAULT NULL,
										 only_if text DEFAULT NULL,
										 tags text[] DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'twocache_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_set(text, text, interval, text, text[]) IS
'write key in both layers and tell other servers; only_if ''absent'' or ''present''; returns whether it wrote; the value carries tags';

CREATE FUNCTION @extschema@.twocache_del(key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'twocache_del'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_del(text) IS
'drop key from both layers and tell other servers; true if it existed';

CREATE FUNCTION @extschema@.twocache_invalidate_tag(tag text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'twocache_invalidate_tag'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_invalidate_tag(text) IS
'drop every key carrying tag, in both layers and on every server; returns how many this server dropped';

CREATE FUNCTION @extschema@.twocache_local_set(key text, value text, ttl interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'twocache_local_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_local_set(text, text, interval) IS
'write key in the local cache only: no Redis, no message';

CREATE FUNCTION @extschema@.twocache_local_del(key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'twocache_local_del'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_local_del(text) IS
'drop key from the local cache only; true if it was there';

CREATE FUNCTION @extschema@.twocache_flush_local()
RETURNS bigint
AS 'MODULE_PATHNAME', 'twocache_flush_local'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_flush_local() IS
'drop every entry of this server''s local cache; returns how many resident entries (values and placeholders) were dropped';

--
-- Commit-time invalidation from table changes (write)
--

CREATE FUNCTION @extschema@.twocache_invalidate_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'twocache_invalidate_trigger'
LANGUAGE C;

COMMENT ON FUNCTION @extschema@.twocache_invalidate_trigger() IS
'AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT trigger: invalidate its argument tags (default: the table''s qualified name) after commit';

CREATE FUNCTION @extschema@.twocache_track(tbl regclass)
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

COMMENT ON FUNCTION @extschema@.twocache_track(regclass) IS
'install the twocache_invalidate trigger on a table: a committed change to it invalidates the tag of its qualified name';

CREATE FUNCTION @extschema@.twocache_untrack(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	EXECUTE format('DROP TRIGGER IF EXISTS twocache_invalidate ON %s', tbl);
END
$$;

COMMENT ON FUNCTION @extschema@.twocache_untrack(regclass) IS
'remove the twocache_invalidate trigger of a table';

--
-- Listing (list: keys of the local cache)
--

CREATE FUNCTION @extschema@.twocache_local_keys()
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'twocache_local_keys'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.twocache_local_keys() IS
'keys with a value resident in the local cache (T1 and T2)';

CREATE FUNCTION @extschema@.twocache_entries()
RETURNS TABLE(key text, list text, pos int, value_bytes int,
			  expires_at timestamptz, negative boolean)
AS 'MODULE_PATHNAME', 'twocache_entries'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.twocache_entries() IS
'every local cache directory entry: list T1, T2, B1 or B2 and position from the LRU end (1)';

--
-- Monitoring (monitor: PUBLIC; no keys, no values, no secrets)
--

CREATE FUNCTION @extschema@.twocache_stats(
	OUT l1_hits bigint,
	OUT l1_misses bigint,
	OUT l2_hits bigint,
	OUT l2_misses bigint,
	OUT negative_hits bigint,
	OUT fetches bigint,
	OUT fetch_errors bigint,
	OUT fetch_waits bigint,
	OUT stale_fills_rejected bigint,
	OUT uncacheable bigint,
	OUT too_large bigint,
	OUT evictions bigint,
	OUT expirations bigint,
	OUT invalidations_sent bigint,
	OUT invalidations_received bigint,
	OUT redis_errors bigint,
	OUT entries bigint,
	OUT bytes_used bigint,
	OUT bytes_total bigint,
	OUT arc_p bigint,
	OUT t1 bigint,
	OUT t2 bigint,
	OUT b1 bigint,
	OUT b2 bigint,
	OUT stats_reset timestamptz,
	OUT in_flight bigint,
	OUT invalidations_deferred bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'twocache_stats'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.twocache_stats() IS
'counters and current sizes of the cache';

CREATE VIEW @extschema@.twocache_stats AS
	SELECT * FROM @extschema@.twocache_stats();

COMMENT ON VIEW @extschema@.twocache_stats IS
'counters and current sizes of the cache';

GRANT SELECT ON @extschema@.twocache_stats TO PUBLIC;

CREATE FUNCTION @extschema@.twocache_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'twocache_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.twocache_stats_reset() IS
'zero the counters of twocache_stats';

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

COMMENT ON FUNCTION @extschema@.twocache_status() IS
'mode (local or two-layer), instance id, the state of the Redis connection, and the Redis node in use and its role';

--
-- Privileges: read, fill, write and list are granted explicitly (the README
-- has the GRANTs); twocache_stats, its view and twocache_status stay
-- PUBLIC's.
--

-- read
REVOKE ALL ON FUNCTION @extschema@.twocache_get(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_mget(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_exists(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_ttl(text) FROM PUBLIC;
-- fill
REVOKE ALL ON FUNCTION @extschema@.twocache_get(text, text, interval, text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_mget(text[], text, interval, text[], text[]) FROM PUBLIC;
-- write
REVOKE ALL ON FUNCTION @extschema@.twocache_set(text, text, interval, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_del(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_invalidate_tag(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_local_set(text, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_local_del(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_flush_local() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_stats_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_track(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_untrack(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_invalidate_trigger() FROM PUBLIC;
-- list
REVOKE ALL ON FUNCTION @extschema@.twocache_local_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.twocache_entries() FROM PUBLIC;
