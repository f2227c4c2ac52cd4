/*-------------------------------------------------------------------------
 *
 * gen_message_corpus.c
 *	  Write the seed corpus of fuzz_message with TwoCacheMessageEncode.
 *
 * Usage: gen_message_corpus DIR
 *
 * The seeds are encoded by src/message.c itself, so they follow the current
 * message format whatever it becomes: fuzz/run.sh regenerates them on every
 * run.  Valid messages cover the three scopes and every op, binary keys and every
 * limit; the "bad-" seeds are valid encodings with one thing broken (a
 * length, the version, a trailing byte), near misses the decoder must
 * reject.  Each valid seed is checked to decode back before it is written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>

#include "message.h"

static const char *outdir;
static int	nwritten;

static void
die(const char *what, const char *name)
{
	fprintf(stderr, "gen_message_corpus: %s: %s\n", what, name);
	exit(1);
}

static void
write_file(const char *name, const char *buf, int len)
{
	char		path[MAXPGPATH];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (f == NULL)
		die("cannot create file", path);
	if (len > 0 && fwrite(buf, 1, len, f) != (size_t) len)
		die("cannot write file", path);
	if (fclose(f) != 0)
		die("cannot write file", path);
	nwritten++;
}

static void
init_msg(TcMessage *m, TcMessageOp op, const char *instance_id,
		 const char *dbname, uint64 lsn, uint64 sysid)
{
	memset(m, 0, sizeof(*m));
	m->op = op;
	m->cluster_scope = (dbname == NULL);
	m->lsn = lsn;
	m->sysid = sysid;
	snprintf(m->instance_id, sizeof(m->instance_id), "%s", instance_id);
	if (dbname != NULL)
		snprintf(m->dbname, sizeof(m->dbname), "%s", dbname);
}

/* Make m, of database scope, a message of role scope. */
static void
set_role(TcMessage *m, const char *rolename)
{
	m->role_scope = true;
	snprintf(m->rolename, sizeof(m->rolename), "%s", rolename);
}

static void
set_key(TcMessage *m, const char *key, uint32 len)
{
	m->keylen = len;
	memcpy(m->key, key, len);
}

/* Encode m into buf, check that it decodes back, and return its length. */
static int
encode(const TcMessage *m, char *buf, const char *name)
{
	TcMessage	back;
	int			len = TwoCacheMessageEncode(m, buf, TC_MESSAGE_MAX);

	if (len < 0)
		die("does not encode", name);
	if (!TwoCacheMessageDecode(buf, len, &back) ||
		back.op != m->op || back.cluster_scope != m->cluster_scope ||
		back.lsn != m->lsn || back.sysid != m->sysid ||
		strcmp(back.instance_id, m->instance_id) != 0 ||
		strcmp(back.dbname, m->dbname) != 0 ||
		back.role_scope != m->role_scope ||
		strcmp(back.rolename, m->rolename) != 0 ||
		back.keylen != m->keylen || memcmp(back.key, m->key, m->keylen) != 0)
		die("does not decode back", name);
	return len;
}

/* Write m as seed "seed-NAME". */
static void
seed(const TcMessage *m, const char *name)
{
	char		buf[TC_MESSAGE_MAX];
	char		fname[128];

	snprintf(fname, sizeof(fname), "seed-%s", name);
	write_file(fname, buf, encode(m, buf, fname));
}

/*
 * Offsets of the variable-length fields of an encoded message, found from
 * the lengths encoded, as the decoder would.
 */
typedef struct Layout
{
	int			id;				/* the instance id length byte */
	int			db;				/* the database name length byte */
	int			role;			/* the role name length byte, or -1 */
	int			key;			/* the first of the two key length bytes */
} Layout;

static Layout
layout(const char *buf)
{
	const unsigned char *p = (const unsigned char *) buf;
	Layout		l;

	l.id = 2 + 1 + 1 + 1 + 8 + 8;
	l.db = l.id + 1 + p[l.id];
	l.role = (p[4] & 0x02) ? l.db + 1 + p[l.db] : -1;
	l.key = l.role >= 0 ? l.role + 1 + p[l.role] : l.db + 1 + p[l.db];
	return l;
}

int
main(int argc, char **argv)
{
	TcMessage	m;
	char		key[TWOCACHE_MAX_KEY_LEN];
	char		name[NAMEDATALEN];
	char		id[TWOCACHE_MAX_INSTANCE_ID + 1];
	char		buf[TC_MESSAGE_MAX + 1];
	char		bad[TC_MESSAGE_MAX + 1];
	int			len;
	int			i;
	Layout		l;

	if (argc != 2)
	{
		fprintf(stderr, "usage: gen_message_corpus DIR\n");
		return 2;
	}
	outdir = argv[1];

	/* valid messages */
	init_msg(&m, TC_MSG_DEL, "primary", "postgres", 0, UINT64CONST(7301828452437217042));
	set_key(&m, "report:42", 9);
	seed(&m, "del-database");

	init_msg(&m, TC_MSG_TAG, "primary", "postgres", UINT64CONST(0x16B3748), UINT64CONST(7301828452437217042));
	set_key(&m, "public.orders", 13);
	seed(&m, "tag-database");

	init_msg(&m, TC_MSG_SET, "standby-1", "app", UINT64CONST(0x16B3748), UINT64CONST(7301828452437217042));
	set_key(&m, "customer:7:summary", 18);
	seed(&m, "set-database-lsn");

	init_msg(&m, TC_MSG_DEL, "eu-west", NULL, UINT64CONST(0x3000028), UINT64CONST(7301828452437217042));
	set_key(&m, "rate:EUR", 8);
	seed(&m, "del-cluster");

	init_msg(&m, TC_MSG_SET, "eu-west", NULL, 0, UINT64CONST(7301828452437217043));
	set_key(&m, "config", 6);
	seed(&m, "set-cluster");

	init_msg(&m, TC_MSG_GENERATION, "primary", NULL, UINT64CONST(0x16B3748), UINT64CONST(7301828452437217042));
	set_key(&m, "42", 2);
	seed(&m, "generation");

	init_msg(&m, TC_MSG_FILLED, "eu-west", "app", 0, UINT64CONST(7301828452437217042));
	set_key(&m, "report:42", 9);
	seed(&m, "filled");

	init_msg(&m, TC_MSG_DEL, "primary", "app", UINT64CONST(0x16B3748), UINT64CONST(7301828452437217042));
	set_role(&m, "alice");
	set_key(&m, "report:42", 9);
	seed(&m, "del-role");

	init_msg(&m, TC_MSG_TAG, "primary", "app", 0, UINT64CONST(7301828452437217042));
	set_role(&m, "billing:r%w");
	set_key(&m, "public.orders", 13);
	seed(&m, "tag-role");

	for (i = 0; i < 256; i++)
		key[i] = (char) i;
	init_msg(&m, TC_MSG_SET, "bin", "postgres", 1, 2);
	set_key(&m, key, 256);
	seed(&m, "binary-key-256");

	init_msg(&m, TC_MSG_DEL, "bin", NULL, 1, 2);
	set_key(&m, "\0", 1);
	seed(&m, "cluster-key-nul");

	init_msg(&m, TC_MSG_DEL, "k", "d", 0, 0);
	set_key(&m, "a", 1);
	seed(&m, "key-len-1");

	memset(key, 'k', sizeof(key));
	init_msg(&m, TC_MSG_SET, "k", "d", 0, 0);
	set_key(&m, key, 255);
	seed(&m, "key-len-255");

	/* every field at its limit */
	memset(id, 'i', TWOCACHE_MAX_INSTANCE_ID);
	id[TWOCACHE_MAX_INSTANCE_ID] = '\0';
	memset(name, 'n', NAMEDATALEN - 1);
	name[NAMEDATALEN - 1] = '\0';
	for (i = 0; i < TWOCACHE_MAX_KEY_LEN; i++)
		key[i] = (char) (i * 7 + 3);
	init_msg(&m, TC_MSG_SET, id, name, PG_UINT64_MAX, PG_UINT64_MAX);
	set_key(&m, key, TWOCACHE_MAX_KEY_LEN);
	seed(&m, "max-all");
	set_role(&m, name);
	seed(&m, "max-all-role");

	init_msg(&m, TC_MSG_DEL, "", NULL, 0, 0);
	set_key(&m, "x", 1);
	seed(&m, "min-cluster-empty-instance");

	init_msg(&m, TC_MSG_SET, "node-\xc3\xa9", "donn\xc3\xa9" "es", 42, 42);
	set_key(&m, "cl\xc3\xa9:\xe2\x9c\x93", 8);
	seed(&m, "utf8");

	/* near misses, from a valid database-scope message */
	init_msg(&m, TC_MSG_SET, "primary", "postgres", 0x10, 0x20);
	set_key(&m, "report:42", 9);
	len = encode(&m, buf, "near-miss base");
	l = layout(buf);

	write_file("bad-truncated", buf, len - 1);
	memcpy(bad, buf, len);
	bad[len] = '\n';
	write_file("bad-trailing-byte", bad, len + 1);
	write_file("bad-header-only", buf, l.id);

	memcpy(bad, buf, len);
	bad[2] = 2;
	write_file("bad-version", bad, len);
	memcpy(bad, buf, len);
	bad[3] = 'x';
	write_file("bad-op", bad, len);
	memcpy(bad, buf, len);
	bad[4] = 0x04;
	write_file("bad-flags", bad, len);
	memcpy(bad, buf, len);
	bad[0] = 't';
	write_file("bad-magic", bad, len);
	memcpy(bad, buf, len);
	bad[4] = 0x01;				/* cluster scope with a database name */
	write_file("bad-cluster-with-dbname", bad, len);
	memcpy(bad, buf, len);
	bad[l.key + 1]++;			/* key longer than the data */
	write_file("bad-key-length", bad, len);
	memcpy(bad, buf, len);
	bad[l.id]++;				/* instance id swallowing the next length */
	write_file("bad-instance-length", bad, len);
	memcpy(bad, buf, len);
	bad[l.db + 1 + 3] = '\0';	/* NUL inside the database name */
	write_file("bad-dbname-nul", bad, len);
	memcpy(bad, buf, len);
	bad[l.id + 1 + 2] = '\0';	/* NUL inside the instance id */
	write_file("bad-instance-id-nul", bad, len);

	/* a key of TWOCACHE_MAX_KEY_LEN + 1 bytes, which the encoder refuses */
	init_msg(&m, TC_MSG_DEL, "k", NULL, 0, 0);
	set_key(&m, key, TWOCACHE_MAX_KEY_LEN);
	len = encode(&m, buf, "over-limit base");
	l = layout(buf);
	buf[l.key] = (char) ((TWOCACHE_MAX_KEY_LEN + 1) >> 8);
	buf[l.key + 1] = (char) (TWOCACHE_MAX_KEY_LEN + 1);
	buf[len] = 'k';
	write_file("bad-key-over-limit", buf, len + 1);

	/* database scope with an empty name */
	init_msg(&m, TC_MSG_DEL, "k", NULL, 0, 0);
	set_key(&m, "x", 1);
	len = encode(&m, buf, "empty dbname base");
	buf[4] = 0;
	write_file("bad-database-scope-empty-dbname", buf, len);

	/* role scope: with cluster scope, without a name, with a NUL in it */
	init_msg(&m, TC_MSG_DEL, "k", "d", 0, 0);
	set_role(&m, "r");
	set_key(&m, "x", 1);
	len = encode(&m, buf, "role base");
	l = layout(buf);
	memcpy(bad, buf, len);
	bad[4] = 0x03;
	write_file("bad-role-and-cluster", bad, len);
	memcpy(bad, buf, len);
	bad[l.role] = 0;			/* empty role name, the byte left over */
	write_file("bad-role-empty-name", bad, len);
	memcpy(bad, buf, len);
	bad[l.role + 1] = '\0';
	write_file("bad-role-name-nul", bad, len);
	memcpy(bad, buf, len);
	bad[4] = 0x00;				/* database scope with a role name */
	write_file("bad-role-name-without-flag", bad, len);

	fprintf(stdout, "gen_message_corpus: %d seeds in %s\n", nwritten, outdir);
	return 0;
}
