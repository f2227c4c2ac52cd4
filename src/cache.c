/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  Cache operations behind the SQL functions: L1 under the partition
 *	  locks, L2 through l2.c, and single-flight fetches (the fleet's lease:
 *	  lease.c).  Deletes and tag invalidations are inval.c's, which uses the
 *	  L1 primitives here (TwoCacheLocalDelete, TwoCacheFlushLocal); batch
 *	  read-through is batch.c's, which uses those of cache.h.
 *
 * Read path of twocache_get: L1; on a miss, the key's flight (flight.c):
 * the filler reads L2 and, on an L2 miss, runs the fetch query and stores
 * its result in L2 and L1; waiters sleep until the flight ends and look
 * again.  Every fill is fenced: it started by recording the partition's
 * invalidation counter, and it is not stored if the key was invalidated
 * since.
 *
 * Sizes: a value and its tags share one arena chunk, and a value is kept in
 * L1 only when both together fit (TwoCacheValueFit).  twocache_set checks
 * that before writing anything; a fetched value that does not fit goes to
 * neither layer, and a copy read from Redis that does not fit here (written
 * by a server with a larger max_value_size) is returned but not kept.
 *
 * Locking: partition LWLocks are taken here (exclusive for anything that
 * changes entries or ARC order, shared to inspect) and never held across
 * Redis I/O or SPI.  Values are copied out under the lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "fence.h"
#include "flight.h"
#include "inval.h"
#include "l2.h"
#include "lease.h"
#include "redis.h"
#include "twocache.h"
#include "cache.h"

/* ----------------------------------------------------------------
 * Keys, partitions, expiry
 * ----------------------------------------------------------------
 */

/* Fill in a key's identity and hash (computed once per call). */
void
TwoCacheKeyInit(ArcKey *key, Oid dbid, Oid roleid, const char *data, int len)
{
	key->dbid = dbid;
	key->roleid = roleid;
	key->len = len;
	key->data = data;
	key->hash = hash_combine(hash_combine(hash_bytes_uint32(dbid),
										  hash_bytes_uint32(roleid)),
							 hash_bytes((const unsigned char *) data, len));
}

/*
 * The partition of a key and its directory.  The high bits of the hash
 * pick it, since dynahash buckets use the low ones.
 */
ArcPartition *
TwoCachePartitionFor(const ArcKey *key, HTAB **hash)
{
	int			partno = (int) (((uint64) key->hash * twocache_shared->npartitions) >> 32);

	*hash = TwoCachePartitionHash(partno);
	return &twocache_shared->partitions[partno];
}

/*
 * Expiry time of an L1 entry with this TTL (ms, 0 = none), capped by
 * max_ttl and local_max_ttl (an L2 copy may come from a server with no cap).
 */
TimestampTz
TwoCacheExpiry(TimestampTz now, int64 ttl_ms)
{
	int64		us;
	TimestampTz result;

	ttl_ms = TwoCacheCapTtl(ttl_ms);
	if (twocache_local_max_ttl > 0 &&
		(ttl_ms == 0 || ttl_ms > twocache_local_max_ttl))
		ttl_ms = twocache_local_max_ttl;
	if (ttl_ms == 0)
		return 0;
	if (pg_mul_s64_overflow(ttl_ms, 1000, &us) ||
		pg_add_s64_overflow(now, us, &result) || result >= END_TIMESTAMP)
		return END_TIMESTAMP - 1;
	return result;
}

static inline bool
is_expired(const ArcEntry *e, TimestampTz now)
{
	return e->expires_at != 0 && e->expires_at <= now;
}

/* Is e a resident entry that has not expired? */
bool
TwoCacheEntryIsLive(const ArcEntry *e, TimestampTz now)
{
	return e != NULL && !ArcListIsGhost(e->list) && !is_expired(e, now);
}

/*
 * Can L1 keep a value of len bytes (0 for a not-found placeholder) with
 * these tags under key?  The value and its encoded tags are stored together
 * in one arena chunk, so both count: against twocache.max_value_size, and,
 * with the key, against what the key's partition can always make room for
 * (ArcItemFits).  Every write and fill asks this before storing, so a value
 * is kept in L1 exactly when it fits; one that does not is refused by
 * twocache_set (54000) and returned uncached by a read (too_large).
 */
TwoCacheFit
TwoCacheValueFit(const ArcKey *key, Size len, const ArcTags *tags)
{
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);
	Size		chunk = len + (tags != NULL ? tags->len : 0);

	if (chunk > (Size) twocache_max_value_size)
		return TWOCACHE_OVER_MAX_VALUE_SIZE;
	if (!ArcItemFits(part, key->len, chunk))
		return TWOCACHE_OVER_PARTITION;
	return TWOCACHE_FITS;
}

text *
TwoCacheCopyValue(const char *value, uint32 len)
{
	text	   *t = (text *) palloc(VARHDRSZ + len);

	SET_VARSIZE(t, VARHDRSZ + len);
	if (len > 0)
		memcpy(VARDATA(t), value, len);
	return t;
}

/*
 * A cached value made in encoding src as text of this database's encoding,
 * or NULL when it is not valid text here: not convertible, or not valid in
 * src (SQL_ASCII bytes are validated in ours).  Values are made in the
 * filler's database encoding and shared across databases in cluster scope,
 * and across servers through Redis, so a reader never trusts foreign bytes.
 * verify: check bytes claimed to be in our encoding too (they came from
 * Redis).
 */
text *
TwoCacheValueForReader(const char *value, uint32 len, int src, bool verify)
{
	int			dst = GetDatabaseEncoding();
	Oid			proc;
	char	   *buf;
	int			converted;
	text	   *result;

	if (dst == PG_SQL_ASCII || len == 0)
		return TwoCacheCopyValue(value, len);
	if (src == dst || src == PG_SQL_ASCII)
	{
		if ((verify || src == PG_SQL_ASCII) &&
			!pg_verify_mbstr(dst, value, len, true))
			return NULL;
		return TwoCacheCopyValue(value, len);
	}
	if (!PG_VALID_BE_ENCODING(src))
		return NULL;
	proc = FindDefaultConversionProc(src, dst);
	if (!OidIsValid(proc) || len >= MaxAllocSize / MAX_CONVERSION_GROWTH - 1)
		return NULL;
	buf = palloc((Size) len * MAX_CONVERSION_GROWTH + 1);
	{
		char	   *srcbuf = palloc(len + 1);

		memcpy(srcbuf, value, len);
		srcbuf[len] = '\0';
		converted = pg_do_encoding_conversion_buf(proc, src, dst,
												  (unsigned char *) srcbuf, len,
												  (unsigned char *) buf,
												  len * MAX_CONVERSION_GROWTH + 1,
												  true);
		pfree(srcbuf);
	}
	if (converted != (int) len)
		return NULL;
	result = cstring_to_text(buf);
	pfree(buf);
	return result;
}

/*
 * Find the live resident entry for key, removing it first if it expired.
 * Caller holds the partition lock exclusively.
 */
ArcEntry *
TwoCacheFindLive(ArcPartition *part, HTAB *hash, const ArcKey *key,
				 TimestampTz now)
{
	ArcEntry   *e = ArcFind(hash, key);

	if (e == NULL || ArcListIsGhost(e->list))
		return NULL;
	if (is_expired(e, now))
	{
		ArcRemove(part, hash, e);
		TwoCacheCount(TC_EXPIRATIONS, 1);
		return NULL;
	}
	return e;
}

/* ----------------------------------------------------------------
 * L1 writes
 * ----------------------------------------------------------------
 */

/*
 * Store a fill (fetched or read from L2) in L1 unless it is stale.  Returns
 * false if it was stale.  Takes the partition lock; ends t's flight under
 * it.
 */
bool
TwoCacheL1Fill(ArcPartition *part, HTAB *hash, const ArcKey *key,
			   const char *value, uint32 len, bool negative,
			   const ArcTags *tags, int64 ttl_ms, FlightTicket *t)
{
	uint64		evicted = 0;
	bool		stale;

	if (TwoCacheSkipLocal())
	{
		/* twocache.skip_local: Redis has it; L1 keeps nothing */
		FlightEnd(t);
		return true;
	}
	LWLockAcquire(part->lock, LW_EXCLUSIVE);

	/*
	 * A fill began on a miss under this lock, so a live entry now was stored
	 * after it began (a set, or a newer fill after a wait timed out): never
	 * replace it with what may be an older snapshot's value.
	 */
	stale = FenceFillIsStale(part, key, tags, t) ||
		TwoCacheFindLive(part, hash, key, GetCurrentTimestamp()) != NULL;
	if (stale)
		TwoCacheCount(TC_STALE_FILLS_REJECTED, 1);
	else if (ArcStore(part, hash, key, value, len, negative,
					  GetDatabaseEncoding(), tags,
					  TwoCacheExpiry(GetCurrentTimestamp(), ttl_ms),
					  &evicted) == ARC_TOO_LARGE)
		TwoCacheCount(TC_TOO_LARGE, 1);
	FlightEnd(t);
	LWLockRelease(part->lock);
	if (evicted > 0)
		TwoCacheCount(TC_EVICTIONS, evicted);
	return !stale;
}

/* Is a fill begun with t stale already?  Takes the lock in shared mode. */
bool
TwoCacheFillIsStale(ArcPartition *part, const ArcKey *key, const ArcTags *tags,
					const FlightTicket *t)
{
	bool		stale;

	LWLockAcquire(part->lock, LW_SHARED);
	stale = FenceFillIsStale(part, key, tags, t);
	LWLockRelease(part->lock);
	return stale;
}

/*
 * Write key = value in L1, honouring only_if, and fence in-flight fills of
 * the key.  Returns whether it wrote; when the condition held but the value
 * could not be stored, the key's old value is dropped all the same.
 */
static bool
l1_store(const ArcKey *key, const char *value, uint32 len, int64 ttl_ms,
		 TwoCacheOnlyIf only_if, const ArcTags *tags)
{
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);
	TimestampTz now = GetCurrentTimestamp();
	uint64		evicted = 0;
	ArcEntry   *e;
	bool		present;
	ArcStoreResult r;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	e = TwoCacheFindLive(part, hash, key, now);
	present = (e != NULL && !e->negative);
	if ((only_if == TWOCACHE_ONLY_IF_ABSENT && present) ||
		(only_if == TWOCACHE_ONLY_IF_PRESENT && !present))
	{
		LWLockRelease(part->lock);
		return false;
	}
	FenceKey(part, key);
	r = ArcStore(part, hash, key, value, len, false, GetDatabaseEncoding(),
				 tags, TwoCacheExpiry(now, ttl_ms),
				 &evicted);
	LWLockRelease(part->lock);

	if (evicted > 0)
		TwoCacheCount(TC_EVICTIONS, evicted);
	if (r == ARC_TOO_LARGE)
	{
		/*
		 * Callers checked the size (TwoCacheValueFit), so this is not
		 * expected; were it to happen, ArcStore dropped the old value and
		 * the fills of the key are fenced above, so this server cannot serve
		 * an older value than Redis may have taken.
		 */
		TwoCacheCount(TC_TOO_LARGE, 1);
		return false;
	}
	return true;
}

/*
 * Drop key from L1 (without a ghost) and fence in-flight fills of it.
 * Returns whether a live entry (value or placeholder) existed.
 */
bool
TwoCacheLocalDelete(const ArcKey *key)
{
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);
	ArcEntry   *e;
	bool		existed;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	e = ArcFind(hash, key);
	existed = TwoCacheEntryIsLive(e, GetCurrentTimestamp());
	if (e != NULL && !ArcListIsGhost(e->list))
		ArcRemove(part, hash, e);
	FenceKey(part, key);
	LWLockRelease(part->lock);
	return existed;
}

/*
 * On a hot standby, an invalidation of key that holds from WAL position lsn,
 * not replayed yet: drop key from L1 and make fills stale until replay gets
 * there (the worker applies the invalidation again then).
 */
void
TwoCacheDeferInvalidation(const ArcKey *key, XLogRecPtr lsn)
{
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);
	ArcEntry   *e;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	e = ArcFind(hash, key);
	if (e != NULL && !ArcListIsGhost(e->list))
		ArcRemove(part, hash, e);
	FenceKey(part, key);
	FenceDeferKey(part, key->hash, lsn);
	LWLockRelease(part->lock);
}

/* Drop every L1 entry of this server; returns how many were resident. */
uint64
TwoCacheFlushLocal(void)
{
	uint64		dropped = 0;
	int			i;

	for (i = 0; i < twocache_shared->npartitions; i++)
	{
		ArcPartition *part = &twocache_shared->partitions[i];

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		dropped += ArcClear(part, TwoCachePartitionHash(i));
		FenceAll(part);
		LWLockRelease(part->lock);
	}
	return dropped;
}

/* ----------------------------------------------------------------
 * Reads
 * ----------------------------------------------------------------
 */

/*
 * Take what L2 answered for key (e, read for a fill begun with t): on a
 * usable hit set *result (NULL for a placeholder) and store it in L1, which
 * ends t's flight; a copy that L1 cannot keep here (over this server's
 * max_value_size with its tags: another server with a larger setting wrote
 * it) is returned without being stored, and t's flight ends.  Returns
 * false, counting an L2 miss, when e is absent, withheld (an invalidation
 * of it Redis has not taken yet: inval.c) or not valid as text here; t is
 * then still open.
 */
bool
TwoCacheL2Answer(ArcPartition *part, HTAB *hash, const ArcKey *key,
				 const L2Entry *e, FlightTicket *t, text **result)
{
	uint32		len;

	*result = NULL;
	if (!e->found || InvalL2Withheld(key, &e->tags, e->generation))
	{
		TwoCacheCount(TC_L2_MISSES, 1);
		return false;
	}
	if (!e->negative)
	{
		/* a value not valid as text here is a miss (and is not replaced) */
		*result = TwoCacheValueForReader(e->value, e->len, e->encoding, true);
		if (*result == NULL)
		{
			TwoCacheCount(TC_L2_MISSES, 1);
			return false;
		}
	}
	TwoCacheCount(e->negative ? TC_NEGATIVE_HITS : TC_L2_HITS, 1);
	len = e->negative ? 0 : VARSIZE(*result) - VARHDRSZ;
	if (TwoCacheValueFit(key, len, &e->tags) != TWOCACHE_FITS)
	{
		TwoCacheCount(TC_TOO_LARGE, 1);
		FlightEnd(t);
		return true;
	}
	(void) TwoCacheL1Fill(part, hash, key, e->negative ? NULL : VARDATA(*result),
						  len, e->negative, &e->tags,
						  e->pttl_ms < 0 ? 0 : Max(e->pttl_ms, 1), t);
	return true;
}

/*
 * Read key from L2 for a fill begun with t (l2_answer).  Returns false on
 * an L2 miss or when Redis is unavailable; t is then still open.
 */
static bool
fill_from_l2(ArcPartition *part, HTAB *hash, const ArcKey *key,
			 FlightTicket *t, text **result)
{
	L2Entry		e;

	if (!TwoCacheRedisEnabled())
		return false;
	if (!L2Get(1, key, &e))
	{
		TwoCacheCount(TC_L2_MISSES, 1);
		return false;
	}
	return TwoCacheL2Answer(part, hash, key, &e, t, result);
}

/* What LeaseAcquire's check of L2 needs (fill_checks_l2) */
typedef struct FillL2Check
{
	ArcPartition *part;
	HTAB	   *hash;
	const ArcKey *key;
	FlightTicket *t;
	text	   *result;
} FillL2Check;

static bool
fill_checks_l2(void *arg)
{
	FillL2Check *c = (FillL2Check *) arg;

	return fill_from_l2(c->part, c->hash, c->key, c->t, &c->result);
}

static text *fill_under_lease(ArcPartition *part, HTAB *hash, const ArcKey *key,
							  const FetchQuery *query, int64 ttl_ms,
							  const ArcTags *tags, FlightTicket *t,
							  FleetLease *lease);

/*
 * The filler's work (fill_under_lease), then the end of the fleet lease it
 * took, if it took one: the value is in Redis by then, so the other
 * servers' waiters it wakes find it.
 */
static text *
fill(ArcPartition *part, HTAB *hash, const ArcKey *key, const FetchQuery *query,
	 int64 ttl_ms, const ArcTags *tags, FlightTicket *t)
{
	FleetLease	lease;
	text	   *result;

	lease.held = false;
	result = fill_under_lease(part, hash, key, query, ttl_ms, tags, t, &lease);
	LeaseEnd(key, &lease);
	return result;
}

/*
 * L2, else (after the fleet lease: lease.c) the fetch query; store the
 * result in both layers unless stale, uncacheable or too large for L1 with
 * its tags (then it goes to neither); end the flight whatever happens.
 * Returns the value, or NULL for not found.
 */
static text *
fill_under_lease(ArcPartition *part, HTAB *hash, const ArcKey *key,
				 const FetchQuery *query, int64 ttl_ms, const ArcTags *tags,
				 FlightTicket *t, FleetLease *lease)
{
	FetchResult fr;
	text	   *volatile result = NULL;
	volatile bool fetching = false;
	volatile bool from_l2 = false;
	L2FillStart start;			/* the clocks before our fetch: L2Fill */
	int64		fill_ttl;
	const ArcTags *store_tags;

	memset(&fr, 0, sizeof(fr));
	memset(&start, 0, sizeof(start));
	PG_TRY();
	{
		text	   *l2_result = NULL;

		FillL2Check check;

		check.part = part;
		check.hash = hash;
		check.key = key;
		check.t = t;
		check.result = NULL;
		if (fill_from_l2(part, hash, key, t, &l2_result))
		{
			result = l2_result;
			from_l2 = true;
		}
		else if (LeaseAcquire(key, lease, fill_checks_l2, &check,
							  &start) == LEASE_FILLED)
		{
			/* another server fetched it while we waited for its lease */
			result = check.result;
			from_l2 = true;
		}
		else
		{
			/*
			 * Where the fill starts for Redis's fences (read with the lease
			 * when it was taken); 0 if unknown
			 */
			if (TwoCacheRedisEnabled() && !lease->held)
				(void) L2Time(key, &start);
			TwoCacheCount(TC_FETCHES, 1);
			fetching = true;
			TwoCacheRunFetch(query, key, &fr);
			fetching = false;
		}
	}
	PG_CATCH();
	{
		if (fetching)
			TwoCacheCount(TC_FETCH_ERRORS, 1);
		/* free the slot at once: a waiter takes over */
		FlightEnd(t);
		/* and the fleet lease, so another server's waiter takes over */
		if (fetching && lease->held)
		{
			HOLD_INTERRUPTS();
			LeaseEnd(key, lease);
			RESUME_INTERRUPTS();
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (from_l2)
		return result;			/* stored in L1, flight ended */

	store_tags = tags;
	/* twocache.auto_tag: the tables the query read are tags too */
	if (fr.too_many_tables)
	{
		TwoCacheCount(TC_UNCACHEABLE, 1);
		FlightEnd(t);
		return fr.found ? cstring_to_text_with_len(fr.value, fr.value_len) : NULL;
	}
	if (fr.tables.len > 0)
	{
		ArcTags    *all = palloc(sizeof(ArcTags));

		TwoCacheTagsMerge(store_tags, &fr.tables, all);
		if (TwoCacheTagsCount(all) > TWOCACHE_MAX_TAGS)
		{
			TwoCacheCount(TC_UNCACHEABLE, 1);
			FlightEnd(t);
			return fr.found ? cstring_to_text_with_len(fr.value, fr.value_len) : NULL;
		}
		store_tags = all;
	}

	if (fr.found)
		result = cstring_to_text_with_len(fr.value, fr.value_len);

	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
	{
		/* this transaction wrote: the value may show uncommitted rows */
		TwoCacheCount(TC_UNCACHEABLE, 1);
		FlightEnd(t);
		return result;
	}
	if (!fr.found && twocache_not_found_ttl == 0)
	{
		FlightEnd(t);
		return result;
	}
	if (TwoCacheValueFit(key, fr.found ? fr.value_len : 0,
						 store_tags) != TWOCACHE_FITS)
	{
		/* L1 cannot keep it with its tags: cached in neither layer */
		TwoCacheCount(TC_TOO_LARGE, 1);
		FlightEnd(t);
		return result;
	}

	if (!fr.found)
		fill_ttl = TwoCacheCapTtl(twocache_not_found_ttl);
	else
		fill_ttl = TwoCacheCapTtl(fr.has_ttl ? fr.ttl_ms : ttl_ms);

	/*
	 * Write L2 first, unless already stale; if an invalidation arrives while
	 * we write it, take the write back (the L1 store below sees the same
	 * fence and refuses).
	 */
	/*
	 * A key withheld from L2 (inval.c) still holds the old value there; a
	 * fill that did not read Redis cannot be fenced there.
	 */
	if (TwoCacheRedisEnabled() && start.redis_us != 0 &&
		!InvalL2Withheld(key, store_tags, PG_UINT64_MAX) &&
		!TwoCacheFillIsStale(part, key, store_tags, t))
	{
		bool		stored;
		TcRedisCommand end;
		bool		end_sent = false;
		bool		ending = LeaseEndCommand(key, lease, &end);
		bool		filled;

		/* the lease ends in the fill's round trip, right after the value */
		filled = L2Fill(key, fr.value, fr.value_len, !fr.found, store_tags,
						fill_ttl, &start, &stored, ending ? &end : NULL, &end_sent);
		if (end_sent)
			LeaseEnded(lease);
		if (filled)
		{
			if (!stored)
			{
				/*
				 * Redis holds a value stored after this fill began (another
				 * server's set or fill), or a delete or tag invalidation
				 * happened since, on any server (a fence in Redis): ours is
				 * not newer, or may be older, so L1 does not take it either.
				 */
				TwoCacheCount(TC_STALE_FILLS_REJECTED, 1);
				FlightEnd(t);
				return result;
			}
			if (TwoCacheFillIsStale(part, key, store_tags, t))
				(void) TwoCacheTakeBack(key);
		}
	}
	(void) TwoCacheL1Fill(part, hash, key, fr.value, fr.value_len, !fr.found,
						  store_tags, fill_ttl, t);
	return result;
}

/*
 * Look key up in L1; on a miss, read L2 and, with a fetch query, run the
 * fetch once per server (single flight) and store its result in both
 * layers.  Returns NULL for not found.
 */
text *
TwoCacheGet(const ArcKey *key, const FetchQuery *query, int64 ttl_ms,
			const ArcTags *tags)
{
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);
	bool		waited = false;
	bool		skip = TwoCacheSkipLocal();

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		ArcEntry   *e;
		FlightSlot *slot;
		FlightTicket unguarded;
		FlightTicket *t = &unguarded;

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		e = skip ? NULL : TwoCacheFindLive(part, hash, key, now);
		if (e != NULL)
		{
			text	   *result = NULL;
			bool		negative = e->negative;
			int			encoding = e->encoding;

			/* a waiter's request was served by the fill: no second access */
			if (!waited)
				ArcHit(part, e);
			if (!negative)
				result = TwoCacheCopyValue(e->value, e->value_len);
			LWLockRelease(part->lock);
			if (!negative && encoding != GetDatabaseEncoding())
			{
				/* cluster scope: made in another database's encoding */
				text	   *raw = result;

				result = TwoCacheValueForReader(VARDATA(raw), VARSIZE(raw) - VARHDRSZ,
												encoding, false);
				pfree(raw);
				if (result == NULL)
				{
					/* not text here: a miss that keeps their entry */
					TwoCacheCount(TC_L1_MISSES, 1);
					if (query == NULL)
						return NULL;
					LWLockAcquire(part->lock, LW_EXCLUSIVE);
					FlightBeginUnguarded(part, t);
					LWLockRelease(part->lock);
					return fill(part, hash, key, query, ttl_ms, tags, t);
				}
			}
			if (!waited)
				TwoCacheCount(negative ? TC_NEGATIVE_HITS : TC_L1_HITS, 1);
			return result;
		}
		if (!waited && !skip)
			TwoCacheCount(TC_L1_MISSES, 1);

		if (query == NULL)
		{
			text	   *result = NULL;

			/* no fetch: a fenced read of L2, without a flight */
			FlightBeginUnguarded(part, t);
			LWLockRelease(part->lock);
			if (!fill_from_l2(part, hash, key, t, &result))
				return NULL;
			return result;
		}

		slot = FlightFind(part, key);
		if (slot == NULL)
		{
			/* 54001 before claiming a slot (error recovery frees the lock) */
			TwoCacheFetchDepthCheck();
			t = FlightBegin(part, key, &unguarded);
		}
		else
		{
			switch (FlightWait(part, key, slot, twocache_fetch_wait_timeout))
			{
				case FLIGHT_WAIT_DONE:
					if (!waited)
						TwoCacheCount(TC_FETCH_WAITS, 1);
					waited = true;
					continue;
				case FLIGHT_WAIT_TIMEOUT:
					if (!waited)
						TwoCacheCount(TC_FETCH_WAITS, 1);
					LWLockAcquire(part->lock, LW_EXCLUSIVE);
					FlightBeginUnguarded(part, t);
					break;
				case FLIGHT_WAIT_FAILED:
					LWLockAcquire(part->lock, LW_EXCLUSIVE);
					FlightBeginUnguarded(part, t);
					break;
				case FLIGHT_WAIT_DEADLOCK:
					FlightBeginUnguarded(part, t);
					break;
			}
		}
		LWLockRelease(part->lock);
		return fill(part, hash, key, query, ttl_ms, tags, t);
	}
}

/*
 * Read n keys: L1 first (each an ARC access), then one L2 round trip for
 * the misses, whose copies are stored in L1 when they fit (else returned
 * only).  values[i] is NULL when key i was not found.
 */
void
TwoCacheMGet(int n, const ArcKey *keys, text **values)
{
	int		   *missing = palloc(sizeof(int) * Max(n, 1));
	ArcKey	   *mkeys = palloc(sizeof(ArcKey) * Max(n, 1));
	FlightTicket *tickets = palloc(sizeof(FlightTicket) * Max(n, 1));
	L2Entry    *l2 = palloc(sizeof(L2Entry) * Max(n, 1));
	int			nmissing = 0;
	bool		skip = TwoCacheSkipLocal();
	int			i;

	for (i = 0; i < n; i++)
	{
		HTAB	   *hash;
		ArcPartition *part = TwoCachePartitionFor(&keys[i], &hash);
		ArcEntry   *e;

		values[i] = NULL;
		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		e = skip ? NULL : TwoCacheFindLive(part, hash, &keys[i],
										   GetCurrentTimestamp());
		if (e != NULL)
		{
			bool		negative = e->negative;
			int			encoding = e->encoding;

			ArcHit(part, e);
			if (!negative)
				values[i] = TwoCacheCopyValue(e->value, e->value_len);
			LWLockRelease(part->lock);
			if (!negative && encoding != GetDatabaseEncoding())
			{
				text	   *raw = values[i];

				/* not valid text here: not found */
				values[i] = TwoCacheValueForReader(VARDATA(raw),
												   VARSIZE(raw) - VARHDRSZ,
												   encoding, false);
				pfree(raw);
			}
			TwoCacheCount(negative ? TC_NEGATIVE_HITS : TC_L1_HITS, 1);
			continue;
		}
		if (!skip)
			TwoCacheCount(TC_L1_MISSES, 1);
		FlightBeginUnguarded(part, &tickets[nmissing]);
		LWLockRelease(part->lock);
		missing[nmissing] = i;
		mkeys[nmissing] = keys[i];
		nmissing++;
	}

	if (nmissing == 0 || !TwoCacheRedisEnabled())
		return;
	if (!L2Get(nmissing, mkeys, l2))
	{
		TwoCacheCount(TC_L2_MISSES, nmissing);
		return;
	}
	for (i = 0; i < nmissing; i++)
	{
		HTAB	   *hash;
		ArcPartition *part = TwoCachePartitionFor(&mkeys[i], &hash);

		(void) TwoCacheL2Answer(part, hash, &mkeys[i], &l2[i], &tickets[i],
								&values[missing[i]]);
	}
}

/*
 * twocache.skip_local in two-layer mode: reads and fills go to Redis only,
 * and a write drops this server's L1 copy instead of replacing it.
 */
bool
TwoCacheSkipLocal(void)
{
	return twocache_skip_local && TwoCacheRedisEnabled();
}

/*
 * Look at key without touching the ARC or counters: whether a real value
 * is cached (L1, else L2) and its remaining life in ms (-1 none, -2 absent).
 */
void
TwoCacheProbe(const ArcKey *key, bool *is_value, int64 *ttl_ms)
{
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);
	TimestampTz now = GetCurrentTimestamp();
	ArcEntry   *e;

	*is_value = false;
	*ttl_ms = -2;
	LWLockAcquire(part->lock, LW_SHARED);
	e = ArcFind(hash, key);
	if (TwoCacheEntryIsLive(e, now) && !e->negative)
	{
		*is_value = true;
		if (e->expires_at == 0)
			*ttl_ms = -1;
		else
		{
			int64		us = e->expires_at - now;

			*ttl_ms = us / 1000 + (us % 1000 != 0);
		}
	}
	LWLockRelease(part->lock);

	if (!*is_value && TwoCacheRedisEnabled())
	{
		bool		l2_value;
		int64		pttl;

		if (L2Probe(key, &l2_value, &pttl) && l2_value)
		{
			*is_value = true;
			*ttl_ms = pttl;
		}
	}
}

/* ----------------------------------------------------------------
 * Writes
 * ----------------------------------------------------------------
 */

/*
 * Write key = value: in two-layer mode Redis decides only_if and the write
 * is published; L1 follows.  If Redis cannot be reached the write applies
 * to L1 alone, with a WARNING.  Returns whether it wrote.
 */
bool
TwoCacheSet(const ArcKey *key, const char *value, uint32 len, int64 ttl_ms,
			TwoCacheOnlyIf only_if, bool local_only, const ArcTags *tags)
{
	char		err[512];
	bool		wrote;

	if (local_only || !TwoCacheRedisEnabled())
		return l1_store(key, value, len, ttl_ms, only_if, tags);

	if (!L2Set(key, value, len, ttl_ms, only_if, tags, &wrote, err, sizeof(err)))
	{
		if (TwoCacheSkipLocal())
		{
			/* Redis only: written nowhere, and no L1 copy stays behind */
			(void) TwoCacheLocalDelete(key);
			ereport(WARNING,
					(errmsg("could not write cache key to Redis; with twocache.skip_local it was not cached"),
					 errdetail("%s", err)));
			return false;
		}
		ereport(WARNING,
				(errmsg("could not write cache key to Redis; the change was applied to the local cache only"),
				 errdetail("%s", err)));
		return l1_store(key, value, len, ttl_ms, only_if, tags);
	}
	if (wrote && TwoCacheSkipLocal())
		(void) TwoCacheLocalDelete(key);	/* this server's old copy */
	else if (wrote)
		(void) l1_store(key, value, len, ttl_ms, TWOCACHE_ONLY_IF_ALWAYS, tags);
	return wrote;
}
