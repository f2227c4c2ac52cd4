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
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "flight.h"
#include "inval.h"
#include "l2.h"
#include "redis.h"
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
PG_FUNCTION_INFO_V1(twocache_invalidate_tag);
PG_FUNCTION_INFO_V1(twocache_invalidate_trigger);

#define STATS_COLS		(TC_NUM_COUNTERS + 11)
/* twocache_status(): the columns of 1.0 to 1.2, and of 1.3 (the Redis node) */
#define STATUS_COLS_V1_0	10
#define STATUS_COLS_V1_3	12
#define STATUS_COLS			STATUS_COLS_V1_3
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

/*
 * The role a key belongs to: in role scope, current_user at call time (so a
 * SECURITY DEFINER function uses its owner's entries); else none.
 */
static Oid
scope_roleid(void)
{
	return twocache_scope == TWOCACHE_SCOPE_ROLE ? GetUserId() : InvalidOid;
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
	TwoCacheKeyInit(key, scope_dbid(), scope_roleid(), data, len);
}

/*
 * The tags argument argno (text[], from version 1.1 on; absent when the
 * function is called through the 1.0 definitions).
 */
static void
tags_arg(FunctionCallInfo fcinfo, int argno, ArcTags *tags)
{
	TwoCacheTagsFromArray(PG_NARGS() > argno && !PG_ARGISNULL(argno) ?
						  PG_GETARG_ARRAYTYPE_P(argno) : NULL, tags);
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

/*
 * A lifetime in ms (0 = no expiry) capped by twocache.max_ttl: whoever chose
 * it (the caller, the fetch query, a setting), no entry outlives the cap.
 */
int64
TwoCacheCapTtl(int64 ttl_ms)
{
	if (twocache_max_ttl > 0 && (ttl_ms == 0 || ttl_ms > twocache_max_ttl))
		return twocache_max_ttl;
	return ttl_ms;
}

/*
 * TTL argument in ms: NULL means twocache.default_ttl; 0 means no expiry;
 * capped by twocache.max_ttl.
 */
static int64
ttl_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return TwoCacheCapTtl(twocache_default_ttl);
	return TwoCacheCapTtl(TwoCacheIntervalToMs(PG_GETARG_INTERVAL_P(argno), false));
}

/*
 * The fetch query of argument argno and the parameter array of argument
 * pargno (absent or NULL: none) into *q.
 */
static void
query_arg(FunctionCallInfo fcinfo, int argno, int pargno, FetchQuery *q)
{
	memset(q, 0, sizeof(FetchQuery));
	q->nparams = -1;
	q->sql = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (q->sql[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fetch query must not be empty")));
	if (PG_NARGS() > pargno && !PG_ARGISNULL(pargno))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(pargno);

		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("array of fetch query parameters must be one-dimensional")));
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
						  &q->params, &q->nulls, &q->nparams);
		if (q->nparams > FUNC_MAX_ARGS)
			ereport(ERROR,
					(errcode(ERRCODE_TOO_MANY_ARGUMENTS),
					 errmsg("fetch query has too many parameters"),
					 errdetail("It was given %d; at most %d are allowed.",
							   q->nparams, FUNC_MAX_ARGS)));
	}
}

/*
 * twocache_get(key text) returns text: the lookup form (1.2)
 * twocache_get(key text, fetch_query text, ttl interval, tags text[]
 *				[, params text[] (1.4)]) returns text: read-through
 */
Datum
twocache_get(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	FetchQuery	query;
	bool		has_query;
	int64		ttl_ms;
	text	   *result;
	ArcTags		tags;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	ttl_ms = PG_NARGS() > 2 ? ttl_arg(fcinfo, 2) : TwoCacheCapTtl(twocache_default_ttl);
	tags_arg(fcinfo, 3, &tags);
	has_query = PG_NARGS() > 1 && !PG_ARGISNULL(1);
	if (has_query)
		query_arg(fcinfo, 1, 4, &query);

	result = TwoCacheGet(&key, has_query ? &query : NULL, ttl_ms, &tags);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

/*
 * twocache_mget(keys text[]) returns table(key text, value text): lookup
 * twocache_mget(keys text[], fetch_query text, ttl interval, tags text[],
 *				 params text[]) returns table(key text, value text): batch
 *				 read-through (1.4); a key not found is not returned
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
	text	  **found;
	FetchQuery	query;
	bool		has_query = PG_NARGS() > 1 && !PG_ARGISNULL(1);
	int64		ttl_ms = 0;
	ArcTags		tags;

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
	if (has_query)
	{
		ttl_ms = ttl_arg(fcinfo, 2);
		tags_arg(fcinfo, 3, &tags);
		query_arg(fcinfo, 1, 4, &query);
	}

	found = palloc(sizeof(text *) * Max(n, 1));
	if (has_query)
		TwoCacheMGetFill(n, keys, found, &query, ttl_ms, &tags);
	else
		TwoCacheMGet(n, keys, found);

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		isnull[2] = {false, false};

		if (found[i] == NULL)
			continue;
		values[0] = elems[i];
		values[1] = PointerGetDatum(found[i]);
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
	bool		is_value;
	int64		ttl_ms;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	TwoCacheProbe(&key, &is_value, &ttl_ms);
	PG_RETURN_BOOL(is_value);
}

/*
 * twocache_ttl(key text) returns bigint: ms left, -1 no expiry, -2 absent.
 */
Datum
twocache_ttl(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	bool		is_value;
	int64		ttl_ms;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	TwoCacheProbe(&key, &is_value, &ttl_ms);
	PG_RETURN_INT64(ttl_ms);
}

/* ----------------------------------------------------------------
 * Writes
 * ----------------------------------------------------------------
 */

static TwoCacheOnlyIf
only_if_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
		return TWOCACHE_ONLY_IF_ALWAYS;
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(s, "absent") == 0)
		return TWOCACHE_ONLY_IF_ABSENT;
	if (strcmp(s, "present") == 0)
		return TWOCACHE_ONLY_IF_PRESENT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for only_if: \"%s\"", s),
			 errhint("Use 'absent', 'present' or NULL.")));
	return TWOCACHE_ONLY_IF_ALWAYS;		/* keep compiler quiet */
}

static text *
value_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cache value must not be null"),
				 errhint("Use twocache_del() to remove a key.")));
	return PG_GETARG_TEXT_PP(argno);
}

/*
 * Raise 54000 unless L1 can keep value with tags (NULL: none) under key:
 * the value and its tags are stored together, so both count.  Checked
 * before anything is written, so that no layer takes a value the other
 * cannot.
 */
static void
value_size_check(const ArcKey *key, text *value, const ArcTags *tags)
{
	Size		len = VARSIZE_ANY_EXHDR(value);
	Size		tlen = tags != NULL ? tags->len : 0;
	HTAB	   *hash;
	ArcPartition *part = TwoCachePartitionFor(key, &hash);

	switch (TwoCacheValueFit(key, len, tags))
	{
		case TWOCACHE_FITS:
			break;
		case TWOCACHE_OVER_MAX_VALUE_SIZE:
			if (tlen == 0)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("cache value is too large"),
						 errdetail("The value is %zu bytes; twocache.max_value_size is %d bytes.",
								   len, twocache_max_value_size)));
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cache value is too large"),
					 errdetail("The value and its tags take %zu bytes; twocache.max_value_size is %d bytes.",
							   len + tlen, twocache_max_value_size)));
			break;
		case TWOCACHE_OVER_PARTITION:
			if (tlen == 0)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("cache value is too large"),
						 errdetail("The key and value take %zu bytes; a partition of twocache.memory can hold at most %zu.",
								   key->len + len, ArcMaxItemSize(part))));
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cache value is too large"),
					 errdetail("The key, value and tags take %zu bytes; a partition of twocache.memory can hold at most %zu.",
							   key->len + len + tlen, ArcMaxItemSize(part))));
			break;
	}
}

/*
 * twocache_set(key text, value text, ttl interval, only_if text) returns boolean
 */
Datum
twocache_set(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	text	   *value;
	int64		ttl_ms;
	TwoCacheOnlyIf only_if;
	ArcTags		tags;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	value = value_arg(fcinfo, 1);
	ttl_ms = ttl_arg(fcinfo, 2);
	only_if = only_if_arg(fcinfo, 3);
	tags_arg(fcinfo, 4, &tags);
	value_size_check(&key, value, &tags);

	PG_RETURN_BOOL(TwoCacheSet(&key, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
							   ttl_ms, only_if, false, &tags));
}

/*
 * twocache_local_set(key text, value text, ttl interval) returns void
 */
Datum
twocache_local_set(PG_FUNCTION_ARGS)
{
	ArcKey		key;
	text	   *value;
	int64		ttl_ms;

	TwoCacheRequireShmem();
	key_arg(fcinfo, 0, &key);
	value = value_arg(fcinfo, 1);
	value_size_check(&key, value, NULL);
	ttl_ms = ttl_arg(fcinfo, 2);

	(void) TwoCacheSet(&key, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
					   ttl_ms, TWOCACHE_ONLY_IF_ALWAYS, true, NULL);
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
	PG_RETURN_BOOL(TwoCacheDel(&key, false));
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
	PG_RETURN_BOOL(TwoCacheDel(&key, true));
}

/*
 * twocache_flush_local() returns bigint: resident entries dropped.
 */
Datum
twocache_flush_local(PG_FUNCTION_ARGS)
{
	TwoCacheRequireShmem();
	PG_RETURN_INT64((int64) TwoCacheFlushLocal());
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
 * partition, LRU end first.  With all_scopes (twocache_entries), members of
 * pg_read_all_stats also get the entries of other scopes (databases, and
 * roles in role scope) and the
 * ghost keys (evicted, so possibly of keys the caller never saw), as
 * pg_stat_statements shows other users' query texts only to them; others
 * get neither.  Takes each partition's lock in shared mode.
 */
static List *
copy_entries(bool all_scopes, bool live_only)
{
	List	   *result = NIL;
	Oid			dbid = scope_dbid();
	Oid			roleid = scope_roleid();
	bool		ghosts;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	all_scopes = all_scopes && has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	ghosts = all_scopes;

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
				if ((e->key.dbid != dbid || e->key.roleid != roleid) && !all_scopes)
					continue;
				if (live_only && (!TwoCacheEntryIsLive(e, now) || e->negative))
					continue;
				c = palloc(sizeof(EntryCopy));
				/* a ghost that gave its key bytes up (arc.c) has none to show */
				c->key = e->key.len == 0 ? NULL :
					cstring_to_text_with_len(e->key.data, e->key.len);
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
		isnull[0] = c->key == NULL;
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
	uint64		totals[TC_NUM_COUNTERS];
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

	TwoCacheCountersRead(totals);
	for (i = 0; i < TC_INVALIDATIONS_DEFERRED; i++)
		values[col++] = Int64GetDatum((int64) totals[i]);

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
	values[col++] = Int64GetDatum((int64) totals[TC_INVALIDATIONS_DEFERRED]);
	Assert(col == STATS_COLS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, isnull)));
}

/*
 * twocache_stats_reset() returns void: zero the counters.
 */
Datum
twocache_stats_reset(PG_FUNCTION_ARGS)
{
	TwoCacheRequireShmem();
	TwoCacheCountersReset();
	pg_atomic_write_u64(&twocache_shared->stats_reset, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}

/*
 * twocache_status() returns record: mode, instance and Redis state, and from
 * 1.3 the Redis node the worker uses and its role.
 *
 * The row has the columns the installed SQL declares, as in
 * pg_stat_statements: this library also serves a database whose extension
 * is still at 1.0, 1.1 or 1.2 (ten columns), until ALTER EXTENSION UPDATE.
 */
Datum
twocache_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	TwoCacheWorkerState w;
	Datum		values[STATUS_COLS];
	bool		isnull[STATUS_COLS] = {0};

	TwoCacheRequireShmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != STATUS_COLS_V1_0 && tupdesc->natts != STATUS_COLS_V1_3)
		elog(ERROR, "incorrect number of output arguments");

	SpinLockAcquire(&twocache_shared->worker.mutex);
	w = twocache_shared->worker;
	SpinLockRelease(&twocache_shared->worker.mutex);

	values[0] = CStringGetTextDatum(TwoCacheRedisEnabled() ? "two-layer" : "local");
	values[1] = CStringGetTextDatum(twocache_shared->instance_id);
	values[2] = Int32GetDatum(w.pid);
	isnull[2] = (w.pid == 0);
	values[3] = BoolGetDatum(w.connected);
	values[4] = BoolGetDatum(w.subscribed);
	values[5] = Int64GetDatum((int64) w.reconnects);
	values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&twocache_shared->local_flushes));
	values[7] = CStringGetTextDatum(w.last_error);
	isnull[7] = (w.last_error_at == 0);
	values[8] = TimestampTzGetDatum(w.last_error_at);
	isnull[8] = (w.last_error_at == 0);
	values[9] = Int64GetDatum(w.deferred);

	if (tupdesc->natts >= STATUS_COLS_V1_3)
	{
		/* a node only while the worker's connection is up, never in local mode */
		bool		have_node = TwoCacheRedisEnabled() && w.connected && w.node[0] != '\0';

		values[10] = CStringGetTextDatum(w.node);
		isnull[10] = !have_node;
		values[11] = CStringGetTextDatum(w.node_role);
		isnull[11] = !have_node || w.node_role[0] == '\0';
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, isnull)));
}

/*
 * twocache_invalidate_tag(tag text) returns bigint: drop every key carrying
 * the tag, in both layers and on every server; how many this server dropped.
 */
Datum
twocache_invalidate_tag(PG_FUNCTION_ARGS)
{
	text	   *t;
	int			len;

	TwoCacheRequireShmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cache tag must not be null")));
	t = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cache tag must not be empty")));
	if (len > TWOCACHE_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cache tag is too long: %d bytes", len),
				 errdetail("Tags are limited to %d bytes.", TWOCACHE_MAX_KEY_LEN)));
	PG_RETURN_INT64((int64) TwoCacheInvalidateTag(scope_dbid(), scope_roleid(),
												   VARDATA_ANY(t), len));
}

/*
 * twocache_invalidate_trigger(): an AFTER ... FOR EACH STATEMENT trigger
 * queuing, for after commit, the invalidation of the tags given as its
 * arguments (default: the table's schema-qualified name).  A rollback, or
 * that of the savepoint the statement ran in, sends nothing.  In role scope
 * the tags are invalidated for every role: a table's rows changed, whoever
 * cached what was derived from them.
 */
Datum
twocache_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("twocache_invalidate_trigger() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("twocache_invalidate_trigger() must be fired AFTER ... FOR EACH STATEMENT")));
	TwoCacheRequireShmem();

	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	if (trigger->tgnargs > TWOCACHE_MAX_TAGS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("trigger \"%s\" has too many cache tags", trigger->tgname),
				 errdetail("A twocache_invalidate_trigger() trigger takes at most %d tags; this one has %d.",
						   TWOCACHE_MAX_TAGS, trigger->tgnargs)));
	if (trigger->tgnargs == 0)
	{
		char	   *name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													  RelationGetRelationName(rel));

		TwoCacheQueueTagInvalidation(scope_dbid(), name, strlen(name));
	}
	for (i = 0; i < trigger->tgnargs; i++)
	{
		const char *tag = trigger->tgargs[i];
		int			len = strlen(tag);

		if (len == 0 || len > TWOCACHE_MAX_KEY_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid cache tag in the arguments of trigger \"%s\"",
							trigger->tgname),
					 errdetail("Tags are 1 to %d bytes.", TWOCACHE_MAX_KEY_LEN)));
		TwoCacheQueueTagInvalidation(scope_dbid(), tag, len);
	}
	return PointerGetDatum(NULL);
}
