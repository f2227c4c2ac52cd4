/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  Fleet-wide single flight (SPEC section 10): a lease in Redis per key,
 *	  so that concurrent misses of one key on several servers run its fetch
 *	  once in the fleet.
 *
 * On a server, single flight is flight.c's: one backend (the filler) runs a
 * key's fetch and the others wait for it.  In two-layer mode with
 * twocache.lease_ttl > 0 the filler, after its L2 miss, first takes the
 * key's lease in Redis: <prefix>lease:{<t>}:<Redis key>, in the key's slot
 * (<t> as for its fence, so it lives on the key's node in a cluster), set
 * NX with a token of its own and a life of lease_ttl.
 *
 * - Taken: it fetches, stores the value (L2 then L1, as always), and ends
 *   the lease: one script deletes the lease if it still holds the token and
 *   publishes an 'f' (filled) message for the key on twocache.channel.
 * - Held by another: it waits.  Every server's worker, on an 'f' message,
 *   wakes the backends of its server waiting on that key (this file's
 *   waiter slots, below); a woken waiter reads Redis again: the value is
 *   there (an L2 hit, stored in its L1, and its own waiters get it), or,
 *   if the holder gave up or died, it tries to take the lease.  Without a
 *   message it wakes when the lease would expire (its remaining life comes
 *   back with the refusal) or, while its worker is not subscribed (no
 *   message can come), every LEASE_POLL_MS.  twocache.fetch_wait_timeout
 *   bounds the whole wait as it bounds a wait on another backend; after it
 *   the backend fetches without the lease.  Waits are interruptible.
 * - A holder whose fetch fails (an error, a cancel) ends its lease at once,
 *   so a waiter takes over without waiting for it to expire; one that dies
 *   (or cannot reach Redis to end it) leaves it to expire for the other
 *   servers, while its own server's next filler takes it over at once: on
 *   a server only the key's flight takes a lease, so a lease of this
 *   server's met by a new filler is one its holder left behind.  A fetch
 *   longer than lease_ttl can run twice.
 * - Redis unavailable, or an error reply: no lease, the fetch runs (per-
 *   server single flight only, as before 1.4).
 *
 * A wait counts in fetch_waits, as a wait on another backend does.
 *
 * Waiter slots, in shared memory, one per PGPROC: 0, or LEASE_WAITING |
 * the key's hash, with LEASE_WOKEN set by the worker when an 'f' message
 * for that hash arrived (it also sets the backend's latch).  The flag, not
 * the latch, says "woken": Redis I/O between the registration and the
 * sleep waits on the latch and resets it.  A slot is registered before the
 * lease is asked for, so a message that comes after the refusal is never
 * missed.  A false match (another key, same 32-bit hash) only makes a
 * waiter look at Redis once more.  nwaiting lets the worker skip the scan
 * when nobody waits.  No locks: atomics only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "l2.h"
#include "lease.h"
#include "redis.h"
#include "twocache.h"

#define LEASE_WAITING	(UINT64CONST(1) << 32)
#define LEASE_WOKEN		(UINT64CONST(1) << 33)
#define LEASE_POLL_MS	50

typedef struct LeaseShared
{
	int			nprocs;
	pg_atomic_uint32 nwaiting;
	pg_atomic_uint64 slots[FLEXIBLE_ARRAY_MEMBER];
} LeaseShared;

#define leases (twocache_shared->leases)
static uint64 lease_counter = 0;

/*
 * Take the lease: KEYS[1] the lease, ARGV[1] the token, ARGV[2] its life in
 * ms, ARGV[3] this server's token prefix.  A lease of this server's is
 * taken over: the caller fills the key for this server, so the backend that
 * holds it has ended its flight without ending the lease (it died, or Redis
 * failed when it tried).  Returns -1 if taken, else the holder's remaining
 * life in ms (-2: it ended meanwhile; try again).
 */
static const char *const lease_take_script =
"if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end\n"
"local cur = redis.call('GET', KEYS[1])\n"
"if cur and string.sub(cur, 1, #ARGV[3]) == ARGV[3] then\n"
"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
"  return -1\n"
"end\n"
"return redis.call('PTTL', KEYS[1])\n";

/*
 * End the lease: KEYS[1] the lease, ARGV[1] the token (deleted only if it
 * is still ours: an expired lease may be another's now), then publish
 * ARGV[3] on channel ARGV[2].
 */
static const char *const lease_end_script =
"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
"redis.call('PUBLISH', ARGV[2], ARGV[3])\n"
"return 1\n";

static int
lease_nprocs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
LeaseShmemSize(void)
{
	return add_size(offsetof(LeaseShared, slots),
					mul_size(lease_nprocs(), sizeof(pg_atomic_uint64)));
}

LeaseShared *
LeaseShmemInit(char *base)
{
	LeaseShared *ls = (LeaseShared *) base;
	int			i;

	ls->nprocs = lease_nprocs();
	pg_atomic_init_u32(&ls->nwaiting, 0);
	for (i = 0; i < ls->nprocs; i++)
		pg_atomic_init_u64(&ls->slots[i], 0);
	return ls;
}

/* Is the fleet lease in use now? */
bool
LeaseEnabled(void)
{
	return twocache_lease_ttl > 0 && TwoCacheRedisEnabled();
}

/*
 * The lease's Redis key for key (palloc'd): <prefix>lease:{<t>}:<Redis
 * key>, {<t>} the hash tag of the key's fence, so in the key's slot.
 */
static char *
lease_name(const ArcKey *key, size_t *len)
{
	const char *dbname;
	const char *rolename;
	size_t		rklen;
	char	   *rkey;
	size_t		flen;
	char	   *fence;
	const char *tag;
	StringInfoData buf;

	L2ScopeNames(key, &dbname, &rolename);
	rkey = L2KeyName(key, dbname, rolename, &rklen);
	fence = L2DeleteFenceName(rkey, rklen, &flen);
	tag = strchr(fence, '{');
	Assert(tag != NULL);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%slease:", twocache_key_prefix);
	appendBinaryStringInfo(&buf, tag, flen - (tag - fence));
	appendStringInfoChar(&buf, ':');
	appendBinaryStringInfo(&buf, rkey, rklen);
	*len = buf.len;
	return buf.data;
}

static void
register_waiter(const ArcKey *key)
{
	pg_atomic_write_u64(&leases->slots[MyProc->pgprocno], LEASE_WAITING | key->hash);
	pg_atomic_fetch_add_u32(&leases->nwaiting, 1);
}

static void
unregister_waiter(void)
{
	if (pg_atomic_read_u64(&leases->slots[MyProc->pgprocno]) != 0)
	{
		pg_atomic_write_u64(&leases->slots[MyProc->pgprocno], 0);
		pg_atomic_fetch_sub_u32(&leases->nwaiting, 1);
	}
}

/*
 * Ask for key's lease once, in the round trip that reads where a fill
 * starts (L2TimeWith: *start, for the fill that follows if it is taken).
 * Returns LEASE_HELD (lease->token is ours), LEASE_BUSY (*wait_ms: the
 * holder's remaining life), or LEASE_NONE (Redis unavailable or refused).
 */
static LeaseResult
try_take(const ArcKey *key, FleetLease *lease, int64 *wait_ms, L2FillStart *start)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	char		ttlbuf[32];
	size_t		nlen;
	char	   *name = lease_name(key, &nlen);
	LeaseResult result = LEASE_NONE;

	char		prefix[TWOCACHE_MAX_INSTANCE_ID + 2];

	/* instance:pid:n; the instance part names this server's leases */
	snprintf(prefix, sizeof(prefix), "%s:", twocache_shared->instance_id);
	snprintf(lease->token, sizeof(lease->token), "%s%d:" UINT64_FORMAT,
			 prefix, MyProcPid, ++lease_counter);
	snprintf(ttlbuf, sizeof(ttlbuf), "%d", twocache_lease_ttl);
	TwoCacheRedisCommand(&cmd, "EVAL");
	TwoCacheRedisArg(&cmd, lease_take_script, strlen(lease_take_script));
	TwoCacheRedisArg(&cmd, "1", 1);
	TwoCacheRedisArg(&cmd, name, nlen);
	TwoCacheRedisArg(&cmd, lease->token, strlen(lease->token));
	TwoCacheRedisArg(&cmd, ttlbuf, strlen(ttlbuf));
	TwoCacheRedisArg(&cmd, prefix, strlen(prefix));
	if (!L2TimeWith(key, start, &cmd, &reply))
		return LEASE_NONE;
	if (reply->type == TC_REPLY_INTEGER)
	{
		if (reply->integer == -1)
			result = LEASE_HELD;
		else
		{
			result = LEASE_BUSY;
			/* -2: ended meanwhile; -1 (no expiry) cannot be ours: poll */
			*wait_ms = reply->integer >= 0 ? reply->integer + 1 : 0;
		}
	}
	TwoCacheRedisFreeReplies(1, &reply);
	lease->held = (result == LEASE_HELD);
	return result;
}

/*
 * Sleep until an 'f' message for key's hash arrives, timeout_ms passes, or
 * an interrupt.  The slot is registered.
 */
static void
sleep_for_message(long timeout_ms)
{
	pg_atomic_uint64 *slot = &leases->slots[MyProc->pgprocno];
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		uint64		v = pg_atomic_read_u64(slot);
		long		left;

		if (v & LEASE_WOKEN)
		{
			/* consume the wake, stay registered */
			pg_atomic_write_u64(slot, v & ~LEASE_WOKEN);
			return;
		}
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		if (left <= 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* LeaseAcquire's loop; the caller registered as a waiter */
static LeaseResult
acquire_loop(const ArcKey *key, FleetLease *lease,
			 bool (*check_l2) (void *arg), void *arg, L2FillStart *start)
{
	TimestampTz deadline = 0;
	bool		counted = false;

	if (twocache_fetch_wait_timeout > 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   twocache_fetch_wait_timeout);
	for (;;)
	{
		int64		wait_ms = 0;
		long		timeout;
		bool		subscribed;
		LeaseResult result = try_take(key, lease, &wait_ms, start);

		if (result != LEASE_BUSY)
			return result;
		if (!counted)
			TwoCacheCount(TC_FETCH_WAITS, 1);
		counted = true;

		SpinLockAcquire(&twocache_shared->worker.mutex);
		subscribed = twocache_shared->worker.subscribed;
		SpinLockRelease(&twocache_shared->worker.mutex);
		timeout = (long) Min(wait_ms, (int64) twocache_lease_ttl);
		if (!subscribed)
			timeout = Min(timeout, LEASE_POLL_MS);
		if (deadline != 0)
		{
			long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															   deadline);

			if (left <= 0)
				return LEASE_NONE;
			timeout = Min(timeout, left);
		}
		if (timeout > 0)
			sleep_for_message(timeout);
		if (check_l2(arg))
			return LEASE_FILLED;
	}
}

/*
 * For a filler that missed key in L2: take key's lease, or wait for its
 * holder.  check_l2 is called after each wake to read Redis again; it
 * returns true when the value was there (then LEASE_FILLED is returned:
 * the caller has its value).  Otherwise returns LEASE_HELD (fetch, then
 * LeaseEnd: *start is where the fill starts, read with the lease) or
 * LEASE_NONE (fetch without the lease: disabled, Redis unavailable, or
 * fetch_wait_timeout passed; *start is not read).
 */
LeaseResult
LeaseAcquire(const ArcKey *key, FleetLease *lease,
			 bool (*check_l2) (void *arg), void *arg, L2FillStart *start)
{
	LeaseResult result;

	lease->held = false;
	memset(start, 0, sizeof(L2FillStart));
	if (!LeaseEnabled())
		return LEASE_NONE;
	register_waiter(key);
	PG_TRY();
	{
		result = acquire_loop(key, lease, check_l2, arg, start);
	}
	PG_FINALLY();
	{
		unregister_waiter();
	}
	PG_END_TRY();
	if (result != LEASE_HELD)
		memset(start, 0, sizeof(L2FillStart));
	return result;
}

/*
 * The command that ends a lease this backend holds (into *cmd; false if it
 * holds none): it deletes the lease if it is still ours and tells every
 * server's waiters (an 'f' message).  Sent once the value is in Redis (with
 * the fill, L2Fill's extra), then LeaseEnded; or by LeaseEnd.
 */
bool
LeaseEndCommand(const ArcKey *key, const FleetLease *lease, TcRedisCommand *cmd)
{
	size_t		nlen;
	char	   *name;
	const char *dbname;
	const char *rolename;
	char	   *msg;
	int			msglen;

	if (!lease->held)
		return false;
	name = lease_name(key, &nlen);
	L2ScopeNames(key, &dbname, &rolename);
	msg = L2Message(key, dbname, rolename, TC_MSG_FILLED, InvalidXLogRecPtr, &msglen);
	TwoCacheRedisCommand(cmd, "EVAL");
	TwoCacheRedisArg(cmd, lease_end_script, strlen(lease_end_script));
	TwoCacheRedisArg(cmd, "1", 1);
	TwoCacheRedisArg(cmd, name, nlen);
	TwoCacheRedisArg(cmd, lease->token, strlen(lease->token));
	TwoCacheRedisArg(cmd, twocache_channel, strlen(twocache_channel));
	TwoCacheRedisArg(cmd, msg, msglen);
	return true;
}

/* The lease's end was sent with another exchange (L2Fill's extra). */
void
LeaseEnded(FleetLease *lease)
{
	lease->held = false;
}

/*
 * End a lease this backend holds, in a round trip of its own: after a fill
 * that did not write Redis, or when the fetch failed.  Raises no error (a
 * failure leaves the lease to expire); safe with interrupts held.
 */
void
LeaseEnd(const ArcKey *key, FleetLease *lease)
{
	TcRedisCommand cmd;
	TcRedisReply *reply = NULL;
	char		err[512];

	if (!LeaseEndCommand(key, lease, &cmd))
		return;
	lease->held = false;
	if (TwoCacheRedisBackendExec(1, &cmd, &reply, err, sizeof(err)))
		TwoCacheRedisFreeReplies(1, &reply);
}

/*
 * The worker, on an 'f' message for key: wake this server's backends
 * waiting on key's lease.  No locks, no errors.
 */
void
LeaseWake(const ArcKey *key)
{
	int			i;

	if (pg_atomic_read_u32(&leases->nwaiting) == 0)
		return;
	for (i = 0; i < leases->nprocs; i++)
	{
		uint64		v = pg_atomic_read_u64(&leases->slots[i]);

		if ((v & LEASE_WAITING) && (uint32) v == key->hash)
		{
			/* a waiter that unregistered meanwhile only gets a spare wake */
			if (pg_atomic_compare_exchange_u64(&leases->slots[i], &v, v | LEASE_WOKEN))
				SetLatch(&ProcGlobal->allProcs[i].procLatch);
		}
	}
}
