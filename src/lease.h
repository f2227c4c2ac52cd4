/*-------------------------------------------------------------------------
 *
 * lease.h
 *	  Fleet-wide single flight through a lease in Redis (lease.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_LEASE_H
#define TWOCACHE_LEASE_H

#include "l2.h"
#include "redis.h"
#include "twocache.h"

typedef enum LeaseResult
{
	LEASE_NONE,					/* no lease: fetch without one */
	LEASE_HELD,					/* ours: fetch, store, LeaseEnd */
	LEASE_BUSY,					/* another server's (internal) */
	LEASE_FILLED				/* the holder's value reached Redis */
} LeaseResult;

typedef struct FleetLease
{
	bool		held;
	char		token[TWOCACHE_MAX_INSTANCE_ID + 48];
} FleetLease;

extern Size LeaseShmemSize(void);
typedef struct LeaseShared LeaseShared;
extern LeaseShared *LeaseShmemInit(char *base);
extern bool LeaseEnabled(void);
extern LeaseResult LeaseAcquire(const ArcKey *key, FleetLease *lease,
								bool (*check_l2) (void *arg), void *arg,
								L2FillStart *start);
extern bool LeaseEndCommand(const ArcKey *key, const FleetLease *lease,
							TcRedisCommand *cmd);
extern void LeaseEnded(FleetLease *lease);
extern void LeaseEnd(const ArcKey *key, FleetLease *lease);
extern void LeaseWake(const ArcKey *key);

#endif							/* TWOCACHE_LEASE_H */
