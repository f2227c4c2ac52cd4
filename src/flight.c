/*-------------------------------------------------------------------------
 *
 * flight.c
 *	  Single-flight fetches: flight slots, waits, takeover and fencing.
 *
 * A backend that misses a key and has a fetch query claims a flight slot for
 * the key in the key's partition and runs the fetch; backends that miss the
 * same key meanwhile find the slot and wait for the flight instead of
 * fetching.  When the filler finishes, fails, is cancelled or exits, it
 * releases the slot (bumping its sequence number) and wakes them; they look
 * the key up again and either find the value or, if none was stored, one of
 * them claims a new slot: that is the takeover.  A backend never waits for a
 * flight it owns itself or for one whose owner is waiting, directly or
 * through others, for a flight this backend owns (nested fetch queries could
 * otherwise deadlock); it then fetches without a slot.
 *
 * Waits are lock waits.  The filler of a flight holds a heavyweight lock of
 * the flight's own, and a waiter waits by requesting that lock; releasing
 * it at the end of the flight wakes the waiters.  A wait for a flight is
 * thereby an edge PostgreSQL's deadlock detector sees: a cycle through it
 * and ordinary locks (a waiter holds a lock that the filler's fetch waits
 * for) is found after deadlock_timeout and ends in 40P01 in one of the
 * backends, like any deadlock, instead of lasting until statement_timeout.
 * (A condition variable, which waiters used to sleep on, hides the edge.)
 * pg_locks, pg_blocking_pids() and log_lock_waits show the waits too.
 *
 * - The tag: LOCKTAG_USERLOCK, a class core reserves for add-on code and
 *   never uses ("userlock" in pg_locks and in wait_event), in the default
 *   lock method; field1 is the key's database, field2 the slot's number in
 *   the pool, field3 the low 32 bits of the slot's seq when the flight
 *   began, field4 FLIGHT_LOCK_MARK.  Each flight has a tag of its own, so a
 *   flight never meets a late waiter of the slot's previous one.  Not an
 *   advisory lock: pg_advisory_unlock_all(), which a fetch query may call,
 *   drops every session lock of the user lock method, whatever its tag.
 * - The filler takes it in ExclusiveLock, at session level, in FlightBegin
 *   before the slot is published, and releases it in FlightEnd after seq is
 *   bumped: whenever a waiter can find the flight its lock is held, and a
 *   waiter the lock lets through finds seq changed.  A session lock belongs
 *   to no resource owner, so its life is exactly the ticket's, ended by the
 *   FlightEnd of every path that ends a ticket (below); a transaction lock
 *   would belong to whatever resource owner was current at FlightBegin (a
 *   portal's), which FlightEnd, run from an abort or exit callback, cannot
 *   name.  It is taken without waiting (no one else can hold a new flight's
 *   tag); if the lock table is full the fetch runs without a slot instead.
 * - A waiter requests it in ShareLock (waiters do not block each other), at
 *   transaction level, after releasing the partition lock, and releases it
 *   as soon as it is granted.  Cancel and statement_timeout end the wait
 *   with their errors, as they end any lock wait.  twocache.fetch_wait_timeout
 *   is the wait's lock_timeout, set at a GUC nest level of our own for the
 *   one request (so the session's lock_timeout does not apply to flight
 *   waits, as it never did); its 55P03 is caught and becomes
 *   FLIGHT_WAIT_TIMEOUT.  That catch needs no subtransaction (one could not
 *   be started in parallel mode, where twocache_get, PARALLEL RESTRICTED,
 *   can run): ProcessInterrupts raises lock_timeout's error only after
 *   LockErrorCleanup() has taken the backend off the lock's wait queue, no
 *   LWLock is held, and nothing else changed since the request began, so
 *   there is nothing for an abort to undo.  Any other error is rethrown.
 * - The fetch query runs through SPI in the filler's own transaction, so
 *   its lock waits are the filler's: the detector follows waiter -> filler
 *   (the flight's lock) -> whatever the fetch waits for, nested flights
 *   included.
 * - Each fetch in progress holds one entry of the shared lock table (sized
 *   by max_locks_per_transaction), a nested one more each, up to
 *   twocache.max_fetch_depth; each waiter holds one while it waits.  A
 *   waiter that finds the table full fetches for itself instead of waiting.
 *
 * Fencing (whether a fill that began before an invalidation may be stored)
 * is fence.c's: a ticket records where fencing starts (FenceStart), and the
 * slot keeps the exact fence of its own key (FlightSlotFence).
 *
 * Locking: a slot on a partition's flights list, the partition's fences and
 * its list are protected by the partition's LWLock (exclusive to change).
 * Each backend claims and frees only its own slots (a fixed range of the
 * pool, by pgprocno), so claiming takes no lock.  A slot's seq is atomic so
 * waiters can check it without the lock.  Every slot a backend owns has a
 * ticket in the backend's static storage (one per slot), on its list of
 * owned tickets until released: by FlightEnd on the normal and caught-error
 * paths, by the abort of the (sub)transaction the flight began in whatever
 * error ended it (a cancel while Redis is written, say), and by an exit
 * callback on FATAL or process exit, so no slot, and no flight lock,
 * outlives its owner.
 *
 * Lock order: a partition LWLock, then the lock manager's own LWLocks,
 * which FlightBegin's conditional request and FlightEnd's release of a
 * flight's lock take inside; never the reverse.  A backend never waits for
 * a heavyweight lock, a flight's or any other, while it holds a partition
 * LWLock (others would queue on the LWLock, uninterruptibly, as long as the
 * wait lasts, and a cycle through it would be invisible to the deadlock
 * detector): FlightWait releases it before requesting the flight's lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "fence.h"
#include "flight.h"
#include "twocache.h"

typedef struct FlightSlot
{
	dlist_node	node;			/* on a partition's flights while claimed */
	uint32		hash;
	Oid			dbid;
	Oid			roleid;
	uint32		keylen;
	int			owner;			/* pgprocno of the filler */
	pg_atomic_uint64 seq;		/* bumped each time the slot is released */
	uint64		inval_counter;	/* partition counter at the last invalidation
								 * of this very key during the flight, or 0 */
	struct FlightSlot *lead;	/* whose lock and seq the flight has: the slot
								 * itself, or a batch item's lead */
	bool		batch;			/* the lead of a batch (on no list) */
	ArcPartition *part;			/* a batch item's partition, while claimed */
	char	   *key;			/* key bytes; NULL for a batch item, which
								 * matches by hash and length */
} FlightSlot;

/*
 * field4 of a flight's lock tag (pg_locks.objsubid), marking the userlock as
 * twocache's should any other add-on use that class too.
 */
#define FLIGHT_LOCK_MARK	0x7463

/*
 * Every PGPROC owns TWOCACHE_MAX_FETCH_DEPTH slots of its own, so no set of
 * backends can exhaust the pool for the others: a backend holds one slot per
 * fetch it has in progress, and twocache.max_fetch_depth (at most
 * TWOCACHE_MAX_FETCH_DEPTH) bounds how many nest.
 */
typedef struct FlightPool
{
	int			nslots;
	int			nprocs;
	pg_atomic_uint32 in_flight;
	pg_atomic_uint32 *waiting_for;	/* [nprocs]: 1 + pgprocno of the owner
									 * of the flight a backend waits for, or 0 */
	FlightSlot *slots;			/* [nprocs * TWOCACHE_MAX_FETCH_DEPTH] */
	FlightSlot *items;			/* [nprocs * FLIGHT_BATCH_ITEMS] */
} FlightPool;

/* Tickets of the flights this backend owns, innermost first. */
static dlist_head owned = DLIST_STATIC_INIT(owned);
static bool callbacks_registered = false;

/* Which of this backend's own slots are in use (bit i: slot i). */
static uint32 my_slots_used = 0;

/* The tickets of this backend's slots (ticket i: slot i). */
static FlightTicket my_tickets[TWOCACHE_MAX_FETCH_DEPTH];

/*
 * Batch items of this backend claimed (item i: bit i % 64 of word i / 64),
 * and how many, with the lead slot (index into my slots) of each.
 */
static uint64 my_items_used[FLIGHT_BATCH_ITEMS / 64];
static uint8 my_item_lead[FLIGHT_BATCH_ITEMS];
static int	my_nitems = 0;
static int	my_item_hint = 0;	/* where to look for a free item first */

static void release_owned(int min_level);
static void end_item(FlightSlot *item);
static void end_items_of(FlightSlot *lead);

StaticAssertDecl(TWOCACHE_MAX_FETCH_DEPTH <= 32, "my_slots_used has 32 bits");

static int
pool_nprocs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static int
pool_nslots(void)
{
	return pool_nprocs() * TWOCACHE_MAX_FETCH_DEPTH;
}

/* Shared memory needed for the flight pool. */
Size
FlightShmemSize(void)
{
	Size		size = MAXALIGN(sizeof(FlightPool));

	size = add_size(size, MAXALIGN(mul_size(pool_nprocs(), sizeof(pg_atomic_uint32))));
	size = add_size(size, mul_size(pool_nslots(), sizeof(FlightSlot)));
	size = add_size(size, mul_size(pool_nslots(), TWOCACHE_MAX_KEY_LEN));
	size = add_size(size, mul_size(mul_size(pool_nprocs(), FLIGHT_BATCH_ITEMS),
								   sizeof(FlightSlot)));
	return size;
}

/* Lay out and initialize the pool at shared memory creation. */
FlightPool *
FlightShmemInit(char *base)
{
	FlightPool *pool = (FlightPool *) base;
	char	   *p = base + MAXALIGN(sizeof(FlightPool));
	int			i;

	pool->nslots = pool_nslots();
	pool->nprocs = pool_nprocs();
	pg_atomic_init_u32(&pool->in_flight, 0);
	pool->waiting_for = (pg_atomic_uint32 *) p;
	for (i = 0; i < pool->nprocs; i++)
		pg_atomic_init_u32(&pool->waiting_for[i], 0);
	p += MAXALIGN(mul_size(pool->nprocs, sizeof(pg_atomic_uint32)));
	pool->slots = (FlightSlot *) p;
	p += mul_size(pool->nslots, sizeof(FlightSlot));
	for (i = 0; i < pool->nslots; i++)
	{
		pg_atomic_init_u64(&pool->slots[i].seq, 0);
		pool->slots[i].lead = &pool->slots[i];
		pool->slots[i].key = p;
		p += TWOCACHE_MAX_KEY_LEN;
	}
	pool->items = (FlightSlot *) p;
	for (i = 0; i < pool->nprocs * FLIGHT_BATCH_ITEMS; i++)
	{
		pg_atomic_init_u64(&pool->items[i].seq, 0);
		pool->items[i].key = NULL;
	}
	return pool;
}

/* Number of fetches in progress on this server. */
uint32
FlightsInProgress(void)
{
	return pg_atomic_read_u32(&twocache_shared->flights->in_flight);
}

/*
 * Is slot the flight of key?  A batch item has no key bytes: one of
 * another key with the same hash and length matches too, which only makes
 * a reader wait for a batch that does not fill its key (it then looks
 * again) or a key's invalidation fence another key's fill (which is then
 * not stored): never a wrong value.
 */
static bool
slot_matches(FlightSlot *slot, const ArcKey *key)
{
	return slot->hash == key->hash && slot->dbid == key->dbid &&
		slot->roleid == key->roleid && slot->keylen == key->len &&
		(slot->key == NULL || memcmp(slot->key, key->data, key->len) == 0);
}

/*
 * The tag of the lock of the flight of slot that began at seq (see the
 * header).  dbid is the key's database.
 */
static void
flight_locktag(LOCKTAG *tag, Oid dbid, FlightSlot *slot, uint64 seq)
{
	FlightPool *pool = twocache_shared->flights;

	tag->locktag_field1 = dbid;
	tag->locktag_field2 = (uint32) (slot - pool->slots);
	tag->locktag_field3 = (uint32) seq;
	tag->locktag_field4 = FLIGHT_LOCK_MARK;
	tag->locktag_type = LOCKTAG_USERLOCK;
	tag->locktag_lockmethodid = DEFAULT_LOCKMETHOD;
}

/* Find the flight for key, if any.  Caller holds the partition lock. */
FlightSlot *
FlightFind(ArcPartition *part, const ArcKey *key)
{
	dlist_iter	iter;

	dlist_foreach(iter, &part->flights)
	{
		FlightSlot *slot = dlist_container(FlightSlot, node, iter.cur);

		if (slot_matches(slot, key))
			return slot;
	}
	return NULL;
}

/*
 * At backend exit (including FATAL, which skips PG_FINALLY blocks): clear
 * our waits-for edge, so the next owner of our PGPROC does not inherit it,
 * and release every slot we still own, waking its waiters.
 */
static void
flight_exit_callback(int code pg_attribute_unused(),
					 Datum arg pg_attribute_unused())
{
	pg_atomic_write_u32(&twocache_shared->flights->waiting_for[MyProc->pgprocno], 0);

	/*
	 * We may be exiting from anywhere; release LWLocks first so releasing
	 * our slots cannot wait on ourselves.  The transaction abort that follows
	 * would release them anyway.
	 */
	LWLockReleaseAll();
	release_owned(0);
}

/*
 * Release the tickets of flights begun at nesting level min_level or deeper
 * (1: all).  Called at the abort of a (sub)transaction, after it released
 * its LWLocks; raises no error.
 */
static void
release_owned(int min_level)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &owned)
	{
		FlightTicket *t = dlist_container(FlightTicket, node, iter.cur);

		if (t->nest_level >= min_level)
			FlightEnd(t);
	}
}

static void
flight_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		release_owned(1);
}

static void
flight_subxact_callback(SubXactEvent event,
						SubTransactionId mySubid pg_attribute_unused(),
						SubTransactionId parentSubid pg_attribute_unused(),
						void *arg pg_attribute_unused())
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		release_owned(GetCurrentTransactionNestLevel());
}

static void
ensure_callbacks(void)
{
	if (!callbacks_registered)
	{
		before_shmem_exit(flight_exit_callback, (Datum) 0);
		RegisterXactCallback(flight_xact_callback, NULL);
		RegisterSubXactCallback(flight_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

static void
ticket_start(ArcPartition *part, FlightTicket *t)
{
	t->part = part;
	t->slot = NULL;
	t->nest_level = 0;
	FenceStart(part, t);
}

/*
 * Claim one of this backend's flight slots for key, take the flight's lock
 * and record where fencing starts; returns its ticket, valid until
 * FlightEnd.  Callers checked the fetch depth (TwoCacheFetchDepthCheck), so
 * a slot is free; were none, or were the lock table full, the fetch would
 * run unguarded but fenced, with the ticket in *unguarded.  Caller holds the
 * partition lock exclusively (the flight's lock is taken without waiting).
 */
/*
 * Claim a free slot of this backend and take its flight's lock (dbid: the
 * lock tag's database): returns the slot's number among this backend's, or
 * -1 when none is free or the lock table is full (the fetch then runs
 * without single flight rather than failing).
 */
static int
claim_slot(Oid dbid)
{
	FlightPool *pool = twocache_shared->flights;
	FlightSlot *slot;
	LOCKTAG		tag;
	LockAcquireResult res;
	int			i;

	for (i = 0; i < TWOCACHE_MAX_FETCH_DEPTH; i++)
		if ((my_slots_used & (UINT32_C(1) << i)) == 0)
			break;
	if (i == TWOCACHE_MAX_FETCH_DEPTH)
		return -1;
	/* what may fail comes before anything is claimed */
	ensure_callbacks();
	slot = &pool->slots[MyProc->pgprocno * TWOCACHE_MAX_FETCH_DEPTH + i];
	flight_locktag(&tag, dbid, slot, pg_atomic_read_u64(&slot->seq));
	res = LockAcquireExtended(&tag, ExclusiveLock, true, true, false, NULL);
	if (res == LOCKACQUIRE_NOT_AVAIL)
		return -1;
	Assert(res == LOCKACQUIRE_OK);
	my_slots_used |= UINT32_C(1) << i;
	return i;
}

FlightTicket *
FlightBegin(ArcPartition *part, const ArcKey *key, FlightTicket *unguarded)
{
	FlightPool *pool = twocache_shared->flights;
	FlightSlot *slot;
	FlightTicket *t;
	uint64		seq;
	int			i = claim_slot(key->dbid);

	if (i < 0)
	{
		ticket_start(part, unguarded);
		return unguarded;
	}
	slot = &pool->slots[MyProc->pgprocno * TWOCACHE_MAX_FETCH_DEPTH + i];
	seq = pg_atomic_read_u64(&slot->seq);
	t = &my_tickets[i];
	ticket_start(part, t);

	slot->hash = key->hash;
	slot->dbid = key->dbid;
	slot->roleid = key->roleid;
	slot->keylen = key->len;
	memcpy(slot->key, key->data, key->len);
	slot->batch = false;
	slot->owner = MyProc->pgprocno;
	slot->inval_counter = 0;
	dlist_push_head(&part->flights, &slot->node);
	pg_atomic_fetch_add_u32(&pool->in_flight, 1);

	t->slot = slot;
	t->seq = seq;
	t->nest_level = GetCurrentTransactionNestLevel();
	dlist_push_head(&owned, &t->node);
	return t;
}

/*
 * Start a fenced fetch without a slot (after a wait timed out, or when
 * waiting would deadlock).  Caller holds the partition lock.
 */
void
FlightBeginUnguarded(ArcPartition *part, FlightTicket *t)
{
	ticket_start(part, t);
}

/*
 * Release the ticket's slot, if it has one, and the flight's lock, which
 * wakes its waiters.  Caller holds the partition lock exclusively or no
 * twocache lock at all (then it is taken here).  Safe to call on error
 * paths, from abort and exit callbacks, and more than once; raises no
 * error.
 */
void
FlightEnd(FlightTicket *t)
{
	FlightPool *pool = twocache_shared->flights;
	FlightSlot *slot = t->slot;
	LOCKTAG		tag;
	bool		locked;

	if (slot == NULL)
		return;
	t->slot = NULL;
	if (slot->lead != slot)
	{
		end_item(slot);
		return;
	}
	dlist_delete(&t->node);
	flight_locktag(&tag, slot->dbid, slot, t->seq);

	if (slot->batch)
	{
		/* a batch's items first, each under its partition's lock */
		end_items_of(slot);
	}
	else
	{
		locked = LWLockHeldByMeInMode(t->part->lock, LW_EXCLUSIVE);
		if (!locked)
			LWLockAcquire(t->part->lock, LW_EXCLUSIVE);
		Assert(pg_atomic_read_u64(&slot->seq) == t->seq);
		dlist_delete(&slot->node);
		pg_atomic_fetch_add_u64(&slot->seq, 1);
		if (!locked)
			LWLockRelease(t->part->lock);
	}

	/* after seq moved on, so every waiter this lets through sees it ended */
	LockRelease(&tag, ExclusiveLock, true);

	my_slots_used &= ~(UINT32_C(1) << ((slot - pool->slots) % TWOCACHE_MAX_FETCH_DEPTH));
	pg_atomic_fetch_sub_u32(&pool->in_flight, 1);
}

/* ----------------------------------------------------------------
 * Batch flights (twocache_mget with a fetch query)
 *
 * A batch fills many keys with one fetch.  Its lead is one of the
 * backend's slots, on no partition's list: it holds the flight's lock and
 * seq for the whole batch.  Each key the batch fills has an item, one of
 * FLIGHT_BATCH_ITEMS of the backend's own in the pool, published on the
 * key's partition's list like a slot: FlightFind finds it, a reader waits
 * on its lead's lock (so until the batch ends), and an invalidation of the
 * key fences it exactly (FlightSlotFence).  Items keep no key bytes (see
 * slot_matches).  Ending an item only unpublishes it; ending the lead
 * unpublishes the items left, then bumps seq and releases the lock, which
 * wakes every waiter of the batch.  Items are not tickets on the owned
 * list: the abort or exit that ends the lead ends them, so none outlives
 * its batch.  Ending a lead takes partition locks, so the caller holds
 * none (abort and exit callbacks hold none by then).
 * ----------------------------------------------------------------
 */
static FlightSlot *
my_item(int i)
{
	return &twocache_shared->flights->items[MyProc->pgprocno * FLIGHT_BATCH_ITEMS + i];
}

static bool
item_used(int i)
{
	return (my_items_used[i / 64] & (UINT64CONST(1) << (i % 64))) != 0;
}

/* Unpublish item i, taking its partition's lock unless held; no error. */
static void
release_item(int i)
{
	FlightSlot *item = my_item(i);
	ArcPartition *part = item->part;
	bool		locked = LWLockHeldByMeInMode(part->lock, LW_EXCLUSIVE);

	if (!locked)
		LWLockAcquire(part->lock, LW_EXCLUSIVE);
	dlist_delete(&item->node);
	item->part = NULL;
	if (!locked)
		LWLockRelease(part->lock);
	my_items_used[i / 64] &= ~(UINT64CONST(1) << (i % 64));
	my_nitems--;
}

static void
end_item(FlightSlot *item)
{
	int			i = (int) (item - my_item(0));

	/* released already when its batch's lead ended (an error path) */
	if (i >= 0 && i < FLIGHT_BATCH_ITEMS && item_used(i))
		release_item(i);
}

static void
end_items_of(FlightSlot *lead)
{
	int			leadno = (int) ((lead - twocache_shared->flights->slots) %
								TWOCACHE_MAX_FETCH_DEPTH);
	int			i;

	for (i = 0; i < FLIGHT_BATCH_ITEMS && my_nitems > 0; i++)
		if (item_used(i) && my_item_lead[i] == leadno)
			release_item(i);
	pg_atomic_fetch_add_u64(&lead->seq, 1);
}

/*
 * Begin a batch for keys of database dbid (the keys' dbid): returns its
 * lead's ticket, or NULL when no slot is free or the lock table is full
 * (the batch's keys are then fetched without single flight).  Caller
 * checked the fetch depth and holds no LWLock.
 */
FlightTicket *
FlightBatchBegin(Oid dbid)
{
	FlightPool *pool = twocache_shared->flights;
	FlightSlot *slot;
	FlightTicket *t;
	int			i = claim_slot(dbid);

	if (i < 0)
		return NULL;
	slot = &pool->slots[MyProc->pgprocno * TWOCACHE_MAX_FETCH_DEPTH + i];
	t = &my_tickets[i];
	t->part = NULL;
	t->nest_level = GetCurrentTransactionNestLevel();
	t->slot = slot;
	t->seq = pg_atomic_read_u64(&slot->seq);
	slot->hash = 0;
	slot->dbid = dbid;
	slot->roleid = InvalidOid;
	slot->keylen = 0;
	slot->batch = true;
	slot->owner = MyProc->pgprocno;
	slot->inval_counter = 0;
	pg_atomic_fetch_add_u32(&pool->in_flight, 1);
	dlist_push_head(&owned, &t->node);
	return t;
}

/*
 * Publish key, which has no flight (caller checked with FlightFind), as
 * part of lead's batch, and start t, its fill's ticket.  Returns false,
 * doing nothing, when all of this backend's items are in use.  Caller holds
 * the partition lock exclusively.
 */
bool
FlightBatchAdd(FlightTicket *lead, ArcPartition *part, const ArcKey *key,
			   FlightTicket *t)
{
	FlightSlot *item;
	int			i;

	if (my_nitems >= FLIGHT_BATCH_ITEMS)
		return false;
	/* from where the last claim stopped: a batch claims them in order */
	for (i = my_item_hint; item_used(i); i = (i + 1) % FLIGHT_BATCH_ITEMS)
		;
	my_item_hint = (i + 1) % FLIGHT_BATCH_ITEMS;
	item = my_item(i);
	item->hash = key->hash;
	item->dbid = key->dbid;
	item->roleid = key->roleid;
	item->keylen = key->len;
	item->owner = MyProc->pgprocno;
	item->inval_counter = 0;
	item->lead = lead->slot;
	item->batch = false;
	item->part = part;
	my_item_lead[i] = (uint8) ((lead->slot - twocache_shared->flights->slots) %
							   TWOCACHE_MAX_FETCH_DEPTH);
	my_items_used[i / 64] |= UINT64CONST(1) << (i % 64);
	my_nitems++;
	dlist_push_head(&part->flights, &item->node);

	ticket_start(part, t);
	t->slot = item;
	t->seq = lead->seq;
	return true;
}

/*
 * Would waiting for a flight owned by owner deadlock?  True if the owner is
 * this backend, or waits (transitively) for a flight this backend owns.
 */
static bool
wait_would_deadlock(int owner)
{
	FlightPool *pool = twocache_shared->flights;
	int			x = owner;
	int			i;

	for (i = 0; i <= pool->nprocs; i++)
	{
		uint32		next;

		if (x == MyProc->pgprocno)
			return true;
		if (x < 0 || x >= pool->nprocs)
			return false;
		next = pg_atomic_read_u32(&pool->waiting_for[x]);
		if (next == 0)
			return false;
		x = (int) next - 1;
	}
	return true;
}

/* What a wait is for, for the error context of errors raised in it. */
typedef struct FlightWaitContext
{
	const ArcKey *key;
	int			filler_pid;
} FlightWaitContext;

static void
wait_error_callback(void *arg)
{
	FlightWaitContext *cx = (FlightWaitContext *) arg;

	errcontext("waiting for the twocache fetch for key \"%.*s\" in process %d",
			   (int) cx->key->len, cx->key->data, cx->filler_pid);
}

/*
 * Wait in the lock manager until the flight whose lock has this tag ends,
 * or timeout_ms passes (<= 0: no timeout).  Returns FLIGHT_WAIT_DONE when
 * its lock was granted (and released at once), FLIGHT_WAIT_TIMEOUT, or
 * FLIGHT_WAIT_FAILED when the lock table is full.  Cancel, statement_timeout
 * and the deadlock detector end the wait with their errors.  Caller holds
 * no LWLock.
 */
static FlightWaitResult
wait_for_flight_lock(const LOCKTAG *tag, int timeout_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile FlightWaitResult result = FLIGHT_WAIT_DONE;
	int			nestlevel;
	char		timeout[32];

	/* the wait's lock_timeout, in place of the session's, for this request */
	snprintf(timeout, sizeof(timeout), "%d", Max(timeout_ms, 0));
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("lock_timeout", timeout, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	PG_TRY();
	{
		if (LockAcquireExtended(tag, ShareLock, false, false, false,
								NULL) == LOCKACQUIRE_NOT_AVAIL)
			result = FLIGHT_WAIT_FAILED;
		else
			LockRelease(tag, ShareLock, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (timeout_ms <= 0 || edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}

		/*
		 * Our lock_timeout ran out.  ProcessInterrupts took us off the wait
		 * queue before raising it (LockErrorCleanup; again here, which is
		 * idempotent); the lock may have been granted just before, so give
		 * it back then.  See the header for why no subtransaction is needed.
		 */
		FreeErrorData(edata);
		FlushErrorState();
		LockErrorCleanup();
		if (LockHeldByMe(tag, ShareLock))
			LockRelease(tag, ShareLock, false);
		result = FLIGHT_WAIT_TIMEOUT;
	}
	PG_END_TRY();

	AtEOXact_GUC(true, nestlevel);
	return result;
}

/*
 * Wait for another backend's flight on key to end.  Caller holds the
 * partition lock exclusively and found slot with FlightFind; the lock is
 * released before waiting (except when FLIGHT_WAIT_DEADLOCK is returned,
 * when nothing was done and the lock is still held).  The wait is for the
 * flight's lock (see the header), so the deadlock detector sees it.
 * timeout_ms <= 0 waits until the flight ends or the wait is interrupted
 * (cancel, statement timeout, termination, a deadlock), which raises an
 * error as usual.
 */
FlightWaitResult
FlightWait(ArcPartition *part, const ArcKey *key, FlightSlot *slot,
		   int timeout_ms)
{
	FlightPool *pool = twocache_shared->flights;
	pg_atomic_uint32 *mine = &pool->waiting_for[MyProc->pgprocno];
	FlightSlot *lead = slot->lead;	/* a batch item waits for its batch */
	uint64		seq = pg_atomic_read_u64(&lead->seq);
	LOCKTAG		tag;
	FlightWaitContext cx;
	ErrorContextCallback errcb;
	volatile FlightWaitResult result = FLIGHT_WAIT_DONE;

	/*
	 * Publish our waits-for edge before walking the chain: two backends
	 * closing a cycle at once (their keys in different partitions) then
	 * cannot both miss it.  Both may see it and both fetch unguarded, which
	 * is safe.
	 */
	ensure_callbacks();
	pg_atomic_write_u32(mine, (uint32) slot->owner + 1);
	pg_memory_barrier();
	if (wait_would_deadlock(slot->owner))
	{
		pg_atomic_write_u32(mine, 0);
		return FLIGHT_WAIT_DEADLOCK;
	}

	/* read what the wait needs while the partition lock protects the slot */
	flight_locktag(&tag, lead->dbid, lead, seq);
	cx.key = key;
	cx.filler_pid = ProcGlobal->allProcs[slot->owner].pid;
	LWLockRelease(part->lock);

	errcb.callback = wait_error_callback;
	errcb.arg = &cx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	PG_TRY();
	{
		result = wait_for_flight_lock(&tag, timeout_ms);
	}
	PG_FINALLY();
	{
		pg_atomic_write_u32(mine, 0);
	}
	PG_END_TRY();
	error_context_stack = errcb.previous;

	/*
	 * The filler holds the lock for as long as the flight is published, so
	 * a grant means it ended.  Were the flight still on (it cannot be), do
	 * not wait again where the detector could not see it: fetch instead.
	 */
	if (result == FLIGHT_WAIT_DONE && pg_atomic_read_u64(&lead->seq) == seq)
		result = FLIGHT_WAIT_FAILED;
	return result;
}

/*
 * The fence of the slot's own key during its flight (fence.c): the partition
 * counter at the last invalidation of this very key, or 0.
 */
uint64 *
FlightSlotFence(FlightSlot *slot)
{
	return &slot->inval_counter;
}
