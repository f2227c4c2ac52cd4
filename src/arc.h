/*-------------------------------------------------------------------------
 *
 * arc.h
 *	  One ARC partition in shared memory: directory, lists, arena, fences.
 *
 * Everything in an ArcPartition is protected by the partition's LWLock:
 * shared mode to read, exclusive mode to change anything, including the
 * ARC order on a hit.  Pointers inside a partition point into the main
 * shared memory segment, which every backend maps at the same address.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_ARC_H
#define TWOCACHE_ARC_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "storage/lwlock.h"
#include "utils/hsearch.h"

/*
 * Key identity: hashed once per call, compared byte for byte, or by
 * fingerprint against a ghost that gave its key bytes up (arc.c).
 */
typedef struct ArcKey
{
	uint32		hash;			/* hash of dbid, roleid and bytes */
	Oid			dbid;			/* InvalidOid when twocache.scope = cluster */
	Oid			roleid;			/* InvalidOid unless twocache.scope = role */
	uint32		len;			/* never 0, except in the directory for a
								 * ghost without key bytes */
	const char *data;			/* arena copy in the directory (that ghost's
								 * ArcKeyPrint); caller's bytes in a lookup
								 * key */
} ArcKey;

typedef enum ArcList
{
	ARC_T1,						/* resident, seen once recently */
	ARC_T2,						/* resident, seen at least twice */
	ARC_B1,						/* ghost of T1 */
	ARC_B2,						/* ghost of T2 */
	ARC_NLISTS
} ArcList;

#define ArcListIsGhost(l)	((l) == ARC_B1 || (l) == ARC_B2)

/*
 * An entry's tags, encoded: each tag is a 2-byte big-endian length and its
 * bytes.  len = 0: no tags.
 */
typedef struct ArcTags
{
	const char *data;
	uint32		len;
} ArcTags;

/*
 * What a ghost keeps of its key once its key bytes went back to the arena:
 * the key's length and a 64-bit fingerprint of its bytes.
 */
typedef struct ArcKeyPrint
{
	uint64		fingerprint;
	uint32		len;
} ArcKeyPrint;

/*
 * A directory entry (dynahash element).  Ghosts keep only the key: its
 * bytes while the arena has room for them, then just its ArcKeyPrint.
 */
typedef struct ArcEntry
{
	ArcKey		key;			/* hash key: must be first */
	dlist_node	node;			/* place in lists[list]; head = MRU end */
	dlist_node	keyed_node;		/* place in keyed_ghosts, for a ghost that
								 * still holds key bytes */
	ArcKeyPrint print;			/* a ghost without key bytes: its key */
	uint8		list;			/* ArcList */
	bool		negative;		/* typed not-found placeholder */
	uint8		encoding;		/* server encoding the value is in (pg_enc) */
	uint32		value_len;
	uint32		tags_len;		/* encoded tags, after the value */
	char	   *value;			/* arena chunk: the value, then the tags;
								 * NULL for ghosts, and for placeholders
								 * without tags */
	TimestampTz expires_at;		/* 0 = no expiry */
} ArcEntry;

#define ArcEntryTags(e)		((e)->value + (e)->value_len)

/* Number of bins of the arena's segregated free lists (log2 classes). */
#define ARENA_NBINS			48

/* A variable-size allocator over one slice of shared memory (store.c). */
typedef struct Arena
{
	char	   *base;
	Size		size;
	Size		used;			/* bytes in allocated chunks, headers included */
	dlist_head	bins[ARENA_NBINS];
} Arena;

/*
 * Invalidation fence: when a key stripe (or the partition) was last
 * invalidated, as a partition-local counter and a timestamp; and, on a hot
 * standby, the highest WAL position of an invalidation received before it
 * was replayed (fills from snapshots older than that are stale).
 */
typedef struct ArcFence
{
	uint64		counter;
	TimestampTz at;
	XLogRecPtr	pending_lsn;
} ArcFence;

#define ARC_FENCE_STRIPES	256

typedef struct ArcPartition
{
	LWLock	   *lock;
	int			capacity;		/* c */
	int			p;				/* target size of T1 */
	int			len[ARC_NLISTS];
	dlist_head	lists[ARC_NLISTS];
	dlist_head	keyed_ghosts;	/* ghosts of B1 and B2 whose key bytes are
								 * in the arena; head = newest */

	/* fencing of in-flight fills (fence.c) */
	uint64		inval_counter;
	ArcFence	flushed;
	ArcFence	stripes[ARC_FENCE_STRIPES];

	dlist_head	flights;		/* FlightSlots of fetches in progress */
	Arena		arena;
} ArcPartition;

/* Outcome of ArcStore */
typedef enum ArcStoreResult
{
	ARC_STORED,
	ARC_TOO_LARGE				/* could not fit even after evicting; the
								 * key has no resident entry left */
} ArcStoreResult;

/* arc.c: caller holds the partition lock exclusively unless noted */
extern void ArcPartitionInit(ArcPartition *part, LWLock *lock, int capacity,
							 char *arena_base, Size arena_size);
extern uint32 ArcKeyHash(const void *key, Size keysize);
extern int	ArcKeyMatch(const void *key1, const void *key2, Size keysize);
extern ArcEntry *ArcFind(HTAB *hash, const ArcKey *key);	/* shared lock ok */
extern void ArcHit(ArcPartition *part, ArcEntry *e);
extern void ArcRemove(ArcPartition *part, HTAB *hash, ArcEntry *e);
extern ArcStoreResult ArcStore(ArcPartition *part, HTAB *hash,
							   const ArcKey *key, const char *value,
							   uint32 value_len, bool negative, int encoding,
							   const ArcTags *tags, TimestampTz expires_at,
							   uint64 *evicted);
extern uint64 ArcClear(ArcPartition *part, HTAB *hash);
extern Size ArcMaxItemSize(ArcPartition *part);	/* no lock needed */
extern bool ArcItemFits(ArcPartition *part, Size key_len,
						Size chunk_len);	/* no lock needed */

/* store.c: caller holds the partition lock exclusively */
extern void ArenaInit(Arena *arena, char *base, Size size);
extern char *ArenaAlloc(Arena *arena, Size size);
extern void ArenaFree(Arena *arena, char *ptr);
extern Size ArenaChunkOverhead(void);

#endif							/* TWOCACHE_ARC_H */
