/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  Fencing of in-flight fills: a fill that began before an invalidation
 *	  of its key, of its partition or of one of its tags is not stored.
 *
 * A fill records where fencing starts when it begins (FenceStart, under the
 * key's partition lock, on a miss): the partition's invalidation counter,
 * the tag counter, and, when they apply, the start of its transaction (under
 * REPEATABLE READ and SERIALIZABLE its fetch reads the transaction's
 * snapshot, which may predate the fill) and the WAL position replayed so far
 * (on a hot standby).  Every invalidation raises a fence:
 *
 *	- a key (del, set, remote message): the partition's counter, recorded in
 *	  the key's stripe (ARC_FENCE_STRIPES per partition, by hash) and in the
 *	  key's flight slot if it has one (FenceKey);
 *	- a partition (flush): its flushed fence (FenceAll);
 *	- a tag: its stripe of the shared tag stripes (TWOCACHE_TAG_STRIPES, by
 *	  database and tag), with the global tag counter (FenceTag);
 *	- on a hot standby, an invalidation whose WAL is not replayed yet also
 *	  records its position in the fence (pending_lsn: FenceDeferKey, and
 *	  FenceTag's lsn).
 *
 * One rule (fence_passed) decides for every fence whether a fill begun with
 * a ticket is stale: its counter moved past the ticket's start; or, for a
 * fill reading its transaction's snapshot, it was raised at or after the
 * transaction began; or, on a standby, it waits for WAL the fill's snapshot
 * had not replayed.  FenceFillIsStale applies it to the key (the slot's
 * record is exact for its own key during the flight; a fill without a slot
 * goes by the stripe, which other keys share, so it may be rejected
 * needlessly, never kept wrongly), the partition and every tag of the value.
 *
 * Locking: key and partition fences are under the partition's LWLock
 * (exclusive to raise them, shared is enough to check); tag fences are
 * under twocache_shared->tag_mutex, a spinlock held for a few instructions,
 * which may be taken under a partition lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "common/hashfn.h"
#include "utils/timestamp.h"

#include "fence.h"
#include "twocache.h"

/* Record where fencing starts for a fill beginning now. */
void
FenceStart(ArcPartition *part, FlightTicket *t)
{
	t->start_counter = part->inval_counter;
	t->tag_start = pg_atomic_read_u64(&twocache_shared->tag_counter);
	t->replay_start = RecoveryInProgress() ?
		GetXLogReplayRecPtr(NULL) : InvalidXLogRecPtr;
	t->xact_start = IsolationUsesXactSnapshot() ?
		GetCurrentTransactionStartTimestamp() : 0;
}

/*
 * The parts of the rule that do not depend on the counter: a fill reading
 * its transaction's snapshot is stale if the fence was raised at or after
 * the transaction began; on a standby, if the fence waits for WAL the
 * fill's snapshot had not replayed.
 */
static bool
fence_passed_snapshot(const ArcFence *f, const FlightTicket *t)
{
	return (t->xact_start != 0 && f->counter != 0 && f->at >= t->xact_start) ||
		(!XLogRecPtrIsInvalid(t->replay_start) && f->pending_lsn > t->replay_start);
}

/* The rule: was fence f, whose counter started at start, raised since? */
static bool
fence_passed(const ArcFence *f, uint64 start, const FlightTicket *t)
{
	return f->counter > start || fence_passed_snapshot(f, t);
}

/*
 * Raise the fence of key: fills of it that began earlier are stale.
 * Caller holds the partition lock exclusively.
 */
void
FenceKey(ArcPartition *part, const ArcKey *key)
{
	ArcFence   *stripe = &part->stripes[key->hash % ARC_FENCE_STRIPES];
	FlightSlot *slot = FlightFind(part, key);

	part->inval_counter++;
	stripe->counter = part->inval_counter;
	stripe->at = GetCurrentTimestamp();
	if (slot != NULL)
		*FlightSlotFence(slot) = part->inval_counter;
}

/* The same for every key of the partition (a flush). */
void
FenceAll(ArcPartition *part)
{
	part->inval_counter++;
	part->flushed.counter = part->inval_counter;
	part->flushed.at = GetCurrentTimestamp();
}

/*
 * Record that an invalidation of the key with this hash holds from WAL
 * position lsn on, which this standby has not replayed yet: fills that begin
 * before replay gets there are stale.  Caller holds the partition lock
 * exclusively.
 */
void
FenceDeferKey(ArcPartition *part, uint32 hash, XLogRecPtr lsn)
{
	ArcFence   *stripe = &part->stripes[hash % ARC_FENCE_STRIPES];

	stripe->pending_lsn = Max(stripe->pending_lsn, lsn);
}

static ArcFence *
tag_stripe(Oid dbid, const char *tag, int taglen)
{
	uint32		h = hash_bytes((const unsigned char *) tag, taglen);

	h = hash_combine(h, murmurhash32((uint32) dbid));
	return &twocache_shared->tag_stripes[h % TWOCACHE_TAG_STRIPES];
}

/*
 * Raise the fence of a tag of database dbid (of every role: fences do not
 * tell roles apart, so a role's invalidation may reject another role's fill
 * needlessly); on a standby, lsn (if valid) is the WAL position it holds
 * from, not replayed yet.
 */
void
FenceTag(Oid dbid, const char *tag, int taglen, XLogRecPtr lsn)
{
	ArcFence   *f = tag_stripe(dbid, tag, taglen);
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&twocache_shared->tag_mutex);
	f->counter = pg_atomic_add_fetch_u64(&twocache_shared->tag_counter, 1);
	f->at = now;
	if (!XLogRecPtrIsInvalid(lsn))
		f->pending_lsn = Max(f->pending_lsn, lsn);
	SpinLockRelease(&twocache_shared->tag_mutex);
}

/* Was one of tags (of database dbid) invalidated since t began? */
static bool
tags_passed(Oid dbid, const ArcTags *tags, const FlightTicket *t)
{
	const unsigned char *p;
	const unsigned char *end;
	bool		stale = false;

	if (tags == NULL || tags->len == 0)
		return false;
	p = (const unsigned char *) tags->data;
	end = p + tags->len;
	SpinLockAcquire(&twocache_shared->tag_mutex);
	while (!stale && end - p >= 2)
	{
		int			n = (p[0] << 8) | p[1];

		p += 2;
		if (n > end - p)
			break;
		stale = fence_passed(tag_stripe(dbid, (const char *) p, n), t->tag_start, t);
		p += n;
	}
	SpinLockRelease(&twocache_shared->tag_mutex);
	return stale;
}

/*
 * Is a fill of key carrying tags, begun with t, stale?  Caller holds the
 * key's partition lock.
 */
bool
FenceFillIsStale(ArcPartition *part, const ArcKey *key, const ArcTags *tags,
				 const FlightTicket *t)
{
	ArcFence   *stripe = &part->stripes[key->hash % ARC_FENCE_STRIPES];
	uint64		key_counter;

	/*
	 * The slot's record is exact; it covers the flight only, which is enough
	 * unless the snapshot predates the flight (then the stripe's time).
	 */
	key_counter = t->slot != NULL ? *FlightSlotFence(t->slot) : stripe->counter;
	return key_counter > t->start_counter ||
		fence_passed_snapshot(stripe, t) ||
		fence_passed(&part->flushed, t->start_counter, t) ||
		tags_passed(key->dbid, tags, t);
}
