/*-------------------------------------------------------------------------
 *
 * redis.c
 *	  hiredis glue: connecting, and bounded, interruptible
 *	  command exchanges driven by the backend's latch.
 *
 * hiredis is used in non-blocking mode only, as adapters/poll.h drives it
 * from someone else's event loop: we append commands to its output buffer,
 * write with redisBufferWrite, read with redisBufferRead, and do all waiting
 * in WaitLatchOrSocket, so every wait is bounded by a deadline (normally
 * twocache.redis_timeout), wakes on the latch for cancel and termination,
 * and exits on postmaster death.  The installed hiredis is 0.14.1, which has
 * no connect timeouts of its own; this file is the only one that knows.
 * URLs are parsed in redis_url.c.  (A host name is resolved by hiredis with
 * a blocking getaddrinfo, the one wait not bounded here.)
 *
 * Every connection is a file descriptor PostgreSQL does not open itself, so
 * it is accounted with fd.c as libpq-be-fe-helpers.h does for libpq:
 * AcquireExternalFD before the socket is made (fd.c closes virtual file
 * descriptors to make room), ReleaseExternalFD in TwoCacheRedisFree.  The
 * wait set kept for the socket waited on last takes one more (its epoll
 * instance; CreateWaitEventSet raises an ERROR when fd.c has none left, so
 * we check first).  When fd.c has none to give, Redis is unavailable, as
 * when it is down.
 *
 * A connect (TCP or unix socket, then AUTH, SELECT and CLIENT SETNAME in
 * one pipeline) runs under PG_TRY: a cancel or statement_timeout while it
 * waits frees the half-open connection before the error goes on.  A
 * connection names itself twocache:<instance_id>:<role>:<pid> so that
 * CLIENT LIST shows whose it is; an error reply to CLIENT SETNAME is
 * ignored (old servers and some proxies refuse CLIENT).
 *
 * A backend has one lazily opened connection, kept across transactions.  An
 * exchange that fails (timeout, invalid reply) or is interrupted (an ERROR
 * from a cancel while waiting, caught and re-thrown) may leave replies in
 * flight, so its connection is closed at once and never reused: the next
 * use opens a new one.  After a failure the backend skips Redis for
 * twocache.redis_retry_interval plus a random part of up to a quarter of
 * it, so that the backends that saw Redis fail together do not all come
 * back at once.  Nothing here raises an ERROR because of Redis: failures are
 * returned with a message in errbuf, which never contains the password.
 *
 * This is the only file that includes hiredis: the rest of twocache sees a
 * TcRedisConn (a redisContext) and TcRedisReply (a redisReply, the same
 * layout, checked at compile time) through redis.h.
 *
 * No LWLock may be held while calling into this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis.h"
#include "twocache.h"

/* TcRedisReply is hiredis's redisReply under our name (redis.h) */
StaticAssertDecl(sizeof(TcRedisReply) == sizeof(redisReply) &&
				 offsetof(TcRedisReply, type) == offsetof(redisReply, type) &&
				 offsetof(TcRedisReply, integer) == offsetof(redisReply, integer) &&
				 offsetof(TcRedisReply, len) == offsetof(redisReply, len) &&
				 offsetof(TcRedisReply, str) == offsetof(redisReply, str) &&
				 offsetof(TcRedisReply, elements) == offsetof(redisReply, elements) &&
				 offsetof(TcRedisReply, element) == offsetof(redisReply, element),
				 "TcRedisReply must be laid out as redisReply");
StaticAssertDecl(TC_REPLY_STRING == REDIS_REPLY_STRING &&
				 TC_REPLY_ARRAY == REDIS_REPLY_ARRAY &&
				 TC_REPLY_INTEGER == REDIS_REPLY_INTEGER &&
				 TC_REPLY_NIL == REDIS_REPLY_NIL &&
				 TC_REPLY_STATUS == REDIS_REPLY_STATUS &&
				 TC_REPLY_ERROR == REDIS_REPLY_ERROR,
				 "TcRedisReplyType must number replies as hiredis does");

/* The backend's connection */
static redisContext *backend_conn = NULL;
static char *backend_conn_url = NULL;	/* settings it was opened with */
static TimestampTz backend_skip_until = 0;

/* what fd.c's refusal of an external descriptor is called */
#define NO_FDS_LEFT "there are too many open files on the local server"

/* ----------------------------------------------------------------
 * Bounded waits and exchanges
 * ----------------------------------------------------------------
 */

/*
 * One WaitEventSet (latch, postmaster death, socket) is kept for the socket
 * waited on last, so a Redis exchange costs epoll_wait calls rather than
 * setting up and tearing down an epoll instance per wait.  It must be
 * dropped before its socket is closed: TwoCacheRedisFree does that.
 */
static WaitEventSet *wait_set = NULL;
static int	wait_set_fd = PGINVALID_SOCKET;
static int	wait_set_events = 0;
static int	wait_set_pos = -1;

static void
drop_wait_set(void)
{
	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set = NULL;
	wait_set_fd = PGINVALID_SOCKET;
	wait_set_events = 0;
	wait_set_pos = -1;
}

/*
 * Free a connection made by TwoCacheRedisConnect (and the wait set of its
 * socket), and give its descriptor back to fd.c.
 */
static void
redis_free(redisContext *c)
{
	if (c == NULL)
		return;
	if (c->fd == wait_set_fd)
		drop_wait_set();
	redisFree(c);
	ReleaseExternalFD();
}

/*
 * Wait until fd is ready for events (WL_SOCKET_*): true.  False with errbuf
 * set if the deadline passes (timeout_msg) or there is no descriptor left
 * for the wait set.  An interrupt raises an ERROR as usual, from
 * CHECK_FOR_INTERRUPTS: callers free or drop their connection then.
 */
static bool
wait_socket(int fd, int events, TimestampTz deadline, const char *timeout_msg,
			char *errbuf, size_t errlen)
{
	if (wait_set == NULL || wait_set_fd != fd)
	{
		drop_wait_set();

		/*
		 * CreateWaitEventSet takes an external descriptor for its epoll
		 * instance and raises an ERROR when fd.c has none left: make sure it
		 * will get one, so that running out means "Redis unavailable".
		 */
		if (!AcquireExternalFD())
		{
			snprintf(errbuf, errlen, "%s", NO_FDS_LEFT);
			return false;
		}
		ReleaseExternalFD();
		wait_set = CreateWaitEventSet(TopMemoryContext, 3);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		wait_set_pos = AddWaitEventToSet(wait_set, events, fd, NULL, NULL);
		wait_set_fd = fd;
		wait_set_events = events;
	}
	else if (wait_set_events != events)
	{
		ModifyWaitEvent(wait_set, wait_set_pos, events, NULL);
		wait_set_events = events;
	}

	for (;;)
	{
		long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															  deadline);
		WaitEvent	event;

		if (timeout <= 0)
		{
			snprintf(errbuf, errlen, "%s", timeout_msg);
			return false;
		}
		if (WaitEventSetWait(wait_set, timeout, &event, 1, PG_WAIT_EXTENSION) == 0)
			continue;			/* timed out: the loop checks the deadline */
		if (event.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (event.events & events)
			return true;
	}
}

static void
set_error(char *errbuf, size_t errlen, const char *what, const redisContext *c)
{
	if (c != NULL && c->err != 0 && c->errstr[0] != '\0')
		snprintf(errbuf, errlen, "%s: %s", what, c->errstr);
	else
		snprintf(errbuf, errlen, "%s", what);
}

/*
 * Read ncmds replies into replies[], counting them in *got, by deadline.
 * False with errbuf set on failure.
 */
static bool
read_replies(redisContext *c, int ncmds, redisReply **replies,
			 TimestampTz deadline, volatile int *got, char *errbuf, size_t errlen)
{
	while (*got < ncmds)
	{
		void	   *reply = NULL;

		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
		{
			set_error(errbuf, errlen, "invalid reply from Redis", c);
			return false;
		}
		if (reply != NULL)
		{
			replies[(*got)++] = (redisReply *) reply;
			continue;
		}
		if (!wait_socket(c->fd, WL_SOCKET_READABLE, deadline,
						 "timed out waiting for Redis", errbuf, errlen))
			return false;
		if (redisBufferRead(c) != REDIS_OK)
		{
			set_error(errbuf, errlen, "could not read from Redis", c);
			return false;
		}
	}
	return true;
}

/*
 * Send ncmds commands in one pipeline and read their replies into
 * replies[], all within timeout_ms.  On failure frees what it read, sets
 * errbuf and returns false: replies may still be in flight, so the caller
 * must drop the connection (and must drop it too if this raises an ERROR,
 * as a cancel while waiting does; what was read is freed then too).
 */
static bool
redis_exec(redisContext *c, int ncmds, const TcRedisCommand *cmds,
		   redisReply **replies, int timeout_ms,
		   char *errbuf, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	volatile int got = 0;
	int			done = 0;
	int			i;
	bool		ok;

	for (i = 0; i < ncmds; i++)
	{
		bool		wide = cmds[i].argc > TC_REDIS_MAX_ARGS;

		/* hiredis 0.14 takes a non-const argv it does not modify */
		if (redisAppendCommandArgv(c, cmds[i].argc,
								   (const char **) (wide ? cmds[i].xargv : cmds[i].argv),
								   wide ? cmds[i].xargvlen : cmds[i].argvlen) != REDIS_OK)
		{
			set_error(errbuf, errlen, "could not queue Redis command", c);
			return false;
		}
	}

	/* write everything, waiting for the socket as needed */
	for (;;)
	{
		if (redisBufferWrite(c, &done) != REDIS_OK)
		{
			set_error(errbuf, errlen, "could not send to Redis", c);
			return false;
		}
		if (done)
			break;
		if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline,
						 "timed out sending to Redis", errbuf, errlen))
			return false;
	}

	PG_TRY();
	{
		ok = read_replies(c, ncmds, replies, deadline, &got, errbuf, errlen);
	}
	PG_CATCH();
	{
		for (i = 0; i < got; i++)
			freeReplyObject(replies[i]);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (!ok)
	{
		for (i = 0; i < got; i++)
			freeReplyObject(replies[i]);
		return false;
	}
	return true;
}

static void
free_replies(int n, redisReply **replies)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		if (replies[i] != NULL)
			freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
}

/*
 * The name a connection gives itself (CLIENT SETNAME), so that CLIENT LIST
 * shows whose it is: twocache:<instance_id>:<role>:<pid>.  Instance ids hold
 * printable ASCII other than space only (check_instance_id), which is what
 * Redis takes in a name.  buf should have TC_REDIS_NAME_LEN bytes.
 */
void
TwoCacheRedisClientName(const char *role, char *buf, size_t len)
{
	snprintf(buf, len, "twocache:%s:%s:%d",
			 twocache_shared != NULL ? twocache_shared->instance_id : "",
			 role, MyProcPid);
}

/*
 * The steps of a connect after the socket is made: wait for it to connect,
 * then AUTH, SELECT and CLIENT SETNAME in one pipeline, all by deadline.
 * Returns false with errbuf set on failure; the caller frees c either way
 * if it fails or raises an ERROR.
 */
static bool
connect_setup(redisContext *c, const TcRedisUrl *u, const char *target,
			  const char *name, TimestampTz deadline, char *errbuf, size_t errlen)
{
	char		why[256];
	int			sockerr = 0;
	socklen_t	optlen = sizeof(sockerr);
	char		dbbuf[16];
	TcRedisCommand cmds[3];
	redisReply *replies[3];
	bool		fatal[3];
	int			ncmds = 0;
	int			i;
	long		left;

	if (c->err != 0)
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: %s", target, c->errstr);
		return false;
	}

	/* a non-blocking connect completes when the socket is writable */
	if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline, "timed out",
					 why, sizeof(why)))
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: %s", target, why);
		return false;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &sockerr, &optlen) < 0 || sockerr != 0)
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: %s", target,
				 strerror(sockerr != 0 ? sockerr : errno));
		return false;
	}

	if (u->password[0] != '\0')
	{
		TcRedisCommand *cmd = &cmds[ncmds];

		fatal[ncmds++] = true;
		TwoCacheRedisCommand(cmd, "AUTH");
		if (u->user[0] != '\0')
			TwoCacheRedisArg(cmd, u->user, strlen(u->user));
		TwoCacheRedisArg(cmd, u->password, strlen(u->password));
	}
	if (u->db != 0)
	{
		TcRedisCommand *cmd = &cmds[ncmds];

		fatal[ncmds++] = true;
		snprintf(dbbuf, sizeof(dbbuf), "%d", u->db);
		TwoCacheRedisCommand(cmd, "SELECT");
		TwoCacheRedisArg(cmd, dbbuf, strlen(dbbuf));
	}
	if (name != NULL)
	{
		TcRedisCommand *cmd = &cmds[ncmds];

		fatal[ncmds++] = false;
		TwoCacheRedisCommand(cmd, "CLIENT");
		TwoCacheRedisArg(cmd, "SETNAME", 7);
		TwoCacheRedisArg(cmd, name, strlen(name));
	}
	if (ncmds == 0)
		return true;

	left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	if (!redis_exec(c, ncmds, cmds, replies, (int) Max(left, 1),
						   why, sizeof(why)))
	{
		snprintf(errbuf, errlen, "could not set up Redis connection to %s: %s",
				 target, why);
		return false;
	}
	for (i = 0; i < ncmds; i++)
	{
		if (fatal[i] && replies[i]->type == REDIS_REPLY_ERROR)
		{
			snprintf(errbuf, errlen, "Redis at %s refused %s: %s", target,
					 cmds[i].argv[0], replies[i]->str);
			free_replies(ncmds, replies);
			return false;
		}
	}
	free_replies(ncmds, replies);
	return true;
}

/*
 * Connect to the Redis of url, authenticate, select its database and name
 * the connection name (NULL: no name), all within timeout_ms.  Returns NULL
 * with errbuf set on failure, also when fd.c has no descriptor left for it.
 * If an interrupt raises an ERROR meanwhile, the half-open connection is
 * freed first.  Free the result with TwoCacheRedisFree.
 */
static redisContext *
redis_connect(const char *url, int timeout_ms, const char *name,
			  char *errbuf, size_t errlen)
{
	TcRedisUrl	u;
	const char *perr;
	char		target[MAXPGPATH + 16];
	redisContext *c;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	bool		ok;

	if (!TwoCacheParseRedisUrl(url, &u, &perr))
	{
		snprintf(errbuf, errlen, "invalid twocache.redis_url: %s", perr);
		return NULL;
	}
	TwoCacheRedisUrlTarget(&u, target, sizeof(target));

	/* the socket counts against fd.c's limit: reserve it before it exists */
	if (!AcquireExternalFD())
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: %s", target,
				 NO_FDS_LEFT);
		return NULL;
	}
	c = u.unix_socket ? redisConnectUnixNonBlock(u.path) :
		redisConnectNonBlock(u.hosts[0].host, u.hosts[0].port);
	if (c == NULL)
	{
		ReleaseExternalFD();
		snprintf(errbuf, errlen, "could not connect to Redis at %s: out of memory", target);
		return NULL;
	}

	/* from here on, redis_free(c) gives the descriptor back */
	PG_TRY();
	{
		ok = connect_setup(c, &u, target, name, deadline, errbuf, errlen);
	}
	PG_CATCH();
	{
		/* cancelled while waiting: nothing may keep the half-open socket */
		redis_free(c);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (!ok)
	{
		redis_free(c);
		return NULL;
	}
	return c;
}

/* ----------------------------------------------------------------
 * The backend's connection
 * ----------------------------------------------------------------
 */

/* Is two-layer mode configured? */
bool
TwoCacheRedisEnabled(void)
{
	return twocache_redis_url != NULL && twocache_redis_url[0] != '\0';
}

static void
drop_backend_conn(void)
{
	redisContext *c = backend_conn;

	/* forget it first: this also runs in an error handler */
	backend_conn = NULL;
	if (backend_conn_url != NULL)
		pfree(backend_conn_url);
	backend_conn_url = NULL;
	redis_free(c);
}

/*
 * Record a failure of the backend's connection: drop it, count it, and
 * skip Redis for twocache.redis_retry_interval plus a random part of up to
 * a quarter of it (so that backends that failed together come back apart).
 */
void
TwoCacheRedisBackendFailed(const char *err)
{
	int			skip = twocache_redis_retry_interval +
		(int) pg_prng_uint64_range(&pg_global_prng_state, 0,
								   twocache_redis_retry_interval / 4);

	TwoCacheWorkerState *w = &twocache_shared->worker;
	TimestampTz now = GetCurrentTimestamp();

	drop_backend_conn();
	TwoCacheCount(TC_REDIS_ERRORS, 1);
	backend_skip_until = TimestampTzPlusMilliseconds(now, skip);

	/* twocache_status().last_error: the last Redis error of this server */
	SpinLockAcquire(&w->mutex);
	strlcpy(w->last_error, err, sizeof(w->last_error));
	w->last_error_at = now;
	SpinLockRelease(&w->mutex);
	ereport(DEBUG1,
			(errmsg_internal("twocache: Redis unavailable for %d ms: %s",
							 skip, err)));
}

/*
 * The backend's connection, opened on first use and reopened when the
 * settings changed or after a failure.  NULL when in local mode,
 * within the retry interval after a failure, or when connecting failed
 * (which starts a retry interval); errbuf then says why.
 */
static redisContext *
backend_conn_get(char *errbuf, size_t errlen)
{
	char		name[TC_REDIS_NAME_LEN];

	if (!TwoCacheRedisEnabled())
	{
		drop_backend_conn();
		snprintf(errbuf, errlen, "twocache.redis_url is not set");
		return NULL;
	}
	if (backend_conn != NULL && strcmp(backend_conn_url, twocache_redis_url) != 0)
		drop_backend_conn();
	if (backend_conn != NULL)
		return backend_conn;

	if (backend_skip_until != 0 && GetCurrentTimestamp() < backend_skip_until)
	{
		snprintf(errbuf, errlen, "Redis is skipped for twocache.redis_retry_interval after a failure");
		return NULL;
	}
	TwoCacheRedisClientName("backend", name, sizeof(name));
	backend_conn = redis_connect(twocache_redis_url, twocache_redis_timeout,
										name, errbuf, errlen);
	if (backend_conn == NULL)
	{
		char		why[512];

		strlcpy(why, errbuf, sizeof(why));
		TwoCacheRedisBackendFailed(why);
		return NULL;
	}
	backend_conn_url = MemoryContextStrdup(TopMemoryContext, twocache_redis_url);
	backend_skip_until = 0;
	return backend_conn;
}

/*
 * Run a pipeline on the backend's connection.  Returns false (and starts a
 * retry interval) if Redis is unavailable or fails; the caller treats that
 * as a miss (reads) or applies locally and warns (writes).  A failed or
 * interrupted exchange closes the connection.
 */
bool
TwoCacheRedisBackendExec(int ncmds, const TcRedisCommand *cmds,
						 TcRedisReply **treplies, char *errbuf, size_t errlen)
{
	redisReply **replies = (redisReply **) treplies;
	redisContext *c = backend_conn_get(errbuf, errlen);
	bool		ok;

	if (c == NULL)
		return false;
	PG_TRY();
	{
		ok = redis_exec(c, ncmds, cmds, replies, twocache_redis_timeout,
							   errbuf, errlen);
	}
	PG_CATCH();
	{
		/* interrupted (a cancel while waiting): replies may be in flight */
		drop_backend_conn();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!ok)
	{
		char		why[512];

		strlcpy(why, errbuf, sizeof(why));
		TwoCacheRedisBackendFailed(why);
		return false;
	}
	return true;
}

/*
 * Add an argument to a command.  Past TC_REDIS_MAX_ARGS they all move to
 * xargv, grown in the current memory context.
 */
void
TwoCacheRedisArg(TcRedisCommand *cmd, const char *arg, size_t len)
{
	if (cmd->argc < TC_REDIS_MAX_ARGS)
	{
		cmd->argv[cmd->argc] = arg;
		cmd->argvlen[cmd->argc] = len;
		cmd->argc++;
		return;
	}
	if (cmd->argc == TC_REDIS_MAX_ARGS || cmd->argc == cmd->xcap)
	{
		int			cap = cmd->argc * 2;
		const char **xargv = palloc(sizeof(const char *) * cap);
		size_t	   *xargvlen = palloc(sizeof(size_t) * cap);

		if (cmd->argc == TC_REDIS_MAX_ARGS)
		{
			memcpy(xargv, cmd->argv, sizeof(cmd->argv));
			memcpy(xargvlen, cmd->argvlen, sizeof(cmd->argvlen));
		}
		else
		{
			memcpy(xargv, cmd->xargv, sizeof(const char *) * cmd->argc);
			memcpy(xargvlen, cmd->xargvlen, sizeof(size_t) * cmd->argc);
		}
		cmd->xargv = xargv;
		cmd->xargvlen = xargvlen;
		cmd->xcap = cap;
	}
	cmd->xargv[cmd->argc] = arg;
	cmd->xargvlen[cmd->argc] = len;
	cmd->argc++;
}

/* Start a command: its name is its first argument. */
void
TwoCacheRedisCommand(TcRedisCommand *cmd, const char *name)
{
	cmd->argc = 0;
	cmd->xcap = 0;
	cmd->xargv = NULL;
	cmd->xargvlen = NULL;
	TwoCacheRedisArg(cmd, name, strlen(name));
}

/* ----------------------------------------------------------------
 * The interface of redis.h: hiredis's types under ours
 * ----------------------------------------------------------------
 */

/*
 * Connect to url within timeout_ms and name the connection (see
 * redis_connect).  NULL with errbuf set on failure.
 */
TcRedisConn *
TwoCacheRedisConnect(const char *url, int timeout_ms, const char *name,
					 char *errbuf, size_t errlen)
{
	return (TcRedisConn *) redis_connect(url, timeout_ms, name, errbuf, errlen);
}

/* Run a pipeline on c (see redis_exec). */
bool
TwoCacheRedisExec(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
				  TcRedisReply **replies, int timeout_ms,
				  char *errbuf, size_t errlen)
{
	return redis_exec((redisContext *) c, ncmds, cmds, (redisReply **) replies,
					  timeout_ms, errbuf, errlen);
}

void
TwoCacheRedisFreeReplies(int n, TcRedisReply **replies)
{
	free_replies(n, (redisReply **) replies);
}

void
TwoCacheRedisFree(TcRedisConn *c)
{
	redis_free((redisContext *) c);
}

/* The backend's connection (see backend_conn_get). */
TcRedisConn *
TwoCacheRedisBackendConn(char *errbuf, size_t errlen)
{
	return (TcRedisConn *) backend_conn_get(errbuf, errlen);
}

/* The socket of c, to wait on (the worker's subscription). */
pgsocket
TwoCacheRedisSocket(TcRedisConn *c)
{
	return ((redisContext *) c)->fd;
}

/*
 * Read what the socket of c has into its buffer, without waiting (after a
 * wait said it is readable).  False with errbuf set if the connection
 * failed.
 */
bool
TwoCacheRedisReadInput(TcRedisConn *c, char *errbuf, size_t errlen)
{
	redisContext *ctx = (redisContext *) c;

	if (redisBufferRead(ctx) == REDIS_OK)
		return true;
	strlcpy(errbuf, ctx->errstr[0] ? ctx->errstr : "connection lost", errlen);
	return false;
}

/*
 * The next reply already read on c, if any: 1 with *reply set (free it with
 * TwoCacheRedisFreeReplies), 0 if none is complete yet, -1 if what was read
 * is not Redis's protocol.
 */
int
TwoCacheRedisNextReply(TcRedisConn *c, TcRedisReply **reply)
{
	void	   *r = NULL;

	*reply = NULL;
	if (redisGetReplyFromReader((redisContext *) c, &r) != REDIS_OK)
		return -1;
	if (r == NULL)
		return 0;
	*reply = (TcRedisReply *) r;
	return 1;
}
