
=pod

=head1 NAME

TwoCacheTest - helpers shared by twocache's two-layer TAP tests

=head1 SYNOPSIS

  use TwoCacheRedis;
  use TwoCacheTest;

  my $redis = TwoCacheRedis->new;
  my $node1 = l2_node('node1', $redis, wait_subscribed => 1);
  my $node2 = l2_node('node2', $redis->url(db => 3),
      conf => "twocache.instance_id = 'two'");

  ok(poll($node2, not_in_l1_sql('k')), 'node2: k dropped from L1');
  is(in_l1($node1, 'k'), 't', 'node1: k in L1');
  my $n = counter($node1, 'invalidations_sent');
  my $off = log_offset($node1);
  $redis->stop;
  ok(wait_log($node1, qr/twocache worker unsubscribed/, $off), 'node1: unsubscribed');
  no_crash_in_log($_) foreach ($node1, $node2);

=head1 DESCRIPTION

Everything is exported by default.  Queries run in database C<postgres>
unless a function takes a database argument.

=cut

package TwoCacheTest;

use strict;
use warnings;

use Exporter 'import';
use Scalar::Util qw(blessed);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(l2_node poll counter in_l1 not_in_l1_sql no_crash_in_log log_offset
  wait_log);

=pod

=head1 FUNCTIONS

=over

=item l2_node($name, $redis, %opts)

Create, start and return a PostgreSQL::Test::Cluster whose
C<twocache.redis_url> is C<$redis> (a TwoCacheRedis, for its C<url>, or a
URL string), with C<twocache.redis_timeout = '200ms'> and
C<twocache.redis_retry_interval = '500ms'>, and with the extension created
in database C<postgres>.  Options:

C<conf> (more lines for postgresql.conf),
C<allows_streaming> and C<extra> (passed to C<init>: the latter an array of
initdb arguments),
C<wait_subscribed> (true: wait until C<twocache_status().subscribed>, as
the test C<"$name: subscribed">).

=cut

sub l2_node
{
	my ($name, $redis, %opts) = @_;
	my $url = blessed($redis) ? $redis->url : $redis;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(
		($opts{allows_streaming} ? (allows_streaming => 1) : ()),
		($opts{extra} ? (extra => $opts{extra}) : ()));
	$node->append_conf(
		'postgresql.conf', qq{
twocache.redis_url = '$url'
twocache.redis_timeout = '200ms'
twocache.redis_retry_interval = '500ms'
@{[ $opts{conf} // '' ]}
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION twocache');
	ok(poll($node, 'SELECT subscribed FROM twocache_status()'), "$name: subscribed")
	  if $opts{wait_subscribed};
	return $node;
}

=pod

=item poll($node, $sql, $expected, $secs, $db)

C<poll_query_until> with a deadline of about C<$secs> seconds (default 30)
instead of the default 180, for waits that have a known bound.
C<$expected> defaults to C<'t'>, C<$db> to C<postgres>.

=cut

sub poll
{
	my ($node, $sql, $expected, $secs, $db) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $secs // 30;
	return $node->poll_query_until($db // 'postgres', $sql, $expected // 't');
}

=pod

=item counter($node, $col)

The column C<$col> of C<twocache_stats>.

=cut

sub counter
{
	my ($node, $col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM twocache_stats");
}

=pod

=item in_l1($node, $key, $db)

C<'t'> if the L1 of C<$node> holds a live value for C<$key>, else C<'f'>.

=item not_in_l1_sql($key)

A query that is true once no live value for C<$key> is in L1, for C<poll>.

=cut

sub _l1_exists
{
	my ($key) = @_;
	(my $lit = $key) =~ s/'/''/g;
	return "EXISTS (SELECT 1 FROM twocache_local_keys() k WHERE k = '$lit')";
}

sub in_l1
{
	my ($node, $key, $db) = @_;
	return $node->safe_psql($db // 'postgres', 'SELECT ' . _l1_exists($key));
}

sub not_in_l1_sql
{
	my ($key) = @_;
	return 'SELECT NOT ' . _l1_exists($key);
}

=pod

=item log_offset($node)

The current size of the server log of C<$node>: take it before an action,
and pass it to C<wait_log> to wait for what the action logs, not for a line
left from before.

=item wait_log($node, $regexp, $offset, $secs)

C<wait_for_log> with a deadline of about C<$secs> seconds (default 30),
looking only at the log after C<$offset>: true once a line matches, false
(instead of dying) if none did in time.

=cut

sub log_offset
{
	my ($node) = @_;
	return (-s $node->logfile) // 0;
}

sub wait_log
{
	my ($node, $regexp, $offset, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $secs // 30;
	return defined eval { $node->wait_for_log($regexp, $offset); };
}

=pod

=item no_crash_in_log($node)

Two tests on the server log of C<$node>: C<"NAME: no process crashed"> and
C<"NAME: the worker never exited"> (nor any FATAL or PANIC).

=cut

sub no_crash_in_log
{
	my ($node) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $log = slurp_file($node->logfile);
	my @bad = grep { /terminated by signal|server process .* was terminated/ } split /\n/, $log;
	ok(!@bad, $node->name . ': no process crashed') or diag join("\n", @bad);
	@bad = grep { /twocache worker|FATAL|PANIC/ && /exited|FATAL|PANIC/ } split /\n/, $log;
	ok(!@bad, $node->name . ': the worker never exited') or diag join("\n", @bad);
	return;
}

=pod

=back

=cut

1;
