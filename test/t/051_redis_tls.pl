# TLS to Redis (issue 12, SPEC section 9): rediss:// URLs, against
# redis-server's own TLS port with a CA this test makes (TwoCacheRedis,
# openssl).
#  - With the CA and a client certificate (the server requires one), two
#    servers share values and invalidate each other over TLS: the commands
#    and the subscription both run on TLS connections, which name
#    themselves.
#  - Host name verification (twocache.redis_tls_verify = full, the default):
#    the certificate names 127.0.0.1 and localhost; a name it does not carry
#    (one that resolves to 127.0.0.1 through test/lib/dns_stall.c) is refused
#    under full, accepted under ca.
#  - A wrong CA is refused with a clear last_error (certificate verify
#    failed), counted in redis_errors, and reads still answer; so is a
#    missing client certificate.  verify = none accepts any certificate.
#  - A plain redis:// URL against the TLS port fails cleanly.
#  - rediss-sentinel://: TLS to a Sentinel and to the master it names.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheSentinel;
use TwoCacheTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $shim = "$tmp/dns_stall.so";
system('cc', '-shared', '-fPIC', '-O2', '-o', $shim, 'test/lib/dns_stall.c', '-ldl') == 0
  or BAIL_OUT('could not build test/lib/dns_stall.c');

my $redis = TwoCacheRedis->new(tls => 1, tls_auth_clients => 'yes');
my $port = $redis->port;
my ($ca, $cert, $key) = ($redis->ca_file, $redis->client_cert_file, $redis->client_key_file);
my $tls_conf = qq{
twocache.redis_tls_ca_file = '$ca'
twocache.redis_tls_cert_file = '$cert'
twocache.redis_tls_key_file = '$key'
};

my $node1 = l2_node('node1', $redis, conf => $tls_conf, wait_subscribed => 1);
my $node2;
{
	# node2 resolves *.stall.invalid to 127.0.0.1 (no stall file: no stall)
	local $ENV{LD_PRELOAD} = $shim;
	local $ENV{TWOCACHE_DNS_STALL} = "$tmp/no-stall";
	$node2 = l2_node('node2', $redis->url(host => 'localhost'),
		conf => $tls_conf, wait_subscribed => 1);
}

sub set_conf
{
	my ($node, %set) = @_;
	my $sql = join '', map { "ALTER SYSTEM SET twocache.$_ = '$set{$_}';\n" } sort keys %set;
	$node->safe_psql('postgres', $sql . 'SELECT pg_reload_conf();');
}

# ---------------------------------------------------------------------
# Values and invalidations over TLS
# ---------------------------------------------------------------------

is($node1->safe_psql('postgres', q{SELECT twocache_set('k', 'over tls')}), 't',
	'node1 writes over TLS');
like($redis->cli('GET', 'db:postgres:k'), qr/over tls/, 'the value is in Redis');
is($node2->safe_psql('postgres', q{SELECT twocache_get('k')}), 'over tls',
	'node2 (host name localhost, verified) reads it from Redis');
is(in_l1($node2, 'k'), 't', 'node2 keeps it in L1');
is($node1->safe_psql('postgres', q{SELECT twocache_del('k')}), 't', 'node1 deletes it');
ok(poll($node2, not_in_l1_sql('k')), "node2's worker gets the invalidation over TLS");
my $clients = $redis->cli('CLIENT', 'LIST');
like($clients, qr/name=twocache:[^ ]*:subscriber:/, 'the TLS subscription names itself');
like($clients, qr/name=twocache:[^ ]*:worker:/, "so does the worker's command connection");
is( $node1->safe_psql(
		'postgres', q{SELECT redis_connected AND subscribed FROM twocache_status()}),
	't', 'node1 connected and subscribed');

# ---------------------------------------------------------------------
# Host name verification
# ---------------------------------------------------------------------

set_conf($node2, redis_url => "rediss://redis.stall.invalid:$port");
ok( poll(
		$node2, q{SELECT last_error ~ 'certificate verify failed' FROM twocache_status()}),
	'a host name the certificate does not carry is refused under verify = full');
is($node2->safe_psql('postgres', 'SELECT subscribed FROM twocache_status()'), 'f',
	'... and the worker does not subscribe');
set_conf($node2, redis_tls_verify => 'ca');
ok(poll($node2, 'SELECT subscribed FROM twocache_status()'),
	'verify = ca accepts it (the CA is right)');

# ---------------------------------------------------------------------
# A wrong CA, a missing client certificate, verify = none
# ---------------------------------------------------------------------

my $errors = counter($node1, 'redis_errors');
set_conf($node1, redis_tls_ca_file => $redis->wrong_ca_file);
ok( poll(
		$node1, q{SELECT NOT subscribed AND last_error ~ 'certificate verify failed'
				 FROM twocache_status()}),
	'a wrong CA is refused, with a clear last_error');
like($node1->safe_psql('postgres', 'SELECT last_error FROM twocache_status()'),
	qr/could not connect to Redis at 127\.0\.0\.1:$port: TLS handshake failed/,
	'last_error names the node and the handshake');
$node1->safe_psql('postgres', q{SELECT twocache_local_set('local', 'still here')});
my ($ret, $out, $err) = $node1->psql('postgres', q{SELECT twocache_get('absent') IS NULL});
is($ret . $out, '0t', 'reads still answer (a miss) with a wrong CA');
is($node1->safe_psql('postgres', q{SELECT twocache_get('local')}), 'still here',
	'L1 entries made since are served');
cmp_ok(counter($node1, 'redis_errors'), '>', $errors, 'the refusals are counted');

set_conf($node1, redis_tls_ca_file => $ca, redis_tls_cert_file => '', redis_tls_key_file => '');
ok( poll(
		$node1, q{SELECT NOT subscribed AND last_error ~ 'TLS|closed|read'
				 FROM twocache_status() WHERE last_error NOT LIKE '%certificate verify failed%'}),
	'without a client certificate the server refuses us, visibly');

set_conf($node1, redis_tls_ca_file => $redis->wrong_ca_file,
	redis_tls_cert_file => $cert, redis_tls_key_file => $key, redis_tls_verify => 'none');
ok(poll($node1, 'SELECT subscribed FROM twocache_status()'),
	'verify = none accepts a certificate of an unknown CA');

# ---------------------------------------------------------------------
# A plain URL against the TLS port
# ---------------------------------------------------------------------

set_conf($node1, redis_url => "redis://127.0.0.1:$port", redis_tls_verify => 'full');
ok(poll($node1, q{SELECT NOT subscribed AND last_error <> '' FROM twocache_status()}),
	'redis:// against a TLS port fails cleanly');
($ret, $out, $err) = $node1->psql('postgres', q{SELECT twocache_set('p', 'v')});
is($ret . $out, '0t', '... writes apply locally');

# ---------------------------------------------------------------------
# rediss-sentinel://: TLS to the Sentinels and to the master they name
# ---------------------------------------------------------------------

my $tls_master = TwoCacheRedis->new(tls => 1, tls_from => $redis);
my $tls_sentinels = TwoCacheSentinel->new(master => $tls_master, n => 1, quorum => 1);
like($tls_sentinels->url, qr{^rediss-sentinel://}, '(the Sentinel URL is a TLS one)');
set_conf($node1, redis_url => $tls_sentinels->url, redis_tls_ca_file => $ca,
	redis_tls_cert_file => $cert, redis_tls_key_file => $key);
ok(poll($node1, 'SELECT subscribed FROM twocache_status()'),
	'node1 subscribes to the master a TLS Sentinel names');
is( $node1->safe_psql('postgres', q{SELECT redis_node || ' ' || redis_role FROM twocache_status()}),
	'127.0.0.1:' . $tls_master->port . ' master', 'its status names that master');
is($node1->safe_psql('postgres', q{SELECT twocache_set('s', 'via sentinel')}), 't',
	'node1 writes through it');
like($tls_master->cli('GET', 'db:postgres:s'), qr/via sentinel/, 'the value is on the master');

no_crash_in_log($_) foreach ($node1, $node2);
$_->stop foreach ($node1, $node2);
done_testing();
