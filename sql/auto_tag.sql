--
-- Automatic dependencies (1.1): with twocache.auto_tag an entry filled by a
-- fetch query is tagged with the tables its plan reads, and a committed
-- write to a table tracked with twocache_track() invalidates exactly the
-- entries whose queries read it.  Local mode.
--
SELECT twocache_flush_local() >= 0 AS flushed;
CREATE SCHEMA "Sales";
CREATE TABLE "Sales".orders (id int PRIMARY KEY, customer_id int, amount numeric);
CREATE TABLE customers (id int PRIMARY KEY, region int);
CREATE TABLE untracked (id int);
INSERT INTO customers VALUES (1, 7), (2, 8);
INSERT INTO "Sales".orders VALUES (1, 1, 10), (2, 2, 20);
CREATE VIEW region_totals AS
	SELECT c.region, sum(o.amount) AS total
	FROM "Sales".orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region;
SELECT twocache_track('"Sales".orders'), twocache_track('customers');
SELECT twocache_track('customers');		-- twice is once
SELECT tgrelid::regclass, tgname FROM pg_trigger WHERE tgname = 'twocache_invalidate' ORDER BY 1;

SET twocache.auto_tag = on;
SELECT twocache_get('report:7', 'SELECT total FROM region_totals WHERE region = 7');
SELECT twocache_get('customers:n', 'SELECT count(*) FROM customers');
SELECT twocache_get('orders:n', 'SELECT count(*) FROM "Sales".orders');
SELECT twocache_get('untracked:n', 'SELECT count(*) FROM untracked');
SET twocache.auto_tag = off;
SELECT twocache_get('manual', 'SELECT count(*) FROM customers');
SELECT k FROM twocache_local_keys() k ORDER BY k;

-- the tags are the tables' qualified names, as the trigger names them
SELECT twocache_invalidate_tag('"Sales".orders') AS dropped_by_tag;
SELECT k FROM twocache_local_keys() k ORDER BY k;
SET twocache.auto_tag = on;
SELECT twocache_get('report:7', 'SELECT total FROM region_totals WHERE region = 7');
SELECT twocache_get('orders:n', 'SELECT count(*) FROM "Sales".orders');

-- a committed insert into orders drops the entries that read orders
INSERT INTO "Sales".orders VALUES (3, 1, 5);
SELECT k FROM twocache_local_keys() k ORDER BY k;
SELECT twocache_get('report:7', 'SELECT total FROM region_totals WHERE region = 7');

-- an update of customers drops those that read customers, the report too
UPDATE customers SET region = 8 WHERE id = 1;
SELECT k FROM twocache_local_keys() k ORDER BY k;
SELECT twocache_get('report:7', 'SELECT total FROM region_totals WHERE region = 7') IS NULL AS no_region_7;

-- a rolled back write drops nothing; a write to an untracked table neither
SELECT twocache_get('customers:n', 'SELECT count(*) FROM customers');
BEGIN;
DELETE FROM customers;
ROLLBACK;
INSERT INTO untracked VALUES (1);
SELECT k FROM twocache_local_keys() k ORDER BY k;

-- untracked: no trigger any more
SELECT twocache_untrack('customers');
SELECT tgrelid::regclass FROM pg_trigger WHERE tgname = 'twocache_invalidate' ORDER BY 1;
UPDATE customers SET region = 7 WHERE id = 1;
SELECT k FROM twocache_local_keys() k WHERE k = 'customers:n';

-- the trigger's arguments name the tags; misuse is refused
CREATE TRIGGER by_args AFTER UPDATE ON untracked
	FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger('custom-tag', 'other');
SELECT twocache_set('tagged', 'x', NULL, NULL, ARRAY['other']);
UPDATE untracked SET id = 2;
SELECT twocache_get('tagged') IS NULL AS invalidated;
CREATE TRIGGER per_row AFTER UPDATE ON untracked
	FOR EACH ROW EXECUTE FUNCTION twocache_invalidate_trigger();
\set VERBOSITY sqlstate
UPDATE untracked SET id = 3;
SELECT twocache_invalidate_trigger();
\set VERBOSITY default
DROP TRIGGER per_row ON untracked;

RESET twocache.auto_tag;
DROP VIEW region_totals;
DROP TABLE "Sales".orders, customers, untracked;
DROP SCHEMA "Sales";
