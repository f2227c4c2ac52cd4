/*-------------------------------------------------------------------------
 *
 * l2.c
 *	  The Redis layer (L2): key layout, value encoding, read-through,
 *	  write-through, invalidation messages and the post-commit re-delete.
 *
 * Redis keys:
 *	  database scope   <key_prefix>db:<database name>:<key>
 *	  cluster scope    <key_prefix>cluster:<key>
 * where '%' and ':' in the database name are written %25 and %3A, so the
 * layout is unambiguous whatever the names and keys.  Values carry a
 * one-byte type tag: 'v' followed by the value, or 'n' alone for a
 * not-found placeholder.
 *
 * Every function here returns false when Redis is unavailable or failed
 * (redis.c then skips Redis for twocache.redis_retry_interval); none raises
 * an ERROR because of Redis.  Callers treat a failed read as a miss and
 * apply a failed write locally with a WARNING.  No LWLock is held here.
 *
 * A twocache_del inside a transaction block is remembered (with its Redis
 * key and message already built, since catalog access is over by then) and
 * applied again, in L1 and L2 and by message on every server, when the
 * transaction commits: a reader that refilled the key from a snapshot taken
 * before the commit is corrected.  An abort forgets the list.
 *
 * Every message carries the WAL position at which it holds on the sender
 * (TwoCacheInvalidationLsn) and the sender's system identifier, so that a
 * hot standby of the sender can tell whether it has replayed that far yet
 * (src/worker.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "l2.h"
#include "message.h"
#include "redis.h"
#include "twocache.h"

/* Conditional set: SET and PUBLISH only if the only_if condition holds. */
static const char *const conditional_set_script =
"local cur = redis.call('GET', KEYS[1])\n"
"local present = cur and string.sub(cur, 1, 1) == 'v'\n"
"if (ARGV[3] == 'absent' and present) or (ARGV[3] == 'present' and not present) then\n"
"  return 0\n"
"end\n"
"if ARGV[2] == '0' then\n"
"  redis.call('SET', KEYS[1], ARGV[1])\n"
"else\n"
"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
"end\n"
"redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
"return 1\n";

/* A key deleted in the current transaction block, to delete again. */
typedef struct PendingDelete
{
	ArcKey		key;			/* data points into this allocation */
	char	   *rkey;
	size_t		rkeylen;
	char	   *msg;
	int			msglen;
	struct PendingDelete *next;
} PendingDelete;

static PendingDelete *pending_deletes = NULL;
static bool xact_callback_registered = false;
static char *my_dbname = NULL;

/* ----------------------------------------------------------------
 * Keys, values, messages
 * ----------------------------------------------------------------
 */

static const char *
current_dbname(void)
{
	if (my_dbname == NULL)
	{
		char	   *name = get_database_name(MyDatabaseId);

		my_dbname = MemoryContextStrdup(TopMemoryContext, name ? name : "");
	}
	return my_dbname;
}

/*
 * The Redis key of key in its scope, for database dbname (palloc'd).  The
 * worker, connected to no database, passes the name from a message.
 */
char *
L2KeyName(const ArcKey *key, const char *dbname, size_t *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, twocache_key_prefix);
	if (key->dbid == InvalidOid)
		appendStringInfoString(&buf, "cluster:");
	else
	{
		const char *p;

		appendStringInfoString(&buf, "db:");
		for (p = dbname; *p; p++)
		{
			if (*p == '%')
				appendStringInfoString(&buf, "%25");
			else if (*p == ':')
				appendStringInfoString(&buf, "%3A");
			else
				appendStringInfoChar(&buf, *p);
		}
		appendStringInfoChar(&buf, ':');
	}
	appendBinaryStringInfo(&buf, key->data, key->len);
	*len = buf.len;
	return buf.data;
}

static char *
l2_key(const ArcKey *key, size_t *len)
{
	return L2KeyName(key, key->dbid == InvalidOid ? "" : current_dbname(), len);
}

/*
 * The WAL position at which an invalidation sent now holds.  On a primary:
 * the end of the WAL inserted so far, which covers every commit visible now,
 * flushed so that it reaches standbys without waiting for more WAL.  On a
 * standby: what it has replayed.
 */
XLogRecPtr
TwoCacheInvalidationLsn(void)
{
	XLogRecPtr	lsn;

	if (RecoveryInProgress())
		return GetXLogReplayRecPtr(NULL);

	/*
	 * GetXLogInsertRecPtr() gives where the next record's data goes: just
	 * past the page header when the last record ended at a page boundary.
	 * Records end (and a standby's replay position stops) at the boundary.
	 */
	lsn = GetXLogInsertRecPtr();
	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	XLogFlush(lsn);
	return lsn;
}

/*
 * The invalidation message for key in database dbname, holding from WAL
 * position lsn, from this server (palloc'd).
 */
char *
L2Message(const ArcKey *key, const char *dbname, TcMessageOp op,
		  XLogRecPtr lsn, int *len)
{
	TcMessage	msg;
	char	   *buf = palloc(TC_MESSAGE_MAX);

	memset(&msg, 0, offsetof(TcMessage, key));
	msg.op = op;
	msg.cluster_scope = (key->dbid == InvalidOid);
	msg.lsn = lsn;
	msg.sysid = GetSystemIdentifier();
	strlcpy(msg.instance_id, twocache_shared->instance_id, sizeof(msg.instance_id));
	if (!msg.cluster_scope)
		strlcpy(msg.dbname, dbname, sizeof(msg.dbname));
	msg.keylen = key->len;
	memcpy(msg.key, key->data, key->len);
	*len = TwoCacheMessageEncode(&msg, buf, TC_MESSAGE_MAX);
	Assert(*len > 0);
	return buf;
}

/* The invalidation message for key, sent now (palloc'd). */
static char *
l2_message(const ArcKey *key, TcMessageOp op, int *len)
{
	return L2Message(key, key->dbid == InvalidOid ? "" : current_dbname(), op,
					 TwoCacheInvalidationLsn(), len);
}

/* 'v' + value, or 'n' for a placeholder (palloc'd). */
static char *
l2_value(const char *value, uint32 len, bool negative, size_t *outlen)
{
	char	   *buf = palloc(len + 1);

	if (negative)
	{
		buf[0] = 'n';
		*outlen = 1;
	}
	else
	{
		buf[0] = 'v';
		if (len > 0)
			memcpy(buf + 1, value, len);
		*outlen = len + 1;
	}
	return buf;
}

static void
cmd_start(TcRedisCommand *cmd, const char *name)
{
	cmd->argc = 0;
	TwoCacheRedisArg(cmd, name, strlen(name));
}

static void
cmd_add_publish(TcRedisCommand *cmd, const char *msg, int msglen)
{
	cmd_start(cmd, "PUBLISH");
	TwoCacheRedisArg(cmd, twocache_channel, strlen(twocache_channel));
	TwoCacheRedisArg(cmd, msg, msglen);
}

static bool
reply_is_error(const redisReply *r)
{
	return r == NULL || r->type == REDIS_REPLY_ERROR;
}

/* ----------------------------------------------------------------
 * Reads
 * ----------------------------------------------------------------
 */

/*
 * Read n keys from L2 in one round trip (GET and PTTL of each).  Returns
 * false if Redis is unavailable or failed: treat every key as a miss.
 */
bool
L2Get(int n, const ArcKey *keys, L2Entry *out)
{
	TcRedisCommand *cmds;
	redisReply **replies;
	char		err[512];
	int			i;

	if (n == 0)
		return true;
	cmds = palloc(sizeof(TcRedisCommand) * 2 * n);
	replies = palloc0(sizeof(redisReply *) * 2 * n);
	for (i = 0; i < n; i++)
	{
		size_t		rklen;
		char	   *rkey = l2_key(&keys[i], &rklen);

		cmd_start(&cmds[2 * i], "GET");
		TwoCacheRedisArg(&cmds[2 * i], rkey, rklen);
		cmd_start(&cmds[2 * i + 1], "PTTL");
		TwoCacheRedisArg(&cmds[2 * i + 1], rkey, rklen);
	}
	if (!TwoCacheRedisBackendExec(2 * n, cmds, replies, err, sizeof(err)))
		return false;

	for (i = 0; i < n; i++)
	{
		redisReply *get = replies[2 * i];
		redisReply *pttl = replies[2 * i + 1];
		L2Entry    *e = &out[i];

		memset(e, 0, sizeof(L2Entry));
		if (get->type != REDIS_REPLY_STRING || get->len < 1 ||
			pttl->type != REDIS_REPLY_INTEGER || pttl->integer == -2)
			continue;			/* absent, or expired between the two */
		if (get->str[0] == 'n' && get->len == 1)
			e->negative = true;
		else if (get->str[0] == 'v')
		{
			e->len = get->len - 1;
			e->value = palloc(e->len + 1);
			memcpy(e->value, get->str + 1, e->len);
			e->value[e->len] = '\0';
		}
		else
			continue;			/* not ours: ignore */
		e->found = true;
		e->pttl_ms = pttl->integer;		/* -1: no expiry */
	}
	TwoCacheRedisFreeReplies(2 * n, replies);
	return true;
}

/*
 * Probe key in L2 without reading its value: whether it holds a real value,
 * and its PTTL.  Returns false if Redis is unavailable.
 */
bool
L2Probe(const ArcKey *key, bool *is_value, int64 *pttl_ms)
{
	TcRedisCommand cmds[2];
	redisReply *replies[2] = {NULL, NULL};
	char		err[512];
	size_t		rklen;
	char	   *rkey = l2_key(key, &rklen);

	cmd_start(&cmds[0], "GETRANGE");
	TwoCacheRedisArg(&cmds[0], rkey, rklen);
	TwoCacheRedisArg(&cmds[0], "0", 1);
	TwoCacheRedisArg(&cmds[0], "0", 1);
	cmd_start(&cmds[1], "PTTL");
	TwoCacheRedisArg(&cmds[1], rkey, rklen);
	if (!TwoCacheRedisBackendExec(2, cmds, replies, err, sizeof(err)))
		return false;

	*is_value = (replies[0]->type == REDIS_REPLY_STRING && replies[0]->len == 1 &&
				 replies[0]->str[0] == 'v' &&
				 replies[1]->type == REDIS_REPLY_INTEGER && replies[1]->integer != -2);
	*pttl_ms = replies[1]->type == REDIS_REPLY_INTEGER ? replies[1]->integer : -2;
	TwoCacheRedisFreeReplies(2, replies);
	return true;
}

/* ----------------------------------------------------------------
 * Writes
 * ----------------------------------------------------------------
 */

/*
 * Store a fetched value (or placeholder) in L2: a fill, not a change, so no
 * message.  Returns false if Redis is unavailable.
 */
bool
L2Fill(const ArcKey *key, const char *value, uint32 len, bool negative,
	   int64 ttl_ms)
{
	TcRedisCommand cmd;
	redisReply *reply = NULL;
	char		err[512];
	char		ttlbuf[32];
	size_t		rklen,
				vlen;
	char	   *rkey = l2_key(key, &rklen);
	char	   *v = l2_value(value, len, negative, &vlen);
	bool		ok;

	cmd_start(&cmd, "SET");
	TwoCacheRedisArg(&cmd, rkey, rklen);
	TwoCacheRedisArg(&cmd, v, vlen);
	if (ttl_ms > 0)
	{
		snprintf(ttlbuf, sizeof(ttlbuf), INT64_FORMAT, ttl_ms);
		TwoCacheRedisArg(&cmd, "PX", 2);
		TwoCacheRedisArg(&cmd, ttlbuf, strlen(ttlbuf));
	}
	if (!TwoCacheRedisBackendExec(1, &cmd, &reply, err, sizeof(err)))
		return false;
	ok = !reply_is_error(reply);
	TwoCacheRedisFreeReplies(1, &reply);
	return ok;
}

/*
 * Write key = value in L2 and publish the change, honouring only_if (atomic
 * in Redis).  *wrote says whether it wrote.  Returns false with errbuf set
 * if Redis is unavailable or refused.
 */
bool
L2Set(const ArcKey *key, const char *value, uint32 len, int64 ttl_ms,
	  TwoCacheOnlyIf only_if, bool *wrote, char *errbuf, size_t errlen)
{
	TcRedisCommand cmds[2];
	redisReply *replies[2] = {NULL, NULL};
	char		ttlbuf[32];
	size_t		rklen,
				vlen;
	char	   *rkey = l2_key(key, &rklen);
	char	   *v = l2_value(value, len, false, &vlen);
	int			msglen;
	char	   *msg = l2_message(key, TC_MSG_SET, &msglen);
	bool		ok;

	snprintf(ttlbuf, sizeof(ttlbuf), INT64_FORMAT, ttl_ms);
	if (only_if == TWOCACHE_ONLY_IF_ALWAYS)
	{
		cmd_start(&cmds[0], "SET");
		TwoCacheRedisArg(&cmds[0], rkey, rklen);
		TwoCacheRedisArg(&cmds[0], v, vlen);
		if (ttl_ms > 0)
		{
			TwoCacheRedisArg(&cmds[0], "PX", 2);
			TwoCacheRedisArg(&cmds[0], ttlbuf, strlen(ttlbuf));
		}
		cmd_add_publish(&cmds[1], msg, msglen);
		if (!TwoCacheRedisBackendExec(2, cmds, replies, errbuf, errlen))
			return false;
		ok = !reply_is_error(replies[0]);
		*wrote = ok;
		if (ok && !reply_is_error(replies[1]))
			TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
		if (!ok)
			snprintf(errbuf, errlen, "Redis refused SET: %s", replies[0]->str);
		TwoCacheRedisFreeReplies(2, replies);
		return ok;
	}
	else
	{
		const char *cond = only_if == TWOCACHE_ONLY_IF_ABSENT ? "absent" : "present";

		cmd_start(&cmds[0], "EVAL");
		TwoCacheRedisArg(&cmds[0], conditional_set_script, strlen(conditional_set_script));
		TwoCacheRedisArg(&cmds[0], "1", 1);
		TwoCacheRedisArg(&cmds[0], rkey, rklen);
		TwoCacheRedisArg(&cmds[0], v, vlen);
		TwoCacheRedisArg(&cmds[0], ttlbuf, strlen(ttlbuf));
		TwoCacheRedisArg(&cmds[0], cond, strlen(cond));
		TwoCacheRedisArg(&cmds[0], twocache_channel, strlen(twocache_channel));
		TwoCacheRedisArg(&cmds[0], msg, msglen);
		if (!TwoCacheRedisBackendExec(1, cmds, replies, errbuf, errlen))
			return false;
		ok = replies[0]->type == REDIS_REPLY_INTEGER;
		*wrote = ok && replies[0]->integer == 1;
		if (*wrote)
			TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
		if (!ok)
			snprintf(errbuf, errlen, "Redis refused the conditional set: %s",
					 replies[0]->type == REDIS_REPLY_ERROR ? replies[0]->str : "unexpected reply");
		TwoCacheRedisFreeReplies(1, replies);
		return ok;
	}
}

/*
 * Delete key from L2 and publish it.  *existed says whether Redis had it.
 * Returns false with errbuf set if Redis is unavailable.
 */
bool
L2Del(const ArcKey *key, bool *existed, char *errbuf, size_t errlen)
{
	TcRedisCommand cmds[2];
	redisReply *replies[2] = {NULL, NULL};
	size_t		rklen;
	char	   *rkey = l2_key(key, &rklen);
	int			msglen;
	char	   *msg = l2_message(key, TC_MSG_DEL, &msglen);

	cmd_start(&cmds[0], "DEL");
	TwoCacheRedisArg(&cmds[0], rkey, rklen);
	cmd_add_publish(&cmds[1], msg, msglen);
	if (!TwoCacheRedisBackendExec(2, cmds, replies, errbuf, errlen))
		return false;
	*existed = replies[0]->type == REDIS_REPLY_INTEGER && replies[0]->integer > 0;
	if (!reply_is_error(replies[1]))
		TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
	TwoCacheRedisFreeReplies(2, replies);
	return true;
}

/* ----------------------------------------------------------------
 * Post-commit re-delete
 * ----------------------------------------------------------------
 */

static void
free_pending(void)
{
	while (pending_deletes != NULL)
	{
		PendingDelete *next = pending_deletes->next;

		pfree(pending_deletes);
		pending_deletes = next;
	}
}

static void
apply_pending(void)
{
	PendingDelete *d;
	int			n = 0;
	int			i;
	TcRedisCommand *cmds;
	redisReply **replies;
	char		err[512];
	XLogRecPtr	lsn;

	for (d = pending_deletes; d != NULL; d = d->next)
	{
		(void) TwoCacheLocalDelete(&d->key);
		n++;
	}
	if (n == 0 || !TwoCacheRedisEnabled())
		return;

	/* the messages hold from the commit on, not from the first delete */
	lsn = TwoCacheInvalidationLsn();
	cmds = MemoryContextAlloc(TopMemoryContext, sizeof(TcRedisCommand) * 2 * n);
	replies = MemoryContextAllocZero(TopMemoryContext, sizeof(redisReply *) * 2 * n);
	for (d = pending_deletes, i = 0; d != NULL; d = d->next, i += 2)
	{
		TwoCacheMessageSetLsn(d->msg, d->msglen, lsn);
		cmd_start(&cmds[i], "DEL");
		TwoCacheRedisArg(&cmds[i], d->rkey, d->rkeylen);
		cmd_add_publish(&cmds[i + 1], d->msg, d->msglen);
	}

	/* no cancel may interrupt this: we are past the commit */
	HOLD_INTERRUPTS();
	if (TwoCacheRedisBackendExec(2 * n, cmds, replies, err, sizeof(err)))
	{
		TwoCacheCount(TC_INVALIDATIONS_SENT, n);
		TwoCacheRedisFreeReplies(2 * n, replies);
	}
	else
		ereport(WARNING,
				(errmsg("could not delete %d cache keys again in Redis after commit", n),
				 errdetail("%s", err),
				 errhint("They were deleted from the local cache; other servers keep them until they expire or are deleted again.")));
	RESUME_INTERRUPTS();
	pfree(cmds);
	pfree(replies);
}

static void
l2_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (pending_deletes == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			apply_pending();
			free_pending();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			free_pending();
			break;
		default:
			break;
	}
}

/*
 * Remember a delete made inside a transaction block, to apply again after
 * commit.  Builds the Redis key and message now, while catalog access works.
 */
void
L2RememberDelete(const ArcKey *key)
{
	PendingDelete *d;
	size_t		rklen;
	char	   *rkey = l2_key(key, &rklen);
	int			msglen;
	char	   *msg = l2_message(key, TC_MSG_DEL, &msglen);
	char	   *p;

	if (!xact_callback_registered)
	{
		RegisterXactCallback(l2_xact_callback, NULL);
		xact_callback_registered = true;
	}

	d = MemoryContextAlloc(TopMemoryContext,
						   sizeof(PendingDelete) + key->len + rklen + msglen);
	p = (char *) (d + 1);
	memcpy(p, key->data, key->len);
	d->key = *key;
	d->key.data = p;
	p += key->len;
	memcpy(p, rkey, rklen);
	d->rkey = p;
	d->rkeylen = rklen;
	p += rklen;
	memcpy(p, msg, msglen);
	d->msg = p;
	d->msglen = msglen;
	d->next = pending_deletes;
	pending_deletes = d;
}
