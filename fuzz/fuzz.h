/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *	  What the fuzz targets share: a check that stays on in every build.
 *
 * A failed FUZZ_CHECK prints the condition and aborts, which libFuzzer
 * reports as a crash and saves the input as the reproducer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_FUZZ_H
#define TWOCACHE_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond) \
	((cond) ? (void) 0 : fuzz_check_failed(#cond, __FILE__, __LINE__))

static inline void
fuzz_check_failed(const char *cond, const char *file, int line)
{
	fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", cond, file, line);
	abort();
}

#endif							/* TWOCACHE_FUZZ_H */
