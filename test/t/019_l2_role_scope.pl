# twocache.scope = 'role' in two-layer mode, with a Redis that keeps its data
# (--appendonly yes): two roles of one database on two servers share nothing
# through Redis either.
#  - each role's keys are its own Redis keys (role:<db>:<role>:<key>, with
#    ':' in names escaped), so one role neither reads nor overwrites the
#    other's on any server;
#  - a write's message drops the writer's copies on the other server and
#    leaves the other role's;
#  - twocache_invalidate_tag drops the caller's entries of the tag, in Redis
#    and on every server, while a table trigger drops every role's;
#  - a role, or a database, dropped and created again on the receiving
#    server (a new OID) still gets its invalidations (the worker's name
#    caches are emptied on any change to pg_authid or pg_database).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TwoCacheRedis;
use TwoCacheTest;

my $redis = TwoCacheRedis->new(args => [ '--appendonly', 'yes' ]);
my $node1 = l2_node('node1', $redis, wait_subscribed => 1, conf => "twocache.scope = 'role'");
my $node2 = l2_node('node2', $redis, wait_subscribed => 1, conf => "twocache.scope = 'role'");

my $roles = q{"alice", "bob", "ops:x", "ops"};
my $setup = qq{
CREATE ROLE alice; CREATE ROLE bob; CREATE ROLE "ops:x"; CREATE ROLE ops;
GRANT EXECUTE ON FUNCTION
	twocache_get(text), twocache_get(text, text, interval, text[], text[]),
	twocache_set(text, text, interval, text, text[]), twocache_del(text),
	twocache_invalidate_tag(text), twocache_local_keys()
TO $roles;
CREATE TABLE src (v text);
INSERT INTO src VALUES ('row');
GRANT SELECT, UPDATE ON src TO $roles;
CREATE TRIGGER src_inval AFTER INSERT OR UPDATE OR DELETE ON src
	FOR EACH STATEMENT EXECUTE FUNCTION twocache_invalidate_trigger();
};
$node1->safe_psql('postgres', $setup);
$node2->safe_psql('postgres', $setup);

# SQL run as a role
sub as
{
	my ($node, $role, $sql) = @_;
	return $node->safe_psql('postgres', qq{SET ROLE "$role";\n$sql});
}

# does $role have a live L1 copy of $key on $node?
sub has_copy
{
	my ($node, $role, $key) = @_;
	return as($node, $role,
		qq{SELECT EXISTS (SELECT 1 FROM twocache_local_keys() k WHERE k = '$key')});
}

# run $sql as $role on node1 and wait until node2 received its message
sub on_node1_then_wait
{
	my ($role, $sql, $what) = @_;
	my $recv0 = counter($node2, 'invalidations_received');
	as($node1, $role, $sql);
	ok(poll($node2, "SELECT invalidations_received > $recv0 FROM twocache_stats"),
		"node2 received the message of $what");
}

# one key, two roles: separate Redis keys, no reading or poisoning
as($node1, 'alice', q{SELECT twocache_set('k', 'alice v1')});
like($redis->command('GET', 'role:postgres:alice:k'), qr/alice v1$/,
	"alice's key in Redis is role:postgres:alice:k");
is(as($node2, 'bob', q{SELECT twocache_get('k') IS NULL}), 't',
	"bob misses alice's key on the other server (L1 and Redis)");
is(as($node2, 'bob', q{SELECT twocache_get('k', $$SELECT 'bob v1'$$)}), 'bob v1',
	'bob fills his own');
like($redis->command('GET', 'role:postgres:bob:k'), qr/bob v1$/, "bob's key in Redis");
like($redis->command('GET', 'role:postgres:alice:k'), qr/alice v1$/, "alice's is untouched");
is(as($node2, 'alice', q{SELECT twocache_get('k')}), 'alice v1', 'alice reads hers from Redis on node2');
is(as($node1, 'bob', q{SELECT twocache_get('k')}), 'bob v1', 'bob reads his from Redis on node1');
is(as($node2, 'bob', q{SELECT twocache_get('k', $$SELECT 'forged'$$)}), 'bob v1',
	'a fill by bob is a hit on his own value, not a write to alice');

# names with ':' do not collide: role "ops:x" key "k" is not role "ops" key "x:k"
as($node1, 'ops:x', q{SELECT twocache_set('k', 'ops:x value')});
as($node1, 'ops', q{SELECT twocache_set('x:k', 'ops value')});
like($redis->command('GET', 'role:postgres:ops%3Ax:k'), qr/ops:x value$/, "':' in a role name is escaped");
like($redis->command('GET', 'role:postgres:ops:x:k'), qr/ops value$/, 'the other key is separate');
is(as($node2, 'ops:x', q{SELECT twocache_get('k')}), 'ops:x value', '"ops:x" reads its own on node2');

# a write's message drops the writer's copies only
is(has_copy($node2, 'alice', 'k'), 't', "node2 holds alice's copy");
is(has_copy($node2, 'bob', 'k'), 't', "node2 holds bob's copy");
on_node1_then_wait('alice', q{SELECT twocache_set('k', 'alice v2')}, "alice's set");
is(has_copy($node2, 'alice', 'k'), 'f', "alice's copy on node2 is dropped");
is(has_copy($node2, 'bob', 'k'), 't', "bob's copy on node2 stays");
is(as($node2, 'alice', q{SELECT twocache_get('k')}), 'alice v2', 'alice reads her new value on node2');
is(as($node2, 'bob', q{SELECT twocache_get('k')}), 'bob v1', 'bob still reads his');

# twocache_invalidate_tag: the caller's entries only, in Redis and on node2
as($node1, $_, qq{SELECT twocache_set('tk', '$_ tagged', NULL, NULL, ARRAY['t'])}) foreach ('alice', 'bob');
is(as($node2, $_, q{SELECT twocache_get('tk')}), "$_ tagged", "$_ reads the tagged key on node2")
  foreach ('alice', 'bob');
on_node1_then_wait('bob', q{SELECT twocache_invalidate_tag('t')}, "bob's tag invalidation");
is($redis->command('EXISTS', 'role:postgres:bob:tk'), 0, "bob's tagged key is gone from Redis");
is($redis->command('EXISTS', 'role:postgres:alice:tk'), 1, "alice's stays in Redis");
is($redis->command('SISMEMBER', 'tag:db:postgres:t', 'role:postgres:alice:tk'), 1,
	"and in the tag's set");
is(has_copy($node2, 'bob', 'tk'), 'f', "bob's copy on node2 is dropped");
is(has_copy($node2, 'alice', 'tk'), 't', "alice's copy on node2 stays");

# a table trigger: every role's entries of the table's tag
foreach my $r ('alice', 'bob')
{
	is(as($node1, $r, qq{SELECT twocache_get('fk', \$\$SELECT v || ' for $r' FROM src\$\$, NULL, ARRAY['public.src'])}),
		"row for $r", "$r fills from the table on node1");
	is(as($node2, $r, q{SELECT twocache_get('fk')}), "row for $r", "$r reads it on node2");
}
on_node1_then_wait('alice', q{UPDATE src SET v = 'new row'}, 'the table trigger');
is($redis->command('EXISTS', "role:postgres:$_:fk"), 0, "Redis: ${_}'s entry of the table is gone")
  foreach ('alice', 'bob');
is(has_copy($node2, $_, 'fk'), 'f', "node2: ${_}'s copy is dropped") foreach ('alice', 'bob');

# a role dropped and created again on node2 has a new OID; the worker, which
# mapped 'alice' to the old one for the messages above, must map it anew
$node2->safe_psql('postgres', q{
DROP OWNED BY alice; DROP ROLE alice; CREATE ROLE alice;
GRANT EXECUTE ON FUNCTION twocache_get(text), twocache_local_keys() TO alice;
});
is(as($node2, 'alice', q{SELECT twocache_get('k')}), 'alice v2', 'the new alice reads k from Redis on node2');
is(has_copy($node2, 'alice', 'k'), 't', 'and holds a copy');
on_node1_then_wait('alice', q{SELECT twocache_set('k', 'alice v3')}, "alice's next set");
is(has_copy($node2, 'alice', 'k'), 'f', "the new alice's copy on node2 is dropped");
is(as($node2, 'alice', q{SELECT twocache_get('k')}), 'alice v3', 'and she reads the new value');

# the same for a database dropped and created again on node2
my $appdb = q{CREATE EXTENSION twocache;
GRANT EXECUTE ON FUNCTION twocache_get(text), twocache_set(text, text, interval, text, text[]),
	twocache_local_keys() TO alice;};
$_->safe_psql('postgres', 'CREATE DATABASE app') foreach ($node1, $node2);
$_->safe_psql('app', $appdb) foreach ($node1, $node2);
sub in_app
{
	my ($node, $sql) = @_;
	return $node->safe_psql('app', qq{SET ROLE alice;\n$sql});
}
sub app_copy
{
	return in_app($_[0], q{SELECT EXISTS (SELECT 1 FROM twocache_local_keys() k WHERE k = 'dk')});
}
sub app_set_and_wait
{
	my ($value) = @_;
	my $recv0 = counter($node2, 'invalidations_received');
	in_app($node1, qq{SELECT twocache_set('dk', '$value')});
	ok(poll($node2, "SELECT invalidations_received > $recv0 FROM twocache_stats"),
		"node2 received the message of the set of dk to $value");
}
in_app($node1, q{SELECT twocache_set('dk', 'd1')});
is(in_app($node2, q{SELECT twocache_get('dk')}), 'd1', 'database app: node2 reads dk');
app_set_and_wait('d2');
is(app_copy($node2), 'f', "database app: node2's copy is dropped");
$node2->safe_psql('postgres', 'DROP DATABASE app');
$node2->safe_psql('postgres', 'CREATE DATABASE app');
$node2->safe_psql('app', $appdb);
is(in_app($node2, q{SELECT twocache_get('dk')}), 'd2', 'the new database app on node2 reads dk');
app_set_and_wait('d3');
is(app_copy($node2), 'f', "the new database's copy on node2 is dropped");
is(in_app($node2, q{SELECT twocache_get('dk')}), 'd3', 'and it reads the new value');

no_crash_in_log($_) foreach ($node1, $node2);
$node1->stop;
$node2->stop;
done_testing();
