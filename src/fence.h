/*-------------------------------------------------------------------------
 *
 * fence.h
 *	  Fencing of in-flight fills: the one staleness rule (fence.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_FENCE_H
#define TWOCACHE_FENCE_H

#include "arc.h"
#include "flight.h"

extern void FenceStart(ArcPartition *part, FlightTicket *t);
extern void FenceKey(ArcPartition *part, const ArcKey *key);
extern void FenceAll(ArcPartition *part);
extern void FenceDeferKey(ArcPartition *part, uint32 hash, XLogRecPtr lsn);
extern void FenceTag(Oid dbid, const char *tag, int taglen, XLogRecPtr lsn);
extern bool FenceFillIsStale(ArcPartition *part, const ArcKey *key,
							 const ArcTags *tags, const FlightTicket *t);

#endif							/* TWOCACHE_FENCE_H */
