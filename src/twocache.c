/*-------------------------------------------------------------------------
 *
 * twocache.c
 *	  Module entry point and settings of twocache.
 *
 * _PG_init only composes: settings, shared memory, the background worker.
 * Everything needs shared memory, so outside shared_preload_libraries
 * nothing is installed and every SQL function raises 55000 with a hint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "redis.h"
#include "twocache.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			twocache_max_entries = 10000;
int			twocache_memory_kb = 64 * 1024;
int			twocache_partitions = 16;
int			twocache_max_value_size = 1024 * 1024;
int			twocache_default_ttl = 0;
int			twocache_not_found_ttl = 60 * 1000;
bool		twocache_auto_tag = false;
bool		twocache_skip_local = false;
int			twocache_lease_ttl = 10000;
int			twocache_local_max_ttl = 0;
int			twocache_fetch_wait_timeout = 0;
int			twocache_max_ttl = 0;
int			twocache_max_fetch_depth = 8;
int			twocache_scope = TWOCACHE_SCOPE_DATABASE;
char	   *twocache_instance_id = NULL;
char	   *twocache_redis_url = NULL;
int			twocache_redis_timeout = 250;
int			twocache_redis_retry_interval = 1000;
char	   *twocache_key_prefix = NULL;
char	   *twocache_channel = NULL;
char	   *twocache_redis_tls_ca_file = NULL;
char	   *twocache_redis_tls_cert_file = NULL;
char	   *twocache_redis_tls_key_file = NULL;
int			twocache_redis_tls_verify = TWOCACHE_TLS_VERIFY_FULL;

static const struct config_enum_entry tls_verify_options[] = {
	{"full", TWOCACHE_TLS_VERIFY_FULL, false},
	{"ca", TWOCACHE_TLS_VERIFY_CA, false},
	{"none", TWOCACHE_TLS_VERIFY_NONE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry scope_options[] = {
	{"database", TWOCACHE_SCOPE_DATABASE, false},
	{"cluster", TWOCACHE_SCOPE_CLUSTER, false},
	{"role", TWOCACHE_SCOPE_ROLE, false},
	{NULL, 0, false}
};

static bool
check_instance_id(char **newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	const char *s = *newval;

	if (strlen(s) > TWOCACHE_MAX_INSTANCE_ID)
	{
		GUC_check_errdetail("twocache.instance_id is longer than %d bytes.",
							TWOCACHE_MAX_INSTANCE_ID);
		return false;
	}
	for (; *s; s++)
	{
		if ((unsigned char) *s < 0x21 || (unsigned char) *s > 0x7e)
		{
			GUC_check_errdetail("twocache.instance_id may contain only printable ASCII characters other than space.");
			return false;
		}
	}
	return true;
}

static bool
check_redis_url(char **newval, void **extra pg_attribute_unused(),
				GucSource source pg_attribute_unused())
{
	TcRedisUrl	u;
	const char *err;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!TwoCacheParseRedisUrl(*newval, &u, &err))
	{
		/* never echo the value: it may hold a password */
		GUC_check_errmsg("invalid value for parameter \"twocache.redis_url\"");
		GUC_check_errdetail("%s.", err);
		GUC_check_errhint("Use redis[s]://[[user]:password@]host[:port][/db], unix:///path, redis[s]-sentinel://host[:port][,...][/db]#master or redis[s]-cluster://host[:port][,...].");
		return false;
	}
	return true;
}

static bool
check_channel(char **newval, void **extra pg_attribute_unused(),
			  GucSource source pg_attribute_unused())
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("twocache.channel must not be empty.");
		return false;
	}
	return true;
}

/* Define every twocache.* setting. */
void
TwoCacheDefineGucs(void)
{
	DefineCustomIntVariable("twocache.max_entries",
							"Capacity of the local cache (L1), in entries.",
							"This is the ARC capacity c; the directory also keeps up to c ghost keys.",
							&twocache_max_entries,
							10000, 1, INT_MAX / 4,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.memory",
							"Shared memory for the keys and values of the local cache.",
							NULL,
							&twocache_memory_kb,
							64 * 1024, 1024, INT_MAX / 2,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.partitions",
							"Number of independent ARC partitions of the local cache.",
							"Keys are spread over partitions by hash; each has its own lock, capacity and memory. 1 gives one exact ARC.",
							&twocache_partitions,
							16, 1, TWOCACHE_MAX_PARTITIONS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.max_value_size",
							"Largest value kept in the local cache.",
							NULL,
							&twocache_max_value_size,
							1024 * 1024, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.default_ttl",
							"Time to live of an entry when no TTL is given; 0 means no expiry.",
							NULL,
							&twocache_default_ttl,
							0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.not_found_ttl",
							"Time to live of a not-found placeholder; 0 disables negative caching.",
							NULL,
							&twocache_not_found_ttl,
							60 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("twocache.auto_tag",
							 "Tag each value filled by a fetch query with the tables its plan reads.",
							 "The tags are the tables' schema-qualified names, as twocache_track() invalidates them.",
							 &twocache_auto_tag,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("twocache.skip_local",
							 "Read and write Redis only, not the local cache (two-layer mode).",
							 "Writes still drop this server's local copy. In local mode it has no effect.",
							 &twocache_skip_local,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.lease_ttl",
							"Life of a fleet-wide single-flight lease in Redis; 0 turns the lease off.",
							"In two-layer mode one server of the fleet runs a missed key's fetch while the others wait for its value; a lease whose holder died expires after this long.",
							&twocache_lease_ttl,
							10000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.local_max_ttl",
							"Upper bound on the life of a local cache entry; 0 means none.",
							NULL,
							&twocache_local_max_ttl,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.fetch_wait_timeout",
							"How long a backend waits for another backend's fetch of the same key; 0 waits until cancelled.",
							"After the timeout the backend runs the fetch itself.",
							&twocache_fetch_wait_timeout,
							0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.max_ttl",
							"Upper bound on every cache lifetime, in both layers; 0 means none.",
							"Caps the TTL argument, a TTL chosen by the fetch query, no expiry ('0') and twocache.not_found_ttl.",
							&twocache_max_ttl,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.max_fetch_depth",
							"Deepest nesting of fetch queries (a fetch query that calls twocache_get).",
							NULL,
							&twocache_max_fetch_depth,
							8, 1, TWOCACHE_MAX_FETCH_DEPTH,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("twocache.scope",
							 "Whether keys belong to the database, to the database and the current role, or to the whole cluster.",
							 "database, role (database and current_user) or cluster.",
							 &twocache_scope,
							 TWOCACHE_SCOPE_DATABASE, scope_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("twocache.instance_id",
							   "Name of this server in invalidation messages; generated at start when empty.",
							   NULL,
							   &twocache_instance_id,
							   "",
							   PGC_POSTMASTER, 0,
							   check_instance_id, NULL, NULL);

	DefineCustomStringVariable("twocache.redis_url",
							   "Redis server of the shared cache (L2); empty means local mode.",
							   "redis://[:password@]host[:port][/db] or unix:///path. Only superusers can see it.",
							   &twocache_redis_url,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_redis_url, NULL, NULL);

	DefineCustomIntVariable("twocache.redis_timeout",
							"Longest wait for any one Redis operation.",
							NULL,
							&twocache_redis_timeout,
							250, 1, 60 * 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("twocache.redis_retry_interval",
							"How long a backend skips Redis after a Redis failure.",
							NULL,
							&twocache_redis_retry_interval,
							1000, 0, 60 * 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("twocache.key_prefix",
							   "Prefix of every Redis key twocache uses.",
							   NULL,
							   &twocache_key_prefix,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("twocache.channel",
							   "Redis pub/sub channel of invalidation messages.",
							   NULL,
							   &twocache_channel,
							   "twocache:invalidate",
							   PGC_SIGHUP, 0,
							   check_channel, NULL, NULL);

	DefineCustomStringVariable("twocache.redis_tls_ca_file",
							   "CA certificates that a rediss URL's server certificate must chain to.",
							   "PEM file; empty means the system's default CA store.",
							   &twocache_redis_tls_ca_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("twocache.redis_tls_cert_file",
							   "Client certificate presented to a rediss URL's server.",
							   "PEM file (chain allowed); set together with twocache.redis_tls_key_file.",
							   &twocache_redis_tls_cert_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("twocache.redis_tls_key_file",
							   "Private key of twocache.redis_tls_cert_file.",
							   "PEM file without a passphrase.",
							   &twocache_redis_tls_key_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("twocache.redis_tls_verify",
							 "What a rediss URL's server certificate is checked for.",
							 "full: the CA and the host name; ca: the CA only; none: nothing.",
							 &twocache_redis_tls_verify,
							 TWOCACHE_TLS_VERIFY_FULL, tls_verify_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("twocache");
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	TwoCacheDefineGucs();
	TwoCacheShmemInit();
	TwoCacheWorkerRegister();
}
