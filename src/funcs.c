/*-------------------------------------------------------------------------
 *
 * funcs.c
 *	  SQL-callable functions of twocache.
 *
 * Each function checks its arguments completely before it touches the cache,
 * so bad input raises its SQLSTATE and leaves the cache as it was.  Then it
 * works on the key's partition under that partition's LWLock: exclusive for
 * anything that changes entries or the ARC order, shared for inspection.
 * Values are copied out under the lock; tuples and datums are built after it
 * is released.  No lock is held across a fetch (SPI).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "flight.h"
#include "twocache.h"

PG_FUNCTION_INFO_V1(twocache_get);
PG_FUNCTION_INFO_V1(twocache_set);
PG_FUNCTION_INFO_V1(twocache_del);
PG_FUNCTION_INFO_V1(twocache_local_set);
PG_FUNCTION_INFO_V1(twocache_local_del);
PG_FUNCTION_INFO_V1(twocache_local_keys);
PG_FUNCTION_INFO_V1(twocache_flush_local);
PG_FUNCTION_INFO_V1(twocache_exists);
PG_FUNCTION_INFO_V1(twocache_ttl);
PG_FUNCTION_INFO_V1(twocache_mget);
PG_FUNCTION_INFO_V1(twocache_entries);
PG_FUNCTION_INFO_V1(twocache_stats);
PG_FUNCTION_INFO_V1(twocache_stats_reset);
PG_FUNCTION_INFO_V1(twocache_status);

#define STATS_COLS		(TC_NUM_COUNTERS + 11)
#define STATUS_COLS		9
#define ENTRIES_COLS	6

static const char *const list_names[ARC_NLISTS] = {"T1", "T2", "B1", "B2"};

/* ----------------------------------------------------------------
 * Keys, TTLs, partitions
 * ----------------------------------------------------------------
 */

static Oid
scope_dbid(void)
{
	return twocache_scope == TWOCACHE_SCOPE_CLUSTER ? InvalidOid : MyDatabaseId;
}

/* Validate key bytes and build the lookup key (hashing them once). */
static void
make_key(ArcKey *key, const char *data, int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cache key must not be empty")));
	if (len > TWOCACHE_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cache key is too long"),
				 errdetail("A key may be at most %d bytes; this one is %d.",
						   TWOCACHE_MAX_KEY_LEN, len)));
	key->dbid = scope_dbid();
	key->len = len;
	key->data = data;
	key->hash = hash_combine(hash_bytes_uint32(key->dbid),
							 hash_bytes((const unsigned char *) data, len));
}

static void
key_arg(FunctionCallInfo fcinfo, int argno, ArcKey *key)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cache key must not be null")));
	t = PG_GETARG_TEXT_PP(argno);
	make_key(key, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/*
 * The partition of a key.  The high bits of the hash pick it, since dynahash
 * buckets use the low ones.
 */
static ArcPartition *
partition_for(const ArcKey *key, HTAB **hash)
{
	int			partno = (int) (((uint64) key->hash * twocache_shared->npartitions) >> 32);

	*hash = TwoCachePartitionHash(partno);
	return &twocache_shared->partitions[partno];
}

/*
 * Milliseconds of an interval TTL, months and days counted as 30 days and 24
 * hours, sub-millisecond values rounded up.  Negative raises 22023 (the
 * message names the fetch query when it returned the TTL).
 */
int64
TwoCacheIntervalToMs(const Interval *ttl, bool from_fetch)
{
	int64		days = (int64) ttl->month * DAYS_PER_MONTH + ttl->day;
	int64		day_us;
	int64		total;

	if (pg_mul_s64_overflow(days, USECS_PER_DAY, &day_us) ||
		pg_add_s64_overflow(day_us, ttl->time, &total))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("TTL is out of range")));
	if (total < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 from_fetch ? errmsg("fetch query returned a negative TTL") :
				 errmsg("TTL must not be negative")));
	return total / 1000 + (total % 1000 != 0);
}

/* TTL argument in ms: NULL means twocache.default_ttl; 0 means no expiry. */
static int64
ttl_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return twocache_default_ttl;
	return TwoCacheIntervalToMs(PG_GETARG_INTERVAL_P(argno), false);
}

/* Expiry time of an L1 entry with this TTL, capped by local_max_ttl. */
static TimestampTz
expiry(TimestampTz now, int64 ttl_ms)
{
	int64		us;
	TimestampTz result;

	if (twocache_local_max_ttl > 0 &&
		(ttl_ms == 0 || ttl_ms > twocache_local_max_ttl))
		ttl_ms = twocache_local_max_ttl;
	if (ttl_ms == 0)
		return 0;
	if (pg_mul_s64_overflow(ttl_ms, 1000, &us) ||
		pg_add_s64_overflow(now, us, &result) || result >= DT_NOEND)
		return DT_NOEND - 1;
	return result;
}

static inline bool
is_expired(const ArcEntry *e, TimestampTz now)
{
	return e->expires_at != 0 && e->expires_at <= now;
}

static inline bool
is_live(const ArcEntry *e, TimestampTz now)
{
	return e != NULL && !ArcListIsGhost(e->list) && !is_expired(e, now);
}

static text *
copy_value(const ArcEntry *e)
{
	text	   *t = (text *) palloc(VARHDRSZ + e->value_len);

	SET_VARSIZE(t, VARHDRSZ + e->value_len);
	if (e->value_len > 0)
		memcpy(VARDATA(t), e->value, e->value_len);
	return t;
}

/*
 * Find the live resident entry for key, removing it first if it expired.
 * Caller holds the partition lock exclusively.
 */
static ArcEntry *
find_live(ArcPartition *part, HTAB *hash, const ArcKey *key, TimestampTz now)
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
 * Reads and fetches
 * ----------------------------------------------------------------
 */

/*
 * Store a fetched value (or placeholder) unless the fill is stale, then end
 * the flight.  Caller holds no lock.
 */
static void
store_fill(ArcPartition *part, HTAB *hash, const ArcKey *key,
		   FetchResult *fr, int64 ttl_ms, FlightTicket *t)
{
	int64		fill_ttl;
	uint64		evicted = 0;

	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
	{
		/* this transaction wrote: the value may show uncommitted rows */
		TwoCacheCount(TC_UNCACHEABLE, 1);
		FlightEnd(t);
		return;
	}
	if (fr->found && fr->value_len > (uint32) twocache_max_value_size)
	{
		TwoCacheCount(TC_TOO_LARGE, 1);
		FlightEnd(t);
		return;
	}
	if (!fr->found && twocache_not_found_ttl == 0)
	{
		FlightEnd(t);
		return;
	}

	if (!fr->found)
		fill_ttl = twocache_not_found_ttl;
	else
		fill_ttl = fr->has_ttl ? fr->ttl_ms : ttl_ms;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	if (FlightFillIsStale(part, key->hash, t))
		TwoCacheCount(TC_STALE_FILLS_REJECTED, 1);
	else if (ArcStore(part, hash, key, fr->value, fr->value_len, !fr->found,
					  expiry(GetCurrentTimestamp(), fill_ttl), &evicted) == ARC_TOO_LARGE)
		TwoCacheCount(TC_TOO_LARGE, 1);
	FlightEnd(t);
	LWLockRelease(part->lock);
	if (evicted > 0)
		TwoCacheCount(TC_EVICTIONS, evicted);
}

/*
 * Run the fetch of a ticket, store what it returned and end the flight,
 * whatever happens.  Returns the value, or NULL for not found.
 */
static text *
fetch_and_store(ArcPartition *part, HTAB *hash, const ArcKey *key,
				const char *query, int64 ttl_ms, FlightTicket *t)
{
	FetchResult fr;

	TwoCacheCount(TC_FETCHES, 1);
	PG_TRY();
	{
		TwoCacheRunFetch(query, key, &fr);
	}
	PG_CATCH();
	{
		/* free the slot at once: a waiter takes over */
		TwoCacheCount(TC_FETCH_ERRORS, 1);
		FlightEnd(t);
		PG_RE_THROW();
	}
	PG_END_TRY();

	store_fill(part, hash, key, &fr, ttl_ms, t);
	return fr.found ? cstring_to_text_with_len(fr.value, fr.value_len) : NULL;
}

/*
 * Look key up in L1; on a miss, with a fetch query, run the fetch once per
 * server (single flight) and store its result.  Returns NULL for not found.
 */
static text *
cache_get(const ArcKey *key, const char *query, int64 ttl_ms)
{
	HTAB	   *hash;
	ArcPartition *part = partition_for(key, &hash);
	bool		waited = false;

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		ArcEntry   *e;
		FlightSlot *slot;
		FlightTicket t;

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		e = find_live(part, hash, key, now);
		if (e != NULL)
		{
			text	   *result = NULL;
			bool		negative = e->negative;

			/* a waiter's request was served by the fill: no second access */
			if (!waited)
				ArcHit(part, e);
			if (!negative)
				result = copy_value(e);
			LWLockRelease(part->lock);
			if (!waited)
				TwoCacheCount(negative ? TC_NEGATIVE_HITS : TC_L1_HITS, 1);
			return result;
		}
		if (!waited)
			TwoCacheCount(TC_L1_MISSES, 1);
		if (query == NULL)
		{
			LWLockRelease(part->lock);
			return NULL;
		}

		slot = FlightFind(part, key);
		if (slot == NULL)
			FlightBegin(part, key, &t);
		else
		{
			switch (FlightWait(part, slot, twocache_fetch_wait_timeout))
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
					FlightBeginUnguarded(part, &t);
					break;
				case FLIGHT_WAIT_DEADLOCK:
					FlightBeginUnguarded(part, &t);
					break;
			}
		}
		LWLockRelease(part->lock);
		return fetch_and_store(part, hash, key, query, ttl_ms, &t);
	}
}

/*
 * twocache_get(key text, fetch_query text, ttl interval) returns text
 */
Datum
twocache_get(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	char	   *query = NULL;
	int64		ttl_ms;
	text	   *result;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	ttl_ms = ttl_arg(fcinfo, 2);
	if (!PG_ARGISNULL(1))
	{
		query = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (query[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("fetch query must not be empty")));
	}

	result = cache_get(&key, query, ttl_ms);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

/*
 * twocache_mget(keys text[]) returns table(key text, value text)
 */
Datum
twocache_mget(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	ArcKey	   *keys;

	TwoCacheRequireShmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("array of cache keys must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("array of cache keys must be one-dimensional")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);

	keys = palloc(sizeof(ArcKey) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("cache key must not be null"),
					 errdetail("Element %d of the array is null.", i + 1)));
		t = DatumGetTextPP(elems[i]);
		make_key(&keys[i], VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		text	   *value = cache_get(&keys[i], NULL, 0);
		Datum		values[2];
		bool		isnull[2] = {false, false};

		if (value == NULL)
			continue;
		values[0] = elems[i];
		values[1] = PointerGetDatum(value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}

/*
 * twocache_exists(key text) returns boolean: a real value is cached.
 */
Datum
twocache_exists(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	HTAB	   *hash;
	ArcPartition *part;
	ArcEntry   *e;
	bool		result;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	part = partition_for(&key, &hash);

	LWLockAcquire(part->lock, LW_SHARED);
	e = ArcFind(hash, &key);
	result = is_live(e, GetCurrentTimestamp()) && !e->negative;
	LWLockRelease(part->lock);
	PG_RETURN_BOOL(result);
}

/*
 * twocache_ttl(key text) returns bigint: ms left, -1 no expiry, -2 absent.
 */
Datum
twocache_ttl(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	HTAB	   *hash;
	ArcPartition *part;
	ArcEntry   *e;
	TimestampTz now = GetCurrentTimestamp();
	int64		result = -2;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	part = partition_for(&key, &hash);

	LWLockAcquire(part->lock, LW_SHARED);
	e = ArcFind(hash, &key);
	if (is_live(e, now) && !e->negative)
	{
		if (e->expires_at == 0)
			result = -1;
		else
		{
			int64		us = e->expires_at - now;

			result = us / 1000 + (us % 1000 != 0);
		}
	}
	LWLockRelease(part->lock);
	PG_RETURN_INT64(result);
}

/* ----------------------------------------------------------------
 * Writes
 * ----------------------------------------------------------------
 */

typedef enum OnlyIf
{
	ONLY_IF_ALWAYS,
	ONLY_IF_ABSENT,
	ONLY_IF_PRESENT
} OnlyIf;

static OnlyIf
only_if_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
		return ONLY_IF_ALWAYS;
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(s, "absent") == 0)
		return ONLY_IF_ABSENT;
	if (strcmp(s, "present") == 0)
		return ONLY_IF_PRESENT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for only_if: \"%s\"", s),
			 errhint("Use 'absent', 'present' or NULL.")));
	return ONLY_IF_ALWAYS;		/* keep compiler quiet */
}

static text *
value_arg(FunctionCallInfo fcinfo, int argno, const ArcKey *key,
		  ArcPartition *part)
{
	text	   *value;
	Size		len;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cache value must not be null"),
				 errhint("Use twocache_del() to remove a key.")));
	value = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(value);
	if (len > (Size) twocache_max_value_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cache value is too large"),
				 errdetail("The value is %zu bytes; twocache.max_value_size is %d bytes.",
						   len, twocache_max_value_size)));
	if (key->len + len + 2 * ArenaChunkOverhead() > ArcMaxItemSize(part))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cache value is too large"),
				 errdetail("The key and value take %zu bytes; a partition of twocache.memory can hold at most %zu.",
						   key->len + len, ArcMaxItemSize(part))));
	return value;
}

/*
 * Write key = value in L1, honouring only_if; fences in-flight fills of the
 * key.  Returns whether it wrote.
 */
static bool
local_store(const ArcKey *key, ArcPartition *part, HTAB *hash,
			text *value, int64 ttl_ms, OnlyIf only_if)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		evicted = 0;
	ArcEntry   *e;
	bool		present;
	ArcStoreResult r;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	e = find_live(part, hash, key, now);
	present = (e != NULL && !e->negative);
	if ((only_if == ONLY_IF_ABSENT && present) ||
		(only_if == ONLY_IF_PRESENT && !present))
	{
		LWLockRelease(part->lock);
		return false;
	}
	FlightInvalidateKey(part, key->hash);
	r = ArcStore(part, hash, key, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
				 false, expiry(now, ttl_ms), &evicted);
	LWLockRelease(part->lock);

	if (evicted > 0)
		TwoCacheCount(TC_EVICTIONS, evicted);
	if (r == ARC_TOO_LARGE)
	{
		/* only when the partition could not make room; checked earlier */
		TwoCacheCount(TC_TOO_LARGE, 1);
		return false;
	}
	return true;
}

/* Drop key from L1 and fence in-flight fills; true if a live entry existed. */
static bool
local_delete(const ArcKey *key)
{
	HTAB	   *hash;
	ArcPartition *part = partition_for(key, &hash);
	ArcEntry   *e;
	bool		existed;

	LWLockAcquire(part->lock, LW_EXCLUSIVE);
	e = ArcFind(hash, key);
	existed = is_live(e, GetCurrentTimestamp());
	if (e != NULL && !ArcListIsGhost(e->list))
		ArcRemove(part, hash, e);
	FlightInvalidateKey(part, key->hash);
	LWLockRelease(part->lock);
	return existed;
}

/*
 * twocache_set(key text, value text, ttl interval, only_if text) returns boolean
 */
Datum
twocache_set(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	HTAB	   *hash;
	ArcPartition *part;
	text	   *value;
	int64		ttl_ms;
	OnlyIf		only_if;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	part = partition_for(&key, &hash);
	value = value_arg(fcinfo, 1, &key, part);
	ttl_ms = ttl_arg(fcinfo, 2);
	only_if = only_if_arg(fcinfo, 3);

	PG_RETURN_BOOL(local_store(&key, part, hash, value, ttl_ms, only_if));
}

/*
 * twocache_local_set(key text, value text, ttl interval) returns void
 */
Datum
twocache_local_set(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	HTAB	   *hash;
	ArcPartition *part;
	text	   *value;
	int64		ttl_ms;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	part = partition_for(&key, &hash);
	value = value_arg(fcinfo, 1, &key, part);
	ttl_ms = ttl_arg(fcinfo, 2);

	(void) local_store(&key, part, hash, value, ttl_ms, ONLY_IF_ALWAYS);
	PG_RETURN_VOID();
}

/*
 * twocache_del(key text) returns boolean
 */
Datum
twocache_del(PG_FUNCTION_ARGS)
{
	ArcKey		key;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	PG_RETURN_BOOL(local_delete(&key));
}

/*
 * twocache_local_del(key text) returns boolean
 */
Datum
twocache_local_del(PG_FUNCTION_ARGS)
{
	ArcKey		key;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	PG_RETURN_BOOL(local_delete(&key));
}

/*
 * twocache_flush_local() returns bigint: resident entries dropped.
 */
Datum
twocache_flush_local(PG_FUNCTION_ARGS)
{
	uint64		dropped = 0;
	int			i;

	TwoCacheRequireShmem();
	for (i = 0; i < twocache_shared->npartitions; i++)
	{
		ArcPartition *part = &twocache_shared->partitions[i];

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		dropped += ArcClear(part, TwoCachePartitionHash(i));
		FlightInvalidateAll(part);
		LWLockRelease(part->lock);
	}
	PG_RETURN_INT64((int64) dropped);
}

/* ----------------------------------------------------------------
 * Inspection
 * ----------------------------------------------------------------
 */

/* One directory entry copied out from under the lock. */
typedef struct EntryCopy
{
	text	   *key;
	int			list;
	int			pos;
	int32		value_bytes;
	TimestampTz expires_at;
	bool		negative;
} EntryCopy;

/*
 * Copy the entries of the current scope from the given lists of every
 * partition, LRU end first.  Takes each partition's lock in shared mode.
 */
static List *
copy_entries(bool ghosts, bool live_only)
{
	List	   *result = NIL;
	Oid			dbid = scope_dbid();
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < twocache_shared->npartitions; i++)
	{
		ArcPartition *part = &twocache_shared->partitions[i];
		int			l;

		LWLockAcquire(part->lock, LW_SHARED);
		for (l = 0; l < (ghosts ? ARC_NLISTS : ARC_B1); l++)
		{
			dlist_iter	iter;
			int			pos = 0;

			dlist_reverse_foreach(iter, &part->lists[l])
			{
				ArcEntry   *e = dlist_container(ArcEntry, node, iter.cur);
				EntryCopy  *c;

				pos++;
				if (e->key.dbid != dbid)
					continue;
				if (live_only && (is_expired(e, now) || e->negative))
					continue;
				c = palloc(sizeof(EntryCopy));
				c->key = cstring_to_text_with_len(e->key.data, e->key.len);
				c->list = l;
				c->pos = pos;
				c->value_bytes = e->value_len;
				c->expires_at = e->expires_at;
				c->negative = e->negative;
				result = lappend(result, c);
			}
		}
		LWLockRelease(part->lock);
	}
	return result;
}

/*
 * twocache_local_keys() returns setof text: keys with a live value in L1.
 */
Datum
twocache_local_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *entries;
	ListCell   *lc;

	TwoCacheRequireShmem();
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	entries = copy_entries(false, true);
	foreach(lc, entries)
	{
		EntryCopy  *c = lfirst(lc);
		Datum		value = PointerGetDatum(c->key);
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

/*
 * twocache_entries() returns table(key, list, pos, value_bytes, expires_at,
 * negative): every directory entry of the current scope.
 */
Datum
twocache_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *entries;
	ListCell   *lc;

	TwoCacheRequireShmem();
	InitMaterializedSRF(fcinfo, 0);
	entries = copy_entries(true, false);
	foreach(lc, entries)
	{
		EntryCopy  *c = lfirst(lc);
		Datum		values[ENTRIES_COLS];
		bool		isnull[ENTRIES_COLS] = {0};
		bool		ghost = ArcListIsGhost(c->list);

		values[0] = PointerGetDatum(c->key);
		values[1] = CStringGetTextDatum(list_names[c->list]);
		values[2] = Int32GetDatum(c->pos);
		values[3] = Int32GetDatum(c->value_bytes);
		isnull[3] = ghost;
		values[4] = TimestampTzGetDatum(c->expires_at);
		isnull[4] = ghost || c->expires_at == 0;
		values[5] = BoolGetDatum(c->negative);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}

/*
 * twocache_stats() returns record: counters, then gauges summed over
 * partitions (each read under its lock in shared mode).
 */
Datum
twocache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATS_COLS];
	bool		isnull[STATS_COLS] = {0};
	int64		entries = 0,
				bytes_used = 0,
				bytes_total = 0,
				arc_p = 0,
				len[ARC_NLISTS] = {0};
	int			i,
				col = 0;

	TwoCacheRequireShmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	for (i = 0; i < TC_NUM_COUNTERS; i++)
		values[col++] = Int64GetDatum((int64) pg_atomic_read_u64(&twocache_shared->counters[i]));

	for (i = 0; i < twocache_shared->npartitions; i++)
	{
		ArcPartition *part = &twocache_shared->partitions[i];
		int			l;

		LWLockAcquire(part->lock, LW_SHARED);
		for (l = 0; l < ARC_NLISTS; l++)
			len[l] += part->len[l];
		bytes_used += part->arena.used;
		bytes_total += part->arena.size;
		arc_p += part->p;
		LWLockRelease(part->lock);
	}
	entries = len[ARC_T1] + len[ARC_T2];

	values[col++] = Int64GetDatum(entries);
	values[col++] = Int64GetDatum(bytes_used);
	values[col++] = Int64GetDatum(bytes_total);
	values[col++] = Int64GetDatum(arc_p);
	for (i = 0; i < ARC_NLISTS; i++)
		values[col++] = Int64GetDatum(len[i]);
	values[col++] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&twocache_shared->stats_reset));
	values[col++] = Int64GetDatum((int64) FlightsInProgress());
	Assert(col == STATS_COLS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, isnull)));
}

/*
 * twocache_stats_reset() returns void: zero the counters.
 */
Datum
twocache_stats_reset(PG_FUNCTION_ARGS)
{
	int			i;

	TwoCacheRequireShmem();
	for (i = 0; i < TC_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&twocache_shared->counters[i], 0);
	pg_atomic_write_u64(&twocache_shared->stats_reset, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}

/*
 * twocache_status() returns record: mode, instance and Redis state.
 */
Datum
twocache_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATUS_COLS];
	bool		isnull[STATUS_COLS] = {0};

	TwoCacheRequireShmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	values[0] = CStringGetTextDatum("local");
	values[1] = CStringGetTextDatum(twocache_shared->instance_id);
	isnull[2] = true;			/* worker_pid: no worker in local mode */
	values[3] = BoolGetDatum(false);	/* redis_connected */
	values[4] = BoolGetDatum(false);	/* subscribed */
	values[5] = Int64GetDatum(0);	/* reconnects */
	values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&twocache_shared->local_flushes));
	isnull[7] = true;			/* last_error */
	isnull[8] = true;			/* last_error_at */

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, isnull)));
}
