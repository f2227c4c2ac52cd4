-- Key scope and the sharing model (SPEC section 3, README "Sharing model"):
-- with twocache.scope = database (the default) two databases of one server
-- keep separate values under the same key, and a delete in one leaves the
-- other alone; within a database, a value cached by a role that may read its
-- source table is served to a role that may not.
--
-- Not wrapped in a transaction: CREATE DATABASE cannot run in one, and a
-- fetched value is only cached by a transaction without a transaction id.
-- The second database is reached through dblink on this server's socket.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- leftovers of an earlier, interrupted run
DROP DATABASE IF EXISTS twocache_tap_scope WITH (FORCE);
DROP TABLE IF EXISTS twocache_tap_shared;
DROP ROLE IF EXISTS twocache_tap_filler;
DROP ROLE IF EXISTS twocache_tap_nosel;

CREATE EXTENSION IF NOT EXISTS dblink;
CREATE DATABASE twocache_tap_scope;
SELECT format('host=%s port=%s dbname=twocache_tap_scope user=%s',
			  trim(split_part(current_setting('unix_socket_directories'), ',', 1)),
			  current_setting('port'), current_user) AS other_db \gset
SELECT dblink_connect('other', :'other_db') AS connected \gset
SELECT dblink_exec('other', 'CREATE EXTENSION twocache') AS created \gset

SELECT plan(38);

SELECT is(current_setting('twocache.scope'), 'database', 'twocache.scope is database by default');
SELECT is((SELECT v FROM dblink('other', 'SELECT current_setting(''twocache.scope'')') AS t(v text)),
	'database', 'the other database too');
SELECT isnt((SELECT v FROM dblink('other', 'SELECT current_database()::text') AS t(v text)),
	current_database()::text, 'the dblink connection is to another database');
SELECT lives_ok($$SELECT twocache_flush_local()$$, 'start from an empty L1');

-- one key, two databases, two values
SELECT is(twocache_set('tap:scope:k', 'value in postgres'), true, 'set the key here');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:scope:k')$$) AS t(v text)),
	NULL, 'the other database does not see it');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_exists('tap:scope:k')$$) AS t(v boolean)),
	false, 'twocache_exists in the other database: false');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_ttl('tap:scope:k')$$) AS t(v bigint)),
	-2::bigint, 'twocache_ttl in the other database: -2 (absent)');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_set('tap:scope:k', 'value in other', NULL, 'absent')$$) AS t(v boolean)),
	true, 'set only_if absent in the other database writes: the key is absent there');
SELECT is(twocache_get('tap:scope:k'), 'value in postgres', 'here the value is still this database''s');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:scope:k')$$) AS t(v text)),
	'value in other', 'there the value is the other database''s');
SELECT is(twocache_set('tap:scope:k', 'again', NULL, 'absent'), false,
	'set only_if absent here does not write: the key is present here');
SELECT is((SELECT v FROM dblink('other', $$SELECT value FROM twocache_mget(ARRAY['tap:scope:k'])$$) AS t(v text)),
	'value in other', 'twocache_mget in the other database');
SELECT is((SELECT value FROM twocache_mget(ARRAY['tap:scope:k'])), 'value in postgres',
	'twocache_mget here');
-- twocache_entries shows other databases' entries to pg_read_all_stats
-- (the superuser here) only; limits.sql checks a role without it
SELECT results_eq($$SELECT key, value_bytes FROM twocache_entries() WHERE key LIKE 'tap:scope:%' ORDER BY value_bytes$$,
	$$VALUES ('tap:scope:k', octet_length('value in other')), ('tap:scope:k', octet_length('value in postgres'))$$,
	'twocache_entries here lists both databases'' entries to a member of pg_read_all_stats');
SELECT results_eq($$SELECT * FROM dblink('other', 'SELECT key, value_bytes FROM twocache_entries() ORDER BY value_bytes') AS t(key text, value_bytes int)$$,
	$$VALUES ('tap:scope:k', octet_length('value in other')), ('tap:scope:k', octet_length('value in postgres'))$$,
	'and so does it there');
SELECT set_eq($$SELECT k FROM twocache_local_keys() k WHERE k LIKE 'tap:scope:%'$$,
	ARRAY['tap:scope:k'], 'twocache_local_keys here');
SELECT is((SELECT entries FROM twocache_stats), 2::bigint,
	'the server holds two entries: one per database');

-- a fetch with the same key and query caches each database's own result
SELECT is(twocache_get('tap:scope:f', 'SELECT current_database()'), 'postgres', 'fetch here');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:scope:f', 'SELECT current_database()')$$) AS t(v text)),
	'twocache_tap_scope', 'the same fetch there runs there: not served this database''s value');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:scope:f')$$) AS t(v text)),
	'twocache_tap_scope', 'the other database cached its own result');
SELECT is(twocache_get('tap:scope:f'), 'postgres', 'and this one its own');

-- deleting in one database leaves the other alone
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_del('tap:scope:k')$$) AS t(v boolean)),
	true, 'twocache_del in the other database');
SELECT is(twocache_get('tap:scope:k'), 'value in postgres', 'the value here survives a del there');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:scope:k')$$) AS t(v text)),
	NULL, 'the key is gone there');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_del('tap:scope:k')$$) AS t(v boolean)),
	false, 'a second del there finds nothing, though the key exists here');
SELECT is(twocache_local_del('tap:scope:f'), true, 'twocache_local_del here');
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:scope:f')$$) AS t(v text)),
	'twocache_tap_scope', 'the value there survives a local del here');
SELECT is(twocache_del('tap:scope:k'), true, 'twocache_del here');
SELECT is(twocache_exists('tap:scope:k'), false, 'the key is gone here too');

-- the sharing model: a role without SELECT on a table reads what a role with
-- it cached (README "Sharing model")
CREATE ROLE twocache_tap_filler;
CREATE ROLE twocache_tap_nosel;
CREATE TABLE twocache_tap_shared (v text);
INSERT INTO twocache_tap_shared VALUES ('classified');
REVOKE ALL ON twocache_tap_shared FROM PUBLIC;
GRANT SELECT ON twocache_tap_shared TO twocache_tap_filler;
-- both may look up and fill (1.2: not PUBLIC's)
GRANT EXECUTE ON FUNCTION twocache_get(text), twocache_get(text, text, interval, text[], text[])
	TO twocache_tap_filler, twocache_tap_nosel;

SELECT is(has_table_privilege('twocache_tap_nosel', 'twocache_tap_shared', 'SELECT'), false,
	'the second role may not read the table');
SET ROLE twocache_tap_nosel;
SELECT throws_ok($$SELECT twocache_get('tap:share:k', 'SELECT v FROM twocache_tap_shared')$$,
	'42501', NULL, 'so it cannot fill the key itself');
RESET ROLE;
SET ROLE twocache_tap_filler;
SELECT is(twocache_get('tap:share:k', 'SELECT v FROM twocache_tap_shared'), 'classified',
	'the role with SELECT fills the key');
RESET ROLE;
SELECT is(twocache_exists('tap:share:k'), true, 'the value is cached');
SELECT fetches AS fetches_before FROM twocache_stats \gset
SET ROLE twocache_tap_nosel;
SELECT is(twocache_get('tap:share:k'), 'classified',
	'the role without SELECT reads the cached value (no fetch query)');
SELECT is(twocache_get('tap:share:k', 'SELECT v FROM twocache_tap_shared'), 'classified',
	'and with the fetch query, which is not run on a hit');
RESET ROLE;
-- but only in this database
SELECT is((SELECT v FROM dblink('other', $$SELECT twocache_get('tap:share:k')$$) AS t(v text)),
	NULL, 'the shared value is not visible from the other database');
SELECT is((SELECT fetches FROM twocache_stats), :'fetches_before'::bigint,
	'no fetch query ran for the role without SELECT: both reads were hits');

SELECT * FROM finish();

-- clean up
SELECT twocache_flush_local() >= 0 AS flushed \gset
SELECT dblink_disconnect('other') AS disconnected \gset
DROP DATABASE twocache_tap_scope WITH (FORCE);
DROP TABLE twocache_tap_shared;
DROP OWNED BY twocache_tap_filler, twocache_tap_nosel;
DROP ROLE twocache_tap_filler;
DROP ROLE twocache_tap_nosel;
DROP EXTENSION dblink;
