/*-------------------------------------------------------------------------
 *
 * redis.c
 *	  One connection to one Redis node: the transport (TCP, unix socket,
 *	  TLS), host name resolution, and bounded, interruptible pipelined
 *	  exchanges driven by the backend's latch.
 *
 * The transport is ours; hiredis is kept for the protocol only: its
 * command formatter (redisFormatCommandArgv) and its reply reader
 * (redisReader).  Sockets are non-blocking, and all waiting is done in a
 * WaitEventSet with the latch and postmaster death, so every wait is bounded
 * by a deadline (normally twocache.redis_timeout), wakes on the latch for
 * cancel and termination, and exits on postmaster death.  This covers each
 * step of a connect:
 *
 *	  - resolving a host name: an address literal directly; a name with
 *		glibc's getaddrinfo_a, polled on the latch until the deadline.  A
 *		lookup that is still running then (a slow DNS server) is cancelled
 *		or, if the resolver thread cannot be stopped, abandoned: it keeps its
 *		request block, which is freed by a later connect once the lookup
 *		ends.  At most MAX_ABANDONED_LOOKUPS may be pending like that; beyond
 *		that, connects by name fail at once, so a hung resolver costs
 *		neither memory nor threads without bound.  Nothing is cached here:
 *		managed services fail over by changing what their name resolves to.
 *	  - the TCP connect to each address in turn, or to the unix socket;
 *	  - the TLS handshake (OpenSSL) for rediss URLs, with the CA, client
 *		certificate and verification of the twocache.redis_tls_* settings;
 *	  - AUTH, SELECT, CLIENT SETNAME and, when asked, ROLE, in one pipeline.
 *
 * A connect or an exchange interrupted by an ERROR (a cancel or
 * statement_timeout while waiting) frees what it made before the error goes
 * on; an exchange that failed or was interrupted may leave replies in
 * flight, so its connection must not be used again: the callers (topology.c,
 * the worker) drop it.  Nothing here raises an ERROR because of Redis:
 * failures are returned with a message in errbuf, which never contains a
 * password.
 *
 * Every connection is a file descriptor PostgreSQL does not open itself, so
 * it is accounted with fd.c as libpq-be-fe-helpers.h does for libpq:
 * AcquireExternalFD before the socket is made (fd.c closes virtual file
 * descriptors to make room), ReleaseExternalFD when it is freed.  The wait
 * set kept for the socket waited on last takes one more (its epoll
 * instance; CreateWaitEventSet raises an ERROR when fd.c has none left, so
 * we check first).  When fd.c has none to give, Redis is unavailable, as
 * when it is down.
 *
 * OpenSSL's error queue is per thread and shared with PostgreSQL's own TLS
 * (the client connection, libpq in dblink): it is cleared before and after
 * each of our calls, as be-secure-openssl.c does.  The SSL_CTX is built once
 * per process and again when a twocache.redis_tls_* setting changes; a
 * passphrase-protected key is refused rather than prompted for.
 *
 * A connection to a Redis Cluster is a TcRedisConn too, with no socket of
 * its own: it points to a TcRedisCluster (redis_cluster.c), to which
 * TwoCacheRedisExec, TwoCacheRedisFree, TwoCacheRedisTarget and
 * TwoCacheRedisRole go; it holds single-node connections to the masters,
 * driven through TwoCacheRedisSend and TwoCacheRedisReceive (every group of
 * a pipeline sent before any is read).  Only a subscription waits on a
 * socket, and it is on one node (TwoCacheRedisConnectSubscriber).
 *
 * This is the only file that includes hiredis or OpenSSL: the rest of
 * twocache sees a TcRedisConn (opaque) and TcRedisReply (hiredis's
 * redisReply, the same layout, checked at compile time) through redis.h.
 * No LWLock may be held while calling into this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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

/* what fd.c's refusal of an external descriptor is called */
#define NO_FDS_LEFT "there are too many open files on the local server"

#define MAX_ABANDONED_LOOKUPS	8	/* host name lookups left running */
#define READ_CHUNK				16384
#define KEEP_OUTBUF				65536	/* output buffer kept between exchanges */

struct TcRedisConn
{
	pgsocket	fd;
	SSL		   *ssl;			/* NULL: plain TCP or unix socket */
	redisReader *reader;
	char	   *out;			/* formatted commands not yet sent */
	size_t		outlen;
	size_t		outcap;
	char		target[TC_REDIS_TARGET_LEN];	/* host:port, for messages */
	char		role[16];		/* first element of ROLE, if asked; else "" */
	TcRedisCluster *cluster;	/* set: a Redis Cluster (redis_cluster.c),
								 * and nothing above is used */
};

/* ----------------------------------------------------------------
 * Bounded waits
 * ----------------------------------------------------------------
 */

/*
 * One WaitEventSet (latch, postmaster death, socket) is kept for the socket
 * waited on last, so a Redis exchange costs epoll_wait calls rather than
 * setting up and tearing down an epoll instance per wait.  It must be
 * dropped before its socket is closed: conn_free does that.
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

/*
 * Sleep on the latch for at most ms, or until the deadline; false once the
 * deadline has passed.  Interrupts raise an ERROR as in wait_socket.
 */
static bool
wait_latch_until(TimestampTz deadline, long ms)
{
	long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

	if (left <= 0)
		return false;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(left, ms), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return true;
}

/* ----------------------------------------------------------------
 * Host name resolution
 * ----------------------------------------------------------------
 */

/*
 * A lookup by getaddrinfo_a.  malloc'd, not palloc'd: a lookup abandoned at
 * its deadline may outlive any memory context, since the resolver thread
 * writes into it when it ends.
 */
typedef struct Lookup
{
	struct gaicb cb;
	struct addrinfo hints;
	char		name[256];
	char		service[8];
	struct Lookup *next;		/* in the abandoned list */
} Lookup;

static Lookup *abandoned = NULL;
static int	nabandoned = 0;

/* Free the abandoned lookups that have ended. */
static void
reap_lookups(void)
{
	Lookup	  **link = &abandoned;

	while (*link != NULL)
	{
		Lookup	   *l = *link;

		if (gai_error(&l->cb) == EAI_INPROGRESS)
		{
			link = &l->next;
			continue;
		}
		*link = l->next;
		if (l->cb.ar_result != NULL)
			freeaddrinfo(l->cb.ar_result);
		free(l);
		nabandoned--;
	}
}

/*
 * Stop a lookup that is still running, or leave it to reap_lookups if the
 * resolver cannot stop it; either way the caller forgets l.
 */
static void
abandon_lookup(Lookup *l)
{
	int			rc = gai_cancel(&l->cb);

	if (rc == EAI_CANCELED || gai_error(&l->cb) != EAI_INPROGRESS)
	{
		if (l->cb.ar_result != NULL)
			freeaddrinfo(l->cb.ar_result);
		free(l);
		return;
	}
	l->next = abandoned;
	abandoned = l;
	nabandoned++;
}

/*
 * The addresses of host:port, by deadline: *res (free with freeaddrinfo).
 * False with errbuf set if the name does not resolve, or not in time.
 */
static bool
resolve(const char *host, int port, TimestampTz deadline, struct addrinfo **res,
		char *errbuf, size_t errlen)
{
	struct addrinfo hints;
	struct gaicb *list[1];
	char		service[8];
	Lookup	   *volatile l;
	int			rc;
	volatile long poll_ms = 1;

	*res = NULL;
	snprintf(service, sizeof(service), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;

	/* an address literal needs no lookup, and getaddrinfo makes none */
	hints.ai_flags |= AI_NUMERICHOST;
	rc = getaddrinfo(host, service, &hints, res);
	if (rc == 0)
		return true;
	hints.ai_flags &= ~AI_NUMERICHOST;

	reap_lookups();
	if (nabandoned >= MAX_ABANDONED_LOOKUPS)
	{
		snprintf(errbuf, errlen, "could not resolve \"%s\": %d earlier lookups are still running",
				 host, nabandoned);
		return false;
	}
	l = calloc(1, sizeof(Lookup));
	if (l == NULL)
	{
		snprintf(errbuf, errlen, "could not resolve \"%s\": out of memory", host);
		return false;
	}
	strlcpy(l->name, host, sizeof(l->name));
	strlcpy(l->service, service, sizeof(l->service));
	l->hints = hints;
	l->cb.ar_name = l->name;
	l->cb.ar_service = l->service;
	l->cb.ar_request = &l->hints;
	list[0] = &l->cb;
	rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
	if (rc != 0)
	{
		free(l);
		snprintf(errbuf, errlen, "could not resolve \"%s\": %s", host, gai_strerror(rc));
		return false;
	}

	/* poll the lookup on the latch, more slowly as it takes longer */
	PG_TRY();
	{
		while ((rc = gai_error(&l->cb)) == EAI_INPROGRESS)
		{
			if (!wait_latch_until(deadline, poll_ms))
				break;
			poll_ms = Min(poll_ms * 2, 20);
		}
	}
	PG_CATCH();
	{
		abandon_lookup(l);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (rc == EAI_INPROGRESS)
	{
		abandon_lookup(l);
		snprintf(errbuf, errlen, "timed out resolving \"%s\"", host);
		return false;
	}
	if (rc != 0)
	{
		if (l->cb.ar_result != NULL)
			freeaddrinfo(l->cb.ar_result);
		free(l);
		snprintf(errbuf, errlen, "could not resolve \"%s\": %s", host,
				 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return false;
	}
	*res = l->cb.ar_result;
	free(l);
	return true;
}

/* ----------------------------------------------------------------
 * TLS
 * ----------------------------------------------------------------
 */

static SSL_CTX *tls_ctx = NULL;
static char *tls_ctx_settings = NULL;	/* the settings tls_ctx was built with */

/* OpenSSL's first queued error, for messages; clears the queue. */
static const char *
tls_error(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (e == 0)
		return "no further detail";
	ERR_error_string_n(e, buf, sizeof(buf));
	return buf;
}

/* A key with a passphrase cannot be loaded: nobody may be prompted. */
static int
tls_no_passphrase(char *buf pg_attribute_unused(), int size pg_attribute_unused(),
				  int rwflag pg_attribute_unused(), void *userdata pg_attribute_unused())
{
	return -1;
}

/*
 * The SSL_CTX for the current twocache.redis_tls_* settings, built on first
 * use and again when they change.  NULL with errbuf set if a file cannot be
 * loaded.
 */
static SSL_CTX *
tls_context(char *errbuf, size_t errlen)
{
	char	   *settings;
	SSL_CTX    *ctx;
	const char *ca = twocache_redis_tls_ca_file ? twocache_redis_tls_ca_file : "";
	const char *cert = twocache_redis_tls_cert_file ? twocache_redis_tls_cert_file : "";
	const char *key = twocache_redis_tls_key_file ? twocache_redis_tls_key_file : "";

	settings = psprintf("%s\n%s\n%s\n%d", ca, cert, key, twocache_redis_tls_verify);
	if (tls_ctx != NULL && strcmp(settings, tls_ctx_settings) == 0)
	{
		pfree(settings);
		return tls_ctx;
	}
	if (tls_ctx != NULL)
		SSL_CTX_free(tls_ctx);
	if (tls_ctx_settings != NULL)
		pfree(tls_ctx_settings);
	tls_ctx = NULL;
	tls_ctx_settings = NULL;

	ERR_clear_error();
	OPENSSL_init_ssl(0, NULL);
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
	{
		snprintf(errbuf, errlen, "could not create a TLS context: %s", tls_error());
		pfree(settings);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);

	if (ca[0] != '\0' ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 :
		SSL_CTX_set_default_verify_paths(ctx) != 1)
	{
		snprintf(errbuf, errlen, "could not load the TLS CA file \"%s\": %s",
				 ca[0] != '\0' ? ca : "(system default)", tls_error());
		goto fail;
	}
	if (cert[0] != '\0' || key[0] != '\0')
	{
		if (cert[0] == '\0' || key[0] == '\0')
		{
			snprintf(errbuf, errlen, "twocache.redis_tls_cert_file and twocache.redis_tls_key_file must be set together");
			goto fail;
		}
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		{
			snprintf(errbuf, errlen, "could not load the TLS certificate file \"%s\": %s",
					 cert, tls_error());
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		{
			snprintf(errbuf, errlen, "could not load the TLS key file \"%s\": %s",
					 key, tls_error());
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1)
		{
			snprintf(errbuf, errlen, "the TLS key file \"%s\" does not match the certificate: %s",
					 key, tls_error());
			goto fail;
		}
	}
	SSL_CTX_set_verify(ctx, twocache_redis_tls_verify == TWOCACHE_TLS_VERIFY_NONE ?
					   SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	ERR_clear_error();
	tls_ctx = ctx;
	tls_ctx_settings = MemoryContextStrdup(TopMemoryContext, settings);
	pfree(settings);
	return tls_ctx;

fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	pfree(settings);
	return NULL;
}

/*
 * Wait for what an SSL call that returned rc needs (SSL_ERROR_WANT_READ or
 * _WRITE): true when it may be retried.  False with errbuf set (what,
 * then the reason) on any other outcome or at the deadline.
 */
static bool
tls_wait(TcRedisConn *c, int rc, const char *what, TimestampTz deadline,
		 char *errbuf, size_t errlen)
{
	int			err = SSL_get_error(c->ssl, rc);
	char		why[256];

	switch (err)
	{
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			ERR_clear_error();
			if (wait_socket(c->fd, err == SSL_ERROR_WANT_READ ?
							WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
							deadline, "timed out", why, sizeof(why)))
				return true;
			snprintf(errbuf, errlen, "%s: %s", what, why);
			return false;
		case SSL_ERROR_ZERO_RETURN:
			ERR_clear_error();
			snprintf(errbuf, errlen, "%s: the connection was closed by Redis", what);
			return false;
		case SSL_ERROR_SYSCALL:
			if (ERR_peek_error() == 0)
			{
				snprintf(errbuf, errlen, "%s: %s", what,
						 errno != 0 ? strerror(errno) : "the connection was closed by Redis");
				return false;
			}
			/* FALLTHROUGH */
		default:
			snprintf(errbuf, errlen, "%s: %s", what, tls_error());
			return false;
	}
}

/*
 * The TLS handshake on c's connected socket with host (the name or address
 * of the URL), by deadline.  With twocache.redis_tls_verify = full the
 * certificate must name host (a DNS name, or an IP address entry for an
 * address).
 */
static bool
tls_handshake(TcRedisConn *c, const char *host, TimestampTz deadline,
			  char *errbuf, size_t errlen)
{
	SSL_CTX    *ctx = tls_context(errbuf, errlen);
	unsigned char addr[sizeof(struct in6_addr)];
	bool		is_ip;

	if (ctx == NULL)
		return false;
	is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

	ERR_clear_error();
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
	{
		snprintf(errbuf, errlen, "could not set up TLS: %s", tls_error());
		return false;
	}
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, host);
	if (twocache_redis_tls_verify == TWOCACHE_TLS_VERIFY_FULL)
	{
		X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
		int			ok;

		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) :
			X509_VERIFY_PARAM_set1_host(param, host, 0);
		if (ok != 1)
		{
			snprintf(errbuf, errlen, "could not set up TLS host name verification: %s",
					 tls_error());
			return false;
		}
	}

	for (;;)
	{
		int			rc;

		ERR_clear_error();
		rc = SSL_connect(c->ssl);
		if (rc == 1)
			break;
		if (SSL_get_error(c->ssl, rc) == SSL_ERROR_SSL &&
			SSL_get_verify_result(c->ssl) != X509_V_OK)
		{
			snprintf(errbuf, errlen, "TLS handshake failed: certificate verify failed: %s",
					 X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
			ERR_clear_error();
			return false;
		}
		if (!tls_wait(c, rc, "TLS handshake failed", deadline, errbuf, errlen))
			return false;
	}
	ERR_clear_error();
	return true;
}

/* ----------------------------------------------------------------
 * Connections
 * ----------------------------------------------------------------
 */

/*
 * Free a connection (and the wait set of its socket), and give its
 * descriptor back to fd.c.  Safe on a half-made one.
 */
static void
conn_free(TcRedisConn *c)
{
	if (c == NULL)
		return;
	if (c->cluster != NULL)
	{
		/* no descriptor of its own: its nodes' connections have them */
		TcRedisCluster *cl = c->cluster;

		pfree(c);
		TwoCacheClusterFree(cl);
		return;
	}
	if (c->fd != PGINVALID_SOCKET && c->fd == wait_set_fd)
		drop_wait_set();
	if (c->ssl != NULL)
	{
		/* a close_notify if the socket takes it now; never waits */
		ERR_clear_error();
		(void) SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	if (c->fd != PGINVALID_SOCKET)
		close(c->fd);
	ReleaseExternalFD();
	if (c->reader != NULL)
		redisReaderFree(c->reader);
	if (c->out != NULL)
		pfree(c->out);
	pfree(c);
}

/*
 * Write what c->out holds, by deadline.  False with errbuf set on failure.
 */
static bool
conn_flush(TcRedisConn *c, TimestampTz deadline, char *errbuf, size_t errlen)
{
	size_t		sent = 0;

	while (sent < c->outlen)
	{
		if (c->ssl != NULL)
		{
			int			rc;

			ERR_clear_error();
			rc = SSL_write(c->ssl, c->out + sent, (int) Min(c->outlen - sent, INT_MAX));
			if (rc > 0)
			{
				sent += rc;
				continue;
			}
			if (!tls_wait(c, rc, "could not send to Redis", deadline, errbuf, errlen))
				return false;
		}
		else
		{
			ssize_t		n = send(c->fd, c->out + sent, c->outlen - sent, MSG_NOSIGNAL);

			if (n >= 0)
			{
				sent += n;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
			{
				snprintf(errbuf, errlen, "could not send to Redis: %s", strerror(errno));
				return false;
			}
			if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline,
							 "timed out sending to Redis", errbuf, errlen))
				return false;
		}
	}
	c->outlen = 0;
	if (c->outcap > KEEP_OUTBUF)
	{
		pfree(c->out);
		c->out = NULL;
		c->outcap = 0;
	}
	return true;
}

/*
 * Read what the socket has into the reader, without waiting.  Returns 1 if
 * something was read, 0 if nothing is there yet (*need: the WL_SOCKET_*
 * event to wait for), -1 with errbuf set if the connection failed or was
 * closed.  With TLS it reads until OpenSSL has nothing buffered, so that no
 * reply waits in OpenSSL while the caller waits on the socket.
 */
static int
conn_read(TcRedisConn *c, int *need, char *errbuf, size_t errlen)
{
	char		buf[READ_CHUNK];
	bool		got = false;

	*need = WL_SOCKET_READABLE;
	for (;;)
	{
		ssize_t		n;

		if (c->ssl != NULL)
		{
			int			rc;
			int			err;

			ERR_clear_error();
			rc = SSL_read(c->ssl, buf, sizeof(buf));
			if (rc > 0)
				n = rc;
			else
			{
				err = SSL_get_error(c->ssl, rc);
				if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
				{
					ERR_clear_error();
					*need = err == SSL_ERROR_WANT_READ ?
						WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
					return got ? 1 : 0;
				}
				if (err == SSL_ERROR_ZERO_RETURN ||
					(err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
					snprintf(errbuf, errlen, "the connection was closed by Redis");
				else if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
					snprintf(errbuf, errlen, "could not read from Redis: %s", strerror(errno));
				else
					snprintf(errbuf, errlen, "could not read from Redis: %s", tls_error());
				ERR_clear_error();
				return -1;
			}
		}
		else
		{
			n = recv(c->fd, buf, sizeof(buf), 0);
			if (n < 0)
			{
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return got ? 1 : 0;
				snprintf(errbuf, errlen, "could not read from Redis: %s", strerror(errno));
				return -1;
			}
			if (n == 0)
			{
				snprintf(errbuf, errlen, "the connection was closed by Redis");
				return -1;
			}
		}
		if (redisReaderFeed(c->reader, buf, n) != REDIS_OK)
		{
			snprintf(errbuf, errlen, "invalid reply from Redis: %s", c->reader->errstr);
			return -1;
		}
		got = true;
		/* a short read means the socket is empty for now */
		if (c->ssl == NULL && (size_t) n < sizeof(buf))
			return 1;
	}
}

/* Queue one command in c->out. */
static bool
conn_append(TcRedisConn *c, const TcRedisCommand *cmd, char *errbuf, size_t errlen)
{
	bool		wide = cmd->argc > TC_REDIS_MAX_ARGS;
	char	   *formatted = NULL;
	int			len;

	/* hiredis 0.14 takes a non-const argv it does not modify */
	len = redisFormatCommandArgv(&formatted, cmd->argc,
								 (const char **) (wide ? cmd->xargv : cmd->argv),
								 wide ? cmd->xargvlen : cmd->argvlen);
	if (len < 0 || formatted == NULL)
	{
		snprintf(errbuf, errlen, "could not format a Redis command: out of memory");
		return false;
	}
	if (c->outlen + len > c->outcap)
	{
		size_t		cap = Max(c->outcap * 2, c->outlen + len);

		cap = Max(cap, 1024);
		if (c->out == NULL)
			c->out = MemoryContextAlloc(TopMemoryContext, cap);
		else
			c->out = repalloc(c->out, cap);
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, formatted, len);
	c->outlen += len;
	free(formatted);
	return true;
}

/*
 * Read ncmds replies into replies[], counting them in *got, by deadline.
 * False with errbuf set on failure.
 */
static bool
read_replies(TcRedisConn *c, int ncmds, redisReply **replies,
			 TimestampTz deadline, volatile int *got, char *errbuf, size_t errlen)
{
	while (*got < ncmds)
	{
		void	   *reply = NULL;
		int			need;
		int			rc;

		if (redisReaderGetReply(c->reader, &reply) != REDIS_OK)
		{
			snprintf(errbuf, errlen, "invalid reply from Redis: %s", c->reader->errstr);
			return false;
		}
		if (reply != NULL)
		{
			replies[(*got)++] = (redisReply *) reply;
			continue;
		}
		rc = conn_read(c, &need, errbuf, errlen);
		if (rc < 0)
			return false;
		if (rc == 0 && !wait_socket(c->fd, need, deadline,
									"timed out waiting for Redis", errbuf, errlen))
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

/* Queue ncmds commands and send them, by deadline. */
static bool
conn_send(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
		  TimestampTz deadline, char *errbuf, size_t errlen)
{
	int			i;

	c->outlen = 0;
	for (i = 0; i < ncmds; i++)
		if (!conn_append(c, &cmds[i], errbuf, errlen))
			return false;
	return conn_flush(c, deadline, errbuf, errlen);
}

/*
 * Read the replies of ncmds commands sent into replies[], by deadline.  On
 * failure frees what it read, and on an ERROR too (re-thrown).
 */
static bool
conn_receive(TcRedisConn *c, int ncmds, redisReply **replies,
			 TimestampTz deadline, char *errbuf, size_t errlen)
{
	volatile int got = 0;
	int			i;
	bool		ok;

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

/*
 * Send ncmds commands in one pipeline and read their replies into
 * replies[], all by deadline.  On failure frees what it read, sets errbuf
 * and returns false: replies may still be in flight, so the caller must
 * drop the connection (and must drop it too if this raises an ERROR, as a
 * cancel while waiting does; what was read is freed then too).
 */
static bool
conn_exec(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
		  redisReply **replies, TimestampTz deadline,
		  char *errbuf, size_t errlen)
{
	return conn_send(c, ncmds, cmds, deadline, errbuf, errlen) &&
		conn_receive(c, ncmds, replies, deadline, errbuf, errlen);
}

/*
 * Make the socket of c and connect it to the unix socket path, or to
 * host:port (resolved first), trying each address in turn, by deadline.
 */
static bool
conn_socket(TcRedisConn *c, const char *path, const char *host, int port,
			TimestampTz deadline, char *errbuf, size_t errlen)
{
	struct addrinfo *volatile res = NULL;
	volatile bool ok = false;

	if (path != NULL)
	{
		struct sockaddr_un sun;
		char		why[256];
		int			sockerr = 0;
		socklen_t	optlen = sizeof(sockerr);

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		if (strlen(path) >= sizeof(sun.sun_path))
		{
			snprintf(errbuf, errlen, "the unix socket path is too long");
			return false;
		}
		strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0)
		{
			c->fd = PGINVALID_SOCKET;
			snprintf(errbuf, errlen, "could not create a socket: %s", strerror(errno));
			return false;
		}
		if (connect(c->fd, (struct sockaddr *) &sun, sizeof(sun)) == 0)
			return true;
		if (errno != EINPROGRESS && errno != EAGAIN)
		{
			snprintf(errbuf, errlen, "%s", strerror(errno));
			return false;
		}
		if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline, "timed out",
						 why, sizeof(why)))
		{
			snprintf(errbuf, errlen, "%s", why);
			return false;
		}
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &sockerr, &optlen) < 0 || sockerr != 0)
		{
			snprintf(errbuf, errlen, "%s", strerror(sockerr != 0 ? sockerr : errno));
			return false;
		}
		return true;
	}

	if (!resolve(host, port, deadline, (struct addrinfo **) &res, errbuf, errlen))
		return false;

	PG_TRY();
	{
		struct addrinfo *ai;

		snprintf(errbuf, errlen, "no address");
		for (ai = res; ai != NULL && !ok; ai = ai->ai_next)
		{
			int			one = 1;
			int			sockerr = 0;
			socklen_t	optlen = sizeof(sockerr);

			if (c->fd != PGINVALID_SOCKET)
			{
				if (c->fd == wait_set_fd)
					drop_wait_set();
				close(c->fd);
			}
			c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
						   ai->ai_protocol);
			if (c->fd < 0)
			{
				c->fd = PGINVALID_SOCKET;
				snprintf(errbuf, errlen, "could not create a socket: %s", strerror(errno));
				continue;
			}
			(void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			(void) setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
			if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			{
				ok = true;
				break;
			}
			if (errno != EINPROGRESS)
			{
				snprintf(errbuf, errlen, "%s", strerror(errno));
				continue;
			}
			if (!wait_socket(c->fd, WL_SOCKET_WRITEABLE, deadline, "timed out",
							 errbuf, errlen))
				break;			/* the deadline has passed for every address */
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &sockerr, &optlen) < 0 ||
				sockerr != 0)
			{
				snprintf(errbuf, errlen, "%s", strerror(sockerr != 0 ? sockerr : errno));
				continue;
			}
			ok = true;
		}
	}
	PG_FINALLY();
	{
		freeaddrinfo(res);
	}
	PG_END_TRY();
	return ok;
}

/*
 * After the transport is up: AUTH, SELECT, CLIENT SETNAME and ROLE in one
 * pipeline, as opts asks, by deadline.  An error reply to CLIENT SETNAME is
 * ignored (old servers and some proxies refuse CLIENT); any other error
 * reply fails the connect.
 */
static bool
conn_setup(TcRedisConn *c, const TcRedisNodeOpts *opts, TimestampTz deadline,
		   char *errbuf, size_t errlen)
{
	char		why[256];
	char		dbbuf[16];
	TcRedisCommand cmds[4];
	redisReply *replies[4];
	bool		fatal[4];
	int			role_at = -1;
	int			ncmds = 0;
	int			i;

	if (opts->password != NULL && opts->password[0] != '\0')
	{
		TcRedisCommand *cmd = &cmds[ncmds];

		fatal[ncmds++] = true;
		TwoCacheRedisCommand(cmd, "AUTH");
		if (opts->user != NULL && opts->user[0] != '\0')
			TwoCacheRedisArg(cmd, opts->user, strlen(opts->user));
		TwoCacheRedisArg(cmd, opts->password, strlen(opts->password));
	}
	if (opts->db != 0)
	{
		TcRedisCommand *cmd = &cmds[ncmds];

		fatal[ncmds++] = true;
		snprintf(dbbuf, sizeof(dbbuf), "%d", opts->db);
		TwoCacheRedisCommand(cmd, "SELECT");
		TwoCacheRedisArg(cmd, dbbuf, strlen(dbbuf));
	}
	if (opts->name != NULL)
	{
		TcRedisCommand *cmd = &cmds[ncmds];

		fatal[ncmds++] = false;
		TwoCacheRedisCommand(cmd, "CLIENT");
		TwoCacheRedisArg(cmd, "SETNAME", 7);
		TwoCacheRedisArg(cmd, opts->name, strlen(opts->name));
	}
	if (opts->ask_role)
	{
		role_at = ncmds;
		fatal[ncmds++] = false; /* some proxies refuse ROLE: role "" */
		TwoCacheRedisCommand(&cmds[role_at], "ROLE");
	}
	if (ncmds == 0)
		return true;

	if (!conn_exec(c, ncmds, cmds, replies, deadline, why, sizeof(why)))
	{
		snprintf(errbuf, errlen, "could not set up Redis connection to %s: %s",
				 c->target, why);
		return false;
	}
	for (i = 0; i < ncmds; i++)
	{
		if (fatal[i] && replies[i]->type == REDIS_REPLY_ERROR)
		{
			snprintf(errbuf, errlen, "Redis at %s refused %s: %s", c->target,
					 cmds[i].argv[0], replies[i]->str);
			free_replies(ncmds, replies);
			return false;
		}
	}
	if (role_at >= 0)
	{
		redisReply *r = replies[role_at];

		if (r->type == REDIS_REPLY_ERROR)
			c->role[0] = '\0';
		else if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
			r->element[0]->type != REDIS_REPLY_STRING)
		{
			snprintf(errbuf, errlen, "unexpected reply to ROLE from %s", c->target);
			free_replies(ncmds, replies);
			return false;
		}
		else
			strlcpy(c->role, r->element[0]->str, sizeof(c->role));
	}
	free_replies(ncmds, replies);
	return true;
}

/*
 * Connect to one node: the unix socket opts->path, or opts->host:port (with
 * TLS if opts->tls), then set it up as opts says, all within timeout_ms.
 * NULL with errbuf set on failure, also when fd.c has no descriptor left.
 * If an interrupt raises an ERROR meanwhile, what was made is freed first.
 */
static TcRedisConn *
conn_connect(const TcRedisNodeOpts *opts, int timeout_ms, char *errbuf, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	TcRedisConn *c;
	char		why[256];
	bool		ok;

	/* the socket counts against fd.c's limit: reserve it before it exists */
	if (!AcquireExternalFD())
	{
		snprintf(errbuf, errlen, "could not connect to Redis: %s", NO_FDS_LEFT);
		return NULL;
	}
	c = MemoryContextAllocZero(TopMemoryContext, sizeof(TcRedisConn));
	c->fd = PGINVALID_SOCKET;
	if (opts->path != NULL)
		snprintf(c->target, sizeof(c->target), "unix:%s", opts->path);
	else
		TwoCacheRedisHostTarget(opts->host, opts->port, c->target, sizeof(c->target));
	c->reader = redisReaderCreate();
	if (c->reader == NULL)
	{
		conn_free(c);
		snprintf(errbuf, errlen, "could not connect to Redis: out of memory");
		return NULL;
	}

	/* from here on, conn_free(c) gives the descriptor back */
	PG_TRY();
	{
		ok = conn_socket(c, opts->path, opts->host, opts->port, deadline,
						 why, sizeof(why));
		if (!ok)
			snprintf(errbuf, errlen, "could not connect to Redis at %s: %s",
					 c->target, why);
		else if (opts->tls && !tls_handshake(c, opts->host, deadline, why, sizeof(why)))
		{
			snprintf(errbuf, errlen, "could not connect to Redis at %s: %s",
					 c->target, why);
			ok = false;
		}
		else
			ok = conn_setup(c, opts, deadline, errbuf, errlen);
	}
	PG_CATCH();
	{
		/* cancelled while waiting: nothing may keep the half-open socket */
		conn_free(c);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (!ok)
	{
		conn_free(c);
		return NULL;
	}
	return c;
}

/* ----------------------------------------------------------------
 * The interface of redis.h
 * ----------------------------------------------------------------
 */

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
 * The options for a data node of u (credentials, database, TLS): host and
 * port are set by the caller, and so are name and ask_role.
 */
void
TwoCacheRedisNodeOpts(const TcRedisUrl *u, TcRedisNodeOpts *opts)
{
	memset(opts, 0, sizeof(TcRedisNodeOpts));
	opts->path = u->unix_socket ? u->path : NULL;
	opts->tls = u->tls;
	opts->user = u->user;
	opts->password = u->password;
	opts->db = u->db;
	if (!u->unix_socket)
	{
		opts->host = u->hosts[0].host;
		opts->port = u->hosts[0].port;
	}
}

/* Connect to the node opts describes within timeout_ms (see conn_connect). */
TcRedisConn *
TwoCacheRedisConnectNode(const TcRedisNodeOpts *opts, int timeout_ms,
						 char *errbuf, size_t errlen)
{
	return conn_connect(opts, timeout_ms, errbuf, errlen);
}

/*
 * Record a Redis error of this server in twocache_status().last_error (the
 * worker's or any backend's, whichever came last), and count it in
 * redis_errors if count.
 */
void
TwoCacheRedisRecordError(const char *err, bool count)
{
	TwoCacheWorkerState *w = &twocache_shared->worker;
	TimestampTz now = GetCurrentTimestamp();

	if (count)
		TwoCacheCount(TC_REDIS_ERRORS, 1);
	SpinLockAcquire(&w->mutex);
	strlcpy(w->last_error, err, sizeof(w->last_error));
	w->last_error_at = now;
	SpinLockRelease(&w->mutex);
}

/*
 * Run a pipeline on c within timeout_ms (see conn_exec).  Every error reply
 * in it (READONLY, OOM, NOAUTH, BUSY, ...) is counted in redis_errors and
 * shown in last_error, whatever the caller makes of it.
 */
bool
TwoCacheRedisExec(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
				  TcRedisReply **replies, int timeout_ms,
				  char *errbuf, size_t errlen)
{
	TimestampTz deadline;
	bool		ok;
	int			i;

	if (c->cluster != NULL)
		ok = TwoCacheClusterExec(c->cluster, ncmds, cmds, replies, timeout_ms,
								 errbuf, errlen);
	else
	{
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
		ok = conn_exec(c, ncmds, cmds, (redisReply **) replies, deadline,
					   errbuf, errlen);
	}
	if (!ok)
		return false;
	for (i = 0; i < ncmds; i++)
	{
		if (replies[i]->type == TC_REPLY_ERROR)
		{
			char		err[256];

			snprintf(err, sizeof(err), "Redis at %s refused %.*s: %s",
					 TwoCacheRedisTarget(c),
					 (int) Min(cmds[i].argc > TC_REDIS_MAX_ARGS ? cmds[i].xargvlen[0] :
							   cmds[i].argvlen[0], 32),
					 cmds[i].argc > TC_REDIS_MAX_ARGS ? cmds[i].xargv[0] : cmds[i].argv[0],
					 replies[i]->str);
			TwoCacheRedisRecordError(err, true);
		}
	}
	return true;
}

/*
 * The two halves of TwoCacheRedisExec on a single node, for the cluster
 * code, which sends to every node before it reads from any: send ncmds
 * commands, by deadline ...
 */
bool
TwoCacheRedisSend(TcRedisConn *c, int ncmds, const TcRedisCommand *cmds,
				  TimestampTz deadline, char *errbuf, size_t errlen)
{
	Assert(c->cluster == NULL);
	return conn_send(c, ncmds, cmds, deadline, errbuf, errlen);
}

/*
 * ... and read the replies of n commands sent, by deadline.  On failure
 * (false, errbuf set) or an ERROR, what was read is freed, and replies may
 * still be in flight: the caller drops the connection.
 */
bool
TwoCacheRedisReceive(TcRedisConn *c, int n, TcRedisReply **replies,
					 TimestampTz deadline, char *errbuf, size_t errlen)
{
	Assert(c->cluster == NULL);
	return conn_receive(c, n, (redisReply **) replies, deadline, errbuf, errlen);
}

/*
 * A connection that stands for a Redis Cluster (redis_cluster.c): Exec,
 * Free, Target and Role go to the cluster code; it has no socket.
 */
TcRedisConn *
TwoCacheRedisClusterConn(TcRedisCluster *cl)
{
	TcRedisConn *c = MemoryContextAllocZero(TopMemoryContext, sizeof(TcRedisConn));

	c->fd = PGINVALID_SOCKET;
	c->cluster = cl;
	return c;
}

/* The cluster c stands for; NULL for a single node. */
TcRedisCluster *
TwoCacheRedisGetCluster(TcRedisConn *c)
{
	return c != NULL ? c->cluster : NULL;
}

void
TwoCacheRedisFreeReplies(int n, TcRedisReply **replies)
{
	free_replies(n, (redisReply **) replies);
}

void
TwoCacheRedisFree(TcRedisConn *c)
{
	conn_free(c);
}

/*
 * The socket of c, to wait on (the worker's subscription).  Only a
 * subscription waits on a socket, and it is made with
 * TwoCacheRedisConnectSubscriber, on one node.
 */
pgsocket
TwoCacheRedisSocket(TcRedisConn *c)
{
	if (c->cluster != NULL)
		elog(ERROR, "not a single-node connection");
	return c->fd;
}

/*
 * host:port (or unix:path) of c, for messages and twocache_status(); for a
 * cluster, its masters.
 */
const char *
TwoCacheRedisTarget(TcRedisConn *c)
{
	if (c->cluster != NULL)
		return TwoCacheClusterTarget(c->cluster);
	return c->target;
}

/*
 * What c answered to ROLE when it connected ("" if it was not asked); a
 * cluster connection talks to masters only.
 */
const char *
TwoCacheRedisRole(TcRedisConn *c)
{
	if (c->cluster != NULL)
		return "master";
	return c->role;
}

/*
 * Read what the socket of c has into its buffer, without waiting (after a
 * wait said it is readable).  False with errbuf set if the connection
 * failed.
 */
bool
TwoCacheRedisReadInput(TcRedisConn *c, char *errbuf, size_t errlen)
{
	int			need;

	if (c->cluster != NULL)
		elog(ERROR, "not a single-node connection");
	return conn_read(c, &need, errbuf, errlen) >= 0;
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
	if (c->cluster != NULL)
		elog(ERROR, "not a single-node connection");
	if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
		return -1;
	if (r == NULL)
		return 0;
	*reply = (TcRedisReply *) r;
	return 1;
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
	cmd->route_key = NULL;
	cmd->route_len = 0;
	TwoCacheRedisArg(cmd, name, strlen(name));
}
