/*-------------------------------------------------------------------------
 *
 * message.h
 *	  Invalidation messages exchanged between servers through Redis pub/sub.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_MESSAGE_H
#define TWOCACHE_MESSAGE_H

#include "twocache.h"

typedef enum TcMessageOp
{
	TC_MSG_DEL = 'd',			/* key deleted */
	TC_MSG_SET = 's',			/* key written */
	TC_MSG_TAG = 't',			/* tag invalidated: the key field is the tag */
	TC_MSG_GENERATION = 'g',	/* generation bumped: the key field is the
								 * new generation, in decimal; cluster scope */
	TC_MSG_FILLED = 'f'			/* a fleet lease on key ended (lease.c): its
								 * value is in Redis, or its holder gave up;
								 * not an invalidation (1.4) */
} TcMessageOp;

typedef struct TcMessage
{
	TcMessageOp op;
	bool		cluster_scope;	/* key shared by all databases */
	bool		role_scope;		/* key of a role in dbname (a tag: the
								 * entries of that role only) */
	uint64		lsn;			/* WAL position the invalidation is true at */
	uint64		sysid;			/* sender's database system identifier */
	char		instance_id[TWOCACHE_MAX_INSTANCE_ID + 1];
	char		dbname[NAMEDATALEN];	/* when !cluster_scope */
	char		rolename[NAMEDATALEN];	/* when role_scope */
	uint32		keylen;
	char		key[TWOCACHE_MAX_KEY_LEN];
} TcMessage;

/* Largest encoded message. */
#define TC_MESSAGE_MAX	(25 + TWOCACHE_MAX_INSTANCE_ID + 2 * NAMEDATALEN + TWOCACHE_MAX_KEY_LEN)

extern int	TwoCacheMessageEncode(const TcMessage *msg, char *buf, int bufsize);
extern bool TwoCacheMessageDecode(const char *buf, int len, TcMessage *msg);
extern void TwoCacheMessageSetLsn(char *buf, int len, uint64 lsn);

#endif							/* TWOCACHE_MESSAGE_H */
