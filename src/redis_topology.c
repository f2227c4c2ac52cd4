/*-------------------------------------------------------------------------
 *
 * redis_topology.c
 *	  Which Redis node to talk to, and the backend's connection to it.
 *
 * twocache.redis_url names one Redis (redis://, rediss://, unix://), a set
 * of Sentinels and the name of the master they watch (redis-sentinel://,
 * rediss-sentinel://), or seed nodes of a Redis Cluster (redis-cluster://,
 * rediss-cluster://: the data connections are then cluster connections,
 * which route each command to its slot's master, redis_cluster.c, and the
 * worker's subscription is on one master).  For Sentinel this file follows
 * Redis's Sentinel client spec:
 *
 *	  - discovery: ask each Sentinel in turn, starting from the one that
 *		answered last, SENTINEL get-master-addr-by-name; the first that names
 *		a master wins (a Sentinel that cannot be reached, answers an error or
 *		knows no such master is skipped);
 *	  - every data connection sends ROLE with its set-up pipeline (no extra
 *		round trip) and is refused unless the node says "master", so a
 *		demoted master is never written to, whatever a Sentinel said;
 *	  - re-discovery on any connection error and on READONLY: the backend
 *		asks the worker (rediscover flag and its latch), which asks the
 *		Sentinels again, and the worker follows +switch-master on a
 *		Sentinel subscription of its own (worker.c).
 *
 * The master in use is kept in shared memory (in the worker state): its
 * address and an epoch that moves whenever it changes.  Whoever discovers a
 * master records it there (the worker normally, a backend if there is none
 * yet), and every backend compares the epoch of its connection with the
 * shared one before each exchange, so that on a change of master every
 * backend reconnects before its next Redis command.  The worker flushes L1
 * and resubscribes then (worker.c), and bumps the cache generation once per
 * change of the master's replication ID (inval.c), so that values written to
 * a master whose last writes a failover may have dropped are not trusted.
 *
 * The backend has one lazily opened connection, kept across transactions
 * and reopened when the Redis settings (URL, TLS files) or the master
 * change.  An exchange that fails (timeout, invalid reply) or is
 * interrupted (an ERROR from a cancel while waiting, caught and re-thrown)
 * may leave replies in flight, so its connection is closed at once and
 * never reused.  After a failure the backend skips Redis for
 * twocache.redis_retry_interval plus a random part of up to a quarter of
 * it, so that the backends that saw Redis fail together do not all come
 * back at once.
 *
 * Locking: the shared topology fields are under the worker state's
 * spinlock, taken only to copy them; no lock is held across Redis I/O.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis.h"
#include "twocache.h"

/* The backend's connection */
static TcRedisConn *backend_conn = NULL;
static char *backend_conn_settings = NULL;	/* settings it was opened with */
static uint64 backend_conn_epoch = 0;	/* the master epoch it was opened in */
static TimestampTz backend_skip_until = 0;

/* The Sentinel to ask first: the one that answered last (this process). */
static int	sentinel_first = 0;

/* Is two-layer mode configured? */
bool
TwoCacheRedisEnabled(void)
{
	return twocache_redis_url != NULL && twocache_redis_url[0] != '\0';
}

/*
 * The settings a connection depends on, as one string: a connection opened
 * with other settings is reopened.
 */
char *
TwoCacheRedisSettings(void)
{
	return psprintf("%s\n%s\n%s\n%s\n%d", twocache_redis_url,
					twocache_redis_tls_ca_file ? twocache_redis_tls_ca_file : "",
					twocache_redis_tls_cert_file ? twocache_redis_tls_cert_file : "",
					twocache_redis_tls_key_file ? twocache_redis_tls_key_file : "",
					twocache_redis_tls_verify);
}

/*
 * Does saved (a TwoCacheRedisSettings string) hold the settings in effect?
 * Allocates nothing: the backend asks before every exchange.
 */
bool
TwoCacheRedisSettingsEqual(const char *saved)
{
	const char *parts[4];
	char		verify[16];
	const char *p = saved;
	int			i;

	parts[0] = twocache_redis_url;
	parts[1] = twocache_redis_tls_ca_file ? twocache_redis_tls_ca_file : "";
	parts[2] = twocache_redis_tls_cert_file ? twocache_redis_tls_cert_file : "";
	parts[3] = twocache_redis_tls_key_file ? twocache_redis_tls_key_file : "";
	for (i = 0; i < 4; i++)
	{
		size_t		n = strlen(parts[i]);

		if (strncmp(p, parts[i], n) != 0 || p[n] != '\n')
			return false;
		p += n + 1;
	}
	snprintf(verify, sizeof(verify), "%d", twocache_redis_tls_verify);
	return strcmp(p, verify) == 0;
}

static bool
parse_url(TcRedisUrl *u, char *errbuf, size_t errlen)
{
	const char *perr;

	if (!TwoCacheParseRedisUrl(twocache_redis_url, u, &perr))
	{
		snprintf(errbuf, errlen, "invalid twocache.redis_url: %s", perr);
		return false;
	}
	return true;
}

/* Is twocache.redis_url a Redis Cluster's? */
bool
TwoCacheRedisClusterMode(void)
{
	TcRedisUrl	u;
	char		err[256];

	return TwoCacheRedisEnabled() && parse_url(&u, err, sizeof(err)) &&
		u.topology == TC_TOPOLOGY_CLUSTER;
}

/* ----------------------------------------------------------------
 * Sentinel
 * ----------------------------------------------------------------
 */

/* Record m as the master in use; a different one moves the epoch. */
static void
set_master(const TcRedisHost *m)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;

	SpinLockAcquire(&w->mutex);
	if (w->master_epoch == 0 || w->master_port != m->port ||
		strcmp(w->master_host, m->host) != 0)
	{
		strlcpy(w->master_host, m->host, sizeof(w->master_host));
		w->master_port = m->port;
		w->master_epoch++;
	}
	SpinLockRelease(&w->mutex);
}

/* The master in use, if one is known: its epoch (0: none known). */
static uint64
get_master(TcRedisHost *m)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	uint64		epoch;

	SpinLockAcquire(&w->mutex);
	epoch = w->master_epoch;
	strlcpy(m->host, w->master_host, sizeof(m->host));
	m->port = w->master_port;
	SpinLockRelease(&w->mutex);
	return epoch;
}

/* The epoch of the master in use (0 outside Sentinel or before discovery). */
static uint64
master_epoch(void)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	uint64		epoch;

	SpinLockAcquire(&w->mutex);
	epoch = w->master_epoch;
	SpinLockRelease(&w->mutex);
	return epoch;
}

/*
 * Ask the Sentinels of u for the address of their master, by deadline:
 * the first one, starting from the one that answered last, that names it.
 * On success the master is recorded in shared memory (set_master), and
 * *which says which Sentinel answered.  False with errbuf set otherwise.
 */
static bool
sentinel_ask(const TcRedisUrl *u, TimestampTz deadline, TcRedisHost *master,
			 int *which, char *errbuf, size_t errlen)
{
	char		name[TC_REDIS_NAME_LEN];
	int			i;

	TwoCacheRedisClientName("sentinel-query", name, sizeof(name));
	snprintf(errbuf, errlen, "no Sentinel answered");
	for (i = 0; i < u->nhosts; i++)
	{
		int			s = (sentinel_first + i) % u->nhosts;
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		TcRedisNodeOpts opts;
		TcRedisConn *c;
		TcRedisCommand cmd;
		TcRedisReply *reply = NULL;
		char		why[512];
		bool		ok;

		if (left <= 0)
		{
			snprintf(errbuf, errlen, "timed out asking the Sentinels for master \"%s\"",
					 u->master_name);
			return false;
		}
		memset(&opts, 0, sizeof(opts));
		opts.host = u->hosts[s].host;
		opts.port = u->hosts[s].port;
		opts.tls = u->tls;
		opts.name = name;
		c = TwoCacheRedisConnectNode(&opts, (int) left, why, sizeof(why));
		if (c == NULL)
		{
			snprintf(errbuf, errlen, "Sentinel: %s", why);
			TwoCacheCount(TC_REDIS_ERRORS, 1);
			continue;
		}
		TwoCacheRedisCommand(&cmd, "SENTINEL");
		TwoCacheRedisArg(&cmd, "get-master-addr-by-name", 23);
		TwoCacheRedisArg(&cmd, u->master_name, strlen(u->master_name));
		PG_TRY();
		{
			ok = TwoCacheRedisExec(c, 1, &cmd, &reply, (int) Max(left, 1),
								   why, sizeof(why));
		}
		PG_CATCH();
		{
			TwoCacheRedisFree(c);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (!ok)
			snprintf(errbuf, errlen, "Sentinel at %s: %s", TwoCacheRedisTarget(c), why);
		else if (reply->type == TC_REPLY_ARRAY && reply->elements == 2 &&
				 reply->element[0]->type == TC_REPLY_STRING &&
				 reply->element[1]->type == TC_REPLY_STRING &&
				 reply->element[0]->len < sizeof(master->host))
		{
			strlcpy(master->host, reply->element[0]->str, sizeof(master->host));
			master->port = atoi(reply->element[1]->str);
			ok = master->port > 0 && master->port <= 65535;
			if (!ok)
				snprintf(errbuf, errlen, "Sentinel at %s named an invalid port",
						 TwoCacheRedisTarget(c));
		}
		else
		{
			snprintf(errbuf, errlen, "Sentinel at %s does not know master \"%s\"%s%s",
					 TwoCacheRedisTarget(c), u->master_name,
					 reply->type == TC_REPLY_ERROR ? ": " : "",
					 reply->type == TC_REPLY_ERROR ? reply->str : "");
			ok = false;
		}
		/* an error reply was counted by the exchange */
		if (!ok && (reply == NULL || reply->type != TC_REPLY_ERROR))
			TwoCacheCount(TC_REDIS_ERRORS, 1);
		if (reply != NULL)
			TwoCacheRedisFreeReplies(1, &reply);
		TwoCacheRedisFree(c);
		if (!ok)
			continue;
		sentinel_first = s;
		if (which != NULL)
			*which = s;
		set_master(master);
		return true;
	}
	return false;
}

/*
 * Ask the Sentinels again for the master (the worker: at connect, on
 * +switch-master, on a backend's request).  Returns true if one named a
 * master, with *changed telling whether it differs from the one in use and
 * *which which Sentinel answered.  A single Redis: true, unchanged.
 */
bool
TwoCacheRedisDiscover(bool *changed, int *which, char *errbuf, size_t errlen)
{
	TcRedisUrl	u;
	TcRedisHost m;
	uint64		before;

	*changed = false;
	if (which != NULL)
		*which = -1;
	if (!parse_url(&u, errbuf, errlen))
		return false;
	if (u.topology != TC_TOPOLOGY_SENTINEL)
		return true;
	before = master_epoch();
	if (!sentinel_ask(&u, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  twocache_redis_timeout),
					  &m, which, errbuf, errlen))
		return false;
	*changed = master_epoch() != before;
	return true;
}

/*
 * Ask the worker to ask the Sentinels again (a backend that found the
 * master gone or read-only).
 */
void
TwoCacheRedisRequestDiscovery(void)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	Latch	   *latch;

	SpinLockAcquire(&w->mutex);
	w->rediscover = true;
	latch = w->latch;
	SpinLockRelease(&w->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* Has a backend asked for discovery?  Clears the request. */
bool
TwoCacheRedisDiscoveryRequested(void)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	bool		requested;

	SpinLockAcquire(&w->mutex);
	requested = w->rediscover;
	w->rediscover = false;
	SpinLockRelease(&w->mutex);
	return requested;
}

/*
 * Connect to the Sentinel of index which (as TwoCacheRedisDiscover said) for
 * the worker's +switch-master subscription.  NULL with errbuf set if that
 * failed or the URL is not a Sentinel one.
 */
TcRedisConn *
TwoCacheRedisConnectSentinel(int which, const char *name, char *errbuf, size_t errlen)
{
	TcRedisUrl	u;
	TcRedisNodeOpts opts;

	if (!parse_url(&u, errbuf, errlen))
		return NULL;
	if (u.topology != TC_TOPOLOGY_SENTINEL || which < 0 || which >= u.nhosts)
	{
		snprintf(errbuf, errlen, "no Sentinel to subscribe to");
		return NULL;
	}
	memset(&opts, 0, sizeof(opts));
	opts.host = u.hosts[which].host;
	opts.port = u.hosts[which].port;
	opts.tls = u.tls;
	opts.name = name;
	return TwoCacheRedisConnectNode(&opts, twocache_redis_timeout, errbuf, errlen);
}

/* The master name of a Sentinel URL, palloc'd; NULL for other URLs. */
char *
TwoCacheRedisMasterName(void)
{
	TcRedisUrl	u;
	char		err[256];

	if (!parse_url(&u, err, sizeof(err)) || u.topology != TC_TOPOLOGY_SENTINEL)
		return NULL;
	return pstrdup(u.master_name);
}

/* ----------------------------------------------------------------
 * Data connections
 * ----------------------------------------------------------------
 */

/*
 * Connect to the data node of twocache.redis_url within redis_timeout and
 * name the connection name: the Redis of a single-node URL, or the master
 * of a Sentinel one (discovered first if none is known yet), checked with
 * ROLE.  *epoch (if not NULL) is set to the master epoch it belongs to.
 * NULL with errbuf set on failure; for Sentinel the worker is then asked to
 * discover again.
 */
static TcRedisConn *
connect_data(const char *name, uint64 *epoch, char *errbuf, size_t errlen)
{
	TcRedisUrl	u;
	TcRedisNodeOpts opts;
	TcRedisHost m;
	TcRedisConn *c;
	TimestampTz start = GetCurrentTimestamp();
	uint64		e = 0;
	long		left;

	if (epoch != NULL)
		*epoch = 0;
	if (!parse_url(&u, errbuf, errlen))
		return NULL;
	if (u.topology == TC_TOPOLOGY_CLUSTER)
		return TwoCacheClusterConnect(&u, name, twocache_redis_timeout, errbuf, errlen);
	TwoCacheRedisNodeOpts(&u, &opts);
	opts.name = name;
	if (u.topology == TC_TOPOLOGY_SENTINEL)
	{
		e = get_master(&m);
		if (e == 0)
		{
			if (!sentinel_ask(&u, TimestampTzPlusMilliseconds(start, twocache_redis_timeout),
							  &m, NULL, errbuf, errlen))
				return NULL;
			e = get_master(&m);
		}
		opts.host = m.host;
		opts.port = m.port;
	}
	opts.ask_role = true;		/* for twocache_status(); Sentinel checks it */
	left = twocache_redis_timeout -
		TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
	c = TwoCacheRedisConnectNode(&opts, (int) Max(left, 1), errbuf, errlen);
	if (c == NULL)
	{
		if (u.topology == TC_TOPOLOGY_SENTINEL)
			TwoCacheRedisRequestDiscovery();
		return NULL;
	}
	if (u.topology == TC_TOPOLOGY_SENTINEL && strcmp(TwoCacheRedisRole(c), "master") != 0)
	{
		snprintf(errbuf, errlen, "Redis at %s is %s, not the master of \"%s\"",
				 TwoCacheRedisTarget(c),
				 TwoCacheRedisRole(c)[0] != '\0' ? TwoCacheRedisRole(c) : "of unknown role",
				 u.master_name);
		TwoCacheRedisFree(c);
		TwoCacheRedisRequestDiscovery();
		return NULL;
	}
	if (epoch != NULL)
		*epoch = e;
	return c;
}

/* Connect to the data node (see connect_data); the worker's connections. */
TcRedisConn *
TwoCacheRedisConnect(const char *name, char *errbuf, size_t errlen)
{
	return connect_data(name, NULL, errbuf, errlen);
}

/*
 * Connect for a subscription (the worker's), on one node since it is waited
 * on: in a Redis Cluster, a master that answers (redis_cluster.c; PUBLISH
 * reaches every node); otherwise as TwoCacheRedisConnect.
 */
TcRedisConn *
TwoCacheRedisConnectSubscriber(const char *name, char *errbuf, size_t errlen)
{
	TcRedisUrl	u;

	if (!parse_url(&u, errbuf, errlen))
		return NULL;
	if (u.topology == TC_TOPOLOGY_CLUSTER)
		return TwoCacheClusterConnectSubscriber(&u, name, twocache_redis_timeout,
												errbuf, errlen);
	return connect_data(name, NULL, errbuf, errlen);
}

/*
 * Has the master moved since a connection opened in epoch was made?  (Never
 * outside Sentinel, where the epoch stays 0.)
 */
bool
TwoCacheRedisMasterMoved(uint64 epoch)
{
	return master_epoch() != epoch;
}

/* The master epoch now, for TwoCacheRedisMasterMoved. */
uint64
TwoCacheRedisMasterEpoch(void)
{
	return master_epoch();
}

/* ----------------------------------------------------------------
 * The backend's connection
 * ----------------------------------------------------------------
 */

static void
drop_backend_conn(void)
{
	TcRedisConn *c = backend_conn;

	/* forget it first: this also runs in an error handler */
	backend_conn = NULL;
	if (backend_conn_settings != NULL)
		pfree(backend_conn_settings);
	backend_conn_settings = NULL;
	TwoCacheRedisFree(c);
}

/*
 * A failure of the backend's connection: drop it, and skip Redis for
 * twocache.redis_retry_interval plus a random part of up to a quarter of
 * it (so that backends that failed together come back apart); record it in
 * last_error, and count it in redis_errors unless it was an error reply
 * (TwoCacheRedisExec counted that already).  A refusal by a replica
 * (READONLY) also asks for discovery.
 */
static void
backend_failed(const char *err, bool count)
{
	int			skip = twocache_redis_retry_interval +
		(int) pg_prng_uint64_range(&pg_global_prng_state, 0,
								   twocache_redis_retry_interval / 4);

	drop_backend_conn();
	backend_skip_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), skip);
	if (strstr(err, "READONLY") != NULL)
		TwoCacheRedisRequestDiscovery();
	TwoCacheRedisRecordError(err, count);
	ereport(DEBUG1,
			(errmsg_internal("twocache: Redis unavailable for %d ms: %s",
							 skip, err)));
}

/* The backend's connection failed (a timeout, a lost connection, ...). */
void
TwoCacheRedisBackendFailed(const char *err)
{
	backend_failed(err, true);
}

/* Redis answered the backend's command with an error reply. */
void
TwoCacheRedisBackendRefused(const char *err)
{
	backend_failed(err, false);
}

/*
 * The backend's connection, opened on first use and reopened when the
 * settings or the master changed, or after a failure.  NULL when in local
 * mode, within the retry interval after a failure, or when connecting
 * failed (which starts a retry interval); errbuf then says why.
 */
TcRedisConn *
TwoCacheRedisBackendConn(char *errbuf, size_t errlen)
{
	char		name[TC_REDIS_NAME_LEN];
	char	   *settings;

	if (!TwoCacheRedisEnabled())
	{
		drop_backend_conn();
		snprintf(errbuf, errlen, "twocache.redis_url is not set");
		return NULL;
	}
	if (backend_conn != NULL &&
		(!TwoCacheRedisSettingsEqual(backend_conn_settings) ||
		 TwoCacheRedisMasterMoved(backend_conn_epoch)))
		drop_backend_conn();
	if (backend_conn != NULL)
		return backend_conn;

	if (backend_skip_until != 0 && GetCurrentTimestamp() < backend_skip_until)
	{
		snprintf(errbuf, errlen, "Redis is skipped for twocache.redis_retry_interval after a failure");
		return NULL;
	}
	TwoCacheRedisClientName("backend", name, sizeof(name));
	settings = TwoCacheRedisSettings();
	backend_conn = connect_data(name, &backend_conn_epoch, errbuf, errlen);
	if (backend_conn == NULL)
	{
		char		why[512];

		pfree(settings);
		strlcpy(why, errbuf, sizeof(why));
		TwoCacheRedisBackendFailed(why);
		return NULL;
	}
	backend_conn_settings = MemoryContextStrdup(TopMemoryContext, settings);
	pfree(settings);
	backend_skip_until = 0;
	return backend_conn;
}

/*
 * Run a pipeline on the backend's connection.  Returns false (and starts a
 * retry interval) if Redis is unavailable or fails; the caller treats that
 * as a miss (reads) or applies locally and warns (writes).  A failed or
 * interrupted exchange closes the connection.  A READONLY reply (the node
 * was demoted) drops the connection and asks for discovery; the caller
 * still sees and counts the error reply.
 */
bool
TwoCacheRedisBackendExec(int ncmds, const TcRedisCommand *cmds,
						 TcRedisReply **replies, char *errbuf, size_t errlen)
{
	TcRedisConn *c = TwoCacheRedisBackendConn(errbuf, errlen);
	bool		ok;
	int			i;

	if (c == NULL)
		return false;
	PG_TRY();
	{
		ok = TwoCacheRedisExec(c, ncmds, cmds, replies, twocache_redis_timeout,
							   errbuf, errlen);
	}
	PG_CATCH();
	{
		/* interrupted (a cancel while waiting): replies may be in flight */
		drop_backend_conn();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!ok)
	{
		char		why[512];

		strlcpy(why, errbuf, sizeof(why));
		TwoCacheRedisBackendFailed(why);
		return false;
	}
	for (i = 0; i < ncmds; i++)
	{
		if (replies[i]->type == TC_REPLY_ERROR &&
			strncmp(replies[i]->str, "READONLY", 8) == 0)
		{
			drop_backend_conn();
			TwoCacheRedisRequestDiscovery();
			break;
		}
	}
	return true;
}
