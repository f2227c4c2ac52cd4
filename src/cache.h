/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  L1 primitives of cache.c shared with batch.c.
 *
 * Callers follow cache.c's locking rules: TwoCacheFindLive with the
 * partition lock held (exclusively: it drops an expired entry); the others
 * take it themselves and are called with no twocache LWLock held.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_CACHE_H
#define TWOCACHE_CACHE_H

#include "flight.h"
#include "l2.h"
#include "twocache.h"

extern ArcEntry *TwoCacheFindLive(ArcPartition *part, HTAB *hash,
								  const ArcKey *key, TimestampTz now);
extern text *TwoCacheCopyValue(const char *value, uint32 len);
extern bool TwoCacheL1Fill(ArcPartition *part, HTAB *hash, const ArcKey *key,
						   const char *value, uint32 len, bool negative,
						   const ArcTags *tags, int64 ttl_ms, FlightTicket *t);
extern bool TwoCacheFillIsStale(ArcPartition *part, const ArcKey *key,
								const ArcTags *tags, const FlightTicket *t);
extern bool TwoCacheL2Answer(ArcPartition *part, HTAB *hash, const ArcKey *key,
							 const L2Entry *e, FlightTicket *t, text **result);

#endif							/* TWOCACHE_CACHE_H */
