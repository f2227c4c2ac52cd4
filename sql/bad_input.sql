--
-- bad_input: every argument of every SQL function of SPEC section 2 with bad
-- values, one case per row of a table, and the cache left exactly as it was
--
-- Each case is a statement and the SQLSTATE it must raise ('00000' for a
-- statement that must succeed without changing the cache). bad_input_run()
-- runs them in order with EXECUTE, catches the error, and reports expected
-- against got. It only reads, so the cases run in a transaction without a
-- transaction id, as a plain SELECT would: a case that wrongly succeeded
-- would be cached, and the checks after the cases would see it.
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();
-- placeholders must outlive the test, however slowly it runs (valgrind)
SET twocache.not_found_ttl = '1d';
SHOW twocache.max_value_size;

-- data that fetch queries try to change
CREATE TABLE bad_input_t (a int);
INSERT INTO bad_input_t VALUES (1);
CREATE SEQUENCE bad_input_s;
CREATE FUNCTION bad_input_plpgsql_writer() RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bad_input_t VALUES (2);
	RETURN 2;
END
$$;
CREATE FUNCTION bad_input_sql_writer() RETURNS int
LANGUAGE sql AS $$ UPDATE bad_input_t SET a = a + 1 RETURNING a $$;

-- a key for display: long ones shortened, odd bytes escaped
CREATE FUNCTION bad_input_show(k text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN octet_length(k) > 40
		THEN format('%s...%s (%s bytes)', left(k, 4), right(k, 2), octet_length(k))
		ELSE '''' || replace(k, E'\n', '\n') || '''' END
$$;

-- the cache before: keys resident in T1 and T2, a placeholder, TTLs, the
-- longest keys (ASCII and multibyte), an empty value, odd bytes
SELECT twocache_local_set('bi:local', 'local value');
SELECT twocache_set('bi:set', 'set value', '1 hour');
SELECT twocache_set('bi:empty', '');
SELECT twocache_set(repeat('k', 1024), 'longest key');
SELECT twocache_set(repeat('k', 1022) || 'é', 'longest multibyte key');
SELECT twocache_set(E'bi:odd key\n|:%', 'odd key');
SELECT twocache_get('bi:fetched', 'SELECT ''fetched value''');
SELECT twocache_get('bi:fetched-ttl', 'SELECT ''fetched, own TTL'', interval ''1 day''');
SELECT twocache_get('bi:none', 'SELECT NULL::text') IS NULL AS placeholder;
SELECT twocache_get('bi:set'), twocache_get('bi:fetched');

CREATE TABLE bad_input_key (pos int PRIMARY KEY, key text NOT NULL);
INSERT INTO bad_input_key VALUES
	(1, 'bi:local'), (2, 'bi:set'), (3, 'bi:empty'), (4, repeat('k', 1024)),
	(5, repeat('k', 1022) || 'é'), (6, E'bi:odd key\n|:%'), (7, 'bi:fetched'),
	(8, 'bi:fetched-ttl'), (9, 'bi:none');

-- the values, read back (this moves entries to T2, so it comes before the
-- snapshot of the directory); the placeholder is not a value
CREATE TEMP TABLE bad_input_values_before AS
SELECT key, value
FROM twocache_mget((SELECT array_agg(key ORDER BY pos) FROM bad_input_key));
SELECT bad_input_show(key) AS key, format('%L', value) AS value
FROM bad_input_values_before ORDER BY key COLLATE "C";

-- the directory and the counters
CREATE TEMP TABLE bad_input_entries_before AS SELECT * FROM twocache_entries();
SELECT bad_input_show(key) AS key, list, value_bytes, negative,
       expires_at IS NOT NULL AS expires
FROM bad_input_entries_before ORDER BY key COLLATE "C";
CREATE TEMP TABLE bad_input_stats_before AS SELECT * FROM twocache_stats;
SELECT entries, t1, t2, b1, b2 FROM bad_input_stats_before;

-- the cases; runs_fetch marks those whose fetch query must run (and, unless
-- expected is 00000, fail)
CREATE TABLE bad_input_case (
	id serial PRIMARY KEY,
	fn text NOT NULL,
	input text NOT NULL,
	call text NOT NULL,
	expected text NOT NULL,
	runs_fetch boolean NOT NULL DEFAULT false
);

-- SPEC section 3, keys: NULL 22004, empty 22023, over 1024 bytes 54000 (a
-- 1025-byte key whose first 1024 bytes are a cached key must not reach it)
INSERT INTO bad_input_case (fn, input, call, expected)
SELECT f.fn, k.input || f.form, format(f.call, k.arg), k.expected
FROM (VALUES
	(1, 'twocache_get', '', 'SELECT twocache_get(%s)'),
	(2, 'twocache_get', ', with fetch and ttl', 'SELECT twocache_get(%s, ''SELECT 1'', ''1 s'')'),
	(3, 'twocache_set', '', 'SELECT twocache_set(%s, ''v'')'),
	(4, 'twocache_set', ', with ttl and only_if', 'SELECT twocache_set(%s, ''v'', ''1 s'', ''absent'')'),
	(5, 'twocache_del', '', 'SELECT twocache_del(%s)'),
	(6, 'twocache_local_set', '', 'SELECT twocache_local_set(%s, ''v'')'),
	(7, 'twocache_local_del', '', 'SELECT twocache_local_del(%s)'),
	(8, 'twocache_exists', '', 'SELECT twocache_exists(%s)'),
	(9, 'twocache_ttl', '', 'SELECT twocache_ttl(%s)'),
	(10, 'twocache_mget', ' as element 2 of 3', 'SELECT * FROM twocache_mget(ARRAY[''bi:set'', %s, ''bi:local''])'))
	AS f(n, fn, form, call),
	(VALUES
	(1, 'key NULL', 'NULL', '22004'),
	(2, 'key empty', '''''', '22023'),
	(3, 'key 1025 bytes', 'repeat(''k'', 1025)', '54000'),
	(4, 'key 1025 bytes, multibyte', 'repeat(''k'', 1022) || ''éx''', '54000'))
	AS k(n, input, arg, expected)
ORDER BY f.n, k.n;
-- NULL in every argument: the functions are not STRICT, so this is an error
-- too, not a NULL result
INSERT INTO bad_input_case (fn, input, call, expected) VALUES
	('twocache_get', 'key NULL, fetch NULL, ttl NULL', 'SELECT twocache_get(NULL, NULL, NULL)', '22004'),
	('twocache_set', 'key NULL, value NULL', 'SELECT twocache_set(NULL, NULL)', '22004'),
	('twocache_local_set', 'key NULL, value NULL', 'SELECT twocache_local_set(NULL, NULL)', '22004');

-- twocache_get: fetch_query and ttl (negative 22023, too large 22008), on a
-- missing key and on a cached one (arguments are checked before the lookup)
INSERT INTO bad_input_case (fn, input, call, expected) VALUES
	('twocache_get', 'fetch empty, key missing', 'SELECT twocache_get(''bi:miss'', '''')', '22023'),
	('twocache_get', 'fetch empty, key cached', 'SELECT twocache_get(''bi:set'', '''')', '22023'),
	('twocache_get', 'ttl -1 s, key missing', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''-1 s'')', '22023'),
	('twocache_get', 'ttl -1 s, key cached', 'SELECT twocache_get(''bi:set'', ''SELECT 1'', ''-1 s'')', '22023'),
	('twocache_get', 'ttl -1 s, no fetch', 'SELECT twocache_get(''bi:set'', NULL, ''-1 s'')', '22023'),
	('twocache_get', 'ttl -1 microsecond', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''-1 microsecond'')', '22023'),
	('twocache_get', 'ttl -1 mon', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''-1 mon'')', '22023'),
	('twocache_get', 'ttl 1 mon -31 days', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''1 mon -31 days'')', '22023'),
	('twocache_get', 'ttl 1000000 years', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''1000000 years'')', '22008'),
	('twocache_get', 'ttl 1000000 years, key cached', 'SELECT twocache_get(''bi:set'', ''SELECT 1'', ''1000000 years'')', '22008'),
	('twocache_get', 'ttl 2147483647 days', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''2147483647 days'')', '22008'),
	('twocache_get', 'ttl not an interval', 'SELECT twocache_get(''bi:miss'', ''SELECT 1'', ''forever'')', '22007');

-- twocache_get: fetch queries that fail (SPEC section 4): malformed SQL and
-- their own errors unchanged, writes 25006, more than one row 21000, other
-- shapes 42804, a TTL column that is negative 22023 or too large 22008
INSERT INTO bad_input_case (fn, input, call, expected, runs_fetch)
SELECT 'twocache_get', input,
       format('SELECT twocache_get(%L, %L)', 'bi:miss:' || n, q), expected, true
FROM (VALUES
	(1, 'fetch syntax error', 'SELEC 1', '42601'),
	(2, 'fetch of a missing table', 'SELECT a FROM bad_input_missing', '42P01'),
	(3, 'fetch with a parameter', 'SELECT $1', '42P02'),
	(4, 'fetch raises division by zero', 'SELECT 1/0', '22012'),
	(5, 'fetch INSERT', 'INSERT INTO bad_input_t VALUES (3) RETURNING a', '25006'),
	(6, 'fetch UPDATE', 'UPDATE bad_input_t SET a = 4 RETURNING a', '25006'),
	(7, 'fetch DELETE', 'DELETE FROM bad_input_t RETURNING a', '25006'),
	(8, 'fetch data-modifying CTE', 'WITH w AS (INSERT INTO bad_input_t VALUES (5) RETURNING a) SELECT a FROM w', '25006'),
	(9, 'fetch PL/pgSQL function that writes', 'SELECT bad_input_plpgsql_writer()', '25006'),
	(10, 'fetch SQL function that writes', 'SELECT bad_input_sql_writer()', '25006'),
	(11, 'fetch nextval()', 'SELECT nextval(''bad_input_s'')', '25006'),
	(12, 'fetch SELECT FOR UPDATE', 'SELECT a FROM bad_input_t FOR UPDATE', '25006'),
	(13, 'fetch CREATE TABLE', 'CREATE TABLE bad_input_new (a int)', '25006'),
	(14, 'fetch COMMIT', 'COMMIT', '0A000'),
	(15, 'fetch two rows', 'SELECT 1 UNION ALL SELECT 2', '21000'),
	(16, 'fetch two NULL rows', 'SELECT NULL::text FROM generate_series(1, 2)', '21000'),
	(17, 'fetch two statements', 'SELECT 1; SELECT 2', '21000'),
	(18, 'fetch three columns', 'SELECT ''v'', interval ''1 s'', 3', '42804'),
	(19, 'fetch zero columns', 'SELECT', '42804'),
	(20, 'fetch TTL column integer', 'SELECT ''v'', 3600', '42804'),
	(21, 'fetch TTL column text', 'SELECT ''v'', ''1 hour''::text', '42804'),
	(22, 'fetch TTL column untyped literal', 'SELECT ''v'', ''1 hour''', '42804'),
	(23, 'fetch TTL column NULL integer', 'SELECT ''v'', NULL::int', '42804'),
	(24, 'fetch returns no result set', 'DO $d$ BEGIN END $d$', '42804'),
	(25, 'fetch only whitespace', '   ', '42804'),
	(26, 'fetch only a comment', '-- nothing', '42804'),
	(27, 'fetch TTL column -1 s', 'SELECT ''v'', interval ''-1 s''', '22023'),
	(28, 'fetch TTL column 1 mon -31 days', 'SELECT ''v'', interval ''1 mon -31 days''', '22023'),
	(29, 'fetch TTL column 1000000 years', 'SELECT ''v'', interval ''1000000 years''', '22008'))
	AS t(n, input, q, expected)
ORDER BY n;

-- twocache_set: value NULL 22004, over max_value_size 54000 (the old value
-- stays), ttl, only_if (anything but NULL, 'absent' and 'present': 22023)
INSERT INTO bad_input_case (fn, input, call, expected) VALUES
	('twocache_set', 'value NULL, key cached', 'SELECT twocache_set(''bi:set'', NULL)', '22004'),
	('twocache_set', 'value NULL, key missing', 'SELECT twocache_set(''bi:miss'', NULL)', '22004'),
	('twocache_set', 'value NULL, only_if present', 'SELECT twocache_set(''bi:set'', NULL, NULL, ''present'')', '22004'),
	('twocache_set', 'value max_value_size + 1', 'SELECT twocache_set(''bi:set'', repeat(''x'', 1024 * 1024 + 1))', '54000'),
	('twocache_set', 'value max_value_size + 1, only_if present', 'SELECT twocache_set(''bi:set'', repeat(''x'', 1024 * 1024 + 1), NULL, ''present'')', '54000'),
	('twocache_set', 'value max_value_size + 1, key missing', 'SELECT twocache_set(''bi:miss'', repeat(''x'', 1024 * 1024 + 1))', '54000'),
	('twocache_set', 'value 5MB', 'SELECT twocache_set(''bi:set'', repeat(''x'', 5 * 1024 * 1024))', '54000'),
	('twocache_set', 'ttl -1 s', 'SELECT twocache_set(''bi:set'', ''new'', ''-1 s'')', '22023'),
	('twocache_set', 'ttl -1 microsecond', 'SELECT twocache_set(''bi:set'', ''new'', ''-1 microsecond'')', '22023'),
	('twocache_set', 'ttl -1 mon', 'SELECT twocache_set(''bi:set'', ''new'', ''-1 mon'')', '22023'),
	('twocache_set', 'ttl 1 mon -31 days', 'SELECT twocache_set(''bi:set'', ''new'', ''1 mon -31 days'')', '22023'),
	('twocache_set', 'ttl -1 s, only_if absent', 'SELECT twocache_set(''bi:set'', ''new'', ''-1 s'', ''absent'')', '22023'),
	('twocache_set', 'ttl 1000000 years', 'SELECT twocache_set(''bi:set'', ''new'', ''1000000 years'')', '22008'),
	('twocache_set', 'ttl 2147483647 days', 'SELECT twocache_set(''bi:set'', ''new'', ''2147483647 days'')', '22008'),
	('twocache_set', 'ttl not an interval', 'SELECT twocache_set(''bi:set'', ''new'', ''forever'')', '22007'),
	('twocache_set', 'only_if sometimes', 'SELECT twocache_set(''bi:set'', ''new'', NULL, ''sometimes'')', '22023'),
	('twocache_set', 'only_if empty', 'SELECT twocache_set(''bi:set'', ''new'', NULL, '''')', '22023'),
	('twocache_set', 'only_if ABSENT', 'SELECT twocache_set(''bi:miss'', ''new'', NULL, ''ABSENT'')', '22023'),
	('twocache_set', 'only_if '' present''', 'SELECT twocache_set(''bi:set'', ''new'', NULL, '' present'')', '22023'),
	('twocache_set', 'only_if nx', 'SELECT twocache_set(''bi:miss'', ''new'', NULL, ''nx'')', '22023'),
	('twocache_set', 'only_if xx', 'SELECT twocache_set(''bi:set'', ''new'', NULL, ''xx'')', '22023');

-- twocache_local_set: value and ttl
INSERT INTO bad_input_case (fn, input, call, expected) VALUES
	('twocache_local_set', 'value NULL', 'SELECT twocache_local_set(''bi:local'', NULL)', '22004'),
	('twocache_local_set', 'value max_value_size + 1', 'SELECT twocache_local_set(''bi:local'', repeat(''x'', 1024 * 1024 + 1))', '54000'),
	('twocache_local_set', 'value 5MB', 'SELECT twocache_local_set(''bi:local'', repeat(''x'', 5 * 1024 * 1024))', '54000'),
	('twocache_local_set', 'ttl -1 s', 'SELECT twocache_local_set(''bi:local'', ''new'', ''-1 s'')', '22023'),
	('twocache_local_set', 'ttl -1 microsecond', 'SELECT twocache_local_set(''bi:local'', ''new'', ''-1 microsecond'')', '22023'),
	('twocache_local_set', 'ttl -1 mon', 'SELECT twocache_local_set(''bi:local'', ''new'', ''-1 mon'')', '22023'),
	('twocache_local_set', 'ttl 1 mon -31 days', 'SELECT twocache_local_set(''bi:local'', ''new'', ''1 mon -31 days'')', '22023'),
	('twocache_local_set', 'ttl 1000000 years', 'SELECT twocache_local_set(''bi:local'', ''new'', ''1000000 years'')', '22008'),
	('twocache_local_set', 'ttl 2147483647 days', 'SELECT twocache_local_set(''bi:local'', ''new'', ''2147483647 days'')', '22008'),
	('twocache_local_set', 'ttl not an interval', 'SELECT twocache_local_set(''bi:local'', ''new'', ''forever'')', '22007');

-- twocache_mget: the array (NULL or a NULL element 22004, not
-- one-dimensional 2202E, not an array 22P02); no key is read before the
-- whole array has been checked
INSERT INTO bad_input_case (fn, input, call, expected) VALUES
	('twocache_mget', 'array NULL', 'SELECT * FROM twocache_mget(NULL)', '22004'),
	('twocache_mget', 'only element NULL', 'SELECT * FROM twocache_mget(ARRAY[NULL]::text[])', '22004'),
	('twocache_mget', 'last element NULL', 'SELECT * FROM twocache_mget(ARRAY[''bi:set'', ''bi:local'', NULL])', '22004'),
	('twocache_mget', 'two dimensions', 'SELECT * FROM twocache_mget(ARRAY[[''bi:set'', ''bi:local''], [''bi:empty'', ''bi:fetched'']])', '2202E'),
	('twocache_mget', 'not an array', 'SELECT * FROM twocache_mget(''bi:set'')', '22P02');

-- the functions without arguments take none
INSERT INTO bad_input_case (fn, input, call, expected)
SELECT f, 'an argument', format('SELECT * FROM %s(NULL)', f), '42883'
FROM unnest(ARRAY['twocache_local_keys', 'twocache_flush_local',
                  'twocache_entries', 'twocache_stats', 'twocache_stats_reset',
                  'twocache_status']) AS f;

-- calls that must succeed and leave the directory as it was: misses without
-- a fetch store nothing, and a fetched value over max_value_size is returned
-- uncached (too_large)
INSERT INTO bad_input_case (fn, input, call, expected, runs_fetch) VALUES
	('twocache_get', 'key missing, no fetch', 'SELECT twocache_get(''bi:miss'')', '00000', false),
	('twocache_get', 'key missing, fetch NULL, ttl NULL', 'SELECT twocache_get(''bi:miss'', NULL, NULL)', '00000', false),
	('twocache_get', 'fetched value max_value_size + 1', 'SELECT twocache_get(''bi:miss:big'', ''SELECT repeat(''''x'''', 1024 * 1024 + 1)'')', '00000', true),
	('twocache_del', 'key missing', 'SELECT twocache_del(''bi:miss'')', '00000', false),
	('twocache_local_del', 'key missing', 'SELECT twocache_local_del(''bi:miss'')', '00000', false),
	('twocache_exists', 'key missing', 'SELECT twocache_exists(''bi:miss'')', '00000', false),
	('twocache_ttl', 'key missing', 'SELECT twocache_ttl(''bi:miss'')', '00000', false),
	('twocache_mget', 'array empty', 'SELECT * FROM twocache_mget(''{}'')', '00000', false);

-- each case's SQLSTATE
CREATE FUNCTION bad_input_run(cases regclass)
RETURNS TABLE(id int, fn text, input text, expected text, got text, ok boolean)
LANGUAGE plpgsql AS $$
DECLARE
	c record;
BEGIN
	FOR c IN EXECUTE format('SELECT * FROM %s ORDER BY id', cases) LOOP
		BEGIN
			EXECUTE c.call;
			got := '00000';
		EXCEPTION WHEN OTHERS THEN
			got := SQLSTATE;
		END;
		id := c.id;
		fn := c.fn;
		input := c.input;
		expected := c.expected;
		ok := got = c.expected;
		RETURN NEXT;
	END LOOP;
END
$$;

SELECT * FROM bad_input_run('bad_input_case');

-- the directory is as it was: same keys, lists, positions, sizes, expiry
-- times, placeholders (rows that differ either way are listed)
(SELECT 'gone' AS diff, bad_input_show(key) AS key, list, pos, value_bytes, negative
 FROM (SELECT * FROM bad_input_entries_before EXCEPT SELECT * FROM twocache_entries()) b
 UNION ALL
 SELECT 'new', bad_input_show(key), list, pos, value_bytes, negative
 FROM (SELECT * FROM twocache_entries() EXCEPT SELECT * FROM bad_input_entries_before) a)
ORDER BY 1, 2;
-- counters that no case may move, and those that the fetch cases move
SELECT b.entries = a.entries AND b.bytes_used = a.bytes_used AND
       b.t1 = a.t1 AND b.t2 = a.t2 AND b.b1 = a.b1 AND b.b2 = a.b2 AND
       b.arc_p = a.arc_p AS sizes_unchanged,
       a.l1_hits - b.l1_hits AS l1_hits,
       a.negative_hits - b.negative_hits AS negative_hits,
       a.evictions - b.evictions AS evictions,
       a.expirations - b.expirations AS expirations,
       a.uncacheable - b.uncacheable AS uncacheable,
       a.stale_fills_rejected - b.stale_fills_rejected AS stale_fills_rejected,
       a.in_flight AS in_flight
FROM bad_input_stats_before b, twocache_stats a;
SELECT a.fetches - b.fetches = (SELECT count(*) FROM bad_input_case WHERE runs_fetch)
           AS fetches_as_cases,
       a.fetch_errors - b.fetch_errors =
           (SELECT count(*) FROM bad_input_case WHERE runs_fetch AND expected <> '00000')
           AS fetch_errors_as_cases,
       a.fetches - b.fetches AS fetches,
       a.fetch_errors - b.fetch_errors AS fetch_errors,
       a.l1_misses - b.l1_misses AS l1_misses,
       a.too_large - b.too_large AS too_large
FROM bad_input_stats_before b, twocache_stats a;
-- the values read back are the same
SELECT bad_input_show(coalesce(b.key, a.key)) AS key, b.value AS before, a.value AS after
FROM bad_input_values_before b
FULL JOIN twocache_mget((SELECT array_agg(key ORDER BY pos) FROM bad_input_key)) a
	ON a.key = b.key
WHERE a.value IS DISTINCT FROM b.value
ORDER BY 1;
SELECT bad_input_show(k.key) AS key, twocache_exists(k.key) AS exists,
       CASE WHEN twocache_ttl(k.key) < 0 THEN twocache_ttl(k.key)::text
            WHEN twocache_ttl(k.key) <= 3600000 THEN 'at most 1 hour'
            WHEN twocache_ttl(k.key) <= 86400000 THEN 'at most 1 day'
            ELSE 'unexpected: ' || twocache_ttl(k.key) END AS ttl
FROM bad_input_key k ORDER BY k.pos;
-- the fetch queries that tried to write changed nothing
SELECT a FROM bad_input_t;
SELECT last_value, is_called FROM bad_input_s;
SELECT to_regclass('bad_input_new') AS created;

--
-- values at the edges that are not errors: the largest TTLs, a negative
-- month with more positive days, sub-millisecond, zero, an empty value
--
CREATE TABLE bad_input_ok_case (LIKE bad_input_case INCLUDING DEFAULTS);
SELECT setval('bad_input_case_id_seq', 1000, false);
INSERT INTO bad_input_ok_case (fn, input, call, expected, runs_fetch) VALUES
	('twocache_set', 'ttl 100000 years', 'SELECT twocache_set(''bi:w:set-huge'', ''v'', ''100000 years'')', '00000', false),
	('twocache_local_set', 'ttl 100000 years', 'SELECT twocache_local_set(''bi:w:local-huge'', ''v'', ''100000 years'')', '00000', false),
	('twocache_get', 'ttl 100000 years', 'SELECT twocache_get(''bi:w:get-huge'', ''SELECT ''''v'''''', ''100000 years'')', '00000', true),
	('twocache_get', 'fetch TTL column 100000 years', 'SELECT twocache_get(''bi:w:fetch-huge'', ''SELECT ''''v'''', interval ''''100000 years'''''')', '00000', true),
	('twocache_set', 'ttl -1 mon +31 days', 'SELECT twocache_set(''bi:w:mixed'', ''v'', ''-1 mon +31 days'')', '00000', false),
	('twocache_set', 'ttl 1 day -23 hours', 'SELECT twocache_set(''bi:w:mixed2'', ''v'', ''1 day -23 hours'')', '00000', false),
	('twocache_set', 'ttl 1 microsecond', 'SELECT twocache_set(''bi:w:usec'', ''v'', ''1 microsecond'')', '00000', false),
	('twocache_set', 'ttl 0', 'SELECT twocache_set(''bi:w:zero'', ''v'', ''0'')', '00000', false),
	('twocache_get', 'fetch TTL column NULL', 'SELECT twocache_get(''bi:w:fetch-null-ttl'', ''SELECT ''''v'''', NULL::interval'')', '00000', true),
	('twocache_set', 'value empty', 'SELECT twocache_set(''bi:w:empty'', '''')', '00000', false),
	('twocache_local_set', 'value empty', 'SELECT twocache_local_set(''bi:w:local-empty'', '''')', '00000', false),
	('twocache_set', 'value max_value_size', 'SELECT twocache_set(''bi:w:max'', repeat(''x'', 1024 * 1024))', '00000', false),
	('twocache_set', 'only_if NULL', 'SELECT twocache_set(''bi:w:only-if'', ''v'', NULL, NULL)', '00000', false);
SELECT * FROM bad_input_run('bad_input_ok_case');
SELECT bad_input_show(k) AS key, octet_length(twocache_get(k)) AS value_bytes,
       CASE WHEN twocache_ttl(k) < 0 THEN twocache_ttl(k)::text
            WHEN twocache_ttl(k) > 3110399000000000 THEN 'about 100000 years'
            WHEN twocache_ttl(k) <= 3600000 THEN 'at most 1 hour'
            WHEN twocache_ttl(k) <= 86400000 THEN 'at most 1 day'
            ELSE 'unexpected: ' || twocache_ttl(k) END AS ttl
FROM unnest(ARRAY['bi:w:set-huge', 'bi:w:local-huge', 'bi:w:get-huge',
                  'bi:w:fetch-huge', 'bi:w:mixed', 'bi:w:mixed2', 'bi:w:zero',
                  'bi:w:fetch-null-ttl', 'bi:w:empty', 'bi:w:local-empty',
                  'bi:w:max', 'bi:w:only-if']) WITH ORDINALITY AS t(k, n)
ORDER BY n;
-- 1 microsecond rounds up to 1 ms, so that key has expired by now
SELECT pg_sleep(0.01);
SELECT twocache_exists('bi:w:usec'), twocache_ttl('bi:w:usec');

DROP FUNCTION bad_input_run(regclass);
DROP FUNCTION bad_input_show(text);
DROP FUNCTION bad_input_plpgsql_writer();
DROP FUNCTION bad_input_sql_writer();
DROP TABLE bad_input_case, bad_input_ok_case, bad_input_key, bad_input_t;
DROP SEQUENCE bad_input_s;
RESET twocache.not_found_ttl;
SELECT twocache_flush_local() > 0 AS flushed;
