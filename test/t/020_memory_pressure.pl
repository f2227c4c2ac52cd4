# Memory pressure: values of random sizes up to twocache.max_value_size are
# written, read and deleted until ten times twocache.memory has passed
# through the cache.  No call fails, bytes_used never exceeds bytes_total,
# and with one partition the ARC invariants hold after every call:
# |T1|+|T2| <= c, |T1|+|B1| <= c, |T1|+|T2|+|B1|+|B2| <= 2c.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

foreach my $parts (1, 4)
{
	my $node = PostgreSQL::Test::Cluster->new("pressure_$parts");
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
twocache.memory = '2MB'
twocache.max_entries = 200
twocache.partitions = $parts
twocache.max_value_size = '200kB'
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION twocache');

	# One PL/pgSQL run: writes until 10 x 2MB went through, checking the
	# bounds after every operation; returns a summary line.
	my $summary = $node->safe_psql(
		'postgres', q{
CREATE FUNCTION pressure(partitions int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	c constant int := 200;
	written bigint := 0;
	ops int := 0;
	n int;
	k text;
	s record;
BEGIN
	PERFORM setseed(0.42);
	WHILE written < 10 * 2 * 1024 * 1024 LOOP
		k := 'p:' || (random() * 400)::int;
		n := (random() * 200 * 1024)::int;
		CASE (random() * 9)::int
			WHEN 0 THEN PERFORM twocache_del(k);
			WHEN 1, 2 THEN PERFORM twocache_get(k);
			WHEN 3 THEN PERFORM twocache_get(k, format('SELECT repeat(%L, %s)', 'f', n));
				written := written + n;
			ELSE PERFORM twocache_set(k, repeat('v', n), '1 hour');
				written := written + n;
		END CASE;
		ops := ops + 1;
		SELECT * INTO s FROM twocache_stats;
		IF s.bytes_used > s.bytes_total THEN
			RAISE EXCEPTION 'bytes_used % > bytes_total % after % ops', s.bytes_used, s.bytes_total, ops;
		END IF;
		IF partitions = 1 AND (s.t1 + s.t2 > c OR s.t1 + s.b1 > c OR s.t1 + s.t2 + s.b1 + s.b2 > 2 * c) THEN
			RAISE EXCEPTION 'ARC bounds broken after % ops: t1 % t2 % b1 % b2 %', ops, s.t1, s.t2, s.b1, s.b2;
		END IF;
		IF partitions > 1 AND s.t1 + s.t2 > c THEN
			RAISE EXCEPTION 'more than % resident entries after % ops', c, ops;
		END IF;
	END LOOP;
	SELECT * INTO s FROM twocache_stats;
	RETURN format('ops=%s written=%s evictions=%s entries=%s bytes_used=%s bytes_total=%s in_flight=%s',
				  ops, written, s.evictions, s.entries, s.bytes_used, s.bytes_total, s.in_flight);
END $$;
SELECT pressure(} . $parts . q{);
});
	note "partitions=$parts: $summary";
	like($summary, qr/written=(\d+)/, "partitions=$parts: the run completed without an error");
	my ($evictions) = $summary =~ /evictions=(\d+)/;
	ok($evictions > 0, "partitions=$parts: memory pressure evicted entries");
	like($summary, qr/in_flight=0/, "partitions=$parts: no flight left behind");

	# what is resident is intact: every value has the length its key was given
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM twocache_entries() e
WHERE e.list IN ('T1', 'T2') AND NOT e.negative
  AND e.value_bytes <> length(twocache_get(e.key))}),
		'0',
		"partitions=$parts: resident values read back with their stored size");
	is($node->safe_psql('postgres', 'SELECT bytes_used <= bytes_total FROM twocache_stats'),
		't', "partitions=$parts: bytes_used <= bytes_total at the end");
	$node->stop;
}

done_testing();
