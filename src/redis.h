/*-------------------------------------------------------------------------
 *
 * redis.h
 *	  hiredis glue: URLs, connections, bounded pipelined exchanges.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TWOCACHE_REDIS_H
#define TWOCACHE_REDIS_H

/*
 * hiredis is redis.c's alone: the rest of twocache sees a connection as an
 * opaque TcRedisConn and a reply as a TcRedisReply, laid out as hiredis's
 * own (redis.c checks it at compile time), so that none is copied.
 */
typedef struct TcRedisConn TcRedisConn;

typedef enum TcRedisReplyType
{
	TC_REPLY_STRING = 1,
	TC_REPLY_ARRAY = 2,
	TC_REPLY_INTEGER = 3,
	TC_REPLY_NIL = 4,
	TC_REPLY_STATUS = 5,
	TC_REPLY_ERROR = 6
} TcRedisReplyType;

typedef struct TcRedisReply
{
	int			type;			/* TcRedisReplyType */
	long long	integer;
	size_t		len;
	char	   *str;			/* a string, status or error */
	size_t		elements;
	struct TcRedisReply **element;
} TcRedisReply;

#include "twocache.h"

#define TC_REDIS_MAX_ARGS	12
#define TC_REDIS_NAME_LEN	128	/* TwoCacheRedisClientName's buffer */

typedef struct TcRedisUrl
{
	bool		unix_socket;
	char		host[256];
	int			port;
	char		path[MAXPGPATH];
	char		user[128];
	char		password[256];
	int			db;
} TcRedisUrl;

/*
 * A command: its arguments inline, or, once it has more than
 * TC_REDIS_MAX_ARGS (built with TwoCacheRedisCommand and TwoCacheRedisArg
 * only), all of them in xargv/xargvlen, palloc'd.
 */
typedef struct TcRedisCommand
{
	int			argc;
	const char *argv[TC_REDIS_MAX_ARGS];
	size_t		argvlen[TC_REDIS_MAX_ARGS];
	int			xcap;			/* capacity of xargv */
	const char **xargv;
	size_t	   *xargvlen;
} TcRedisCommand;

extern bool TwoCacheParseRedisUrl(const char *url, TcRedisUrl *out, const char **err);
extern void TwoCacheRedisUrlTarget(const TcRedisUrl *u, char *buf, size_t len);
extern void TwoCacheRedisClientName(const char *role, char *buf, size_t len);
extern TcRedisConn *TwoCacheRedisConnect(const char *url, int timeout_ms,
										  const char *name,
										  char *errbuf, size_t errlen);
extern bool TwoCacheRedisExec(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
							  TcRedisReply **replies, int timeout_ms,
							  char *errbuf, size_t errlen);
extern void TwoCacheRedisFreeReplies(int n, TcRedisReply **replies);
extern void TwoCacheRedisFree(TcRedisConn *c);
extern pgsocket TwoCacheRedisSocket(TcRedisConn *c);
extern bool TwoCacheRedisReadInput(TcRedisConn *c, char *errbuf, size_t errlen);
extern int	TwoCacheRedisNextReply(TcRedisConn *c, TcRedisReply **reply);
extern void TwoCacheRedisCommand(TcRedisCommand *cmd, const char *name);
extern void TwoCacheRedisArg(TcRedisCommand *cmd, const char *arg, size_t len);

/* the backend's own connection */
extern bool TwoCacheRedisEnabled(void);
extern TcRedisConn *TwoCacheRedisBackendConn(char *errbuf, size_t errlen);
extern bool TwoCacheRedisBackendExec(int ncmds, const TcRedisCommand *cmds,
									 TcRedisReply **replies, char *errbuf, size_t errlen);
extern void TwoCacheRedisBackendFailed(const char *err);

#endif							/* TWOCACHE_REDIS_H */
