/*-------------------------------------------------------------------------
 *
 * redis.h
 *	  Redis: URLs (redis_url.c), one connection to one node with bounded,
 *	  pipelined exchanges (redis.c), a connection to a Redis Cluster that
 *	  routes each command to its slot's master (redis_cluster.c), and which
 *	  node and the connections kept to it (redis_topology.c).
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

/*
 * A parsed twocache.redis_url (redis_url.c).  Every form but unix:// names
 * one or more host:port pairs: the Redis of redis:// and rediss://, the
 * Sentinels of redis-sentinel:// (default port 26379), the seed nodes of
 * redis-cluster:// (default port 6379).
 */
#define TC_REDIS_MAX_HOSTS	16

typedef enum TcRedisTopology
{
	TC_TOPOLOGY_SINGLE,			/* redis://, rediss://, unix:// */
	TC_TOPOLOGY_SENTINEL,		/* redis-sentinel://, rediss-sentinel:// */
	TC_TOPOLOGY_CLUSTER			/* redis-cluster://, rediss-cluster:// */
} TcRedisTopology;

typedef struct TcRedisHost
{
	char		host[256];		/* a name, or an address (IPv6 without []) */
	int			port;
} TcRedisHost;

typedef struct TcRedisUrl
{
	TcRedisTopology topology;
	bool		unix_socket;	/* unix:///path: path, no hosts */
	bool		tls;			/* rediss, rediss-sentinel, rediss-cluster */
	int			nhosts;			/* 1..TC_REDIS_MAX_HOSTS unless unix_socket */
	TcRedisHost hosts[TC_REDIS_MAX_HOSTS];
	char		path[MAXPGPATH];
	char		user[128];
	char		password[256];
	int			db;				/* always 0 in a cluster */
	char		master_name[256];	/* Sentinel only: after '#' */
} TcRedisUrl;

/*
 * A command: its arguments inline, or, once it has more than
 * TC_REDIS_MAX_ARGS (built with TwoCacheRedisCommand and TwoCacheRedisArg
 * only), all of them in xargv/xargvlen, palloc'd.
 *
 * On a cluster connection a command with a key goes to the master of the
 * key's slot; one without (PUBLISH, TIME, PING, ...) goes to a default
 * master, or, when route_key is set, to the master of route_key's slot, and
 * then follows the redirects of the keyed commands of that slot before it
 * in the same pipeline (redis_cluster.c).  TwoCacheRedisCommand sets it to
 * NULL; the caller may set it afterwards.  Single nodes ignore it.
 */
typedef struct TcRedisCommand
{
	int			argc;
	const char *argv[TC_REDIS_MAX_ARGS];
	size_t		argvlen[TC_REDIS_MAX_ARGS];
	int			xcap;			/* capacity of xargv */
	const char **xargv;
	size_t	   *xargvlen;
	const char *route_key;		/* Cluster: route a keyless command so */
	size_t		route_len;
} TcRedisCommand;

/* Where and how to connect to one node (redis.c) */
typedef struct TcRedisNodeOpts
{
	const char *path;			/* a unix socket, or NULL for host:port */
	const char *host;
	int			port;
	bool		tls;
	const char *user;			/* AUTH, if password is set */
	const char *password;
	int			db;				/* SELECT, if not 0 */
	const char *name;			/* CLIENT SETNAME, if not NULL */
	bool		ask_role;		/* ROLE, answer in TwoCacheRedisRole */
} TcRedisNodeOpts;

#define TC_REDIS_TARGET_LEN	300 /* host:port of a node, for messages */

/* Redis Cluster (redis_cluster.c) */
#define TC_CLUSTER_SLOTS		16384	/* hash slots of a cluster */
#define TC_CLUSTER_MAX_NODES	64	/* masters a cluster connection knows */
#define TC_CLUSTER_MAX_REDIRECTS	5	/* MOVED/ASK followed per command */

typedef struct TcRedisCluster TcRedisCluster;

/* redis_url.c */
extern bool TwoCacheParseRedisUrl(const char *url, TcRedisUrl *out, const char **err);
extern void TwoCacheRedisUrlTarget(const TcRedisUrl *u, char *buf, size_t len);
extern void TwoCacheRedisHostTarget(const char *host, int port, char *buf, size_t len);

/* redis.c: one connection to one node */
extern void TwoCacheRedisClientName(const char *role, char *buf, size_t len);
extern void TwoCacheRedisNodeOpts(const TcRedisUrl *u, TcRedisNodeOpts *opts);
extern TcRedisConn *TwoCacheRedisConnectNode(const TcRedisNodeOpts *opts, int timeout_ms,
											  char *errbuf, size_t errlen);
extern bool TwoCacheRedisExec(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
							  TcRedisReply **replies, int timeout_ms,
							  char *errbuf, size_t errlen);
extern void TwoCacheRedisFreeReplies(int n, TcRedisReply **replies);
extern void TwoCacheRedisRecordError(const char *err, bool count);
extern void TwoCacheRedisFree(TcRedisConn *c);
extern pgsocket TwoCacheRedisSocket(TcRedisConn *c);
extern const char *TwoCacheRedisTarget(TcRedisConn *c);
extern const char *TwoCacheRedisRole(TcRedisConn *c);
extern bool TwoCacheRedisReadInput(TcRedisConn *c, char *errbuf, size_t errlen);
extern int	TwoCacheRedisNextReply(TcRedisConn *c, TcRedisReply **reply);
extern void TwoCacheRedisCommand(TcRedisCommand *cmd, const char *name);
extern void TwoCacheRedisArg(TcRedisCommand *cmd, const char *arg, size_t len);
extern bool TwoCacheRedisSend(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
							  TimestampTz deadline, char *errbuf, size_t errlen);
extern bool TwoCacheRedisReceive(TcRedisConn *c, int n, TcRedisReply **replies,
								 TimestampTz deadline, char *errbuf, size_t errlen);
extern TcRedisConn *TwoCacheRedisClusterConn(TcRedisCluster *cl);
extern TcRedisCluster *TwoCacheRedisGetCluster(TcRedisConn *c);

/* redis_slots.c: key slots */
extern uint16 TwoCacheClusterCrc16(const char *buf, size_t len);
extern int	TwoCacheClusterKeySlot(const char *key, size_t len);
extern const char *TwoCacheClusterSlotTag(int slot);

/* redis_cluster.c: Redis Cluster, the slot map and redirects */
extern TcRedisConn *TwoCacheClusterConnect(const TcRedisUrl *u, const char *name,
										   int timeout_ms, char *errbuf, size_t errlen);
extern TcRedisConn *TwoCacheClusterConnectSubscriber(const TcRedisUrl *u, const char *name,
													 int timeout_ms, char *errbuf,
													 size_t errlen);
extern bool TwoCacheClusterExec(TcRedisCluster *cl, int ncmds, const TcRedisCommand *cmds,
								TcRedisReply **replies, int timeout_ms,
								char *errbuf, size_t errlen);
extern void TwoCacheClusterFree(TcRedisCluster *cl);
extern const char *TwoCacheClusterTarget(TcRedisCluster *cl);
extern bool TwoCacheClusterRefresh(TcRedisConn *c, char *errbuf, size_t errlen);
extern bool TwoCacheClusterSlotsChanged(TcRedisConn *c, bool *failover);
extern bool TwoCacheRedisIsCluster(TcRedisConn *c);

/* redis_topology.c: which node, and the connections kept to it */
extern bool TwoCacheRedisEnabled(void);
extern bool TwoCacheRedisClusterMode(void);
extern char *TwoCacheRedisSettings(void);
extern bool TwoCacheRedisSettingsEqual(const char *saved);
extern TcRedisConn *TwoCacheRedisConnect(const char *name, char *errbuf, size_t errlen);
extern TcRedisConn *TwoCacheRedisConnectSubscriber(const char *name, char *errbuf,
												   size_t errlen);
extern TcRedisConn *TwoCacheRedisBackendConn(char *errbuf, size_t errlen);
extern bool TwoCacheRedisBackendExec(int ncmds, const TcRedisCommand *cmds,
									 TcRedisReply **replies, char *errbuf, size_t errlen);
extern void TwoCacheRedisBackendFailed(const char *err);
extern void TwoCacheRedisBackendRefused(const char *err);
extern bool TwoCacheRedisDiscover(bool *changed, int *which, char *errbuf, size_t errlen);
extern void TwoCacheRedisRequestDiscovery(void);
extern bool TwoCacheRedisDiscoveryRequested(void);
extern TcRedisConn *TwoCacheRedisConnectSentinel(int which, const char *name,
												 char *errbuf, size_t errlen);
extern char *TwoCacheRedisMasterName(void);
extern bool TwoCacheRedisMasterMoved(uint64 epoch);
extern uint64 TwoCacheRedisMasterEpoch(void);

#endif							/* TWOCACHE_REDIS_H */
