--
-- Tags (1.1): twocache_get and twocache_set store tags with an entry, and
-- twocache_invalidate_tag drops every entry carrying a tag.  Local mode.
--
SELECT twocache_flush_local() >= 0 AS flushed;

CREATE TABLE tag_src (id int PRIMARY KEY, v text);
INSERT INTO tag_src VALUES (1, 'one'), (2, 'two'), (3, 'three');

-- fills and sets with tags; one entry without
SELECT twocache_get('t:1', 'SELECT v FROM tag_src WHERE id = 1', NULL, ARRAY['tag_src', 'row:1']);
SELECT twocache_get('t:2', 'SELECT v FROM tag_src WHERE id = 2', NULL, ARRAY['tag_src']);
SELECT twocache_get('t:none', 'SELECT v FROM tag_src WHERE id = 99', NULL, ARRAY['tag_src']) IS NULL AS placeholder;
SELECT twocache_set('t:set', 'set value', NULL, NULL, ARRAY['other', 'tag_src']);
SELECT twocache_set('t:other', 'other value', '1 hour', NULL, ARRAY['other']);
SELECT twocache_get('t:plain', 'SELECT v FROM tag_src WHERE id = 3');
SELECT k FROM twocache_local_keys() k WHERE k LIKE 't:%' ORDER BY k;

-- a tag nobody carries drops nothing
SELECT twocache_invalidate_tag('nobody');
SELECT twocache_invalidate_tag('row:2');

-- invalidating tag_src drops the four entries carrying it, placeholder
-- included, and nothing else; it returns how many resident entries went
UPDATE tag_src SET v = 'uno' WHERE id = 1;
SELECT twocache_invalidate_tag('tag_src');
SELECT k FROM twocache_local_keys() k WHERE k LIKE 't:%' ORDER BY k;
SELECT key FROM twocache_entries() WHERE key LIKE 't:%' AND list IN ('T1', 'T2') ORDER BY key;
SELECT twocache_get('t:1', 'SELECT v FROM tag_src WHERE id = 1', NULL, ARRAY['tag_src']);

-- an entry rewritten without tags no longer carries them
SELECT twocache_set('t:other', 'untagged');
SELECT twocache_invalidate_tag('other');
SELECT twocache_get('t:other');

-- a tag matches exactly, byte for byte; tags are deduplicated
SELECT twocache_set('t:exact', 'x', NULL, NULL, ARRAY['Tag', 'Tag', 'tag:' || chr(10) || 'b']);
SELECT twocache_invalidate_tag('tag');
SELECT twocache_invalidate_tag('tag:');
SELECT twocache_get('t:exact');
SELECT twocache_invalidate_tag('tag:' || chr(10) || 'b');
SELECT twocache_get('t:exact') IS NULL AS dropped;

-- an empty tag array is no tags; NULL is none
SELECT twocache_set('t:empty', 'e', NULL, NULL, ARRAY[]::text[]);
SELECT twocache_set('t:null', 'n', NULL, NULL, NULL);
SELECT twocache_get('t:empty'), twocache_get('t:null');

-- the cache's other contents survive
SELECT twocache_get('t:plain');

-- bad tags: SQLSTATEs as for keys, and the cache is unchanged
\set VERBOSITY sqlstate
SELECT twocache_set('t:bad', 'b', NULL, NULL, ARRAY['ok', NULL]);
SELECT twocache_set('t:bad', 'b', NULL, NULL, ARRAY['']);
SELECT twocache_set('t:bad', 'b', NULL, NULL, ARRAY[repeat('x', 1025)]);
SELECT twocache_set('t:bad', 'b', NULL, NULL, (SELECT array_agg(i::text) FROM generate_series(1, 65) i));
SELECT twocache_set('t:bad', 'b', NULL, NULL, ARRAY[['a'], ['b']]);
SELECT twocache_get('t:bad', 'SELECT ''b''', NULL, ARRAY[NULL]::text[]);
SELECT twocache_invalidate_tag(NULL);
SELECT twocache_invalidate_tag('');
SELECT twocache_invalidate_tag(repeat('x', 1025));
\set VERBOSITY default
SELECT twocache_get('t:bad') IS NULL AS not_written;
SELECT twocache_set('t:max', 'm', NULL, NULL, (SELECT array_agg(i::text) FROM generate_series(1, 64) i));
SELECT twocache_set('t:long', 'l', NULL, NULL, ARRAY[repeat('y', 1024)]);
SELECT twocache_invalidate_tag('64'), twocache_invalidate_tag(repeat('y', 1024));

-- inside a transaction block the invalidation is applied again after
-- commit: a value cached after the invalidation, before the commit, goes
BEGIN;
SELECT twocache_set('t:txn', 'before', NULL, NULL, ARRAY['txn']);
SELECT twocache_invalidate_tag('txn');
SELECT twocache_local_set('t:txn2', 'refilled');
SELECT twocache_set('t:txn3', 'tagged later', NULL, NULL, ARRAY['txn']);
COMMIT;
SELECT twocache_get('t:txn3') IS NULL AS dropped_after_commit, twocache_get('t:txn2') AS untagged_kept;

-- a rollback does not apply it again
SELECT twocache_set('t:rb', 'kept', NULL, NULL, ARRAY['rb']);
BEGIN;
SELECT twocache_invalidate_tag('rb');
SELECT twocache_set('t:rb', 'kept again', NULL, NULL, ARRAY['rb']);
ROLLBACK;
SELECT twocache_get('t:rb');

DROP TABLE tag_src;
