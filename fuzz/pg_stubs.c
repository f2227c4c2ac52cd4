/*-------------------------------------------------------------------------
 *
 * pg_stubs.c
 *	  The few PostgreSQL backend symbols the fuzz targets' code refers to.
 *
 * src/message.c and src/redis_url.c neither allocate nor raise errors, so
 * the only backend function they can reach is ExceptionalCondition, from a
 * failed Assert (the fuzz build defines USE_ASSERT_CHECKING).  port.h turns
 * snprintf and fprintf into pg_snprintf and pg_fprintf, which come from
 * libpgport when run.sh finds it; with FUZZ_STUB_SNPRINTF, from the C
 * library's vsnprintf and vfprintf here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>

/* A failed Assert: report it and abort, which libFuzzer records as a crash. */
#if PG_VERSION_NUM >= 160000
void
ExceptionalCondition(const char *conditionName, const char *fileName,
					 int lineNumber)
{
	fprintf(stderr, "TRAP: failed Assert(\"%s\"), File: \"%s\", Line: %d\n",
			conditionName, fileName, lineNumber);
	abort();
}
#else
void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "TRAP: %s(\"%s\"), File: \"%s\", Line: %d\n",
			errorType, conditionName, fileName, lineNumber);
	abort();
}
#endif

#ifdef FUZZ_STUB_SNPRINTF
/*
 * port.h routes these through PostgreSQL's own printf; without libpgport,
 * the C library's does for %s and %d.
 */
#undef vsnprintf
#undef vfprintf

int
pg_snprintf(char *str, size_t count, const char *fmt,...)
{
	va_list		args;
	int			n;

	va_start(args, fmt);
	n = vsnprintf(str, count, fmt, args);
	va_end(args);
	return n;
}

int
pg_fprintf(FILE *stream, const char *fmt,...)
{
	va_list		args;
	int			n;

	va_start(args, fmt);
	n = vfprintf(stream, fmt, args);
	va_end(args);
	return n;
}
#endif
