
=pod

=head1 NAME

TwoCacheSentinel - throwaway Redis Sentinels for twocache's TAP tests

=head1 SYNOPSIS

  use TwoCacheRedis;
  use TwoCacheSentinel;

  my $m = TwoCacheRedis->new(password => 'pw', appendonly => 1);
  my $r = TwoCacheRedis->new(replicaof => $m, appendonly => 1);
  my $s = TwoCacheSentinel->new(master => $m, replicas => [$r]);
  $node->append_conf('postgresql.conf',
      "twocache.redis_url = '" . $s->url . "'");
  # redis-sentinel://:pw@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3#mymaster

  $s->master_addr;                 # '127.0.0.1:' . $m->port
  my $new = $s->failover;          # SENTINEL FAILOVER: $r, once all agree
  $m->kill9;                       # or a real failure
  ok($s->wait_master($r), 'the sentinels promoted r');

=head1 DESCRIPTION

C<n> redis-sentinel processes (Debian's), each a TwoCacheRedis started with
C<sentinel>: a free loopback port, a directory and a configuration file of
its own (Sentinel rewrites it), a child of the test script stopped by its
pid.  They monitor one master and its replicas, all TwoCacheRedis
instances on 127.0.0.1, which share one password (C<requirepass> and
C<masterauth>, as TwoCacheRedis sets them) that the Sentinels use through
C<sentinel auth-pass>.  The Sentinels themselves need no password.

When the master is a TLS server, so are the Sentinels (C<--port 0
--tls-port P>, the master's certificates, C<tls-replication yes> so that
they talk TLS to the data nodes and to each other), and C<url> says
C<rediss-sentinel://>.

Every wait polls for what it is about, for at most the default test
timeout; C<new> dies if the Sentinels do not settle, the other waits return
false (after a C<diag>).

=cut

package TwoCacheSentinel;

use strict;
use warnings;

use Carp;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TwoCacheRedis;

=pod

=head1 METHODS

=over

=item TwoCacheSentinel->new(%opts)

Start the Sentinels and wait until every one of them sees the master (flags
C<master>), every replica (C<num-slaves>, and each one's flags C<slave>)
and every other Sentinel (C<num-other-sentinels>).  Waits first for each
replica to be in sync with the master.  Options:

C<master> (a TwoCacheRedis, required),
C<replicas> (its replicas, TwoCacheRedis instances started with
C<replicaof =E<gt> $master>; default none),
C<n> (default 3), C<quorum> (default 2),
C<master_name> (default C<mymaster>),
C<down_after_ms> (C<sentinel down-after-milliseconds>, default 1000),
C<failover_timeout_ms> (C<sentinel failover-timeout>, default 3000).

=cut

sub new
{
	my ($class, %opts) = @_;
	my $master = $opts{master} or croak 'TwoCacheSentinel->new needs a master';
	my $self = bless {
		master => $master,
		replicas => $opts{replicas} || [],
		n => $opts{n} // 3,
		quorum => $opts{quorum} // 2,
		name => $opts{master_name} // 'mymaster',
		down_after_ms => $opts{down_after_ms} // 1000,
		failover_timeout_ms => $opts{failover_timeout_ms} // 3000,
		sentinels => [],
	}, $class;

	foreach my $r (@{ $self->{replicas} })
	{
		$r->wait_replica_synced($master)
		  or croak 'replica on port ' . $r->port . ' is not in sync with its master';
	}

	my $name = $self->{name};
	my $pw = $master->password;
	foreach my $i (1 .. $self->{n})
	{
		my $port = PostgreSQL::Test::Cluster::get_free_port();
		# resolve-hostnames comes before monitor, which reads the address
		my $conf = join('',
			"bind 127.0.0.1\n",
			"protected-mode no\n",
			"sentinel resolve-hostnames no\n",
			"sentinel announce-hostnames no\n",
			"sentinel monitor $name " . $master->host . ' ' . $master->port . " $self->{quorum}\n",
			"sentinel down-after-milliseconds $name $self->{down_after_ms}\n",
			"sentinel failover-timeout $name $self->{failover_timeout_ms}\n",
			"sentinel parallel-syncs $name 1\n",
			defined $pw && $pw ne '' ? "sentinel auth-pass $name $pw\n" : '');
		push @{ $self->{sentinels} },
		  TwoCacheRedis->new(
			sentinel => 1,
			config => $conf,
			port => $port,
			$master->tls ? (tls_from => $master) : (),
			password => undef);
	}

	$self->_wait_all_seen
	  or croak 'the sentinels did not all see the master, its '
	  . scalar(@{ $self->{replicas} })
	  . ' replicas and each other';
	return $self;
}

# Wait until every running sentinel sees the master, all replicas and all
# other sentinels.
sub _wait_all_seen
{
	my ($self) = @_;
	my $nrep = scalar @{ $self->{replicas} };
	my %rports = map { $_->port => 1 } @{ $self->{replicas} };
	return TwoCacheRedis::poll_until(
		'the sentinels to see the master, replicas and each other',
		sub {
			foreach my $s (@{ $self->{sentinels} })
			{
				my $m = _pairs($s->command('SENTINEL', 'MASTER', $self->{name}, { timeout => 1 }));
				my $p = $s->port;
				return (0, "sentinel $p: master flags $m->{flags}")
				  unless $m->{flags} eq 'master';
				return (0, "sentinel $p: num-slaves $m->{'num-slaves'}")
				  unless $m->{'num-slaves'} == $nrep;
				return (0, "sentinel $p: num-other-sentinels $m->{'num-other-sentinels'}")
				  unless $m->{'num-other-sentinels'} == $self->{n} - 1;
				my $reps = $s->command('SENTINEL', 'REPLICAS', $self->{name}, { timeout => 1 });
				foreach my $r (map { _pairs($_) } @$reps)
				{
					return (0, "sentinel $p: replica $r->{port} flags $r->{flags}")
					  unless $rports{ $r->{port} } && $r->{flags} eq 'slave';
				}
			}
			return (1, '');
		});
}

# A flat [k1, v1, k2, v2 ...] reply as a hash reference.
sub _pairs
{
	my ($list) = @_;
	return { @$list };
}

=pod

=item $s->url(%opts)

C<redis-sentinel://[:pw@]127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3#mymaster>
(C<rediss-sentinel://> over TLS): every Sentinel, and the data nodes'
password.  Options: C<password> (another one; C<''> none), C<user>,
C<master_name> (another name after C<#>), C<ports> (an array of ports to
list instead, in that order: say a closed port first).

=cut

sub url
{
	my ($self, %opts) = @_;
	my $pw = exists $opts{password} ? $opts{password} : $self->{master}->password;
	my $user = $opts{user} // '';
	my $auth = (defined $pw && $pw ne '') ? "$user:$pw@" : $user ne '' ? "$user@" : '';
	my @ports = $opts{ports} ? @{ $opts{ports} } : $self->ports;
	my $scheme = $self->{master}->tls ? 'rediss-sentinel' : 'redis-sentinel';
	return "$scheme://$auth" . join(',', map { "127.0.0.1:$_" } @ports)
	  . '#' . ($opts{master_name} // $self->{name});
}

=pod

=item $s->ports, $s->sentinels, $s->master_name, $s->data_nodes

The Sentinels' ports; the Sentinels themselves (TwoCacheRedis instances: a
test may C<stop>, C<pause> or C<kill9> one, or send it C<command>s); the
master name; the master and replicas given to C<new>.

=cut

sub ports { return map { $_->port } @{ $_[0]->{sentinels} }; }
sub sentinels { return @{ $_[0]->{sentinels} }; }
sub master_name { return $_[0]->{name}; }
sub data_nodes { return ($_[0]->{master}, @{ $_[0]->{replicas} }); }

=pod

=item $s->master_addr

C<'127.0.0.1:PORT'>: the master's address by SENTINEL
get-master-addr-by-name, asked of the first Sentinel that answers within
1 s (stopped and paused ones are skipped); undef if none does.

=item $s->master

The data node (one given to C<new>) at C<master_addr>; undef if none.

=cut

sub _addr_of
{
	my ($self, $s) = @_;
	my $addr = $s->command('SENTINEL', 'get-master-addr-by-name', $self->{name},
		{ timeout => 1 });
	return defined $addr ? "$addr->[0]:$addr->[1]" : undef;
}

sub master_addr
{
	my ($self) = @_;
	foreach my $s (@{ $self->{sentinels} })
	{
		next unless $s->is_running && !$s->is_paused;
		my $addr = eval { $self->_addr_of($s) };
		return $addr if defined $addr;
	}
	return undef;
}

sub _node_at
{
	my ($self, $addr) = @_;
	return undef unless defined $addr;
	foreach my $d ($self->data_nodes)
	{
		return $d if $addr eq $d->host . ':' . $d->port;
	}
	return undef;
}

sub master { return $_[0]->_node_at($_[0]->master_addr); }

=pod

=item $s->failover

SENTINEL FAILOVER (asked again while the Sentinel answers C<NOGOODSLAVE>
or does not answer; C<INPROG> counts as asked), then wait until every
running Sentinel reports the same master address and it is not the old
one.  Returns the new master (a data node), or undef if that does not
happen within the default test timeout.

The old master, if it is running, is not a replica yet when this returns:
the Sentinels turn it into one when they next look at it (INFO every 10 s),
so a test that needs that waits with C<< $old->wait_role('slave') >> or
C<< $old->wait_replica_synced($new) >>.

=cut

sub failover
{
	my ($self) = @_;
	my $old = $self->master_addr;
	croak 'no sentinel answers' unless defined $old;
	my $asked = TwoCacheRedis::poll_until(
		'a sentinel to accept SENTINEL FAILOVER',
		sub {
			my ($s) = grep { $_->is_running && !$_->is_paused } @{ $self->{sentinels} };
			return (0, 'no sentinel running') unless $s;
			my $r = eval { $s->command('SENTINEL', 'FAILOVER', $self->{name}, { timeout => 1 }) };
			# INPROG: one is under way (ours, if an OK was lost): never ask twice
			return (1, '') if defined $r && $r eq 'OK' || $@ =~ /INPROG/;
			return (0, $@ || $r);
		});
	return undef unless $asked;
	Test::More::note("sentinel failover of $self->{name} from $old started");
	my $new;
	TwoCacheRedis::poll_until(
		"every sentinel to report a master other than $old",
		sub {
			my %seen;
			foreach my $s (grep { $_->is_running && !$_->is_paused } @{ $self->{sentinels} })
			{
				$seen{ $self->_addr_of($s) // 'none' }++;
			}
			my @addrs = keys %seen;
			$new = $addrs[0];
			return (@addrs == 1 && $new ne $old, 'masters: ' . join(', ', sort @addrs));
		}) or return undef;
	Test::More::note("sentinel failover of $self->{name}: $new is master");
	return $self->_node_at($new);
}

=pod

=item $s->wait_master($redis)

Wait until every running Sentinel reports C<$redis> (a TwoCacheRedis) as
the master and C<$redis> says ROLE C<master>.  True once so, false if not
within the default test timeout.

=cut

sub wait_master
{
	my ($self, $redis) = @_;
	my $want = $redis->host . ':' . $redis->port;
	return TwoCacheRedis::poll_until(
		"every sentinel to report $want as master",
		sub {
			foreach my $s (grep { $_->is_running && !$_->is_paused } @{ $self->{sentinels} })
			{
				my $addr = $self->_addr_of($s) // 'none';
				return (0, 'sentinel ' . $s->port . " reports $addr") unless $addr eq $want;
			}
			my $role = $redis->role;
			return ($role eq 'master', "$want has role $role");
		});
}

=pod

=item $s->stop

Stop every Sentinel (SIGTERM by pid, wait).  They are also killed when the
object is destroyed and when the test script ends.

=back

=cut

sub stop
{
	my ($self) = @_;
	$_->stop foreach @{ $self->{sentinels} };
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	$_->_kill_now foreach @{ $self->{sentinels} || [] };
	return;
}

1;
