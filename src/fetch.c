/*-------------------------------------------------------------------------
 *
 * fetch.c
 *	  Running a fetch query through SPI and checking what it returned.
 *
 * The query runs as the calling role, read-only: the transaction is marked
 * read-only for its duration, so any write (a DML statement, nextval(), a
 * volatile function that writes, SELECT FOR UPDATE) fails with 25006.  In
 * READ COMMITTED each statement takes a fresh snapshot, after the caller has
 * recorded where fencing starts (fence.c), so a fill never reads data older
 * than its fence.  It must return zero or one row of one column (the value)
 * or two columns (the value and an interval TTL); rows go to a receiver of
 * our own that keeps the first.  Errors, its own or ours, carry a CONTEXT
 * line naming the key.
 *
 * The query runs, and its value is converted to text, under fixed output
 * settings (DateStyle ISO, IntervalStyle postgres, extra_float_digits 3,
 * bytea_output hex), so what is cached never depends on the filling
 * session's settings.  They are set at a GUC nest level of our own, as for
 * a function's SET clause: a fetch that returns restores the caller's
 * settings itself, and one that fails leaves that to the abort of the
 * (sub)transaction the error ends, which unwinds every level opened inside
 * it.  Only a session-level SET made by the query itself outlasts the
 * fetch, as it outlasts a SET clause.  DateStyle names the style only, so
 * the session's field order (DMY, MDY, YMD) still decides how date input in
 * the query is read.  The TTL column is read as an interval, not as text,
 * so no setting affects it.
 *
 * With twocache.auto_tag the query is prepared first, and the tables its
 * plans depend on (tables, partitioned tables and materialized views,
 * including those under views) become the value's tags, named as
 * twocache_track() names them: schema-qualified, quoted where needed.
 * Tables read only inside functions the query calls are not seen.
 *
 * No locks are held here; callers must not hold any twocache LWLock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"

#include "twocache.h"

static void
fetch_error_callback(void *arg)
{
	const ArcKey *key = (const ArcKey *) arg;

	errcontext("twocache fetch for key \"%.*s\"", (int) key->len, key->data);
}

static void
batch_error_callback(void *arg)
{
	int			n = *(const int *) arg;

	if (n == 1)
		errcontext("twocache batch fetch for 1 key");
	else
		errcontext("twocache batch fetch for %d keys", n);
}

/*
 * Rows of the fetch query arrive at this receiver.  A single fetch keeps
 * the first row and raises 21000 at the second.  A batch fetch keeps every
 * row, (key, value[, ttl]), converted to text here; the caller matches them
 * to its keys.  Using our own receiver instead of a row limit on
 * SPI_execute keeps parallel query available to the fetch (a row limit
 * disables it) while memory stays bounded whatever a single fetch returns
 * (a batch's rows are bounded by what its keys ask for: rows for keys not
 * asked for are dropped here).
 */
typedef struct FetchReceiver
{
	DestReceiver pub;
	MemoryContext cxt;			/* caller's context, for the values */
	bool		batch;
	bool		started;		/* a statement produced a result set */
	uint64		rows;
	int			col;			/* the value column: 0, or 1 in a batch */
	FmgrInfo	keyfunc;		/* output function of a batch's key column */
	FmgrInfo	outfunc;		/* output function of the value column */
	FetchResult *result;		/* a single fetch's */
	FetchBatchResult *bresult;	/* a batch's */
	int			nkeys;			/* a batch's keys, */
	const ArcKey *keys;
	int		   *sorted;			/* their indexes by length, then bytes */
} FetchReceiver;

/* Order of keys in a batch: by length, then bytes */
static int
batch_key_cmp(const char *a, uint32 alen, const char *b, uint32 blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static int
batch_index_cmp(const void *a, const void *b, void *arg)
{
	const ArcKey *keys = (const ArcKey *) arg;
	const ArcKey *ka = &keys[*(const int *) a];
	const ArcKey *kb = &keys[*(const int *) b];

	return batch_key_cmp(ka->data, ka->len, kb->data, kb->len);
}

/* The index of the batch's key equal to key, or -1 */
static int
batch_find(const FetchReceiver *r, const char *key, uint32 len)
{
	int			lo = 0,
				hi = r->nkeys - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		const ArcKey *k = &r->keys[r->sorted[mid]];
		int			c = batch_key_cmp(key, len, k->data, k->len);

		if (c == 0)
			return r->sorted[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}

static void
check_shape(TupleDesc desc, bool batch)
{
	int			first = batch ? 1 : 0;

	if (desc->natts < first + 1 || desc->natts > first + 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 batch ?
				 errmsg("batch fetch query must return two or three columns") :
				 errmsg("fetch query must return one or two columns"),
				 errdetail("It returned %d columns.", desc->natts),
				 batch ?
				 errhint("Return the key, the value, and optionally an interval TTL.") :
				 errhint("Return the value, and optionally an interval TTL.")));
	if (desc->natts == first + 2 &&
		TupleDescAttr(desc, first + 1)->atttypid != INTERVALOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 batch ?
				 errmsg("third column of batch fetch query must be of type interval") :
				 errmsg("second column of fetch query must be of type interval"),
				 errdetail("It is of type %s.",
						   format_type_be(TupleDescAttr(desc, first + 1)->atttypid))));
}

static void
fetch_startup(DestReceiver *self, int operation pg_attribute_unused(),
			  TupleDesc desc)
{
	FetchReceiver *r = (FetchReceiver *) self;
	Oid			outfunc;
	bool		varlena;

	check_shape(desc, r->batch);
	r->col = r->batch ? 1 : 0;
	if (r->batch)
	{
		getTypeOutputInfo(TupleDescAttr(desc, 0)->atttypid, &outfunc, &varlena);
		fmgr_info(outfunc, &r->keyfunc);
	}
	getTypeOutputInfo(TupleDescAttr(desc, r->col)->atttypid, &outfunc, &varlena);
	fmgr_info(outfunc, &r->outfunc);
	r->started = true;
}

/* The value and TTL columns of slot's row into *result */
static void
receive_value(FetchReceiver *r, TupleTableSlot *slot, FetchResult *result)
{
	int			col = r->col;

	if (!slot->tts_isnull[col])
	{
		char	   *s = OutputFunctionCall(&r->outfunc, slot->tts_values[col]);

		result->found = true;
		result->value_len = strlen(s);
		result->value = MemoryContextStrdup(r->cxt, s);
	}
	if (slot->tts_tupleDescriptor->natts == col + 2 && !slot->tts_isnull[col + 1])
	{
		result->has_ttl = true;
		result->ttl_ms = TwoCacheIntervalToMs(DatumGetIntervalP(slot->tts_values[col + 1]),
											  true);
	}
}

static bool
fetch_receive(TupleTableSlot *slot, DestReceiver *self)
{
	FetchReceiver *r = (FetchReceiver *) self;

	slot_getallattrs(slot);
	if (r->batch)
	{
		FetchBatchResult *b = r->bresult;
		char	   *key;
		int			i;

		if (slot->tts_isnull[0])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("batch fetch query returned a null key")));
		key = OutputFunctionCall(&r->keyfunc, slot->tts_values[0]);
		i = batch_find(r, key, strlen(key));
		if (i < 0)
			return true;		/* not asked for: dropped */
		if (b->present[i])
			ereport(ERROR,
					(errcode(ERRCODE_CARDINALITY_VIOLATION),
					 errmsg("batch fetch query returned more than one row for key \"%s\"",
							key),
					 errhint("A batch fetch query returns at most one row per key it is given.")));
		b->present[i] = true;
		receive_value(r, slot, &b->rows[i]);
		pfree(key);
		return true;
	}

	if (++r->rows > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("fetch query returned more than one row"),
				 errhint("A fetch query returns zero rows (not found) or one row.")));
	receive_value(r, slot, r->result);
	return true;
}

static void
fetch_shutdown(DestReceiver *self pg_attribute_unused())
{
}

static void
fetch_destroy(DestReceiver *self pg_attribute_unused())
{
}

/*
 * The tables plan depends on, as tags in result (allocated in cxt).
 */
static void
collect_tables(SPIPlanPtr plan, ArcTags *tables, bool *too_many_tables,
			   MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	StringInfoData buf;
	ListCell   *lc;
	int			n = 0;

	initStringInfo(&buf);
	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *ps = (CachedPlanSource *) lfirst(lc);
		ListCell   *rc;

		foreach(rc, ps->relationOids)
		{
			Oid			relid = lfirst_oid(rc);
			char		kind = get_rel_relkind(relid);
			char	   *nsp;
			char	   *rel;
			const char *name;
			int			len;

			if (kind != RELKIND_RELATION && kind != RELKIND_PARTITIONED_TABLE &&
				kind != RELKIND_MATVIEW && kind != RELKIND_FOREIGN_TABLE)
				continue;
			nsp = get_namespace_name(get_rel_namespace(relid));
			rel = get_rel_name(relid);
			if (nsp == NULL || rel == NULL)
				continue;		/* dropped concurrently */
			name = quote_qualified_identifier(nsp, rel);
			len = strlen(name);
			if (TwoCacheTagsContain(buf.data, buf.len, name, len))
				continue;
			if (++n > TWOCACHE_MAX_TAGS)
			{
				*too_many_tables = true;
				break;
			}
			appendStringInfoChar(&buf, (char) (len >> 8));
			appendStringInfoChar(&buf, (char) (len & 0xff));
			appendBinaryStringInfo(&buf, name, len);
		}
	}
	tables->data = buf.data;
	tables->len = buf.len;
	MemoryContextSwitchTo(old);
}

/* The output settings of SPEC section 4, in force while a fetch runs. */
static const struct
{
	const char *name;
	const char *value;
}			fixed_output_settings[] =
{
	{"DateStyle", "ISO"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
};

/*
 * Open a GUC nest level and set the fixed output settings in it.  Returns
 * the level, for AtEOXact_GUC.
 */
static int
use_fixed_output_settings(void)
{
	int			nestlevel = NewGUCNestLevel();
	int			i;

	for (i = 0; i < (int) lengthof(fixed_output_settings); i++)
		(void) set_config_option(fixed_output_settings[i].name,
								 fixed_output_settings[i].value,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* Fetch queries of this backend in progress (nested ones included). */
static int	fetch_depth = 0;

/*
 * Raise 54001 if one more fetch would nest deeper than
 * twocache.max_fetch_depth.  Called before claiming a flight slot, so a
 * backend never holds more slots than the depth allows.
 */
void
TwoCacheFetchDepthCheck(void)
{
	if (fetch_depth >= twocache_max_fetch_depth)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("fetch queries are nested too deeply"),
				 errdetail("This fetch would run inside %d other fetch queries; twocache.max_fetch_depth is %d.",
						   fetch_depth, twocache_max_fetch_depth)));
}

/* ----------------------------------------------------------------
 * Prepared fetch queries
 *
 * A fetch query given with a parameter array (and every batch fetch) is
 * prepared once per backend and kept here, most recently used first, at
 * most FETCH_PLAN_CACHE_SIZE of them; the least recently used is freed to
 * make room.  The plan cache of PostgreSQL revalidates a kept plan when
 * what it depends on changes (DDL, search_path, the role under row
 * security), so a kept plan is never used stale.
 *
 * Parameter types are inferred as PREPARE without types infers them (a $n
 * compared with an integer column is an integer), the batch form's $1
 * being text[]; a parameter the query does not use, or whose type nothing
 * decides, is text.  The text of each parameter is converted with its
 * type's input function, so a bad value raises what the type raises
 * (22P02 for an integer), and a query naming a $n past the parameters
 * given raises 42P02, as PostgreSQL does.
 * ----------------------------------------------------------------
 */
#define FETCH_PLAN_CACHE_SIZE	128

typedef struct FetchPlan
{
	dlist_node	node;			/* in fetch_plans, most recently used first */
	uint32		hash;
	bool		batch;
	int			nargs;
	char	   *sql;
	Oid		   *argtypes;
	Oid		   *typinput;		/* input function of each argument's type */
	Oid		   *typioparam;
	SPIPlanPtr	plan;
} FetchPlan;

static dlist_head fetch_plans = DLIST_STATIC_INIT(fetch_plans);
static int	fetch_nplans = 0;
static MemoryContext fetch_plan_cxt = NULL;

static uint32
fetch_plan_hash(const char *sql, int nargs, bool batch)
{
	return hash_bytes((const unsigned char *) sql, strlen(sql)) ^
		hash_uint32((uint32) nargs * 2 + (batch ? 1 : 0));
}

/*
 * The kept plan of sql with nargs arguments, prepared now if it is not
 * kept yet.  Runs inside the fetch's SPI connection.
 */
static FetchPlan *
fetch_plan(const char *sql, int nargs, bool batch)
{
	uint32		hash = fetch_plan_hash(sql, nargs, batch);
	dlist_iter	it;
	Oid		   *types;
	int			ntypes = nargs;
	List	   *raw;
	ListCell   *lc;
	FetchPlan  *fp;
	SPIPlanPtr	plan;
	int			i;

	dlist_foreach(it, &fetch_plans)
	{
		fp = dlist_container(FetchPlan, node, it.cur);
		if (fp->hash == hash && fp->nargs == nargs && fp->batch == batch &&
			strcmp(fp->sql, sql) == 0)
		{
			dlist_move_head(&fetch_plans, &fp->node);
			return fp;
		}
	}

	/* the types PREPARE would infer; parse errors are the query's own */
	types = palloc0(sizeof(Oid) * Max(nargs, 1));
	if (batch)
		types[0] = TEXTARRAYOID;
	raw = pg_parse_query(sql);
	foreach(lc, raw)
		(void) parse_analyze_varparams(lfirst_node(RawStmt, lc), sql,
									   &types, &ntypes, NULL);
	if (ntypes > nargs)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("there is no parameter $%d", ntypes),
				 batch ?
				 errdetail("The batch fetch query was given the key array as $1 and %d parameters.",
						   nargs - 1) :
				 errdetail("The fetch query was given %d parameters.", nargs)));
	for (i = 0; i < nargs; i++)
		if (types[i] == InvalidOid || types[i] == UNKNOWNOID)
			types[i] = TEXTOID;

	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("could not prepare fetch query: %s",
						SPI_result_code_string(SPI_result))));

	if (fetch_plan_cxt == NULL)
		fetch_plan_cxt = AllocSetContextCreate(TopMemoryContext,
											   "twocache fetch plans",
											   ALLOCSET_SMALL_SIZES);
	if (fetch_nplans >= FETCH_PLAN_CACHE_SIZE)
	{
		FetchPlan  *old = dlist_container(FetchPlan, node,
										  dlist_tail_node(&fetch_plans));

		dlist_delete(&old->node);
		fetch_nplans--;
		(void) SPI_freeplan(old->plan);
		pfree(old->sql);
		pfree(old->argtypes);
		pfree(old->typinput);
		pfree(old->typioparam);
		pfree(old);
	}

	fp = MemoryContextAllocZero(fetch_plan_cxt, sizeof(FetchPlan));
	fp->hash = hash;
	fp->batch = batch;
	fp->nargs = nargs;
	fp->sql = MemoryContextStrdup(fetch_plan_cxt, sql);
	fp->argtypes = MemoryContextAlloc(fetch_plan_cxt, sizeof(Oid) * Max(nargs, 1));
	fp->typinput = MemoryContextAlloc(fetch_plan_cxt, sizeof(Oid) * Max(nargs, 1));
	fp->typioparam = MemoryContextAlloc(fetch_plan_cxt, sizeof(Oid) * Max(nargs, 1));
	for (i = 0; i < nargs; i++)
	{
		fp->argtypes[i] = types[i];
		getTypeInputInfo(types[i], &fp->typinput[i], &fp->typioparam[i]);
	}
	/* nothing below can fail: the plan is kept and listed together */
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	fp->plan = plan;
	dlist_push_head(&fetch_plans, &fp->node);
	fetch_nplans++;
	return fp;
}

/*
 * The arguments of a kept plan: the batch's key array, then query's
 * parameters converted by their types' input functions.
 */
static ParamListInfo
fetch_params(const FetchPlan *fp, const FetchQuery *query, Datum keys)
{
	ParamListInfo params = makeParamList(fp->nargs);
	int			first = fp->batch ? 1 : 0;
	int			i;

	if (fp->batch)
	{
		params->params[0].value = keys;
		params->params[0].isnull = false;
		params->params[0].pflags = PARAM_FLAG_CONST;
		params->params[0].ptype = TEXTARRAYOID;
	}
	for (i = 0; i < query->nparams; i++)
	{
		ParamExternData *p = &params->params[first + i];

		p->ptype = fp->argtypes[first + i];
		p->pflags = PARAM_FLAG_CONST;
		p->isnull = query->nulls[i];
		p->value = p->isnull ? (Datum) 0 :
			OidInputFunctionCall(fp->typinput[first + i],
								 TextDatumGetCString(query->params[i]),
								 fp->typioparam[first + i], -1);
	}
	return params;
}

/*
 * Run query (with the batch's key array, when batch) into receiver, and
 * with twocache.auto_tag collect the tables it read.
 */
static void
run_fetch(const FetchQuery *query, bool batch, Datum keys,
		  FetchReceiver *receiver, ArcTags *tables, bool *too_many_tables)
{
	bool		save_read_only = XactReadOnly;
	SPIExecuteOptions options;
	int			ret;
	int			guc_level;

	receiver->pub.receiveSlot = fetch_receive;
	receiver->pub.rStartup = fetch_startup;
	receiver->pub.rShutdown = fetch_shutdown;
	receiver->pub.rDestroy = fetch_destroy;
	receiver->pub.mydest = DestNone;
	receiver->cxt = CurrentMemoryContext;
	receiver->batch = batch;

	memset(&options, 0, sizeof(options));
	options.read_only = false;	/* a fresh snapshot per statement */
	options.dest = (DestReceiver *) receiver;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	TwoCacheFetchDepthCheck();
	guc_level = use_fixed_output_settings();
	XactReadOnly = true;
	fetch_depth++;
	PG_TRY();
	{
		if (batch || query->nparams >= 0)
		{
			FetchPlan  *fp = fetch_plan(query->sql,
										(batch ? 1 : 0) + Max(query->nparams, 0),
										batch);

			options.params = fetch_params(fp, query, keys);
			ret = SPI_execute_plan_extended(fp->plan, &options);
			if (ret >= 0 && twocache_auto_tag)
				collect_tables(fp->plan, tables, too_many_tables, receiver->cxt);
		}
		else if (twocache_auto_tag)
		{
			SPIPrepareOptions popts;
			SPIPlanPtr	plan;

			memset(&popts, 0, sizeof(popts));
			popts.cursorOptions = CURSOR_OPT_PARALLEL_OK;
			plan = SPI_prepare_extended(query->sql, &popts);
			if (plan == NULL)
				ret = SPI_result;
			else
			{
				ret = SPI_execute_plan_extended(plan, &options);
				if (ret >= 0)
					collect_tables(plan, tables, too_many_tables, receiver->cxt);
			}
		}
		else
			ret = SPI_execute_extended(query->sql, &options);
	}
	PG_FINALLY();
	{
		XactReadOnly = save_read_only;
		fetch_depth--;
	}
	PG_END_TRY();

	if (ret == SPI_ERROR_TRANSACTION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("fetch query cannot control transactions"),
				 errhint("Use a query that only reads: no COMMIT, ROLLBACK or SAVEPOINT.")));
	if (ret < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("could not run fetch query: %s",
						SPI_result_code_string(ret))));
	if (!receiver->started)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("fetch query must return rows"),
				 errdetail("It is a statement that returns no result set.")));

	/* the caller's settings again; after an error, the abort restores them */
	AtEOXact_GUC(true, guc_level);
	SPI_finish();
}

/*
 * Run query for key and fill *result.  The value is copied into the
 * caller's memory context.
 */
void
TwoCacheRunFetch(const FetchQuery *query, const ArcKey *key, FetchResult *result)
{
	ErrorContextCallback errcb;
	FetchReceiver receiver;

	memset(result, 0, sizeof(FetchResult));
	memset(&receiver, 0, sizeof(receiver));
	receiver.result = result;

	errcb.callback = fetch_error_callback;
	errcb.arg = (void *) key;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	run_fetch(query, false, (Datum) 0, &receiver, &result->tables,
			  &result->too_many_tables);

	error_context_stack = errcb.previous;
}

/*
 * Run a batch fetch query for the nkeys distinct keys (its $1, a text[])
 * and collect its row for each in *result (memory of the caller's
 * context): a key without a row is not found, a row for a key not asked
 * for is dropped, and two rows for one key raise 21000.
 */
void
TwoCacheRunBatchFetch(const FetchQuery *query, int nkeys, const ArcKey *keys,
					  FetchBatchResult *result)
{
	ErrorContextCallback errcb;
	FetchReceiver receiver;
	Datum	   *elems = palloc(sizeof(Datum) * Max(nkeys, 1));
	Datum		array;
	int			i;

	memset(result, 0, sizeof(FetchBatchResult));
	result->present = palloc0(sizeof(bool) * Max(nkeys, 1));
	result->rows = palloc0(sizeof(FetchResult) * Max(nkeys, 1));
	memset(&receiver, 0, sizeof(receiver));
	receiver.bresult = result;
	receiver.nkeys = nkeys;
	receiver.keys = keys;
	receiver.sorted = palloc(sizeof(int) * Max(nkeys, 1));
	for (i = 0; i < nkeys; i++)
	{
		elems[i] = PointerGetDatum(cstring_to_text_with_len(keys[i].data, keys[i].len));
		receiver.sorted[i] = i;
	}
	qsort_arg(receiver.sorted, nkeys, sizeof(int), batch_index_cmp, (void *) keys);
	array = PointerGetDatum(construct_array(elems, nkeys, TEXTOID, -1, false,
											TYPALIGN_INT));

	errcb.callback = batch_error_callback;
	errcb.arg = (void *) &nkeys;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	run_fetch(query, true, array, &receiver, &result->tables,
			  &result->too_many_tables);

	error_context_stack = errcb.previous;
}
