# The L1 is exactly ARC (SPEC.md section 7): with one partition of capacity
# c, no TTLs and memory that never binds, replaying a trace of
# twocache_get(k, 'SELECT 1') gives the same hits and misses, the same final
# T1, T2, B1, B2 (in order) and the same target p as the algorithm of
# Megiddo and Modha (FAST 2003, figure 4) with an integer p and
# delta = max(1, |B_other| / |B_this|), run here by a reference
# implementation in Perl over the same trace.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $C = 100;			# twocache.max_entries: the ARC capacity c
my $TRACE_MIN = 12000;	# requests in the trace, at least
my $CHUNK = 1000;		# requests replayed per server call

# ---------------------------------------------------------------------
# A deterministic trace.
# ---------------------------------------------------------------------

# Park-Miller "minimal standard" generator: the same numbers on every
# platform and Perl build, unlike rand().
my $seed = 2;

sub rnd
{
	$seed = ($seed * 48271) % 2147483647;
	return $seed;
}

sub rint
{
	my ($n) = @_;
	return rnd() % $n;
}

# Zipf-like popularity over a hot set of 400 keys (s = 0.9).
my @zipf_cdf;
{
	my $total = 0;
	for my $i (1 .. 400)
	{
		$total += 1 / $i**0.9;
		push @zipf_cdf, $total;
	}
	@zipf_cdf = map { $_ / $total } @zipf_cdf;
}

sub zipf_key
{
	my $u = rnd() / 2147483647;
	my ($lo, $hi) = (0, $#zipf_cdf);
	while ($lo < $hi)
	{
		my $mid = int(($lo + $hi) / 2);
		if ($zipf_cdf[$mid] < $u) { $lo = $mid + 1; }
		else { $hi = $mid; }
	}
	return "h$lo";
}

my @trace;
my $scan_next = 0;

# Segments, picked at random until the trace is long enough.
my @segments = (

	# a loop over more than c keys, two or three times (B1 hits, p up)
	sub {
		my $n = $C + 20 + rint($C);
		my $base = rint(3) * 50;
		my $reps = 2 + rint(2);
		for (1 .. $reps) { push @trace, "l" . ($base + $_) for 0 .. $n - 1; }
	},

	# a short loop repeated a few times (promotes keys to T2)
	sub {
		my $n = 10 + rint(50);
		my $base = rint(200);
		my $reps = 2 + rint(4);
		for (1 .. $reps) { push @trace, "r" . ($base + $_) for 0 .. $n - 1; }
	},

	# Zipf-like requests to the hot set
	sub {
		my $len = 300 + rint(700);
		push @trace, zipf_key() for 1 .. $len;
	},

	# a scan of keys never seen before
	sub {
		my $len = 30 + rint(150);
		push @trace, "s" . $scan_next++ for 1 .. $len;
	},

	# the hot set with one in four requests a scan key (B2 hits, p down)
	sub {
		my $len = 300 + rint(500);
		for (1 .. $len)
		{
			if (rint(4) == 0) { push @trace, "s" . $scan_next++; }
			else { push @trace, zipf_key(); }
		}
	});

# Start with a scan longer than c: fills T1, then deletes its LRU (case IV(A)
# with |T1| = c).
push @trace, "s" . $scan_next++ for 1 .. $C + 20;
$segments[ rint(scalar @segments) ]->() while @trace < $TRACE_MIN;

# ---------------------------------------------------------------------
# Reference ARC: figure 4 of the paper, lists as arrays with the LRU end
# at index 0 and the MRU end last.
# ---------------------------------------------------------------------

sub arc_new
{
	my ($c) = @_;
	return {
		c => $c,
		p => 0,
		T1 => [],
		T2 => [],
		B1 => [],
		B2 => [],
		where => {},
		cases => {},
	};
}

sub arc_unlink
{
	my ($arc, $list, $key) = @_;
	my $a = $arc->{$list};
	for my $i (0 .. $#$a)
	{
		if ($a->[$i] eq $key)
		{
			splice @$a, $i, 1;
			delete $arc->{where}{$key};
			return;
		}
	}
	die "reference ARC: $key not in $list";
}

sub arc_push_mru
{
	my ($arc, $list, $key) = @_;
	push @{ $arc->{$list} }, $key;
	$arc->{where}{$key} = $list;
}

sub arc_drop_lru
{
	my ($arc, $list) = @_;
	my $key = shift @{ $arc->{$list} };
	die "reference ARC: LRU of empty $list" unless defined $key;
	delete $arc->{where}{$key};
	return $key;
}

# REPLACE(x, p)
sub arc_replace
{
	my ($arc, $x_in_b2) = @_;
	my $t1 = scalar @{ $arc->{T1} };
	my $p = $arc->{p};

	if ($t1 >= 1 && (($x_in_b2 && $t1 == $p) || $t1 > $p))
	{
		$arc->{cases}{replace_t1}++;
		$arc->{cases}{replace_tie}++ if $x_in_b2 && $t1 == $p;
		arc_push_mru($arc, 'B1', arc_drop_lru($arc, 'T1'));
	}
	else
	{
		$arc->{cases}{replace_t2}++;
		arc_push_mru($arc, 'B2', arc_drop_lru($arc, 'T2'));
	}
}

# One request; returns 1 on a hit (x in T1 or T2), 0 on a miss.
sub arc_request
{
	my ($arc, $x) = @_;
	my $c = $arc->{c};
	my $cases = $arc->{cases};
	my $list = $arc->{where}{$x} // '';
	my ($b1, $b2) = (scalar @{ $arc->{B1} }, scalar @{ $arc->{B2} });

	if ($list eq 'T1' || $list eq 'T2')
	{
		# Case I
		$cases->{I}++;
		arc_unlink($arc, $list, $x);
		arc_push_mru($arc, 'T2', $x);
		return 1;
	}
	elsif ($list eq 'B1')
	{
		# Case II: p = min(c, p + delta1), delta1 = max(1, |B2| / |B1|)
		my $delta = $b2 > $b1 ? int($b2 / $b1) : 1;
		my $p = $arc->{p} + $delta;
		$cases->{II}++;
		$cases->{delta1_gt1}++ if $delta > 1;
		if ($p >= $c) { $p = $c; $cases->{p_at_c}++; }
		$cases->{p_up}++ if $p > $arc->{p};
		$arc->{p} = $p;
		arc_replace($arc, 0);
		arc_unlink($arc, 'B1', $x);
		arc_push_mru($arc, 'T2', $x);
	}
	elsif ($list eq 'B2')
	{
		# Case III: p = max(0, p - delta2), delta2 = max(1, |B1| / |B2|)
		my $delta = $b1 > $b2 ? int($b1 / $b2) : 1;
		my $p = $arc->{p} - $delta;
		$cases->{III}++;
		$cases->{delta2_gt1}++ if $delta > 1;
		if ($p <= 0) { $p = 0; $cases->{p_at_0}++; }
		$cases->{p_down}++ if $p < $arc->{p};
		$arc->{p} = $p;
		arc_replace($arc, 1);
		arc_unlink($arc, 'B2', $x);
		arc_push_mru($arc, 'T2', $x);
	}
	else
	{
		# Case IV
		my $t1 = scalar @{ $arc->{T1} };
		my $t2 = scalar @{ $arc->{T2} };
		my $l1 = $t1 + $b1;
		my $total = $l1 + $t2 + $b2;

		if ($l1 == $c)
		{
			if ($t1 < $c)
			{
				$cases->{IVA_drop_b1}++;
				arc_drop_lru($arc, 'B1');
				arc_replace($arc, 0);
			}
			else
			{
				$cases->{IVA_drop_t1}++;
				arc_drop_lru($arc, 'T1');
			}
		}
		elsif ($total >= $c)
		{
			if ($total == 2 * $c)
			{
				$cases->{IVB_drop_b2}++;
				arc_drop_lru($arc, 'B2');
			}
			else
			{
				$cases->{IVB_no_drop}++;
			}
			arc_replace($arc, 0);
		}
		else
		{
			$cases->{IV_not_full}++;
		}
		arc_push_mru($arc, 'T1', $x);
	}

	# the paper's invariants
	my @n = map { scalar @{ $arc->{$_} } } qw(T1 T2 B1 B2);
	die "reference ARC: invariant broken after $x: @n"
	  if $n[0] + $n[1] > $c
	  || $n[0] + $n[2] > $c
	  || $n[1] + $n[3] > 2 * $c
	  || $n[0] + $n[1] + $n[2] + $n[3] > 2 * $c;
	return 0;
}

sub arc_state
{
	my ($arc) = @_;
	return join("\n",
		"p = $arc->{p}",
		map { "$_ (LRU first): " . join(' ', @{ $arc->{$_} }) } qw(T1 T2 B1 B2));
}

my $ref = arc_new($C);
my $expected = join('', map { arc_request($ref, $_) ? 'H' : 'M' } @trace);
my $ref_hits = ($expected =~ tr/H//);
my %cases = %{ $ref->{cases} };
note "trace: " . scalar(@trace) . " requests, $ref_hits hits in the reference";
note "reference cases: "
  . join(', ', map { "$_=$cases{$_}" } sort keys %cases);

# ---------------------------------------------------------------------
# The same trace in the server.
# ---------------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('arc_trace');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
twocache.partitions = 1
twocache.max_entries = $C
twocache.memory = 64MB
twocache.default_ttl = 0
twocache.local_max_ttl = 0
});
$node->start;

is( $node->safe_psql(
		'postgres',
		q{SELECT current_setting('twocache.partitions') || ' '
		  || current_setting('twocache.max_entries')}),
	"1 $C",
	"one partition of capacity $C");

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION twocache;

-- Replay keys in order: one twocache_get per key, classified by which
-- counter moved (H: l1_hits, M: fetches after an l1 miss).
CREATE FUNCTION replay(keys text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	k		text;
	v		text;
	h0		bigint;
	f0		bigint;
	h1		bigint;
	f1		bigint;
	result	text := '';
BEGIN
	SELECT l1_hits, fetches INTO h0, f0 FROM twocache_stats();
	FOREACH k IN ARRAY keys LOOP
		v := twocache_get(k, 'SELECT 1');
		IF v IS DISTINCT FROM '1' THEN
			RAISE EXCEPTION 'twocache_get(%) returned %', k, v;
		END IF;
		SELECT l1_hits, fetches INTO h1, f1 FROM twocache_stats();
		result := result || CASE
			WHEN h1 = h0 + 1 AND f1 = f0 THEN 'H'
			WHEN h1 = h0 AND f1 = f0 + 1 THEN 'M'
			ELSE '?' END;
		h0 := h1;
		f0 := f1;
	END LOOP;
	RETURN result;
END
$$;
});

my $got = '';
for (my $i = 0; $i < @trace; $i += $CHUNK)
{
	my $last = $i + $CHUNK - 1;
	$last = $#trace if $last > $#trace;
	# keys are [a-z][0-9]+: safe in an array literal
	my $arr = '{' . join(',', @trace[ $i .. $last ]) . '}';
	$got .= $node->safe_psql('postgres', "SELECT replay('$arr'::text[])");
}

is(length($got), length($expected), 'one result per request');
unlike($got, qr/\?/, 'every request was either an l1 hit or a fetch');

# the first request where the server and the reference part ways
my $first_diff;
for my $i (0 .. $#trace)
{
	if (substr($got, $i, 1) ne substr($expected, $i, 1))
	{
		$first_diff = $i;
		last;
	}
}
ok(!defined $first_diff, 'hit/miss sequence equals the reference ARC')
  or do
{
	my $i = $first_diff;
	my $from = $i >= 30 ? $i - 30 : 0;
	my $before = arc_new($C);
	arc_request($before, $_) for @trace[ 0 .. $i - 1 ];
	diag "first mismatch at request $i (0-based), key $trace[$i]: "
	  . "reference " . substr($expected, $i, 1)
	  . ", server " . substr($got, $i, 1);
	diag "requests $from..$i: @trace[$from .. $i]";
	diag "reference before request $i:\n" . arc_state($before);
};

my $got_hits = ($got =~ tr/H//);
is($got_hits, $ref_hits, 'total hits equal the reference');

my %stats = map { split /=/ } split /\n/, $node->safe_psql(
	'postgres', q{
SELECT unnest(ARRAY['l1_hits', 'l1_misses', 'fetches', 'evictions',
					'arc_p', 't1', 't2', 'b1', 'b2', 'entries'])
	   || '=' ||
	   unnest(ARRAY[l1_hits, l1_misses, fetches, evictions,
					arc_p, t1, t2, b1, b2, entries])
FROM twocache_stats()});

my $ref_misses = scalar(@trace) - $ref_hits;
is($stats{l1_hits}, $ref_hits, 'l1_hits counts the reference hits');
is($stats{l1_misses}, $ref_misses, 'l1_misses counts the reference misses');
is($stats{fetches}, $ref_misses, 'one fetch per miss');
is( $stats{evictions},
	($cases{replace_t1} // 0) + ($cases{replace_t2} // 0) +
	  ($cases{IVA_drop_t1} // 0),
	'evictions count the entries the reference removed from the cache');

# final contents, in order, and p
is($stats{arc_p}, $ref->{p}, "final p equals the reference ($ref->{p})");
is( "$stats{t1} $stats{t2} $stats{b1} $stats{b2}",
	join(' ', map { scalar @{ $ref->{$_} } } qw(T1 T2 B1 B2)),
	'final |T1| |T2| |B1| |B2| equal the reference');

my %lists = (T1 => [], T2 => [], B1 => [], B2 => []);
my $pos_ok = 1;
foreach my $row (
	split /\n/,
	$node->safe_psql(
		'postgres',
		'SELECT key, list, pos FROM twocache_entries() ORDER BY list, pos'))
{
	my ($key, $list, $pos) = split /\|/, $row;
	push @{ $lists{$list} }, $key;
	$pos_ok = 0 if $pos != scalar @{ $lists{$list} };
}
ok($pos_ok, 'pos numbers each list 1, 2, ... from the LRU end');
foreach my $l (qw(T1 T2 B1 B2))
{
	is( join(' ', @{ $lists{$l} }),
		join(' ', @{ $ref->{$l} }),
		"final $l, LRU to MRU, equals the reference");
}

# the trace exercised every case of the algorithm
foreach my $case (
	qw(I II III IVA_drop_b1 IVA_drop_t1 IVB_drop_b2 IVB_no_drop
	replace_t1 replace_t2 replace_tie p_up p_down p_at_c p_at_0
	delta1_gt1 delta2_gt1))
{
	cmp_ok($cases{$case} // 0, '>', 0, "trace exercises $case");
}
cmp_ok(scalar(@trace), '>=', 10000, 'trace has at least 10,000 requests');

$node->stop;
done_testing();
