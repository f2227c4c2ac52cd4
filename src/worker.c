/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The twocache background worker: Redis subscription and invalidation.
 *
 * One worker per server, started at consistent state so hot standbys run it
 * too.  In two-layer mode it holds two Redis connections: a subscription to
 * twocache.channel, on which it receives the invalidation messages of the
 * other servers and drops their keys from L1 (fencing in-flight fills), and
 * a command connection, pinged every second, which tells whether Redis is
 * alive (a paused Redis leaves a subscription silent, not closed), and on
 * which it sends the re-deletes of a standby (below).  A connection whose
 * exchange failed is never used again, since replies may still be in
 * flight that would answer the next command: when the PING or the
 * subscription fails, both are dropped and the worker reconnects with
 * capped exponential backoff and jitter (each retry after a random time
 * between half and all of a delay that starts at WORKER_BACKOFF_MIN_MS and
 * doubles up to WORKER_BACKOFF_MAX_MS, so that servers that lost Redis
 * together do not all come back together; the first retry after a loss is
 * immediate); when a re-delete fails, the command connection alone is
 * dropped, and opened again at once (failing that, Redis is lost).  It
 * flushes L1 when the subscription is lost (what was cached may be
 * invalidated by messages it will not get) and again whenever the
 * subscription is established (messages may have been missed meanwhile).
 * SIGHUP reloads the settings and reconnects if the Redis ones changed.  In
 * local mode it only waits for its latch.
 *
 * With Sentinel (redis_topology.c) it holds a third connection, to a
 * Sentinel, subscribed to +switch-master, and pings with ROLE: when the
 * master changes (announced, noticed by the ping, or reported by a backend
 * that met READONLY) it disconnects, which flushes L1, and connects to the
 * new master, where it bumps the cache generation once per new replication
 * ID (inval.c).  With Redis Cluster its command connection is a cluster
 * connection (redis_cluster.c), its subscription is on one master (a
 * PUBLISH reaches every node), and at each ping it reloads the slot map:
 * when a slot changed owner it flushes L1, and when the set of masters
 * changed (a failover) it bumps the generation.  All its sockets are waited
 * on in one WaitEventSet, kept while they stay the same.
 *
 * On a hot standby, an invalidation from its primary (same system
 * identifier) can arrive before the WAL that made it true has been replayed:
 * a fill meanwhile would read the old row.  Such a message carries a WAL
 * position beyond the replay position; the worker then drops the key from
 * L1 at once and fences fills of it until replay gets there (pending_lsn in
 * flight.c), queues the message, and once replay has passed its position
 * applies it again: in L1, and for a del in L2 too (DEL, and a PUBLISH so
 * that every server drops what it may have read from there meanwhile).  The
 * queue lives in the worker: it holds at most WORKER_MAX_DEFERRED messages;
 * beyond that, the local cache is flushed instead once replay has caught up
 * (their fills stay fenced, but a stale L2 copy they left is only corrected
 * by its TTL).
 *
 * The worker also sends the invalidations backends could not send (the
 * queue of inval.c), as soon as Redis answers, and keeps this server's
 * cache generation: it reads it from Redis when it connects and takes it
 * from 'g' messages (inval.c bumps it when its queue overflows).
 *
 * The worker connects to no database (it reads only the shared catalogs
 * pg_database and pg_authid, to turn the database and role names in a
 * message into OIDs, which it caches until a change to either catalog).  It
 * exits on SIGTERM through the standard die() handler and is restarted by
 * the postmaster after bgw_restart_time; an ERROR in it is a FATAL exit and
 * a restart, never a server crash.
 *
 * Locking: the worker state in shared memory is under its spinlock, taken
 * only to copy fields in or out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "common/pg_prng.h"
#include "lib/ilist.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "inval.h"
#include "l2.h"
#include "lease.h"
#include "message.h"
#include "redis.h"
#include "twocache.h"

#define WORKER_PING_INTERVAL_MS		1000
#define WORKER_BACKOFF_MIN_MS		100
#define WORKER_BACKOFF_MAX_MS		10000
#define WORKER_REPLAY_POLL_MS		10	/* while invalidations wait for replay */
#define WORKER_MAX_DEFERRED			10000
#define WORKER_DEFERRED_BATCH		128 /* re-deletes per Redis round trip */

typedef struct WorkerConn
{
	TcRedisConn *sub;
	TcRedisConn *cmd;
	char	   *url;			/* settings connected with */
	char	   *channel;
	uint64		epoch;			/* the Sentinel master epoch connected in */
	/* Sentinel: the subscription to +switch-master */
	TcRedisConn *sentinel;
	int			sentinel_idx;	/* which of the URL's Sentinels, -1 none */
	char	   *master_name;	/* NULL outside Sentinel */
} WorkerConn;

/*
 * The worker's wait: its latch, postmaster death, the subscription socket
 * and the Sentinel one, in a WaitEventSet kept as long as those sockets
 * stay the same.
 */
typedef struct WorkerWait
{
	WaitEventSet *set;
	pgsocket	sub_fd;
	pgsocket	sentinel_fd;
} WorkerWait;

static WorkerWait worker_ww = {NULL, PGINVALID_SOCKET, PGINVALID_SOCKET};

static void worker_wait_reset(WorkerWait *ww);

/* An invalidation waiting for WAL replay (see the header comment). */
typedef struct DeferredInvalidation
{
	dlist_node	node;
	XLogRecPtr	lsn;
	TcMessageOp op;
	bool		l1_done;		/* applied again in L1; L2 left to do */
	ArcKey		key;			/* data points into this allocation */
	char		dbname[NAMEDATALEN];
	char		rolename[NAMEDATALEN];	/* "" unless in role scope */
} DeferredInvalidation;

static dlist_head deferred = DLIST_STATIC_INIT(deferred);
static int	ndeferred = 0;
static XLogRecPtr deferred_overflow_lsn = InvalidXLogRecPtr;
static MemoryContext deferred_cxt = NULL;

/* Register the worker (from _PG_init, at preload). */
void
TwoCacheWorkerRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 2;
	strlcpy(worker.bgw_library_name, "twocache", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "TwoCacheWorkerMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "twocache worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "twocache worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* ----------------------------------------------------------------
 * Shared state
 * ----------------------------------------------------------------
 */

static void
state_set(bool connected, bool subscribed)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;

	SpinLockAcquire(&w->mutex);
	w->connected = connected;
	w->subscribed = subscribed;
	SpinLockRelease(&w->mutex);
}

/* The node in use and its role, for twocache_status(); NULL: none. */
static void
state_node(TcRedisConn *c)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;

	SpinLockAcquire(&w->mutex);
	strlcpy(w->node, c != NULL ? TwoCacheRedisTarget(c) : "", sizeof(w->node));
	strlcpy(w->node_role, c != NULL ? TwoCacheRedisRole(c) : "", sizeof(w->node_role));
	SpinLockRelease(&w->mutex);
}

static void
state_error(const char *err)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&w->mutex);
	strlcpy(w->last_error, err, sizeof(w->last_error));
	w->last_error_at = now;
	SpinLockRelease(&w->mutex);
}

static void
state_deferred(void)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;

	SpinLockAcquire(&w->mutex);
	w->deferred = ndeferred;
	SpinLockRelease(&w->mutex);
}

static void
worker_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	bool		was_subscribed;

	SpinLockAcquire(&w->mutex);
	was_subscribed = w->subscribed;
	w->pid = 0;
	w->latch = NULL;
	w->node[0] = '\0';
	w->node_role[0] = '\0';
	w->connected = false;
	w->subscribed = false;
	w->deferred = 0;
	SpinLockRelease(&w->mutex);

	/* until a new worker subscribes, messages for this server are lost */
	if (was_subscribed)
	{
		LWLockReleaseAll();
		(void) TwoCacheFlushLocal();
	}
}

/* ----------------------------------------------------------------
 * Connections
 * ----------------------------------------------------------------
 */

/*
 * Drop both connections.  If we were subscribed, flush L1 too: from now on
 * other servers' messages are lost, so nothing cached before can be trusted
 * (what is filled meanwhile is flushed again when we resubscribe).
 */
static void
disconnect(WorkerConn *wc)
{
	bool		was_subscribed = (wc->url != NULL);

	worker_wait_reset(&worker_ww);
	if (wc->sub != NULL)
		TwoCacheRedisFree(wc->sub);
	if (wc->cmd != NULL)
		TwoCacheRedisFree(wc->cmd);
	if (wc->sentinel != NULL)
		TwoCacheRedisFree(wc->sentinel);
	wc->sub = NULL;
	wc->cmd = NULL;
	wc->sentinel = NULL;
	wc->sentinel_idx = -1;
	if (wc->master_name != NULL)
		pfree(wc->master_name);
	wc->master_name = NULL;
	if (wc->url != NULL)
		pfree(wc->url);
	if (wc->channel != NULL)
		pfree(wc->channel);
	wc->url = NULL;
	wc->channel = NULL;
	state_set(false, false);
	state_node(NULL);
	if (was_subscribed)
	{
		uint64		flushed = TwoCacheFlushLocal();

		ereport(LOG,
				(errmsg("twocache worker unsubscribed; flushed %llu local cache entries",
						(unsigned long long) flushed)));
	}
}

/*
 * Drop the command connection alone (its exchange failed, so replies may be
 * in flight); ping() opens a new one.
 */
static void
drop_cmd(WorkerConn *wc)
{
	TcRedisConn *c = wc->cmd;

	wc->cmd = NULL;
	TwoCacheRedisFree(c);
}

/* Open the command connection; false with err set if that failed. */
static bool
connect_cmd(WorkerConn *wc, char *err, size_t errlen)
{
	char		name[TC_REDIS_NAME_LEN];

	Assert(wc->cmd == NULL);
	TwoCacheRedisClientName("worker", name, sizeof(name));
	wc->cmd = TwoCacheRedisConnect(name, err, errlen);
	return wc->cmd != NULL;
}

/* Drop the Sentinel subscription; the next one asks every Sentinel. */
static void
drop_sentinel(WorkerConn *wc)
{
	worker_wait_reset(&worker_ww);
	if (wc->sentinel != NULL)
		TwoCacheRedisFree(wc->sentinel);
	wc->sentinel = NULL;
	wc->sentinel_idx = -1;
}

/*
 * Sentinel: subscribe to +switch-master on the Sentinel that named the
 * master (or, when it cannot be reached, the next one that answers), so a
 * failover is followed as soon as Sentinel announces it.  Without it, the
 * ROLE check of every ping still notices a demoted master; the
 * subscription is tried again at the next ping.
 */
static void
subscribe_sentinel(WorkerConn *wc)
{
	char		err[512];
	char		name[TC_REDIS_NAME_LEN];
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;

	if (wc->master_name == NULL || wc->sentinel != NULL)
		return;
	if (wc->sentinel_idx < 0)
	{
		bool		changed;

		if (!TwoCacheRedisDiscover(&changed, &wc->sentinel_idx, err, sizeof(err)))
		{
			state_error(err);
			return;
		}
	}
	TwoCacheRedisClientName("sentinel", name, sizeof(name));
	wc->sentinel = TwoCacheRedisConnectSentinel(wc->sentinel_idx, name, err, sizeof(err));
	if (wc->sentinel == NULL)
		goto fail;
	TwoCacheRedisCommand(&cmd, "SUBSCRIBE");
	TwoCacheRedisArg(&cmd, "+switch-master", 14);
	if (!TwoCacheRedisExec(wc->sentinel, 1, &cmd, &reply, twocache_redis_timeout,
						   err, sizeof(err)))
		goto fail;
	if (reply->type != TC_REPLY_ARRAY || reply->elements < 1 ||
		reply->element[0]->type != TC_REPLY_STRING ||
		strcmp(reply->element[0]->str, "subscribe") != 0)
	{
		snprintf(err, sizeof(err), "Sentinel at %s refused SUBSCRIBE: %s",
				 TwoCacheRedisTarget(wc->sentinel),
				 reply->type == TC_REPLY_ERROR ? reply->str : "unexpected reply");
		TwoCacheRedisFreeReplies(1, &reply);
		goto fail;
	}
	TwoCacheRedisFreeReplies(1, &reply);
	return;

fail:
	state_error(err);
	ereport(LOG, (errmsg("twocache worker: could not follow Sentinel: %s", err)));
	drop_sentinel(wc);			/* and ask the others next time */
}

/*
 * Sentinel: read what the +switch-master subscription has.  Returns true
 * if our master moved (the caller reconnects); a failed Sentinel
 * connection is dropped, to be opened again at the next ping.
 */
static bool
drain_sentinel(WorkerConn *wc)
{
	char		err[256];
	bool		moved = false;
	size_t		namelen = strlen(wc->master_name);

	if (!TwoCacheRedisReadInput(wc->sentinel, err, sizeof(err)))
	{
		ereport(LOG, (errmsg("twocache worker: lost the Sentinel subscription: %s", err)));
		drop_sentinel(wc);
		return false;
	}
	for (;;)
	{
		TcRedisReply *reply = NULL;
		int			got = TwoCacheRedisNextReply(wc->sentinel, &reply);

		if (got <= 0)
		{
			if (got < 0)
				drop_sentinel(wc);
			return moved;
		}
		/* message, +switch-master, "<name> <old ip> <old port> <new ip> <new port>" */
		if (reply->type == TC_REPLY_ARRAY && reply->elements == 3 &&
			reply->element[0]->type == TC_REPLY_STRING &&
			strcmp(reply->element[0]->str, "message") == 0 &&
			reply->element[2]->type == TC_REPLY_STRING &&
			reply->element[2]->len > namelen &&
			strncmp(reply->element[2]->str, wc->master_name, namelen) == 0 &&
			reply->element[2]->str[namelen] == ' ')
		{
			ereport(LOG,
					(errmsg("twocache worker: Sentinel announced a new master: %s",
							reply->element[2]->str)));
			moved = true;
		}
		TwoCacheRedisFreeReplies(1, &reply);
	}
}

/*
 * Open both connections and subscribe.  On success flush L1 (messages may
 * have been missed while unsubscribed) and return true.
 */
static bool
connect_and_subscribe(WorkerConn *wc)
{
	char		err[512];
	char		name[TC_REDIS_NAME_LEN];
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	uint64		flushed;

	bool		changed;
	int			which;

	/* Sentinel: ask for the master first (a single Redis: nothing to do) */
	if (!TwoCacheRedisDiscover(&changed, &which, err, sizeof(err)))
		goto fail;
	wc->epoch = TwoCacheRedisMasterEpoch();
	if (!connect_cmd(wc, err, sizeof(err)))
		goto fail;
	TwoCacheRedisClientName("subscriber", name, sizeof(name));
	wc->sub = TwoCacheRedisConnectSubscriber(name, err, sizeof(err));
	if (wc->sub == NULL)
		goto fail;

	TwoCacheRedisCommand(&cmd, "SUBSCRIBE");
	TwoCacheRedisArg(&cmd, twocache_channel, strlen(twocache_channel));
	if (!TwoCacheRedisExec(wc->sub, 1, &cmd, &reply, twocache_redis_timeout,
						   err, sizeof(err)))
		goto fail;
	if (reply->type != TC_REPLY_ARRAY || reply->elements < 1 ||
		reply->element[0]->type != TC_REPLY_STRING ||
		strcmp(reply->element[0]->str, "subscribe") != 0)
	{
		snprintf(err, sizeof(err), "unexpected reply to SUBSCRIBE");
		TwoCacheRedisFreeReplies(1, &reply);
		goto fail;
	}
	TwoCacheRedisFreeReplies(1, &reply);

	{
		char	   *settings = TwoCacheRedisSettings();

		wc->url = MemoryContextStrdup(TopMemoryContext, settings);
		pfree(settings);
	}
	wc->channel = MemoryContextStrdup(TopMemoryContext, twocache_channel);
	{
		char	   *master = TwoCacheRedisMasterName();

		if (master != NULL)
		{
			wc->master_name = MemoryContextStrdup(TopMemoryContext, master);
			pfree(master);
			wc->sentinel_idx = which;
			subscribe_sentinel(wc);
		}
	}
	state_node(wc->sub);		/* the node whose messages we get */

	flushed = TwoCacheFlushLocal();

	/* every subscription after the first since server start is a reconnect */
	if (pg_atomic_fetch_add_u64(&twocache_shared->local_flushes, 1) > 0)
	{
		TwoCacheWorkerState *w = &twocache_shared->worker;

		SpinLockAcquire(&w->mutex);
		w->reconnects++;
		SpinLockRelease(&w->mutex);
	}
	state_set(true, true);
	ereport(LOG,
			(errmsg("twocache worker subscribed to Redis channel \"%s\"; flushed %llu local cache entries",
					twocache_channel, (unsigned long long) flushed)));
	return true;

fail:
	state_error(err);
	ereport(LOG, (errmsg("twocache worker: %s", err)));
	disconnect(wc);
	return false;
}

/* ----------------------------------------------------------------
 * Messages
 * ----------------------------------------------------------------
 */

/*
 * The OID of the row named name in the shared catalog relid (its name in
 * column nameatt, found through index indexid, its OID in column oidatt);
 * InvalidOid if there is none.  The worker is connected to no database, so
 * it reads shared catalogs as GetDatabaseTuple() in postinit.c does:
 * through the name index only once the shared relcache entries are built
 * (they are not after a server start, before any backend connected), else
 * by a heap scan.
 */
static Oid
shared_catalog_oid(Oid relid, Oid indexid, AttrNumber nameatt,
				   AttrNumber oidatt, const char *name)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Oid			oid = InvalidOid;

	StartTransactionCommand();
	ScanKeyInit(&key, nameatt, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(name));
	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, indexid, criticalSharedRelcachesBuilt,
							  NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, oidatt, RelationGetDescr(rel), &isnull);

		if (!isnull)
			oid = DatumGetObjectId(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return oid;
}

/* Database OID of a name in a message; InvalidOid if there is none. */
static Oid
database_oid(const char *dbname)
{
	return shared_catalog_oid(DatabaseRelationId, DatabaseNameIndexId,
							  Anum_pg_database_datname, Anum_pg_database_oid,
							  dbname);
}

/* Role OID of a name in a message; InvalidOid if there is none. */
static Oid
role_oid(const char *rolename)
{
	return shared_catalog_oid(AuthIdRelationId, AuthIdRolnameIndexId,
							  Anum_pg_authid_rolname, Anum_pg_authid_oid,
							  rolename);
}

/*
 * Database and role OIDs by name, so a message costs no catalog access.
 * Only names found are cached: a database or role created later is looked
 * up when its first message arrives.  Any change to pg_database or
 * pg_authid (a name dropped and created again gets a new OID) empties the
 * cache, through the shared invalidation messages the worker accepts before
 * each message it applies.
 */
typedef struct NameOidEntry
{
	NameData	name;			/* hash key */
	Oid			oid;
} NameOidEntry;

static HTAB *dbname_cache = NULL;
static HTAB *rolename_cache = NULL;

static void
name_caches_reset(Datum arg pg_attribute_unused(), int cacheid,
				  uint32 hashvalue pg_attribute_unused())
{
	HTAB	  **cache = cacheid == DATABASEOID ? &dbname_cache : &rolename_cache;

	/* no catalog access here: only forget */
	if (*cache != NULL)
	{
		hash_destroy(*cache);
		*cache = NULL;
	}
}

static Oid
name_oid_cached(HTAB **cache, const char *what, const char *str,
				Oid (*lookup) (const char *))
{
	NameOidEntry *entry;
	NameData	name;
	bool		found;
	Oid			oid;

	if (*cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(NameOidEntry);
		*cache = hash_create(what, 64, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	namestrcpy(&name, str);
	entry = hash_search(*cache, NameStr(name), HASH_FIND, NULL);
	if (entry != NULL)
		return entry->oid;

	oid = lookup(str);
	/* the lookup's transaction may have reset the cache */
	if (OidIsValid(oid) && *cache != NULL)
	{
		entry = hash_search(*cache, NameStr(name), HASH_ENTER, &found);
		entry->oid = oid;
	}
	return oid;
}

static Oid
database_oid_cached(const char *dbname)
{
	return name_oid_cached(&dbname_cache, "twocache worker database names",
						   dbname, database_oid);
}

static Oid
role_oid_cached(const char *rolename)
{
	return name_oid_cached(&rolename_cache, "twocache worker role names",
						   rolename, role_oid);
}

/*
 * Must msg wait for WAL replay?  Only on a hot standby, for a message from a
 * server with our system identifier (our primary, or another standby of
 * it), holding from a position not replayed yet.  LSNs of other clusters
 * mean nothing here.
 */
static bool
must_defer(const TcMessage *msg)
{
	return msg->lsn != InvalidXLogRecPtr &&
		msg->sysid == GetSystemIdentifier() &&
		RecoveryInProgress() &&
		msg->lsn > GetXLogReplayRecPtr(NULL);
}

/* Queue msg (for key, in database dbid) until replay passes its lsn. */
static void
defer_message(const TcMessage *msg, const ArcKey *key)
{
	DeferredInvalidation *d;

	if (msg->op == TC_MSG_TAG)
		(void) TwoCacheInvalidateTagLocal(key->dbid, key->roleid, key->data,
										  key->len, msg->lsn);
	else
		TwoCacheDeferInvalidation(key, msg->lsn);
	TwoCacheCount(TC_INVALIDATIONS_DEFERRED, 1);

	if (ndeferred >= WORKER_MAX_DEFERRED)
	{
		if (XLogRecPtrIsInvalid(deferred_overflow_lsn))
			ereport(LOG,
					(errmsg("twocache worker: more than %d invalidations wait for WAL replay; the local cache will be flushed once replay catches up",
							WORKER_MAX_DEFERRED)));
		deferred_overflow_lsn = Max(deferred_overflow_lsn, msg->lsn);
		return;
	}

	if (deferred_cxt == NULL)
		deferred_cxt = AllocSetContextCreate(TopMemoryContext,
											 "twocache deferred invalidations",
											 ALLOCSET_DEFAULT_SIZES);
	d = MemoryContextAlloc(deferred_cxt, sizeof(DeferredInvalidation) + key->len);
	d->lsn = msg->lsn;
	d->op = msg->op;
	d->l1_done = false;
	d->key = *key;
	d->key.data = (char *) (d + 1);
	memcpy(d + 1, key->data, key->len);
	strlcpy(d->dbname, msg->dbname, sizeof(d->dbname));
	strlcpy(d->rolename, msg->role_scope ? msg->rolename : "", sizeof(d->rolename));
	dlist_push_tail(&deferred, &d->node);
	ndeferred++;
	state_deferred();
}

/*
 * Apply again the queued invalidations whose WAL position has been replayed
 * (all of them once recovery has ended): in L1, then, for dels and tags, in
 * Redis with a message to every server (InvalSend, as a backend's delete
 * does), then in L1 again (what a reader refilled from Redis meanwhile).
 * One whose Redis part fails stays queued and is retried on the next call;
 * the command connection is then dropped (the main loop opens a new one).
 * Returns whether any remain queued.
 */
static bool
process_deferred(WorkerConn *wc)
{
	XLogRecPtr	replayed;
	DeferredInvalidation *batch[WORKER_DEFERRED_BATCH];
	int			nbatch = 0;
	dlist_mutable_iter iter;
	bool		redis = TwoCacheRedisEnabled();

	if (ndeferred == 0 && XLogRecPtrIsInvalid(deferred_overflow_lsn))
		return false;
	replayed = RecoveryInProgress() ? GetXLogReplayRecPtr(NULL) : PG_UINT64_MAX;

	if (!XLogRecPtrIsInvalid(deferred_overflow_lsn) &&
		deferred_overflow_lsn <= replayed)
	{
		uint64		flushed = TwoCacheFlushLocal();

		deferred_overflow_lsn = InvalidXLogRecPtr;
		ereport(LOG,
				(errmsg("twocache worker: WAL replay caught up with the invalidations that did not fit the queue; flushed %llu local cache entries",
						(unsigned long long) flushed)));
	}

	dlist_foreach_modify(iter, &deferred)
	{
		DeferredInvalidation *d = dlist_container(DeferredInvalidation, node, iter.cur);

		if (d->lsn > replayed)
			continue;
		if (!d->l1_done)
		{
			(void) TwoCacheInvalidateLocal(&d->key, d->op == TC_MSG_TAG);
			d->l1_done = true;
		}
		if (d->op != TC_MSG_SET && redis && nbatch < WORKER_DEFERRED_BATCH)
			batch[nbatch++] = d;
		else if (d->op == TC_MSG_SET || !redis)
		{
			/* a set's value came from its sender, not from a snapshot here */
			dlist_delete(&d->node);
			pfree(d);
			ndeferred--;
		}
	}

	if (nbatch > 0 && wc->cmd != NULL)
	{
		InvalItem  *items = palloc(sizeof(InvalItem) * nbatch);
		InvalItem  *ptrs[WORKER_DEFERRED_BATCH];
		char		err[512];
		int			i;

		for (i = 0; i < nbatch; i++)
		{
			DeferredInvalidation *d = batch[i];

			InvalItemBuild(&items[i], &d->key, d->op == TC_MSG_TAG, d->dbname,
						   d->rolename[0] ? d->rolename : NULL, d->lsn);
			ptrs[i] = &items[i];
		}
		if (!InvalSend(wc->cmd, wc->channel, ptrs, nbatch, err, sizeof(err)))
		{
			/* replies may be in flight: never send on it again */
			state_error(err);
			drop_cmd(wc);
		}
		for (i = 0; i < nbatch; i++)
		{
			if (!items[i].sent)
				continue;		/* stays queued */
			(void) TwoCacheInvalidateLocal(&batch[i]->key, batch[i]->op == TC_MSG_TAG);
			dlist_delete(&batch[i]->node);
			pfree(batch[i]);
			ndeferred--;
		}
	}
	state_deferred();
	return ndeferred > 0 || !XLogRecPtrIsInvalid(deferred_overflow_lsn);
}

/* Apply one invalidation message from another server. */
static void
apply_message(const char *data, size_t len)
{
	TcMessage	msg;
	ArcKey		key;
	Oid			dbid = InvalidOid;
	Oid			roleid = InvalidOid;

	if (!TwoCacheMessageDecode(data, (int) len, &msg))
	{
		ereport(DEBUG1, (errmsg_internal("twocache worker: ignoring a malformed message")));
		return;
	}
	if (strcmp(msg.instance_id, twocache_shared->instance_id) == 0 &&
		msg.op != TC_MSG_FILLED)
		return;					/* our own */
	if (msg.op == TC_MSG_GENERATION)
	{
		uint64		generation = 0;
		uint32		i;

		/* another server's queue overflowed: its key field is a number */
		for (i = 0; i < msg.keylen && i < 20; i++)
		{
			if (msg.key[i] < '0' || msg.key[i] > '9')
				return;
			generation = generation * 10 + (msg.key[i] - '0');
		}
		if (i == msg.keylen)
		{
			InvalGenerationSeen(generation);
			TwoCacheCount(TC_INVALIDATIONS_RECEIVED, 1);
		}
		return;
	}
	AcceptInvalidationMessages();	/* forget renamed or dropped names */
	if (!msg.cluster_scope)
	{
		dbid = database_oid_cached(msg.dbname);
		if (!OidIsValid(dbid))
			return;				/* no such database here */
	}
	if (msg.role_scope)
	{
		roleid = role_oid_cached(msg.rolename);
		if (!OidIsValid(roleid))
			return;				/* no such role here */
	}
	TwoCacheKeyInit(&key, dbid, roleid, msg.key, msg.keylen);
	if (msg.op == TC_MSG_FILLED)
	{
		/* a fleet lease ended: wake its waiters here; nothing to drop */
		LeaseWake(&key);
		return;
	}
	if (must_defer(&msg))
		defer_message(&msg, &key);
	else
		(void) TwoCacheInvalidateLocal(&key, msg.op == TC_MSG_TAG);
	TwoCacheCount(TC_INVALIDATIONS_RECEIVED, 1);
}

/*
 * Apply every message the subscription has for us: those already parsed
 * into the connection's buffer and, if read_socket, what the socket has.
 * Returns false if the connection failed.
 */
static bool
drain_subscription(WorkerConn *wc, bool read_socket)
{
	char		err[256];

	if (read_socket && !TwoCacheRedisReadInput(wc->sub, err, sizeof(err)))
	{
		state_error(err);
		return false;
	}
	for (;;)
	{
		TcRedisReply *reply = NULL;
		int			got = TwoCacheRedisNextReply(wc->sub, &reply);

		if (got < 0)
		{
			state_error("invalid reply on the subscription connection");
			return false;
		}
		if (got == 0)
			return true;
		if (reply->type == TC_REPLY_ARRAY && reply->elements == 3 &&
			reply->element[0]->type == TC_REPLY_STRING &&
			strcmp(reply->element[0]->str, "message") == 0 &&
			reply->element[2]->type == TC_REPLY_STRING)
			apply_message(reply->element[2]->str, reply->element[2]->len);
		TwoCacheRedisFreeReplies(1, &reply);
	}
}

/*
 * Is Redis alive?  PING on the command connection, opened first if it was
 * dropped.  False (with the error recorded) if not: the caller drops both.
 */
static bool
ping(WorkerConn *wc)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	char		err[512];
	bool		ok;

	if (wc->cmd == NULL && !connect_cmd(wc, err, sizeof(err)))
	{
		state_error(err);
		return false;
	}
	/* Sentinel: is our master still one?  (A demoted one says "slave".) */
	TwoCacheRedisCommand(&cmd, wc->master_name != NULL ? "ROLE" : "PING");
	if (!TwoCacheRedisExec(wc->cmd, 1, &cmd, &reply, twocache_redis_timeout,
						   err, sizeof(err)))
	{
		state_error(err);
		return false;
	}
	ok = reply->type != TC_REPLY_ERROR;
	if (!ok)
		state_error(reply->str);
	else if (wc->master_name != NULL &&
			 (reply->type != TC_REPLY_ARRAY || reply->elements < 1 ||
			  reply->element[0]->type != TC_REPLY_STRING ||
			  strcmp(reply->element[0]->str, "master") != 0))
	{
		snprintf(err, sizeof(err), "Redis at %s is no longer the master of \"%s\"",
				 TwoCacheRedisTarget(wc->cmd), wc->master_name);
		state_error(err);
		ok = false;
	}
	TwoCacheRedisFreeReplies(1, &reply);
	if (ok)
		subscribe_sentinel(wc);

	/*
	 * Cluster: load the slot map again, so that a change of owner is seen
	 * even when no command met a redirect; a slot that changed owner may
	 * have taken messages or writes with it, so L1 is flushed (counted in
	 * local_flushes).
	 */
	if (ok && TwoCacheRedisIsCluster(wc->cmd))
	{
		bool		failover;

		if (!TwoCacheClusterRefresh(wc->cmd, err, sizeof(err)))
			state_error(err);
		if (TwoCacheClusterSlotsChanged(wc->cmd, &failover))
		{
			uint64		flushed = TwoCacheFlushLocal();

			pg_atomic_fetch_add_u64(&twocache_shared->local_flushes, 1);
			ereport(LOG,
					(errmsg("twocache worker: a Redis Cluster slot changed owner; flushed %llu local cache entries",
							(unsigned long long) flushed)));

			/*
			 * A replica took over: what its master acknowledged and did not
			 * replicate (deletes among it) is lost, so nothing written before
			 * is trusted (each server that sees it bumps; a few bumps cost a
			 * few misses).
			 */
			if (failover && !InvalGenerationBump(wc->cmd, wc->channel, err, sizeof(err)))
			{
				state_error(err);
				ok = false;
			}
		}
	}
	return ok;
}

/* ----------------------------------------------------------------
 * Main loop
 * ----------------------------------------------------------------
 */

/*
 * How long to wait before the next connection attempt, for a backoff of
 * backoff ms: a random time between half and all of it ("equal jitter").
 */
static int
backoff_delay(int backoff)
{
	return backoff / 2 +
		(int) pg_prng_uint64_range(&pg_global_prng_state, 0, backoff - backoff / 2);
}


/*
 * Wait up to timeout ms (-1: no limit) for the latch or a socket; sets
 * *sub_ready and *sentinel_ready for the sockets that are readable.
 */
static void
worker_wait(WorkerWait *ww, WorkerConn *wc, long timeout, bool *sub_ready,
			bool *sentinel_ready)
{
	pgsocket	sub_fd = wc->sub != NULL ? TwoCacheRedisSocket(wc->sub) : PGINVALID_SOCKET;
	pgsocket	sentinel_fd = wc->sentinel != NULL ?
		TwoCacheRedisSocket(wc->sentinel) : PGINVALID_SOCKET;
	WaitEvent	events[4];
	int			n;
	int			i;

	*sub_ready = false;
	*sentinel_ready = false;
	if (ww->set == NULL || ww->sub_fd != sub_fd || ww->sentinel_fd != sentinel_fd)
	{
		if (ww->set != NULL)
			FreeWaitEventSet(ww->set);
		ww->set = CreateWaitEventSet(TopMemoryContext, 4);
		AddWaitEventToSet(ww->set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(ww->set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		if (sub_fd != PGINVALID_SOCKET)
			AddWaitEventToSet(ww->set, WL_SOCKET_READABLE, sub_fd, NULL, &ww->sub_fd);
		if (sentinel_fd != PGINVALID_SOCKET)
			AddWaitEventToSet(ww->set, WL_SOCKET_READABLE, sentinel_fd, NULL,
							  &ww->sentinel_fd);
		ww->sub_fd = sub_fd;
		ww->sentinel_fd = sentinel_fd;
	}
	n = WaitEventSetWait(ww->set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if ((events[i].events & WL_SOCKET_READABLE) && events[i].user_data == &ww->sub_fd)
			*sub_ready = true;
		if ((events[i].events & WL_SOCKET_READABLE) &&
			events[i].user_data == &ww->sentinel_fd)
			*sentinel_ready = true;
	}
}

/*
 * Drop the worker's wait set before the sockets in it are closed (a closed
 * descriptor's number may be reused by the next connect).
 */
static void
worker_wait_reset(WorkerWait *ww)
{
	if (ww->set != NULL)
		FreeWaitEventSet(ww->set);
	ww->set = NULL;
	ww->sub_fd = PGINVALID_SOCKET;
	ww->sentinel_fd = PGINVALID_SOCKET;
}

void
TwoCacheWorkerMain(Datum arg pg_attribute_unused())
{
	WorkerConn	wc = {0};
	MemoryContext loop_cxt;
	TimestampTz next_connect = 0;
	TimestampTz next_ping = 0;
	int			backoff = WORKER_BACKOFF_MIN_MS;

	wc.sentinel_idx = -1;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	CacheRegisterSyscacheCallback(DATABASEOID, name_caches_reset, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, name_caches_reset, (Datum) 0);

	SpinLockAcquire(&twocache_shared->worker.mutex);
	twocache_shared->worker.pid = MyProcPid;
	twocache_shared->worker.latch = MyLatch;
	SpinLockRelease(&twocache_shared->worker.mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "twocache worker",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		long		timeout;
		bool		sub_ready;
		bool		sentinel_ready;
		bool		waiting_replay;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(loop_cxt);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (wc.sub != NULL)
			{
				char	   *settings = TwoCacheRedisSettings();

				if (strcmp(wc.url, settings) != 0 ||
					strcmp(wc.channel, twocache_channel) != 0)
				{
					disconnect(&wc);
					next_connect = 0;
					backoff = WORKER_BACKOFF_MIN_MS;
				}
				pfree(settings);
			}
		}

		/*
		 * Sentinel: a backend found the master gone or read-only, or one
		 * discovered another master: ask again, and follow a new one.
		 */
		if (wc.sub != NULL && wc.master_name != NULL)
		{
			bool		moved = TwoCacheRedisMasterMoved(wc.epoch);

			if (!moved && TwoCacheRedisDiscoveryRequested())
			{
				char		err[512];
				bool		changed;

				if (!TwoCacheRedisDiscover(&changed, NULL, err, sizeof(err)))
					state_error(err);
				moved = TwoCacheRedisMasterMoved(wc.epoch);
			}
			if (moved)
			{
				ereport(LOG, (errmsg("twocache worker: the Redis master changed; reconnecting")));
				disconnect(&wc);
				next_connect = 0;
				backoff = WORKER_BACKOFF_MIN_MS;
			}
		}

		now = GetCurrentTimestamp();
		if (!TwoCacheRedisEnabled())
		{
			if (wc.sub != NULL)
				disconnect(&wc);
		}
		else if (wc.sub == NULL && now >= next_connect)
		{
			if (connect_and_subscribe(&wc))
			{
				char		err[512];

				/*
				 * Values of an older generation are misses from now on; a
				 * connection whose exchange failed is never used again, and
				 * the next connect reads the generation again.
				 */
				if (!InvalGenerationRefresh(wc.cmd, wc.master_name != NULL,
											wc.channel, err, sizeof(err)))
				{
					state_error(err);
					disconnect(&wc);
					next_connect = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   backoff_delay(backoff));
					backoff = Min(backoff * 2, WORKER_BACKOFF_MAX_MS);
				}
				/* messages may have arrived with the SUBSCRIBE reply */
				else if (!drain_subscription(&wc, false))
				{
					disconnect(&wc);
					next_connect = 0;
				}
				else
				{
					backoff = WORKER_BACKOFF_MIN_MS;
					next_ping = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															WORKER_PING_INTERVAL_MS);
				}
			}
			else
			{
				next_connect = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   backoff_delay(backoff));
				backoff = Min(backoff * 2, WORKER_BACKOFF_MAX_MS);
			}
		}
		else if (wc.sub != NULL && (now >= next_ping || wc.cmd == NULL))
		{
			if (!ping(&wc))
			{
				ereport(LOG, (errmsg("twocache worker: lost Redis; reconnecting")));
				disconnect(&wc);
				next_connect = 0;
			}
			else
				next_ping = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														WORKER_PING_INTERVAL_MS);
		}

		/* invalidations that were waiting for WAL replay */
		waiting_replay = process_deferred(&wc);

		/* invalidations backends could not send (inval.c) */
		if (wc.cmd != NULL)
		{
			char		err[512];

			if (InvalQueueReplay(wc.cmd, wc.channel, err, sizeof(err)) < 0)
			{
				/* replies may be in flight: ping() opens a new one */
				state_error(err);
				drop_cmd(&wc);
			}
		}

		/* sleep until a message, the next ping or connect, or the latch */
		now = GetCurrentTimestamp();
		if (!TwoCacheRedisEnabled())
			timeout = -1;
		else if (wc.sub != NULL)
		{
			/* a dropped command connection is opened again at once */
			timeout = wc.cmd == NULL ? 0 :
				Max(TimestampDifferenceMilliseconds(now, next_ping), 1);
		}
		else
			timeout = Max(TimestampDifferenceMilliseconds(now, next_connect), 1);
		if (waiting_replay && (timeout < 0 || timeout > WORKER_REPLAY_POLL_MS))
			timeout = WORKER_REPLAY_POLL_MS;

		worker_wait(&worker_ww, &wc, timeout, &sub_ready, &sentinel_ready);
		if (sub_ready && wc.sub != NULL && !drain_subscription(&wc, true))
		{
			ereport(LOG, (errmsg("twocache worker: lost the Redis subscription; reconnecting")));
			disconnect(&wc);
			next_connect = 0;
		}
		if (sentinel_ready && wc.sentinel != NULL && drain_sentinel(&wc))
		{
			char		err[512];
			bool		changed;

			/* ask again rather than trust the message alone */
			if (!TwoCacheRedisDiscover(&changed, NULL, err, sizeof(err)))
				state_error(err);
			disconnect(&wc);
			next_connect = 0;
			backoff = WORKER_BACKOFF_MIN_MS;
		}

		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
	}
}
