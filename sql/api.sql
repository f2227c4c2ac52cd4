--
-- api: the SQL functions of SPEC section 2 in local mode
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();

-- twocache_get without a fetch query: a miss is NULL and stores nothing
SELECT twocache_get('api:a') IS NULL AS miss;
SELECT twocache_exists('api:a');

-- with a fetch query: the value is fetched, stored and returned
SELECT twocache_get('api:a', 'SELECT ''alpha''');
SELECT twocache_exists('api:a');
-- now a hit: the fetch query is not run again (it would fail)
SELECT twocache_get('api:a', 'SELECT 1/0');
SELECT twocache_get('api:a');
SELECT twocache_get(key => 'api:a', fetch_query => 'SELECT ''beta''');
SELECT l1_hits, l1_misses, fetches FROM twocache_stats;

-- twocache_set and only_if
SELECT twocache_set('api:b', 'one');
SELECT twocache_get('api:b');
SELECT twocache_set('api:b', 'two');
SELECT twocache_get('api:b');
SELECT twocache_set('api:b', 'three', NULL, 'absent');
SELECT twocache_get('api:b');
SELECT twocache_set('api:b', 'four', NULL, 'present');
SELECT twocache_get('api:b');
SELECT twocache_set('api:c', 'five', NULL, 'present');
SELECT twocache_exists('api:c');
SELECT twocache_set('api:c', 'six', only_if => 'absent');
SELECT twocache_get('api:c');
SELECT twocache_set(key => 'api:c', value => 'seven', only_if => 'present');
SELECT twocache_get('api:c');
-- the empty string is a value, not NULL
SELECT twocache_set('api:empty', '');
SELECT twocache_get('api:empty') = '' AS empty_string,
       twocache_exists('api:empty');

-- twocache_del: true only if the key was there
SELECT twocache_del('api:c');
SELECT twocache_del('api:c');
SELECT twocache_del('api:never-set');
SELECT twocache_get('api:c') IS NULL AS gone, twocache_exists('api:c');
-- set after del writes again; only_if absent succeeds
SELECT twocache_set('api:c', 'eight', NULL, 'absent');
SELECT twocache_get('api:c');

-- twocache_local_set and twocache_local_del
SELECT twocache_local_set('api:l', 'local');
SELECT twocache_get('api:l');
SELECT twocache_local_set('api:l', 'local again');
SELECT twocache_get('api:l');
SELECT twocache_local_del('api:l');
SELECT twocache_local_del('api:l');
SELECT twocache_get('api:l') IS NULL AS gone;

-- twocache_local_keys: every key with a value in L1
SELECT k FROM twocache_local_keys() AS k ORDER BY k;

-- twocache_exists and twocache_ttl never fetch and never count
SELECT twocache_stats_reset();
SELECT twocache_exists('api:a'), twocache_exists('api:nothing');
SELECT twocache_ttl('api:a'), twocache_ttl('api:nothing');
SELECT l1_hits, l1_misses, fetches FROM twocache_stats;

-- twocache_mget: one row per key found, in L1 only here
SELECT * FROM twocache_mget(ARRAY['api:a', 'api:missing', 'api:b'])
ORDER BY key;
-- duplicates give one row per array element
SELECT * FROM twocache_mget(ARRAY['api:b', 'api:a', 'api:b', 'api:missing'])
ORDER BY key, value;
SELECT count(*) FROM twocache_mget(ARRAY['api:missing', 'api:other']);
SELECT count(*) FROM twocache_mget('{}');
-- mget counts as reads
SELECT twocache_stats_reset();
SELECT count(*) FROM twocache_mget(ARRAY['api:a', 'api:b', 'api:missing']);
SELECT l1_hits, l1_misses, fetches FROM twocache_stats;

-- keys: any bytes up to 1024 of them
CREATE TEMP TABLE api_keys (label text, k text);
INSERT INTO api_keys VALUES
	('space', 'a key with spaces'),
	('newline', E'line one\nline two'),
	('pipe', 'a|b|c'),
	('colon', 'user:42:profile'),
	('tab', E'a\tb'),
	('quote', 'it''s "quoted"'),
	('backslash', E'back\\slash'),
	('utf8', 'ключ-キー-🔑'),
	('ascii 1024', repeat('k', 1024)),
	('utf8 1024', repeat('é', 512)),
	('one byte', 'x');
SELECT label, octet_length(k) AS bytes, twocache_set(k, 'value of ' || label)
FROM api_keys ORDER BY label;
SELECT label, twocache_get(k) = 'value of ' || label AS same,
       twocache_exists(k), twocache_ttl(k)
FROM api_keys ORDER BY label;
-- near-miss keys are different keys
SELECT twocache_get('a key with spaces ') IS NULL AS trailing_space,
       twocache_get('A KEY WITH SPACES') IS NULL AS upper_case,
       twocache_get(repeat('k', 1023)) IS NULL AS shorter,
       twocache_get('ключ-キー') IS NULL AS prefix;
-- local_keys returns the bytes unchanged
SELECT a.label FROM api_keys a JOIN twocache_local_keys() lk ON lk = a.k
ORDER BY a.label;
-- and so does mget
SELECT a.label, m.value FROM twocache_mget(ARRAY(SELECT k FROM api_keys)) m
JOIN api_keys a ON a.k = m.key ORDER BY a.label;
SELECT label, twocache_del(k) FROM api_keys ORDER BY label;
SELECT count(*) FROM twocache_local_keys() lk JOIN api_keys a ON lk = a.k;

-- values are text; callers cast, and fetched values go through the output
-- function of their type
SELECT twocache_get('api:int', 'SELECT 41 + 1')::int + 1 AS int_plus_one;
SELECT twocache_get('api:int');
SELECT twocache_get('api:numeric', 'SELECT 1.50::numeric(10,2)');
SELECT twocache_get('api:bool', 'SELECT 2 > 1');
SELECT twocache_get('api:array', 'SELECT ARRAY[1, 2, 3]');
SELECT twocache_get('api:jsonb',
	$$SELECT jsonb_build_object('b', 2, 'a', ARRAY[1, 2])$$);
SELECT twocache_get('api:jsonb')::jsonb -> 'a' AS a,
       twocache_get('api:jsonb')::jsonb ->> 'b' AS b;
SELECT twocache_get('api:text', $$SELECT 'it''s' || E'\n' || 'two lines'$$);
SELECT twocache_get('api:row', $$SELECT ROW(1, 'x')$$);
-- a fetch query can read tables
CREATE TEMP TABLE api_users (id int PRIMARY KEY, name text);
INSERT INTO api_users VALUES (1, 'ann'), (2, 'bob');
SELECT twocache_get('api:user:1', 'SELECT name FROM api_users WHERE id = 1');
-- cached: a change to the table is not seen until the key is dropped
UPDATE api_users SET name = 'anne' WHERE id = 1;
SELECT twocache_get('api:user:1', 'SELECT name FROM api_users WHERE id = 1');
SELECT twocache_del('api:user:1');
SELECT twocache_get('api:user:1', 'SELECT name FROM api_users WHERE id = 1');
-- a fetch query may nest twocache_get
SELECT twocache_get('api:outer',
	$$SELECT 'outer of ' || twocache_get('api:inner', 'SELECT ''inner''')$$);
SELECT twocache_get('api:inner'), twocache_get('api:outer');
-- even of its own key: the inner call does not wait for itself
SELECT twocache_get('api:self', $$SELECT twocache_get('api:self', 'SELECT 7')$$);
SELECT twocache_get('api:self');
SELECT in_flight FROM twocache_stats;

-- twocache_flush_local returns how many entries it dropped
SELECT twocache_flush_local();
SELECT twocache_set('api:f' || i, 'v') FROM generate_series(1, 5) i;
SELECT twocache_flush_local();
SELECT twocache_flush_local();
SELECT count(*) FROM twocache_local_keys();
SELECT count(*) FROM twocache_entries();

-- twocache_entries: a new key enters T1, a second access moves it to T2
SELECT twocache_set('api:e1', 'abc');
SELECT key, list, pos, value_bytes, expires_at, negative FROM twocache_entries();
SELECT twocache_get('api:e1');
SELECT key, list, pos, value_bytes, expires_at, negative FROM twocache_entries();
SELECT twocache_set('api:e2', 'defgh', '1 hour');
SELECT key, list, pos, value_bytes, expires_at IS NOT NULL AS expires, negative
FROM twocache_entries() ORDER BY list, pos, key;
-- a set of a resident key is an access too
SELECT twocache_set('api:e2', 'de');
SELECT key, list, pos, value_bytes, expires_at IS NOT NULL AS expires, negative
FROM twocache_entries() ORDER BY list, pos, key;
SELECT twocache_local_set('api:e3', 'x');
SELECT list, count(*), sum(value_bytes) FROM twocache_entries()
GROUP BY list ORDER BY list;
-- a delete leaves no ghost
SELECT twocache_del('api:e1');
SELECT twocache_local_del('api:e2');
SELECT key, list, pos, value_bytes, expires_at, negative FROM twocache_entries();
SELECT twocache_flush_local();

-- twocache_status in local mode: the worker runs, without connections, so
-- with no Redis node and no role
SELECT mode, length(instance_id) > 0 AS has_instance_id, worker_pid > 0 AS worker_runs,
       redis_connected, subscribed, reconnects, last_error, last_error_at,
       redis_node IS NULL AS no_node, redis_role IS NULL AS no_role
FROM twocache_status();

-- keys are per database (twocache.scope = database): another database of the
-- same server has its own keys, though flush_local drops every database's
SHOW twocache.scope;
SELECT current_database() AS api_db \gset
SELECT twocache_set('api:scoped', 'here');
CREATE DATABASE regress_twocache_api_other;
\c regress_twocache_api_other
CREATE EXTENSION twocache;
SELECT twocache_get('api:scoped') IS NULL AS not_here;
SELECT twocache_set('api:scoped', 'there');
SELECT twocache_get('api:scoped');
SELECT k AS key FROM twocache_local_keys() k;
\c :api_db
SELECT twocache_get('api:scoped');
SELECT k AS key FROM twocache_local_keys() k;
SELECT twocache_flush_local();
DROP DATABASE regress_twocache_api_other;
