/*-------------------------------------------------------------------------
 *
 * inval.h
 *	  Invalidation: deletes and tag invalidations, here and on every server
 *	  (inval.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_INVAL_H
#define TWOCACHE_INVAL_H

#include "access/xlogdefs.h"
#include "redis.h"
#include "twocache.h"

/*
 * The Redis side of one invalidation: a key to DEL, or a tag's set to empty
 * (of the members starting with prefix; prefixlen 0: all), and the message
 * to PUBLISH after it.
 */
typedef struct InvalItem
{
	bool		is_tag;
	char	   *rkey;			/* the Redis key, or the tag's set */
	size_t		rkeylen;
	char	   *prefix;			/* a tag of one role: its members' prefix */
	size_t		prefixlen;
	char	   *fence;			/* its fill fence (l2.c), set to now first */
	size_t		fencelen;
	char	   *msg;			/* encoded message (message.c) */
	int			msglen;
	/* set by InvalSend */
	bool		sent;			/* Redis did it and took the message */
	int64		deleted;		/* Redis keys it deleted */
} InvalItem;

extern bool TwoCacheDel(const ArcKey *key, bool local_only);
extern uint64 TwoCacheInvalidateTag(Oid dbid, Oid roleid, const char *tag,
									int taglen);
extern void TwoCacheQueueTagInvalidation(Oid dbid, const char *tag, int taglen);
extern uint64 TwoCacheInvalidateLocal(const ArcKey *key, bool is_tag);
extern bool TwoCacheTakeBack(const ArcKey *key);

extern void InvalItemBuild(InvalItem *item, const ArcKey *key, bool is_tag,
						   const char *dbname, const char *rolename,
						   XLogRecPtr lsn);
/* conn NULL: the backend's connection */
extern bool InvalSend(TcRedisConn *conn, const char *channel,
					  InvalItem **items, int n, char *errbuf, size_t errlen);

/* invalidations Redis has not taken yet, and the generation */
extern Size InvalQueueShmemSize(void);
extern void InvalQueueShmemInit(void);
extern bool InvalL2Withheld(const ArcKey *key, const ArcTags *tags,
							uint64 generation);
extern uint64 InvalGeneration(void);
extern void InvalQueueOverflow(void);
extern bool InvalGenerationBump(TcRedisConn *conn, const char *channel,
								char *errbuf, size_t errlen);
extern bool InvalGenerationRefresh(TcRedisConn *conn, bool follow_dataset,
								   const char *channel, char *errbuf, size_t errlen);
extern void InvalGenerationSeen(uint64 generation);
extern int	InvalQueueReplay(TcRedisConn *conn, const char *channel,
							 char *errbuf, size_t errlen);

#endif							/* TWOCACHE_INVAL_H */
