/*-------------------------------------------------------------------------
 *
 * fetch.c
 *	  Running a fetch query through SPI and checking what it returned.
 *
 * The query runs as the calling role, read-only: the transaction is marked
 * read-only for its duration, so any write (a DML statement, nextval(), a
 * volatile function that writes, SELECT FOR UPDATE) fails with 25006.  In
 * READ COMMITTED each statement takes a fresh snapshot, after the caller has
 * recorded where fencing starts (flight.c), so a fill never reads data older
 * than its fence.  It must return zero or one row of one column (the value)
 * or two columns (the value and an interval TTL).  Errors, its own or ours,
 * carry a CONTEXT line naming the key.
 *
 * No locks are held here; callers must not hold any twocache LWLock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"

#include "twocache.h"

static void
fetch_error_callback(void *arg)
{
	const ArcKey *key = (const ArcKey *) arg;

	errcontext("twocache fetch for key \"%.*s\"", (int) key->len, key->data);
}

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

/*
 * Run query and fill *result.  The value is copied into the caller's memory
 * context before SPI's is released.
 */
void
TwoCacheRunFetch(const char *query, const ArcKey *key, FetchResult *result)
{
	MemoryContext caller = CurrentMemoryContext;
	ErrorContextCallback errcb;
	bool		save_read_only = XactReadOnly;
	int			ret;

	memset(result, 0, sizeof(FetchResult));

	errcb.callback = fetch_error_callback;
	errcb.arg = (void *) key;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	XactReadOnly = true;
	PG_TRY();
	{
		/* two rows at most: enough to tell one from many */
		ret = SPI_execute(query, false, 2);
	}
	PG_FINALLY();
	{
		XactReadOnly = save_read_only;
	}
	PG_END_TRY();

	if (ret < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("could not run fetch query: %s",
						SPI_result_code_string(ret))));
	if (SPI_tuptable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("fetch query must return rows"),
				 errdetail("It is a statement that returns no result set.")));
	check_shape(SPI_tuptable->tupdesc);
	if (SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("fetch query returned more than one row"),
				 errhint("A fetch query returns zero rows (not found) or one row.")));

	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		(void) SPI_getbinval(tuple, desc, 1, &isnull);
		if (!isnull)
		{
			char	   *s = SPI_getvalue(tuple, desc, 1);

			result->found = true;
			result->value_len = strlen(s);
			result->value = MemoryContextStrdup(caller, s);
		}
		if (desc->natts == 2)
		{
			Datum		d = SPI_getbinval(tuple, desc, 2, &isnull);

			if (!isnull)
			{
				result->has_ttl = true;
				result->ttl_ms = TwoCacheIntervalToMs(DatumGetIntervalP(d), true);
			}
		}
	}

	SPI_finish();
	error_context_stack = errcb.previous;
}
