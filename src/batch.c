/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Batch read-through: twocache_mget with a fetch query (1.4).
 *
 * The keys of a batch are looked up in L1, the misses in L2 in one round
 * trip, and the keys missing from both are fetched with one run of the
 * batch query ($1 text[], rows (key, value[, ttl])), then stored in both
 * layers as single fills are (cache.c's L1 primitives, cache.h), fenced key
 * by key, Redis written in one pipeline (L2FillMany).
 *
 * Single flight holds per key: the keys a batch fills are published as
 * items of its flight (flight.c), so gets and batches of them wait for it,
 * and a batch waits for the keys other backends are filling.  Rounds
 * repeat for keys whose flight ended without a value and for keys beyond
 * FLIGHT_BATCH_ITEMS.
 *
 * Locking: as in cache.c, partition LWLocks only around L1 work, never
 * across Redis I/O or the fetch; the batch's lead is claimed under a
 * partition lock without waiting (FlightBatchBegin), as FlightBegin is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "cache.h"
#include "flight.h"
#include "inval.h"
#include "l2.h"
#include "redis.h"
#include "twocache.h"

static int
key_cmp(const ArcKey *a, const ArcKey *b)
{
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return memcmp(a->data, b->data, a->len);
}

static int
key_index_cmp(const void *a, const void *b, void *arg)
{
	const ArcKey *keys = (const ArcKey *) arg;
	int			r = key_cmp(&keys[*(const int *) a], &keys[*(const int *) b]);

	if (r != 0)
		return r;
	return *(const int *) a - *(const int *) b;
}

/* Where a key of a batch stands */
typedef enum BatchState
{
	BATCH_PENDING,				/* not looked up this round yet */
	BATCH_MINE,					/* this round fills it (item or unguarded) */
	BATCH_WAIT,					/* another backend's flight fills it */
	BATCH_DONE
} BatchState;

typedef struct BatchKey
{
	BatchState	state;
	bool		counted;		/* its L1 miss was counted */
	bool		waited;			/* it was served by another's flight */
	bool		unguarded;		/* fetch it without a flight next round */
	FlightTicket ticket;
} BatchKey;

/*
 * Look key i up in L1 for a batch; on a hit set values[i] and return true.
 * A value that is not valid text here counts as a miss to fetch unguarded.
 */
static bool
batch_lookup(ArcPartition *part, HTAB *hash, const ArcKey *key, BatchKey *bk,
			 text **value)
{
	ArcEntry   *e;
	bool		negative;
	int			encoding;

	if (TwoCacheSkipLocal())
	{
		bk->counted = true;		/* no L1, no L1 miss */
		return false;
	}
	e = TwoCacheFindLive(part, hash, key, GetCurrentTimestamp());
	if (e == NULL)
		return false;
	negative = e->negative;
	encoding = e->encoding;
	if (!bk->waited)
		ArcHit(part, e);
	*value = negative ? NULL : TwoCacheCopyValue(e->value, e->value_len);
	LWLockRelease(part->lock);
	if (!negative && encoding != GetDatabaseEncoding())
	{
		text	   *raw = *value;

		*value = TwoCacheValueForReader(VARDATA(raw), VARSIZE(raw) - VARHDRSZ,
										encoding, false);
		pfree(raw);
		if (*value == NULL)
		{
			if (!bk->counted)
				TwoCacheCount(TC_L1_MISSES, 1);
			bk->counted = true;
			bk->unguarded = true;
			LWLockAcquire(part->lock, LW_EXCLUSIVE);
			return false;
		}
	}
	if (!bk->waited && !bk->counted)
		TwoCacheCount(negative ? TC_NEGATIVE_HITS : TC_L1_HITS, 1);
	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	return true;
}

/*
 * Fetch the nmine keys of mine[] (indexes into keys) with one run of the
 * batch query, and store each result in both layers as a single fill would
 * (fenced by its ticket, which is ended here).  Keys the query returns no
 * row for are not found.
 */
static void
batch_fetch(int nmine, const int *mine, const ArcKey *keys, BatchKey *bk,
			text **values, const FetchQuery *query, int64 ttl_ms,
			const ArcTags *tags)
{
	L2FillStart *starts = palloc0(sizeof(L2FillStart) * nmine);
	ArcKey	   *mkeys = palloc(sizeof(ArcKey) * nmine);
	FetchBatchResult br;
	const ArcTags *store_tags = tags;
	bool		cacheable = true;
	bool		l2 = TwoCacheRedisEnabled();
	int			nstore = 0;
	L2FillItem *items;
	int		   *item_key;
	bool	   *stored;
	int			i;

	for (i = 0; i < nmine; i++)
		mkeys[i] = keys[mine[i]];
	/* where the fills start for Redis's fences; 0 if unknown */
	if (l2 && !L2TimeMany(nmine, mkeys, starts))
		l2 = false;
	TwoCacheCount(TC_FETCHES, 1);
	PG_TRY();
	{
		TwoCacheRunBatchFetch(query, nmine, mkeys, &br);
	}
	PG_CATCH();
	{
		TwoCacheCount(TC_FETCH_ERRORS, 1);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* twocache.auto_tag: the tables the query read are every key's tags */
	if (br.too_many_tables)
		cacheable = false;
	else if (br.tables.len > 0)
	{
		ArcTags    *all = palloc(sizeof(ArcTags));

		TwoCacheTagsMerge(tags, &br.tables, all);
		if (TwoCacheTagsCount(all) > TWOCACHE_MAX_TAGS)
			cacheable = false;
		store_tags = all;
	}
	/* this transaction wrote: the values may show uncommitted rows */
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		cacheable = false;

	items = palloc(sizeof(L2FillItem) * nmine);
	item_key = palloc(sizeof(int) * nmine);
	stored = palloc(sizeof(bool) * nmine);
	for (i = 0; i < nmine; i++)
	{
		int			k = mine[i];
		FetchResult *fr = br.present[i] ? &br.rows[i] : NULL;
		bool		found = fr != NULL && fr->found;
		HTAB	   *hash;
		ArcPartition *part = TwoCachePartitionFor(&keys[k], &hash);

		values[k] = found ? cstring_to_text_with_len(fr->value, fr->value_len) : NULL;
		bk[k].state = BATCH_DONE;
		if (!cacheable)
		{
			TwoCacheCount(TC_UNCACHEABLE, 1);
			FlightEnd(&bk[k].ticket);
			continue;
		}
		if (!found && twocache_not_found_ttl == 0)
		{
			FlightEnd(&bk[k].ticket);
			continue;
		}
		if (TwoCacheValueFit(&keys[k], found ? fr->value_len : 0,
							 store_tags) != TWOCACHE_FITS)
		{
			TwoCacheCount(TC_TOO_LARGE, 1);
			FlightEnd(&bk[k].ticket);
			continue;
		}
		items[nstore].key = &keys[k];
		items[nstore].value = found ? fr->value : NULL;
		items[nstore].len = found ? fr->value_len : 0;
		items[nstore].negative = !found;
		items[nstore].ttl_ms = !found ? TwoCacheCapTtl(twocache_not_found_ttl) :
			TwoCacheCapTtl(fr->has_ttl ? fr->ttl_ms : ttl_ms);
		items[nstore].start = starts[i];
		/* a key withheld from L2, or stale already, is kept out of Redis */
		if (!l2 || starts[i].redis_us == 0 ||
			InvalL2Withheld(&keys[k], store_tags, PG_UINT64_MAX) ||
			TwoCacheFillIsStale(part, &keys[k], store_tags, &bk[k].ticket))
			items[nstore].start.redis_us = 0;
		item_key[nstore] = k;
		nstore++;
	}

	/* Redis: the fresh ones in one pipeline (two with tags) */
	if (nstore > 0 && l2)
	{
		int			nl2 = 0;
		L2FillItem *l2items = palloc(sizeof(L2FillItem) * nstore);
		int		   *l2of = palloc(sizeof(int) * nstore);

		for (i = 0; i < nstore; i++)
			if (items[i].start.redis_us != 0)
			{
				l2items[nl2] = items[i];
				l2of[nl2++] = i;
			}
		for (i = 0; i < nstore; i++)
			stored[i] = true;
		if (nl2 > 0)
		{
			bool	   *l2stored = palloc(sizeof(bool) * nl2);

			if (L2FillMany(nl2, l2items, store_tags, l2stored, NULL, NULL))
				for (i = 0; i < nl2; i++)
					stored[l2of[i]] = l2stored[i];
		}
	}
	else
		for (i = 0; i < nstore; i++)
			stored[i] = true;

	for (i = 0; i < nstore; i++)
	{
		int			k = item_key[i];
		HTAB	   *hash;
		ArcPartition *part = TwoCachePartitionFor(&keys[k], &hash);

		if (!stored[i])
		{
			/* Redis holds a newer value, or a fence refused it (L2Fill) */
			TwoCacheCount(TC_STALE_FILLS_REJECTED, 1);
			FlightEnd(&bk[k].ticket);
			continue;
		}
		if (items[i].start.redis_us != 0 &&
			TwoCacheFillIsStale(part, &keys[k], store_tags, &bk[k].ticket))
			(void) TwoCacheTakeBack(&keys[k]);
		(void) TwoCacheL1Fill(part, hash, &keys[k], items[i].value, items[i].len,
							  items[i].negative, store_tags, items[i].ttl_ms,
							  &bk[k].ticket);
	}
}

/*
 * Batch read-through: values[i] for each of the n keys, L1 first, then one
 * L2 round trip for the misses, then one run of the batch fetch query for
 * the keys missing from both, whose results are stored in both layers.
 * Single flight holds per key: a key another backend is filling (a get or a
 * batch) is waited for, and the keys this batch fills are published as its
 * items (flight.c), so gets and batches of them wait for it.  Rounds repeat
 * for keys whose flight ended without a value, and for keys beyond
 * FLIGHT_BATCH_ITEMS, until every key has its answer.
 */
void
TwoCacheMGetFill(int n, const ArcKey *keys, text **values,
				 const FetchQuery *query, int64 ttl_ms, const ArcTags *tags)
{
	BatchKey   *bk = palloc0(sizeof(BatchKey) * Max(n, 1));
	int		   *first = palloc(sizeof(int) * Max(n, 1));
	int		   *order = palloc(sizeof(int) * Max(n, 1));
	int		   *mine = palloc(sizeof(int) * Max(n, 1));
	ArcKey	   *mkeys = palloc(sizeof(ArcKey) * Max(n, 1));
	L2Entry    *l2 = palloc(sizeof(L2Entry) * Max(n, 1));
	int			i;

	/* a key given twice is looked up once: first[i] is its first place */
	for (i = 0; i < n; i++)
	{
		order[i] = i;
		values[i] = NULL;
	}
	qsort_arg(order, n, sizeof(int), key_index_cmp, (void *) keys);
	for (i = 0; i < n; i++)
		first[order[i]] = (i > 0 && key_cmp(&keys[order[i]], &keys[order[i - 1]]) == 0) ?
			first[order[i - 1]] : order[i];
	for (i = 0; i < n; i++)
		bk[i].state = first[i] == i ? BATCH_PENDING : BATCH_DONE;

	for (;;)
	{
		FlightTicket *volatile lead = NULL;
		volatile bool lead_tried = false;
		int			nmine = 0;
		int			nguarded = 0;
		bool		more = false;
		int			j;

		PG_TRY();
		{
			/* L1, and claim the keys nobody is filling */
			for (i = 0; i < n; i++)
			{
				HTAB	   *hash;
				ArcPartition *part;
				FlightSlot *slot;

				if (bk[i].state != BATCH_PENDING)
					continue;
				part = TwoCachePartitionFor(&keys[i], &hash);
				LWLockAcquire(part->lock, LW_EXCLUSIVE);
				if (batch_lookup(part, hash, &keys[i], &bk[i], &values[i]))
				{
					LWLockRelease(part->lock);
					bk[i].state = BATCH_DONE;
					continue;
				}
				if (!bk[i].counted)
					TwoCacheCount(TC_L1_MISSES, 1);
				bk[i].counted = true;
				slot = bk[i].unguarded ? NULL : FlightFind(part, &keys[i]);
				if (slot == NULL && !bk[i].unguarded && !lead_tried)
				{
					/*
					 * The batch's lead, at its first key to fill (54001 here
					 * is raised before anything is claimed; error recovery
					 * frees the partition lock).  Taken without waiting, as
					 * FlightBegin takes a flight's lock.  NULL: no slot, the
					 * keys are fetched unguarded.
					 */
					TwoCacheFetchDepthCheck();
					lead = FlightBatchBegin(keys[i].dbid);
					lead_tried = true;
				}
				if (slot != NULL)
					bk[i].state = BATCH_WAIT;
				else if (!bk[i].unguarded && lead != NULL &&
						 FlightBatchAdd(lead, part, &keys[i], &bk[i].ticket))
				{
					bk[i].state = BATCH_MINE;
					nguarded++;
				}
				else if (bk[i].unguarded || lead == NULL || nguarded == 0)
				{
					/* no single flight for it (no slot, or no item left) */
					FlightBeginUnguarded(part, &bk[i].ticket);
					bk[i].state = BATCH_MINE;
				}
				else
					more = true;	/* items used up: the next round */
				LWLockRelease(part->lock);
				if (bk[i].state == BATCH_MINE)
					mine[nmine++] = i;
			}

			/* L2 for ours, one round trip */
			if (nmine > 0 && TwoCacheRedisEnabled())
			{
				for (j = 0; j < nmine; j++)
					mkeys[j] = keys[mine[j]];
				if (!L2Get(nmine, mkeys, l2))
					memset(l2, 0, sizeof(L2Entry) * nmine);
				for (j = 0; j < nmine; j++)
				{
					int			k = mine[j];
					HTAB	   *hash;
					ArcPartition *part = TwoCachePartitionFor(&keys[k], &hash);

					if (TwoCacheL2Answer(part, hash, &keys[k], &l2[j],
										 &bk[k].ticket, &values[k]))
						bk[k].state = BATCH_DONE;
				}
				/* the rest are fetched */
				for (i = 0, j = 0; j < nmine; j++)
					if (bk[mine[j]].state == BATCH_MINE)
						mine[i++] = mine[j];
				nmine = i;
			}

			if (nmine > 0)
				batch_fetch(nmine, mine, keys, bk, values, query, ttl_ms, tags);
		}
		PG_CATCH();
		{
			/* every item ends with its lead: a waiter takes over */
			if (lead != NULL)
				FlightEnd(lead);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (lead != NULL)
			FlightEnd(lead);

		/* wait for the keys others fill, then look again */
		for (i = 0; i < n; i++)
		{
			HTAB	   *hash;
			ArcPartition *part;
			FlightSlot *slot;

			if (bk[i].state != BATCH_WAIT)
				continue;
			more = true;
			bk[i].state = BATCH_PENDING;
			part = TwoCachePartitionFor(&keys[i], &hash);
			LWLockAcquire(part->lock, LW_EXCLUSIVE);
			slot = FlightFind(part, &keys[i]);
			if (slot == NULL)
			{
				LWLockRelease(part->lock);
				continue;
			}
			switch (FlightWait(part, &keys[i], slot, twocache_fetch_wait_timeout))
			{
				case FLIGHT_WAIT_DONE:
					if (!bk[i].waited)
						TwoCacheCount(TC_FETCH_WAITS, 1);
					bk[i].waited = true;
					break;
				case FLIGHT_WAIT_TIMEOUT:
					if (!bk[i].waited)
						TwoCacheCount(TC_FETCH_WAITS, 1);
					bk[i].unguarded = true;
					break;
				case FLIGHT_WAIT_FAILED:
					bk[i].unguarded = true;
					break;
				case FLIGHT_WAIT_DEADLOCK:
					LWLockRelease(part->lock);
					bk[i].unguarded = true;
					break;
			}
		}
		for (i = 0; i < n && !more; i++)
			if (bk[i].state == BATCH_PENDING)
				more = true;
		if (!more)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	for (i = 0; i < n; i++)
		if (first[i] != i)
			values[i] = values[first[i]];
}
