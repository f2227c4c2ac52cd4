/*-------------------------------------------------------------------------
 *
 * redis_url.c
 *	  Parsing of twocache.redis_url, and the credential-free form of a
 *	  parsed URL that messages show.
 *
 * The forms are those of SPEC.md section 9:
 *
 *	redis[s]://[[user]:password@]host[:port][/db]
 *	unix:///path
 *	redis[s]-sentinel://[[user]:password@]host[:port][,host[:port]...][/db]#master_name
 *	redis[s]-cluster://[[user]:password@]host[:port][,host[:port]...]
 *
 * The credentials end at the last '@' before the first '/' or '#', so a
 * password may hold '@' and ':' but neither '/' nor '#'.  A host is a name
 * or an IPv6 address in brackets, anywhere in a list.
 *
 * Kept apart from redis.c so that it depends on neither hiredis's library
 * nor the backend's latch code: the fuzz target (fuzz/fuzz_url.c) builds it
 * on its own.  Nothing here allocates memory or raises errors; the parser
 * reports a malformed URL with a constant message that never quotes the URL,
 * which may hold a password.  No shared state, so no locking.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "redis.h"

/* The schemes with hosts: their topology, TLS and default port. */
typedef struct TcRedisScheme
{
	const char *prefix;
	TcRedisTopology topology;
	bool		tls;
	int			port;
} TcRedisScheme;

static const TcRedisScheme schemes[] = {
	{"redis://", TC_TOPOLOGY_SINGLE, false, 6379},
	{"rediss://", TC_TOPOLOGY_SINGLE, true, 6379},
	{"redis-sentinel://", TC_TOPOLOGY_SENTINEL, false, 26379},
	{"rediss-sentinel://", TC_TOPOLOGY_SENTINEL, true, 26379},
	{"redis-cluster://", TC_TOPOLOGY_CLUSTER, false, 6379},
	{"rediss-cluster://", TC_TOPOLOGY_CLUSTER, true, 6379},
};

/*
 * The credentials in [p, at): user:password, either part possibly empty.
 */
static bool
parse_credentials(const char *p, const char *at, TcRedisUrl *out,
				  const char **err)
{
	const char *colon = memchr(p, ':', at - p);
	size_t		n;

	if (colon == NULL)
	{
		*err = "credentials in the URL must be written :password@ or user:password@";
		return false;
	}
	n = colon - p;
	if (n >= sizeof(out->user))
	{
		*err = "the user name in the URL is too long";
		return false;
	}
	memcpy(out->user, p, n);
	out->user[n] = '\0';
	n = at - colon - 1;
	if (n >= sizeof(out->password))
	{
		*err = "the password in the URL is too long";
		return false;
	}
	memcpy(out->password, colon + 1, n);
	out->password[n] = '\0';
	return true;
}

/*
 * One host[:port] of the list at *pp, which ends at end: a name, or an IPv6
 * address in brackets.  Advances *pp past it, to a ',' or to end.
 */
static bool
parse_host(const char **pp, const char *end, bool first, TcRedisHost *h,
		   const char **err)
{
	const char *p = *pp;
	size_t		n;

	if (*p == '[')
	{
		const char *close = memchr(p, ']', end - p);

		if (close == NULL)
		{
			*err = "unterminated [ in the host of the URL";
			return false;
		}
		n = close - p - 1;
		/* a ',' or '[' inside means a ']' is missing before it */
		if (n == 0 || n >= sizeof(h->host) ||
			memchr(p + 1, ',', n) != NULL || memchr(p + 1, '[', n) != NULL)
		{
			*err = "invalid host in the URL";
			return false;
		}
		memcpy(h->host, p + 1, n);
		h->host[n] = '\0';
		p = close + 1;
		if (p < end && *p != ':' && *p != ',')
		{
			*err = "invalid host in the URL";
			return false;
		}
	}
	else
	{
		n = strcspn(p, ":,");
		if (p + n > end)
			n = end - p;
		if (n == 0 && (!first || *p == ','))
		{
			*err = "the URL's list of hosts has an empty entry";
			return false;
		}
		if (n == 0 || n >= sizeof(h->host))
		{
			*err = "the URL has no host, or a host that is too long";
			return false;
		}
		memcpy(h->host, p, n);
		h->host[n] = '\0';
		p += n;
	}
	if (p < end && *p == ':')
	{
		long		port = 0;

		p++;
		if (p == end || !isdigit((unsigned char) *p))
		{
			*err = "invalid port in the URL";
			return false;
		}
		while (p < end && isdigit((unsigned char) *p))
		{
			port = port * 10 + (*p - '0');
			if (port > 65535)
			{
				*err = "invalid port in the URL";
				return false;
			}
			p++;
		}
		if (port == 0 || (p < end && *p != ','))
		{
			*err = "invalid port in the URL";
			return false;
		}
		h->port = (int) port;
	}
	*pp = p;
	return true;
}

/*
 * The list of hosts in [p, end), each with the scheme's default port unless
 * it names its own.
 */
static bool
parse_hosts(const char *p, const char *end, const TcRedisScheme *scheme,
			TcRedisUrl *out, const char **err)
{
	for (;;)
	{
		TcRedisHost *h;

		if (out->nhosts == TC_REDIS_MAX_HOSTS)
		{
			*err = "the URL names more than " CppAsString2(TC_REDIS_MAX_HOSTS) " hosts";
			return false;
		}
		h = &out->hosts[out->nhosts];
		h->port = scheme->port;
		if (!parse_host(&p, end, out->nhosts == 0, h, err))
			return false;
		out->nhosts++;
		if (p == end)
			return true;
		/* parse_host stops at end or at a ',' */
		Assert(*p == ',');
		if (scheme->topology == TC_TOPOLOGY_SINGLE)
		{
			*err = "only a sentinel or cluster URL may name several hosts";
			return false;
		}
		p++;
		if (p == end)
		{
			*err = "the URL's list of hosts has an empty entry";
			return false;
		}
	}
}

/* /db, with *pp just past the '/'; an empty number is database 0. */
static bool
parse_db(const char **pp, TcRedisUrl *out, const char **err)
{
	const char *p = *pp;
	long		db = 0;

	if (*p != '\0' && *p != '#')
	{
		if (!isdigit((unsigned char) *p))
		{
			*err = "invalid database number in the URL";
			return false;
		}
		while (isdigit((unsigned char) *p))
		{
			db = db * 10 + (*p - '0');
			if (db > 1000000)
			{
				*err = "invalid database number in the URL";
				return false;
			}
			p++;
		}
	}
	out->db = (int) db;
	*pp = p;
	return true;
}

/* The Sentinel master's name: the rest of the URL, after its '#'. */
static bool
parse_master_name(const char *p, TcRedisUrl *out, const char **err)
{
	size_t		n = strlen(p);
	size_t		i;

	if (n == 0)
	{
		*err = "a sentinel URL must end in #master_name";
		return false;
	}
	if (n >= sizeof(out->master_name))
	{
		*err = "the master name in the URL is too long";
		return false;
	}
	for (i = 0; i < n; i++)
	{
		if (p[i] <= ' ' || p[i] > '~')
		{
			*err = "the master name in the URL may contain only printable ASCII characters other than space";
			return false;
		}
	}
	memcpy(out->master_name, p, n + 1);
	return true;
}

/*
 * Parse twocache.redis_url in any form of SPEC.md section 9 (see the top of
 * this file).  Returns false and sets *err to a constant message (never
 * quoting the URL, which may hold a password) if it is malformed.  *out is
 * zeroed first, so two parses of the same URL compare bytewise.
 */
bool
TwoCacheParseRedisUrl(const char *url, TcRedisUrl *out, const char **err)
{
	const TcRedisScheme *scheme = NULL;
	const char *p;
	const char *at;
	const char *authend;
	const char *q;
	size_t		n;
	size_t		i;

	memset(out, 0, sizeof(TcRedisUrl));

	if (strncmp(url, "unix://", 7) == 0)
	{
		p = url + 7;
		n = strlen(p);
		if (n == 0 || p[0] != '/')
		{
			*err = "a unix socket URL needs an absolute path, as in unix:///run/redis/redis.sock";
			return false;
		}
		if (strchr(p, '#') != NULL)
		{
			*err = "only a sentinel URL may end in #master_name";
			return false;
		}
		if (n >= sizeof(out->path))
		{
			*err = "the unix socket path is too long";
			return false;
		}
		out->unix_socket = true;
		memcpy(out->path, p, n + 1);
		return true;
	}

	for (i = 0; i < lengthof(schemes); i++)
	{
		if (strncmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) == 0)
		{
			scheme = &schemes[i];
			break;
		}
	}
	if (scheme == NULL)
	{
		*err = "the URL must start with redis://, rediss://, redis[s]-sentinel://, redis[s]-cluster:// or unix://";
		return false;
	}
	out->topology = scheme->topology;
	out->tls = scheme->tls;
	p = url + strlen(scheme->prefix);

	/* credentials: everything up to the last '@' before the path or '#' */
	authend = p + strcspn(p, "/#");
	at = NULL;
	for (q = p; q < authend; q++)
		if (*q == '@')
			at = q;
	if (at != NULL)
	{
		if (!parse_credentials(p, at, out, err))
			return false;
		p = at + 1;
	}

	if (!parse_hosts(p, authend, scheme, out, err))
		return false;
	p = authend;

	if (*p == '/')
	{
		p++;
		if (!parse_db(&p, out, err))
			return false;
		if (scheme->topology == TC_TOPOLOGY_CLUSTER && out->db != 0)
		{
			*err = "a cluster URL cannot name a database other than 0";
			return false;
		}
	}
	if (scheme->topology == TC_TOPOLOGY_SENTINEL)
	{
		if (*p != '#')
		{
			*err = (*p == '\0') ? "a sentinel URL must end in #master_name" :
				"unexpected characters at the end of the URL";
			return false;
		}
		return parse_master_name(p + 1, out, err);
	}
	if (*p == '#')
	{
		*err = "only a sentinel URL may end in #master_name";
		return false;
	}
	if (*p != '\0')
	{
		*err = "unexpected characters at the end of the URL";
		return false;
	}
	return true;
}

/* host:port for messages, [host]:port for an IPv6 address. */
void
TwoCacheRedisHostTarget(const char *host, int port, char *buf, size_t len)
{
	if (strchr(host, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", host, port);
	else
		snprintf(buf, len, "%s:%d", host, port);
}

/*
 * Append s to the string in buf (len bytes, len > 0), which ends at *off:
 * as much of it as fits, always terminated.
 */
static void
target_append(char *buf, size_t len, size_t *off, const char *s)
{
	size_t		n = strlen(s);

	if (n > len - *off - 1)
		n = len - *off - 1;
	memcpy(buf + *off, s, n);
	*off += n;
	buf[*off] = '\0';
}

/*
 * Where a URL points, without credentials, for messages: host:port,
 * unix:/path, sentinel master "name" via h1:p1,h2:p2, or cluster via
 * h1:p1,h2:p2.  Truncated to len bytes, terminated unless len is 0.
 */
void
TwoCacheRedisUrlTarget(const TcRedisUrl *u, char *buf, size_t len)
{
	char		host[sizeof(u->hosts[0].host) + 16];
	size_t		off = 0;
	int			i;

	if (u->unix_socket)
	{
		snprintf(buf, len, "unix:%s", u->path);
		return;
	}
	if (u->topology == TC_TOPOLOGY_SINGLE)
	{
		TwoCacheRedisHostTarget(u->hosts[0].host, u->hosts[0].port, buf, len);
		return;
	}
	if (len == 0)
		return;
	buf[0] = '\0';
	if (u->topology == TC_TOPOLOGY_SENTINEL)
	{
		target_append(buf, len, &off, "sentinel master \"");
		target_append(buf, len, &off, u->master_name);
		target_append(buf, len, &off, "\" via ");
	}
	else
		target_append(buf, len, &off, "cluster via ");
	for (i = 0; i < u->nhosts; i++)
	{
		if (i > 0)
			target_append(buf, len, &off, ",");
		TwoCacheRedisHostTarget(u->hosts[i].host, u->hosts[i].port,
								host, sizeof(host));
		target_append(buf, len, &off, host);
	}
}
