/*-------------------------------------------------------------------------
 *
 * flight.h
 *	  Single-flight fetch slots (flight.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_FLIGHT_H
#define TWOCACHE_FLIGHT_H

#include "arc.h"

typedef struct FlightSlot FlightSlot;

/* Keys one backend's batch fetches can guard at once (flight.c) */
#define FLIGHT_BATCH_ITEMS	256
typedef struct FlightPool FlightPool;

/*
 * A backend's handle on one fetch it runs.  A guarded ticket (with a slot)
 * lives in the backend's static storage, never on a stack, so that the abort
 * of the (sub)transaction it began in can release it whatever error ended
 * the fetch; an unguarded one lives where its caller puts it.
 */
typedef struct FlightTicket
{
	dlist_node	node;			/* on the backend's list of owned flights */
	int			nest_level;		/* transaction nesting level at begin */
	ArcPartition *part;
	FlightSlot *slot;			/* NULL: unguarded (no single flight) */
	uint64		seq;			/* slot's seq when claimed */
	uint64		start_counter;	/* partition's invalidation counter at start */
	uint64		tag_start;		/* tag fence counter at start (fence.c) */
	XLogRecPtr	replay_start;	/* on a hot standby: WAL replayed at start */
	TimestampTz xact_start;		/* transaction start under a transaction
								 * snapshot, else 0 */
} FlightTicket;

typedef enum FlightWaitResult
{
	FLIGHT_WAIT_DONE,			/* the flight ended: look the key up again */
	FLIGHT_WAIT_TIMEOUT,		/* twocache.fetch_wait_timeout passed */
	FLIGHT_WAIT_DEADLOCK,		/* waiting would deadlock; did not wait */
	FLIGHT_WAIT_FAILED			/* could not wait in the lock manager (lock
								 * table full): fetch without waiting */
} FlightWaitResult;

extern Size FlightShmemSize(void);
extern FlightPool *FlightShmemInit(char *base);
extern uint32 FlightsInProgress(void);
extern FlightSlot *FlightFind(ArcPartition *part, const ArcKey *key);
extern FlightTicket *FlightBegin(ArcPartition *part, const ArcKey *key,
								 FlightTicket *unguarded);
extern void FlightBeginUnguarded(ArcPartition *part, FlightTicket *t);
extern void FlightEnd(FlightTicket *t);
extern FlightTicket *FlightBatchBegin(Oid dbid);
extern bool FlightBatchAdd(FlightTicket *lead, ArcPartition *part,
						   const ArcKey *key, FlightTicket *t);
extern FlightWaitResult FlightWait(ArcPartition *part, const ArcKey *key,
								   FlightSlot *slot, int timeout_ms);
extern uint64 *FlightSlotFence(FlightSlot *slot);

#endif							/* TWOCACHE_FLIGHT_H */
