--
-- settings: the twocache.* settings, their contexts and defaults, and what
-- SET may change
--
SELECT twocache_flush_local() IS NOT NULL AS flushed;
SELECT twocache_stats_reset();

-- every setting with its context, unit and built-in default
SELECT name, context, vartype, unit, boot_val, min_val, max_val, enumvals
FROM pg_settings WHERE name LIKE 'twocache.%' ORDER BY name;

-- the values in effect: test/twocache.conf sets the first three
SHOW twocache.max_entries;
SHOW twocache.memory;
SHOW twocache.partitions;
SHOW twocache.max_value_size;
SHOW twocache.default_ttl;
SHOW twocache.not_found_ttl;
SHOW twocache.local_max_ttl;
SHOW twocache.fetch_wait_timeout;
SHOW twocache.scope;
-- empty in the configuration: generated at start, seen in twocache_status()
SHOW twocache.instance_id;
SELECT length(instance_id) > 0 AS generated FROM twocache_status();

-- user settings: SET, SET LOCAL, RESET, with units
SET twocache.default_ttl = '5s';
SHOW twocache.default_ttl;
SET twocache.default_ttl = 250;
SHOW twocache.default_ttl;
SET twocache.default_ttl = '2h';
SHOW twocache.default_ttl;
RESET twocache.default_ttl;
SHOW twocache.default_ttl;
SET twocache.not_found_ttl = 0;
SHOW twocache.not_found_ttl;
SET twocache.not_found_ttl = '30s';
SHOW twocache.not_found_ttl;
RESET twocache.not_found_ttl;
SET twocache.fetch_wait_timeout = '100ms';
SHOW twocache.fetch_wait_timeout;
RESET twocache.fetch_wait_timeout;
BEGIN;
SET LOCAL twocache.default_ttl = '1min';
SELECT twocache_set('s:local', 'v');
SELECT twocache_ttl('s:local') BETWEEN 50000 AND 60000 AS about_1min;
COMMIT;
SHOW twocache.default_ttl;
SELECT twocache_set('s:local', 'v');
SELECT twocache_ttl('s:local');
SELECT set_config('twocache.not_found_ttl', '2min', false);
SHOW twocache.not_found_ttl;
RESET twocache.not_found_ttl;
-- a role or database may carry its own value
DO $$
BEGIN
	EXECUTE format('ALTER DATABASE %I SET twocache.default_ttl = %L',
				   current_database(), '7s');
END
$$;
SELECT s FROM pg_db_role_setting, unnest(setconfig) AS s
WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND setrole = 0 AND s LIKE 'twocache.%';
DO $$
BEGIN
	EXECUTE format('ALTER DATABASE %I RESET twocache.default_ttl',
				   current_database());
END
$$;
SELECT count(*) FROM pg_db_role_setting, unnest(setconfig) AS s
WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND setrole = 0 AND s LIKE 'twocache.%';

-- invalid values of user settings: 22023
SET twocache.default_ttl = -1;
\echo :LAST_ERROR_SQLSTATE
SET twocache.not_found_ttl = '1 fortnight';
\echo :LAST_ERROR_SQLSTATE
SET twocache.fetch_wait_timeout = '3000000000';
\echo :LAST_ERROR_SQLSTATE
SHOW twocache.default_ttl;

-- postmaster settings cannot be changed with SET: 55P02
SET twocache.max_entries = 5;
\echo :LAST_ERROR_SQLSTATE
SET twocache.memory = '1GB';
\echo :LAST_ERROR_SQLSTATE
SET twocache.partitions = 1;
\echo :LAST_ERROR_SQLSTATE
SET twocache.instance_id = 'node-a';
\echo :LAST_ERROR_SQLSTATE
-- sighup settings neither
SET twocache.max_value_size = '2MB';
\echo :LAST_ERROR_SQLSTATE
SET twocache.local_max_ttl = '1h';
\echo :LAST_ERROR_SQLSTATE
SET twocache.scope = 'cluster';
\echo :LAST_ERROR_SQLSTATE
SHOW twocache.scope;

-- values are checked when written to the configuration: invalid ones are
-- refused (ALTER SYSTEM writes nothing then)
ALTER SYSTEM SET twocache.scope = 'galaxy';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.max_entries = 0;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.partitions = 100000;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.memory = '64kB';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.instance_id = 'has space';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.instance_id = 'é';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.instance_id =
	'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn';
\echo :LAST_ERROR_SQLSTATE
-- twocache.redis_url in the forms of SPEC section 9: a refused URL is never
-- quoted (it may hold a password); an accepted one is taken out again before
-- any reload could apply it
ALTER SYSTEM SET twocache.redis_url = 'redis-sentinel://:pw@s1:26380,s2,[::1]/2#mymaster';
\echo :SQLSTATE
ALTER SYSTEM SET twocache.redis_url = 'rediss-cluster://:pw@[::1]:7000,[::1]:7001';
\echo :SQLSTATE
ALTER SYSTEM RESET twocache.redis_url;
-- a sentinel URL without its master's name
ALTER SYSTEM SET twocache.redis_url = 'redis-sentinel://:pw@s1,s2/0';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.redis_url = 'redis-sentinel://:pw@s1#my master';
\echo :LAST_ERROR_SQLSTATE
-- Redis Cluster has only database 0
ALTER SYSTEM SET twocache.redis_url = 'redis-cluster://:pw@n1,n2/1';
\echo :LAST_ERROR_SQLSTATE
-- at most 16 hosts, none of them empty, and several only for Sentinel or Cluster
ALTER SYSTEM SET twocache.redis_url =
	'redis-cluster://n0,n1,n2,n3,n4,n5,n6,n7,n8,n9,n10,n11,n12,n13,n14,n15,n16';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.redis_url = 'redis-cluster://n1,,n2';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.redis_url = 'redis://:pw@h1,h2';
\echo :LAST_ERROR_SQLSTATE
-- a #fragment only names a Sentinel master
ALTER SYSTEM SET twocache.redis_url = 'redis://:pw@host:6379/0#x';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twocache.redis_url = 'redis-cluster://:pw@n1#x';
\echo :LAST_ERROR_SQLSTATE
-- nothing of it was left in the configuration
SELECT count(*) FROM pg_file_settings WHERE name = 'twocache.redis_url';

-- the twocache prefix is reserved: unknown names are errors, not
-- placeholders
SET twocache.foo = 1;
\echo :LAST_ERROR_SQLSTATE
SHOW twocache.foo;
\echo :LAST_ERROR_SQLSTATE
SELECT current_setting('twocache.foo', true) IS NULL AS unknown;
SELECT count(*) FROM pg_settings WHERE name = 'twocache.foo';

-- a transaction that has written data gets the fetched value, but it is not
-- cached: the value may show uncommitted rows
CREATE TABLE settings_t (a int);
INSERT INTO settings_t VALUES (1);
SELECT twocache_stats_reset();
BEGIN;
SELECT twocache_get('s:before-write', 'SELECT count(*) FROM settings_t');
INSERT INTO settings_t VALUES (2);
SELECT twocache_get('s:after-write', 'SELECT count(*) FROM settings_t');
SELECT twocache_exists('s:before-write'), twocache_exists('s:after-write');
-- each get fetches again
SELECT twocache_get('s:after-write', 'SELECT count(*) FROM settings_t');
-- an explicit set is still a set
SELECT twocache_set('s:set-in-write', 'v');
ROLLBACK;
SELECT twocache_exists('s:before-write'), twocache_exists('s:after-write'),
       twocache_exists('s:set-in-write');
SELECT fetches, uncacheable, l1_misses FROM twocache_stats;
-- a write in a subtransaction counts, even after it was rolled back
BEGIN;
SAVEPOINT sp;
INSERT INTO settings_t VALUES (3);
ROLLBACK TO SAVEPOINT sp;
SELECT twocache_get('s:after-savepoint', 'SELECT count(*) FROM settings_t');
COMMIT;
SELECT twocache_exists('s:after-savepoint');
-- a read-only transaction, and one that only read, do cache
BEGIN READ ONLY;
SELECT twocache_get('s:read-only', 'SELECT count(*) FROM settings_t');
COMMIT;
BEGIN;
SELECT count(*) FROM settings_t;
SELECT twocache_get('s:read', 'SELECT count(*) FROM settings_t');
COMMIT;
SELECT twocache_exists('s:read-only'), twocache_exists('s:read');
SELECT fetches, uncacheable FROM twocache_stats;
-- a read-only transaction may still write temporary tables, and so may a
-- fetch query: then its own value is returned but not cached
CREATE TEMP TABLE settings_tmp (a int);
SELECT twocache_get('s:temp-write', 'INSERT INTO settings_tmp VALUES (1) RETURNING a');
SELECT twocache_exists('s:temp-write'), (SELECT count(*) FROM settings_tmp) AS rows;
SELECT fetches, uncacheable FROM twocache_stats;
DROP TABLE settings_t;
SELECT twocache_flush_local() > 0 AS flushed;
