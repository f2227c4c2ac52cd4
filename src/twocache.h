/*-------------------------------------------------------------------------
 *
 * twocache.h
 *	  Limits, settings, shared state and cross-file prototypes of twocache.
 *
 * twocache keeps an ARC (arc.c) per partition of shared memory; each
 * partition owns a slice of the value arena (store.c), a dynahash directory,
 * its in-flight fetches (flight.c) and one LWLock.  fetch.c runs fetch
 * queries through SPI, l2.c is the Redis layer over the connections of
 * redis.c (one node: transport, TLS, protocol), redis_topology.c (which
 * node: a single Redis, Sentinel) and redis_cluster.c (Redis Cluster; key
 * slots in redis_slots.c),
 * inval.c owns deletes and tag invalidations (here and on every server),
 * worker.c applies other servers' messages, and funcs.c is the SQL surface.
 *
 * Lock order, for every file: a backend holds at most one partition LWLock
 * at a time (scans take them one after another); under it, it may take the
 * tag fence spinlock (fence.c), and the lock manager's own LWLocks inside
 * flight.c's calls that take a flight's heavyweight lock without waiting or
 * release it; nothing else.  The worker state and stats spinlocks are taken
 * alone, and so is the invalidation queue's LWLock (inval.c).  No LWLock or
 * spinlock is held across Redis I/O, SPI or a heavyweight lock wait (a wait
 * for another backend's flight is one, flight.c).
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
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/hsearch.h"

#include "arc.h"

/* Limits */
#define TWOCACHE_MAX_KEY_LEN		1024
#define TWOCACHE_MAX_INSTANCE_ID	63
#define TWOCACHE_MAX_TAGS			64	/* per entry */
#define TWOCACHE_TAG_STRIPES		1024
#define TWOCACHE_MAX_PARTITIONS		1024
#define TWOCACHE_MIN_ARENA			(64 * 1024)	/* smallest arena per partition */
#define TWOCACHE_MAX_FETCH_DEPTH	16	/* highest twocache.max_fetch_depth */

/* Settings (twocache.c) */
typedef enum TwoCacheScope
{
	TWOCACHE_SCOPE_DATABASE,
	TWOCACHE_SCOPE_CLUSTER,
	TWOCACHE_SCOPE_ROLE			/* database and current_user */
} TwoCacheScope;

extern int	twocache_max_entries;
extern int	twocache_memory_kb;
extern int	twocache_partitions;
extern int	twocache_max_value_size;
extern int	twocache_default_ttl;
extern int	twocache_not_found_ttl;
extern bool twocache_auto_tag;
extern bool twocache_skip_local;
extern int	twocache_lease_ttl;
extern int	twocache_local_max_ttl;
extern int	twocache_fetch_wait_timeout;
extern int	twocache_max_ttl;
extern int	twocache_max_fetch_depth;
extern int	twocache_scope;
extern char *twocache_instance_id;
extern char *twocache_redis_url;
extern int	twocache_redis_timeout;
extern int	twocache_redis_retry_interval;
extern char *twocache_key_prefix;
extern char *twocache_channel;
extern char *twocache_redis_tls_ca_file;
extern char *twocache_redis_tls_cert_file;
extern char *twocache_redis_tls_key_file;
extern int	twocache_redis_tls_verify;

typedef enum TwoCacheTlsVerify
{
	TWOCACHE_TLS_VERIFY_FULL,	/* the CA, and the host name */
	TWOCACHE_TLS_VERIFY_CA,		/* the CA only */
	TWOCACHE_TLS_VERIFY_NONE	/* nothing: encryption only */
} TwoCacheTlsVerify;

/* only_if of twocache_set */
typedef enum TwoCacheOnlyIf
{
	TWOCACHE_ONLY_IF_ALWAYS,
	TWOCACHE_ONLY_IF_ABSENT,
	TWOCACHE_ONLY_IF_PRESENT
} TwoCacheOnlyIf;

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
	/* not in SPEC.md's list: after the other columns of twocache_stats */
	TC_INVALIDATIONS_DEFERRED,
	TC_NUM_COUNTERS
} TwoCacheCounter;

/* State of the background worker, for twocache_status(); under mutex. */
typedef struct TwoCacheWorkerState
{
	slock_t		mutex;
	int			pid;			/* 0 when not running */
	bool		connected;		/* command connection is up */
	bool		subscribed;
	uint64		reconnects;		/* subscriptions re-established */
	int64		deferred;		/* invalidations waiting for WAL replay */
	char		last_error[256];	/* the last Redis error of the worker or
									 * of any backend (redis.c) */
	TimestampTz last_error_at;	/* 0 = never */
	Latch	   *latch;			/* the worker's, NULL when not running */
	char		node[300];		/* node of the worker's connection ("" none) */
	char		node_role[16];	/* its role: master, replica, ... */
	/* Sentinel: the master in use (redis_topology.c) */
	char		master_host[256];
	int			master_port;
	uint64		master_epoch;	/* moves when the master changes; 0 none */
	bool		rediscover;		/* a backend asks the worker to discover */
} TwoCacheWorkerState;

/*
 * Counters of one backend.  Each backend adds only to its own slot (indexed
 * by pgprocno), without a locked instruction and without sharing a cache
 * line; readers sum the slots.  Slots outlive their backends, so sums never
 * go back; a reset records the current sums as the new zero.
 */
typedef struct TwoCacheBackendCounters
{
	pg_atomic_uint64 c[TC_NUM_COUNTERS];
} TwoCacheBackendCounters;

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

	TwoCacheBackendCounters *backend_counters;	/* [ncounter_slots] */
	int			ncounter_slots;
	slock_t		stats_mutex;	/* protects reset_base */
	uint64		reset_base[TC_NUM_COUNTERS];
	pg_atomic_uint64 stats_reset;	/* TimestampTz of the last reset */
	pg_atomic_uint64 local_flushes;
	TwoCacheWorkerState worker;

	ArcPartition *partitions;	/* [npartitions] */
	struct FlightPool *flights;
	struct LeaseShared *leases;	/* fleet lease waiters (lease.c) */

	/* tag fences (fence.c): counter and stripes under tag_mutex */
	slock_t		tag_mutex;
	pg_atomic_uint64 tag_counter;
	ArcFence	tag_stripes[TWOCACHE_TAG_STRIPES];
} TwoCacheShared;

extern TwoCacheShared *twocache_shared;

/* Add n to counter c of this backend (no lock, no locked instruction). */
static inline void
TwoCacheCount(TwoCacheCounter c, uint64 n)
{
	pg_atomic_uint64 *p = &twocache_shared->backend_counters[MyProc->pgprocno].c[c];

	pg_atomic_write_u64(p, pg_atomic_read_u64(p) + n);
}

/* twocache.c */
extern void TwoCacheDefineGucs(void);

/* shmem.c */
extern void TwoCacheShmemInit(void);
extern void TwoCacheCountersRead(uint64 *totals);
extern void TwoCacheCountersReset(void);
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
	ArcTags		tables;			/* with twocache.auto_tag: the tables read */
	bool		too_many_tables;	/* more than TWOCACHE_MAX_TAGS of them */
} FetchResult;

/*
 * A fetch query and its parameters (twocache_get's and twocache_mget's
 * params text[]): nparams < 0 when no parameter array was given, so the
 * query runs once, unprepared; otherwise its plan is prepared once per
 * backend (fetch.c's plan cache) and params[i] (text, or nulls[i]) binds
 * $i+1 (batch fetches: $i+2, after the key array).
 */
typedef struct FetchQuery
{
	const char *sql;
	int			nparams;
	Datum	   *params;
	bool	   *nulls;
} FetchQuery;

/*
 * What a batch fetch returned: rows[i] for key i (present: the query
 * returned a row for it).  Rows for keys not asked for are dropped.
 */
typedef struct FetchBatchResult
{
	bool	   *present;
	FetchResult *rows;
	ArcTags		tables;			/* with twocache.auto_tag */
	bool		too_many_tables;
} FetchBatchResult;

extern void TwoCacheRunFetch(const FetchQuery *query, const ArcKey *key,
							 FetchResult *result);
extern void TwoCacheRunBatchFetch(const FetchQuery *query, int nkeys,
								  const ArcKey *keys, FetchBatchResult *result);
extern void TwoCacheFetchDepthCheck(void);

/* funcs.c */
extern int64 TwoCacheIntervalToMs(const Interval *ttl, bool from_fetch);
extern int64 TwoCacheCapTtl(int64 ttl_ms);

/* cache.c */

/* Whether a value with its tags can be kept in L1 (TwoCacheValueFit) */
typedef enum TwoCacheFit
{
	TWOCACHE_FITS,
	TWOCACHE_OVER_MAX_VALUE_SIZE,	/* value and tags over max_value_size */
	TWOCACHE_OVER_PARTITION		/* key, value and tags over what the key's
								 * partition can hold */
} TwoCacheFit;

extern void TwoCacheKeyInit(ArcKey *key, Oid dbid, Oid roleid,
							const char *data, int len);
extern ArcPartition *TwoCachePartitionFor(const ArcKey *key, HTAB **hash);
extern TimestampTz TwoCacheExpiry(TimestampTz now, int64 ttl_ms);
extern bool TwoCacheEntryIsLive(const ArcEntry *e, TimestampTz now);
extern TwoCacheFit TwoCacheValueFit(const ArcKey *key, Size len,
									const ArcTags *tags);
extern text *TwoCacheValueForReader(const char *value, uint32 len, int src,
									bool verify);
extern bool TwoCacheLocalDelete(const ArcKey *key);
extern uint64 TwoCacheFlushLocal(void);
extern void TwoCacheDeferInvalidation(const ArcKey *key, XLogRecPtr lsn);
extern text *TwoCacheGet(const ArcKey *key, const FetchQuery *query, int64 ttl_ms,
						 const ArcTags *tags);
extern void TwoCacheMGet(int n, const ArcKey *keys, text **values);
extern bool TwoCacheSkipLocal(void);
extern void TwoCacheMGetFill(int n, const ArcKey *keys, text **values,
							 const FetchQuery *query, int64 ttl_ms,
							 const ArcTags *tags);
extern void TwoCacheProbe(const ArcKey *key, bool *is_value, int64 *ttl_ms);
extern bool TwoCacheSet(const ArcKey *key, const char *value, uint32 len,
						int64 ttl_ms, TwoCacheOnlyIf only_if, bool local_only,
						const ArcTags *tags);

/* tags.c */
struct FlightTicket;
extern void TwoCacheTagsFromArray(ArrayType *arr, ArcTags *tags);
extern bool TwoCacheTagsContain(const char *data, uint32 len, const char *tag,
								int taglen);
extern int	TwoCacheTagsCount(const ArcTags *tags);
extern void TwoCacheTagsMerge(const ArcTags *a, const ArcTags *b, ArcTags *out);
extern uint64 TwoCacheInvalidateTagLocal(Oid dbid, Oid roleid, const char *tag,
										 int taglen, XLogRecPtr lsn);

/* worker.c */
extern void TwoCacheWorkerRegister(void);
extern PGDLLEXPORT void TwoCacheWorkerMain(Datum arg);

#endif							/* TWOCACHE_H */
