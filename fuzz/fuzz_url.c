/*-------------------------------------------------------------------------
 *
 * fuzz_url.c
 *	  libFuzzer target for the twocache.redis_url parser (src/redis_url.c).
 *
 * The input is the URL, as a C string in a buffer of exactly its size (so
 * ASan sees a read past the terminator).  A rejected URL must come with a
 * constant message, not a pointer into the URL (which may hold a password).
 * An accepted one must have fields within the parser's ranges, strings
 * terminated inside their buffers, and a canonical form that parses to the
 * same fields.  TwoCacheRedisUrlTarget must truncate to the buffer it is
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

/* The fields of an accepted URL. */
static void
check_fields(const char *url, const TcRedisUrl *u)
{
	FUZZ_CHECK(terminated(u->hosts[0].host, sizeof(u->hosts[0].host)));
	FUZZ_CHECK(terminated(u->path, sizeof(u->path)));
	FUZZ_CHECK(terminated(u->user, sizeof(u->user)));
	FUZZ_CHECK(terminated(u->password, sizeof(u->password)));

	if (u->unix_socket)
	{
		FUZZ_CHECK(strncmp(url, "unix://", 7) == 0);
		FUZZ_CHECK(u->path[0] == '/');
		FUZZ_CHECK(strcmp(u->path, url + 7) == 0);
		FUZZ_CHECK(u->hosts[0].host[0] == '\0');
		FUZZ_CHECK(u->user[0] == '\0' && u->password[0] == '\0');
		FUZZ_CHECK(u->hosts[0].port == 6379 && u->db == 0);
		return;
	}
	FUZZ_CHECK(strncmp(url, "redis://", 8) == 0);
	FUZZ_CHECK(u->hosts[0].host[0] != '\0');
	FUZZ_CHECK(strchr(u->hosts[0].host, '/') == NULL && strchr(u->hosts[0].host, '@') == NULL);
	FUZZ_CHECK(u->hosts[0].port >= 1 && u->hosts[0].port <= 65535);
	FUZZ_CHECK(u->db >= 0 && u->db <= 1000000);
	FUZZ_CHECK(strchr(u->user, ':') == NULL && strchr(u->user, '/') == NULL);
	FUZZ_CHECK(strchr(u->password, '/') == NULL);
	FUZZ_CHECK(u->path[0] == '\0');
}

/*
 * Write the URL back in canonical form (every part spelled out) and check
 * that it parses to the same fields: the parser memsets its output first,
 * so the structs compare bytewise.
 */
static void
check_reparse(const TcRedisUrl *u)
{
	size_t		size = sizeof(TcRedisUrl) + 64;
	char	   *url = malloc(size);
	TcRedisUrl	again;
	const char *err = NULL;

	if (u->unix_socket)
		snprintf(url, size, "unix://%s", u->path);
	else
	{
		bool		bracket = strchr(u->hosts[0].host, ':') != NULL || u->hosts[0].host[0] == '[';
		bool		creds = u->user[0] != '\0' || u->password[0] != '\0';

		snprintf(url, size, "redis://%s%s%s%s%s%s%s:%d/%d",
				 creds ? u->user : "", creds ? ":" : "",
				 creds ? u->password : "", creds ? "@" : "",
				 bracket ? "[" : "", u->hosts[0].host, bracket ? "]" : "",
				 u->hosts[0].port, u->db);
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
	else if (strchr(u->hosts[0].host, ':') != NULL)
		snprintf(expected, size, "[%s]:%d", u->hosts[0].host, u->hosts[0].port);
	else
		snprintf(expected, size, "%s:%d", u->hosts[0].host, u->hosts[0].port);
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
