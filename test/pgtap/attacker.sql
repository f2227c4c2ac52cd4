-- The attacks of the 1.2 security issue, by a role with nothing but PUBLIC's
-- privileges (SPEC section 2a): forging a cached value through a fill,
-- reading values, listing keys and entries, probing keys, invalidating by
-- proxy through a trigger on a temporary table, writing and flushing all
-- raise 42501; monitoring still works.  Then a role granted read may look
-- up but not fill, and a role granted fill may fill.
BEGIN;
SELECT plan(28);

CREATE ROLE twocache_tap_attacker;
CREATE ROLE twocache_tap_lookup;
CREATE ROLE twocache_tap_fill;
GRANT EXECUTE ON FUNCTION twocache_get(text) TO twocache_tap_lookup, twocache_tap_fill;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[], text[]) TO twocache_tap_fill;
CREATE TABLE twocache_tap_victim (v int);

SELECT lives_ok($$SELECT twocache_set('price:42', 'genuine', NULL, NULL, ARRAY['prices'])$$,
	'the superuser caches a price');

SET LOCAL ROLE twocache_tap_attacker;
SELECT throws_ok($$SELECT twocache_get('price:42', $q$SELECT 'forged'$q$, '100 years')$$,
	'42501', NULL, 'attacker: a fill with a forged value is denied');
SELECT throws_ok($$SELECT twocache_get('price:42')$$,
	'42501', NULL, 'attacker: a lookup is denied');
SELECT throws_ok($$SELECT * FROM twocache_mget(ARRAY(SELECT twocache_local_keys()))$$,
	'42501', NULL, 'attacker: dumping every key with twocache_mget and twocache_local_keys is denied');
SELECT throws_ok($$SELECT * FROM twocache_mget(ARRAY['price:42'])$$,
	'42501', NULL, 'attacker: twocache_mget is denied');
SELECT throws_ok($$SELECT * FROM twocache_local_keys()$$,
	'42501', NULL, 'attacker: twocache_local_keys is denied');
SELECT throws_ok($$SELECT * FROM twocache_entries()$$,
	'42501', NULL, 'attacker: twocache_entries is denied');
SELECT throws_ok($$SELECT twocache_ttl('price:42')$$,
	'42501', NULL, 'attacker: twocache_ttl is denied');
SELECT throws_ok($$SELECT twocache_exists('price:42')$$,
	'42501', NULL, 'attacker: twocache_exists is denied');
SELECT lives_ok($$CREATE TEMP TABLE twocache_tap_proxy (v int)$$,
	'attacker: may create a temporary table');
SELECT throws_ok($$CREATE TRIGGER twocache_tap_proxy AFTER INSERT ON twocache_tap_proxy
	FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger('prices', 'other')$$,
	'42501', 'permission denied for function twocache_invalidate_trigger',
	'attacker: invalidation by proxy through a trigger on a temporary table is denied');
SELECT throws_ok($$SELECT twocache_set('price:42', 'forged')$$,
	'42501', NULL, 'attacker: twocache_set is denied');
SELECT throws_ok($$SELECT twocache_del('price:42')$$,
	'42501', NULL, 'attacker: twocache_del is denied');
SELECT throws_ok($$SELECT twocache_invalidate_tag('prices')$$,
	'42501', NULL, 'attacker: twocache_invalidate_tag is denied');
SELECT throws_ok($$SELECT twocache_flush_local()$$,
	'42501', NULL, 'attacker: twocache_flush_local is denied');
SELECT throws_ok($$SELECT twocache_stats_reset()$$,
	'42501', NULL, 'attacker: twocache_stats_reset is denied');
SELECT throws_ok($$SELECT twocache_track('twocache_tap_victim')$$,
	'42501', NULL, 'attacker: twocache_track is denied');
SELECT throws_ok($$SELECT twocache_untrack('twocache_tap_victim')$$,
	'42501', NULL, 'attacker: twocache_untrack is denied');
-- monitoring is PUBLIC's
SELECT lives_ok($$SELECT * FROM twocache_stats$$, 'attacker: the twocache_stats view');
SELECT lives_ok($$SELECT * FROM twocache_status()$$, 'attacker: twocache_status()');
RESET ROLE;
SELECT is(twocache_get('price:42'), 'genuine', 'the cached price is untouched');

-- read: look up, not fill
SET LOCAL ROLE twocache_tap_lookup;
SELECT is(twocache_get('price:42'), 'genuine', 'read: the lookup works');
SELECT throws_ok($$SELECT twocache_get('price:42', $q$SELECT 'forged'$q$, '100 years')$$,
	'42501', NULL, 'read: the fill form is denied');
SELECT throws_ok($$SELECT twocache_get('price:43', NULL)$$,
	'42501', NULL, 'read: the fill form is denied even without a query');
RESET ROLE;

-- fill: fills
SET LOCAL ROLE twocache_tap_fill;
SELECT is(twocache_get('price:43', $q$SELECT 'fetched'$q$), 'fetched', 'fill: the fill form fetches');
SELECT is(twocache_get('price:42', $q$SELECT 'forged'$q$), 'genuine',
	'fill: a cached value is returned, the query is not run');
RESET ROLE;
SELECT is(twocache_get('price:42'), 'genuine', 'the cached price is still untouched');
SELECT lives_ok($$SELECT twocache_del('price:42'), twocache_del('price:43')$$, 'clean up the keys');

SELECT * FROM finish();
ROLLBACK;
