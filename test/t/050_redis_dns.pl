# Host names are resolved with a bound (issue 12): a DNS server that does
# not answer must not make a "bounded" Redis wait unbounded.
#
# The lever is test/lib/dns_stall.c, preloaded into the server: names ending
# in .stall.invalid do not resolve while a stall file exists (getaddrinfo
# blocks; a getaddrinfo_a lookup stays in progress and cannot be cancelled),
# and resolve to 127.0.0.1 once it is removed.  Each check below waits for
# the condition it is about while the stall lasts, so with a resolver
# without a bound (a blocking getaddrinfo) it fails instead of passing late.
#  - A write while the name hangs returns after redis_timeout, applied
#    locally, with "timed out resolving" in twocache_status().last_error,
#    and reads answer (misses).
#  - A lookup under a long redis_timeout is cancelled by pg_cancel_backend
#    and by statement_timeout.
#  - Lookups that cannot be stopped are abandoned, at most 8 per process:
#    then connects fail at once ("earlier lookups are still running").
#  - Once the name resolves, the server reaches Redis: the worker subscribes
#    and writes land in Redis.
use strict;
use warnings;

use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $shim = "$tmp/dns_stall.so";
my $stall = "$tmp/stall";
system('cc', '-shared', '-fPIC', '-O2', '-o', $shim, 'test/lib/dns_stall.c', '-ldl') == 0
  or BAIL_OUT('could not build test/lib/dns_stall.c');

my $redis = TwoCacheRedis->new;
my $port = $redis->port;

# the stall starts before the server does
open(my $fh, '>', $stall) or die "could not create $stall: $!";
close $fh;

my $node = PostgreSQL::Test::Cluster->new('dns');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
twocache.redis_url = 'redis://redis.stall.invalid:$port'
twocache.redis_timeout = '300ms'
twocache.redis_retry_interval = '100ms'
});
{
	local $ENV{LD_PRELOAD} = $shim;
	local $ENV{TWOCACHE_DNS_STALL} = $stall;
	$node->start;
}
$node->safe_psql('postgres', 'CREATE EXTENSION twocache');

# ---------------------------------------------------------------------
# A write and a read while the name does not resolve
# ---------------------------------------------------------------------

my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_safe(q{SET client_min_messages = warning});
my $out = $bg->query(q{SELECT twocache_set('k', 'v1')});
ok(-e $stall, 'the write returned while the name still did not resolve');
is($out, 't', 'the write was applied (locally)');
like($bg->{stderr}, qr/WARNING:.*applied to the local cache only/s, 'with a WARNING');
$bg->{stderr} = '';
like($node->safe_psql('postgres', 'SELECT last_error FROM twocache_status()'),
	qr/timed out resolving "redis\.stall\.invalid"|earlier lookups are still running/,
	'last_error says the name did not resolve in time');
is($bg->query(q{SELECT twocache_local_del('k'); SELECT twocache_get('k') IS NULL}),
	"t\nt", 'a read answers (a miss) while the name does not resolve');
ok(-e $stall, '... still while it does not resolve');

# ---------------------------------------------------------------------
# Cancel and statement_timeout end a lookup
# ---------------------------------------------------------------------

$node->safe_psql('postgres', q{
ALTER SYSTEM SET twocache.redis_timeout = '1h';
ALTER SYSTEM SET twocache.redis_retry_interval = '1ms';
SELECT pg_reload_conf();
});
$bg->query_safe(q{SELECT pg_sleep(0.1)});	# the backend takes the reload
my $pid = $bg->query_safe(q{SELECT pg_backend_pid()});

$bg->{stdin} .= "SELECT twocache_set('c', 'v');\n";
$bg->{run}->pump_nb;
ok( poll(
		$node, qq{SELECT wait_event_type = 'Extension' AND state = 'active'
				 FROM pg_stat_activity WHERE pid = $pid}),
	'a write waits on the lookup, in an Extension wait');
ok($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)") eq 't', 'cancelled');
ok( poll(
		$node, qq{SELECT state = 'idle' FROM pg_stat_activity WHERE pid = $pid}),
	'the cancelled write ended while the name still did not resolve');
ok(-e $stall, '... (the stall lasted)');
like($bg->query(q{SELECT 1}) . $bg->{stderr}, qr/canceling statement due to user request/,
	'with a cancel error');
$bg->{stderr} = '';

my $t0 = time;
$out = $bg->query(q{SET statement_timeout = '200ms'; SELECT twocache_set('c', 'v')});
like($bg->{stderr}, qr/canceling statement due to statement timeout/,
	'statement_timeout ends a write waiting on the lookup');
ok(-e $stall, '... while the name still did not resolve');
$bg->{stderr} = '';
$bg->query_safe(q{RESET statement_timeout});

# ---------------------------------------------------------------------
# Lookups that cannot be stopped are bounded in number
# ---------------------------------------------------------------------

$node->safe_psql('postgres', q{
ALTER SYSTEM SET twocache.redis_timeout = '20ms';
SELECT pg_reload_conf();
});
$bg->query_safe(q{SELECT pg_sleep(0.1)});
my $refused = 0;
for my $i (1 .. 12)
{
	$bg->query(qq{SELECT twocache_set('b$i', 'v')});
	$refused = 1 if $bg->{stderr} =~ /earlier lookups are still running/;
	$bg->{stderr} = '';
	last if $refused;
}
ok($refused, 'after 8 abandoned lookups, connects by name fail at once');

# ---------------------------------------------------------------------
# The name resolves again
# ---------------------------------------------------------------------

$node->safe_psql('postgres', q{
ALTER SYSTEM SET twocache.redis_timeout = '1s';
SELECT pg_reload_conf();
});
unlink $stall or die "could not remove $stall: $!";
ok(poll($node, 'SELECT subscribed FROM twocache_status()'),
	'the worker subscribes once the name resolves');
ok( poll(
		$node, q{SELECT twocache_set('k', 'v2') AND twocache_local_del('k')
				 AND twocache_get('k') IS NOT DISTINCT FROM 'v2'}),
	'writes land in Redis once the name resolves');
like($redis->cli('GET', 'db:postgres:k'), qr/v2/, 'the value is in Redis');
$bg->quit;

no_crash_in_log($node);
$node->stop;
done_testing();
