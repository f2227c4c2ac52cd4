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
#include "executor/spi.h"
#include "lib/stringinfo.h"
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

/*
 * Rows of the fetch query arrive at this receiver, which keeps the first
 * and raises 21000 at the second.  Using our own receiver instead of a row
 * limit on SPI_execute keeps parallel query available to the fetch (a row
 * limit disables it) while memory stays bounded whatever the query returns.
 */
typedef struct FetchReceiver
{
	DestReceiver pub;
	MemoryContext cxt;			/* caller's context, for the value */
	bool		started;		/* a statement produced a result set */
	uint64		rows;
	FmgrInfo	outfunc;		/* output function of the value column */
	FetchResult *result;
} FetchReceiver;

static void
check_shape(TupleDesc desc)
{
	if (desc->natts < 1 || desc->natts > 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("fetch query must return one or two columns"),
				 errdetail("It returned %d columns.", desc->natts),
				 errhint("Return the value, and optionally an interval TTL.")));
	if (desc->natts == 2 && TupleDescAttr(desc, 1)->atttypid != INTERVALOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("second column of fetch query must be of type interval"),
				 errdetail("It is of type %s.",
						   format_type_be(TupleDescAttr(desc, 1)->atttypid))));
}

static void
fetch_startup(DestReceiver *self, int operation pg_attribute_unused(),
			  TupleDesc desc)
{
	FetchReceiver *r = (FetchReceiver *) self;
	Oid			outfunc;
	bool		varlena;

	check_shape(desc);
	getTypeOutputInfo(TupleDescAttr(desc, 0)->atttypid, &outfunc, &varlena);
	fmgr_info(outfunc, &r->outfunc);
	r->started = true;
}

static bool
fetch_receive(TupleTableSlot *slot, DestReceiver *self)
{
	FetchReceiver *r = (FetchReceiver *) self;
	FetchResult *result = r->result;

	if (++r->rows > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("fetch query returned more than one row"),
				 errhint("A fetch query returns zero rows (not found) or one row.")));

	slot_getallattrs(slot);
	if (!slot->tts_isnull[0])
	{
		char	   *s = OutputFunctionCall(&r->outfunc, slot->tts_values[0]);

		result->found = true;
		result->value_len = strlen(s);
		result->value = MemoryContextStrdup(r->cxt, s);
	}
	if (slot->tts_tupleDescriptor->natts == 2 && !slot->tts_isnull[1])
	{
		result->has_ttl = true;
		result->ttl_ms = TwoCacheIntervalToMs(DatumGetIntervalP(slot->tts_values[1]),
											  true);
	}
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
collect_tables(SPIPlanPtr plan, FetchResult *result, MemoryContext cxt)
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
				result->too_many_tables = true;
				break;
			}
			appendStringInfoChar(&buf, (char) (len >> 8));
			appendStringInfoChar(&buf, (char) (len & 0xff));
			appendBinaryStringInfo(&buf, name, len);
		}
	}
	result->tables.data = buf.data;
	result->tables.len = buf.len;
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

/*
 * Run query and fill *result.  The value is copied into the caller's memory
 * context.
 */
void
TwoCacheRunFetch(const char *query, const ArcKey *key, FetchResult *result)
{
	ErrorContextCallback errcb;
	bool		save_read_only = XactReadOnly;
	FetchReceiver receiver;
	SPIExecuteOptions options;
	int			ret;
	int			guc_level;

	memset(result, 0, sizeof(FetchResult));
	memset(&receiver, 0, sizeof(receiver));
	receiver.pub.receiveSlot = fetch_receive;
	receiver.pub.rStartup = fetch_startup;
	receiver.pub.rShutdown = fetch_shutdown;
	receiver.pub.rDestroy = fetch_destroy;
	receiver.pub.mydest = DestNone;
	receiver.cxt = CurrentMemoryContext;
	receiver.result = result;

	memset(&options, 0, sizeof(options));
	options.read_only = false;	/* a fresh snapshot per statement */
	options.dest = (DestReceiver *) &receiver;

	errcb.callback = fetch_error_callback;
	errcb.arg = (void *) key;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	TwoCacheFetchDepthCheck();
	guc_level = use_fixed_output_settings();
	XactReadOnly = true;
	fetch_depth++;
	PG_TRY();
	{
		if (twocache_auto_tag)
		{
			SPIPrepareOptions popts;
			SPIPlanPtr	plan;

			memset(&popts, 0, sizeof(popts));
			popts.cursorOptions = CURSOR_OPT_PARALLEL_OK;
			plan = SPI_prepare_extended(query, &popts);
			if (plan == NULL)
				ret = SPI_result;
			else
			{
				ret = SPI_execute_plan_extended(plan, &options);
				if (ret >= 0)
					collect_tables(plan, result, receiver.cxt);
			}
		}
		else
			ret = SPI_execute_extended(query, &options);
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
	if (!receiver.started)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("fetch query must return rows"),
				 errdetail("It is a statement that returns no result set.")));

	/* the caller's settings again; after an error, the abort restores them */
	AtEOXact_GUC(true, guc_level);
	SPI_finish();
	error_context_stack = errcb.previous;
}
