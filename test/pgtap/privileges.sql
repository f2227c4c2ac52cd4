-- Privileges (SPEC section 2a): reading, filling, writing and listing are
-- not executable by PUBLIC, monitoring is; a role granted EXECUTE may do
-- what it was granted; no superuser checks in C; fetch queries run as the
-- calling role.
BEGIN;
SELECT plan(87);

-- PUBLIC: monitoring only
SELECT function_privs_are('twocache_get', ARRAY['text'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_mget', ARRAY['text[]', 'text', 'interval', 'text[]', 'text[]'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_mget', ARRAY['text[]'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_exists', ARRAY['text'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_ttl', ARRAY['text'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_local_keys', ARRAY[]::name[], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_entries', ARRAY[]::name[], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_del', ARRAY['text'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_local_set', ARRAY['text', 'text', 'interval'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_local_del', ARRAY['text'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_flush_local', ARRAY[]::name[], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_stats_reset', ARRAY[]::name[], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_invalidate_tag', ARRAY['text'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_invalidate_trigger', ARRAY[]::name[], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_track', ARRAY['regclass'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_untrack', ARRAY['regclass'], 'public', ARRAY[]::name[]);
SELECT function_privs_are('twocache_stats', ARRAY[]::name[], 'public', ARRAY['EXECUTE']);
SELECT table_privs_are('twocache_stats', 'public', ARRAY['SELECT'], 'PUBLIC may read the twocache_stats view');
SELECT function_privs_are('twocache_status', ARRAY[]::name[], 'public', ARRAY['EXECUTE']);
SELECT is(
	(SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
	 FROM pg_depend d
	 JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
	 JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
	 WHERE e.extname = 'twocache' AND has_function_privilege('public', p.oid, 'EXECUTE')),
	ARRAY['twocache_stats()', 'twocache_status()'],
	'PUBLIC may execute the monitoring functions and no other');

-- roles of this transaction only: read; read and fill; and an application
-- role that reads, fills, writes and lists
CREATE ROLE twocache_tap_reader;
CREATE ROLE twocache_tap_filler;
CREATE ROLE twocache_tap_writer;
GRANT EXECUTE ON FUNCTION
	twocache_get(text),
	twocache_mget(text[]),
	twocache_exists(text),
	twocache_ttl(text)
TO twocache_tap_reader, twocache_tap_filler, twocache_tap_writer;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[], text[])
TO twocache_tap_filler, twocache_tap_writer;
GRANT EXECUTE ON FUNCTION
	twocache_set(text, text, interval, text, text[]),
	twocache_del(text),
	twocache_local_set(text, text, interval),
	twocache_local_del(text),
	twocache_flush_local(),
	twocache_stats_reset(),
	twocache_local_keys(),
	twocache_entries()
TO twocache_tap_writer;
CREATE TABLE twocache_tap_secret (v text);
INSERT INTO twocache_tap_secret VALUES ('secret');
REVOKE ALL ON twocache_tap_secret FROM PUBLIC;
GRANT SELECT ON twocache_tap_secret TO twocache_tap_writer;

SELECT function_privs_are('twocache_get', ARRAY['text'], 'twocache_tap_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]'], 'twocache_tap_reader', ARRAY[]::name[]);
SELECT function_privs_are('twocache_mget', ARRAY['text[]'], 'twocache_tap_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_exists', ARRAY['text'], 'twocache_tap_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_ttl', ARRAY['text'], 'twocache_tap_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_entries', ARRAY[]::name[], 'twocache_tap_reader', ARRAY[]::name[]);
SELECT function_privs_are('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]'], 'twocache_tap_filler', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]'], 'twocache_tap_filler', ARRAY[]::name[]);
SELECT function_privs_are('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]'], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_del', ARRAY['text'], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_local_set', ARRAY['text', 'text', 'interval'], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_local_del', ARRAY['text'], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_flush_local', ARRAY[]::name[], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_stats_reset', ARRAY[]::name[], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_local_keys', ARRAY[]::name[], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_entries', ARRAY[]::name[], 'twocache_tap_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]'], 'twocache_tap_reader', ARRAY[]::name[]);

SELECT lives_ok($$SELECT twocache_set('tap:priv:a', 'alpha')$$, 'the superuser sets a key');

-- a role granted read may look up, not fill or list ...
SET LOCAL ROLE twocache_tap_reader;
SELECT is(current_user::text, 'twocache_tap_reader', 'now the reader role');
SELECT is(twocache_get('tap:priv:a'), 'alpha', 'reader: twocache_get');
SELECT throws_ok($$SELECT twocache_get('tap:priv:b', 'SELECT ''beta''')$$, '42501', NULL,
	'reader: twocache_get with a fetch query is denied');
SELECT is(twocache_exists('tap:priv:a'), true, 'reader: twocache_exists');
SELECT is(twocache_ttl('tap:priv:a'), -1::bigint, 'reader: twocache_ttl');
SELECT set_eq($$SELECT key FROM twocache_mget(ARRAY['tap:priv:a', 'tap:priv:b', 'tap:priv:none'])$$,
	ARRAY['tap:priv:a'], 'reader: twocache_mget');
SELECT throws_ok($$SELECT count(*) FROM twocache_local_keys()$$, '42501', NULL, 'reader: twocache_local_keys is denied');
SELECT throws_ok($$SELECT count(*) FROM twocache_entries()$$, '42501', NULL, 'reader: twocache_entries is denied');
SELECT lives_ok($$SELECT * FROM twocache_stats()$$, 'reader: twocache_stats()');
SELECT lives_ok($$SELECT * FROM twocache_stats$$, 'reader: the twocache_stats view');
SELECT lives_ok($$SELECT * FROM twocache_status()$$, 'reader: twocache_status');
-- the Redis URL (which may hold a password) is for superusers only
SELECT throws_ok($$SHOW twocache.redis_url$$, '42501', NULL, 'reader: SHOW twocache.redis_url is denied');
SELECT is((SELECT count(*) FROM pg_settings WHERE name = 'twocache.redis_url'), 0::bigint,
	'reader: twocache.redis_url is not in pg_settings');
SELECT is((SELECT count(*) FROM pg_settings WHERE name = 'twocache.redis_timeout'), 1::bigint,
	'reader: the other twocache settings are in pg_settings');
-- ... but not write or flush
SELECT throws_ok($$SELECT twocache_set('tap:priv:a', 'x')$$, '42501', NULL, 'reader: twocache_set is denied');
SELECT throws_ok($$SELECT twocache_set('tap:priv:a', 'x', NULL, 'absent')$$, '42501', NULL, 'reader: twocache_set only_if is denied');
SELECT throws_ok($$SELECT twocache_del('tap:priv:a')$$, '42501', NULL, 'reader: twocache_del is denied');
SELECT throws_ok($$SELECT twocache_local_set('tap:priv:a', 'x')$$, '42501', NULL, 'reader: twocache_local_set is denied');
SELECT throws_ok($$SELECT twocache_local_del('tap:priv:a')$$, '42501', NULL, 'reader: twocache_local_del is denied');
SELECT throws_ok($$SELECT twocache_flush_local()$$, '42501', NULL, 'reader: twocache_flush_local is denied');
SELECT throws_ok($$SELECT twocache_stats_reset()$$, '42501', NULL, 'reader: twocache_stats_reset is denied');
RESET ROLE;

-- a role granted fill may fill, as itself
SET LOCAL ROLE twocache_tap_filler;
SELECT is(twocache_get('tap:priv:b', 'SELECT ''beta'''), 'beta', 'filler: twocache_get with a fetch query');
-- this transaction has written (CREATE ROLE ...): fetched values are returned
-- but not cached
SELECT is(twocache_exists('tap:priv:b'), false, 'filler: a fetch in a transaction that wrote is not cached');
SELECT is(twocache_get('tap:priv:whoami-filler', 'SELECT current_user::text'), 'twocache_tap_filler',
	'filler: the fetch query runs as the calling role');
SELECT throws_ok($$SELECT twocache_get('tap:priv:secret', 'SELECT v FROM twocache_tap_secret')$$,
	'42501', 'permission denied for table twocache_tap_secret',
	'filler: a fetch of a table it may not read is denied');
SELECT is(twocache_exists('tap:priv:secret'), false, 'filler: the denied fetch stored nothing');
SELECT throws_ok($$SELECT twocache_set('tap:priv:a', 'x')$$, '42501', NULL, 'filler: twocache_set is denied');
SELECT throws_ok($$SELECT twocache_invalidate_tag('tap')$$, '42501', NULL, 'filler: twocache_invalidate_tag is denied');
RESET ROLE;
SELECT is(twocache_get('tap:priv:a'), 'alpha', 'the denied writes changed nothing');

-- a role granted EXECUTE may write and flush, without being superuser
SET LOCAL ROLE twocache_tap_writer;
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false, 'the writer is not a superuser');
SELECT is(twocache_set('tap:priv:a', 'written'), true, 'writer: twocache_set');
SELECT is(twocache_set('tap:priv:a', 'again', NULL, 'absent'), false, 'writer: twocache_set only_if absent');
SELECT is(twocache_get('tap:priv:a'), 'written', 'writer: the value it set');
SELECT is(twocache_del('tap:priv:a'), true, 'writer: twocache_del');
SELECT lives_ok($$SELECT twocache_local_set('tap:priv:c', 'local')$$, 'writer: twocache_local_set');
SELECT is(twocache_get('tap:priv:c'), 'local', 'writer: the value it set locally');
SELECT is(twocache_local_del('tap:priv:c'), true, 'writer: twocache_local_del');
SELECT lives_ok($$SELECT count(*) FROM twocache_local_keys()$$, 'writer: twocache_local_keys');
SELECT lives_ok($$SELECT count(*) FROM twocache_entries()$$, 'writer: twocache_entries');
SELECT is(twocache_get('tap:priv:secret', 'SELECT v FROM twocache_tap_secret'), 'secret',
	'writer: the fetch query runs as the calling role, which may read the table');
SELECT lives_ok($$SELECT twocache_stats_reset()$$, 'writer: twocache_stats_reset');
SELECT is((SELECT l1_hits FROM twocache_stats()), 0::bigint, 'writer: the counters were reset');
SELECT is(twocache_set('tap:priv:f', 'flushed'), true, 'writer: twocache_set before a flush');
SELECT lives_ok($$SELECT twocache_flush_local()$$, 'writer: twocache_flush_local');
SELECT is(twocache_exists('tap:priv:f'), false, 'writer: the flush dropped the keys');
RESET ROLE;

-- membership in a granted role is enough
GRANT twocache_tap_writer TO twocache_tap_reader;
SET LOCAL ROLE twocache_tap_reader;
SELECT is(twocache_set('tap:priv:m', 'member'), true, 'a member of the writer role may set');
SELECT is(twocache_del('tap:priv:m'), true, 'a member of the writer role may del');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
