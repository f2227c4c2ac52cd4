
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

=head1 DESCRIPTION

Each instance runs Debian's redis-server on a free loopback port, in a
directory of its own under the test's tmp_check, with no persistence
(C<--save '' --appendonly no>) and in the foreground, as a child process of
the test script.  It is stopped by its pid only: by C<stop>, when the object
is destroyed, and at the latest when the test script ends.

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

# Every instance started by this process, for the END block.
my @all;

=pod

=head1 METHODS

=over

=item TwoCacheRedis->new(%opts)

Start a redis-server and wait until it answers PING.  Options:
C<password> (C<requirepass>), C<port> (default: a free one),
C<unixsocket> (true: also listen on a unix socket, in a short temporary
directory; see C<socket_path> and C<unix_url>),
C<start> (default 1; 0 to create the object without starting it),
C<args> (an array of extra redis-server arguments).

=cut

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		password => $opts{password},
		port => $opts{port} // PostgreSQL::Test::Cluster::get_free_port(),
		dir => PostgreSQL::Test::Utils::tempdir('redis'),
		args => $opts{args} || [],
		socket => $opts{unixsocket}
		? PostgreSQL::Test::Utils::tempdir_short() . '/redis.sock'
		: undef,
		owner => $$,
		pid => undef,
		paused => 0,
		starts => 0,
	}, $class;
	push @all, $self;
	$self->start unless defined $opts{start} && !$opts{start};
	return $self;
}

=pod

=item $redis->port, $redis->host, $redis->pid, $redis->dir, $redis->logfile

=cut

sub port { return $_[0]->{port}; }
sub host { return '127.0.0.1'; }
sub pid { return $_[0]->{pid}; }
sub dir { return $_[0]->{dir}; }
sub logfile { return "$_[0]->{dir}/redis.log"; }
sub password { return $_[0]->{password}; }
sub socket_path { return $_[0]->{socket}; }

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

C<redis://127.0.0.1:PORT>, with C<:password@> when the server has one.
C<password =E<gt> 'x'> puts another password in the URL (C<''> none);
C<db =E<gt> n> appends C</n>.

=cut

sub url
{
	my ($self, %opts) = @_;
	my $pw = exists $opts{password} ? $opts{password} : $self->{password};
	my $auth = (defined $pw && $pw ne '') ? ":$pw@" : '';
	my $db = defined $opts{db} ? "/$opts{db}" : '';
	return "redis://$auth" . $self->host . ":$self->{port}$db";
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

	my @cmd = (
		$redis_server,
		'--port', $self->{port},
		'--bind', $self->host,
		'--dir', $self->{dir},
		'--logfile', $self->logfile,
		'--save', '',
		'--appendonly', 'no',
		'--daemonize', 'no',
		'--protected-mode', 'no',
		defined $self->{password} ? ('--requirepass', $self->{password}) : (),
		defined $self->{socket}
		? ('--unixsocket', $self->{socket}, '--unixsocketperm', '700')
		: (),
		@{ $self->{args} });

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
	Test::More::note("redis-server started on port $self->{port}, pid $pid");

	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until ($self->ping)
	{
		if (!$self->is_running)
		{
			my $log = -f $self->logfile ? slurp_file($self->logfile) : '';
			$self->{pid} = undef;
			croak "redis-server on port $self->{port} exited at start:\n$log";
		}
		if (time > $deadline)
		{
			$self->_kill_now;
			croak "redis-server on port $self->{port} did not answer PING";
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
that it is not on the command line) and return its standard output, with
the trailing newline removed.  The output is redis-cli's raw format (its
default when not writing to a terminal): a nil reply is an empty string.
Dies if redis-cli does not finish within 30 s.

=cut

sub cli
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{REDISCLI_AUTH} = $self->{password} if defined $self->{password};
	my @cmd = ($redis_cli, '-h', $self->host, '-p', $self->{port}, @args);
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(30))
	  or Test::More::diag("redis-cli @args: exit $?; $err");
	chomp $out;
	return $out;
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
reference.  An error reply dies with the error text.  A last argument that
is a hash reference gives options: C<timeout> in seconds (default 10),
C<password> (default the server's; C<''> none).

=cut

sub command
{
	my ($self, @args) = @_;
	my %opts = (ref $args[-1] eq 'HASH') ? %{ pop @args } : ();
	my $timeout = $opts{timeout} // 10;
	my $pw = exists $opts{password} ? $opts{password} : $self->{password};
	my $deadline = time + $timeout;

	my $sock = IO::Socket::INET->new(
		PeerAddr => $self->host,
		PeerPort => $self->{port},
		Proto => 'tcp',
		Timeout => $timeout)
	  or die "could not connect to redis-server on port $self->{port}: $!\n";
	binmode $sock;
	my $conn = { sock => $sock, buf => '', deadline => $deadline };

	if (defined $pw && $pw ne '')
	{
		_send($conn, 'AUTH', $pw);
		_reply($conn);
	}
	_send($conn, @args);
	my $reply = _reply($conn);
	close $sock;
	return $reply;
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
		my $n = syswrite($conn->{sock}, $msg, length($msg) - $off, $off);
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
