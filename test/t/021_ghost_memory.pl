# Ghosts never cost residents.  One partition of 4MB with room for 20,000
# entries, so memory, not twocache.max_entries, is what binds: with keys of
# about 900 bytes the arena holds some 4,000 entries.  A hot set of 100 keys
# with one-byte values is read round-robin, one hot read between every ten
# reads of keys never seen before (each a miss filled by its fetch query).
# The ARC keeps up to c ghosts of the unique keys; if their key bytes take
# the arena, REPLACE evicts the hot set to make room for them and hardly a
# hot read hits.  Ghost memory must be given up before any resident is
# evicted, so once warm, (almost) every hot read is an L1 hit, the hot set
# stays resident, and the bounds of 020_memory_pressure.pl hold throughout.
# The workload is deterministic and runs server-side in a few statements.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $C = 20000;		# twocache.max_entries: far more than memory holds
my $HOT = 100;		# hot keys
my $UNIQ = 10;		# unique keys read after each hot read
my $WARM = 500;		# steps (one hot read each) before measuring
my $MEASURE = 2000;	# steps measured

my $node = PostgreSQL::Test::Cluster->new('ghost_memory');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
twocache.partitions = 1
twocache.max_entries = $C
twocache.memory = '4MB'
twocache.default_ttl = 0
twocache.local_max_ttl = 0
});
$node->start;

is( $node->safe_psql(
		'postgres',
		q{SELECT current_setting('twocache.partitions') || ' '
		  || current_setting('twocache.max_entries') || ' '
		  || current_setting('twocache.memory')}),
	"1 $C 4MB",
	"one partition of capacity $C over 4MB");

# run(first, steps): steps first .. first + steps - 1, each one read of hot
# key (step mod HOT) then UNIQ reads of keys used nowhere else.  The ARC
# bounds and bytes_used <= bytes_total are checked after every step.
# Returns the l1_hits and l1_misses counted meanwhile: unique keys are
# never hits, so every hit is a hot read's.
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION twocache;

CREATE FUNCTION hot_key(n int) RETURNS text LANGUAGE sql IMMUTABLE AS
\$\$ SELECT 'hot:' || n || ':' || repeat('h', 890) \$\$;

CREATE FUNCTION uniq_key(n int) RETURNS text LANGUAGE sql IMMUTABLE AS
\$\$ SELECT 'uniq:' || n || ':' || repeat('u', 890) \$\$;

CREATE FUNCTION run(first int, steps int) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
	c constant int := $C;
	h0 bigint;
	m0 bigint;
	v text;
	s record;
BEGIN
	SELECT l1_hits, l1_misses INTO h0, m0 FROM twocache_stats;
	FOR i IN first .. first + steps - 1 LOOP
		v := twocache_get(hot_key(i % $HOT), 'SELECT 1');
		IF v IS DISTINCT FROM '1' THEN
			RAISE EXCEPTION 'hot key % read %', i % $HOT, v;
		END IF;
		FOR j IN 1 .. $UNIQ LOOP
			v := twocache_get(uniq_key(i * $UNIQ + j), 'SELECT 2');
			IF v IS DISTINCT FROM '2' THEN
				RAISE EXCEPTION 'unique key % read %', i * $UNIQ + j, v;
			END IF;
		END LOOP;
		SELECT * INTO s FROM twocache_stats;
		IF s.bytes_used > s.bytes_total THEN
			RAISE EXCEPTION 'bytes_used % > bytes_total % at step %', s.bytes_used, s.bytes_total, i;
		END IF;
		IF s.t1 + s.t2 > c OR s.t1 + s.b1 > c OR s.t1 + s.t2 + s.b1 + s.b2 > 2 * c THEN
			RAISE EXCEPTION 'ARC bounds broken at step %: t1 % t2 % b1 % b2 %', i, s.t1, s.t2, s.b1, s.b2;
		END IF;
	END LOOP;
	SELECT * INTO s FROM twocache_stats;
	RETURN format('hits=%s misses=%s evictions=%s entries=%s t1=%s t2=%s b1=%s b2=%s p=%s bytes_used=%s bytes_total=%s',
				  s.l1_hits - h0, s.l1_misses - m0, s.evictions, s.entries,
				  s.t1, s.t2, s.b1, s.b2, s.arc_p, s.bytes_used, s.bytes_total);
END \$\$;
});

sub field
{
	my ($summary, $name) = @_;
	my ($v) = $summary =~ /\b$name=(\d+)/;
	return $v;
}

my $warm = $node->safe_psql('postgres', "SELECT run(0, $WARM)");
note "warm-up ($WARM hot reads, " . $WARM * $UNIQ . " unique): $warm";
cmp_ok(field($warm, 'evictions'), '>', 0, 'memory binds during warm-up');

my $run = $node->safe_psql('postgres', "SELECT run($WARM, $MEASURE)");
my $hits = field($run, 'hits');
my $ratio = sprintf('%.1f%%', 100 * $hits / $MEASURE);
note "measured ($MEASURE hot reads, " . $MEASURE * $UNIQ . " unique): $run";
note "hot-set hit ratio: $hits of $MEASURE = $ratio";

# memory, not the entry count, is what binds
cmp_ok(field($run, 'entries'), '<', $C / 2,
	'memory binds: fewer than half of max_entries are resident');
cmp_ok(field($run, 'evictions'), '>', field($warm, 'evictions'),
	'entries were evicted while measuring');
is( field($run, 'misses'),
	$MEASURE * $UNIQ + ($MEASURE - $hits),
	'every unique read was a miss, every hot read a hit or a miss');

cmp_ok($hits, '>=', 0.9 * $MEASURE,
	"at least 90% of hot reads are L1 hits (got $ratio)");

is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM twocache_local_keys() k
WHERE k IN (SELECT hot_key(n) FROM generate_series(0, $HOT - 1) n)}),
	$HOT,
	'every hot key is resident at the end');

# A unique key evicted long ago, well out of T1 but among the c most
# recent keys of T1 and B1, is still a ghost of B1 though its key bytes are
# gone (twocache_entries() shows such ghosts with a NULL key): reading it
# again is a ghost hit that adapts p and brings it into T2.  Ghosts that
# gave up their key bytes keep their place in the ARC.
my $old = ($WARM + $MEASURE) * $UNIQ - $C / 2;
my ($t2_before, $p_before) = split / /,
  $node->safe_psql('postgres', q{SELECT t2 || ' ' || arc_p FROM twocache_stats});
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FILTER (WHERE key = uniq_key($old)) || ' '
	   || (count(*) FILTER (WHERE list = 'B1' AND key IS NULL) > 0)
FROM twocache_entries()}),
	'0 true',
	"unique key $old is listed nowhere by name: ghosts of B1 gave their key bytes up");
is( $node->safe_psql(
		'postgres', qq{SELECT twocache_get(uniq_key($old), 'SELECT 2')}),
	'2', "unique key $old read again");
is( $node->safe_psql(
		'postgres',
		qq{SELECT string_agg(list, ',') FROM twocache_entries() WHERE key = uniq_key($old)}),
	'T2',
	"its ghost was brought into T2");
is( $node->safe_psql('postgres', q{SELECT t2 || ' ' || arc_p FROM twocache_stats}),
	($t2_before + 1) . ' ' . ($p_before + 1),
	'the ghost hit (case II) added it to T2 and raised p by one');

is($node->safe_psql('postgres', 'SELECT bytes_used <= bytes_total FROM twocache_stats'),
	't', 'bytes_used <= bytes_total at the end');

$node->stop;
done_testing();
