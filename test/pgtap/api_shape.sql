-- The SQL surface of twocache 1.3 (SPEC sections 2 and 2a, and tags): every
-- function with its exact argument types, return type, volatility and
-- language; the stats view and its columns.  twocache_get has two forms: the
-- lookup (key alone) and the fill (fetch_query without a default).
BEGIN;
SELECT plan(100);

SELECT has_extension('twocache');

-- exactly these functions belong to the extension
SELECT set_eq(
	$$SELECT p.oid::regprocedure::text
	  FROM pg_depend d
	  JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
	  JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
	  WHERE e.extname = 'twocache'$$,
	ARRAY['twocache_get(text)',
		  'twocache_get(text,text,interval,text[],text[])',
		  'twocache_set(text,text,interval,text,text[])',
		  'twocache_invalidate_tag(text)',
		  'twocache_invalidate_trigger()',
		  'twocache_track(regclass)',
		  'twocache_untrack(regclass)',
		  'twocache_del(text)',
		  'twocache_local_set(text,text,interval)',
		  'twocache_local_del(text)',
		  'twocache_local_keys()',
		  'twocache_flush_local()',
		  'twocache_exists(text)',
		  'twocache_ttl(text)',
		  'twocache_mget(text[])',
		  'twocache_mget(text[],text,interval,text[],text[])',
		  'twocache_entries()',
		  'twocache_stats()',
		  'twocache_stats_reset()',
		  'twocache_status()'],
	'the extension has exactly the functions of SPEC sections 2 and 2a, and those of tags');

-- functions with exact argument types
SELECT has_function('twocache_get', ARRAY['text']);
SELECT has_function('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]']);
SELECT has_function('twocache_mget', ARRAY['text[]', 'text', 'interval', 'text[]', 'text[]']);
SELECT hasnt_function('twocache_get', ARRAY['text', 'text']);
SELECT hasnt_function('twocache_get', ARRAY['text', 'text', 'interval']);
SELECT has_function('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]']);
SELECT has_function('twocache_del', ARRAY['text']);
SELECT has_function('twocache_local_set', ARRAY['text', 'text', 'interval']);
SELECT has_function('twocache_local_del', ARRAY['text']);
SELECT has_function('twocache_local_keys', ARRAY[]::name[]);
SELECT has_function('twocache_flush_local', ARRAY[]::name[]);
SELECT has_function('twocache_exists', ARRAY['text']);
SELECT has_function('twocache_ttl', ARRAY['text']);
SELECT has_function('twocache_mget', ARRAY['text[]']);
SELECT has_function('twocache_entries', ARRAY[]::name[]);
SELECT has_function('twocache_stats', ARRAY[]::name[]);
SELECT has_function('twocache_stats_reset', ARRAY[]::name[]);
SELECT has_function('twocache_status', ARRAY[]::name[]);

-- return types
SELECT function_returns('twocache_get', ARRAY['text'], 'text');
SELECT function_returns('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]'], 'text');
SELECT function_returns('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]'], 'boolean');
SELECT function_returns('twocache_del', ARRAY['text'], 'boolean');
SELECT function_returns('twocache_local_set', ARRAY['text', 'text', 'interval'], 'void');
SELECT function_returns('twocache_local_del', ARRAY['text'], 'boolean');
SELECT function_returns('twocache_local_keys', ARRAY[]::name[], 'setof text');
SELECT function_returns('twocache_flush_local', ARRAY[]::name[], 'bigint');
SELECT function_returns('twocache_exists', ARRAY['text'], 'boolean');
SELECT function_returns('twocache_ttl', ARRAY['text'], 'bigint');
SELECT function_returns('twocache_mget', ARRAY['text[]'], 'setof record');
SELECT function_returns('twocache_entries', ARRAY[]::name[], 'setof record');
SELECT function_returns('twocache_stats', ARRAY[]::name[], 'record');
SELECT function_returns('twocache_stats_reset', ARRAY[]::name[], 'void');
SELECT function_returns('twocache_status', ARRAY[]::name[], 'record');

-- argument names and defaults, and the columns of the set-returning and
-- record functions
SELECT is(pg_get_function_arguments('twocache_get(text)'::regprocedure),
	'key text', 'twocache_get lookup arguments');
SELECT is(pg_get_function_arguments('twocache_get(text,text,interval,text[],text[])'::regprocedure),
	'key text, fetch_query text, ttl interval DEFAULT NULL::interval, tags text[] DEFAULT NULL::text[], params text[] DEFAULT NULL::text[]',
	'twocache_get fill arguments: fetch_query has no default');
SELECT is(pg_get_function_arguments('twocache_mget(text[],text,interval,text[],text[])'::regprocedure),
	'keys text[], fetch_query text, ttl interval DEFAULT NULL::interval, tags text[] DEFAULT NULL::text[], params text[] DEFAULT NULL::text[]',
	'twocache_mget batch arguments: fetch_query has no default');
SELECT is(pg_get_function_result('twocache_mget(text[],text,interval,text[],text[])'::regprocedure),
	'TABLE(key text, value text)', 'twocache_mget batch result columns');
SELECT is((SELECT count(*)::int FROM pg_proc p
		   WHERE p.oid = 'twocache_get(text)'::regprocedure
			 AND p.prosrc = 'twocache_get' AND p.proparallel = 'r'),
	1, 'the lookup form is the C function twocache_get, parallel restricted');
SELECT is(pg_get_function_arguments('twocache_set(text,text,interval,text,text[])'::regprocedure),
	'key text, value text, ttl interval DEFAULT NULL::interval, only_if text DEFAULT NULL::text, tags text[] DEFAULT NULL::text[]',
	'twocache_set arguments');
SELECT is(pg_get_function_arguments('twocache_invalidate_tag(text)'::regprocedure),
	'tag text', 'twocache_invalidate_tag arguments');
SELECT function_returns('twocache_invalidate_tag', ARRAY['text'], 'bigint');
SELECT function_returns('twocache_invalidate_trigger', ARRAY[]::name[], 'trigger');
SELECT function_returns('twocache_track', ARRAY['regclass'], 'void');
SELECT is(pg_get_function_arguments('twocache_local_set(text,text,interval)'::regprocedure),
	'key text, value text, ttl interval DEFAULT NULL::interval',
	'twocache_local_set arguments');
SELECT is(pg_get_function_arguments('twocache_mget(text[])'::regprocedure),
	'keys text[]', 'twocache_mget arguments');
SELECT is(pg_get_function_result('twocache_mget(text[])'::regprocedure),
	'TABLE(key text, value text)', 'twocache_mget result columns');
SELECT is(pg_get_function_result('twocache_entries()'::regprocedure),
	'TABLE(key text, list text, pos integer, value_bytes integer, expires_at timestamp with time zone, negative boolean)',
	'twocache_entries result columns');
SELECT is(pg_get_function_result('twocache_status()'::regprocedure),
	'record', 'twocache_status returns a record');
SELECT is(pg_get_function_arguments('twocache_status()'::regprocedure),
	'OUT mode text, OUT instance_id text, OUT worker_pid integer, OUT redis_connected boolean, OUT subscribed boolean, OUT reconnects bigint, OUT local_flushes bigint, OUT last_error text, OUT last_error_at timestamp with time zone, OUT deferred_invalidations bigint, OUT redis_node text, OUT redis_role text',
	'twocache_status columns');

-- volatility: everything reads or changes shared state
SELECT volatility_is('twocache_get', ARRAY['text'], 'volatile');
SELECT volatility_is('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]'], 'volatile');
SELECT volatility_is('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]'], 'volatile');
SELECT volatility_is('twocache_del', ARRAY['text'], 'volatile');
SELECT volatility_is('twocache_local_set', ARRAY['text', 'text', 'interval'], 'volatile');
SELECT volatility_is('twocache_local_del', ARRAY['text'], 'volatile');
SELECT volatility_is('twocache_local_keys', ARRAY[]::name[], 'volatile');
SELECT volatility_is('twocache_flush_local', ARRAY[]::name[], 'volatile');
SELECT volatility_is('twocache_exists', ARRAY['text'], 'volatile');
SELECT volatility_is('twocache_ttl', ARRAY['text'], 'volatile');
SELECT volatility_is('twocache_mget', ARRAY['text[]'], 'volatile');
SELECT volatility_is('twocache_mget', ARRAY['text[]', 'text', 'interval', 'text[]', 'text[]'], 'volatile');
SELECT volatility_is('twocache_entries', ARRAY[]::name[], 'volatile');
SELECT volatility_is('twocache_stats', ARRAY[]::name[], 'volatile');
SELECT volatility_is('twocache_stats_reset', ARRAY[]::name[], 'volatile');
SELECT volatility_is('twocache_status', ARRAY[]::name[], 'volatile');

-- not STRICT: a NULL key or value must raise 22004, not return NULL
SELECT isnt_strict('twocache_get', ARRAY['text']);
SELECT isnt_strict('twocache_get', ARRAY['text', 'text', 'interval', 'text[]', 'text[]']);
SELECT isnt_strict('twocache_set', ARRAY['text', 'text', 'interval', 'text', 'text[]']);
SELECT isnt_strict('twocache_del', ARRAY['text']);
SELECT isnt_strict('twocache_local_set', ARRAY['text', 'text', 'interval']);
SELECT isnt_strict('twocache_local_del', ARRAY['text']);
SELECT isnt_strict('twocache_exists', ARRAY['text']);
SELECT isnt_strict('twocache_ttl', ARRAY['text']);
SELECT isnt_strict('twocache_mget', ARRAY['text[]']);
SELECT isnt_strict('twocache_mget', ARRAY['text[]', 'text', 'interval', 'text[]', 'text[]']);
SELECT throws_ok($$SELECT twocache_get(NULL)$$, '22004', NULL, 'twocache_get(NULL) raises 22004');
SELECT throws_ok($$SELECT twocache_get(NULL, 'SELECT 1')$$, '22004', NULL, 'twocache_get(NULL, query) raises 22004');
SELECT is(twocache_get('tap:shape:none'), NULL, 'the one-argument call is the lookup: a miss is NULL');
SELECT is(twocache_get('tap:shape:none', 'SELECT ''filled'''), 'filled', 'the fill form fetches');
SELECT throws_ok($$SELECT twocache_exists(NULL)$$, '22004', NULL, 'twocache_exists(NULL) raises 22004');
SELECT throws_ok($$SELECT twocache_ttl(NULL)$$, '22004', NULL, 'twocache_ttl(NULL) raises 22004');
SELECT throws_ok($$SELECT * FROM twocache_mget(NULL)$$, '22004', NULL, 'twocache_mget(NULL) raises 22004');

-- C functions but for the two PL/pgSQL helpers that install and remove the
-- trigger; none is SECURITY DEFINER (fetch queries run as the caller); each
-- has a comment
SELECT is(
	(SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	 WHERE p.proname LIKE 'twocache\_%' AND l.lanname <> 'c'),
	ARRAY['twocache_track', 'twocache_untrack'], 'every twocache function is written in C but twocache_track and twocache_untrack');
SELECT is(
	(SELECT count(*)::int FROM pg_proc WHERE proname LIKE 'twocache\_%' AND prosecdef),
	0, 'no twocache function is SECURITY DEFINER');
SELECT is(
	(SELECT count(*)::int FROM pg_proc p
	 WHERE p.proname LIKE 'twocache\_%' AND obj_description(p.oid, 'pg_proc') IS NULL),
	0, 'every twocache function has a comment');

-- the stats view
SELECT has_view('twocache_stats');
SELECT columns_are('twocache_stats', ARRAY[
	'l1_hits', 'l1_misses', 'l2_hits', 'l2_misses', 'negative_hits', 'fetches',
	'fetch_errors', 'fetch_waits', 'stale_fills_rejected', 'uncacheable',
	'too_large', 'evictions', 'expirations', 'invalidations_sent',
	'invalidations_received', 'redis_errors', 'entries', 'bytes_used',
	'bytes_total', 'arc_p', 't1', 't2', 'b1', 'b2', 'stats_reset', 'in_flight', 'invalidations_deferred']);
SELECT col_type_is('twocache_stats', 'l1_hits', 'bigint');
SELECT col_type_is('twocache_stats', 'redis_errors', 'bigint');
SELECT col_type_is('twocache_stats', 'bytes_total', 'bigint');
SELECT col_type_is('twocache_stats', 'b2', 'bigint');
SELECT col_type_is('twocache_stats', 'stats_reset', 'timestamp with time zone');
SELECT is(
	(SELECT count(*)::int FROM pg_attribute
	 WHERE attrelid = 'twocache_stats'::regclass AND attnum > 0
	   AND attname <> 'stats_reset' AND atttypid <> 'bigint'::regtype),
	0, 'every counter of twocache_stats is a bigint');
SELECT is(obj_description('twocache_stats'::regclass, 'pg_class') IS NOT NULL, true,
	'the view has a comment');
-- the view is the function
SELECT is((SELECT count(*)::int FROM twocache_stats), 1, 'the view has one row');
SELECT is(
	(SELECT count(*)::int FROM (SELECT * FROM twocache_stats
								EXCEPT SELECT * FROM twocache_stats()) d),
	0, 'the view shows what twocache_stats() returns');
SELECT is((SELECT mode FROM twocache_status()), 'local', 'local mode without a Redis URL');
SELECT ok((SELECT redis_node IS NULL AND redis_role IS NULL FROM twocache_status()),
	'no Redis node and no role in local mode');

SELECT * FROM finish();
ROLLBACK;
