--
-- errors: every SQLSTATE of SPEC sections 3 and 4, and the cache is left as
-- it was after each of them
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();

-- the SQLSTATE and message of a statement's error, or 'ok'
CREATE FUNCTION errors_try(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- a key and some counters that must survive every error below
SELECT twocache_set('e:keep', 'kept');
SELECT twocache_get('e:fetched', 'SELECT ''fetched''');
CREATE TEMP TABLE errors_before AS SELECT * FROM twocache_stats;

-- keys: NULL 22004, empty 22023, over 1024 bytes 54000, for every function
-- that takes one
SELECT f, errors_try(format(f, 'NULL')) AS null_key,
       errors_try(format(f, '''''')) AS empty_key,
       errors_try(format(f, 'repeat(''k'', 1025)')) AS long_key
FROM (VALUES ('SELECT twocache_get(%s)'),
             ('SELECT twocache_get(%s, ''SELECT 1'')'),
             ('SELECT twocache_set(%s, ''v'')'),
             ('SELECT twocache_del(%s)'),
             ('SELECT twocache_local_set(%s, ''v'')'),
             ('SELECT twocache_local_del(%s)'),
             ('SELECT twocache_exists(%s)'),
             ('SELECT twocache_ttl(%s)'),
             ('SELECT * FROM twocache_mget(ARRAY[''e:keep'', %s])')) AS t(f)
ORDER BY f;
-- the limit is in bytes, not characters
SELECT errors_try($$SELECT twocache_set(repeat('é', 512) || 'x', 'v')$$);
-- the messages
SELECT twocache_get(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_set('', 'v');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_del(repeat('k', 1025));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM twocache_mget(ARRAY['e:keep', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM twocache_mget(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM twocache_mget(ARRAY[['e:keep', 'e:fetched'], ['a', 'b']]);
\echo :LAST_ERROR_SQLSTATE

-- values: NULL 22004, over twocache.max_value_size (1MB) 54000
SHOW twocache.max_value_size;
SELECT twocache_set('e:keep', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_local_set('e:keep', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_set('e:keep', repeat('x', 1024 * 1024 + 1));
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_local_set('e:keep', repeat('x', 1024 * 1024 + 1));
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_set('e:keep', repeat('x', 5 * 1024 * 1024));
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_set('e:keep', repeat('x', 1024 * 1024 + 1), NULL, 'absent');
\echo :LAST_ERROR_SQLSTATE

-- TTL: negative 22023, out of range 22008
SELECT twocache_set('e:keep', 'new', '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT f, errors_try(format(f, ttl)) AS result
FROM (VALUES ('SELECT twocache_set(''e:keep'', ''new'', %L)'),
             ('SELECT twocache_local_set(''e:keep'', ''new'', %L)'),
             ('SELECT twocache_get(''e:new'', ''SELECT 1'', %L)')) AS f(f),
     (VALUES ('-1 ms'), ('-1 microsecond'), ('-1 day +23 hours'),
             ('-1 mon'), ('100000000 years')) AS t(ttl)
ORDER BY f, ttl;
SELECT twocache_set('e:keep', 'new', '100000000 years');
\echo :LAST_ERROR_SQLSTATE

-- only_if: anything but 'absent', 'present' or NULL is 22023
SELECT twocache_set('e:keep', 'new', NULL, 'sometimes');
\echo :LAST_ERROR_SQLSTATE
SELECT o, errors_try(format('SELECT twocache_set(''e:keep'', ''new'', NULL, %L)', o))
FROM (VALUES ('ABSENT'), ('Present'), (''), ('nx'), ('xx'), (' absent')) AS t(o)
ORDER BY o;

-- the fetch query: empty is 22023
SELECT twocache_get('e:new', '');
\echo :LAST_ERROR_SQLSTATE

-- none of the errors so far changed the cache or counted anything
SELECT key, list, value_bytes, expires_at FROM twocache_entries() ORDER BY key;
SELECT (SELECT row(l1_hits, l1_misses, negative_hits, fetches, fetch_errors,
                   stale_fills_rejected, uncacheable, too_large, evictions,
                   expirations, entries, bytes_used, t1, t2, b1, b2, in_flight)
        FROM errors_before) =
       (SELECT row(l1_hits, l1_misses, negative_hits, fetches, fetch_errors,
                   stale_fills_rejected, uncacheable, too_large, evictions,
                   expirations, entries, bytes_used, t1, t2, b1, b2, in_flight)
        FROM twocache_stats) AS unchanged;
SELECT twocache_get('e:keep'), twocache_ttl('e:keep');
-- exactly max_value_size is allowed, with the longest key
SELECT twocache_set(repeat('k', 1024), repeat('x', 1024 * 1024));
SELECT octet_length(twocache_get(repeat('k', 1024)));
SELECT twocache_del(repeat('k', 1024));
SELECT twocache_stats_reset();

-- fetch query shape: more than one row 21000, other shapes 42804
SELECT twocache_get('e:rows', 'SELECT 1 FROM generate_series(1, 2)');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('e:cols', 'SELECT 1, interval ''1 hour'', 3');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('e:cols', 'SELECT 1, 2');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('e:cols', 'SELECT');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('e:cols', 'DO $x$ BEGIN END $x$');
\echo :LAST_ERROR_SQLSTATE
SELECT q, errors_try(format('SELECT twocache_get(''e:shape'', %L)', q))
FROM (VALUES ('SELECT 1 FROM generate_series(1, 1000)'),
             ('SELECT NULL UNION ALL SELECT NULL'),
             ('SELECT 1, ''1 hour''::text'),
             ('SELECT 1, 3600'),
             ('SELECT 1, NULL::int'),
             ('SELECT 1, 2, 3, 4'),
             ('SELECT 1; SELECT 2'),
             ('LOCK TABLE errors_before'),
             ('   '),
             ('-- only a comment')) AS t(q)
ORDER BY q;
-- a TTL column that is negative is 22023, out of range 22008
SELECT twocache_get('e:ttl', 'SELECT ''v'', interval ''-1 s''');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('e:ttl', 'SELECT ''v'', interval ''100000000 years''');
\echo :LAST_ERROR_SQLSTATE

-- a fetch query that writes: 25006
CREATE TABLE errors_t (a int);
CREATE SEQUENCE errors_s;
CREATE FUNCTION errors_writer() RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO errors_t VALUES (1);
	RETURN 1;
END
$$;
SELECT twocache_get('e:write', 'INSERT INTO errors_t VALUES (1) RETURNING a');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get('e:write', 'SELECT errors_writer()');
\echo :LAST_ERROR_SQLSTATE
SELECT q, errors_try(format('SELECT twocache_get(''e:write'', %L)', q))
FROM (VALUES ('INSERT INTO errors_t VALUES (1) RETURNING a'),
             ('UPDATE errors_t SET a = 2 RETURNING a'),
             ('DELETE FROM errors_t RETURNING a'),
             ('SELECT nextval(''errors_s'')'),
             ('SELECT setval(''errors_s'', 5)'),
             ('CREATE TABLE errors_new (a int)'),
             ('SELECT 1 INTO errors_new'),
             ('SELECT a FROM errors_t FOR UPDATE'),
             ('SELECT a FROM errors_t FOR SHARE'),
             ('WITH w AS (INSERT INTO errors_t VALUES (1) RETURNING a) SELECT a FROM w'),
             ('SELECT errors_writer()'),
             ('TRUNCATE errors_t'),
             ('SELECT 1; INSERT INTO errors_t VALUES (1)')) AS t(q)
ORDER BY q;
SELECT count(*) FROM errors_t;
SELECT last_value, is_called FROM errors_s;
SELECT to_regclass('errors_new');
-- the session's transaction is not left read-only
BEGIN;
SELECT twocache_get('e:ro', 'SELECT ''read''');
SHOW transaction_read_only;
INSERT INTO errors_t VALUES (1);
ROLLBACK;
DO $$
BEGIN
	PERFORM twocache_get('e:ro2', 'INSERT INTO errors_t VALUES (1) RETURNING a');
EXCEPTION WHEN read_only_sql_transaction THEN
	INSERT INTO errors_t VALUES (1);
	RAISE NOTICE 'caught %, then inserted % row', SQLSTATE, (SELECT count(*) FROM errors_t);
END
$$;
TRUNCATE errors_t;

-- malformed SQL: 42601, with the query and the key
SELECT twocache_get('e:syntax', 'SELEC 1');
\echo :LAST_ERROR_SQLSTATE
-- the fetch query's own errors reach the caller unchanged, with a CONTEXT
-- line naming the key
SELECT twocache_get('e:div', 'SELECT 1/0');
\echo :LAST_ERROR_SQLSTATE
SELECT twocache_get(E'e:odd key\nwith "quotes"', 'SELECT * FROM errors_missing');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION errors_fail() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION USING ERRCODE = 'TC042', MESSAGE = 'custom failure',
		DETAIL = 'Some detail.', HINT = 'Some hint.';
END
$$;
SELECT twocache_get('e:custom', 'SELECT errors_fail()');
\echo :LAST_ERROR_SQLSTATE
SELECT errors_try('SELECT twocache_get(''e:custom'', ''SELECT errors_fail()'')');
-- cancellation during a fetch (here statement_timeout) is an error too
SET statement_timeout = '200ms';
\set VERBOSITY sqlstate
SELECT twocache_get('e:slow', 'SELECT pg_sleep(10)::text');
\set VERBOSITY default
RESET statement_timeout;

-- after all these failed fetches: nothing stored, no flight left behind,
-- each counted in fetch_errors
SELECT key FROM twocache_entries() ORDER BY key;
SELECT fetches, fetch_errors, l1_misses, l1_hits, negative_hits, in_flight
FROM twocache_stats;
SELECT twocache_get('e:keep'), twocache_get('e:fetched');
-- a failed key can be fetched again at once
SELECT twocache_get('e:div', 'SELECT 1/1');
SELECT twocache_get('e:custom', 'SELECT ''fine''');
SELECT twocache_get('e:div'), twocache_get('e:custom');

DROP FUNCTION errors_try(text);
DROP FUNCTION errors_writer();
DROP FUNCTION errors_fail();
DROP TABLE errors_t;
DROP SEQUENCE errors_s;
SELECT twocache_flush_local() > 0 AS flushed;
