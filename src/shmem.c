/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory of twocache: request, sizing, creation.
 *
 * One struct named "twocache" holds the shared header, the partitions, the
 * flight pool and the value arena, laid out in that order; each partition's
 * directory is a fixed-size dynahash of its own.  All of it is sized in
 * shmem_size() and requested in the shmem_request_hook, then created under
 * AddinShmemInitLock in the shmem_startup_hook, as pg_stat_statements does.
 *
 * Locking: the shared header's counters are atomics; everything inside a
 * partition is protected by that partition's LWLock (tranche "twocache").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "access/twophase.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "flight.h"
#include "lease.h"
#include "inval.h"
#include "twocache.h"

TwoCacheShared *twocache_shared = NULL;

static HTAB **partition_hashes = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Partitions actually used: at most one per entry of capacity and one per
 * TWOCACHE_MIN_ARENA of memory, so every partition can hold something.
 */
static int
effective_partitions(void)
{
	Size		memory = (Size) twocache_memory_kb * 1024;
	int			n = twocache_partitions;

	n = Min(n, twocache_max_entries);
	n = Min(n, (int) Max(memory / TWOCACHE_MIN_ARENA, 1));
	return Max(n, 1);
}

static int
partition_capacity(int npart, int i)
{
	return twocache_max_entries / npart + (i < twocache_max_entries % npart ? 1 : 0);
}

/* One counter slot per PGPROC. */
static int
counter_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
directory_size(int capacity)
{
	/* |T1| + |T2| + |B1| + |B2| <= 2c, plus one for an insert in progress */
	return 2 * (Size) capacity + 1;
}

/* Size of the main struct: header, partitions, flight pool, arena. */
static Size
main_size(int npart, Size *arena_offset)
{
	Size		size;

	size = MAXALIGN(sizeof(TwoCacheShared));
	size = add_size(size, PG_CACHE_LINE_SIZE);
	size = add_size(size, mul_size(counter_slots(), sizeof(TwoCacheBackendCounters)));
	size = add_size(size, MAXALIGN(mul_size(npart, sizeof(ArcPartition))));
	size = add_size(size, MAXALIGN(FlightShmemSize()));
	size = add_size(size, MAXALIGN(LeaseShmemSize()));
	*arena_offset = size;
	size = add_size(size, (Size) twocache_memory_kb * 1024);
	return size;
}

/* Everything twocache needs from shared memory: the one size function. */
static Size
shmem_size(void)
{
	int			npart = effective_partitions();
	Size		arena_offset;
	Size		size = main_size(npart, &arena_offset);
	int			i;

	for (i = 0; i < npart; i++)
		size = add_size(size, hash_estimate_size(directory_size(partition_capacity(npart, i)),
												 sizeof(ArcEntry)));
	size = add_size(size, InvalQueueShmemSize());
	return size;
}

static void
twocache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(shmem_size());
	RequestNamedLWLockTranche("twocache", effective_partitions());
	RequestNamedLWLockTranche("twocache invalidation queue", 1);
}

static void
make_instance_id(char *dst)
{
	uint8		bytes[8];
	int			i;

	if (twocache_instance_id != NULL && twocache_instance_id[0] != '\0')
	{
		strlcpy(dst, twocache_instance_id, TWOCACHE_MAX_INSTANCE_ID + 1);
		return;
	}
	if (!pg_strong_random(bytes, sizeof(bytes)))
		elog(ERROR, "could not generate random instance id");
	for (i = 0; i < (int) sizeof(bytes); i++)
		snprintf(dst + 2 * i, 3, "%02x", bytes[i]);
}

static void
twocache_shmem_startup(void)
{
	int			npart = effective_partitions();
	Size		arena_offset;
	Size		size = main_size(npart, &arena_offset);
	Size		arena_total = (Size) twocache_memory_kb * 1024;
	Size		arena_each = arena_total / npart;
	LWLockPadded *locks;
	bool		found;
	char	   *base;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	base = ShmemInitStruct("twocache", size, &found);
	twocache_shared = (TwoCacheShared *) base;
	if (!found)
	{
		char	   *p = base + MAXALIGN(sizeof(TwoCacheShared));

		memset(twocache_shared, 0, sizeof(TwoCacheShared));
		twocache_shared->npartitions = npart;
		twocache_shared->max_entries = twocache_max_entries;
		twocache_shared->arena_bytes = arena_total;
		make_instance_id(twocache_shared->instance_id);
		SpinLockInit(&twocache_shared->stats_mutex);
		SpinLockInit(&twocache_shared->tag_mutex);
		pg_atomic_init_u64(&twocache_shared->tag_counter, 0);
		memset(twocache_shared->reset_base, 0, sizeof(twocache_shared->reset_base));
		pg_atomic_init_u64(&twocache_shared->stats_reset,
						   (uint64) GetCurrentTimestamp());
		pg_atomic_init_u64(&twocache_shared->local_flushes, 0);
		SpinLockInit(&twocache_shared->worker.mutex);

		p = (char *) TYPEALIGN(PG_CACHE_LINE_SIZE, p);
		twocache_shared->backend_counters = (TwoCacheBackendCounters *) p;
		twocache_shared->ncounter_slots = counter_slots();
		for (i = 0; i < twocache_shared->ncounter_slots * TC_NUM_COUNTERS; i++)
			pg_atomic_init_u64(&twocache_shared->backend_counters[i / TC_NUM_COUNTERS].c[i % TC_NUM_COUNTERS], 0);
		p += mul_size(counter_slots(), sizeof(TwoCacheBackendCounters));
		p = (char *) MAXALIGN(p);

		twocache_shared->partitions = (ArcPartition *) p;
		p += MAXALIGN(mul_size(npart, sizeof(ArcPartition)));
		twocache_shared->flights = FlightShmemInit(p);
		p += MAXALIGN(FlightShmemSize());
		twocache_shared->leases = LeaseShmemInit(p);

		locks = GetNamedLWLockTranche("twocache");
		for (i = 0; i < npart; i++)
			ArcPartitionInit(&twocache_shared->partitions[i], &locks[i].lock,
							 partition_capacity(npart, i),
							 base + arena_offset + i * arena_each, arena_each);
	}

	partition_hashes = MemoryContextAlloc(TopMemoryContext, npart * sizeof(HTAB *));
	for (i = 0; i < npart; i++)
	{
		HASHCTL		info;
		char		name[SHMEM_INDEX_KEYSIZE];
		long		nelem = (long) directory_size(partition_capacity(npart, i));

		info.keysize = sizeof(ArcKey);
		info.entrysize = sizeof(ArcEntry);
		info.hash = ArcKeyHash;
		info.match = ArcKeyMatch;
		snprintf(name, sizeof(name), "twocache directory %d", i);
		partition_hashes[i] = ShmemInitHash(name, nelem, nelem, &info,
											HASH_ELEM | HASH_FUNCTION |
											HASH_COMPARE | HASH_FIXED_SIZE);
	}
	InvalQueueShmemInit();

	LWLockRelease(AddinShmemInitLock);
}

/* Install the shared memory hooks (from _PG_init, at preload). */
void
TwoCacheShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = twocache_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = twocache_shmem_startup;
}

/* Sum every backend's counters, less the values at the last reset. */
void
TwoCacheCountersRead(uint64 *totals)
{
	int			i,
				c;

	memset(totals, 0, sizeof(uint64) * TC_NUM_COUNTERS);
	for (i = 0; i < twocache_shared->ncounter_slots; i++)
		for (c = 0; c < TC_NUM_COUNTERS; c++)
			totals[c] += pg_atomic_read_u64(&twocache_shared->backend_counters[i].c[c]);
	SpinLockAcquire(&twocache_shared->stats_mutex);
	for (c = 0; c < TC_NUM_COUNTERS; c++)
		totals[c] -= Min(totals[c], twocache_shared->reset_base[c]);
	SpinLockRelease(&twocache_shared->stats_mutex);
}

/* Make the current sums the new zero. */
void
TwoCacheCountersReset(void)
{
	uint64		sums[TC_NUM_COUNTERS] = {0};
	int			i,
				c;

	for (i = 0; i < twocache_shared->ncounter_slots; i++)
		for (c = 0; c < TC_NUM_COUNTERS; c++)
			sums[c] += pg_atomic_read_u64(&twocache_shared->backend_counters[i].c[c]);
	SpinLockAcquire(&twocache_shared->stats_mutex);
	memcpy(twocache_shared->reset_base, sums, sizeof(sums));
	SpinLockRelease(&twocache_shared->stats_mutex);
}

/* Raise 55000 unless twocache was preloaded and its shared memory exists. */
void
TwoCacheRequireShmem(void)
{
	if (twocache_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("twocache must be loaded via shared_preload_libraries"),
				 errhint("Add twocache to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* The directory of partition partno. */
HTAB *
TwoCachePartitionHash(int partno)
{
	return partition_hashes[partno];
}
