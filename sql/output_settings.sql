--
-- output_settings: a fetched value is converted to text under fixed output
-- settings (DateStyle ISO, IntervalStyle postgres, extra_float_digits 3,
-- bytea_output hex), whatever the filling session's are; the filler's own
-- settings are back after the fetch, after a failed one too
--
SELECT twocache_flush_local() >= 0 AS flushed;

-- the four settings (and TimeZone) of this session
CREATE FUNCTION os_settings() RETURNS text LANGUAGE sql STABLE AS $$
	SELECT format('%s | %s | %s | %s | %s', current_setting('DateStyle'),
				  current_setting('IntervalStyle'),
				  current_setting('extra_float_digits'),
				  current_setting('bytea_output'), current_setting('TimeZone'))
$$;

-- a fetch that fails, caught: the SQLSTATE, and the settings seen after it
CREATE FUNCTION os_try(key text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN twocache_get(key, q);
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ' then ' || os_settings() || ' | ' || date '2026-03-04';
END
$$;

-- the filler: every setting far from the fixed ones
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -3;
SET bytea_output = 'escape';
SET TimeZone = 'UTC';
SELECT os_settings();
-- how this session writes the values by itself
SELECT timestamp '2026-03-04 05:00:00' AS ts,
	   timestamptz '2026-03-04 05:00:00+00' AS tstz,
	   date '2026-03-04' AS d,
	   interval '1 year 2 mons 3 days 04:05:06' AS i,
	   pi() AS f8, '\x00ff41'::bytea AS b;

-- the filler gets back the fixed-settings text, and its settings are its own
-- again after each fetch
SELECT twocache_get('os:ts', $$SELECT timestamp '2026-03-04 05:00:00'$$);
SELECT twocache_get('os:tstz', $$SELECT timestamptz '2026-03-04 05:00:00+00'$$);
SELECT twocache_get('os:date', $$SELECT date '2026-03-04'$$);
SELECT twocache_get('os:interval', $$SELECT interval '1 year 2 mons 3 days 04:05:06'$$);
SELECT twocache_get('os:float8', 'SELECT pi()');
SELECT twocache_get('os:float4', 'SELECT pi()::real');
SELECT twocache_get('os:bytea', $$SELECT '\x00ff41'::bytea$$);
SELECT twocache_get('os:row', $$SELECT ROW(date '2026-03-04', interval '36 hours', pi(), '\x41'::bytea)$$);
SELECT twocache_get('os:array', $$SELECT ARRAY[date '2026-03-04', date '2026-12-31']$$);
SELECT twocache_get('os:tsarray', $$SELECT ARRAY[timestamp '2026-03-04 05:00:00']$$);
SELECT os_settings();
-- in a transaction block too, where only the fetch itself can restore them
BEGIN;
SELECT twocache_get('os:in-block', $$SELECT date '2026-03-04'$$);
SELECT os_settings(), date '2026-03-04' AS d;
COMMIT;

-- text the fetch query makes itself is made under the fixed settings too;
-- the date order of DateStyle is kept, so input is read as the session reads it
SELECT twocache_get('os:inside', $$SELECT format('%s | %s | %s | %s', current_setting('DateStyle'),
	current_setting('IntervalStyle'), current_setting('extra_float_digits'),
	current_setting('bytea_output'))$$);
SELECT twocache_get('os:input', $$SELECT '04/03/2026'::date$$);
SELECT twocache_get('os:cast', $$SELECT (date '2026-03-04')::text || ' ' || (interval '1 day')::text$$);

-- a TTL column is still an interval, whatever IntervalStyle says
SELECT twocache_get('os:ttl', $$SELECT interval '2 days', interval '1 hour'$$);
SELECT twocache_ttl('os:ttl') BETWEEN 3590000 AND 3600000 AS fetched_ttl;

-- a nested fetch: the inner value and the outer's own column (converted after
-- the inner fetch has ended) are both fixed-settings text
CREATE TABLE os_t (d date);
INSERT INTO os_t VALUES ('2026-03-05');
SELECT twocache_get('os:outer',
					$$SELECT ROW(twocache_get('os:inner', 'SELECT date ''2026-03-04'''), d) FROM os_t$$);
SELECT twocache_get('os:inner');
SELECT os_settings();

-- a fetch that raises an error leaves the settings as they were
SELECT twocache_get('os:error', 'SELECT 1/0');
SELECT os_settings();
BEGIN;
SAVEPOINT s;
SELECT twocache_get('os:error', 'SELECT 1/0');
ROLLBACK TO SAVEPOINT s;
SELECT os_settings();
COMMIT;
-- caught in a PL/pgSQL EXCEPTION block: the rest of the block runs under the
-- session's settings
SELECT os_try('os:error', 'SELECT 1/0');
-- our own errors: a second row (after the first was converted), a statement
-- that returns no rows (a SET of its own, undone too)
SELECT os_try('os:error', $$SELECT date '2026-03-04' FROM generate_series(1, 2)$$);
SELECT os_try('os:error', $$SET DateStyle = 'German'$$);
SELECT os_settings();
BEGIN;
SELECT os_try('os:error', 'SELECT 1/0');
SELECT os_settings(), date '2026-03-04';
COMMIT;
-- and inside a fetch query, a caught error in a nested fetch leaves the
-- outer fetch under the fixed settings
SELECT twocache_get('os:outer-caught', $$SELECT os_try('os:error', 'SELECT 1/0')$$);
SELECT twocache_exists('os:error');
SELECT os_settings();
-- only a session-level SET made by the fetch query itself outlasts the
-- fetch, as one made inside a function with a SET clause does
SELECT twocache_get('os:sets', $$SELECT set_config('extra_float_digits', '1', false)$$);
SELECT os_settings();

-- another session, with its settings reset, reads the same text
\c
SET DateStyle = 'Postgres, MDY';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 0;
RESET bytea_output;
SELECT key, twocache_get(key) AS value
FROM unnest(ARRAY['os:ts', 'os:tstz', 'os:date', 'os:interval', 'os:float8',
				  'os:float4', 'os:bytea', 'os:row', 'os:array', 'os:tsarray',
				  'os:inside', 'os:input', 'os:cast', 'os:ttl', 'os:outer',
				  'os:inner', 'os:outer-caught', 'os:in-block']) WITH ORDINALITY AS k(key, n)
ORDER BY n;
-- read back as this session reads them, the values are the ones cached
SELECT twocache_get('os:date')::date = date '2026-03-04' AS same_date,
	   twocache_get('os:ts')::timestamp = timestamp '2026-03-04 05:00:00' AS same_timestamp,
	   twocache_get('os:tstz')::timestamptz = timestamptz '2026-03-04 05:00:00+00' AS same_timestamptz,
	   twocache_get('os:interval')::interval = interval '1 year 2 mons 3 days 04:05:06' AS same_interval,
	   twocache_get('os:float8')::float8 = pi() AS same_float8,
	   twocache_get('os:bytea')::bytea = '\x00ff41'::bytea AS same_bytea;
-- a fill by a session with the default settings caches the same text
SELECT twocache_local_del('os:date'), twocache_local_del('os:float8');
RESET ALL;
SELECT twocache_get('os:date', $$SELECT date '2026-03-04'$$),
	   twocache_get('os:float8', 'SELECT pi()');

SELECT twocache_flush_local() >= 0 AS flushed;
DROP TABLE os_t;
DROP FUNCTION os_try(text, text);
DROP FUNCTION os_settings();
