/*-------------------------------------------------------------------------
 *
 * fuzz_url.c
 *	  libFuzzer target for the twocache.redis_url parser (src/redis_url.c).
 *
 * The input is the URL, as a C string in a buffer of exactly its size (so
 * ASan sees a read past the terminator).  A rejected URL must come with a
 * constant message, not a pointer into the URL (which may hold a password).
 * An accepted one, in any form of SPEC.md section 9 (redis[s]://, unix://,
 * redis[s]-sentinel://, redis[s]-cluster://), must have fields within the
 * parser's ranges, a topology and TLS that follow its scheme, 1 to
 * TC_REDIS_MAX_HOSTS hosts (none for unix://), a master name for Sentinel
 * alone, strings terminated inside their buffers, and a canonical form that
 * parses to the same fields.  TwoCacheRedisUrlTarget must truncate to the buffer it is
 * given, whatever its size, and show nothing of the credentials.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "redis.h"

#include "fuzz.h"

/* The oracle formats with the C library, not with PostgreSQL's snprintf. */
#undef snprintf

#define GUARD		32			/* bytes watched after a target buffer */
#define GUARD_BYTE	0xA5

static bool
terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

/* The scheme of an accepted URL: what it says of topology and TLS. */
typedef struct UrlScheme
{
	const char *prefix;
	TcRedisTopology topology;
	bool		tls;
	int			port;			/* the default */
} UrlScheme;

static const UrlScheme url_schemes[] = {
	{"redis://", TC_TOPOLOGY_SINGLE, false, 6379},
	{"rediss://", TC_TOPOLOGY_SINGLE, true, 6379},
	{"redis-sentinel://", TC_TOPOLOGY_SENTINEL, false, 26379},
	{"rediss-sentinel://", TC_TOPOLOGY_SENTINEL, true, 26379},
	{"redis-cluster://", TC_TOPOLOGY_CLUSTER, false, 6379},
	{"rediss-cluster://", TC_TOPOLOGY_CLUSTER, true, 6379},
};

static const UrlScheme *
scheme_of_url(const char *url)
{
	size_t		i;

	for (i = 0; i < lengthof(url_schemes); i++)
		if (strncmp(url, url_schemes[i].prefix, strlen(url_schemes[i].prefix)) == 0)
			return &url_schemes[i];
	return NULL;
}

static const UrlScheme *
scheme_of_fields(const TcRedisUrl *u)
{
	size_t		i;

	for (i = 0; i < lengthof(url_schemes); i++)
		if (url_schemes[i].topology == u->topology && url_schemes[i].tls == u->tls)
			return &url_schemes[i];
	FUZZ_CHECK(!"a scheme for the topology and TLS");
	return NULL;
}

static bool
all_zero(const void *p, size_t size)
{
	const unsigned char *b = p;
	size_t		i;

	for (i = 0; i < size; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/* The fields of an accepted URL. */
static void
check_fields(const char *url, const TcRedisUrl *u)
{
	const UrlScheme *scheme;
	int			i;

	FUZZ_CHECK(terminated(u->path, sizeof(u->path)));
	FUZZ_CHECK(terminated(u->user, sizeof(u->user)));
	FUZZ_CHECK(terminated(u->password, sizeof(u->password)));
	FUZZ_CHECK(terminated(u->master_name, sizeof(u->master_name)));
	FUZZ_CHECK(u->nhosts >= 0 && u->nhosts <= TC_REDIS_MAX_HOSTS);
	/* the slots past the hosts stay as the parser's memset left them */
	for (i = u->nhosts; i < TC_REDIS_MAX_HOSTS; i++)
		FUZZ_CHECK(all_zero(&u->hosts[i], sizeof(u->hosts[i])));

	if (u->unix_socket)
	{
		FUZZ_CHECK(strncmp(url, "unix://", 7) == 0);
		FUZZ_CHECK(u->topology == TC_TOPOLOGY_SINGLE && !u->tls);
		FUZZ_CHECK(u->nhosts == 0);
		FUZZ_CHECK(u->path[0] == '/');
		FUZZ_CHECK(strcmp(u->path, url + 7) == 0);
		FUZZ_CHECK(strchr(u->path, '#') == NULL);
		FUZZ_CHECK(u->user[0] == '\0' && u->password[0] == '\0');
		FUZZ_CHECK(u->db == 0 && u->master_name[0] == '\0');
		return;
	}
	scheme = scheme_of_url(url);
	FUZZ_CHECK(scheme != NULL);
	FUZZ_CHECK(u->topology == scheme->topology && u->tls == scheme->tls);
	FUZZ_CHECK(u->nhosts >= 1);
	if (u->topology == TC_TOPOLOGY_SINGLE)
		FUZZ_CHECK(u->nhosts == 1);
	for (i = 0; i < u->nhosts; i++)
	{
		const char *h = u->hosts[i].host;

		FUZZ_CHECK(terminated(h, sizeof(u->hosts[i].host)));
		FUZZ_CHECK(h[0] != '\0');
		FUZZ_CHECK(strpbrk(h, "/@#,") == NULL);
		FUZZ_CHECK(h[0] != '[');
		FUZZ_CHECK(u->hosts[i].port >= 1 && u->hosts[i].port <= 65535);
		/* each host is spelled out in the URL */
		FUZZ_CHECK(strstr(url, h) != NULL);
	}
	FUZZ_CHECK(u->db >= 0 && u->db <= 1000000);
	if (u->topology == TC_TOPOLOGY_CLUSTER)
		FUZZ_CHECK(u->db == 0);
	FUZZ_CHECK(strpbrk(u->user, ":/#") == NULL);
	FUZZ_CHECK(strpbrk(u->password, "/#") == NULL);
	FUZZ_CHECK(u->path[0] == '\0');
	if (u->topology == TC_TOPOLOGY_SENTINEL)
	{
		const char *m;

		FUZZ_CHECK(u->master_name[0] != '\0');
		for (m = u->master_name; *m != '\0'; m++)
			FUZZ_CHECK(*m > ' ' && *m <= '~');
		/* the master's name is the end of the URL, after its first '#' */
		FUZZ_CHECK(strcmp(strchr(url, '#') + 1, u->master_name) == 0);
	}
	else
	{
		FUZZ_CHECK(strchr(url, '#') == NULL);
		FUZZ_CHECK(all_zero(u->master_name, sizeof(u->master_name)));
	}
}

/*
 * Write the URL back in canonical form (every part spelled out: the
 * credentials when there are any, each host with its port, /db, #master)
 * and check that it parses to the same fields: the parser memsets its
 * output first, so the structs compare bytewise.
 */
static void
check_reparse(const TcRedisUrl *u)
{
	size_t		size = sizeof(TcRedisUrl) + 64;
	char	   *url = malloc(size);
	size_t		off;
	TcRedisUrl	again;
	const char *err = NULL;
	int			i;

	if (u->unix_socket)
		snprintf(url, size, "unix://%s", u->path);
	else
	{
		bool		creds = u->user[0] != '\0' || u->password[0] != '\0';

		off = snprintf(url, size, "%s%s%s%s%s", scheme_of_fields(u)->prefix,
					   creds ? u->user : "", creds ? ":" : "",
					   creds ? u->password : "", creds ? "@" : "");
		for (i = 0; i < u->nhosts; i++)
		{
			bool		bracket = strchr(u->hosts[i].host, ':') != NULL;

			off += snprintf(url + off, size - off, "%s%s%s%s:%d",
							i > 0 ? "," : "",
							bracket ? "[" : "", u->hosts[i].host, bracket ? "]" : "",
							u->hosts[i].port);
			FUZZ_CHECK(off < size);
		}
		off += snprintf(url + off, size - off, "/%d", u->db);
		if (u->topology == TC_TOPOLOGY_SENTINEL)
			off += snprintf(url + off, size - off, "#%s", u->master_name);
		FUZZ_CHECK(off < size);
	}
	if (!TwoCacheParseRedisUrl(url, &again, &err))
	{
		fprintf(stderr, "canonical form rejected: %s\n", err);
		FUZZ_CHECK(!"canonical form parses");
	}
	FUZZ_CHECK(memcmp(&again, u, sizeof(TcRedisUrl)) == 0);
	free(url);
}

/*
 * TwoCacheRedisUrlTarget into a buffer of len bytes followed by a guard:
 * the guard stays untouched, and the buffer holds as much of expected as
 * fits, terminated.
 */
static void
check_target_len(const TcRedisUrl *u, const char *expected, size_t len)
{
	unsigned char *buf = malloc(len + GUARD);
	size_t		fits;
	size_t		i;

	memset(buf, GUARD_BYTE, len + GUARD);
	TwoCacheRedisUrlTarget(u, (char *) buf, len);
	for (i = len; i < len + GUARD; i++)
		FUZZ_CHECK(buf[i] == GUARD_BYTE);
	if (len == 0)
	{
		free(buf);
		return;
	}
	fits = Min(strlen(expected), len - 1);
	FUZZ_CHECK(memcmp(buf, expected, fits) == 0);
	FUZZ_CHECK(buf[fits] == '\0');
	free(buf);
}

/* The target string, at every interesting buffer size, and its secrecy. */
static void
check_target(const TcRedisUrl *u)
{
	size_t		size = sizeof(TcRedisUrl) + 64;
	char	   *expected = malloc(size);
	char	   *got = malloc(size);
	TcRedisUrl	other;
	size_t		explen;
	size_t		sizes[] = {0, 1, 2, 5, 8, 16, 64, 0, 0, 0, MAXPGPATH + 16};
	size_t		i;

	if (u->unix_socket)
		snprintf(expected, size, "unix:%s", u->path);
	else
	{
		size_t		off = 0;
		int			h;

		if (u->topology == TC_TOPOLOGY_SENTINEL)
			off = snprintf(expected, size, "sentinel master \"%s\" via ", u->master_name);
		else if (u->topology == TC_TOPOLOGY_CLUSTER)
			off = snprintf(expected, size, "cluster via ");
		for (h = 0; h < u->nhosts; h++)
		{
			bool		bracket = strchr(u->hosts[h].host, ':') != NULL;

			off += snprintf(expected + off, size - off, "%s%s%s%s:%d",
							h > 0 ? "," : "",
							bracket ? "[" : "", u->hosts[h].host, bracket ? "]" : "",
							u->hosts[h].port);
			FUZZ_CHECK(off < size);
		}
	}
	explen = strlen(expected);
	sizes[7] = explen;			/* one byte short */
	sizes[8] = explen + 1;		/* exactly enough */
	sizes[9] = explen + 2;
	for (i = 0; i < lengthof(sizes); i++)
		check_target_len(u, expected, sizes[i]);

	/* the credentials make no difference to it */
	memcpy(&other, u, sizeof(other));
	memset(other.user, 'u', sizeof(other.user) - 1);
	other.user[sizeof(other.user) - 1] = '\0';
	memset(other.password, 'p', sizeof(other.password) - 1);
	other.password[sizeof(other.password) - 1] = '\0';
	TwoCacheRedisUrlTarget(&other, got, size);
	FUZZ_CHECK(strcmp(got, expected) == 0);

	free(got);
	free(expected);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *url;
	TcRedisUrl	u;
	const char *err = NULL;

	/* a setting is a C string: inputs with a NUL are kept out of the corpus */
	if (memchr(data, '\0', size) != NULL)
		return -1;
	url = malloc(size + 1);
	memcpy(url, data, size);
	url[size] = '\0';

	memset(&u, GUARD_BYTE, sizeof(u));
	if (!TwoCacheParseRedisUrl(url, &u, &err))
	{
		/* a constant message, never a pointer into the URL */
		FUZZ_CHECK(err != NULL && err[0] != '\0');
		FUZZ_CHECK((uintptr_t) err < (uintptr_t) url ||
				   (uintptr_t) err > (uintptr_t) (url + size));
		free(url);
		return 0;
	}
	check_fields(url, &u);
	check_reparse(&u);
	check_target(&u);
	free(url);
	return 0;
}
