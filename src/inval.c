/*-------------------------------------------------------------------------
 *
 * inval.c
 *	  Invalidation: what happens when a key is deleted or a tag invalidated,
 *	  on this server and on every other.
 *
 * A delete (twocache_del) or a tag invalidation (twocache_invalidate_tag,
 * or a table trigger's, after commit) runs in three steps:
 *
 *	1. Locally: drop the key's L1 entry (or every entry carrying the tag) and
 *	   fence fills of it (cache.c, tags.c), so this server stops serving it.
 *	2. In Redis: DEL the key, or empty the tag's set in bounded rounds, then
 *	   PUBLISH the message, so every other server drops its copies (their
 *	   workers apply the message: worker.c).  InvalSend is the one builder
 *	   of this step, shared by the backend, the post-commit re-apply and the
 *	   worker's replay of invalidations deferred on a hot standby: keys go
 *	   in pipelined batches of INVAL_BATCH, each round trip bounded by
 *	   twocache.redis_timeout, and any error reply is an error (counted in
 *	   redis_errors), never ignored.
 *	3. Locally again, once Redis has answered: a reader that missed L1
 *	   between steps 1 and 2 may have read the old value from Redis and
 *	   stored it; the second drop and fence remove it, or reject its fill.
 *	   So when the call returns no backend of this server serves the old
 *	   value again from L1, and Redis no longer has it.
 *
 * Inside a transaction block, or in a transaction that has written, the
 * invalidation is also remembered and applied again (all three steps) when
 * the transaction commits, so that readers who refilled from a snapshot
 * taken before the commit are corrected; a table trigger's invalidations
 * are only queued, and sent after commit.  The remembered set is kept per
 * transaction in its own memory context: deduplicated (by Redis name), and
 * bounded at INVAL_MAX_PENDING entries; beyond that the commit flushes this
 * server's L1 instead and warns.  Everything the commit needs is built when
 * an invalidation is remembered (the Redis names and messages need catalog
 * access), so the commit callback allocates nothing that grows with the
 * transaction, sends in fixed batches, and raises no ERROR: a Redis failure
 * there is a WARNING.  An abort forgets the set; the abort of a
 * subtransaction forgets what the trigger queued in it.
 *
 * A Redis failure in step 2 leaves the invalidation applied locally only,
 * with a WARNING: other servers keep their copies until they expire or are
 * invalidated again.
 *
 * Locking: none of its own.  Steps 1 and 3 take partition locks one at a
 * time (cache.c, tags.c); no lock is held across a Redis exchange.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "inval.h"
#include "l2.h"
#include "message.h"
#include "redis.h"
#include "twocache.h"

/* Keys per Redis round trip (a DEL and a PUBLISH each). */
#define INVAL_BATCH			128

/* Invalidations one transaction remembers for after commit. */
#define INVAL_MAX_PENDING	100000

/*
 * Members a round of a tag invalidation asks SSCAN for, and the most rounds
 * one invalidation takes: 10M members need 20000 rounds of 500, and SSCAN
 * may return fewer than COUNT from a sparse table, hence the margin.
 */
#define TAG_ROUND_COUNT		"500"
#define TAG_MAX_ROUNDS		100000

/*
 * One round of a tag invalidation: SSCAN the tag's set from cursor ARGV[1],
 * COUNT ARGV[2]; DEL every member returned that starts with ARGV[3] ('' =
 * all) and SREM it.  Returns {next cursor, number deleted}.  Short by
 * construction, whatever the size of the set.
 */
static const char *const tag_round_script =
"local r = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])\n"
"local prefix = ARGV[3]\n"
"local n = 0\n"
"for _, m in ipairs(r[2]) do\n"
"  if prefix == '' or string.sub(m, 1, #prefix) == prefix then\n"
"    redis.call('DEL', m)\n"
"    redis.call('SREM', KEYS[1], m)\n"
"    n = n + 1\n"
"  end\n"
"end\n"
"return {r[1], n}\n";

/*
 * An invalidation remembered for after commit.  Its identity (the hash key)
 * is the kind, the Redis name and the member prefix, so one key deleted a
 * million times is remembered once.
 */
typedef struct PendingId
{
	uint32		hash;
	uint32		len;
	const char *bytes;			/* 'k' or 't', Redis name, NUL, prefix */
} PendingId;

typedef struct Pending
{
	PendingId	id;				/* hash key: must be first */
	ArcKey		key;			/* the key or tag, for the L1 steps */
	bool		queued;			/* by the trigger: only after commit */
	int			nest_level;		/* subtransaction that queued it */
	InvalItem	item;
} Pending;

static MemoryContext pending_cxt = NULL;	/* this transaction's; reset at
											 * its end */
static HTAB *pending_hash = NULL;
static Pending **pending = NULL;	/* in the order remembered */
static int	npending = 0;
static int	maxpending = 0;
static uint64 pending_dropped = 0;	/* beyond INVAL_MAX_PENDING */
static bool callbacks_registered = false;

/* ----------------------------------------------------------------
 * The Redis side (step 2)
 * ----------------------------------------------------------------
 */

/*
 * Build the Redis side of an invalidation of key (a tag if is_tag), for
 * database dbname and role rolename (NULL unless in role scope), holding
 * from WAL position lsn; palloc'd in the current context.
 */
void
InvalItemBuild(InvalItem *item, const ArcKey *key, bool is_tag,
			   const char *dbname, const char *rolename, XLogRecPtr lsn)
{
	memset(item, 0, sizeof(InvalItem));
	item->is_tag = is_tag;
	if (is_tag)
	{
		item->rkey = L2TagSetName(key, dbname, &item->rkeylen);
		item->prefix = L2RolePrefix(dbname, rolename, &item->prefixlen);
	}
	else
	{
		item->rkey = L2KeyName(key, dbname, rolename, &item->rkeylen);
		item->prefix = NULL;
	}
	item->msg = L2Message(key, dbname, rolename,
						  is_tag ? TC_MSG_TAG : TC_MSG_DEL, lsn, &item->msglen);
}

/* The same for the backend: its database and key's role, holding now. */
static void
item_build_here(InvalItem *item, const ArcKey *key, bool is_tag)
{
	const char *dbname;
	const char *rolename;

	L2ScopeNames(key, &dbname, &rolename);
	InvalItemBuild(item, key, is_tag, dbname, rolename,
				   TwoCacheInvalidationLsn());
}

/* A round trip on conn, or on the backend's connection when it is NULL. */
static bool
exec(redisContext *conn, int n, TcRedisCommand *cmds, redisReply **replies,
	 char *errbuf, size_t errlen)
{
	if (conn == NULL)
		return TwoCacheRedisBackendExec(n, cmds, replies, errbuf, errlen);
	return TwoCacheRedisExec(conn, n, cmds, replies, twocache_redis_timeout,
							 errbuf, errlen);
}

/*
 * Redis refused a step (errbuf says how): an error like a dropped
 * connection, counted in redis_errors.  On the backend's connection that
 * also starts the retry interval; the worker records the error itself.
 */
static void
refused(redisContext *conn, const redisReply *reply, const char *what,
		char *errbuf, size_t errlen)
{
	snprintf(errbuf, errlen, "Redis refused %s: %s", what,
			 reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	if (conn == NULL)
		TwoCacheRedisBackendFailed(errbuf);
	else
		TwoCacheCount(TC_REDIS_ERRORS, 1);
}

static void
add_publish(TcRedisCommand *cmd, const char *channel, const InvalItem *item)
{
	TwoCacheRedisCommand(cmd, "PUBLISH");
	TwoCacheRedisArg(cmd, channel, strlen(channel));
	TwoCacheRedisArg(cmd, item->msg, item->msglen);
}

/*
 * Empty a tag's set in bounded rounds, whatever its size: each round is one
 * short script (tag_round_script) from a cursor, until the cursor comes back
 * to 0.  SSCAN returns every member that is in the set for the whole scan;
 * a member added meanwhile (a fill) may stay, indexed, so the set itself is
 * never deleted (an empty set vanishes).  The message is published only
 * after the last round, so that receivers, who drop their L1 entries and
 * fence fills, cannot refill an old value from Redis.  Fails if Redis fails
 * or refuses a step, or if the set did not end within TAG_MAX_ROUNDS rounds
 * (the message is still sent then).  A cancel may end it between rounds,
 * except after commit, where interrupts are held.
 */
static bool
send_tag(redisContext *conn, const char *channel, InvalItem *item,
		 char *errbuf, size_t errlen)
{
	char		cursor[32] = "0";
	int			rounds = 0;
	TcRedisCommand cmd;
	redisReply *reply;

	do
	{
		redisReply *next;
		redisReply *count;

		if (rounds++ >= TAG_MAX_ROUNDS)
			break;
		CHECK_FOR_INTERRUPTS();
		TwoCacheRedisCommand(&cmd, "EVAL");
		TwoCacheRedisArg(&cmd, tag_round_script, strlen(tag_round_script));
		TwoCacheRedisArg(&cmd, "1", 1);
		TwoCacheRedisArg(&cmd, item->rkey, item->rkeylen);
		TwoCacheRedisArg(&cmd, cursor, strlen(cursor));
		TwoCacheRedisArg(&cmd, TAG_ROUND_COUNT, strlen(TAG_ROUND_COUNT));
		TwoCacheRedisArg(&cmd, item->prefix, item->prefixlen);
		reply = NULL;
		if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
			return false;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
			(next = reply->element[0])->type != REDIS_REPLY_STRING ||
			next->len == 0 || next->len >= sizeof(cursor) ||
			(count = reply->element[1])->type != REDIS_REPLY_INTEGER)
		{
			refused(conn, reply, "the tag invalidation", errbuf, errlen);
			TwoCacheRedisFreeReplies(1, &reply);
			return false;
		}
		memcpy(cursor, next->str, next->len);
		cursor[next->len] = '\0';
		item->deleted += count->integer;
		TwoCacheRedisFreeReplies(1, &reply);
	} while (strcmp(cursor, "0") != 0);

	add_publish(&cmd, channel, item);
	reply = NULL;
	if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type != REDIS_REPLY_INTEGER)
	{
		refused(conn, reply, "the tag invalidation message", errbuf, errlen);
		TwoCacheRedisFreeReplies(1, &reply);
		return false;
	}
	TwoCacheRedisFreeReplies(1, &reply);
	TwoCacheCount(TC_INVALIDATIONS_SENT, 1);

	if (strcmp(cursor, "0") != 0)
	{
		snprintf(errbuf, errlen,
				 "the tag's set in Redis did not come to an end in %d rounds of %s members",
				 TAG_MAX_ROUNDS, TAG_ROUND_COUNT);
		return false;
	}
	item->sent = true;
	return true;
}

/*
 * Send n invalidations to Redis on conn (NULL: the backend's connection),
 * publishing on channel: keys in pipelined batches of INVAL_BATCH (a DEL and
 * a PUBLISH each), tags each in its rounds, in the order given.  Each item's
 * sent and deleted say what Redis did.  Stops at the first failure, with
 * errbuf set: after a failed exchange a connection may still have replies
 * in flight.  Every round trip is bounded by twocache.redis_timeout; raises
 * no ERROR because of Redis.
 */
bool
InvalSend(redisContext *conn, const char *channel, InvalItem **items, int n,
		  char *errbuf, size_t errlen)
{
	TcRedisCommand cmds[2 * INVAL_BATCH];
	redisReply *replies[2 * INVAL_BATCH];
	int			i = 0;

	while (i < n)
	{
		int			first = i;
		int			nb = 0;
		int			j;
		bool		ok = true;

		if (items[i]->is_tag)
		{
			if (!send_tag(conn, channel, items[i], errbuf, errlen))
				return false;
			i++;
			continue;
		}
		while (i < n && !items[i]->is_tag && nb < INVAL_BATCH)
		{
			TwoCacheRedisCommand(&cmds[2 * nb], "DEL");
			TwoCacheRedisArg(&cmds[2 * nb], items[i]->rkey, items[i]->rkeylen);
			add_publish(&cmds[2 * nb + 1], channel, items[i]);
			nb++;
			i++;
		}
		memset(replies, 0, sizeof(redisReply *) * 2 * nb);
		if (!exec(conn, 2 * nb, cmds, replies, errbuf, errlen))
			return false;
		for (j = 0; j < nb && ok; j++)
		{
			redisReply *del = replies[2 * j];
			redisReply *pub = replies[2 * j + 1];

			if (del->type != REDIS_REPLY_INTEGER)
			{
				refused(conn, del, "DEL", errbuf, errlen);
				ok = false;
			}
			else if (pub->type != REDIS_REPLY_INTEGER)
			{
				refused(conn, pub, "the invalidation message", errbuf, errlen);
				ok = false;
			}
			else
			{
				items[first + j]->deleted = del->integer;
				items[first + j]->sent = true;
				TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
			}
		}
		TwoCacheRedisFreeReplies(2 * nb, replies);
		if (!ok)
			return false;
	}
	return true;
}

/* ----------------------------------------------------------------
 * The local side (steps 1 and 3)
 * ----------------------------------------------------------------
 */

/*
 * Drop key (a tag if is_tag: every entry carrying it, of key->roleid if
 * valid, else of every role) from L1 and fence fills of it.  Returns how
 * many entries were dropped (for a key: 1 if a live one existed).
 */
uint64
TwoCacheInvalidateLocal(const ArcKey *key, bool is_tag)
{
	if (is_tag)
		return TwoCacheInvalidateTagLocal(key->dbid, key->roleid, key->data,
										  key->len, InvalidXLogRecPtr);
	return TwoCacheLocalDelete(key) ? 1 : 0;
}

/* ----------------------------------------------------------------
 * After commit
 * ----------------------------------------------------------------
 */

static uint32
pending_id_hash(const void *key, Size keysize pg_attribute_unused())
{
	return ((const PendingId *) key)->hash;
}

static int
pending_id_match(const void *key1, const void *key2,
				 Size keysize pg_attribute_unused())
{
	const PendingId *a = key1;
	const PendingId *b = key2;

	if (a->hash != b->hash || a->len != b->len)
		return 1;
	return memcmp(a->bytes, b->bytes, a->len);
}

/* A copy of n bytes (any bytes) in the current context. */
static char *
copy_bytes(const char *src, size_t n)
{
	char	   *dst = palloc(Max(n, 1));

	if (n > 0)
		memcpy(dst, src, n);
	return dst;
}

/* Forget everything remembered (end of transaction; raises no error). */
static void
pending_reset(void)
{
	if (pending_cxt != NULL)
		MemoryContextReset(pending_cxt);
	pending_hash = NULL;
	pending = NULL;
	npending = 0;
	maxpending = 0;
	pending_dropped = 0;
}

/*
 * Apply every remembered invalidation again, at commit: L1, then Redis in
 * batches (with the commit's WAL position in the messages), then L1 again.
 * Holds interrupts: we are past the commit.  Raises no ERROR.
 */
static void
apply_pending(void)
{
	int			i;
	char		err[512];
	int			nsent = 0;

	HOLD_INTERRUPTS();
	for (i = 0; i < npending; i++)
		(void) TwoCacheInvalidateLocal(&pending[i]->key, pending[i]->item.is_tag);

	if (npending > 0 && TwoCacheRedisEnabled())
	{
		InvalItem  *batch[INVAL_BATCH];
		XLogRecPtr	lsn = TwoCacheInvalidationLsn();	/* from the commit on */
		bool		ok = true;

		for (i = 0; i < npending && ok; i += INVAL_BATCH)
		{
			int			nb = Min(INVAL_BATCH, npending - i);
			int			j;

			for (j = 0; j < nb; j++)
			{
				batch[j] = &pending[i + j]->item;
				TwoCacheMessageSetLsn(batch[j]->msg, batch[j]->msglen, lsn);
			}
			ok = InvalSend(NULL, twocache_channel, batch, nb, err, sizeof(err));
			for (j = 0; j < nb; j++)
				nsent += batch[j]->sent ? 1 : 0;
		}
		if (!ok)
			ereport(WARNING,
					(errmsg("could not apply %d of %d cache invalidations again in Redis after commit",
							npending - nsent, npending),
					 errdetail("%s", err),
					 errhint("They were applied again in the local cache; other servers keep their copies until they expire or are invalidated again.")));

		/* what readers refilled from Redis before it answered */
		for (i = 0; i < npending; i++)
			(void) TwoCacheInvalidateLocal(&pending[i]->key, pending[i]->item.is_tag);
	}

	if (pending_dropped > 0)
	{
		uint64		flushed = TwoCacheFlushLocal();

		ereport(WARNING,
				(errmsg("too many cache invalidations in one transaction to apply again after commit: %llu were not",
						(unsigned long long) pending_dropped),
				 errdetail("The local cache was flushed instead (%llu entries); other servers keep their copies until they expire or are invalidated again.",
						   (unsigned long long) flushed),
				 errhint("A transaction remembers at most %d distinct invalidations.",
						 INVAL_MAX_PENDING)));
	}
	RESUME_INTERRUPTS();
}

static void
inval_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			if (npending > 0 || pending_dropped > 0)
				apply_pending();
			pending_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending_reset();
			break;
		default:
			break;
	}
}

/*
 * At the end of a subtransaction: an abort forgets the invalidations the
 * trigger queued in it; a commit hands them to the parent.
 */
static void
inval_subxact_callback(SubXactEvent event,
					   SubTransactionId mySubid pg_attribute_unused(),
					   SubTransactionId parentSubid pg_attribute_unused(),
					   void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;
	int			kept = 0;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	for (i = 0; i < npending; i++)
	{
		Pending    *p = pending[i];

		if (p->queued && p->nest_level >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
			{
				(void) hash_search(pending_hash, &p->id, HASH_REMOVE, NULL);
				continue;
			}
			p->nest_level = level - 1;
		}
		pending[kept++] = p;
	}
	npending = kept;
}

/*
 * Remember an invalidation of key (a tag if is_tag) for after commit;
 * queued: only then (a trigger's), and forgotten if the subtransaction that
 * queued it aborts.  Builds its Redis side now, while catalog access works.
 */
static void
remember(const ArcKey *key, bool is_tag, bool queued)
{
	MemoryContext old;
	InvalItem	item;
	PendingId	id;
	Pending    *p;
	bool		found;
	char	   *bytes;
	char	   *data;

	if (!callbacks_registered)
	{
		RegisterXactCallback(inval_xact_callback, NULL);
		RegisterSubXactCallback(inval_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (pending_cxt == NULL)
		pending_cxt = AllocSetContextCreate(TopMemoryContext,
											"twocache invalidations after commit",
											ALLOCSET_DEFAULT_SIZES);

	/* its identity, in the caller's memory: most calls only find it */
	item_build_here(&item, key, is_tag);
	id.len = 1 + item.rkeylen + 1 + item.prefixlen;
	bytes = palloc(id.len);
	bytes[0] = is_tag ? 't' : 'k';
	memcpy(bytes + 1, item.rkey, item.rkeylen);
	bytes[1 + item.rkeylen] = '\0';
	if (item.prefixlen > 0)
		memcpy(bytes + 2 + item.rkeylen, item.prefix, item.prefixlen);
	id.bytes = bytes;
	id.hash = hash_bytes((const unsigned char *) bytes, id.len);

	old = MemoryContextSwitchTo(pending_cxt);
	if (pending_hash == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PendingId);
		ctl.entrysize = sizeof(Pending);
		ctl.hash = pending_id_hash;
		ctl.match = pending_id_match;
		ctl.hcxt = pending_cxt;
		pending_hash = hash_create("twocache invalidations after commit", 64, &ctl,
								   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}

	p = hash_search(pending_hash, &id, HASH_FIND, NULL);
	if (p != NULL)
	{
		/* already remembered: it now holds for this level too */
		if (!queued)
			p->queued = false;
		p->nest_level = Min(p->nest_level, GetCurrentTransactionNestLevel());
		MemoryContextSwitchTo(old);
		return;
	}
	if (npending >= INVAL_MAX_PENDING)
	{
		pending_dropped++;
		MemoryContextSwitchTo(old);
		return;
	}
	if (npending >= maxpending)
	{
		maxpending = Max(64, maxpending * 2);
		pending = pending == NULL ? palloc(sizeof(Pending *) * maxpending) :
			repalloc(pending, sizeof(Pending *) * maxpending);
	}
	/* new: copy it into the transaction's context */
	id.bytes = copy_bytes(bytes, id.len);
	p = hash_search(pending_hash, &id, HASH_ENTER, &found);
	Assert(!found);
	data = palloc(Max(key->len, 1));
	memcpy(data, key->data, key->len);
	p->key = *key;
	p->key.data = data;
	p->queued = queued;
	p->nest_level = GetCurrentTransactionNestLevel();
	p->item = item;
	p->item.rkey = copy_bytes(item.rkey, item.rkeylen);
	p->item.prefix = copy_bytes(item.prefix, item.prefixlen);
	p->item.msg = copy_bytes(item.msg, item.msglen);
	pending[npending++] = p;
	MemoryContextSwitchTo(old);
}

/* Must an invalidation made now be applied again after commit? */
static bool
again_after_commit(void)
{
	/*
	 * Inside a transaction block, or when the transaction has written
	 * already (a function that updates and deletes): it may commit a change
	 * the key depends on later than now.
	 */
	return IsTransactionBlock() || TransactionIdIsValid(GetTopTransactionIdIfAny());
}

/* ----------------------------------------------------------------
 * Entry points
 * ----------------------------------------------------------------
 */

/* A tag as a key: its database, its role (InvalidOid: every role), bytes. */
static void
tag_key(ArcKey *t, Oid dbid, Oid roleid, const char *tag, int taglen)
{
	t->hash = 0;
	t->dbid = dbid;
	t->roleid = roleid;
	t->data = tag;
	t->len = taglen;
}

/*
 * Delete key from L1 and, unless local_only, from Redis with a message to
 * the other servers (the three steps above); again after commit when
 * again_after_commit().  Returns whether the key existed in either layer.
 */
bool
TwoCacheDel(const ArcKey *key, bool local_only)
{
	bool		existed = TwoCacheLocalDelete(key);
	bool		l2_existed = false;

	if (local_only)
		return existed;
	if (TwoCacheRedisEnabled())
	{
		InvalItem	item;
		InvalItem  *items[1] = {&item};
		char		err[512];

		item_build_here(&item, key, false);
		if (!InvalSend(NULL, twocache_channel, items, 1, err, sizeof(err)))
			ereport(WARNING,
					(errmsg("could not delete cache key from Redis; it was deleted from the local cache only"),
					 errdetail("%s", err)));
		l2_existed = item.deleted > 0;
		(void) TwoCacheLocalDelete(key);
	}
	if (again_after_commit())
		remember(key, false, false);
	return existed || l2_existed;
}

/*
 * Drop every entry of database dbid (and of role roleid, if valid; else of
 * every role) carrying tag: from L1, and in two-layer mode from Redis with a
 * message to the other servers (the three steps above); again after commit
 * when again_after_commit().  Returns how many L1 entries this server
 * dropped.
 */
uint64
TwoCacheInvalidateTag(Oid dbid, Oid roleid, const char *tag, int taglen)
{
	ArcKey		t;
	uint64		dropped;

	tag_key(&t, dbid, roleid, tag, taglen);
	dropped = TwoCacheInvalidateLocal(&t, true);
	if (TwoCacheRedisEnabled())
	{
		InvalItem	item;
		InvalItem  *items[1] = {&item};
		char		err[512];

		item_build_here(&item, &t, true);
		if (!InvalSend(NULL, twocache_channel, items, 1, err, sizeof(err)))
			ereport(WARNING,
					(errmsg("could not invalidate cache tag in Redis; it was invalidated in the local cache only"),
					 errdetail("%s", err)));
		dropped += TwoCacheInvalidateLocal(&t, true);
	}
	if (again_after_commit())
		remember(&t, true, false);
	return dropped;
}

/*
 * Queue a tag invalidation of database dbid, for every role, to apply after
 * commit (twocache_invalidate_trigger): nothing happens now; a rollback, of
 * the transaction or of the queueing subtransaction, sends nothing.
 */
void
TwoCacheQueueTagInvalidation(Oid dbid, const char *tag, int taglen)
{
	ArcKey		t;

	tag_key(&t, dbid, InvalidOid, tag, taglen);
	remember(&t, true, true);
}

/*
 * Take back a fill that Redis stored although it became stale while being
 * written (cache.c): DEL it, with a message, as a delete does.  Returns
 * whether Redis did.
 */
bool
TwoCacheTakeBack(const ArcKey *key)
{
	InvalItem	item;
	InvalItem  *items[1] = {&item};
	char		err[512];

	item_build_here(&item, key, false);
	return InvalSend(NULL, twocache_channel, items, 1, err, sizeof(err));
}
