/*-------------------------------------------------------------------------
 *
 * l2.h
 *	  The Redis layer (l2.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_L2_H
#define TWOCACHE_L2_H

#include "access/xlogdefs.h"
#include "portability/instr_time.h"
#include "message.h"
#include "redis.h"
#include "twocache.h"

/*
 * Fill fences (l2.c): delete stripes (one per Redis Cluster slot, so that a
 * key and its fence share a slot), and how long a tag's fence lasts
 */
#define L2_FENCE_STRIPES	TC_CLUSTER_SLOTS
#define L2_TAG_FENCE_TTL	"86400000"	/* ms: a day */

/* One key read from L2 */
typedef struct L2Entry
{
	bool		found;			/* a value or a placeholder */
	bool		negative;		/* a not-found placeholder */
	char	   *value;			/* palloc'd, NUL-terminated */
	uint32		len;
	int64		pttl_ms;		/* remaining life; -1 = no expiry */
	int			encoding;		/* the value's encoding (PG_UTF8 unless
								 * marked) */
	ArcTags		tags;			/* palloc'd */
	uint64		generation;		/* written in (0: unmarked) */
} L2Entry;

extern bool L2Get(int n, const ArcKey *keys, L2Entry *out);
/*
 * Where a fill starts (L2Time): Redis's clock on the key's node, for the
 * key's fence, and this backend's monotonic clock just before it was read,
 * for its tags' fences, which may be on other nodes (see L2Fill).
 */
typedef struct L2FillStart
{
	uint64		redis_us;		/* 0: unknown, the fill is not stored in L2 */
	instr_time	local;
} L2FillStart;

extern bool L2Time(const ArcKey *key, L2FillStart *start);
extern bool L2TimeMany(int n, const ArcKey *keys, L2FillStart *starts);
extern bool L2TimeWith(const ArcKey *key, L2FillStart *start,
					   const TcRedisCommand *first, TcRedisReply **first_reply);

/* One key of L2FillMany */
typedef struct L2FillItem
{
	const ArcKey *key;
	const char *value;
	uint32		len;
	bool		negative;
	int64		ttl_ms;
	L2FillStart start;
} L2FillItem;

extern bool L2FillMany(int n, const L2FillItem *items, const ArcTags *tags,
					   bool *stored, const TcRedisCommand *extra, bool *extra_sent);
extern bool L2Probe(const ArcKey *key, bool *is_value, int64 *pttl_ms);
extern bool L2Fill(const ArcKey *key, const char *value, uint32 len,
				   bool negative, const ArcTags *tags, int64 ttl_ms,
				   const L2FillStart *start, bool *stored,
				   const TcRedisCommand *extra, bool *extra_sent);
extern bool L2Set(const ArcKey *key, const char *value, uint32 len, int64 ttl_ms,
				  TwoCacheOnlyIf only_if, const ArcTags *tags, bool *wrote,
				  char *errbuf, size_t errlen);
extern char *L2TagSetName(const ArcKey *tag, const char *dbname, size_t *len);
extern char *L2RolePrefix(const char *dbname, const char *rolename, size_t *len);
extern char *L2DeleteFenceName(const char *rkey, size_t rkeylen, size_t *len);
extern char *L2TagFenceName(const ArcKey *tag, const char *dbname, size_t *len);
extern void L2ScopeNames(const ArcKey *key, const char **dbname,
						 const char **rolename);
extern XLogRecPtr TwoCacheInvalidationLsn(void);
extern char *L2KeyName(const ArcKey *key, const char *dbname,
					   const char *rolename, size_t *len);
extern char *L2Message(const ArcKey *key, const char *dbname,
					   const char *rolename, TcMessageOp op, XLogRecPtr lsn,
					   int *len);

#endif							/* TWOCACHE_L2_H */
