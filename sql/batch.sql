--
-- Fetch query parameters and batch read-through (1.4)
--
SET client_min_messages = warning;
CREATE TABLE batch_users (id int PRIMARY KEY, name text, born date);
INSERT INTO batch_users
SELECT i, 'user ' || i, DATE '2000-01-01' + i FROM generate_series(1, 20) i;
SELECT twocache_flush_local() >= 0 AS flushed;
SELECT twocache_stats_reset();

-- parameters: types inferred as PREPARE infers them
SELECT twocache_get('p:1', 'SELECT name FROM batch_users WHERE id = $1', NULL, NULL,
					ARRAY['1']);
SELECT twocache_get('p:2', 'SELECT name FROM batch_users WHERE id = $1 AND born > $2',
					NULL, NULL, ARRAY['2', '2000-01-01']);
-- named notation, a NULL parameter, an unused one (text)
SELECT twocache_get('p:3', 'SELECT coalesce($1, ''none'')', params => ARRAY[NULL]);
SELECT twocache_get('p:4', 'SELECT ''x''', params => ARRAY['unused']);
-- the second call is a hit
SELECT twocache_get('p:1', 'SELECT name FROM batch_users WHERE id = $1', NULL, NULL,
					ARRAY['1']);
-- an empty array: a prepared query without parameters
SELECT twocache_get('p:5', 'SELECT 42', params => '{}');

-- bad parameters: PostgreSQL's own SQLSTATEs, nothing cached
\set VERBOSITY sqlstate
SELECT twocache_get('p:6', 'SELECT name FROM batch_users WHERE id = $2', params => ARRAY['1']);
SELECT twocache_get('p:6', 'SELECT name FROM batch_users WHERE id = $1', params => ARRAY['one']);
SELECT twocache_get('p:6', 'SELECT name FROM batch_users WHERE id = $1', params => ARRAY[['1']]);
\set VERBOSITY default
SELECT twocache_get('p:6', 'SELECT name FROM batch_users WHERE id = $1', params => ARRAY['one']);
SELECT twocache_exists('p:6');

-- the kept plan follows DDL
SELECT twocache_get('p:7', 'SELECT name FROM batch_users WHERE id = $1', params => ARRAY['7']);
ALTER TABLE batch_users ALTER COLUMN name TYPE varchar(40);
SELECT twocache_get('p:8', 'SELECT name FROM batch_users WHERE id = $1', params => ARRAY['8']);

-- batch read-through: one fetch for the keys missing, rows (key, value)
SELECT twocache_stats_reset();
SELECT twocache_set('u:3', 'already cached');
SELECT key, value FROM twocache_mget(ARRAY['u:1', 'u:2', 'u:3', 'u:99', 'u:2'],
	'SELECT ''u:'' || id, name FROM batch_users WHERE ''u:'' || id = ANY ($1)')
ORDER BY key;
SELECT fetches, l1_hits, l1_misses FROM twocache_stats;
-- u:99 is remembered as not found
SELECT key, negative FROM twocache_entries() WHERE key LIKE 'u:%' ORDER BY key;
-- all hits now: no fetch
SELECT count(*) FROM twocache_mget(ARRAY['u:1', 'u:2', 'u:3', 'u:99'],
	'SELECT ''u:'' || id, name FROM batch_users WHERE ''u:'' || id = ANY ($1)');
SELECT fetches FROM twocache_stats;
-- a parameter after the key array, a TTL column, a key column of another
-- type (compared as its text)
SELECT key, value FROM twocache_mget(ARRAY['4', '5', '6'],
	'SELECT id, name, ''1 hour''::interval FROM batch_users
	 WHERE id::text = ANY ($1) AND id > $2', params => ARRAY['4'])
ORDER BY key;
SELECT twocache_ttl('5') BETWEEN 3000000 AND 3600000 AS ttl_from_row;
SELECT key, negative FROM twocache_entries() WHERE key IN ('4', '5', '6') ORDER BY key;
-- rows for keys not asked for are dropped
SELECT key, value FROM twocache_mget(ARRAY['w:1'],
	'SELECT ''w:'' || id, name FROM batch_users WHERE id <= 2');
SELECT twocache_exists('w:2');
-- the lookup form still never fetches
SELECT count(*) FROM twocache_mget(ARRAY['x:1']);
SELECT count(*) FROM twocache_mget(ARRAY[]::text[],
	'SELECT ''x'', ''y'' WHERE false');

-- bad batch queries: clear errors, nothing cached
\set VERBOSITY sqlstate
SELECT * FROM twocache_mget(ARRAY['y:1'], 'SELECT ''y:1''');
SELECT * FROM twocache_mget(ARRAY['y:1'], 'SELECT ''y:1'', 1, 2');
SELECT * FROM twocache_mget(ARRAY['y:1'], 'SELECT k, ''a'' FROM unnest($1) k, generate_series(1, 2)');
SELECT * FROM twocache_mget(ARRAY['y:1', 'y:2'], 'SELECT NULL::text, ''a''');
SELECT * FROM twocache_mget(ARRAY['y:1'], 'SELECT ''y:1'', ''a'' WHERE $3 IS NULL');
SELECT * FROM twocache_mget(ARRAY['y:1'], 'SELECT ''y:1'', ''a''', 'x');
SELECT * FROM twocache_mget(ARRAY['y:1', NULL], 'SELECT ''y:1'', ''a''');
SELECT * FROM twocache_mget(ARRAY['y:1'], '');
SELECT * FROM twocache_mget(NULL, 'SELECT ''y:1'', ''a''');
SELECT * FROM twocache_mget(ARRAY[['y:1']], 'SELECT ''y:1'', ''a''');
\set VERBOSITY default
SELECT * FROM twocache_mget(ARRAY['y:1'], 'SELECT k, ''a'' FROM unnest($1) k, generate_series(1, 2)');
SELECT * FROM twocache_mget(ARRAY['y:1', 'y:2'], 'SELECT ''y:1'', ''a'', $2', params => ARRAY['1']);
SELECT count(*) FROM twocache_entries() WHERE key LIKE 'y:%';
-- parameters the query does not use are text, as in the single form
SELECT * FROM twocache_mget(ARRAY['y:3'], 'SELECT ''y:3'', ''a''', NULL, NULL, ARRAY['1', '2']);
-- writes in the batch query fail as in any fetch
\set VERBOSITY sqlstate
SELECT * FROM twocache_mget(ARRAY['z:1'], 'INSERT INTO batch_users VALUES (100) RETURNING ''z:1'', ''a''');
\set VERBOSITY default

-- a batch inside a transaction that wrote: returned, not cached
BEGIN;
UPDATE batch_users SET name = 'changed' WHERE id = 10;
SELECT key, value FROM twocache_mget(ARRAY['u:10'],
	'SELECT ''u:'' || id, name FROM batch_users WHERE ''u:'' || id = ANY ($1)');
ROLLBACK;
SELECT twocache_exists('u:10');
SELECT uncacheable > 0 AS counted FROM twocache_stats;

-- more keys than one round guards (256): every key answered
SELECT twocache_stats_reset();
SELECT count(*) FROM twocache_mget(
	ARRAY(SELECT 'm:' || i FROM generate_series(1, 600) i),
	'SELECT k, pg_catalog.upper(k) FROM unnest($1) k');
SELECT fetches FROM twocache_stats;
SELECT count(*) FROM twocache_entries() WHERE key LIKE 'm:%';

DROP TABLE batch_users;
SELECT twocache_flush_local() > 0 AS flushed;
