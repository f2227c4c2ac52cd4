/*-------------------------------------------------------------------------
 *
 * l2.c
 *	  The Redis layer (L2): key layout, value encoding, read-through,
 *	  write-through, invalidation messages and the post-commit re-delete.
 *
 * Redis keys:
 *	  database scope   <key_prefix>db:<database name>:<key>
 *	  role scope       <key_prefix>role:<database name>:<role name>:<key>
 *	  cluster scope    <key_prefix>cluster:<key>
 * where '%' and ':' in database and role names are written %25 and %3A, so
 * the layout is unambiguous whatever the names and keys.  Values carry a
 * one-byte type tag: 'v' followed by the value, or 'n' alone for a
 * not-found placeholder.
 *
 * Each tag has a set of the Redis keys carrying it, per database (or in
 * cluster scope): <key_prefix>tag:db:<database name>:<tag>, or
 * <key_prefix>tag:cluster:<tag>.  Role scope uses its database's sets, so
 * a table trigger empties a tag's set for every role; an invalidation for
 * one role (twocache_invalidate_tag in role scope) deletes only the members
 * that start with that role's key prefix.  A tag invalidation
 * (L2TagInvalidateBatched, the one loop the backend, the post-commit
 * re-apply and the worker share) empties it in bounded rounds, one short
 * script each, so that however large the set no script runs long and Redis
 * never answers BUSY to anyone; its message is published after the last
 * round, so no receiver can refill an old value from Redis meanwhile.
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
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "l2.h"
#include "message.h"
#include "redis.h"
#include "twocache.h"

/* Conditional set: SET and PUBLISH only if the only_if condition holds. */
static const char *const conditional_set_script =
"local cur = redis.call('GET', KEYS[1])\n"
"local present = cur and (string.sub(cur, 1, 1) == 'v' or string.sub(cur, 1, 1) == 't' or string.sub(cur, 1, 1) == 'E')\n"
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

/* Add a key to a tag's set, keeping the set alive as long as the key. */
static const char *const tag_add_script =
"local existed = redis.call('EXISTS', KEYS[1])\n"
"redis.call('SADD', KEYS[1], ARGV[1])\n"
"local ttl = tonumber(ARGV[2])\n"
"if ttl == 0 then\n"
"  redis.call('PERSIST', KEYS[1])\n"
"elseif existed == 0 then\n"
"  redis.call('PEXPIRE', KEYS[1], ttl)\n"
"else\n"
"  redis.call('PEXPIRE', KEYS[1], ttl, 'GT')\n"
"end\n"
"return 1\n";

/*
 * One round of a tag invalidation (L2TagInvalidateBatched): SSCAN the tag's
 * set from cursor ARGV[1], COUNT ARGV[2]; DEL every member returned that
 * starts with ARGV[3] ('' = all) and SREM it.  Returns {next cursor, number
 * deleted}.  Short by construction, whatever the size of the set.
 */
static const char *const tag_invalidate_round_script =
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
 * A key deleted (or a tag invalidated) in the current transaction block, to
 * apply again after commit; or a tag invalidation queued by the trigger,
 * applied only after commit and forgotten if its subtransaction aborts.
 */
typedef struct PendingDelete
{
	bool		is_tag;			/* key is a tag */
	bool		queued;			/* by the trigger: only after commit */
	int			nest_level;		/* subtransaction that queued it */
	ArcKey		key;			/* data points into this allocation */
	char	   *rkey;
	size_t		rkeylen;
	char	   *msg;
	int			msglen;
	char	   *prefix;			/* a tag of one role: its members' prefix */
	size_t		prefixlen;		/* 0: every member */
	struct PendingDelete *next;
} PendingDelete;

static PendingDelete *pending_deletes = NULL;

static void l2_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);
static bool xact_callback_registered = false;
static char *my_dbname = NULL;

/* The name of the role of the last role-scope key, reset on ALTER ROLE */
static Oid	my_roleid = InvalidOid;
static char my_rolename[NAMEDATALEN];
static bool role_callback_registered = false;

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

static void
role_name_reset(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
				uint32 hashvalue pg_attribute_unused())
{
	my_roleid = InvalidOid;
}

/*
 * The name of roleid, the role of a role-scope key; NULL for InvalidOid (a
 * key of another scope).  Needs catalog access the first time for a role,
 * and again after any change to pg_authid (a rename).
 */
static const char *
key_rolename(Oid roleid)
{
	if (!OidIsValid(roleid))
		return NULL;
	if (roleid != my_roleid)
	{
		if (!role_callback_registered)
		{
			CacheRegisterSyscacheCallback(AUTHOID, role_name_reset, (Datum) 0);
			role_callback_registered = true;
		}
		strlcpy(my_rolename, GetUserNameFromId(roleid, false), sizeof(my_rolename));
		my_roleid = roleid;
	}
	return my_rolename;
}

static void
append_name(StringInfo buf, const char *name)
{
	const char *p;

	for (p = name; *p; p++)
	{
		if (*p == '%')
			appendStringInfoString(buf, "%25");
		else if (*p == ':')
			appendStringInfoString(buf, "%3A");
		else
			appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, ':');
}

/*
 * The Redis name of the bytes data in a scope: of database dbname (NULL in
 * cluster scope) and, in role scope, of role rolename (NULL otherwise);
 * palloc'd.  The worker, connected to no database, passes the names from a
 * message.
 */
static char *
l2_name(const char *kind, const char *dbname, const char *rolename,
		const char *data, uint32 datalen, size_t *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, twocache_key_prefix);
	appendStringInfoString(&buf, kind);
	if (dbname == NULL)
		appendStringInfoString(&buf, "cluster:");
	else if (rolename != NULL)
	{
		appendStringInfoString(&buf, "role:");
		append_name(&buf, dbname);
		append_name(&buf, rolename);
	}
	else
	{
		appendStringInfoString(&buf, "db:");
		append_name(&buf, dbname);
	}
	appendBinaryStringInfo(&buf, data, datalen);
	*len = buf.len;
	return buf.data;
}

/* The Redis key of key (dbname and rolename as for l2_name). */
char *
L2KeyName(const ArcKey *key, const char *dbname, const char *rolename,
		  size_t *len)
{
	return l2_name("", key->dbid == InvalidOid ? NULL : dbname, rolename,
				   key->data, key->len, len);
}

/*
 * The Redis set of the keys carrying a tag (given as an ArcKey: dbid and
 * bytes; its role, if any, does not matter): <prefix>tag:db:<database
 * name>:<tag>, or <prefix>tag:cluster:<tag>.
 */
char *
L2TagSetName(const ArcKey *tag, const char *dbname, size_t *len)
{
	return l2_name("tag:", tag->dbid == InvalidOid ? NULL : dbname, NULL,
				   tag->data, tag->len, len);
}

/*
 * The prefix of the Redis keys of role rolename in database dbname, which
 * selects that role's members of a tag's set (palloc'd); "" when rolename
 * is NULL (every member).
 */
char *
L2RolePrefix(const char *dbname, const char *rolename, size_t *len)
{
	if (rolename == NULL)
	{
		*len = 0;
		return pstrdup("");
	}
	return l2_name("", dbname, rolename, "", 0, len);
}

static char *
l2_key(const ArcKey *key, size_t *len)
{
	return L2KeyName(key, key->dbid == InvalidOid ? "" : current_dbname(),
					 key_rolename(key->roleid), len);
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
 * The invalidation message for key in database dbname (and role rolename in
 * role scope, else NULL), holding from WAL position lsn, from this server
 * (palloc'd).
 */
char *
L2Message(const ArcKey *key, const char *dbname, const char *rolename,
		  TcMessageOp op, XLogRecPtr lsn, int *len)
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
	msg.role_scope = !msg.cluster_scope && rolename != NULL;
	if (msg.role_scope)
		strlcpy(msg.rolename, rolename, sizeof(msg.rolename));
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
	return L2Message(key, key->dbid == InvalidOid ? "" : current_dbname(),
					 key_rolename(key->roleid), op, TwoCacheInvalidationLsn(), len);
}

/*
 * The Redis value of a value or placeholder (palloc'd): 'v' + value, or 'n'
 * for a placeholder; with tags, 't' or 'm' instead, then the length of the
 * encoded tags (4 bytes, big-endian) and the tags before the value.  A value
 * made in a database whose encoding is neither UTF8 nor SQL_ASCII is
 * prefixed with 'E' and the encoding's number (1 byte); unprefixed values
 * are UTF-8 (or SQL_ASCII bytes), which readers validate.
 */
static char *
l2_value(const char *value, uint32 len, bool negative, const ArcTags *tags,
		 size_t *outlen)
{
	uint32		tlen = tags != NULL ? tags->len : 0;
	char	   *buf = palloc(2 + 1 + 4 + tlen + (negative ? 0 : len));
	char	   *p = buf;
	int			enc = GetDatabaseEncoding();

	if (!negative && enc != PG_UTF8 && enc != PG_SQL_ASCII)
	{
		*p++ = 'E';
		*p++ = (char) enc;
	}
	if (tlen == 0)
		*p++ = negative ? 'n' : 'v';
	else
	{
		*p++ = negative ? 'm' : 't';
		*p++ = (char) (tlen >> 24);
		*p++ = (char) (tlen >> 16);
		*p++ = (char) (tlen >> 8);
		*p++ = (char) tlen;
		memcpy(p, tags->data, tlen);
		p += tlen;
	}
	if (!negative && len > 0)
	{
		memcpy(p, value, len);
		p += len;
	}
	*outlen = p - buf;
	return buf;
}

/*
 * Decode a Redis value into e (value and tags palloc'd).  Returns false if
 * it is not one of ours.
 */
static bool
l2_decode(const char *s, size_t len, L2Entry *e)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		off = 1;

	e->encoding = PG_UTF8;
	if (len >= 2 && s[0] == 'E')
	{
		if (!PG_VALID_BE_ENCODING(u[1]))
			return false;
		e->encoding = u[1];
		s += 2;
		u += 2;
		len -= 2;
		if (len < 1 || (s[0] != 'v' && s[0] != 't'))
			return false;
	}
	if (len < 1)
		return false;
	e->tags.data = NULL;
	e->tags.len = 0;
	if (s[0] == 't' || s[0] == 'm')
	{
		uint32		tlen;

		if (len < 5)
			return false;
		tlen = ((uint32) u[1] << 24) | ((uint32) u[2] << 16) | ((uint32) u[3] << 8) | u[4];
		if (tlen > len - 5)
			return false;
		e->tags.data = palloc(tlen);
		memcpy((char *) e->tags.data, s + 5, tlen);
		e->tags.len = tlen;
		off = 5 + tlen;
	}
	if (s[0] == 'n' || s[0] == 'm')
	{
		if (off != len)
			return false;
		e->negative = true;
		return true;
	}
	if (s[0] != 'v' && s[0] != 't')
		return false;
	e->len = len - off;
	e->value = palloc(e->len + 1);
	memcpy(e->value, s + off, e->len);
	e->value[e->len] = '\0';
	return true;
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

/*
 * Fill cmds with the additions of rkey (the Redis key of key) to the sets of
 * its tags, with ttlbuf the key's TTL in ms ("0": none).  Returns how many.
 */
static int
tag_add_cmds(TcRedisCommand *cmds, const ArcKey *key, const char *rkey,
			 size_t rklen, const ArcTags *tags, const char *ttlbuf)
{
	const unsigned char *p;
	const unsigned char *end;
	int			n = 0;

	if (tags == NULL || tags->len == 0)
		return 0;
	p = (const unsigned char *) tags->data;
	end = p + tags->len;
	while (end - p >= 2)
	{
		ArcKey		tag;
		size_t		slen;
		char	   *set;

		tag.dbid = key->dbid;
		tag.roleid = InvalidOid;	/* one set for every role */
		tag.len = (p[0] << 8) | p[1];
		tag.data = (const char *) p + 2;
		p += 2 + tag.len;
		set = L2TagSetName(&tag, tag.dbid == InvalidOid ? "" : current_dbname(), &slen);
		cmd_start(&cmds[n], "EVAL");
		TwoCacheRedisArg(&cmds[n], tag_add_script, strlen(tag_add_script));
		TwoCacheRedisArg(&cmds[n], "1", 1);
		TwoCacheRedisArg(&cmds[n], set, slen);
		TwoCacheRedisArg(&cmds[n], rkey, rklen);
		TwoCacheRedisArg(&cmds[n], ttlbuf, strlen(ttlbuf));
		n++;
	}
	return n;
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
		if (!l2_decode(get->str, get->len, e))
		{
			memset(e, 0, sizeof(L2Entry));
			continue;			/* not ours: ignore */
		}
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
	TwoCacheRedisArg(&cmds[0], "0", 1);		/* 'E' (encoded) is a value too */
	cmd_start(&cmds[1], "PTTL");
	TwoCacheRedisArg(&cmds[1], rkey, rklen);
	if (!TwoCacheRedisBackendExec(2, cmds, replies, err, sizeof(err)))
		return false;

	*is_value = (replies[0]->type == REDIS_REPLY_STRING && replies[0]->len == 1 &&
				 (replies[0]->str[0] == 'v' || replies[0]->str[0] == 't' ||
				  replies[0]->str[0] == 'E') &&
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
 * message.  A fill began on an L2 miss, so whatever Redis holds for the key
 * now was stored after the fill began (a set, or another server's fill):
 * SET NX never replaces it.  *stored says whether it wrote.  Returns false
 * if Redis is unavailable or refused.
 */
bool
L2Fill(const ArcKey *key, const char *value, uint32 len, bool negative,
	   const ArcTags *tags, int64 ttl_ms, bool *stored)
{
	int			ntags = TwoCacheTagsCount(tags);
	TcRedisCommand *cmds = palloc(sizeof(TcRedisCommand) * (1 + ntags));
	redisReply **replies = palloc0(sizeof(redisReply *) * (1 + ntags));
	char		err[512];
	char		ttlbuf[32];
	size_t		rklen,
				vlen;
	char	   *rkey = l2_key(key, &rklen);
	char	   *v = l2_value(value, len, negative, tags, &vlen);
	bool		ok;

	snprintf(ttlbuf, sizeof(ttlbuf), INT64_FORMAT, Max(ttl_ms, 0));
	cmd_start(&cmds[0], "SET");
	TwoCacheRedisArg(&cmds[0], rkey, rklen);
	TwoCacheRedisArg(&cmds[0], v, vlen);
	TwoCacheRedisArg(&cmds[0], "NX", 2);
	if (ttl_ms > 0)
	{
		TwoCacheRedisArg(&cmds[0], "PX", 2);
		TwoCacheRedisArg(&cmds[0], ttlbuf, strlen(ttlbuf));
	}
	(void) tag_add_cmds(&cmds[1], key, rkey, rklen, tags, ttlbuf);
	*stored = false;
	if (!TwoCacheRedisBackendExec(1 + ntags, cmds, replies, err, sizeof(err)))
		return false;
	ok = !reply_is_error(replies[0]);
	*stored = ok && replies[0]->type == REDIS_REPLY_STATUS;
	TwoCacheRedisFreeReplies(1 + ntags, replies);
	return ok;
}

/*
 * Write key = value in L2 and publish the change, honouring only_if (atomic
 * in Redis).  *wrote says whether it wrote.  Returns false with errbuf set
 * if Redis is unavailable or refused.
 */
bool
L2Set(const ArcKey *key, const char *value, uint32 len, int64 ttl_ms,
	  TwoCacheOnlyIf only_if, const ArcTags *tags, bool *wrote,
	  char *errbuf, size_t errlen)
{
	int			ntags = TwoCacheTagsCount(tags);
	TcRedisCommand *cmds = palloc(sizeof(TcRedisCommand) * (2 + ntags));
	redisReply **replies = palloc0(sizeof(redisReply *) * (2 + ntags));
	char		ttlbuf[32];
	size_t		rklen,
				vlen;
	char	   *rkey = l2_key(key, &rklen);
	char	   *v = l2_value(value, len, false, tags, &vlen);
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
		(void) tag_add_cmds(&cmds[2], key, rkey, rklen, tags, ttlbuf);
		if (!TwoCacheRedisBackendExec(2 + ntags, cmds, replies, errbuf, errlen))
			return false;
		ok = !reply_is_error(replies[0]);
		*wrote = ok;
		if (ok && !reply_is_error(replies[1]))
			TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
		if (!ok)
			snprintf(errbuf, errlen, "Redis refused SET: %s", replies[0]->str);
		TwoCacheRedisFreeReplies(2 + ntags, replies);
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
		(void) tag_add_cmds(&cmds[1], key, rkey, rklen, tags, ttlbuf);
		if (!TwoCacheRedisBackendExec(1 + ntags, cmds, replies, errbuf, errlen))
			return false;
		ok = replies[0]->type == REDIS_REPLY_INTEGER;
		*wrote = ok && replies[0]->integer == 1;
		if (*wrote)
			TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
		if (!ok)
			snprintf(errbuf, errlen, "Redis refused the conditional set: %s",
					 replies[0]->type == REDIS_REPLY_ERROR ? replies[0]->str : "unexpected reply");
		TwoCacheRedisFreeReplies(1 + ntags, replies);
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

/*
 * Members a round of a tag invalidation asks SSCAN for, and the most rounds
 * one invalidation takes: 10M members need 20000 rounds of 500, and SSCAN
 * may return fewer than COUNT from a sparse table, hence the margin.
 */
#define TAG_ROUND_COUNT		"500"
#define TAG_MAX_ROUNDS		100000

/* Run a round trip on conn, or on the backend's connection when it is NULL. */
static bool
tag_exec(redisContext *conn, TcRedisCommand *cmd, redisReply **reply,
		 char *errbuf, size_t errlen)
{
	if (conn == NULL)
		return TwoCacheRedisBackendExec(1, cmd, reply, errbuf, errlen);
	return TwoCacheRedisExec(conn, 1, cmd, reply, twocache_redis_timeout,
							 errbuf, errlen);
}

/*
 * Record that Redis refused a step of a tag invalidation (errbuf says how):
 * an error like a dropped connection, counted in redis_errors.  On the
 * backend's connection that also starts the retry interval; the worker
 * records it as its last error itself.
 */
static void
tag_refused(redisContext *conn, redisReply *reply, const char *what,
			char *errbuf, size_t errlen)
{
	snprintf(errbuf, errlen, "Redis refused %s: %s", what,
			 reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	if (reply != NULL)
		TwoCacheRedisFreeReplies(1, &reply);
	if (conn == NULL)
		TwoCacheRedisBackendFailed(errbuf);
	else
		TwoCacheCount(TC_REDIS_ERRORS, 1);
}

/*
 * Invalidate a tag in L2 in bounded rounds, whatever the size of its set:
 * each round is one short script (SSCAN of the set from a cursor, DEL and
 * SREM of the members returned that start with member_prefix, "" for all),
 * until the cursor comes back to 0.  SSCAN returns every member that is in
 * the set for the whole scan; a member added meanwhile (a fill) may stay,
 * indexed, so the set itself is never deleted (an empty set vanishes).
 * msg is published on channel only after the last round, so that receivers,
 * who drop their L1 entries and fence fills, cannot refill an old value from
 * Redis.  conn is the connection to use, NULL for the backend's own.
 * *deleted (if not NULL) gets how many keys were deleted.  Returns false
 * with errbuf set if Redis is unavailable or refused a step (counted in
 * redis_errors), or if the set did not end within TAG_MAX_ROUNDS rounds
 * (the message is still sent then).  Each round trip is bounded by
 * twocache.redis_timeout.  Never raises an ERROR because of Redis.
 */
bool
L2TagInvalidateBatched(redisContext *conn, const char *set, size_t setlen,
					   const char *member_prefix, size_t prefixlen,
					   const char *channel, const char *msg, int msglen,
					   int64 *deleted, char *errbuf, size_t errlen)
{
	char		cursor[32] = "0";
	int64		ndeleted = 0;
	int			rounds = 0;
	TcRedisCommand cmd;
	redisReply *reply = NULL;

	do
	{
		redisReply *next;
		redisReply *count;

		if (rounds++ >= TAG_MAX_ROUNDS)
			break;
		CHECK_FOR_INTERRUPTS(); /* held off after commit */
		cmd_start(&cmd, "EVAL");
		TwoCacheRedisArg(&cmd, tag_invalidate_round_script,
						 strlen(tag_invalidate_round_script));
		TwoCacheRedisArg(&cmd, "1", 1);
		TwoCacheRedisArg(&cmd, set, setlen);
		TwoCacheRedisArg(&cmd, cursor, strlen(cursor));
		TwoCacheRedisArg(&cmd, TAG_ROUND_COUNT, strlen(TAG_ROUND_COUNT));
		TwoCacheRedisArg(&cmd, member_prefix, prefixlen);
		reply = NULL;
		if (!tag_exec(conn, &cmd, &reply, errbuf, errlen))
			return false;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
			(next = reply->element[0])->type != REDIS_REPLY_STRING ||
			next->len == 0 || next->len >= sizeof(cursor) ||
			(count = reply->element[1])->type != REDIS_REPLY_INTEGER)
		{
			tag_refused(conn, reply, "the tag invalidation", errbuf, errlen);
			return false;
		}
		memcpy(cursor, next->str, next->len);
		cursor[next->len] = '\0';
		ndeleted += count->integer;
		TwoCacheRedisFreeReplies(1, &reply);
	} while (strcmp(cursor, "0") != 0);

	if (deleted != NULL)
		*deleted = ndeleted;

	cmd_start(&cmd, "PUBLISH");
	TwoCacheRedisArg(&cmd, channel, strlen(channel));
	TwoCacheRedisArg(&cmd, msg, msglen);
	reply = NULL;
	if (!tag_exec(conn, &cmd, &reply, errbuf, errlen))
		return false;
	if (reply->type != REDIS_REPLY_INTEGER)
	{
		tag_refused(conn, reply, "the tag invalidation message", errbuf, errlen);
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
	return true;
}

/*
 * Invalidate a tag of database dbid (of role roleid only, if valid) in L2 on
 * the backend's connection: delete the keys of its set, in bounded rounds,
 * and publish it (L2TagInvalidateBatched).  Returns false with errbuf set if
 * Redis is unavailable or refused.
 */
bool
L2InvalidateTag(Oid dbid, Oid roleid, const char *tag, int taglen,
				char *errbuf, size_t errlen)
{
	ArcKey		t;
	size_t		slen;
	char	   *set;
	size_t		prefixlen;
	char	   *prefix;
	int			msglen;
	char	   *msg;

	t.dbid = dbid;
	t.roleid = roleid;
	t.data = tag;
	t.len = taglen;
	set = L2TagSetName(&t, dbid == InvalidOid ? "" : current_dbname(), &slen);
	prefix = L2RolePrefix(current_dbname(), key_rolename(roleid), &prefixlen);
	msg = l2_message(&t, TC_MSG_TAG, &msglen);
	return L2TagInvalidateBatched(NULL, set, slen, prefix, prefixlen,
								  twocache_channel, msg, msglen, NULL,
								  errbuf, errlen);
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
	int			ntags = 0;
	int			tags_failed = 0;
	int			i;
	TcRedisCommand *cmds;
	redisReply **replies;
	char		err[512];
	XLogRecPtr	lsn;

	int			ncmds = 0;

	for (d = pending_deletes; d != NULL; d = d->next)
	{
		if (d->is_tag)
		{
			(void) TwoCacheInvalidateTagLocal(d->key.dbid, d->key.roleid,
											  d->key.data, d->key.len,
											  InvalidXLogRecPtr);
			ntags++;
		}
		else
		{
			(void) TwoCacheLocalDelete(&d->key);
			n++;
		}
	}
	if (n + ntags == 0 || !TwoCacheRedisEnabled())
		return;

	/* the messages hold from the commit on, not from the first delete */
	lsn = TwoCacheInvalidationLsn();
	cmds = MemoryContextAlloc(TopMemoryContext, sizeof(TcRedisCommand) * 2 * Max(n, 1));
	replies = MemoryContextAllocZero(TopMemoryContext, sizeof(redisReply *) * 2 * Max(n, 1));
	for (d = pending_deletes, i = 0; d != NULL; d = d->next)
	{
		TwoCacheMessageSetLsn(d->msg, d->msglen, lsn);
		if (d->is_tag)
			continue;			/* in rounds of their own, below */
		cmd_start(&cmds[i], "DEL");
		TwoCacheRedisArg(&cmds[i], d->rkey, d->rkeylen);
		cmd_add_publish(&cmds[i + 1], d->msg, d->msglen);
		i += 2;
	}
	ncmds = i;

	/* no cancel may interrupt this: we are past the commit */
	HOLD_INTERRUPTS();
	if (ncmds > 0 && TwoCacheRedisBackendExec(ncmds, cmds, replies, err, sizeof(err)))
	{
		TwoCacheCount(TC_INVALIDATIONS_SENT, n);
		TwoCacheRedisFreeReplies(ncmds, replies);
	}
	else if (ncmds > 0)
		ereport(WARNING,
				(errmsg("could not delete %d cache keys again in Redis after commit", n),
				 errdetail("%s", err),
				 errhint("They were deleted from the local cache; other servers keep them until they expire or are deleted again.")));

	/*
	 * Tags after the keys, each in bounded rounds however large its set.  A
	 * failure is only a WARNING here: once Redis has failed, the backend
	 * skips it for the retry interval, so the remaining tags fail at once.
	 */
	for (d = pending_deletes; d != NULL; d = d->next)
	{
		char		tagerr[512];

		if (!d->is_tag)
			continue;
		if (!L2TagInvalidateBatched(NULL, d->rkey, d->rkeylen,
									d->prefix, d->prefixlen,
									twocache_channel, d->msg, d->msglen, NULL,
									tagerr, sizeof(tagerr)))
		{
			if (tags_failed++ == 0)
				strlcpy(err, tagerr, sizeof(err));
		}
	}
	if (tags_failed > 0)
		ereport(WARNING,
				(errmsg("could not invalidate %d of %d cache tags again in Redis after commit",
						tags_failed, ntags),
				 errdetail("%s", err),
				 errhint("They were invalidated in the local cache; other servers keep their entries until they expire or are invalidated again.")));
	RESUME_INTERRUPTS();
	pfree(cmds);
	pfree(replies);
}

/*
 * At the end of a subtransaction: an abort forgets the invalidations the
 * trigger queued in it; a commit hands them to the parent.
 */
static void
l2_subxact_callback(SubXactEvent event, SubTransactionId mySubid pg_attribute_unused(),
					SubTransactionId parentSubid pg_attribute_unused(),
					void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();
	PendingDelete **link = &pending_deletes;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	while (*link != NULL)
	{
		PendingDelete *d = *link;

		if (d->queued && d->nest_level >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
			{
				*link = d->next;
				pfree(d);
				continue;
			}
			d->nest_level = level - 1;
		}
		link = &d->next;
	}
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
static void
remember(const ArcKey *key, bool is_tag, bool queued)
{
	PendingDelete *d;
	size_t		rklen;
	char	   *rkey;
	int			msglen;
	size_t		prefixlen = 0;
	char	   *prefix = NULL;
	char	   *msg = l2_message(key, is_tag ? TC_MSG_TAG : TC_MSG_DEL, &msglen);
	char	   *p;

	if (is_tag)
	{
		rkey = L2TagSetName(key, key->dbid == InvalidOid ? "" : current_dbname(), &rklen);
		prefix = L2RolePrefix(current_dbname(), key_rolename(key->roleid), &prefixlen);
	}
	else
		rkey = l2_key(key, &rklen);

	if (!xact_callback_registered)
	{
		RegisterXactCallback(l2_xact_callback, NULL);
		RegisterSubXactCallback(l2_subxact_callback, NULL);
		xact_callback_registered = true;
	}

	d = MemoryContextAlloc(TopMemoryContext,
						   sizeof(PendingDelete) + key->len + rklen + msglen +
						   prefixlen);
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
	p += msglen;
	if (prefixlen > 0)
		memcpy(p, prefix, prefixlen);
	d->prefix = p;
	d->prefixlen = prefixlen;
	d->is_tag = is_tag;
	d->queued = queued;
	d->nest_level = GetCurrentTransactionNestLevel();
	d->next = pending_deletes;
	pending_deletes = d;
}

void
L2RememberDelete(const ArcKey *key)
{
	remember(key, false, false);
}

/* The same for a tag invalidation. */
void
L2RememberTagInvalidation(Oid dbid, Oid roleid, const char *tag, int taglen)
{
	ArcKey		t;

	t.dbid = dbid;
	t.roleid = roleid;
	t.data = tag;
	t.len = taglen;
	t.hash = 0;
	remember(&t, true, false);
}

/*
 * Queue a tag invalidation to send after commit (twocache_invalidate_trigger):
 * nothing happens now, a rollback (of the transaction or of the queueing
 * subtransaction) sends nothing.  A tag already queued is not queued again.
 */
void
L2QueueTagInvalidation(Oid dbid, const char *tag, int taglen)
{
	PendingDelete *d;
	ArcKey		t;

	for (d = pending_deletes; d != NULL; d = d->next)
	{
		if (d->is_tag && d->queued && d->key.dbid == dbid &&
			d->key.roleid == InvalidOid &&
			d->key.len == (uint32) taglen && memcmp(d->key.data, tag, taglen) == 0 &&
			d->nest_level <= GetCurrentTransactionNestLevel())
			return;
	}
	t.dbid = dbid;
	t.roleid = InvalidOid;		/* every role's entries */
	t.data = tag;
	t.len = taglen;
	t.hash = 0;
	remember(&t, true, true);
}
