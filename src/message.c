/*-------------------------------------------------------------------------
 *
 * message.c
 *	  Binary-safe encoding of invalidation messages.
 *
 * A message is published on twocache.channel by the server that wrote or
 * deleted a key, and applied by the background worker of every other server
 * (src/worker.c).  Layout, all integers big-endian:
 *
 *	  "TC"  magic (2 bytes)
 *	  1     format version (1 byte)
 *	  op    'd' (del), 's' (set), 't' (tag invalidated; the key field
 *	        holds the tag), 'g' (generation bumped; the key field holds
 *	        the new generation in decimal) or 'f' (a fleet lease on the key
 *	        ended, 1.4: not an invalidation; servers before 1.4 reject it as
 *	        unknown, which is what they should do with it) (1 byte)
 *	  flags bit 0: cluster scope; bit 1: role scope (1 byte; not both)
 *	  lsn   WAL position at which the invalidation holds on the sender:
 *	        once a server replaying the sender's WAL has replayed this far,
 *	        its snapshots see the change (8 bytes; 0 if none)
 *	  sysid database system identifier of the sender (pg_control), which a
 *	        streaming standby shares with its primary (8 bytes)
 *	  n     length of the instance id, then its bytes (1 + n bytes)
 *	  m     length of the database name, then its bytes (1 + m bytes;
 *	        m = 0 in cluster scope)
 *	  r     in role scope only: length of the role name, then its bytes
 *	        (1 + r bytes, r > 0)
 *	  k     length of the key, then its bytes (2 + k bytes)
 *
 * Every length is checked against both the limits and the bytes received, so
 * any key bytes survive and a malformed message is rejected, never
 * over-read.  Nothing here allocates memory or raises errors: the decoder
 * runs in the worker on bytes from the network.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "message.h"

#define TC_MAGIC0		'T'
#define TC_MAGIC1		'C'
#define TC_VERSION		1
#define TC_FLAG_CLUSTER	0x01
#define TC_FLAG_ROLE	0x02

/*
 * Encode msg into buf.  Returns the encoded length, or -1 if it does not
 * fit in bufsize or a field is over its limit.
 */
int
TwoCacheMessageEncode(const TcMessage *msg, char *buf, int bufsize)
{
	size_t		idlen = strlen(msg->instance_id);
	size_t		dblen = msg->cluster_scope ? 0 : strlen(msg->dbname);
	size_t		rolelen = msg->role_scope ? strlen(msg->rolename) : 0;
	int			need = 2 + 1 + 1 + 1 + 8 + 8 + 1 + idlen + 1 + dblen +
		(msg->role_scope ? 1 + rolelen : 0) + 2 + msg->keylen;
	unsigned char *p = (unsigned char *) buf;
	int			i;

	if (idlen > TWOCACHE_MAX_INSTANCE_ID || dblen >= NAMEDATALEN ||
		rolelen >= NAMEDATALEN ||
		(msg->role_scope && (msg->cluster_scope || rolelen == 0)) ||
		msg->keylen > TWOCACHE_MAX_KEY_LEN || need > bufsize)
		return -1;

	*p++ = TC_MAGIC0;
	*p++ = TC_MAGIC1;
	*p++ = TC_VERSION;
	*p++ = (unsigned char) msg->op;
	*p++ = (msg->cluster_scope ? TC_FLAG_CLUSTER : 0) |
		(msg->role_scope ? TC_FLAG_ROLE : 0);
	for (i = 7; i >= 0; i--)
		*p++ = (unsigned char) (msg->lsn >> (i * 8));
	for (i = 7; i >= 0; i--)
		*p++ = (unsigned char) (msg->sysid >> (i * 8));
	*p++ = (unsigned char) idlen;
	memcpy(p, msg->instance_id, idlen);
	p += idlen;
	*p++ = (unsigned char) dblen;
	memcpy(p, msg->dbname, dblen);
	p += dblen;
	if (msg->role_scope)
	{
		*p++ = (unsigned char) rolelen;
		memcpy(p, msg->rolename, rolelen);
		p += rolelen;
	}
	*p++ = (unsigned char) (msg->keylen >> 8);
	*p++ = (unsigned char) msg->keylen;
	memcpy(p, msg->key, msg->keylen);
	p += msg->keylen;

	Assert((char *) p - buf == need);
	return need;
}

/*
 * Replace the lsn of an encoded message (of len bytes, from
 * TwoCacheMessageEncode).
 */
void
TwoCacheMessageSetLsn(char *buf, int len, uint64 lsn)
{
	unsigned char *p = (unsigned char *) buf + 5;
	int			i;

	Assert(len >= 2 + 1 + 1 + 1 + 8);
	(void) len;
	for (i = 7; i >= 0; i--)
		*p++ = (unsigned char) (lsn >> (i * 8));
}

/*
 * Decode len bytes of buf into *msg.  Returns false for anything malformed:
 * wrong magic or version, unknown op or flags, a length beyond the limits
 * or the data, or trailing bytes.
 */
bool
TwoCacheMessageDecode(const char *buf, int len, TcMessage *msg)
{
	const unsigned char *p = (const unsigned char *) buf;
	const unsigned char *end = p + (len > 0 ? len : 0);
	uint32		n;
	int			i;

	if (buf == NULL || len < 2 + 1 + 1 + 1 + 8 + 8 + 1 + 1 + 2)
		return false;
	if (p[0] != TC_MAGIC0 || p[1] != TC_MAGIC1 || p[2] != TC_VERSION)
		return false;
	if (p[3] != TC_MSG_DEL && p[3] != TC_MSG_SET && p[3] != TC_MSG_TAG &&
		p[3] != TC_MSG_GENERATION && p[3] != TC_MSG_FILLED)
		return false;
	if ((p[4] & ~(TC_FLAG_CLUSTER | TC_FLAG_ROLE)) != 0 ||
		(p[4] & (TC_FLAG_CLUSTER | TC_FLAG_ROLE)) == (TC_FLAG_CLUSTER | TC_FLAG_ROLE))
		return false;
	msg->op = (TcMessageOp) p[3];
	msg->cluster_scope = (p[4] & TC_FLAG_CLUSTER) != 0;
	msg->role_scope = (p[4] & TC_FLAG_ROLE) != 0;
	p += 5;

	msg->lsn = 0;
	for (i = 0; i < 8; i++)
		msg->lsn = (msg->lsn << 8) | *p++;
	msg->sysid = 0;
	for (i = 0; i < 8; i++)
		msg->sysid = (msg->sysid << 8) | *p++;

	/* instance id */
	n = *p++;
	if (n > TWOCACHE_MAX_INSTANCE_ID || end - p < (ptrdiff_t) n + 1)
		return false;
	memcpy(msg->instance_id, p, n);
	msg->instance_id[n] = '\0';
	if (memchr(msg->instance_id, '\0', n) != NULL)
		return false;
	p += n;

	/* database name */
	n = *p++;
	if (n >= NAMEDATALEN || end - p < (ptrdiff_t) n + 2)
		return false;
	if (msg->cluster_scope ? n != 0 : n == 0)
		return false;
	memcpy(msg->dbname, p, n);
	msg->dbname[n] = '\0';
	if (memchr(msg->dbname, '\0', n) != NULL)
		return false;
	p += n;

	/* role name, in role scope only */
	msg->rolename[0] = '\0';
	if (msg->role_scope)
	{
		n = *p++;
		if (n == 0 || n >= NAMEDATALEN || end - p < (ptrdiff_t) n + 2)
			return false;
		memcpy(msg->rolename, p, n);
		msg->rolename[n] = '\0';
		if (memchr(msg->rolename, '\0', n) != NULL)
			return false;
		p += n;
	}

	/* key */
	n = ((uint32) p[0] << 8) | p[1];
	p += 2;
	if (n == 0 || n > TWOCACHE_MAX_KEY_LEN || end - p != (ptrdiff_t) n)
		return false;
	memcpy(msg->key, p, n);
	msg->keylen = n;
	return true;
}
