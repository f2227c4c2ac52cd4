/*-------------------------------------------------------------------------
 *
 * redis_url.c
 *	  Parsing of twocache.redis_url, and the credential-free form of a
 *	  parsed URL that messages show.
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

/*
 * Parse redis://[[user]:password@]host[:port][/db] or unix:///path.
 * Returns false and sets *err to a constant message (never quoting the
 * URL, which may hold a password) if it is malformed.
 */
bool
TwoCacheParseRedisUrl(const char *url, TcRedisUrl *out, const char **err)
{
	const char *p;
	const char *at;
	const char *hostend;
	size_t		n;

	memset(out, 0, sizeof(TcRedisUrl));
	out->hosts[0].port = 6379;

	if (strncmp(url, "unix://", 7) == 0)
	{
		p = url + 7;
		n = strlen(p);
		if (n == 0 || p[0] != '/')
		{
			*err = "a unix socket URL needs an absolute path, as in unix:///run/redis/redis.sock";
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

	if (strncmp(url, "redis://", 8) != 0)
	{
		*err = "the URL must start with redis:// or unix://";
		return false;
	}
	p = url + 8;
	out->nhosts = 1;

	/* credentials: everything up to the last '@' before the path */
	hostend = p + strcspn(p, "/");
	at = NULL;
	{
		const char *q;

		for (q = p; q < hostend; q++)
			if (*q == '@')
				at = q;
	}
	if (at != NULL)
	{
		const char *colon = memchr(p, ':', at - p);

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
		p = at + 1;
	}

	/* host, possibly a bracketed IPv6 address, then an optional port */
	if (*p == '[')
	{
		const char *close = memchr(p, ']', hostend - p);

		if (close == NULL)
		{
			*err = "unterminated [ in the host of the URL";
			return false;
		}
		n = close - p - 1;
		if (n == 0 || n >= sizeof(out->hosts[0].host))
		{
			*err = "invalid host in the URL";
			return false;
		}
		memcpy(out->hosts[0].host, p + 1, n);
		out->hosts[0].host[n] = '\0';
		p = close + 1;
	}
	else
	{
		n = strcspn(p, ":/");
		if (p + n > hostend)
			n = hostend - p;
		if (n == 0 || n >= sizeof(out->hosts[0].host))
		{
			*err = "the URL has no host, or a host that is too long";
			return false;
		}
		memcpy(out->hosts[0].host, p, n);
		out->hosts[0].host[n] = '\0';
		p += n;
	}
	if (*p == ':')
	{
		long		port = 0;

		p++;
		if (!isdigit((unsigned char) *p))
		{
			*err = "invalid port in the URL";
			return false;
		}
		while (isdigit((unsigned char) *p))
		{
			port = port * 10 + (*p - '0');
			if (port > 65535)
			{
				*err = "invalid port in the URL";
				return false;
			}
			p++;
		}
		if (port == 0)
		{
			*err = "invalid port in the URL";
			return false;
		}
		out->hosts[0].port = (int) port;
	}
	if (*p == '/')
	{
		long		db = 0;

		p++;
		if (*p != '\0')
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

/* Where a URL points, without credentials, for messages. */
void
TwoCacheRedisUrlTarget(const TcRedisUrl *u, char *buf, size_t len)
{
	if (u->unix_socket)
		snprintf(buf, len, "unix:%s", u->path);
	else if (strchr(u->hosts[0].host, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", u->hosts[0].host, u->hosts[0].port);
	else
		snprintf(buf, len, "%s:%d", u->hosts[0].host, u->hosts[0].port);
}
