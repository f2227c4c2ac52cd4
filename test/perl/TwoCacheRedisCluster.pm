
=pod

=head1 NAME

TwoCacheRedisCluster - a throwaway Redis Cluster for twocache's TAP tests

=head1 SYNOPSIS

  use TwoCacheRedis;
  use TwoCacheRedisCluster;

  my $c = TwoCacheRedisCluster->new(masters => 3, replicas_per_master => 1,
      password => 'pw');
  $node->append_conf('postgresql.conf',
      "twocache.redis_url = '" . $c->url . "'");
  # redis-cluster://:pw@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3

  my $owner = $c->node_for_key('db:postgres:k');      # a TwoCacheRedis
  $c->cli($owner, 'GET', 'db:postgres:k');            # redis-cli -c

  my $moved = $c->reshard(from => $m1, to => $m2, slots => 10);

  # a migration in progress: the source answers -ASK for what has moved
  my $mig = $c->migrate_slot_start(key => 'db:postgres:k', to => $m2,
      keys => ['db:postgres:k']);
  eval { $mig->{from}->command('GET', 'db:postgres:k') };   # ASK ...
  $c->migrate_slot_finish($mig);

  my $new = $c->failover($m1);      # CLUSTER FAILOVER on its replica
  my $promoted = $c->kill9($m2);    # SIGKILL; its replica takes over

=head1 DESCRIPTION

C<masters * (1 + replicas_per_master)> redis-server cluster nodes, each a
TwoCacheRedis started with C<cluster>: a free loopback port, a second free
port for the cluster bus (C<cluster-port>), its C<nodes.conf> in its own
directory, C<cluster-node-timeout> 1000 ms, no persistence unless
C<appendonly>.  C<redis-cli --cluster create> joins them; which nodes
become masters is whatever redis-cli chose: ask C<masters>.

Every wait polls for what it is about, for at most the default test
timeout.  "Settled" (C<wait_settled>) means: on every running, unpaused
node C<cluster_state:ok>, all 16384 slots ok, every node known; no node
seen in handshake, without address or as C<fail?>; every running node
connected and not failed, every stopped or killed node marked C<fail> by
all; every node's CLUSTER NODES gives the same map (who is master of which
slots, who replicates whom; importing/migrating marks aside); and every
replica's link to its master up.  A paused node counts as stopped: the
cluster has settled once the others have marked it failed.  C<new> dies if the cluster does not
settle; the other waits return false (after a C<diag>).

=cut

package TwoCacheRedisCluster;

use strict;
use warnings;

use Carp;
use PostgreSQL::Test::Utils;
use TwoCacheRedis;

use constant CLUSTER_SLOTS => 16384;

=pod

=head1 METHODS

=over

=item TwoCacheRedisCluster->new(%opts)

Start the nodes, create the cluster and wait until it has settled.
Options: C<masters> (default 3, at least 3), C<replicas_per_master>
(default 1), C<password> (every node's C<requirepass> and C<masterauth>),
C<node_timeout> (ms, default 1000), C<appendonly>, C<tls> (TLS everywhere,
the cluster bus and replication too, with one set of certificates: those
of the first node).

=cut

sub new
{
	my ($class, %opts) = @_;
	my $nm = $opts{masters} // 3;
	my $rpm = $opts{replicas_per_master} // 1;
	croak 'a Redis Cluster needs at least 3 masters' if $nm < 3;
	my $self = bless {
		password => $opts{password},
		tls => $opts{tls} ? 1 : 0,
		nodes => [],
	}, $class;

	foreach my $i (1 .. $nm * (1 + $rpm))
	{
		my $first = $self->{nodes}->[0];
		push @{ $self->{nodes} },
		  TwoCacheRedis->new(
			cluster => 1,
			password => $opts{password},
			cluster_node_timeout => $opts{node_timeout} // 1000,
			appendonly => $opts{appendonly},
			$self->{tls} ? (tls => 1, defined $first ? (tls_from => $first) : ()) : ());
	}
	my ($rc, $out, $err) = $self->{nodes}->[0]->cli_run(
		'--cluster', 'create',
		(map { $_->host . ':' . $_->port } @{ $self->{nodes} }),
		'--cluster-replicas', $rpm, '--cluster-yes');
	croak "redis-cli --cluster create failed ($rc):\n$out\n$err" if $rc != 0;
	$self->wait_settled or croak 'the cluster did not settle after it was created';
	Test::More::note('redis cluster created; masters on ports '
		  . join(', ', map { $_->port } $self->masters));
	return $self;
}

=pod

=item $c->url(%opts)

C<redis-cluster://[:pw@]127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3>
(C<rediss-cluster://> over TLS): the current masters as the seed list.
Options: C<password> (another one; C<''> none), C<user>, C<seeds> (an
array of TwoCacheRedis nodes or of ports to list instead, in that order).

=cut

sub url
{
	my ($self, %opts) = @_;
	my $pw = exists $opts{password} ? $opts{password} : $self->{password};
	my $user = $opts{user} // '';
	my $auth = (defined $pw && $pw ne '') ? "$user:$pw@" : $user ne '' ? "$user@" : '';
	my @seeds = $opts{seeds} ? @{ $opts{seeds} } : $self->masters;
	my @ports = map { ref $_ ? $_->port : $_ } @seeds;
	my $scheme = $self->{tls} ? 'rediss-cluster' : 'redis-cluster';
	return "$scheme://$auth" . join(',', map { "127.0.0.1:$_" } @ports);
}

=pod

=item $c->nodes, $c->password

Every node (TwoCacheRedis instances, in the order they were started); the
password.

=cut

sub nodes { return @{ $_[0]->{nodes} }; }
sub password { return $_[0]->{password}; }

sub _live
{
	my ($self) = @_;
	return grep { $_->is_running && !$_->is_paused } @{ $self->{nodes} };
}

sub _by_port
{
	my ($self, $port) = @_;
	my ($n) = grep { $_->port == $port } @{ $self->{nodes} };
	return $n;
}

# "k:v" lines as a hash reference.
sub _kv
{
	my ($text) = @_;
	my %h;
	foreach my $l (split /\r?\n/, $text)
	{
		my ($k, $v) = split /:/, $l, 2;
		$h{$k} = $v if defined $v;
	}
	return \%h;
}

# CLUSTER NODES of $node, parsed: one hash reference per line.
sub _view
{
	my ($node) = @_;
	my @view;
	foreach my $line (split /\n/, $node->command('CLUSTER', 'NODES', { timeout => 1 }))
	{
		my ($id, $addr, $flags, $master, $ps, $pr, $epoch, $link, @slots) = split ' ', $line;
		my ($port) = $addr =~ /:(\d+)@/;
		push @view,
		  {
			id => $id,
			port => $port,
			flags => { map { $_ => 1 } split /,/, $flags },
			master => $master,
			link => $link,
			slots => [ grep { !/^\[/ } @slots ],
			migrations => [ grep { /^\[/ } @slots ],
		  };
	}
	return \@view;
}

# The map a view describes, as a string to compare views by.
sub _canonical
{
	my ($view) = @_;
	my %port_of = map { $_->{id} => $_->{port} } @$view;
	return join "\n", sort map {
		my $role =
		    $_->{flags}->{master} ? 'master'
		  : $_->{flags}->{slave} ? 'replica of ' . ($port_of{ $_->{master} } // '?')
		  : 'none';
		"$_->{port} $role" . ($_->{flags}->{fail} ? ' fail' : '') . " @{$_->{slots}}"
	} @$view;
}

# A view from the first running node that answers.
sub _any_view
{
	my ($self) = @_;
	foreach my $n ($self->_live)
	{
		my $v = eval { _view($n) };
		return $v if $v;
	}
	croak 'no cluster node answers';
}

sub _slots_of
{
	my ($entry) = @_;
	my @s;
	foreach my $r (@{ $entry->{slots} })
	{
		my ($lo, $hi) = split /-/, $r;
		push @s, $lo .. ($hi // $lo);
	}
	return @s;
}

# Is the cluster settled?  ($ok, $why)
sub _settled
{
	my ($self) = @_;
	my @live = $self->_live;
	my %live = map { $_->port => 1 } @live;
	my $total = scalar @{ $self->{nodes} };
	my ($ref, $ref_port);
	foreach my $n (@live)
	{
		my $p = $n->port;
		my $ci = _kv($n->command('CLUSTER', 'INFO', { timeout => 1 }));
		return (0, "$p: cluster_state:$ci->{cluster_state}")
		  unless $ci->{cluster_state} eq 'ok';
		return (0, "$p: cluster_slots_ok:$ci->{cluster_slots_ok}")
		  unless $ci->{cluster_slots_ok} == CLUSTER_SLOTS;
		return (0, "$p: cluster_known_nodes:$ci->{cluster_known_nodes}")
		  unless $ci->{cluster_known_nodes} == $total;
		my $view = _view($n);
		foreach my $e (@$view)
		{
			my $f = $e->{flags};
			my $flags = join(',', sort keys %$f);
			return (0, "$p sees $e->{port} as $flags")
			  if $f->{handshake} || $f->{noaddr} || $f->{'fail?'};
			if ($live{ $e->{port} })
			{
				return (0, "$p sees $e->{port} as $flags") if $f->{fail};
				return (0, "$p: link to $e->{port} $e->{link}")
				  if !$f->{myself} && $e->{link} ne 'connected';
			}
			else
			{
				return (0, "$p does not see stopped $e->{port} failed yet")
				  unless $f->{fail};
			}
		}
		my $c = _canonical($view);
		if (!defined $ref)
		{
			($ref, $ref_port) = ($c, $p);
		}
		elsif ($c ne $ref)
		{
			return (0, "$p and $ref_port disagree:\n$c\n--\n$ref");
		}
		my ($me) = grep { $_->{flags}->{myself} } @$view;
		if ($me->{flags}->{slave})
		{
			my $ri = $n->info('replication');
			return (0, "$p: master_link_status:$ri->{master_link_status}")
			  unless $ri->{master_link_status} eq 'up';
		}
	}
	return (1, '');
}

=pod

=item $c->wait_settled

Wait until the cluster has settled (see DESCRIPTION).  True once it has,
false if not within the default test timeout.  For a test that stopped,
started, paused or resumed nodes itself.

=cut

sub wait_settled
{
	my ($self) = @_;
	return TwoCacheRedis::poll_until('the cluster to settle', sub { $self->_settled });
}

=pod

=item $c->masters

The current masters that serve slots (TwoCacheRedis nodes), by CLUSTER
NODES of a running node, ordered by their lowest slot.

=item $c->replicas_of($master)

The nodes that the cluster sees replicating C<$master> (and not failed).

=item $c->node_id($node)

CLUSTER MYID of C<$node>.

=cut

sub masters
{
	my ($self) = @_;
	my $view = $self->_any_view;
	my @m = grep { $_->{flags}->{master} && !$_->{flags}->{fail} && @{ $_->{slots} } } @$view;
	@m = sort { (_slots_of($a))[0] <=> (_slots_of($b))[0] } @m;
	return map { $self->_by_port($_->{port}) } @m;
}

sub replicas_of
{
	my ($self, $master) = @_;
	my $view = $self->_any_view;
	my ($m) = grep { $_->{port} == $master->port } @$view;
	croak 'port ' . $master->port . ' is not a node of this cluster' unless $m;
	return map { $self->_by_port($_->{port}) }
	  sort { $a->{port} <=> $b->{port} }
	  grep { $_->{flags}->{slave} && !$_->{flags}->{fail} && $_->{master} eq $m->{id} } @$view;
}

sub node_id
{
	my ($self, $node) = @_;
	return $node->command('CLUSTER', 'MYID', { timeout => 1 });
}

=pod

=item $c->keyslot($key)

CLUSTER KEYSLOT of C<$key> (the hash slot, 0 to 16383).

=item $c->node_for_slot($slot), $c->node_for_key($key)

The master that serves the slot, or the key's slot, by CLUSTER NODES of a
running node (a TwoCacheRedis; undef if none).

=item $c->slots_of($node)

The slots C<$node> serves, a sorted list of numbers.

=cut

sub keyslot
{
	my ($self, $key) = @_;
	my ($n) = $self->_live or croak 'no cluster node is running';
	return $n->command('CLUSTER', 'KEYSLOT', $key, { timeout => 1 });
}

sub node_for_slot
{
	my ($self, $slot) = @_;
	foreach my $e (@{ $self->_any_view })
	{
		next unless $e->{flags}->{master} && !$e->{flags}->{fail};
		foreach my $r (@{ $e->{slots} })
		{
			my ($lo, $hi) = split /-/, $r;
			return $self->_by_port($e->{port}) if $slot >= $lo && $slot <= ($hi // $lo);
		}
	}
	return undef;
}

sub node_for_key
{
	my ($self, $key) = @_;
	return $self->node_for_slot($self->keyslot($key));
}

sub slots_of
{
	my ($self, $node) = @_;
	my ($e) = grep { $_->{port} == $node->port } @{ $self->_any_view };
	return () unless $e;
	return sort { $a <=> $b } _slots_of($e);
}

=pod

=item $c->reshard(from => $node, to => $node, slots => $n)

Move C<$n> slots, with their keys, from one master to another with
C<redis-cli --cluster reshard ... --cluster-yes>, then wait until the
cluster has settled.  Returns an array reference of the slots moved
(sorted), or undef (after a C<diag>) if redis-cli failed or the cluster did
not settle.

=cut

sub reshard
{
	my ($self, %opts) = @_;
	my ($from, $to, $n) = @opts{qw(from to slots)};
	croak 'reshard needs from, to and slots' unless $from && $to && $n;
	my %before = map { $_ => 1 } $self->slots_of($from);
	my ($rc, $out, $err) = $from->cli_run(
		'--cluster', 'reshard', $from->host . ':' . $from->port,
		'--cluster-from', $self->node_id($from),
		'--cluster-to', $self->node_id($to),
		'--cluster-slots', $n, '--cluster-yes');
	if ($rc != 0)
	{
		Test::More::diag("redis-cli --cluster reshard failed ($rc):\n$out\n$err");
		return undef;
	}
	return undef unless $self->wait_settled;
	return [ grep { $before{$_} } $self->slots_of($to) ];
}

=pod

=item $c->migrate_slot_start(slot => $s | key => $k, to => $node, keys => [...])

Begin moving one slot (C<slot>, or the slot of C<key>) from the master
that serves it to the master C<to>, by hand, as redis-cli does it: CLUSTER
SETSLOT IMPORTING on the target, CLUSTER SETSLOT MIGRATING on the source,
then MIGRATE of the C<keys> given (default none; each must be in the slot),
and stop there.  While it is in progress the source answers C<-ASK slot
127.0.0.1:PORT> for a key of the slot it does not have (one moved, or one
that does not exist) and serves the others; the target answers C<-MOVED>
unless the command comes after ASKING.  Returns the migration, a hash
reference: C<slot>, C<from> and C<to> (TwoCacheRedis), C<from_id>, C<to_id>.

=item $c->migrate_keys($migration, @keys)

MIGRATE C<@keys> of the slot from the source to the target; with no keys,
every key the source still has in the slot (CLUSTER GETKEYSINSLOT, 100 at a
time).  Returns the number of keys moved.

=item $c->migrate_slot_finish($migration)

Move the keys left (C<migrate_keys>), then CLUSTER SETSLOT NODE on the
target, the source and every other running master, and wait until the
cluster has settled with the target serving the slot.  True once so, false
if not within the default test timeout.

=cut

sub migrate_slot_start
{
	my ($self, %opts) = @_;
	my $slot = $opts{slot} // $self->keyslot($opts{key} // croak 'slot or key needed');
	my $from = $self->node_for_slot($slot) or croak "nobody serves slot $slot";
	my $to = $opts{to} or croak 'migrate_slot_start needs to';
	croak "slot $slot is already served by port " . $to->port if $from == $to;
	my $m = {
		slot => $slot,
		from => $from,
		to => $to,
		from_id => $self->node_id($from),
		to_id => $self->node_id($to),
	};
	$to->command('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $m->{from_id});
	$from->command('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $m->{to_id});
	Test::More::note("slot $slot migrating from port " . $from->port . ' to ' . $to->port);
	$self->migrate_keys($m, @{ $opts{keys} }) if $opts{keys} && @{ $opts{keys} };
	return $m;
}

sub migrate_keys
{
	my ($self, $m, @keys) = @_;
	my $all = !@keys;
	my $moved = 0;
	my $pw = $self->{password};
	foreach my $k (@keys)
	{
		croak "key $k is not in slot $m->{slot}" unless $self->keyslot($k) == $m->{slot};
	}
	while (1)
	{
		@keys = @{ $m->{from}->command('CLUSTER', 'GETKEYSINSLOT', $m->{slot}, 100) }
		  if $all;
		last unless @keys;
		my $r = $m->{from}->command('MIGRATE', $m->{to}->host, $m->{to}->port, '', 0, 10000,
			(defined $pw && $pw ne '') ? ('AUTH', $pw) : (),
			'KEYS', @keys);
		$moved += scalar @keys if $r eq 'OK';
		last unless $all;
	}
	return $moved;
}

sub migrate_slot_finish
{
	my ($self, $m) = @_;
	$self->migrate_keys($m);
	my ($slot, $to_id) = ($m->{slot}, $m->{to_id});
	# the target first, so that the slot is never without an owner
	$m->{to}->command('CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id);
	$m->{from}->command('CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id);
	foreach my $n ($self->masters)
	{
		next if $n == $m->{to} || $n == $m->{from};
		eval { $n->command('CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id, { timeout => 1 }) };
	}
	return TwoCacheRedis::poll_until(
		"slot $slot to settle on port " . $m->{to}->port,
		sub {
			my ($ok, $why) = $self->_settled;
			return ($ok, $why) unless $ok;
			my $owner = $self->node_for_slot($slot);
			return ($owner == $m->{to}, "slot $slot is on port " . $owner->port);
		});
}

=pod

=item $c->failover($master, %opts)

CLUSTER FAILOVER (C<force =E<gt> 1>: FORCE; C<takeover =E<gt> 1>: TAKEOVER)
on the first replica of C<$master>, then wait until that replica says ROLE
master, C<$master> has become its replica and the cluster has settled.
Returns the new master, or undef if that did not happen within the default
test timeout.

=item $c->kill9($master)

SIGKILL C<$master> (see TwoCacheRedis C<kill9>), then wait until its first
replica has been promoted, says ROLE master, and the cluster has settled
with C<$master> marked failed everywhere.  Returns the new master, or
undef.  C<< $master->start >> then brings it back as a replica; follow
with C<wait_settled>.

=cut

sub _wait_promoted
{
	my ($self, $rep, $old, $old_follows) = @_;
	return TwoCacheRedis::poll_until(
		'port ' . $rep->port . ' to take over from port ' . $old->port,
		sub {
			my $role = $rep->role;
			return (0, 'port ' . $rep->port . " has role $role") unless $role eq 'master';
			my ($ok, $why) = $self->_settled;
			return ($ok, $why) unless $ok;
			return (1, '') unless $old_follows;
			my @r = $self->replicas_of($rep);
			return ((grep { $_ == $old } @r) ? 1 : 0,
				'port ' . $old->port . ' does not replicate the new master yet');
		});
}

sub failover
{
	my ($self, $master, %opts) = @_;
	my ($rep) = $self->replicas_of($master) or croak 'port ' . $master->port . ' has no replica';
	$rep->command('CLUSTER', 'FAILOVER',
		$opts{force} ? ('FORCE') : $opts{takeover} ? ('TAKEOVER') : ());
	Test::More::note('cluster failover: port ' . $rep->port . ' takes over from ' . $master->port);
	return $self->_wait_promoted($rep, $master, 1) ? $rep : undef;
}

sub kill9
{
	my ($self, $master) = @_;
	my ($rep) = $self->replicas_of($master) or croak 'port ' . $master->port . ' has no replica';
	$master->kill9;
	return $self->_wait_promoted($rep, $master, 0) ? $rep : undef;
}

=pod

=item $c->cli($node, @args)

C<redis-cli -c> (following redirects) against C<$node> with C<@args>; its
output, as TwoCacheRedis C<cli> returns it.

=item $c->stop

Stop every node (SIGTERM by pid, wait).  They are also killed when the
object is destroyed and when the test script ends.

=back

=cut

sub cli
{
	my ($self, $node, @args) = @_;
	return $node->cli('-c', @args);
}

sub stop
{
	my ($self) = @_;
	$_->stop foreach @{ $self->{nodes} };
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	$_->_kill_now foreach @{ $self->{nodes} || [] };
	return;
}

1;
