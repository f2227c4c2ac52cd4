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
 * URLs are parsed in redis_url.c.
 *
 * A backend has one lazily opened connection, kept across transactions.  An
 * exchange interrupted by an error (a cancel while waiting) leaves replies
 * in flight, so the connection is marked dirty first and replaced on next
 * use.  After a failure the backend skips Redis for
 * twocache.redis_retry_interval.  Nothing here raises an ERROR because of
 * Redis: failures are returned with a message in errbuf, which never
 * contains the password.
 *
 * No LWLock may be held while calling into this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis.h"
#include "twocache.h"

/* The backend's connection */
static redisContext *backend_conn = NULL;
static char *backend_conn_url = NULL;	/* settings it was opened with */
static bool backend_conn_dirty = false;
static TimestampTz backend_skip_until = 0;

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

/* Free a connection (and the wait set of its socket). */
void
TwoCacheRedisFree(redisContext *c)
{
	if (c == NULL)
		return;
	if (c->fd == wait_set_fd)
		drop_wait_set();
	redisFree(c);
}

/*
 * Wait until fd is ready for events (WL_SOCKET_*), the deadline passes
 * (false) or an interrupt is raised (ERROR as usual, from
 * CHECK_FOR_INTERRUPTS; callers mark their connection dirty first).
 */
static bool
wait_socket(int fd, int events, TimestampTz deadline)
{
	if (wait_set == NULL || wait_set_fd != fd)
	{
		drop_wait_set();
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
			return false;
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
 * Send ncmds commands in one pipeline and read their replies into
 * replies[], all within timeout_ms.  On failure frees what it read, sets
 * errbuf and returns false; the connection should then be dropped.
 */
bool
TwoCacheRedisExec(redisContext *c, int ncmds, const TcRedisCommand *cmds,
				  redisReply **replies, int timeout_ms,
				  char *errbuf, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	int			got = 0;
	int			done = 0;
	int			i;

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
		if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline))
		{
			snprintf(errbuf, errlen, "timed out sending to Redis");
			return false;
		}
	}

	/* read the replies */
	while (got < ncmds)
	{
		void	   *reply = NULL;

		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
		{
			set_error(errbuf, errlen, "invalid reply from Redis", c);
			goto fail;
		}
		if (reply != NULL)
		{
			replies[got++] = (redisReply *) reply;
			continue;
		}
		if (!wait_socket(c->fd, WL_SOCKET_READABLE, deadline))
		{
			snprintf(errbuf, errlen, "timed out waiting for Redis");
			goto fail;
		}
		if (redisBufferRead(c) != REDIS_OK)
		{
			set_error(errbuf, errlen, "could not read from Redis", c);
			goto fail;
		}
	}
	return true;

fail:
	for (i = 0; i < got; i++)
		freeReplyObject(replies[i]);
	return false;
}

void
TwoCacheRedisFreeReplies(int n, redisReply **replies)
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
 * Connect to the Redis of url, authenticate and select its database, all
 * within timeout_ms.  Returns NULL with errbuf set on failure.
 */
redisContext *
TwoCacheRedisConnect(const char *url, int timeout_ms, char *errbuf, size_t errlen)
{
	TcRedisUrl	u;
	const char *perr;
	char		target[MAXPGPATH + 16];
	redisContext *c;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	int			sockerr = 0;
	socklen_t	optlen = sizeof(sockerr);
	TcRedisCommand cmds[2];
	redisReply *replies[2];
	int			ncmds = 0;
	int			i;

	if (!TwoCacheParseRedisUrl(url, &u, &perr))
	{
		snprintf(errbuf, errlen, "invalid twocache.redis_url: %s", perr);
		return NULL;
	}
	TwoCacheRedisUrlTarget(&u, target, sizeof(target));

	c = u.unix_socket ? redisConnectUnixNonBlock(u.path) :
		redisConnectNonBlock(u.host, u.port);
	if (c == NULL)
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: out of memory", target);
		return NULL;
	}
	if (c->err != 0)
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: %s", target, c->errstr);
		TwoCacheRedisFree(c);
		return NULL;
	}

	/* a non-blocking connect completes when the socket is writable */
	if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline))
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: timed out", target);
		TwoCacheRedisFree(c);
		return NULL;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &sockerr, &optlen) < 0 || sockerr != 0)
	{
		snprintf(errbuf, errlen, "could not connect to Redis at %s: %s", target,
				 strerror(sockerr != 0 ? sockerr : errno));
		TwoCacheRedisFree(c);
		return NULL;
	}

	if (u.password[0] != '\0')
	{
		TcRedisCommand *cmd = &cmds[ncmds++];

		cmd->argc = 0;
		cmd->argv[cmd->argc] = "AUTH";
		cmd->argvlen[cmd->argc++] = 4;
		if (u.user[0] != '\0')
		{
			cmd->argv[cmd->argc] = u.user;
			cmd->argvlen[cmd->argc++] = strlen(u.user);
		}
		cmd->argv[cmd->argc] = u.password;
		cmd->argvlen[cmd->argc++] = strlen(u.password);
	}
	if (u.db != 0)
	{
		static char dbbuf[16];
		TcRedisCommand *cmd = &cmds[ncmds++];

		snprintf(dbbuf, sizeof(dbbuf), "%d", u.db);
		cmd->argc = 2;
		cmd->argv[0] = "SELECT";
		cmd->argvlen[0] = 6;
		cmd->argv[1] = dbbuf;
		cmd->argvlen[1] = strlen(dbbuf);
	}
	if (ncmds > 0)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		char		why[256];

		if (!TwoCacheRedisExec(c, ncmds, cmds, replies, (int) Max(left, 1),
							   why, sizeof(why)))
		{
			snprintf(errbuf, errlen, "could not set up Redis connection to %s: %s",
					 target, why);
			TwoCacheRedisFree(c);
			return NULL;
		}
		for (i = 0; i < ncmds; i++)
		{
			if (replies[i]->type == REDIS_REPLY_ERROR)
			{
				snprintf(errbuf, errlen, "Redis at %s refused %s: %s", target,
						 cmds[i].argv[0], replies[i]->str);
				TwoCacheRedisFreeReplies(ncmds, replies);
				TwoCacheRedisFree(c);
				return NULL;
			}
		}
		TwoCacheRedisFreeReplies(ncmds, replies);
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
	if (backend_conn != NULL)
		TwoCacheRedisFree(backend_conn);
	backend_conn = NULL;
	backend_conn_dirty = false;
	if (backend_conn_url != NULL)
		pfree(backend_conn_url);
	backend_conn_url = NULL;
}

/*
 * Record a failure of the backend's connection: drop it, count it, and
 * skip Redis for twocache.redis_retry_interval.
 */
void
TwoCacheRedisBackendFailed(const char *err)
{
	drop_backend_conn();
	TwoCacheCount(TC_REDIS_ERRORS, 1);
	backend_skip_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 twocache_redis_retry_interval);
	ereport(DEBUG1,
			(errmsg_internal("twocache: Redis unavailable for %d ms: %s",
							 twocache_redis_retry_interval, err)));
}

/*
 * The backend's connection, opened on first use and reopened when the
 * settings changed or an exchange was interrupted.  NULL when in local mode,
 * within the retry interval after a failure, or when connecting failed
 * (which starts a retry interval); errbuf then says why.
 */
redisContext *
TwoCacheRedisBackendConn(char *errbuf, size_t errlen)
{
	if (!TwoCacheRedisEnabled())
	{
		drop_backend_conn();
		snprintf(errbuf, errlen, "twocache.redis_url is not set");
		return NULL;
	}
	if (backend_conn != NULL &&
		(backend_conn_dirty || strcmp(backend_conn_url, twocache_redis_url) != 0))
		drop_backend_conn();
	if (backend_conn != NULL)
		return backend_conn;

	if (backend_skip_until != 0 && GetCurrentTimestamp() < backend_skip_until)
	{
		snprintf(errbuf, errlen, "Redis is skipped for twocache.redis_retry_interval after a failure");
		return NULL;
	}
	backend_conn = TwoCacheRedisConnect(twocache_redis_url, twocache_redis_timeout,
										errbuf, errlen);
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
 * as a miss (reads) or applies locally and warns (writes).
 */
bool
TwoCacheRedisBackendExec(int ncmds, const TcRedisCommand *cmds,
						 redisReply **replies, char *errbuf, size_t errlen)
{
	redisContext *c = TwoCacheRedisBackendConn(errbuf, errlen);
	bool		ok;

	if (c == NULL)
		return false;
	backend_conn_dirty = true;	/* until the exchange completes */
	ok = TwoCacheRedisExec(c, ncmds, cmds, replies, twocache_redis_timeout,
						   errbuf, errlen);
	if (!ok)
	{
		char		why[512];

		strlcpy(why, errbuf, sizeof(why));
		TwoCacheRedisBackendFailed(why);
		return false;
	}
	backend_conn_dirty = false;
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
