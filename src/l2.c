/*-------------------------------------------------------------------------
 *
 * l2.c
 *	  The Redis layer (L2): key layout, value encoding, reads, fills, sets
 *	  and invalidation messages.  Deletes and tag invalidations, their
 *	  Redis side included, are inval.c's.
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
 * (inval.c) empties it in bounded rounds and publishes its message after the
 * last.
 *
 * Fills are fenced in Redis: a fill reads Redis's clock after its miss and
 * before its fetch (L2Time), and its write (L2Fill, one script) is refused
 * if a delete of a key of its stripe or an invalidation of one of its tags
 * happened since, on any server: deletes and tag invalidations (inval.c)
 * set those fences, <key_prefix>fence:{<tag of the stripe>} and
 * <key_prefix>tagfence:..., to Redis's clock.  A key's stripe is its Redis
 * Cluster slot, and its fence is in that slot too (L2DeleteFenceName), so
 * that in a cluster the clock, the key and its fence are all on the key's
 * master.
 *
 * Every function here returns false when Redis is unavailable or failed
 * (redis.c then skips Redis for twocache.redis_retry_interval); none raises
 * an ERROR because of Redis.  Callers treat a failed read as a miss and
 * apply a failed write locally with a WARNING.  No LWLock is held here.
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

#include "inval.h"
#include "l2.h"
#include "message.h"
#include "redis.h"
#include "twocache.h"

/*
 * Lua: the generation a value was written in (0 if unmarked, see l2_value)
 * and its type byte.
 */
#define LUA_GENERATION_AND_TYPE \
"local function gen_type(v)\n" \
"  if string.sub(v, 1, 1) ~= 'G' then return 0, string.sub(v, 1, 1) end\n" \
"  local colon = string.find(v, ':', 2, true)\n" \
"  if not colon then return 0, '' end\n" \
"  return tonumber(string.sub(v, 2, colon - 1)) or 0, string.sub(v, colon + 1, colon + 1)\n" \
"end\n"

/* Lua: SET KEYS[1] to ARGV[1], with a TTL of ARGV[2] ms ('0': none). */
#define LUA_SET_VALUE_TTL \
"if ARGV[2] == '0' then\n" \
"  redis.call('SET', KEYS[1], ARGV[1])\n" \
"else\n" \
"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n" \
"end\n"

/*
 * Conditional set: SET and PUBLISH only if the only_if condition holds; a
 * value of a generation older than ARGV[6] counts as absent.
 */
static const char *const conditional_set_script =
LUA_GENERATION_AND_TYPE
"local cur = redis.call('GET', KEYS[1])\n"
"local present = false\n"
"if cur then\n"
"  local g, t = gen_type(cur)\n"
"  present = g >= tonumber(ARGV[6]) and (t == 'v' or t == 't' or t == 'E')\n"
"end\n"
"if (ARGV[3] == 'absent' and present) or (ARGV[3] == 'present' and not present) then\n"
"  return 0\n"
"end\n"
LUA_SET_VALUE_TTL
"redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
"return 1\n";

/*
 * A fill: KEYS[1] the key, KEYS[2] its delete fence (in the key's slot);
 * ARGV[4] when the fill began (Redis TIME on the key's node, in
 * microseconds).  Not stored if a delete of a key of its stripe happened
 * since (the fence holds the time of the last one, by the same clock), nor
 * if the key holds a value of generation ARGV[3] or newer (an older one is
 * a miss everywhere, so it does not block a fill).  Its tags were checked
 * before, by tag_check_script (L2Fill).  Returns 1 if it
 * stored.
 */
static const char *const fill_script =
LUA_GENERATION_AND_TYPE
"local start = tonumber(ARGV[4])\n"
"for i = 2, #KEYS do\n"
"  local f = redis.call('GET', KEYS[i])\n"
"  if f and tonumber(f) >= start then return 0 end\n"
"end\n"
"local cur = redis.call('GET', KEYS[1])\n"
"if cur then\n"
"  local g = gen_type(cur)\n"
"  if g >= tonumber(ARGV[3]) then return 0 end\n"
"end\n"
LUA_SET_VALUE_TTL
"return 1\n";

/*
 * fill_script for many keys on one Redis (a batch, L2FillMany): KEYS[2i-1]
 * and KEYS[2i] the i-th key and its fence, ARGV[1] the generation, then
 * for each key its value, TTL and start (ARGV[3i-1], ARGV[3i], ARGV[3i+1]).
 * Returns an array of 1 (stored) or 0, one per key.
 */
static const char *const fill_many_script =
LUA_GENERATION_AND_TYPE
"local gen = tonumber(ARGV[1])\n"
"local out = {}\n"
"for i = 1, #KEYS / 2 do\n"
"  local key, fence = KEYS[2 * i - 1], KEYS[2 * i]\n"
"  local v, ttl, start = ARGV[3 * i - 1], ARGV[3 * i], tonumber(ARGV[3 * i + 1])\n"
"  local ok = 1\n"
"  local f = redis.call('GET', fence)\n"
"  if f and tonumber(f) >= start then ok = 0 end\n"
"  if ok == 1 then\n"
"    local cur = redis.call('GET', key)\n"
"    if cur and gen_type(cur) >= gen then ok = 0 end\n"
"  end\n"
"  if ok == 1 then\n"
"    if ttl == '0' then redis.call('SET', key, v)\n"
"    else redis.call('SET', key, v, 'PX', ttl) end\n"
"  end\n"
"  out[i] = ok\n"
"end\n"
"return out\n";

/*
 * Lua: add the key ARGV[1] to the tag's set KEYS[1], keeping the set alive
 * as long as the key (TTL ARGV[2] ms, '0' none).
 */
#define LUA_TAG_ADD \
"local existed = redis.call('EXISTS', KEYS[1])\n" \
"redis.call('SADD', KEYS[1], ARGV[1])\n" \
"local ttl = tonumber(ARGV[2])\n" \
"if ttl == 0 then\n" \
"  redis.call('PERSIST', KEYS[1])\n" \
"elseif existed == 0 then\n" \
"  redis.call('PEXPIRE', KEYS[1], ttl)\n" \
"else\n" \
"  redis.call('PEXPIRE', KEYS[1], ttl, 'GT')\n" \
"end\n"

/*
 * A fill's step on one of its tags (KEYS[1] the tag's set, KEYS[2] its fence,
 * in the same slot): add the key ARGV[1] to the set, keeping the set alive as
 * long as the key (TTL ARGV[2] ms, '0' none), then say how long ago the
 * tag was last invalidated, in microseconds by this node's clock (-1:
 * never, or more than L2_TAG_FENCE_TTL ago).  The two in one script: an
 * invalidation after it finds the key in the set, one before it shows in
 * the fence.
 */
static const char *const tag_check_script =
LUA_TAG_ADD
"local f = redis.call('GET', KEYS[2])\n"
"if not f then return -1 end\n"
"local t = redis.call('TIME')\n"
"local age = tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(f)\n"
"if age < 0 then return 0 end\n"
"return age\n";

/* Add a key to a tag's set, keeping the set alive as long as the key. */
static const char *const tag_add_script =
LUA_TAG_ADD
"return 1\n";

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

/*
 * The names of key's scope on this backend: its database's ("" in cluster
 * scope) and, in role scope, its role's (else NULL).
 */
void
L2ScopeNames(const ArcKey *key, const char **dbname, const char **rolename)
{
	*dbname = key->dbid == InvalidOid ? "" : current_dbname();
	*rolename = key_rolename(key->roleid);
}

/*
 * Fill fences (see fill_script): the time of the last delete of a key of
 * each of L2_FENCE_STRIPES stripes, and the time of the last invalidation
 * of each tag, <prefix>tagfence:db:<database name>:<tag> (or
 * tagfence:cluster:<tag>), kept L2_TAG_FENCE_TTL.
 *
 * A key's stripe is its Redis Cluster slot (CRC16 of its Redis name, or of
 * its hash tag: the same on every server, clustered or not), and the
 * stripe's fence is <prefix>fence:{<t>}, where <t> is the short string of
 * redis_cluster.c's table whose slot is that slot: so a key and its fence
 * are in one slot, and the delete and fill scripts, which touch both, run
 * on one node of a cluster.  (A key_prefix with a '{' but no non-empty
 * {...} in it would defeat that; one with a non-empty {...} puts every key
 * and fence in the slot of that tag, which keeps them together.)
 */
char *
L2DeleteFenceName(const char *rkey, size_t rkeylen, size_t *len)
{
	int			slot = TwoCacheClusterKeySlot(rkey, rkeylen);
	char	   *name;

	name = psprintf("%sfence:{%s}", twocache_key_prefix, TwoCacheClusterSlotTag(slot));
	*len = strlen(name);
	return name;
}

/*
 * A tag's fence is <prefix>tagfence:{<t>}:db:<database name>:<tag> (or
 * :cluster:<tag>), <t> as for a key's fence but for the slot of the tag's
 * set: the set and its fence are in one slot, so that tag_check_script and
 * the tag invalidation's fence script run on one node of a cluster.
 */
char *
L2TagFenceName(const ArcKey *tag, const char *dbname, size_t *len)
{
	size_t		slen;
	char	   *set = L2TagSetName(tag, dbname, &slen);
	size_t		skip = strlen(twocache_key_prefix) + strlen("tag:");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%stagfence:{%s}:", twocache_key_prefix,
					 TwoCacheClusterSlotTag(TwoCacheClusterKeySlot(set, slen)));
	appendBinaryStringInfo(&buf, set + skip, slen - skip);
	pfree(set);
	*len = buf.len;
	return buf.data;
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
 * are UTF-8 (or SQL_ASCII bytes), which readers validate.  Once the cache
 * generation has been bumped (inval.c), every value starts with 'G', the
 * generation it is written in, in decimal, and ':'; readers take a value of
 * an older generation as a miss.
 */
static char *
l2_value(const char *value, uint32 len, bool negative, const ArcTags *tags,
		 size_t *outlen)
{
	uint32		tlen = tags != NULL ? tags->len : 0;
	char	   *buf = palloc(32 + 2 + 1 + 4 + tlen + (negative ? 0 : len));
	char	   *p = buf;
	int			enc = GetDatabaseEncoding();
	uint64		generation = InvalGeneration();

	if (generation > 0)
		p += sprintf(p, "G" UINT64_FORMAT ":", generation);

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
/*
 * Skip the generation prefix of a Redis value, if any (l2_value): returns
 * its length (0 if none, -1 if malformed) and sets *generation.
 */
static int
generation_prefix(const char *s, size_t len, uint64 *generation)
{
	size_t		i;

	*generation = 0;
	if (len == 0 || s[0] != 'G')
		return 0;
	for (i = 1; i < len && i <= 21 && s[i] >= '0' && s[i] <= '9'; i++)
		*generation = *generation * 10 + (s[i] - '0');
	if (i == 1 || i >= len || s[i] != ':')
		return -1;
	return (int) i + 1;
}

static bool
l2_decode(const char *s, size_t len, L2Entry *e)
{
	const unsigned char *u;
	size_t		off = 1;
	int			gl = generation_prefix(s, len, &e->generation);

	if (gl < 0)
		return false;
	s += gl;
	len -= gl;
	u = (const unsigned char *) s;
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

/*
 * PUBLISH msg, the message of the change of the Redis key rkey: in a
 * cluster, on rkey's master, after the change (redis_cluster.c).
 */
static void
cmd_add_publish(TcRedisCommand *cmd, const char *msg, int msglen,
				const char *rkey, size_t rklen)
{
	TwoCacheRedisCommand(cmd, "PUBLISH");
	TwoCacheRedisArg(cmd, twocache_channel, strlen(twocache_channel));
	TwoCacheRedisArg(cmd, msg, msglen);
	cmd->route_key = rkey;
	cmd->route_len = rklen;
}

static bool
reply_is_error(const TcRedisReply *r)
{
	return r == NULL || r->type == TC_REPLY_ERROR;
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
		TwoCacheRedisCommand(&cmds[n], "EVAL");
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
	TcRedisReply **replies;
	char		err[512];
	int			i;

	if (n == 0)
		return true;
	cmds = palloc(sizeof(TcRedisCommand) * 2 * n);
	replies = palloc0(sizeof(TcRedisReply *) * 2 * n);
	for (i = 0; i < n; i++)
	{
		size_t		rklen;
		char	   *rkey = l2_key(&keys[i], &rklen);

		TwoCacheRedisCommand(&cmds[2 * i], "GET");
		TwoCacheRedisArg(&cmds[2 * i], rkey, rklen);
		TwoCacheRedisCommand(&cmds[2 * i + 1], "PTTL");
		TwoCacheRedisArg(&cmds[2 * i + 1], rkey, rklen);
	}
	if (!TwoCacheRedisBackendExec(2 * n, cmds, replies, err, sizeof(err)))
		return false;

	for (i = 0; i < n; i++)
	{
		TcRedisReply *get = replies[2 * i];
		TcRedisReply *pttl = replies[2 * i + 1];
		L2Entry    *e = &out[i];

		memset(e, 0, sizeof(L2Entry));
		if (get->type != TC_REPLY_STRING || get->len < 1 ||
			pttl->type != TC_REPLY_INTEGER || pttl->integer == -2)
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
 * Redis's clock, in microseconds, into *now_us: where a fill of key that is
 * about to fetch starts (see fill_script).  Read after the fill's L2 miss,
 * before its fetch takes its snapshot: a delete before then happened before
 * the snapshot too, so only later ones must refuse the fill.  In a cluster
 * it is the clock of key's master, which the delete script reads too.
 * Returns false if Redis is unavailable or failed.
 */
bool
L2Time(const ArcKey *key, L2FillStart *start)
{
	return L2TimeMany(1, key, start);
}

/*
 * L2Time with one more command first in the same round trip (the fleet
 * lease's: lease.c), whose reply is returned in *first_reply (to free with
 * TwoCacheRedisFreeReplies).  Returns false if Redis is unavailable or
 * failed (*first_reply NULL); a start not read is 0.
 */
bool
L2TimeWith(const ArcKey *key, L2FillStart *start, const TcRedisCommand *first,
		   TcRedisReply **first_reply)
{
	TcRedisCommand cmds[3];
	TcRedisReply *replies[3] = {NULL, NULL, NULL};
	char		err[512];
	size_t		rklen;
	char	   *rkey = l2_key(key, &rklen);
	TcRedisReply *reply;

	*first_reply = NULL;
	start->redis_us = 0;
	INSTR_TIME_SET_CURRENT(start->local);
	cmds[0] = *first;
	TwoCacheRedisCommand(&cmds[1], "EXISTS");
	TwoCacheRedisArg(&cmds[1], rkey, rklen);
	TwoCacheRedisCommand(&cmds[2], "TIME");
	cmds[2].route_key = rkey;
	cmds[2].route_len = rklen;
	if (!TwoCacheRedisBackendExec(3, cmds, replies, err, sizeof(err)))
		return false;
	reply = replies[2];
	if (reply->type == TC_REPLY_ARRAY && reply->elements == 2 &&
		reply->element[0]->type == TC_REPLY_STRING &&
		reply->element[1]->type == TC_REPLY_STRING)
		start->redis_us = strtou64(reply->element[0]->str, NULL, 10) * 1000000 +
			strtou64(reply->element[1]->str, NULL, 10);
	*first_reply = replies[0];
	TwoCacheRedisFreeReplies(2, &replies[1]);
	return true;
}

/*
 * L2Time for n keys in one round trip: in a cluster each key's start is
 * its own master's clock; on one Redis every key has the same.
 */
bool
L2TimeMany(int n, const ArcKey *keys, L2FillStart *starts)
{
	TcRedisCommand *cmds;
	TcRedisReply **replies;
	char		err[512];
	instr_time	local;
	int			i;
	bool		ok = true;

	if (n > 1 && !TwoCacheRedisClusterMode())
	{
		/* one node, one clock: read it once */
		ok = L2Time(&keys[0], &starts[0]);
		for (i = 1; i < n; i++)
			starts[i] = starts[0];
		return ok;
	}
	cmds = palloc(sizeof(TcRedisCommand) * 2 * Max(n, 1));
	replies = palloc0(sizeof(TcRedisReply *) * 2 * Max(n, 1));
	INSTR_TIME_SET_CURRENT(local);
	for (i = 0; i < n; i++)
	{
		size_t		rklen;
		char	   *rkey = l2_key(&keys[i], &rklen);

		starts[i].redis_us = 0;
		starts[i].local = local;

		/*
		 * TIME has no key: it follows the EXISTS of the key before it, so
		 * that in a cluster whose map this backend has not caught up with
		 * yet (a MOVED) it is sent again to the key's new owner, whose clock
		 * its fence uses.
		 */
		TwoCacheRedisCommand(&cmds[2 * i], "EXISTS");
		TwoCacheRedisArg(&cmds[2 * i], rkey, rklen);
		TwoCacheRedisCommand(&cmds[2 * i + 1], "TIME");
		cmds[2 * i + 1].route_key = rkey;
		cmds[2 * i + 1].route_len = rklen;
	}
	if (n == 0)
		return true;
	if (!TwoCacheRedisBackendExec(2 * n, cmds, replies, err, sizeof(err)))
		return false;
	for (i = 0; i < n; i++)
	{
		TcRedisReply *reply = replies[2 * i + 1];

		if (reply->type == TC_REPLY_ARRAY && reply->elements == 2 &&
			reply->element[0]->type == TC_REPLY_STRING &&
			reply->element[1]->type == TC_REPLY_STRING)
			starts[i].redis_us = strtou64(reply->element[0]->str, NULL, 10) * 1000000 +
				strtou64(reply->element[1]->str, NULL, 10);
		else
			ok = false;
	}
	TwoCacheRedisFreeReplies(2 * n, replies);
	return ok;
}

/*
 * Probe key in L2 without reading its value: whether it holds a real value,
 * and its PTTL.  Returns false if Redis is unavailable.
 */
bool
L2Probe(const ArcKey *key, bool *is_value, int64 *pttl_ms)
{
	TcRedisCommand cmds[2];
	TcRedisReply *replies[2] = {NULL, NULL};
	char		err[512];
	size_t		rklen;
	char	   *rkey = l2_key(key, &rklen);

	TwoCacheRedisCommand(&cmds[0], "GETRANGE");
	TwoCacheRedisArg(&cmds[0], rkey, rklen);
	TwoCacheRedisArg(&cmds[0], "0", 1);
	TwoCacheRedisArg(&cmds[0], "23", 2);	/* a generation prefix, a type */
	TwoCacheRedisCommand(&cmds[1], "PTTL");
	TwoCacheRedisArg(&cmds[1], rkey, rklen);
	if (!TwoCacheRedisBackendExec(2, cmds, replies, err, sizeof(err)))
		return false;

	*is_value = false;
	if (replies[0]->type == TC_REPLY_STRING &&
		replies[1]->type == TC_REPLY_INTEGER && replies[1]->integer != -2)
	{
		uint64		generation;
		int			gl = generation_prefix(replies[0]->str, replies[0]->len,
										   &generation);

		/* 'E' (encoded) is a value too */
		*is_value = gl >= 0 && (size_t) gl < replies[0]->len &&
			(replies[0]->str[gl] == 'v' || replies[0]->str[gl] == 't' ||
			 replies[0]->str[gl] == 'E') &&
			!InvalL2Withheld(key, NULL, generation);
	}
	*pttl_ms = replies[1]->type == TC_REPLY_INTEGER ? replies[1]->integer : -2;
	TwoCacheRedisFreeReplies(2, replies);
	return true;
}

/* ----------------------------------------------------------------
 * Writes
 * ----------------------------------------------------------------
 */

/*
 * Store a fetched value (or placeholder) in L2: a fill, not a change, so no
 * message.  start says when the fill began, before its fetch (L2Time).
 *
 * First its tags, each on its own node (one round trip for all): the key is
 * added to the tag's set and the tag's fence read in one script
 * (tag_check_script).  If one was invalidated since the fill began, the
 * fill may have read the old rows, and it is not stored.  The fence is read
 * on the tag's node, maybe not the key's, so the test compares durations,
 * not the clocks of two nodes: the invalidation's age by the tag node's
 * clock against the time since L2Time by this backend's monotonic clock,
 * which is at least the time since the fill began as that node saw it (it
 * was taken before TIME was sent, and is read after the tag's reply came
 * back); so it refuses every fill that an invalidation followed, and a few
 * that it just preceded.  Then one script (fill_script) on the key's node
 * stores it unless, atomically, a delete of its stripe happened since
 * start->redis_us (by that node's clock), or Redis holds a value for it
 * (stored after the fill began: a set, or another server's fill).  A tag
 * invalidation that comes after the tags' step finds the key in the set
 * and deletes it, setting its stripe's fence, so the fill is refused or its
 * value deleted.  A key in a set without a value is harmless.  *stored says
 * whether it wrote.  Returns false if Redis is unavailable or refused.
 */
bool
L2Fill(const ArcKey *key, const char *value, uint32 len, bool negative,
	   const ArcTags *tags, int64 ttl_ms, const L2FillStart *start, bool *stored,
	   const TcRedisCommand *extra, bool *extra_sent)
{
	L2FillItem	item;

	item.key = key;
	item.value = value;
	item.len = len;
	item.negative = negative;
	item.ttl_ms = ttl_ms;
	item.start = *start;
	return L2FillMany(1, &item, tags, stored, extra, extra_sent);
}

/*
 * The fills of L2FillMany on one Redis (not a cluster: the keys may be in
 * any slots), the fresh ones of items, as one fill_many_script, with extra
 * after it in the same round trip.
 */
static bool
fill_many(int n, const L2FillItem *items, const ArcTags *tags, const bool *fresh,
		  const char *genbuf, bool *stored, const TcRedisCommand *extra,
		  bool *extra_sent)
{
	TcRedisCommand cmds[2];
	TcRedisReply *replies[2] = {NULL, NULL};
	char		err[512];
	char		numkeys[16];
	int			nfill = 0;
	int			i;
	int			j;
	bool		ok;

	for (i = 0; i < n; i++)
		if (fresh[i])
			nfill++;
	snprintf(numkeys, sizeof(numkeys), "%d", 2 * nfill);
	TwoCacheRedisCommand(&cmds[0], "EVAL");
	TwoCacheRedisArg(&cmds[0], fill_many_script, strlen(fill_many_script));
	TwoCacheRedisArg(&cmds[0], numkeys, strlen(numkeys));
	for (i = 0; i < n; i++)
	{
		size_t		rklen,
					flen;
		char	   *rkey;
		char	   *fence;

		if (!fresh[i])
			continue;
		rkey = l2_key(items[i].key, &rklen);
		fence = L2DeleteFenceName(rkey, rklen, &flen);
		TwoCacheRedisArg(&cmds[0], rkey, rklen);
		TwoCacheRedisArg(&cmds[0], fence, flen);
	}
	TwoCacheRedisArg(&cmds[0], genbuf, strlen(genbuf));
	for (i = 0; i < n; i++)
	{
		size_t		vlen;
		char	   *v;
		char	   *ttlbuf;
		char	   *startbuf;

		if (!fresh[i])
			continue;
		v = l2_value(items[i].value, items[i].len, items[i].negative, tags, &vlen);
		ttlbuf = psprintf(INT64_FORMAT, Max(items[i].ttl_ms, 0));
		startbuf = psprintf(UINT64_FORMAT, items[i].start.redis_us);
		TwoCacheRedisArg(&cmds[0], v, vlen);
		TwoCacheRedisArg(&cmds[0], ttlbuf, strlen(ttlbuf));
		TwoCacheRedisArg(&cmds[0], startbuf, strlen(startbuf));
	}
	if (extra != NULL)
		cmds[1] = *extra;
	if (!TwoCacheRedisBackendExec(extra != NULL ? 2 : 1, cmds, replies, err, sizeof(err)))
		return false;
	if (extra != NULL)
	{
		*extra_sent = true;
		TwoCacheRedisFreeReplies(1, &replies[1]);
	}
	ok = replies[0]->type == TC_REPLY_ARRAY && replies[0]->elements == (size_t) nfill;
	for (i = 0, j = 0; ok && i < n; i++)
	{
		if (!fresh[i])
			continue;
		if (replies[0]->element[j]->type != TC_REPLY_INTEGER)
			ok = false;
		else
			stored[i] = replies[0]->element[j]->integer == 1;
		j++;
	}
	TwoCacheRedisFreeReplies(1, replies);
	return ok;
}

/*
 * L2Fill for n keys sharing tags (a batch read-through): the tags' step for
 * every key in one round trip, then the fills of the keys still fresh in
 * another (one without tags).  stored[i] says whether key i was written.
 * Returns false if Redis is unavailable or refused (nothing more is sent
 * then; what was sent stands or is refused key by key, as with L2Fill).
 * extra, if not NULL, is sent last in the fills' round trip (the end of a
 * fleet lease: lease.c), its reply ignored; *extra_sent says whether it
 * went.
 */
bool
L2FillMany(int n, const L2FillItem *items, const ArcTags *tags, bool *stored,
		   const TcRedisCommand *extra, bool *extra_sent)
{
	int			ntags = TwoCacheTagsCount(tags);
	TcRedisCommand *cmds;
	TcRedisReply **replies;
	bool	   *fresh = palloc(sizeof(bool) * Max(n, 1));
	char		err[512];
	char		genbuf[32];
	int			nfill = 0;
	int			i;
	bool		ok = true;

	if (extra_sent != NULL)
		*extra_sent = false;
	for (i = 0; i < n; i++)
	{
		stored[i] = false;
		fresh[i] = true;
	}
	if (n == 0)
		return true;
	if (ntags > 0)
	{
		const char *dbname;
		const char *rolename;
		instr_time	now;
		int			ncmds = 0;

		cmds = palloc(sizeof(TcRedisCommand) * n * ntags);
		replies = palloc0(sizeof(TcRedisReply *) * n * ntags);
		L2ScopeNames(items[0].key, &dbname, &rolename);
		for (i = 0; i < n; i++)
		{
			const unsigned char *p = (const unsigned char *) tags->data;
			const unsigned char *end = p + tags->len;
			size_t		rklen;
			char	   *rkey = l2_key(items[i].key, &rklen);
			char	   *ttlbuf = psprintf(INT64_FORMAT, Max(items[i].ttl_ms, 0));

			while (end - p >= 2)
			{
				ArcKey		tag;
				size_t		slen,
							tflen;
				char	   *set;
				char	   *tfence;

				tag.dbid = items[i].key->dbid;
				tag.roleid = InvalidOid;
				tag.len = (p[0] << 8) | p[1];
				tag.data = (const char *) p + 2;
				p += 2 + tag.len;
				set = L2TagSetName(&tag, tag.dbid == InvalidOid ? "" : dbname, &slen);
				tfence = L2TagFenceName(&tag, tag.dbid == InvalidOid ? "" : dbname, &tflen);
				TwoCacheRedisCommand(&cmds[ncmds], "EVAL");
				TwoCacheRedisArg(&cmds[ncmds], tag_check_script, strlen(tag_check_script));
				TwoCacheRedisArg(&cmds[ncmds], "2", 1);
				TwoCacheRedisArg(&cmds[ncmds], set, slen);
				TwoCacheRedisArg(&cmds[ncmds], tfence, tflen);
				TwoCacheRedisArg(&cmds[ncmds], rkey, rklen);
				TwoCacheRedisArg(&cmds[ncmds], ttlbuf, strlen(ttlbuf));
				ncmds++;
			}
		}
		if (!TwoCacheRedisBackendExec(ncmds, cmds, replies, err, sizeof(err)))
			return false;
		INSTR_TIME_SET_CURRENT(now);
		for (i = 0; i < ncmds; i++)
		{
			int			k = i / ntags;
			instr_time	elapsed = now;
			int64		elapsed_us;

			INSTR_TIME_SUBTRACT(elapsed, items[k].start.local);
			elapsed_us = (int64) INSTR_TIME_GET_MICROSEC(elapsed);
			if (replies[i]->type != TC_REPLY_INTEGER)
				ok = false;
			else if (replies[i]->integer >= 0 && replies[i]->integer <= elapsed_us)
				fresh[k] = false;	/* invalidated since: not stored */
		}
		TwoCacheRedisFreeReplies(ncmds, replies);
		if (!ok)
			return false;
	}

	cmds = palloc(sizeof(TcRedisCommand) * (n + 1));
	replies = palloc0(sizeof(TcRedisReply *) * (n + 1));
	snprintf(genbuf, sizeof(genbuf), UINT64_FORMAT, InvalGeneration());
	for (i = 0; i < n; i++)
		if (fresh[i])
			nfill++;
	if (nfill > 1 && !TwoCacheRedisClusterMode())
		return fill_many(n, items, tags, fresh, genbuf, stored, extra, extra_sent);
	nfill = 0;
	for (i = 0; i < n; i++)
	{
		size_t		rklen,
					vlen,
					flen;
		char	   *rkey;
		char	   *v;
		char	   *fence;
		char	   *ttlbuf;
		char	   *startbuf;

		if (!fresh[i])
			continue;
		rkey = l2_key(items[i].key, &rklen);
		fence = L2DeleteFenceName(rkey, rklen, &flen);
		v = l2_value(items[i].value, items[i].len, items[i].negative, tags, &vlen);
		ttlbuf = psprintf(INT64_FORMAT, Max(items[i].ttl_ms, 0));
		startbuf = psprintf(UINT64_FORMAT, items[i].start.redis_us);
		TwoCacheRedisCommand(&cmds[nfill], "EVAL");
		TwoCacheRedisArg(&cmds[nfill], fill_script, strlen(fill_script));
		TwoCacheRedisArg(&cmds[nfill], "2", 1);
		TwoCacheRedisArg(&cmds[nfill], rkey, rklen);
		TwoCacheRedisArg(&cmds[nfill], fence, flen);
		TwoCacheRedisArg(&cmds[nfill], v, vlen);
		TwoCacheRedisArg(&cmds[nfill], ttlbuf, strlen(ttlbuf));
		TwoCacheRedisArg(&cmds[nfill], genbuf, strlen(genbuf));
		TwoCacheRedisArg(&cmds[nfill], startbuf, strlen(startbuf));
		fresh[i] = true;
		nfill++;
	}
	if (nfill == 0)
		return true;
	if (extra != NULL)
		cmds[nfill] = *extra;
	if (!TwoCacheRedisBackendExec(nfill + (extra != NULL ? 1 : 0), cmds, replies,
								  err, sizeof(err)))
		return false;
	if (extra != NULL)
	{
		*extra_sent = true;
		TwoCacheRedisFreeReplies(1, &replies[nfill]);
	}
	nfill = 0;
	for (i = 0; i < n; i++)
	{
		if (!fresh[i])
			continue;
		if (replies[nfill]->type != TC_REPLY_INTEGER)
			ok = false;
		else
			stored[i] = replies[nfill]->integer == 1;
		nfill++;
	}
	TwoCacheRedisFreeReplies(nfill, replies);
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
	TcRedisReply **replies = palloc0(sizeof(TcRedisReply *) * (2 + ntags));
	char		ttlbuf[32];
	size_t		rklen,
				vlen;
	char	   *rkey = l2_key(key, &rklen);
	char	   *v = l2_value(value, len, false, tags, &vlen);
	int			msglen;
	char	   *msg = l2_message(key, TC_MSG_SET, &msglen);
	char		genbuf[32];
	bool		ok;

	snprintf(ttlbuf, sizeof(ttlbuf), INT64_FORMAT, ttl_ms);
	snprintf(genbuf, sizeof(genbuf), UINT64_FORMAT, InvalGeneration());
	if (only_if == TWOCACHE_ONLY_IF_ALWAYS)
	{
		TwoCacheRedisCommand(&cmds[0], "SET");
		TwoCacheRedisArg(&cmds[0], rkey, rklen);
		TwoCacheRedisArg(&cmds[0], v, vlen);
		if (ttl_ms > 0)
		{
			TwoCacheRedisArg(&cmds[0], "PX", 2);
			TwoCacheRedisArg(&cmds[0], ttlbuf, strlen(ttlbuf));
		}
		cmd_add_publish(&cmds[1], msg, msglen, rkey, rklen);
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

		TwoCacheRedisCommand(&cmds[0], "EVAL");
		TwoCacheRedisArg(&cmds[0], conditional_set_script, strlen(conditional_set_script));
		TwoCacheRedisArg(&cmds[0], "1", 1);
		TwoCacheRedisArg(&cmds[0], rkey, rklen);
		TwoCacheRedisArg(&cmds[0], v, vlen);
		TwoCacheRedisArg(&cmds[0], ttlbuf, strlen(ttlbuf));
		TwoCacheRedisArg(&cmds[0], cond, strlen(cond));
		TwoCacheRedisArg(&cmds[0], twocache_channel, strlen(twocache_channel));
		TwoCacheRedisArg(&cmds[0], msg, msglen);
		TwoCacheRedisArg(&cmds[0], genbuf, strlen(genbuf));
		(void) tag_add_cmds(&cmds[1], key, rkey, rklen, tags, ttlbuf);
		if (!TwoCacheRedisBackendExec(1 + ntags, cmds, replies, errbuf, errlen))
			return false;
		ok = replies[0]->type == TC_REPLY_INTEGER;
		*wrote = ok && replies[0]->integer == 1;
		if (*wrote)
			TwoCacheCount(TC_INVALIDATIONS_SENT, 1);
		if (!ok)
			snprintf(errbuf, errlen, "Redis refused the conditional set: %s",
					 replies[0]->type == TC_REPLY_ERROR ? replies[0]->str : "unexpected reply");
		TwoCacheRedisFreeReplies(1 + ntags, replies);
		return ok;
	}
}
