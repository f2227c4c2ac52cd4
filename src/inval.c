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
 *	   fence fills of it (cache.c, tags.c, fence.c), so this server stops
 *	   serving it.
 *	2. In Redis: DEL the key, or empty the tag's set in bounded rounds, then
 *	   PUBLISH the message (each first sets its fill fence to Redis's clock,
 *	   so a fill on any server that began before is not stored: l2.c), so every other server drops its copies (their
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
 * An invalidation Redis did not take in step 2 (down, timed out, an error
 * reply such as READONLY) is not lost: it goes, with a WARNING, into a
 * queue in shared memory (INVAL_QUEUE_SIZE entries), which the worker sends
 * again as soon as Redis answers (InvalQueueReplay).  While it is queued the
 * key is withheld from L2 on this server: reads treat Redis's copy as a
 * miss, and so do reads of a value carrying a queued tag (counters by hash
 * in shared memory, so the check costs one atomic read when nothing is
 * queued; a collision only withholds a key needlessly), and fills do not
 * write it to Redis.  If the queue overflows, every L2 read here is a miss
 * until the worker has bumped the generation in Redis (<key_prefix>
 * generation, INCR, and a 'g' message): every value carries the generation
 * it was written in, and every server treats a value of an older
 * generation as a miss, and flushes its L1 when it learns of a new one.
 *
 * Locking: the queue is under its own LWLock (tranche "twocache
 * invalidation queue"), never held across a Redis exchange nor together
 * with a partition lock; its counters and the generation are atomics.
 * Steps 1 and 3 take partition locks one at a time (cache.c, tags.c).
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

/* Invalidations Redis has not taken yet, and their counters by hash. */
#define INVAL_QUEUE_SIZE	1024
#define INVAL_QUEUE_SLOTS	4096

/*
 * Members a round of a tag invalidation asks SSCAN for, and the most rounds
 * one invalidation takes: 10M members need 20000 rounds of 500, and SSCAN
 * may return fewer than COUNT from a sparse table, hence the margin.
 */
#define TAG_ROUND_COUNT		"500"
#define TAG_MAX_ROUNDS		100000

/*
 * Lua: one round of a tag invalidation on its set KEYS[1] in a cluster,
 * from cursor ARGV[1], ARGV[2] members at a time: SSCAN, then SREM of the
 * members of the key prefix ARGV[3] ('' = all), which it returns with the
 * next cursor.  The members are deleted after (del_many_script, each on its
 * own node: the set and its members may be in different slots).  On one
 * Redis, tag_peek_script and del_srem_script do the round instead.
 * Removed first, deleted second: a fill that adds a member again after the
 * SREM keeps it (its membership must outlive this invalidation, and the
 * delete's fence refuses it if it began before), whereas the other order
 * would drop a fresh fill's membership between the DEL and the SREM.
 */
static const char *const tag_scan_script =
"local r = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])\n"
"local prefix = ARGV[3]\n"
"local out = {r[1]}\n"
"for _, m in ipairs(r[2]) do\n"
"  if prefix == '' or string.sub(m, 1, #prefix) == prefix then\n"
"    redis.call('SREM', KEYS[1], m)\n"
"    out[#out + 1] = m\n"
"  end\n"
"end\n"
"return out\n";

/*
 * Lua: tag_scan_script without the SREM, for one Redis (not a cluster),
 * where del_srem_script then takes the members out of the set and deletes
 * them in one script: a round cut between the two leaves them in the set,
 * for the invalidation's retry to find.
 */
static const char *const tag_peek_script =
"local r = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])\n"
"local prefix = ARGV[3]\n"
"local out = {r[1]}\n"
"for _, m in ipairs(r[2]) do\n"
"  if prefix == '' or string.sub(m, 1, #prefix) == prefix then\n"
"    out[#out + 1] = m\n"
"  end\n"
"end\n"
"return out\n";

/*
 * Lua, one Redis: take the members KEYS[2], KEYS[4], ... out of the tag's
 * set KEYS[1], delete them and set their stripes' fill fences KEYS[3],
 * KEYS[5], ... to now (never back), atomically.  Returns how many existed.
 */
static const char *const del_srem_script =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local n = 0\n"
"for i = 2, #KEYS, 2 do\n"
"  redis.call('SREM', KEYS[1], KEYS[i])\n"
"  n = n + redis.call('DEL', KEYS[i])\n"
"  local cur = tonumber(redis.call('GET', KEYS[i + 1]) or '0') or 0\n"
"  local v = now\n"
"  if cur > now then v = cur end\n"
"  redis.call('SET', KEYS[i + 1], string.format('%.0f', v))\n"
"end\n"
"return n\n";

/*
 * Lua: the later of Redis's clock (microseconds) and the fence KEYS[i]
 * already holds, as 'now'.  Fills that began at or before it are refused
 * (l2.c, fill_script).
 */
#define LUA_FENCE_NOW(i) \
"local t = redis.call('TIME')\n" \
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
"local cur = tonumber(redis.call('GET', KEYS[" i "]) or '0')\n" \
"if cur and cur > now then now = cur end\n"


/*
 * Delete KEYS[1], KEYS[3], ... and set the fill fences KEYS[2], KEYS[4], ...
 * of their stripes to now (never back): a key's delete (two keys, in one
 * slot), or one member of a tag invalidation's round in a cluster (on one
 * Redis, del_srem_script).  Returns how many existed.
 */
static const char *const del_many_script =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local n = 0\n"
"for i = 1, #KEYS, 2 do\n"
"  n = n + redis.call('DEL', KEYS[i])\n"
"  local cur = tonumber(redis.call('GET', KEYS[i + 1]) or '0') or 0\n"
"  local v = now\n"
"  if cur > now then v = cur end\n"
"  redis.call('SET', KEYS[i + 1], string.format('%.0f', v))\n"
"end\n"
"return n\n";

/* Set a tag's fill fence KEYS[1] to now, for ARGV[1] ms. */
static const char *const tag_fence_script =
LUA_FENCE_NOW("1")
"redis.call('SET', KEYS[1], string.format('%.0f', now), 'PX', ARGV[1])\n"
"return 1\n";

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
	char		dbname[NAMEDATALEN];	/* for the queue, should Redis fail */
	char		rolename[NAMEDATALEN];	/* "" unless role scope */
} Pending;

/* An invalidation Redis has not taken yet (shared memory). */
typedef struct QueuedInval
{
	bool		is_tag;
	uint32		slot;			/* its withheld counter */
	uint32		seq;			/* bumped when queued again */
	Oid			dbid;
	Oid			roleid;
	XLogRecPtr	lsn;			/* its message holds from there */
	char		dbname[NAMEDATALEN];
	char		rolename[NAMEDATALEN];	/* "" unless role scope */
	uint32		keylen;
	char		key[TWOCACHE_MAX_KEY_LEN];
} QueuedInval;

typedef struct InvalQueue
{
	LWLock	   *lock;			/* protects n, overflowed and entries */
	int			n;
	bool		overflowed;		/* one did not fit: withhold all of L2 */
	pg_atomic_uint32 withheld;	/* n + overflowed, read without the lock */
	pg_atomic_uint64 generation;	/* the newest this server knows of */
	pg_atomic_uint32 keys[INVAL_QUEUE_SLOTS];	/* queued keys, by hash */
	pg_atomic_uint32 tags[INVAL_QUEUE_SLOTS];	/* queued tags, by hash */
	QueuedInval entries[INVAL_QUEUE_SIZE];
} InvalQueue;

static InvalQueue *queue = NULL;

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
		item->fence = L2TagFenceName(key, dbname, &item->fencelen);
	}
	else
	{
		item->rkey = L2KeyName(key, dbname, rolename, &item->rkeylen);
		item->prefix = NULL;
		item->fence = L2DeleteFenceName(item->rkey, item->rkeylen, &item->fencelen);
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
exec(TcRedisConn *conn, int n, TcRedisCommand *cmds, TcRedisReply **replies,
	 char *errbuf, size_t errlen)
{
	if (conn == NULL)
		return TwoCacheRedisBackendExec(n, cmds, replies, errbuf, errlen);
	return TwoCacheRedisExec(conn, n, cmds, replies, twocache_redis_timeout,
							 errbuf, errlen);
}

/*
 * Redis refused a step (errbuf says how): an error like a dropped
 * connection.  An error reply was counted in redis_errors by the exchange
 * (TwoCacheRedisExec); an unexpected reply is counted here.  On the
 * backend's connection that also starts the retry interval; the worker
 * records the error itself.
 */
static void
refused(TcRedisConn *conn, const TcRedisReply *reply, const char *what,
		char *errbuf, size_t errlen)
{
	bool		error_reply = reply != NULL && reply->type == TC_REPLY_ERROR;

	snprintf(errbuf, errlen, "Redis refused %s: %s", what,
			 error_reply ? reply->str : "unexpected reply");
	if (conn == NULL)
	{
		if (error_reply)
			TwoCacheRedisBackendRefused(errbuf);
		else
			TwoCacheRedisBackendFailed(errbuf);
	}
	else if (!error_reply)
		TwoCacheCount(TC_REDIS_ERRORS, 1);
}

/*
 * PUBLISH the message of item: in a cluster, on the master of its key (or
 * tag set), after the change there (redis_cluster.c).
 */
static void
add_publish(TcRedisCommand *cmd, const char *channel, const InvalItem *item)
{
	TwoCacheRedisCommand(cmd, "PUBLISH");
	TwoCacheRedisArg(cmd, channel, strlen(channel));
	TwoCacheRedisArg(cmd, item->msg, item->msglen);
	cmd->route_key = item->rkey;
	cmd->route_len = item->rkeylen;
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
/*
 * Delete the nm members in scan->element[1..nm] (a round of send_tag), each
 * with its stripe's fill fence (del_many_script): on one Redis all in one
 * script, in a cluster one script per member on its node, INVAL_BATCH
 * scripts to a round trip.  Counts them in item->deleted.
 * False with errbuf set if Redis failed or refused one.
 */
static bool
delete_members(TcRedisConn *conn, const TcRedisReply *scan, int nm, InvalItem *item,
			   char *errbuf, size_t errlen)
{
	TcRedisCommand cmds[INVAL_BATCH];
	TcRedisReply *replies[INVAL_BATCH];
	bool		single = !TwoCacheRedisClusterMode();
	int			per_cmd = single ? Max(nm, 1) : 1;
	int			done = 0;

	while (done < nm)
	{
		int			nb = 0;
		int			j;
		bool		ok = true;

		/* up to INVAL_BATCH commands of per_cmd members each */
		while (done < nm && nb < INVAL_BATCH)
		{
			int			k = Min(per_cmd, nm - done);
			char	   *nkeys = psprintf("%d", 2 * k + (single ? 1 : 0));

			TwoCacheRedisCommand(&cmds[nb], "EVAL");
			if (single)
			{
				/* the set too: out of it, deleted and fenced at once */
				TwoCacheRedisArg(&cmds[nb], del_srem_script, strlen(del_srem_script));
				TwoCacheRedisArg(&cmds[nb], nkeys, strlen(nkeys));
				TwoCacheRedisArg(&cmds[nb], item->rkey, item->rkeylen);
			}
			else
			{
				TwoCacheRedisArg(&cmds[nb], del_many_script, strlen(del_many_script));
				TwoCacheRedisArg(&cmds[nb], nkeys, strlen(nkeys));
			}
			for (j = 0; j < k; j++)
			{
				const TcRedisReply *m = scan->element[1 + done + j];
				size_t		flen;
				char	   *fence;

				if (m->type != TC_REPLY_STRING)
				{
					snprintf(errbuf, errlen, "Redis refused the tag invalidation: unexpected reply");
					return false;
				}
				fence = L2DeleteFenceName(m->str, m->len, &flen);
				TwoCacheRedisArg(&cmds[nb], m->str, m->len);
				TwoCacheRedisArg(&cmds[nb], fence, flen);
			}
			done += k;
			nb++;
		}
		memset(replies, 0, sizeof(TcRedisReply *) * nb);
		if (!exec(conn, nb, cmds, replies, errbuf, errlen))
			return false;
		for (j = 0; j < nb; j++)
		{
			if (replies[j]->type != TC_REPLY_INTEGER)
			{
				if (ok)
					refused(conn, replies[j], "DEL of a tag's members", errbuf, errlen);
				ok = false;
			}
			else
				item->deleted += replies[j]->integer;
		}
		TwoCacheRedisFreeReplies(nb, replies);
		if (!ok)
			return false;
	}
	return true;
}

static bool
send_tag(TcRedisConn *conn, const char *channel, InvalItem *item,
		 char *errbuf, size_t errlen)
{
	char		cursor[32] = "0";
	int			rounds = 0;
	TcRedisCommand cmd;
	TcRedisReply *reply;
	bool		single = !TwoCacheRedisClusterMode();

	/* first the fence: a fill with this tag that began before is refused */
	TwoCacheRedisCommand(&cmd, "EVAL");
	TwoCacheRedisArg(&cmd, tag_fence_script, strlen(tag_fence_script));
	TwoCacheRedisArg(&cmd, "1", 1);
	TwoCacheRedisArg(&cmd, item->fence, item->fencelen);
	TwoCacheRedisArg(&cmd, L2_TAG_FENCE_TTL, strlen(L2_TAG_FENCE_TTL));
	reply = NULL;
	if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type != TC_REPLY_INTEGER)
	{
		refused(conn, reply, "the tag's fill fence", errbuf, errlen);
		TwoCacheRedisFreeReplies(1, &reply);
		return false;
	}
	TwoCacheRedisFreeReplies(1, &reply);

	do
	{
		TcRedisReply *next;
		int			nm;
		bool		ok;

		if (rounds++ >= TAG_MAX_ROUNDS)
			break;
		CHECK_FOR_INTERRUPTS();
		TwoCacheRedisCommand(&cmd, "EVAL");
		if (single)
			TwoCacheRedisArg(&cmd, tag_peek_script, strlen(tag_peek_script));
		else
			TwoCacheRedisArg(&cmd, tag_scan_script, strlen(tag_scan_script));
		TwoCacheRedisArg(&cmd, "1", 1);
		TwoCacheRedisArg(&cmd, item->rkey, item->rkeylen);
		TwoCacheRedisArg(&cmd, cursor, strlen(cursor));
		TwoCacheRedisArg(&cmd, TAG_ROUND_COUNT, strlen(TAG_ROUND_COUNT));
		TwoCacheRedisArg(&cmd, item->prefix, item->prefixlen);
		reply = NULL;
		if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
			return false;
		if (reply->type != TC_REPLY_ARRAY || reply->elements < 1 ||
			(next = reply->element[0])->type != TC_REPLY_STRING ||
			next->len == 0 || next->len >= sizeof(cursor))
		{
			refused(conn, reply, "the tag invalidation", errbuf, errlen);
			TwoCacheRedisFreeReplies(1, &reply);
			return false;
		}
		memcpy(cursor, next->str, next->len);
		cursor[next->len] = '\0';

		/*
		 * In a cluster the members are out of the set now: if deleting them
		 * fails, the next invalidation of the tag cannot find them, so
		 * nothing older than now may be trusted in Redis: the generation is
		 * bumped (the queue's overflow), whatever ends this, an ERROR
		 * included.  On one Redis they are still in the set until the one
		 * script that deletes them takes them out: a failure leaves them for
		 * the retry, and bumps nothing.
		 */
		nm = (int) reply->elements - 1;
		ok = true;
		PG_TRY();
		{
			ok = delete_members(conn, reply, nm, item, errbuf, errlen);
		}
		PG_CATCH();
		{
			if (nm > 0 && !single)
				InvalQueueOverflow();
			TwoCacheRedisFreeReplies(1, &reply);
			PG_RE_THROW();
		}
		PG_END_TRY();
		TwoCacheRedisFreeReplies(1, &reply);
		if (!ok)
		{
			if (!single)
				InvalQueueOverflow();
			return false;
		}
	} while (strcmp(cursor, "0") != 0);

	add_publish(&cmd, channel, item);
	reply = NULL;
	if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type != TC_REPLY_INTEGER)
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
InvalSend(TcRedisConn *conn, const char *channel, InvalItem **items, int n,
		  char *errbuf, size_t errlen)
{
	TcRedisCommand cmds[2 * INVAL_BATCH];
	TcRedisReply *replies[2 * INVAL_BATCH];
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
			TwoCacheRedisCommand(&cmds[2 * nb], "EVAL");
			TwoCacheRedisArg(&cmds[2 * nb], del_many_script, strlen(del_many_script));
			TwoCacheRedisArg(&cmds[2 * nb], "2", 1);
			TwoCacheRedisArg(&cmds[2 * nb], items[i]->rkey, items[i]->rkeylen);
			TwoCacheRedisArg(&cmds[2 * nb], items[i]->fence, items[i]->fencelen);
			add_publish(&cmds[2 * nb + 1], channel, items[i]);
			nb++;
			i++;
		}
		memset(replies, 0, sizeof(TcRedisReply *) * 2 * nb);
		if (!exec(conn, 2 * nb, cmds, replies, errbuf, errlen))
			return false;
		for (j = 0; j < nb && ok; j++)
		{
			TcRedisReply *del = replies[2 * j];
			TcRedisReply *pub = replies[2 * j + 1];

			if (del->type != TC_REPLY_INTEGER)
			{
				refused(conn, del, "DEL", errbuf, errlen);
				ok = false;
			}
			else if (pub->type != TC_REPLY_INTEGER)
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
 * The queue of invalidations Redis has not taken, and the generation
 * ----------------------------------------------------------------
 */

Size
InvalQueueShmemSize(void)
{
	return MAXALIGN(sizeof(InvalQueue));
}

/* Create or attach to the queue (shmem startup, under AddinShmemInitLock). */
void
InvalQueueShmemInit(void)
{
	bool		found;
	int			i;

	queue = ShmemInitStruct("twocache invalidation queue", sizeof(InvalQueue),
							&found);
	if (found)
		return;
	queue->lock = &(GetNamedLWLockTranche("twocache invalidation queue"))->lock;
	queue->n = 0;
	queue->overflowed = false;
	pg_atomic_init_u32(&queue->withheld, 0);
	pg_atomic_init_u64(&queue->generation, 0);
	for (i = 0; i < INVAL_QUEUE_SLOTS; i++)
	{
		pg_atomic_init_u32(&queue->keys[i], 0);
		pg_atomic_init_u32(&queue->tags[i], 0);
	}
}

static uint32
tag_slot(Oid dbid, Oid roleid, const char *tag, int taglen)
{
	ArcKey		t;

	TwoCacheKeyInit(&t, dbid, roleid, tag, taglen);
	return t.hash % INVAL_QUEUE_SLOTS;
}

static pg_atomic_uint32 *
queued_counter(const QueuedInval *q)
{
	return q->is_tag ? &queue->tags[q->slot] : &queue->keys[q->slot];
}

/*
 * Queue an invalidation of key (a tag if is_tag) that Redis did not take,
 * for database dbname and role rolename ("" or NULL: none), holding from
 * lsn.  One already queued is not queued twice; when the queue is full,
 * all of L2 is withheld until the generation is bumped.  Raises no error
 * (the commit uses it).
 */
static void
enqueue(const ArcKey *key, bool is_tag, const char *dbname,
		const char *rolename, XLogRecPtr lsn)
{
	QueuedInval *q;
	int			i;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < queue->n; i++)
	{
		q = &queue->entries[i];
		if (q->is_tag == is_tag && q->dbid == key->dbid &&
			q->roleid == key->roleid && q->keylen == key->len &&
			memcmp(q->key, key->data, key->len) == 0)
		{
			/* queued again: what the worker is sending may predate it */
			q->lsn = Max(q->lsn, lsn);
			q->seq++;
			LWLockRelease(queue->lock);
			return;
		}
	}
	if (queue->n >= INVAL_QUEUE_SIZE)
	{
		if (!queue->overflowed)
		{
			queue->overflowed = true;
			pg_atomic_fetch_add_u32(&queue->withheld, 1);
		}
		LWLockRelease(queue->lock);
		return;
	}
	q = &queue->entries[queue->n++];
	q->is_tag = is_tag;
	q->dbid = key->dbid;
	q->roleid = key->roleid;
	q->slot = is_tag ? tag_slot(key->dbid, key->roleid, key->data, key->len) :
		key->hash % INVAL_QUEUE_SLOTS;
	q->lsn = lsn;
	q->seq = 0;
	strlcpy(q->dbname, dbname != NULL ? dbname : "", sizeof(q->dbname));
	strlcpy(q->rolename, rolename != NULL ? rolename : "", sizeof(q->rolename));
	q->keylen = key->len;
	memcpy(q->key, key->data, key->len);
	pg_atomic_fetch_add_u32(queued_counter(q), 1);
	pg_atomic_fetch_add_u32(&queue->withheld, 1);
	LWLockRelease(queue->lock);
}

/*
 * Nothing in Redis older than now may be trusted (a tag invalidation lost
 * members it had taken out of their set): bump the generation, as when the
 * queue overflows, as soon as the worker reaches Redis; meanwhile all of
 * L2 is withheld.  Raises no error.
 */
void
InvalQueueOverflow(void)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (!queue->overflowed)
	{
		queue->overflowed = true;
		pg_atomic_fetch_add_u32(&queue->withheld, 1);
	}
	LWLockRelease(queue->lock);
}

/* The same for the backend: its database and the key's role, holding now. */
static void
enqueue_here(const ArcKey *key, bool is_tag)
{
	const char *dbname;
	const char *rolename;

	L2ScopeNames(key, &dbname, &rolename);
	enqueue(key, is_tag, dbname, rolename, TwoCacheInvalidationLsn());
}

/*
 * Must this server treat key's copy in Redis (carrying tags, written in
 * generation) as a miss?  Yes while an invalidation of the key or of one of
 * its tags waits in the queue, while the queue has overflowed, or when the
 * copy is of an older generation than this server knows of.  Pass
 * PG_UINT64_MAX as generation to ask only about the queue (before writing
 * the key to Redis).
 */
bool
InvalL2Withheld(const ArcKey *key, const ArcTags *tags, uint64 generation)
{
	const unsigned char *p;
	const unsigned char *end;

	if (queue == NULL)
		return false;
	if (generation < pg_atomic_read_u64(&queue->generation))
		return true;
	if (pg_atomic_read_u32(&queue->withheld) == 0)
		return false;
	if (queue->overflowed ||
		pg_atomic_read_u32(&queue->keys[key->hash % INVAL_QUEUE_SLOTS]) > 0)
		return true;
	if (tags == NULL || tags->len == 0)
		return false;
	p = (const unsigned char *) tags->data;
	end = p + tags->len;
	while (end - p >= 2)
	{
		int			n = (p[0] << 8) | p[1];

		p += 2;
		if (n > end - p)
			break;
		if (pg_atomic_read_u32(&queue->tags[tag_slot(key->dbid, InvalidOid, (const char *) p, n)]) > 0 ||
			(OidIsValid(key->roleid) &&
			 pg_atomic_read_u32(&queue->tags[tag_slot(key->dbid, key->roleid, (const char *) p, n)]) > 0))
			return true;
		p += n;
	}
	return false;
}

/* The newest generation this server knows of (0: never bumped). */
uint64
InvalGeneration(void)
{
	return queue != NULL ? pg_atomic_read_u64(&queue->generation) : 0;
}

/*
 * This server learned of generation (the worker: from Redis at connect, or
 * from a 'g' message).  If it is newer, values written before it are misses
 * from now on, and L1, which may hold copies of keys whose invalidations
 * this server never received, is flushed.
 */
void
InvalGenerationSeen(uint64 generation)
{
	uint64		cur;

	if (queue == NULL)
		return;
	cur = pg_atomic_read_u64(&queue->generation);
	while (generation > cur)
	{
		if (pg_atomic_compare_exchange_u64(&queue->generation, &cur, generation))
		{
			uint64		flushed = TwoCacheFlushLocal();

			ereport(LOG,
					(errmsg("twocache: cache generation %llu in Redis; flushed %llu local cache entries",
							(unsigned long long) generation,
							(unsigned long long) flushed)));
			break;
		}
	}
}

/* The Redis key of the generation. */
static char *
generation_key(size_t *len)
{
	char	   *k = psprintf("%sgeneration", twocache_key_prefix);

	*len = strlen(k);
	return k;
}

/*
 * Tell every server that the generation is now generation ('g' message, its
 * key field the generation), and take it as seen here.
 */
static bool
publish_generation(TcRedisConn *conn, const char *channel, uint64 generation,
				   char *errbuf, size_t errlen)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	char		digits[32];
	ArcKey		gkey;
	InvalItem	item;

	snprintf(digits, sizeof(digits), UINT64_FORMAT, generation);
	gkey.hash = 0;
	gkey.dbid = InvalidOid;
	gkey.roleid = InvalidOid;
	gkey.data = digits;
	gkey.len = strlen(digits);
	memset(&item, 0, sizeof(item));
	item.msg = L2Message(&gkey, "", NULL, TC_MSG_GENERATION,
						 TwoCacheInvalidationLsn(), &item.msglen);
	add_publish(&cmd, channel, &item);
	if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type != TC_REPLY_INTEGER)
	{
		refused(conn, reply, "the cache generation message", errbuf, errlen);
		TwoCacheRedisFreeReplies(1, &reply);
		return false;
	}
	TwoCacheRedisFreeReplies(1, &reply);
	InvalGenerationSeen(generation);
	return true;
}

/* INCR the generation in Redis: the new one in *generation. */
static bool
incr_generation(TcRedisConn *conn, uint64 *generation, char *errbuf, size_t errlen)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	size_t		klen;
	char	   *k = generation_key(&klen);

	TwoCacheRedisCommand(&cmd, "INCR");
	TwoCacheRedisArg(&cmd, k, klen);
	if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type != TC_REPLY_INTEGER || reply->integer <= 0)
	{
		refused(conn, reply, "INCR of the cache generation", errbuf, errlen);
		TwoCacheRedisFreeReplies(1, &reply);
		return false;
	}
	*generation = (uint64) reply->integer;
	TwoCacheRedisFreeReplies(1, &reply);
	return true;
}

/*
 * Bump the generation in Redis (INCR) and tell every server: nothing written
 * before is trusted any more (the worker, after a Redis Cluster failover).
 * Returns false with errbuf set if Redis failed.
 */
bool
InvalGenerationBump(TcRedisConn *conn, const char *channel, char *errbuf, size_t errlen)
{
	uint64		generation;

	if (!incr_generation(conn, &generation, errbuf, errlen))
		return false;
	ereport(LOG,
			(errmsg("twocache: a Redis Cluster replica took over from its master; bumped the cache generation to %llu",
					(unsigned long long) generation)));
	return publish_generation(conn, channel, generation, errbuf, errlen);
}

/*
 * After an overflow: bump the generation in Redis (INCR) and tell every
 * server ('g' message, its key field the new generation); then drop the
 * queue entries it supersedes (those queued before the bump).
 */
static bool
bump_generation(TcRedisConn *conn, const char *channel, char *errbuf,
				size_t errlen)
{
	uint64		generation;
	int			nseen;
	int			i;

	LWLockAcquire(queue->lock, LW_SHARED);
	nseen = queue->n;
	LWLockRelease(queue->lock);

	if (!incr_generation(conn, &generation, errbuf, errlen))
		return false;
	if (!publish_generation(conn, channel, generation, errbuf, errlen))
		return false;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (i = 0; i < nseen; i++)
		pg_atomic_fetch_sub_u32(queued_counter(&queue->entries[i]), 1);
	memmove(&queue->entries[0], &queue->entries[nseen],
			sizeof(QueuedInval) * (queue->n - nseen));
	queue->n -= nseen;
	queue->overflowed = false;
	pg_atomic_write_u32(&queue->withheld, queue->n);
	LWLockRelease(queue->lock);
	ereport(LOG,
			(errmsg("twocache: the queue of invalidations Redis had not taken overflowed; bumped the cache generation to %llu",
					(unsigned long long) generation)));
	return true;
}

/*
 * Lua: the generation (KEYS[1]) as seen by a worker connected to a master
 * whose replication ID is ARGV[1]; the ID last seen is in KEYS[2].  A new
 * ID means a failover (or a master that lost its data): the generation is
 * bumped then, once however many servers notice, and {generation, 1}
 * returned; else {generation, 0}.
 */
static const char *dataset_script =
"local seen = redis.call('GET', KEYS[2])\n"
"local gen = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
"if seen == ARGV[1] then return {gen, 0} end\n"
"redis.call('SET', KEYS[2], ARGV[1])\n"
"return {redis.call('INCR', KEYS[1]), 1}\n";

/* master_replid from an INFO replication reply, or false. */
static bool
parse_replid(const TcRedisReply *reply, char *buf, size_t len)
{
	const char *p;
	size_t		n;

	if (reply->type != TC_REPLY_STRING && reply->type != TC_REPLY_STATUS)
		return false;
	p = strstr(reply->str, "master_replid:");
	if (p == NULL)
		return false;
	p += strlen("master_replid:");
	n = strcspn(p, "\r\n");
	if (n == 0 || n >= len)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

/*
 * Read the generation from Redis on conn (the worker, when it connects)
 * and take it as seen.  With follow_dataset (Sentinel), first compare the
 * master's replication ID with the one last seen: a failover may have
 * dropped the last writes the old master acknowledged (deletes among them),
 * so a new ID bumps the generation and nothing written before is trusted by
 * any server (the 'g' message tells them).  Returns false if Redis failed.
 */
bool
InvalGenerationRefresh(TcRedisConn *conn, bool follow_dataset, const char *channel,
					   char *errbuf, size_t errlen)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	size_t		klen;
	char	   *k = generation_key(&klen);
	uint64		generation = 0;

	if (follow_dataset)
	{
		char		replid[64];
		char	   *seen = psprintf("%sgeneration:replid", twocache_key_prefix);
		bool		bumped;

		TwoCacheRedisCommand(&cmd, "INFO");
		TwoCacheRedisArg(&cmd, "replication", 11);
		if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
			return false;
		if (!parse_replid(reply, replid, sizeof(replid)))
		{
			refused(conn, reply, "INFO replication", errbuf, errlen);
			TwoCacheRedisFreeReplies(1, &reply);
			return false;
		}
		TwoCacheRedisFreeReplies(1, &reply);

		TwoCacheRedisCommand(&cmd, "EVAL");
		TwoCacheRedisArg(&cmd, dataset_script, strlen(dataset_script));
		TwoCacheRedisArg(&cmd, "2", 1);
		TwoCacheRedisArg(&cmd, k, klen);
		TwoCacheRedisArg(&cmd, seen, strlen(seen));
		TwoCacheRedisArg(&cmd, replid, strlen(replid));
		reply = NULL;
		if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
			return false;
		if (reply->type != TC_REPLY_ARRAY || reply->elements != 2 ||
			reply->element[0]->type != TC_REPLY_INTEGER ||
			reply->element[1]->type != TC_REPLY_INTEGER)
		{
			refused(conn, reply, "the cache generation check", errbuf, errlen);
			TwoCacheRedisFreeReplies(1, &reply);
			return false;
		}
		generation = (uint64) reply->element[0]->integer;
		bumped = reply->element[1]->integer == 1;
		TwoCacheRedisFreeReplies(1, &reply);
		if (!bumped)
		{
			InvalGenerationSeen(generation);
			return true;
		}
		ereport(LOG,
				(errmsg("twocache: the Redis master has a new replication ID; bumped the cache generation to %llu",
						(unsigned long long) generation)));
		return publish_generation(conn, channel, generation, errbuf, errlen);
	}

	TwoCacheRedisCommand(&cmd, "GET");
	TwoCacheRedisArg(&cmd, k, klen);
	if (!exec(conn, 1, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type == TC_REPLY_STRING)
		generation = strtou64(reply->str, NULL, 10);
	else if (reply->type != TC_REPLY_NIL)
	{
		refused(conn, reply, "GET of the cache generation", errbuf, errlen);
		TwoCacheRedisFreeReplies(1, &reply);
		return false;
	}
	TwoCacheRedisFreeReplies(1, &reply);
	InvalGenerationSeen(generation);
	return true;
}

/*
 * Send the queued invalidations on conn (the worker's command connection),
 * oldest first, INVAL_BATCH at a time; after an overflow, bump the
 * generation instead.  Only the worker removes entries and backends only
 * append, so the entries sent stay where they were meanwhile.  Returns how
 * many were sent, or -1 with errbuf set if Redis failed (the rest stay).
 */
int
InvalQueueReplay(TcRedisConn *conn, const char *channel, char *errbuf,
				 size_t errlen)
{
	int			total = 0;

	if (queue == NULL || pg_atomic_read_u32(&queue->withheld) == 0)
		return 0;
	if (queue->overflowed)
		return bump_generation(conn, channel, errbuf, errlen) ? 1 : -1;
	for (int round = 0; round <= INVAL_QUEUE_SIZE / INVAL_BATCH; round++)
	{
		QueuedInval *copy = palloc(sizeof(QueuedInval) * INVAL_BATCH);
		InvalItem	items[INVAL_BATCH];
		InvalItem  *ptrs[INVAL_BATCH];
		int			n;
		int			nsent = 0;
		int			i;
		bool		ok;

		LWLockAcquire(queue->lock, LW_SHARED);
		n = Min(queue->n, INVAL_BATCH);
		memcpy(copy, queue->entries, sizeof(QueuedInval) * n);
		LWLockRelease(queue->lock);
		if (n == 0)
			break;
		for (i = 0; i < n; i++)
		{
			ArcKey		k;

			k.hash = 0;
			k.dbid = copy[i].dbid;
			k.roleid = copy[i].roleid;
			k.data = copy[i].key;
			k.len = copy[i].keylen;
			InvalItemBuild(&items[i], &k, copy[i].is_tag, copy[i].dbname,
						   copy[i].rolename[0] ? copy[i].rolename : NULL,
						   copy[i].lsn);
			ptrs[i] = &items[i];
		}
		ok = InvalSend(conn, channel, ptrs, n, errbuf, errlen);
		while (nsent < n && items[nsent].sent)
			nsent++;

		/* drop what was sent, unless it was queued again meanwhile */
		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		{
			int			kept = 0;

			for (i = 0; i < nsent; i++)
			{
				if (queue->entries[i].seq != copy[i].seq)
				{
					queue->entries[kept++] = queue->entries[i];
					continue;
				}
				pg_atomic_fetch_sub_u32(queued_counter(&queue->entries[i]), 1);
				total++;
			}
			memmove(&queue->entries[kept], &queue->entries[nsent],
					sizeof(QueuedInval) * (queue->n - nsent));
			pg_atomic_fetch_sub_u32(&queue->withheld, nsent - kept);
			queue->n -= nsent - kept;
		}
		LWLockRelease(queue->lock);
		pfree(copy);
		if (!ok)
			return -1;
		if (queue->overflowed)
			return bump_generation(conn, channel, errbuf, errlen) ? total + 1 : -1;
	}
	if (total > 0)
		ereport(LOG,
				(errmsg("twocache: sent %d invalidations that Redis had not taken",
						total)));
	return total;
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
		{
			/* Redis will get them from the queue */
			for (i = 0; i < npending; i++)
				if (!pending[i]->item.sent)
					enqueue(&pending[i]->key, pending[i]->item.is_tag,
							pending[i]->dbname, pending[i]->rolename, lsn);
			ereport(WARNING,
					(errmsg("could not apply %d of %d cache invalidations again in Redis after commit",
							npending - nsent, npending),
					 errdetail("%s", err),
					 errhint("They were applied again in the local cache, and will be in Redis when it answers.")));
		}

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
 * queued it aborts.  Builds its Redis side now, while catalog access works,
 * unless the caller built it (built, not NULL: it was sent just now).
 */
static void
remember(const ArcKey *key, bool is_tag, bool queued, const InvalItem *built)
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
	if (built != NULL)
	{
		/* what the caller sent now; the commit sends it afresh */
		item = *built;
		item.sent = false;
		item.deleted = 0;
	}
	else
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
	p->item.fence = copy_bytes(item.fence, item.fencelen);
	{
		const char *dbname;
		const char *rolename;

		L2ScopeNames(key, &dbname, &rolename);
		strlcpy(p->dbname, dbname, sizeof(p->dbname));
		strlcpy(p->rolename, rolename != NULL ? rolename : "", sizeof(p->rolename));
	}
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
	InvalItem	item;
	bool		built = false;

	if (local_only)
		return existed;
	if (TwoCacheRedisEnabled())
	{
		InvalItem  *items[1] = {&item};
		char		err[512];

		item_build_here(&item, key, false);
		built = true;
		if (!InvalSend(NULL, twocache_channel, items, 1, err, sizeof(err)))
		{
			enqueue_here(key, false);
			ereport(WARNING,
					(errmsg("could not delete cache key from Redis; it was deleted from the local cache and will be deleted in Redis when it answers"),
					 errdetail("%s", err)));
		}
		l2_existed = item.deleted > 0;
		(void) TwoCacheLocalDelete(key);
	}
	if (again_after_commit())
		remember(key, false, false, built ? &item : NULL);
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
	InvalItem	item;
	bool		built = false;

	tag_key(&t, dbid, roleid, tag, taglen);
	dropped = TwoCacheInvalidateLocal(&t, true);
	if (TwoCacheRedisEnabled())
	{
		InvalItem  *items[1] = {&item};
		char		err[512];

		item_build_here(&item, &t, true);
		built = true;
		if (!InvalSend(NULL, twocache_channel, items, 1, err, sizeof(err)))
		{
			enqueue_here(&t, true);
			ereport(WARNING,
					(errmsg("could not invalidate cache tag in Redis; it was invalidated in the local cache and will be in Redis when it answers"),
					 errdetail("%s", err)));
		}
		dropped += TwoCacheInvalidateLocal(&t, true);
	}
	if (again_after_commit())
		remember(&t, true, false, built ? &item : NULL);
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
	remember(&t, true, true, NULL);
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
	if (InvalSend(NULL, twocache_channel, items, 1, err, sizeof(err)))
		return true;
	enqueue_here(key, false);
	return false;
}
