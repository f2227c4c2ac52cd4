/*-------------------------------------------------------------------------
 *
 * redis_cluster.c
 *	  Redis Cluster: the slot map, and a connection that sends each command
 *	  of a pipeline to the master of its key's slot and follows MOVED and
 *	  ASK redirects.  Key slots are redis_slots.c's.
 *
 * This follows Redis's cluster specification (cluster-spec):
 *
 *	  - a key's slot is CRC16 (XMODEM) of the key modulo 16384, or of its
 *		hash tag: the bytes between the first '{' and the first '}' after
 *		it, when there is at least one ("{}" and a '{' without '}' do not
 *		make a tag: the whole key is hashed);
 *	  - the slot map comes from CLUSTER SLOTS, asked of the first node that
 *		answers: the masters already in use, then the seeds of the URL in
 *		order, all within the deadline of the exchange (at connect,
 *		twocache.redis_timeout);
 *	  - a command goes to the master of its key's slot (a small table of the
 *		commands twocache sends says where the key is; EVAL and EVALSHA:
 *		the first key, when numkeys is at least 1, and all keys of a script
 *		must share a slot, else Redis answers CROSSSLOT, which is returned
 *		as the error reply it is).  A command without a key goes to a
 *		default master, or to the master of the slot of its route_key when
 *		the caller set one (redis.h);
 *	  - MOVED <slot> <host>:<port>: the slot has a new owner: the map is
 *		updated for that slot, a full refresh is scheduled before the next
 *		exchange, and the command is sent again to the new owner;
 *	  - ASK <slot> <host>:<port>: the slot is being migrated and the key is
 *		already on the target: ASKING and the command go to the named node,
 *		once, and the map is left as it is;
 *	  - at most TC_CLUSTER_MAX_REDIRECTS redirects are followed per command
 *		within the deadline; after that the redirect is returned as an
 *		error reply, as TRYAGAIN, CLUSTERDOWN and every other error are.
 *
 * An exchange groups the pipeline by node, sends every group before it
 * reads any, and puts the replies back in the caller's order; redirected
 * commands go in further rounds, all within one deadline.  Commands to
 * different masters are not ordered with respect to each other; a keyless
 * command routed by route_key (a PUBLISH of the invalidation of a key)
 * follows the nearest keyed command of the same slot before it in the
 * pipeline: when that one is redirected, the keyless one is sent again
 * after it to the new node (a PUBLISH twice is harmless; the last reply is
 * kept), so that a message never reaches a subscriber before the change it
 * announces is made.
 *
 * Connections to the masters are made lazily, with the credentials and TLS
 * of the URL, database 0 (a cluster has no other), and the connection's
 * name (CLIENT SETNAME).  One cluster connection knows at most
 * TC_CLUSTER_MAX_NODES masters (64): a cluster with more is refused at
 * refresh, and a redirect to a node beyond that is returned as the error
 * reply it is (and a refresh is scheduled, which forgets the nodes that no
 * longer own slots).
 *
 * A failed exchange on any node (timeout, connection error, invalid reply)
 * drops that node's connection, and those of every node with replies still
 * in flight, and fails the whole exchange with errbuf naming the node, as
 * on a single node; so does an ERROR (a cancel while waiting), which is
 * re-thrown.  The cluster connection itself stays usable: dropped node
 * connections are opened again when next needed, and the map is refreshed
 * first.
 *
 * Sockets are redis.c's (TwoCacheRedisSend, TwoCacheRedisReceive); nothing
 * here knows hiredis.  A cluster connection is private to its process: no
 * locking.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis.h"
#include "twocache.h"

/* One master of the map (or the target of an ASK) */
#define MAX_REPLICAS_SEEN	8	/* replicas of a master the map remembers */

typedef struct ClusterNode
{
	bool		used;			/* this entry names a node */
	char		host[256];
	int			port;
	int			nslots;			/* slots it owns in the map */
	int			nreplicas;		/* its replicas in the map, as address_hash */
	uint32		replicas[MAX_REPLICAS_SEEN];
	bool		inflight;		/* sent to, replies not read yet */
	TcRedisConn *conn;			/* NULL until needed, or after a failure */
} ClusterNode;

struct TcRedisCluster
{
	TcRedisUrl	url;			/* seeds, credentials, TLS */
	char		name[TC_REDIS_NAME_LEN];	/* CLIENT SETNAME */
	bool		mapped;			/* a map was loaded */
	bool		refresh;		/* load it again before the next exchange */
	bool		changed;		/* a slot changed owner since asked */
	int16		slot_node[TC_CLUSTER_SLOTS];	/* index in nodes; -1 unknown */
	ClusterNode nodes[TC_CLUSTER_MAX_NODES];
	char		target[TC_REDIS_TARGET_LEN];
};

/* ----------------------------------------------------------------
 * Commands: where their key is
 * ----------------------------------------------------------------
 */

typedef struct KeyedCommand
{
	const char *name;
	int			key_at;			/* argv index of the key; -1: a script */
} KeyedCommand;

/* The commands twocache sends with a key; any other goes by route_key */
static const KeyedCommand keyed_commands[] = {
	{"GET", 1}, {"SET", 1}, {"DEL", 1}, {"UNLINK", 1}, {"PTTL", 1},
	{"PEXPIRE", 1}, {"EXPIRE", 1}, {"SADD", 1}, {"SREM", 1},
	{"SMEMBERS", 1}, {"SSCAN", 1}, {"SPOP", 1}, {"SCARD", 1}, {"INCR", 1},
	{"EXISTS", 1}, {"TYPE", 1}, {"GETRANGE", 1},
	{"EVAL", -1}, {"EVALSHA", -1},
};

/* Commands that make a connection a subscription: one node's only */
static const char *const subscribe_commands[] = {
	"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR",
};

static const char *
cmd_arg(const TcRedisCommand *cmd, int i, size_t *len)
{
	if (cmd->argc > TC_REDIS_MAX_ARGS)
	{
		*len = cmd->xargvlen[i];
		return cmd->xargv[i];
	}
	*len = cmd->argvlen[i];
	return cmd->argv[i];
}

static bool
cmd_is(const TcRedisCommand *cmd, const char *name)
{
	size_t		len;
	const char *arg = cmd_arg(cmd, 0, &len);

	return len == strlen(name) && pg_strncasecmp(arg, name, len) == 0;
}

static bool
cmd_subscribes(const TcRedisCommand *cmd)
{
	size_t		i;

	if (cmd->argc < 1)
		return false;
	for (i = 0; i < lengthof(subscribe_commands); i++)
		if (cmd_is(cmd, subscribe_commands[i]))
			return true;
	return false;
}

/*
 * The slot of cmd: of its key, or of its route_key (*by_route then); -1
 * if it has neither.
 */
static int
cmd_slot(const TcRedisCommand *cmd, bool *by_route)
{
	size_t		i;

	*by_route = false;
	if (cmd->argc < 1)
		return -1;
	for (i = 0; i < lengthof(keyed_commands); i++)
	{
		int			at = keyed_commands[i].key_at;
		size_t		len;
		const char *key;

		if (!cmd_is(cmd, keyed_commands[i].name))
			continue;
		if (at < 0)
		{
			/* EVAL script numkeys key ...: the first key, if any */
			char		digits[16];
			const char *n = cmd->argc > 2 ? cmd_arg(cmd, 2, &len) : NULL;

			if (n == NULL || len == 0 || len >= sizeof(digits))
				break;
			memcpy(digits, n, len);
			digits[len] = '\0';
			if (atoi(digits) < 1 || cmd->argc < 4)
				break;
			at = 3;
		}
		if (at >= cmd->argc)
			break;
		key = cmd_arg(cmd, at, &len);
		return TwoCacheClusterKeySlot(key, len);
	}
	if (cmd->route_key != NULL)
	{
		*by_route = true;
		return TwoCacheClusterKeySlot(cmd->route_key, cmd->route_len);
	}
	return -1;
}

/* ----------------------------------------------------------------
 * Nodes and the slot map
 * ----------------------------------------------------------------
 */

static void
node_drop_conn(ClusterNode *n)
{
	TcRedisConn *c = n->conn;

	/* forget it first: this also runs in error handlers */
	n->conn = NULL;
	n->inflight = false;
	TwoCacheRedisFree(c);
}

static void
node_forget(ClusterNode *n)
{
	node_drop_conn(n);
	memset(n, 0, sizeof(ClusterNode));
}

/* The index of host:port among the nodes, or -1. */
static int
node_find(TcRedisCluster *cl, const char *host, int port)
{
	int			i;

	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
		if (cl->nodes[i].used && cl->nodes[i].port == port &&
			strcmp(cl->nodes[i].host, host) == 0)
			return i;
	return -1;
}

/*
 * The index of host:port, added if new; -1 if every entry is in use (only
 * a refresh forgets nodes, so that no index in use by an exchange is
 * reused).
 */
static int
node_add(TcRedisCluster *cl, const char *host, int port)
{
	int			i = node_find(cl, host, port);

	if (i >= 0)
		return i;
	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
	{
		ClusterNode *n = &cl->nodes[i];

		if (n->used)
			continue;
		memset(n, 0, sizeof(ClusterNode));
		n->used = true;
		strlcpy(n->host, host, sizeof(n->host));
		n->port = port;
		return i;
	}
	return -1;
}

static const char *
node_target(ClusterNode *n, char *buf, size_t len)
{
	TwoCacheRedisHostTarget(n->host, n->port, buf, len);
	return buf;
}

/*
 * Where commands without a slot go: the first master with a connection
 * open, else the first master; -1 if no master is known.
 */
static int
default_node(TcRedisCluster *cl)
{
	int			first = -1;
	int			i;

	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
	{
		if (!cl->nodes[i].used || cl->nodes[i].nslots == 0)
			continue;
		if (cl->nodes[i].conn != NULL)
			return i;
		if (first < 0)
			first = i;
	}
	return first;
}

/* Make slot owned by node i (a MOVED); a change of owner is recorded. */
static void
slot_assign(TcRedisCluster *cl, int slot, int i)
{
	int			old = cl->slot_node[slot];

	if (old == i)
		return;
	if (old >= 0)
	{
		cl->nodes[old].nslots--;
		cl->changed = true;
	}
	cl->slot_node[slot] = i;
	cl->nodes[i].nslots++;
}

/*
 * Connect a fresh node connection to host:port with the URL's credentials
 * and TLS, database 0, by deadline.
 */
static TcRedisConn *
connect_node(TcRedisCluster *cl, const char *host, int port, bool ask_role,
			 TimestampTz deadline, char *errbuf, size_t errlen)
{
	TcRedisNodeOpts opts;
	long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	char		target[TC_REDIS_TARGET_LEN];

	if (left <= 0)
	{
		TwoCacheRedisHostTarget(host, port, target, sizeof(target));
		snprintf(errbuf, errlen, "could not connect to Redis at %s: timed out", target);
		return NULL;
	}
	TwoCacheRedisNodeOpts(&cl->url, &opts);
	opts.path = NULL;
	opts.host = host;
	opts.port = port;
	opts.db = 0;
	opts.name = cl->name;
	opts.ask_role = ask_role;
	return TwoCacheRedisConnectNode(&opts, (int) left, errbuf, errlen);
}

/* The connection to node i, opened if need be, by deadline. */
static TcRedisConn *
node_conn(TcRedisCluster *cl, int i, TimestampTz deadline, char *errbuf, size_t errlen)
{
	ClusterNode *n = &cl->nodes[i];

	if (n->conn == NULL)
		n->conn = connect_node(cl, n->host, n->port, false, deadline, errbuf, errlen);
	return n->conn;
}

/* A master named by CLUSTER SLOTS */
typedef struct MapMaster
{
	char		host[256];
	int			port;
	int			nreplicas;
	uint32		replicas[MAX_REPLICAS_SEEN];
} MapMaster;

/* A node's address as a hash (never 0), to compare maps cheaply. */
static uint32
address_hash(const char *host, int port)
{
	char		target[TC_REDIS_TARGET_LEN];

	TwoCacheRedisHostTarget(host, port, target, sizeof(target));
	return hash_bytes((const unsigned char *) target, strlen(target)) | 1;
}

/*
 * Parse a reply to CLUSTER SLOTS from the node at asked_host into map
 * (slot -> index in masters, -1 unknown) and masters[*nmasters].  An empty
 * address is the node asked; "?" (unknown) leaves the range unknown.
 * False with errbuf set if the reply is not a map.
 */
static bool
parse_slots(const TcRedisReply *r, const char *asked_host, int16 *map,
			MapMaster *masters, int *nmasters, char *errbuf, size_t errlen)
{
	size_t		e;
	int			mapped = 0;
	int			s;

	for (s = 0; s < TC_CLUSTER_SLOTS; s++)
		map[s] = -1;
	*nmasters = 0;
	if (r->type != TC_REPLY_ARRAY)
	{
		snprintf(errbuf, errlen, "%s",
				 r->type == TC_REPLY_ERROR ? r->str : "unexpected reply");
		return false;
	}
	for (e = 0; e < r->elements; e++)
	{
		const TcRedisReply *range = r->element[e];
		const TcRedisReply *m;
		const char *host;
		long long	start,
					end;
		int			port;
		int			i;

		if (range->type != TC_REPLY_ARRAY || range->elements < 3 ||
			range->element[0]->type != TC_REPLY_INTEGER ||
			range->element[1]->type != TC_REPLY_INTEGER ||
			(m = range->element[2])->type != TC_REPLY_ARRAY || m->elements < 2 ||
			m->element[0]->type != TC_REPLY_STRING ||
			m->element[1]->type != TC_REPLY_INTEGER)
		{
			snprintf(errbuf, errlen, "unexpected reply");
			return false;
		}
		start = range->element[0]->integer;
		end = range->element[1]->integer;
		port = (int) m->element[1]->integer;
		host = m->element[0]->str;
		if (start < 0 || end < start || end >= TC_CLUSTER_SLOTS ||
			m->element[1]->integer <= 0 || m->element[1]->integer > 65535 ||
			m->element[0]->len >= sizeof(masters[0].host))
		{
			snprintf(errbuf, errlen, "invalid slot range");
			return false;
		}
		if (strcmp(host, "?") == 0)
			continue;			/* endpoint unknown: slots unknown */
		if (host[0] == '\0')
			host = asked_host;
		for (i = 0; i < *nmasters; i++)
			if (masters[i].port == port && strcmp(masters[i].host, host) == 0)
				break;
		if (i == *nmasters)
		{
			if (*nmasters >= TC_CLUSTER_MAX_NODES)
			{
				snprintf(errbuf, errlen, "the cluster has more than %d masters",
						 TC_CLUSTER_MAX_NODES);
				return false;
			}
			strlcpy(masters[i].host, host, sizeof(masters[i].host));
			masters[i].port = port;
			masters[i].nreplicas = 0;
			(*nmasters)++;
		}
		/* the replicas of the range: [host, port, id, ...] each */
		{
			size_t		k;

			for (k = 3; k < range->elements; k++)
			{
				const TcRedisReply *rp = range->element[k];
				uint32		h;
				int			j;

				if (rp->type != TC_REPLY_ARRAY || rp->elements < 2 ||
					rp->element[0]->type != TC_REPLY_STRING ||
					rp->element[1]->type != TC_REPLY_INTEGER)
					continue;
				h = address_hash(rp->element[0]->str[0] != '\0' ?
								 rp->element[0]->str : asked_host,
								 (int) rp->element[1]->integer);
				for (j = 0; j < masters[i].nreplicas; j++)
					if (masters[i].replicas[j] == h)
						break;
				if (j == masters[i].nreplicas && j < MAX_REPLICAS_SEEN)
					masters[i].replicas[masters[i].nreplicas++] = h;
			}
		}
		for (s = (int) start; s <= (int) end; s++)
		{
			if (map[s] < 0)
				mapped++;
			map[s] = (int16) i;
		}
	}
	if (mapped == 0)
	{
		snprintf(errbuf, errlen, "no slot is served");
		return false;
	}
	return true;
}

/*
 * Take map and masters (parse_slots) as the slot map: nodes that are no
 * longer masters are forgotten (their connections closed); a slot whose
 * owner changed is recorded (cl->changed).
 */
static void
apply_map(TcRedisCluster *cl, const int16 *map, const MapMaster *masters, int nmasters)
{
	int			index_of[TC_CLUSTER_MAX_NODES];
	bool		keep[TC_CLUSTER_MAX_NODES];
	int			s;
	int			i;

	memset(keep, 0, sizeof(keep));
	for (i = 0; i < nmasters; i++)
	{
		index_of[i] = node_find(cl, masters[i].host, masters[i].port);
		if (index_of[i] >= 0)
			keep[index_of[i]] = true;
	}
	for (s = 0; s < TC_CLUSTER_SLOTS; s++)
	{
		int			old = cl->slot_node[s];
		int			now = map[s];

		if (old >= 0 && now >= 0 && index_of[now] != old)
			cl->changed = true;
	}
	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
		if (cl->nodes[i].used && !keep[i])
			node_forget(&cl->nodes[i]);
	for (i = 0; i < nmasters; i++)
	{
		if (index_of[i] < 0)
			index_of[i] = node_add(cl, masters[i].host, masters[i].port);
		Assert(index_of[i] >= 0);	/* nmasters <= TC_CLUSTER_MAX_NODES */
		cl->nodes[index_of[i]].nslots = 0;
		cl->nodes[index_of[i]].nreplicas = masters[i].nreplicas;
		memcpy(cl->nodes[index_of[i]].replicas, masters[i].replicas,
			   sizeof(uint32) * masters[i].nreplicas);
	}
	for (s = 0; s < TC_CLUSTER_SLOTS; s++)
	{
		cl->slot_node[s] = map[s] >= 0 ? index_of[map[s]] : -1;
		if (cl->slot_node[s] >= 0)
			cl->nodes[cl->slot_node[s]].nslots++;
	}
	cl->mapped = true;
	cl->refresh = false;
}

/*
 * Ask CLUSTER SLOTS on c (at host) by deadline and parse it.  False with
 * errbuf set; *failed then says whether the exchange itself failed (c must
 * be dropped) rather than the reply.
 */
static bool
ask_slots(TcRedisConn *c, const char *host, TimestampTz deadline, int16 *map,
		  MapMaster *masters, int *nmasters, bool *failed, char *errbuf, size_t errlen)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	char		why[256];
	bool		ok;

	*failed = false;
	TwoCacheRedisCommand(&cmd, "CLUSTER");
	TwoCacheRedisArg(&cmd, "SLOTS", 5);
	if (!TwoCacheRedisSend(c, 1, &cmd, deadline, why, sizeof(why)) ||
		!TwoCacheRedisReceive(c, 1, &reply, deadline, why, sizeof(why)))
	{
		*failed = true;
		snprintf(errbuf, errlen, "Redis at %s: %s", TwoCacheRedisTarget(c), why);
		return false;
	}
	ok = parse_slots(reply, host, map, masters, nmasters, why, sizeof(why));
	if (!ok)
		snprintf(errbuf, errlen, "Redis at %s refused CLUSTER SLOTS: %s",
				 TwoCacheRedisTarget(c), why);
	TwoCacheRedisFreeReplies(1, &reply);
	return ok;
}

/*
 * Load the slot map by deadline from the first node that answers: the
 * masters with a connection open, then the seeds of the URL in order.  A
 * seed's connection is kept if the seed is a master of the map.  False
 * with errbuf set if none answered.
 */
static bool
cluster_refresh(TcRedisCluster *cl, TimestampTz deadline, char *errbuf, size_t errlen)
{
	int16	   *map = palloc(sizeof(int16) * TC_CLUSTER_SLOTS);
	MapMaster  *masters = palloc(sizeof(MapMaster) * TC_CLUSTER_MAX_NODES);
	int			nmasters = 0;
	char		why[512];
	bool		ok = false;
	int			i;

	snprintf(why, sizeof(why), "no node to ask");
	for (i = 0; i < TC_CLUSTER_MAX_NODES + cl->url.nhosts && !ok; i++)
	{
		TcRedisConn *volatile c;
		const char *volatile host;
		volatile int port;
		bool		failed;
		bool		seed = i >= TC_CLUSTER_MAX_NODES;

		if (!seed)
		{
			ClusterNode *n = &cl->nodes[i];

			if (!n->used || n->nslots == 0 || n->conn == NULL)
				continue;
			c = n->conn;
			host = n->host;
			port = n->port;
		}
		else
		{
			host = cl->url.hosts[i - TC_CLUSTER_MAX_NODES].host;
			port = cl->url.hosts[i - TC_CLUSTER_MAX_NODES].port;
			c = connect_node(cl, host, port, false, deadline, why, sizeof(why));
			if (c == NULL)
				continue;
		}

		PG_TRY();
		{
			ok = ask_slots(c, host, deadline, map, masters, &nmasters, &failed,
						   why, sizeof(why));
		}
		PG_CATCH();
		{
			if (seed)
				TwoCacheRedisFree(c);
			else
				node_drop_conn(&cl->nodes[i]);
			PG_RE_THROW();
		}
		PG_END_TRY();

		if (!seed)
		{
			if (failed)
				node_drop_conn(&cl->nodes[i]);
			if (ok)
				apply_map(cl, map, masters, nmasters);
			continue;
		}
		if (ok)
		{
			int			j;

			apply_map(cl, map, masters, nmasters);
			j = node_find(cl, host, port);
			if (j >= 0 && cl->nodes[j].conn == NULL)
				cl->nodes[j].conn = c;
			else
				TwoCacheRedisFree(c);
		}
		else
			TwoCacheRedisFree(c);
	}
	pfree(map);
	pfree(masters);
	if (!ok)
		snprintf(errbuf, errlen, "no node of the Redis Cluster gave its slot map: %s", why);
	return ok;
}

/* ----------------------------------------------------------------
 * Exchanges
 * ----------------------------------------------------------------
 */

/* Where one command of a pipeline goes */
typedef struct Route
{
	int			node;			/* index in nodes: where it goes next */
	int			slot;			/* of its key or route key; -1: none */
	bool		by_route;		/* keyless, routed by route_key */
	int			leader;			/* by_route: the keyed command it follows */
	bool		asking;			/* an ASK redirect: ASKING first */
	bool		pending;		/* to be sent (again) */
	bool		redirected;		/* in the round just done */
	int			redirects;
} Route;

/* The commands of one round for one node */
typedef struct Group
{
	int			node;
	int			n;				/* commands, ASKING included */
	TcRedisCommand *cmds;
	int		   *who;			/* index in the pipeline; -1: ASKING */
	TcRedisReply **got;
	bool		received;
} Group;

/* An exchange in progress, for its error handler */
typedef struct Exchange
{
	int			ncmds;
	TcRedisReply **replies;		/* the caller's */
	int			ngroups;
	Group	   *groups;
} Exchange;

/*
 * Drop the connections of the nodes with replies in flight, and free what
 * the exchange has read (after a failure or an ERROR).
 */
static void
exchange_abandon(TcRedisCluster *cl, Exchange *x)
{
	int			g;
	int			i;

	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
		if (cl->nodes[i].inflight)
			node_drop_conn(&cl->nodes[i]);
	for (g = 0; g < x->ngroups; g++)
	{
		if (x->groups[g].received)
			TwoCacheRedisFreeReplies(x->groups[g].n, x->groups[g].got);
		x->groups[g].received = false;
	}
	TwoCacheRedisFreeReplies(x->ncmds, x->replies);
	cl->refresh = true;			/* a node failed: a failover, perhaps */
}

static void
exchange_free_groups(Exchange *x)
{
	int			g;

	for (g = 0; g < x->ngroups; g++)
	{
		pfree(x->groups[g].cmds);
		pfree(x->groups[g].who);
		pfree(x->groups[g].got);
	}
	x->ngroups = 0;
}

/*
 * Parse a redirect, "MOVED <slot> <host>:<port>" or "ASK ...", from the
 * node at from_host: true with *ask, *slot, host and *port set.
 */
static bool
parse_redirect(const TcRedisReply *r, const char *from_host, bool *ask, int *slot,
			   char *host, size_t hostlen, int *port)
{
	const char *p;
	const char *sp;
	const char *colon;
	char	   *end;
	long		v;

	if (r->type != TC_REPLY_ERROR)
		return false;
	if (strncmp(r->str, "MOVED ", 6) == 0)
	{
		*ask = false;
		p = r->str + 6;
	}
	else if (strncmp(r->str, "ASK ", 4) == 0)
	{
		*ask = true;
		p = r->str + 4;
	}
	else
		return false;
	v = strtol(p, &end, 10);
	if (end == p || *end != ' ' || v < 0 || v >= TC_CLUSTER_SLOTS)
		return false;
	*slot = (int) v;
	sp = end + 1;
	colon = strrchr(sp, ':');	/* an IPv6 address has colons too */
	if (colon == NULL)
		return false;
	v = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || v <= 0 || v > 65535)
		return false;
	*port = (int) v;
	if (colon == sp)
		strlcpy(host, from_host, hostlen);	/* same host as the sender */
	else
	{
		if ((size_t) (colon - sp) >= hostlen)
			return false;
		memcpy(host, sp, colon - sp);
		host[colon - sp] = '\0';
	}
	return true;
}

/*
 * Take the reply r to command i from node `from': kept, or, if it is a
 * redirect to follow, freed and the command routed again.
 */
static void
take_reply(TcRedisCluster *cl, Route *routes, TcRedisReply **replies, int i,
		   int from, TcRedisReply *r)
{
	Route	   *rt = &routes[i];
	char		host[256];
	int			port;
	int			slot;
	bool		ask;
	int			to;

	rt->pending = false;
	if (rt->redirects >= TC_CLUSTER_MAX_REDIRECTS ||
		!parse_redirect(r, cl->nodes[from].host, &ask, &slot, host, sizeof(host), &port))
	{
		replies[i] = r;
		return;
	}
	to = node_add(cl, host, port);
	if (to < 0)
	{
		/* every entry is in use: the refresh forgets those without slots */
		cl->refresh = true;
		replies[i] = r;
		return;
	}
	TwoCacheRedisFreeReplies(1, &r);
	rt->redirects++;
	rt->node = to;
	rt->asking = ask;
	rt->pending = true;
	rt->redirected = true;
	if (!ask)
	{
		slot_assign(cl, slot, to);
		cl->refresh = true;
	}
	ereport(DEBUG2,
			(errmsg_internal("twocache: Redis Cluster %s for slot %d to %s:%d",
							 ask ? "ASK" : "MOVED", slot, host, port)));
}

/*
 * One round: send every pending command to its node, grouped by node, all
 * groups before reading any, then read each group and take its replies.
 * False with errbuf set if an exchange with a node failed (x is abandoned
 * then).
 */
static bool
exchange_round(TcRedisCluster *cl, int ncmds, const TcRedisCommand *cmds,
			   Route *routes, Exchange *x, TimestampTz deadline,
			   char *errbuf, size_t errlen)
{
	static TcRedisCommand asking;
	int			group_of[TC_CLUSTER_MAX_NODES];
	char		why[512];
	char		target[TC_REDIS_TARGET_LEN];
	int			g;
	int			i;

	TwoCacheRedisCommand(&asking, "ASKING");
	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
		group_of[i] = -1;

	/* the groups, in the order of their first command */
	x->groups = palloc(sizeof(Group) * TC_CLUSTER_MAX_NODES);
	x->ngroups = 0;
	for (i = 0; i < ncmds; i++)
	{
		Route	   *rt = &routes[i];

		rt->redirected = false;
		if (!rt->pending)
			continue;
		if (group_of[rt->node] < 0)
		{
			Group	   *gr = &x->groups[x->ngroups];

			memset(gr, 0, sizeof(Group));
			gr->node = rt->node;
			group_of[rt->node] = x->ngroups++;
		}
		x->groups[group_of[rt->node]].n += rt->asking ? 2 : 1;
	}
	for (g = 0; g < x->ngroups; g++)
	{
		Group	   *gr = &x->groups[g];

		gr->cmds = palloc(sizeof(TcRedisCommand) * gr->n);
		gr->who = palloc(sizeof(int) * gr->n);
		gr->got = palloc0(sizeof(TcRedisReply *) * gr->n);
		gr->n = 0;
	}
	for (i = 0; i < ncmds; i++)
	{
		Group	   *gr;

		if (!routes[i].pending)
			continue;
		gr = &x->groups[group_of[routes[i].node]];
		if (routes[i].asking)
		{
			gr->cmds[gr->n] = asking;
			gr->who[gr->n++] = -1;
		}
		gr->cmds[gr->n] = cmds[i];
		gr->who[gr->n++] = i;
	}

	/* send every group ... */
	for (g = 0; g < x->ngroups; g++)
	{
		Group	   *gr = &x->groups[g];
		ClusterNode *n = &cl->nodes[gr->node];
		TcRedisConn *c = node_conn(cl, gr->node, deadline, errbuf, errlen);

		if (c == NULL)
		{
			exchange_abandon(cl, x);
			return false;
		}
		n->inflight = true;
		if (!TwoCacheRedisSend(c, gr->n, gr->cmds, deadline, why, sizeof(why)))
		{
			snprintf(errbuf, errlen, "Redis at %s: %s",
					 node_target(n, target, sizeof(target)), why);
			exchange_abandon(cl, x);
			return false;
		}
	}

	/* ... before reading any */
	for (g = 0; g < x->ngroups; g++)
	{
		Group	   *gr = &x->groups[g];
		ClusterNode *n = &cl->nodes[gr->node];

		if (!TwoCacheRedisReceive(n->conn, gr->n, gr->got, deadline, why, sizeof(why)))
		{
			snprintf(errbuf, errlen, "Redis at %s: %s",
					 node_target(n, target, sizeof(target)), why);
			exchange_abandon(cl, x);
			return false;
		}
		gr->received = true;
		n->inflight = false;
	}

	/* take the replies; redirected commands are pending again */
	for (g = 0; g < x->ngroups; g++)
	{
		Group	   *gr = &x->groups[g];
		int			k;

		for (k = 0; k < gr->n; k++)
		{
			TcRedisReply *r = gr->got[k];

			gr->got[k] = NULL;
			if (gr->who[k] < 0)
				TwoCacheRedisFreeReplies(1, &r);	/* ASKING's OK */
			else
				take_reply(cl, routes, x->replies, gr->who[k], gr->node, r);
		}
		gr->received = false;
	}
	exchange_free_groups(x);
	pfree(x->groups);
	x->groups = NULL;

	/* a keyless command follows its leader to the new node, after it */
	for (i = 0; i < ncmds; i++)
	{
		Route	   *rt = &routes[i];

		if (!rt->by_route || rt->leader < 0 || rt->pending ||
			!routes[rt->leader].redirected)
			continue;
		TwoCacheRedisFreeReplies(1, &x->replies[i]);
		rt->node = routes[rt->leader].node;
		rt->pending = true;
	}
	return true;
}

/*
 * Run a pipeline on cl within timeout_ms (see the header): replies[] in the
 * caller's order, each an answer of the master of its slot (or an error
 * reply: CROSSSLOT, TRYAGAIN, CLUSTERDOWN, a redirect beyond the limit).
 * False with errbuf set if an exchange with a node failed or no node is
 * known; nothing is left to free then.  On an ERROR, the connections with
 * replies in flight are dropped and what was read freed, and it goes on.
 */
bool
TwoCacheClusterExec(TcRedisCluster *cl, int ncmds, const TcRedisCommand *cmds,
					TcRedisReply **replies, int timeout_ms,
					char *errbuf, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	Route	   *routes;
	Exchange   *volatile x;
	volatile bool ok = true;
	int			i;

	if (ncmds == 0)
		return true;
	for (i = 0; i < ncmds; i++)
	{
		replies[i] = NULL;
		if (cmd_subscribes(&cmds[i]))
		{
			snprintf(errbuf, errlen, "%s needs a connection to one node, not to a Redis Cluster",
					 cmds[i].argv[0]);
			return false;
		}
	}
	if (cl->refresh || !cl->mapped)
	{
		char		why[512];

		/* with an old map, redirects still lead the way */
		if (!cluster_refresh(cl, deadline, why, sizeof(why)) && !cl->mapped)
		{
			snprintf(errbuf, errlen, "%s", why);
			return false;
		}
	}

	routes = palloc0(sizeof(Route) * ncmds);
	for (i = 0; i < ncmds; i++)
	{
		Route	   *rt = &routes[i];
		int			j;

		rt->slot = cmd_slot(&cmds[i], &rt->by_route);
		rt->node = rt->slot >= 0 ? cl->slot_node[rt->slot] : -1;
		if (rt->node < 0)
			rt->node = default_node(cl);
		if (rt->node < 0)
		{
			snprintf(errbuf, errlen, "no master of the Redis Cluster is known");
			pfree(routes);
			return false;
		}
		rt->leader = -1;
		if (rt->by_route)
			for (j = i - 1; j >= 0 && rt->leader < 0; j--)
				if (!routes[j].by_route && routes[j].slot == rt->slot)
					rt->leader = j;
		rt->pending = true;
	}

	x = palloc0(sizeof(Exchange));
	x->ncmds = ncmds;
	x->replies = replies;
	PG_TRY();
	{
		bool		more = true;

		while (ok && more)
		{
			ok = exchange_round(cl, ncmds, cmds, routes, x, deadline, errbuf, errlen);
			more = false;
			for (i = 0; i < ncmds && ok; i++)
				more |= routes[i].pending;
		}
	}
	PG_CATCH();
	{
		exchange_abandon(cl, x);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (!ok)
		exchange_free_groups(x);
	if (x->groups != NULL)
		pfree(x->groups);
	pfree(x);
	pfree(routes);
	return ok;
}

/* ----------------------------------------------------------------
 * Connections
 * ----------------------------------------------------------------
 */

static TcRedisCluster *
cluster_new(const TcRedisUrl *u, const char *name)
{
	TcRedisCluster *cl = MemoryContextAllocZero(TopMemoryContext, sizeof(TcRedisCluster));
	int			s;

	cl->url = *u;
	cl->url.db = 0;
	if (name != NULL)
		strlcpy(cl->name, name, sizeof(cl->name));
	for (s = 0; s < TC_CLUSTER_SLOTS; s++)
		cl->slot_node[s] = -1;
	return cl;
}

/*
 * Connect to the Redis Cluster of u (its seed nodes), naming every node
 * connection name: the slot map is loaded within timeout_ms; the masters
 * are connected to when first needed.  NULL with errbuf set if no seed gave
 * its map.
 */
TcRedisConn *
TwoCacheClusterConnect(const TcRedisUrl *u, const char *name, int timeout_ms,
					   char *errbuf, size_t errlen)
{
	TcRedisCluster *cl = cluster_new(u, name);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	bool		ok;

	PG_TRY();
	{
		ok = cluster_refresh(cl, deadline, errbuf, errlen);
	}
	PG_CATCH();
	{
		TwoCacheClusterFree(cl);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!ok)
	{
		TwoCacheClusterFree(cl);
		return NULL;
	}
	return TwoCacheRedisClusterConn(cl);
}

/*
 * A single-node connection for a subscription in the Redis Cluster of u:
 * to the first seed that answers as a master, else to the first master of
 * the slot map that does, all within timeout_ms.  PUBLISH reaches every
 * node of a cluster, so any master's subscribers get every message.  NULL
 * with errbuf set if none answered.
 */
TcRedisConn *
TwoCacheClusterConnectSubscriber(const TcRedisUrl *u, const char *name, int timeout_ms,
								 char *errbuf, size_t errlen)
{
	TcRedisCluster *volatile cl = cluster_new(u, name);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	TcRedisConn *volatile c = NULL;
	char		why[512];

	snprintf(why, sizeof(why), "no master answered");
	PG_TRY();
	{
		int			i;

		for (i = 0; i < u->nhosts && c == NULL; i++)
		{
			c = connect_node(cl, u->hosts[i].host, u->hosts[i].port, true,
							 deadline, why, sizeof(why));
			if (c != NULL && strcmp(TwoCacheRedisRole(c), "master") != 0)
			{
				snprintf(why, sizeof(why), "Redis at %s is %s, not a master",
						 TwoCacheRedisTarget(c),
						 TwoCacheRedisRole(c)[0] != '\0' ? TwoCacheRedisRole(c) : "of unknown role");
				TwoCacheRedisFree(c);
				c = NULL;
			}
		}
		if (c == NULL && cluster_refresh(cl, deadline, why, sizeof(why)))
		{
			for (i = 0; i < TC_CLUSTER_MAX_NODES && c == NULL; i++)
			{
				ClusterNode *n = &cl->nodes[i];

				if (!n->used || n->nslots == 0)
					continue;
				c = connect_node(cl, n->host, n->port, true, deadline, why, sizeof(why));
				if (c != NULL && strcmp(TwoCacheRedisRole(c), "master") != 0)
				{
					snprintf(why, sizeof(why), "Redis at %s is %s, not a master",
							 TwoCacheRedisTarget(c),
							 TwoCacheRedisRole(c)[0] != '\0' ? TwoCacheRedisRole(c) : "of unknown role");
					TwoCacheRedisFree(c);
					c = NULL;
				}
			}
		}
	}
	PG_CATCH();
	{
		TwoCacheRedisFree(c);
		TwoCacheClusterFree(cl);
		PG_RE_THROW();
	}
	PG_END_TRY();
	TwoCacheClusterFree(cl);
	if (c == NULL)
		snprintf(errbuf, errlen, "could not subscribe in the Redis Cluster: %s", why);
	return c;
}

/* Free cl and its node connections (TwoCacheRedisFree of its connection). */
void
TwoCacheClusterFree(TcRedisCluster *cl)
{
	int			i;

	if (cl == NULL)
		return;
	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
		node_drop_conn(&cl->nodes[i]);
	pfree(cl);
}

/*
 * The masters of cl, for messages and twocache_status(): "cluster:" and
 * their host:port, in the order of their slots.
 */
const char *
TwoCacheClusterTarget(TcRedisCluster *cl)
{
	bool		listed[TC_CLUSTER_MAX_NODES];
	size_t		len;
	int			s;

	memset(listed, 0, sizeof(listed));
	strlcpy(cl->target, "cluster:", sizeof(cl->target));
	for (s = 0; s < TC_CLUSTER_SLOTS; s++)
	{
		int			i = cl->slot_node[s];
		char		one[TC_REDIS_TARGET_LEN];

		if (i < 0 || listed[i])
			continue;
		listed[i] = true;
		node_target(&cl->nodes[i], one, sizeof(one));
		len = strlen(cl->target);
		if (len + strlen(one) + 5 >= sizeof(cl->target))
		{
			strlcat(cl->target, ",...", sizeof(cl->target));
			break;
		}
		if (len > strlen("cluster:"))
			strlcat(cl->target, ",", sizeof(cl->target));
		strlcat(cl->target, one, sizeof(cl->target));
	}
	return cl->target;
}

/* Is c a Redis Cluster connection? */
bool
TwoCacheRedisIsCluster(TcRedisConn *c)
{
	return TwoCacheRedisGetCluster(c) != NULL;
}

/*
 * Load the slot map of the cluster connection c again now, within
 * twocache.redis_timeout (the worker, at each ping, so that a change of
 * owner is seen even when its own commands meet no redirect).  True for a
 * single-node connection.  False with errbuf set if no node answered; the
 * old map stays in use.
 */
bool
TwoCacheClusterRefresh(TcRedisConn *c, char *errbuf, size_t errlen)
{
	TcRedisCluster *cl = TwoCacheRedisGetCluster(c);

	if (cl == NULL)
		return true;
	return cluster_refresh(cl, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   twocache_redis_timeout),
						   errbuf, errlen);
}

/*
 * The owner of each slot as this process saw it at its last call of
 * TwoCacheClusterSlotsChanged, whatever connection it was seen on, as an
 * address_hash (0: unknown), and that owner's replicas then.  So a change
 * is seen even when the connection that had the old map was dropped since
 * and another made.  Allocated at the first call (only the worker asks).
 */
typedef struct SeenSlot
{
	uint32		owner;
	int			nreplicas;
	uint32		replicas[MAX_REPLICAS_SEEN];
} SeenSlot;

static SeenSlot *seen = NULL;

/*
 * Has a slot changed owner since the last call in this process: seen by a
 * redirect or a refresh of c's map, or between the map of the last call
 * (on any connection) and c's?  The first map is no change.  *failover
 * (if not NULL) says whether a slot's new owner was a replica of its old
 * one then: a failover, which may have dropped writes the old master had
 * acknowledged, rather than slots moving between masters.  Always false
 * for a single-node connection.
 */
bool
TwoCacheClusterSlotsChanged(TcRedisConn *c, bool *failover)
{
	TcRedisCluster *cl = TwoCacheRedisGetCluster(c);
	uint32		owner[TC_CLUSTER_MAX_NODES];
	bool		changed;
	int			i;
	int			s;

	if (failover != NULL)
		*failover = false;
	if (cl == NULL)
		return false;
	changed = cl->changed;
	cl->changed = false;
	if (!cl->mapped)
		return changed;
	if (seen == NULL)
		seen = MemoryContextAllocZero(TopMemoryContext, sizeof(SeenSlot) * TC_CLUSTER_SLOTS);
	for (i = 0; i < TC_CLUSTER_MAX_NODES; i++)
	{
		if (cl->nodes[i].used)
			owner[i] = address_hash(cl->nodes[i].host, cl->nodes[i].port);
	}
	for (s = 0; s < TC_CLUSTER_SLOTS; s++)
	{
		SeenSlot   *ss = &seen[s];
		ClusterNode *n;

		i = cl->slot_node[s];
		if (i < 0)
			continue;
		n = &cl->nodes[i];
		if (ss->owner != 0 && ss->owner != owner[i])
		{
			int			j;

			changed = true;
			for (j = 0; j < ss->nreplicas && failover != NULL; j++)
				if (ss->replicas[j] == owner[i])
					*failover = true;
		}
		ss->owner = owner[i];
		ss->nreplicas = n->nreplicas;
		memcpy(ss->replicas, n->replicas, sizeof(uint32) * n->nreplicas);
	}
	return changed;
}
