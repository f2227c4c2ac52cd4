--
-- twocache.scope = 'role' (SPEC section 2a): keys and tags belong to the
-- database and current_user, so two roles sharing a database can neither
-- read nor poison each other's entries; a table trigger still invalidates
-- every role's entries of its tag; listing shows another role's entries
-- only to pg_read_all_stats.
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

CREATE ROLE regress_twocache_alice;
CREATE ROLE regress_twocache_bob;
GRANT EXECUTE ON FUNCTION
	twocache_get(text),
	twocache_get(text, text, interval, text[], text[]),
	twocache_mget(text[]),
	twocache_exists(text),
	twocache_ttl(text),
	twocache_set(text, text, interval, text, text[]),
	twocache_del(text),
	twocache_invalidate_tag(text),
	twocache_local_keys(),
	twocache_entries()
TO regress_twocache_alice, regress_twocache_bob;
CREATE TABLE rs_src (v text);
INSERT INTO rs_src VALUES ('row');
GRANT SELECT, UPDATE ON rs_src TO regress_twocache_alice, regress_twocache_bob;
CREATE TRIGGER rs_src_inval AFTER INSERT OR UPDATE OR DELETE ON rs_src
	FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger('rs:table');

-- in database scope both roles share the key
SELECT current_setting('twocache.scope') AS scope;
SET ROLE regress_twocache_alice;
SELECT twocache_set('rs:shared', 'by alice');
SET ROLE regress_twocache_bob;
SELECT twocache_get('rs:shared') AS bob_reads_alices_value_in_database_scope;
RESET ROLE;

ALTER SYSTEM SET twocache.scope = 'role';
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.scope', 'role');
\c
SHOW twocache.scope;

-- a role-scope key is not the database-scope key of the same name
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:shared') IS NULL AS database_scope_value_not_seen;

-- alice's value: bob neither reads it nor sees that it exists
SELECT twocache_set('rs:k', 'alice value');
SELECT twocache_get('rs:k') AS alice_reads;
SET ROLE regress_twocache_bob;
SELECT twocache_get('rs:k') IS NULL AS bob_misses;
SELECT twocache_exists('rs:k') AS bob_exists;
SELECT twocache_ttl('rs:k') AS bob_ttl;
SELECT key, value FROM twocache_mget(ARRAY['rs:k']);
-- bob's writes go to his own entry and do not poison alice's
SELECT twocache_set('rs:k', 'bob value', NULL, 'absent') AS bob_set_absent_writes;
SELECT twocache_get('rs:k') AS bob_reads;
SELECT twocache_get('rs:forged', $$SELECT 'forged by bob'$$);
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:k') AS alice_still_reads;
SELECT twocache_get('rs:forged') IS NULL AS alice_misses_the_forgery;

-- the same read-through fills each role's own entry, each role's fetch
SELECT twocache_get('rs:who', 'SELECT current_user::text') AS alice_fill;
SET ROLE regress_twocache_bob;
SELECT twocache_get('rs:who', 'SELECT current_user::text') AS bob_fill;
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:who') AS alice_cached;

-- a SECURITY DEFINER function uses its owner's entries (current_user)
RESET ROLE;
CREATE FUNCTION rs_alices_k() RETURNS text LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, public
	AS $$SELECT public.twocache_get('rs:k')$$;
ALTER FUNCTION rs_alices_k() OWNER TO regress_twocache_alice;
SET ROLE regress_twocache_bob;
SELECT rs_alices_k() AS bob_through_alices_function;
SELECT twocache_get('rs:k') AS bob_own_again;

-- listing: each role its own keys; other roles' rows only to
-- pg_read_all_stats
SELECT k FROM twocache_local_keys() k ORDER BY k;
SELECT key FROM twocache_entries() ORDER BY key;
SET ROLE regress_twocache_alice;
SELECT k FROM twocache_local_keys() k ORDER BY k;
RESET ROLE;
SELECT count(*) AS superuser_own_keys FROM twocache_local_keys();
SELECT key, count(*) FROM twocache_entries() WHERE key LIKE 'rs:%' GROUP BY key ORDER BY key;

-- deleting is per role too
SET ROLE regress_twocache_bob;
SELECT twocache_del('rs:k') AS bob_del;
SELECT twocache_get('rs:k') IS NULL AS bob_gone;
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:k') AS alice_survives;
SET ROLE regress_twocache_bob;
SELECT twocache_del('rs:k') AS bob_del_again;

-- twocache_invalidate_tag drops the caller's entries of the tag only
SET ROLE regress_twocache_alice;
SELECT twocache_set('rs:tagged', 'alice tagged', NULL, NULL, ARRAY['rs:tag']);
SET ROLE regress_twocache_bob;
SELECT twocache_set('rs:tagged', 'bob tagged', NULL, NULL, ARRAY['rs:tag']);
SELECT twocache_invalidate_tag('rs:tag') AS bob_dropped;
SELECT twocache_get('rs:tagged') IS NULL AS bob_tagged_gone;
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:tagged') AS alice_tagged_survives;

-- a table trigger drops every role's entries of its tag
SELECT twocache_get('rs:fromtable', 'SELECT v FROM rs_src', NULL, ARRAY['rs:table']) AS alice_fill;
SET ROLE regress_twocache_bob;
SELECT twocache_get('rs:fromtable', 'SELECT v || '' (bob)'' FROM rs_src', NULL, ARRAY['rs:table']) AS bob_fill;
RESET ROLE;
SELECT count(*) AS entries_of_the_tag FROM twocache_entries() WHERE key = 'rs:fromtable';
SET ROLE regress_twocache_bob;
UPDATE rs_src SET v = 'new row';
RESET ROLE;
SELECT count(*) AS entries_after_update FROM twocache_entries() WHERE key = 'rs:fromtable';
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:fromtable', 'SELECT v FROM rs_src', NULL, ARRAY['rs:table']) AS alice_refetches;

-- back to database scope: role-scope entries are not served there
RESET ROLE;
ALTER SYSTEM RESET twocache.scope;
SELECT pg_reload_conf();
SELECT wait_for_setting('twocache.scope', 'database');
\c
SET ROLE regress_twocache_alice;
SELECT twocache_get('rs:k') IS NULL AS role_entry_not_in_database_scope;
SELECT twocache_get('rs:shared') AS database_scope_value_again;
RESET ROLE;

-- clean up
SELECT twocache_flush_local() >= 0 AS flushed;
DROP TABLE rs_src;
DROP FUNCTION rs_alices_k();
DROP FUNCTION wait_for_setting(text, text);
DROP OWNED BY regress_twocache_alice, regress_twocache_bob;
DROP ROLE regress_twocache_alice;
DROP ROLE regress_twocache_bob;
