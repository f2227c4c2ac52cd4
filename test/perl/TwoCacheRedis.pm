
=pod

=head1 NAME

TwoCacheRedis - a throwaway redis-server for twocache's TAP tests

=head1 SYNOPSIS

  use TwoCacheRedis;

  my $redis = TwoCacheRedis->new;                  # started, answers PING
  my $secret = TwoCacheRedis->new(password => 'pw');
  $node->append_conf('postgresql.conf',
      "twocache.redis_url = '" . $redis->url . "'");

  $redis->cli('GET', 'db:postgres:k');             # redis-cli output
  $redis->command('GET', "db:postgres:a\nb");      # raw RESP, binary-safe

  $redis->stop;        # SIGTERM, wait
  $redis->start;       # again, on the same port (empty: nothing is saved)
  $redis->pause;       # SIGSTOP: connections stay open, nothing answers
  $redis->resume;      # SIGCONT
  $redis->kill9;       # SIGKILL, reaped

  my $tls = TwoCacheRedis->new(tls => 1, tls_auth_clients => 'yes');
  $tls->url;                                       # rediss://127.0.0.1:PORT
  $tls->ca_file; $tls->client_cert_file; $tls->client_key_file;

  my $aof = TwoCacheRedis->new(password => 'pw', appendonly => 1);
  my $replica = TwoCacheRedis->new(replicaof => $aof);   # password pw too
  $replica->wait_replica_synced($aof) or die;
  $replica->role;                                  # 'slave'

=head1 DESCRIPTION

Each instance runs Debian's redis-server on a free loopback port, in a
directory of its own under the test's tmp_check, with no persistence
(C<--save '' --appendonly no>, unless C<appendonly> says otherwise) and in
the foreground, as a child process of the test script.  It is stopped by
its pid only: by C<stop> or C<kill9>, when the object is destroyed, and at
the latest when the test script ends.

Every wait polls for the condition it is about, for at most the default
test timeout (C<$PostgreSQL::Test::Utils::timeout_default>).  The C<wait_*>
methods return true once the condition holds and false (after a C<diag>
saying what was last seen) if it did not in time, so that a test can
C<ok()> them; C<new> and C<start> die instead.

TwoCacheSentinel and TwoCacheRedisCluster build on this module: a Sentinel
is an instance started with C<sentinel> and C<config>, a cluster node one
started with C<cluster>.

=cut

package TwoCacheRedis;

use strict;
use warnings;

use Carp;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our $redis_server = $ENV{REDIS_SERVER} || '/usr/bin/redis-server';
our $redis_cli = $ENV{REDIS_CLI} || '/usr/bin/redis-cli';
our $redis_sentinel = $ENV{REDIS_SENTINEL} || '/usr/bin/redis-sentinel';
our $openssl = $ENV{OPENSSL} || '/usr/bin/openssl';


# Every instance started by this process, for the END block.
my @all;

=pod

=head1 METHODS

=over

=item TwoCacheRedis->new(%opts)

Start a redis-server and wait until it answers PING.  Options:
C<password> (C<requirepass>, and C<masterauth> too, so that the server can
follow a failover to another server of the same password),
C<port> (default: a free one),
C<unixsocket> (true: also listen on a unix socket, in a short temporary
directory; see C<socket_path> and C<unix_url>),
C<start> (default 1; 0 to create the object without starting it),
C<args> (an array of extra redis-server arguments, last on the command
line, so they override everything else).

C<appendonly> (true: C<--appendonly yes>, the server keeps its data across
C<stop>/C<start> and C<kill9>/C<start>).

C<replicaof> (another TwoCacheRedis: start as its replica; the password
defaults to the master's, which is also C<masterauth>; a replica of a TLS
master is a TLS server too, with the master's certificates, and replicates
over TLS).

C<tls> (true: C<--port 0 --tls-port PORT>, no plaintext port, with the
certificates described under C<ca_file>, made in the instance's directory
when the object is created and kept across restarts),
C<tls_auth_clients> (C<'no'>, the default, C<'yes'> or C<'optional'>: does
the server ask for a client certificate),
C<tls_from> (another TLS TwoCacheRedis whose certificates to use instead of
making new ones: servers that talk to each other need one CA).

C<cluster> (true: a cluster node, C<cluster-enabled yes>, its
C<nodes.conf> in its directory, the cluster bus on C<bus_port>, a second
free port; over TLS when C<tls>), C<cluster_node_timeout> (ms, default
1000).  Used by TwoCacheRedisCluster.

C<sentinel> and C<config>: C<config> is the text of a configuration file,
written once into the instance's directory when the object is created and
given to the server first on its command line; with C<sentinel> the
process is Debian's redis-sentinel, which rewrites that file as it learns
(its state survives C<stop>/C<start>).  Used by TwoCacheSentinel.

=cut

sub new
{
	my ($class, %opts) = @_;
	my $master = $opts{replicaof};
	my $tls_from = $opts{tls_from};
	$tls_from //= $master if defined $master && $master->tls;
	my $self = bless {
		password => exists $opts{password} ? $opts{password}
		: defined $master ? $master->password
		: undef,
		port => $opts{port} // PostgreSQL::Test::Cluster::get_free_port(),
		dir => PostgreSQL::Test::Utils::tempdir($opts{sentinel} ? 'sentinel' : 'redis'),
		args => $opts{args} || [],
		socket => $opts{unixsocket}
		? PostgreSQL::Test::Utils::tempdir_short() . '/redis.sock'
		: undef,
		appendonly => $opts{appendonly} ? 1 : 0,
		master => $master,
		tls => ($opts{tls} || defined $tls_from) ? 1 : 0,
		tls_auth_clients => $opts{tls_auth_clients} // 'no',
		cluster => $opts{cluster} ? 1 : 0,
		cluster_node_timeout => $opts{cluster_node_timeout} // 1000,
		sentinel => $opts{sentinel} ? 1 : 0,
		conf_file => undef,
		owner => $$,
		pid => undef,
		paused => 0,
		starts => 0,
	}, $class;
	croak "tls_auth_clients must be yes, no or optional"
	  unless $self->{tls_auth_clients} =~ /^(yes|no|optional)$/;
	croak 'a replica of a TLS master must be a TLS server'
	  if defined $master && $master->tls && exists $opts{tls} && !$opts{tls};
	croak 'a TLS replica needs a TLS master'
	  if defined $master && !$master->tls && $self->{tls};
	$self->{bus_port} = PostgreSQL::Test::Cluster::get_free_port()
	  if $self->{cluster};
	if ($self->{tls})
	{
		$self->{certs} = defined $tls_from ? $tls_from->{certs} : _make_certs($self->{dir});
	}
	if (defined $opts{config})
	{
		$self->{conf_file} = $self->{dir} . ($self->{sentinel} ? '/sentinel.conf' : '/redis.conf');
		PostgreSQL::Test::Utils::append_to_file($self->{conf_file}, $opts{config});
	}
	push @all, $self;
	$self->start unless defined $opts{start} && !$opts{start};
	return $self;
}

=pod

=item $redis->port, $redis->host, $redis->pid, $redis->dir, $redis->logfile

=item $redis->password, $redis->socket_path, $redis->tls, $redis->bus_port

=item $redis->master

The TwoCacheRedis given as C<replicaof> (undef if none): what it was
started as, not what it is now.

=cut

sub port { return $_[0]->{port}; }
sub host { return '127.0.0.1'; }
sub pid { return $_[0]->{pid}; }
sub dir { return $_[0]->{dir}; }
sub logfile { return "$_[0]->{dir}/redis.log"; }
sub password { return $_[0]->{password}; }
sub socket_path { return $_[0]->{socket}; }
sub tls { return $_[0]->{tls}; }
sub bus_port { return $_[0]->{bus_port}; }
sub master { return $_[0]->{master}; }
sub conf_file { return $_[0]->{conf_file}; }
sub is_paused { return $_[0]->{paused}; }

=pod

=item $redis->ca_file, $redis->server_cert_file, $redis->server_key_file

=item $redis->client_cert_file, $redis->client_key_file

=item $redis->wrong_ca_file, $redis->wrong_client_cert_file, $redis->wrong_client_key_file

The PEM files of a TLS instance (dies for another): a self-signed test CA;
the server's certificate, signed by it, for C<IP:127.0.0.1> and
C<DNS:localhost> (subject C<CN=localhost>); a client certificate signed by
it; and an unrelated "wrong" CA, with a client certificate signed by that
one.  The keys are EC P-256, mode 0600, the certificates 0644, all owned by
the user the tests run as (the one PostgreSQL runs as).

=cut

sub _cert
{
	my ($self, $name) = @_;
	croak "redis-server on port $self->{port} does not use TLS" unless $self->{tls};
	return $self->{certs}->{$name};
}

sub ca_file { return $_[0]->_cert('ca.crt'); }
sub server_cert_file { return $_[0]->_cert('server.crt'); }
sub server_key_file { return $_[0]->_cert('server.key'); }
sub client_cert_file { return $_[0]->_cert('client.crt'); }
sub client_key_file { return $_[0]->_cert('client.key'); }
sub wrong_ca_file { return $_[0]->_cert('wrong-ca.crt'); }
sub wrong_client_cert_file { return $_[0]->_cert('wrong-client.crt'); }
sub wrong_client_key_file { return $_[0]->_cert('wrong-client.key'); }

# Make the certificates of a TLS instance in DIR/tls with the openssl CLI
# and return { file name => path }.
sub _make_certs
{
	my ($dir) = @_;
	my $d = "$dir/tls";
	mkdir $d or croak "could not create $d: $!";
	my $cnf = "$d/openssl.cnf";
	PostgreSQL::Test::Utils::append_to_file($cnf, <<'CNF');
[req]
distinguished_name = dn
prompt = no
[dn]
CN = twocache
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
	my @key = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
	my $run = sub {
		my @cmd = ($openssl, @_);
		my ($out, $err) = ('', '');
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
		  or croak "@cmd: exit $?: $err";
	};
	my $ca = sub {
		my ($name, $cn) = @_;
		$run->('req', '-x509', '-new', '-config', $cnf, '-extensions', 'ca_ext', @key,
			'-keyout', "$d/$name.key", '-out', "$d/$name.crt", '-days', '3650',
			'-subj', "/CN=$cn");
	};
	my $serial = 1;
	my $leaf = sub {
		my ($name, $cn, $signer, $ext) = @_;
		$run->('req', '-new', '-config', $cnf, @key, '-keyout', "$d/$name.key",
			'-out', "$d/$name.csr", '-subj', "/CN=$cn");
		$run->('x509', '-req', '-in', "$d/$name.csr", '-CA', "$d/$signer.crt",
			'-CAkey', "$d/$signer.key", '-set_serial', ++$serial, '-days', '3650',
			'-extfile', $cnf, '-extensions', $ext, '-out', "$d/$name.crt");
		unlink "$d/$name.csr";
	};
	$ca->('ca', 'twocache test CA');
	$leaf->('server', 'localhost', 'ca', 'server_ext');
	$leaf->('client', 'twocache test client', 'ca', 'client_ext');
	$ca->('wrong-ca', 'twocache wrong CA');
	$leaf->('wrong-client', 'twocache wrong client', 'wrong-ca', 'client_ext');

	my %files;
	foreach my $n (qw(ca server client wrong-ca wrong-client))
	{
		chmod 0600, "$d/$n.key" or croak "chmod $d/$n.key: $!";
		chmod 0644, "$d/$n.crt" or croak "chmod $d/$n.crt: $!";
		$files{"$n.key"} = "$d/$n.key";
		$files{"$n.crt"} = "$d/$n.crt";
	}
	return \%files;
}

=pod

=item $redis->unix_url

C<unix:///path/to/redis.sock> (only with C<unixsocket>).

=cut

sub unix_url
{
	my ($self) = @_;
	croak 'redis-server was started without unixsocket' unless defined $self->{socket};
	return "unix://$self->{socket}";
}

=pod

=item $redis->url(%opts)

C<redis://127.0.0.1:PORT>, or C<rediss://127.0.0.1:PORT> for a TLS
instance, with C<:password@> when the server has one.
C<password =E<gt> 'x'> puts another password in the URL (C<''> none);
C<user =E<gt> 'u'> puts C<u:password@>;
C<host =E<gt> 'localhost'> another host name (for host-name verification);
C<db =E<gt> n> appends C</n>.

=cut

sub url
{
	my ($self, %opts) = @_;
	my $pw = exists $opts{password} ? $opts{password} : $self->{password};
	my $user = $opts{user} // '';
	my $auth = (defined $pw && $pw ne '') ? "$user:$pw@" : $user ne '' ? "$user@" : '';
	my $db = defined $opts{db} ? "/$opts{db}" : '';
	my $scheme = $self->{tls} ? 'rediss' : 'redis';
	return "$scheme://$auth" . ($opts{host} // $self->host) . ":$self->{port}$db";
}

# The command line that starts this instance.
sub _command_line
{
	my ($self) = @_;
	my $c = $self->{certs};
	my @cmd = $self->{sentinel} ? ($redis_sentinel) : ($redis_server);
	push @cmd, $self->{conf_file} if defined $self->{conf_file};
	push @cmd,
	  $self->{tls}
	  ? (
		'--port', '0',
		'--tls-port', $self->{port},
		'--tls-cert-file', $c->{'server.crt'},
		'--tls-key-file', $c->{'server.key'},
		'--tls-client-cert-file', $c->{'client.crt'},
		'--tls-client-key-file', $c->{'client.key'},
		'--tls-ca-cert-file', $c->{'ca.crt'},
		'--tls-auth-clients', $self->{tls_auth_clients},
		'--tls-replication', 'yes',
		$self->{cluster} ? ('--tls-cluster', 'yes') : ())
	  : ('--port', $self->{port});
	push @cmd,
	  '--bind', $self->host,
	  '--dir', $self->{dir},
	  '--logfile', $self->logfile,
	  '--daemonize', 'no',
	  '--protected-mode', 'no';
	push @cmd, ('--requirepass', $self->{password})
	  if defined $self->{password};
	unless ($self->{sentinel})
	{
		push @cmd, '--save', '', '--appendonly', $self->{appendonly} ? 'yes' : 'no';
		# a replica's full sync starts at once, not after 5 s (Redis 7's default)
		push @cmd, '--repl-diskless-sync-delay', '0';
		push @cmd, '--masterauth', $self->{password} if defined $self->{password};
		push @cmd, '--replicaof', $self->{master}->host, $self->{master}->port
		  if defined $self->{master};
		push @cmd, '--unixsocket', $self->{socket}, '--unixsocketperm', '700'
		  if defined $self->{socket};
		push @cmd,
		  '--cluster-enabled', 'yes',
		  '--cluster-config-file', "$self->{dir}/nodes.conf",
		  '--cluster-port', $self->{bus_port},
		  '--cluster-node-timeout', $self->{cluster_node_timeout},
		  # a replica takes over however old its data: no flaky "data too old"
		  '--cluster-replica-validity-factor', '0',
		  '--cluster-allow-replica-migration', 'no'
		  if $self->{cluster};
	}
	push @cmd, @{ $self->{args} };
	return @cmd;
}

=pod

=item $redis->start

Start the server (again, on the same port) and wait until it answers PING.
Dies if it does not within the default test timeout.

=cut

sub start
{
	my ($self) = @_;
	croak "redis-server on port $self->{port} is already running"
	  if $self->is_running;

	my @cmd = $self->_command_line;
	my $pid = fork();
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# the child: no Perl-level cleanup of the parent's objects here
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $self->logfile);
		open(STDERR, '>&', \*STDOUT);
		exec { $cmd[0] } @cmd
		  or print STDERR "could not exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	$self->{pid} = $pid;
	$self->{paused} = 0;
	$self->{starts}++;
	my $what = $self->{sentinel} ? 'redis-sentinel' : 'redis-server';
	Test::More::note("$what started on port $self->{port}, pid $pid");

	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until ($self->ping)
	{
		if (!$self->is_running)
		{
			my $log = -f $self->logfile ? slurp_file($self->logfile) : '';
			$self->{pid} = undef;
			croak "$what on port $self->{port} exited at start:\n$log";
		}
		if (time > $deadline)
		{
			$self->_kill_now;
			croak "$what on port $self->{port} did not answer PING";
		}
		usleep(50_000);
	}
	return $self;
}

=pod

=item $redis->is_running

True while the child process exists (paused counts as running).

=cut

sub is_running
{
	my ($self) = @_;
	return 0 unless defined $self->{pid};
	my $r = waitpid($self->{pid}, WNOHANG);
	if ($r == $self->{pid} || $r == -1)
	{
		$self->{pid} = undef;
		$self->{paused} = 0;
		return 0;
	}
	return 1;
}

=pod

=item $redis->stop

SIGTERM by pid (SIGCONT first when paused) and wait for the process; SIGKILL
if it has not exited after the default test timeout.

=cut

sub stop
{
	my ($self) = @_;
	return unless $self->is_running;
	my $pid = $self->{pid};
	kill 'CONT', $pid if $self->{paused};
	kill 'TERM', $pid;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (waitpid($pid, WNOHANG) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			last;
		}
		usleep(20_000);
	}
	Test::More::note("redis-server on port $self->{port} (pid $pid) stopped");
	$self->{pid} = undef;
	$self->{paused} = 0;
	return;
}

=pod

=item $redis->kill9

SIGKILL by pid, and reap: the server dies at once, saving nothing (with
C<appendonly> what it had written to its AOF is there at the next C<start>).
Dies if the server is not running.

=cut

sub kill9
{
	my ($self) = @_;
	croak "redis-server on port $self->{port} is not running" unless $self->is_running;
	my $pid = $self->{pid};
	kill 'KILL', $pid;
	waitpid($pid, 0);
	Test::More::note("redis-server on port $self->{port} (pid $pid) killed (SIGKILL)");
	$self->{pid} = undef;
	$self->{paused} = 0;
	return;
}

=pod

=item $redis->pause, $redis->resume

SIGSTOP and SIGCONT by pid.  While paused the kernel still accepts
connections (into the listen backlog) and data, but nothing is answered.

=cut

sub pause
{
	my ($self) = @_;
	croak "redis-server is not running" unless $self->is_running;
	kill 'STOP', $self->{pid};
	$self->{paused} = 1;
	Test::More::note("redis-server on port $self->{port} paused (SIGSTOP)");
	return;
}

sub resume
{
	my ($self) = @_;
	croak "redis-server is not running" unless $self->is_running;
	kill 'CONT', $self->{pid};
	$self->{paused} = 0;
	Test::More::note("redis-server on port $self->{port} resumed (SIGCONT)");
	return;
}

=pod

=item $redis->cli(@args)

Run redis-cli against this server (the password through REDISCLI_AUTH, so
that it is not on the command line; for a TLS server with C<--tls> and the
test CA and client certificate) and return its standard output, with the
trailing newline removed.  The output is redis-cli's raw format (its
default when not writing to a terminal): a nil reply is an empty string.
Dies if redis-cli does not finish within 30 s.

=item $redis->cli_run(@args)

The same, but returns C<($exit_status, $stdout, $stderr)> and never warns,
and is bound by the default test timeout instead (for C<--cluster>
commands that wait themselves).

=cut

sub _cli_command
{
	my ($self, @args) = @_;
	return (
		$redis_cli, '-h', $self->host, '-p', $self->{port},
		$self->{tls}
		? ('--tls', '--cacert', $self->ca_file,
			'--cert', $self->client_cert_file, '--key', $self->client_key_file)
		: (),
		@args);
}

sub cli
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{REDISCLI_AUTH} = $self->{password} if defined $self->{password};
	my @cmd = $self->_cli_command(@args);
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(30))
	  or Test::More::diag("redis-cli @args: exit $?; $err");
	chomp $out;
	return $out;
}

sub cli_run
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{REDISCLI_AUTH} = $self->{password} if defined $self->{password};
	my @cmd = $self->_cli_command(@args);
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $rc = $? >> 8;
	chomp $out;
	return ($rc, $out, $err);
}

=pod

=item $redis->ping(%opts)

PING over a fresh connection (AUTH first when there is a password); true if
PONG arrives within C<timeout> seconds (default 1).  Never blocks longer.

=cut

sub ping
{
	my ($self, %opts) = @_;
	my $r = eval { $self->command('PING', { timeout => $opts{timeout} // 1 }) };
	return defined $r && !ref $r && $r eq 'PONG';
}

=pod

=item $redis->command(@args)

Send one command over a fresh connection and return the reply, decoded from
RESP and binary-safe: a string, undef for nil, an integer, or an array
reference.  An error reply dies with the error text (C<"redis error: MOVED
1234 127.0.0.1:PORT\n">: no redirect is followed).  A last argument that
is a hash reference gives options: C<timeout> in seconds (default 10),
C<password> (default the server's; C<''> none).

Against a TLS server the connection goes through C<openssl s_client> (Perl
has no TLS module here), which verifies the server's certificate against
C<tls_ca> (default C<ca_file>) and presents C<tls_cert> and C<tls_key>
(default the client certificate; C<''> none).  A failed handshake dies
with s_client's messages.

=cut

sub command
{
	my ($self, @args) = @_;
	my %opts = (ref $args[-1] eq 'HASH') ? %{ pop @args } : ();
	my $timeout = $opts{timeout} // 10;
	my $pw = exists $opts{password} ? $opts{password} : $self->{password};
	my $deadline = time + $timeout;
	my $conn;

	if ($self->{tls})
	{
		$conn = $self->_tls_connect(\%opts);
	}
	else
	{
		my $sock = IO::Socket::INET->new(
			PeerAddr => $self->host,
			PeerPort => $self->{port},
			Proto => 'tcp',
			Timeout => $timeout)
		  or die "could not connect to redis-server on port $self->{port}: $!\n";
		binmode $sock;
		$conn = { sock => $sock, wsock => $sock };
	}
	$conn->{buf} = '';
	$conn->{deadline} = $deadline;

	local $SIG{PIPE} = 'IGNORE';
	my $reply = eval {
		if (defined $pw && $pw ne '')
		{
			_send($conn, 'AUTH', $pw);
			_reply($conn);
		}
		_send($conn, @args);
		_reply($conn);
	};
	my $error = $@;
	_disconnect($conn);
	if ($error)
	{
		# a TLS failure shows as a closed connection: say why
		$error .= slurp_file($conn->{errfile})
		  if defined $conn->{errfile} && -s $conn->{errfile}
		  && $error !~ /^redis error/;
		die $error;
	}
	return $reply;
}

# Start openssl s_client as a child, connected to this server; its stdin and
# stdout are the connection.
sub _tls_connect
{
	my ($self, $opts) = @_;
	my $ca = $opts->{tls_ca} // $self->ca_file;
	my $cert = $opts->{tls_cert} // $self->client_cert_file;
	my $key = $opts->{tls_key} // $self->client_key_file;
	my $errfile = "$self->{dir}/s_client.err";
	my @cmd = (
		$openssl, 's_client',
		'-connect', $self->host . ":$self->{port}",
		'-quiet', '-nocommands', '-verify_return_error', '-verify_quiet',
		'-CAfile', $ca,
		$cert ne '' ? ('-cert', $cert, '-key', $key) : ());

	pipe(my $child_in, my $to_child) or die "pipe: $!\n";
	pipe(my $from_child, my $child_out) or die "pipe: $!\n";
	my $pid = fork();
	die "fork failed: $!\n" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<&', $child_in);
		open(STDOUT, '>&', $child_out);
		open(STDERR, '>', $errfile);
		exec { $cmd[0] } @cmd
		  or print STDERR "could not exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	close $child_in;
	close $child_out;
	binmode $from_child;
	binmode $to_child;
	return { sock => $from_child, wsock => $to_child, pid => $pid, errfile => $errfile };
}

sub _disconnect
{
	my ($conn) = @_;
	close $conn->{wsock} if $conn->{wsock} != $conn->{sock};
	close $conn->{sock};
	if (defined $conn->{pid})
	{
		# s_client would wait for the server to close (-quiet is -ign_eof)
		kill 'TERM', $conn->{pid};
		waitpid($conn->{pid}, 0);
	}
	return;
}

sub _send
{
	my ($conn, @args) = @_;
	my $msg = '*' . scalar(@args) . "\r\n";
	foreach my $a (@args)
	{
		utf8::encode($a) if utf8::is_utf8($a);
		$msg .= '$' . length($a) . "\r\n$a\r\n";
	}
	my $off = 0;
	while ($off < length $msg)
	{
		my $n = syswrite($conn->{wsock}, $msg, length($msg) - $off, $off);
		die "could not send to redis-server: $!\n" unless defined $n;
		$off += $n;
	}
	return;
}

# Make sure at least $n bytes are buffered.
sub _fill
{
	my ($conn, $n) = @_;
	my $sel = IO::Select->new($conn->{sock});
	while (length($conn->{buf}) < $n)
	{
		my $left = $conn->{deadline} - time;
		die "timeout waiting for redis-server\n"
		  if $left <= 0 || !$sel->can_read($left);
		my $got = sysread($conn->{sock}, my $chunk, 65536);
		die "could not read from redis-server: $!\n" unless defined $got;
		die "redis-server closed the connection\n" if $got == 0;
		$conn->{buf} .= $chunk;
	}
	return;
}

sub _line
{
	my ($conn) = @_;
	my $i;
	while (($i = index($conn->{buf}, "\r\n")) < 0)
	{
		_fill($conn, length($conn->{buf}) + 1);
	}
	my $line = substr($conn->{buf}, 0, $i);
	substr($conn->{buf}, 0, $i + 2) = '';
	return $line;
}

sub _reply
{
	my ($conn) = @_;
	my $line = _line($conn);
	my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));

	return $rest if $t eq '+';
	die "redis error: $rest\n" if $t eq '-';
	return 0 + $rest if $t eq ':';
	if ($t eq '$')
	{
		return undef if $rest < 0;
		_fill($conn, $rest + 2);
		my $s = substr($conn->{buf}, 0, $rest);
		substr($conn->{buf}, 0, $rest + 2) = '';
		return $s;
	}
	if ($t eq '*')
	{
		return undef if $rest < 0;
		return [ map { _reply($conn) } 1 .. $rest ];
	}
	die "unexpected reply from redis-server: $line\n";
}

=pod

=item $redis->info($section)

INFO (of C<$section>, default everything) as a hash reference of field =>
value.  Dies if the server does not answer within 1 s.

=cut

sub info
{
	my ($self, $section) = @_;
	my $text = $self->command('INFO', defined $section ? ($section) : (),
		{ timeout => 1 });
	my %h;
	foreach my $l (split /\r?\n/, $text)
	{
		next if $l =~ /^#/ || $l !~ /:/;
		my ($k, $v) = split /:/, $l, 2;
		$h{$k} = $v;
	}
	return \%h;
}

=pod

=item $redis->role

The first element of ROLE: C<'master'>, C<'slave'> or C<'sentinel'>.  Dies
if the server does not answer within 1 s.

=item $redis->wait_role($role)

Poll ROLE until it is C<$role> (C<'replica'> means C<'slave'>).  True once
it is, false if not within the default test timeout.

=cut

sub role
{
	my ($self) = @_;
	return $self->command('ROLE', { timeout => 1 })->[0];
}

sub wait_role
{
	my ($self, $want) = @_;
	$want = 'slave' if $want eq 'replica';
	return poll_until(
		"port $self->{port} to have role $want",
		sub {
			my $r = $self->role;
			return ($r eq $want, "role $r");
		});
}

=pod

=item $redis->wait_replica_synced($master)

Poll until this server is a replica of C<$master> (a TwoCacheRedis) with
C<master_link_status:up>, the master lists it as C<state=online>, and its
C<slave_repl_offset> equals the master's C<master_repl_offset>: everything
written to the master before the call is on the replica.  True once so,
false if not within the default test timeout.

=cut

sub wait_replica_synced
{
	my ($self, $master) = @_;
	return poll_until(
		"port $self->{port} to be in sync with port " . $master->port,
		sub {
			my $ri = $self->info('replication');
			return (0, "role $ri->{role}") unless $ri->{role} eq 'slave';
			return (0, "replica of port $ri->{master_port}")
			  unless $ri->{master_port} == $master->port;
			return (0, "master_link_status:$ri->{master_link_status}")
			  unless $ri->{master_link_status} eq 'up';
			my $mi = $master->info('replication');
			my ($online) = grep {
				/^slave\d+$/ && $mi->{$_} =~ /\bport=$self->{port},state=online\b/
			} keys %$mi;
			return (0, 'the master does not list it online') unless $online;
			return (
				$mi->{master_repl_offset} == $ri->{slave_repl_offset},
				"offsets: master $mi->{master_repl_offset}, replica $ri->{slave_repl_offset}");
		});
}

=pod

=item TwoCacheRedis::poll_until($what, $cond)

Call C<$cond> every 50 ms until it returns true, for at most the default
test timeout.  C<$cond> returns C<($ok, $why)>: C<$why> says what it saw;
a C<$cond> that dies counts as false, with the error as C<$why>.  Returns
1 once C<$cond> is true; 0 after a C<diag> of C<$what> and the last
C<$why> when the time is up.  The waits of this module and of
TwoCacheSentinel and TwoCacheRedisCluster are made of it.

=back

=cut

sub poll_until
{
	my ($what, $cond) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my $why = '';
	while (1)
	{
		my ($ok, $w) = eval { $cond->() };
		if ($@)
		{
			($ok, $w) = (0, $@);
			chomp $w;
		}
		return 1 if $ok;
		$why = $w // '';
		last if time > $deadline;
		usleep(50_000);
	}
	Test::More::diag("timed out waiting for $what: $why");
	return 0;
}

=pod

=head2 Logs

=over

=item $redis->log_contents

The server's log so far ('' if none).

=back

=cut

sub log_contents
{
	my ($self) = @_;
	return -f $self->logfile ? slurp_file($self->logfile) : '';
}

# Kill at once (SIGCONT, SIGKILL), by pid, and reap.  Only the process that
# started the server does this, never a forked child of it.
sub _kill_now
{
	my ($self) = @_;
	return unless $self->{owner} == $$ && defined $self->{pid};
	my $pid = $self->{pid};
	kill 'CONT', $pid;
	kill 'KILL', $pid;
	waitpid($pid, 0);
	$self->{pid} = undef;
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	$self->_kill_now;
	return;
}

END
{
	local ($., $@, $!, $^E, $?);
	foreach my $r (@all)
	{
		$r->_kill_now if defined $r;
	}
}

1;
