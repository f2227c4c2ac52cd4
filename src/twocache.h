/*-------------------------------------------------------------------------
 *
 * twocache.h
 *	  Limits, settings, shared state and cross-file prototypes of twocache.
 *
 * twocache keeps an ARC (arc.c) per partition of shared memory; each
 * partition owns a slice of the value arena (store.c), a dynahash directory,
 * its in-flight fetches (flight.c) and one LWLock.  fetch.c runs fetch
 * queries through SPI and funcs.c is the SQL surface.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_H
#define TWOCACHE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/hsearch.h"

#include "arc.h"

/* Limits */
#define TWOCACHE_MAX_KEY_LEN		1024
#define TWOCACHE_MAX_INSTANCE_ID	63
#define TWOCACHE_MAX_PARTITIONS		1024
#define TWOCACHE_MIN_ARENA			(64 * 1024)	/* smallest arena per partition */

/* Settings (twocache.c) */
typedef enum TwoCacheScope
{
	TWOCACHE_SCOPE_DATABASE,
	TWOCACHE_SCOPE_CLUSTER
} TwoCacheScope;

extern int	twocache_max_entries;
extern int	twocache_memory_kb;
extern int	twocache_partitions;
extern int	twocache_max_value_size;
extern int	twocache_default_ttl;
extern int	twocache_not_found_ttl;
extern int	twocache_local_max_ttl;
extern int	twocache_fetch_wait_timeout;
extern int	twocache_scope;
extern char *twocache_instance_id;

/* Counters of twocache_stats, in view order */
typedef enum TwoCacheCounter
{
	TC_L1_HITS,
	TC_L1_MISSES,
	TC_L2_HITS,
	TC_L2_MISSES,
	TC_NEGATIVE_HITS,
	TC_FETCHES,
	TC_FETCH_ERRORS,
	TC_FETCH_WAITS,
	TC_STALE_FILLS_REJECTED,
	TC_UNCACHEABLE,
	TC_TOO_LARGE,
	TC_EVICTIONS,
	TC_EXPIRATIONS,
	TC_INVALIDATIONS_SENT,
	TC_INVALIDATIONS_RECEIVED,
	TC_REDIS_ERRORS,
	TC_NUM_COUNTERS
} TwoCacheCounter;

/*
 * The one shared struct.  Partitions, flight slots and the arena follow it
 * in the same allocation (see shmem.c for the layout).
 */
typedef struct TwoCacheShared
{
	int			npartitions;	/* effective partition count */
	int			max_entries;	/* c, summed over partitions */
	Size		arena_bytes;	/* twocache.memory, summed over partitions */
	char		instance_id[TWOCACHE_MAX_INSTANCE_ID + 1];

	pg_atomic_uint64 counters[TC_NUM_COUNTERS];
	pg_atomic_uint64 stats_reset;	/* TimestampTz of the last reset */
	pg_atomic_uint64 local_flushes;

	ArcPartition *partitions;	/* [npartitions] */
	struct FlightPool *flights;
} TwoCacheShared;

extern TwoCacheShared *twocache_shared;

static inline void
TwoCacheCount(TwoCacheCounter c, uint64 n)
{
	pg_atomic_fetch_add_u64(&twocache_shared->counters[c], n);
}

/* twocache.c */
extern void TwoCacheDefineGucs(void);

/* shmem.c */
extern void TwoCacheShmemInit(void);
extern void TwoCacheRequireShmem(void);
extern HTAB *TwoCachePartitionHash(int partno);

/* fetch.c */
typedef struct FetchResult
{
	bool		found;			/* a row with a non-NULL value */
	char	   *value;			/* in the caller's memory context */
	uint32		value_len;
	bool		has_ttl;		/* the fetcher chose its own TTL */
	int64		ttl_ms;
} FetchResult;

extern void TwoCacheRunFetch(const char *query, const ArcKey *key,
							 FetchResult *result);

/* funcs.c */
extern int64 TwoCacheIntervalToMs(const Interval *ttl, bool from_fetch);

#endif							/* TWOCACHE_H */
