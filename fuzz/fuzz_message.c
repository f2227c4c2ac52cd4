/*-------------------------------------------------------------------------
 *
 * fuzz_message.c
 *	  libFuzzer target for the invalidation message codec (src/message.c).
 *
 * The decoder runs in the background worker on bytes from the network, so
 * no input may make it read or write out of bounds (ASan watches).  What it
 * accepts must be well formed: fields within their limits, strings
 * terminated inside their buffers, and canonical, so that encoding the
 * decoded message gives back exactly the input bytes.
 *
 * The same input is also read as the fields of a message, which must come
 * back unchanged from encode then decode: the encoder must never produce
 * what the decoder rejects.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "message.h"

#include "fuzz.h"

/* Decode the input; if accepted, check the fields and the round trip. */
static void
check_decode(const uint8_t *data, size_t size)
{
	TcMessage	msg;
	char	   *buf;
	int			n;

	if (size > INT_MAX)
		return;
	/* poison, so that a field the decoder leaves unset shows */
	memset(&msg, 0xA5, sizeof(msg));
	if (!TwoCacheMessageDecode((const char *) data, (int) size, &msg))
		return;

	FUZZ_CHECK(size <= TC_MESSAGE_MAX);
	FUZZ_CHECK(msg.op == TC_MSG_DEL || msg.op == TC_MSG_SET || msg.op == TC_MSG_TAG ||
			   msg.op == TC_MSG_GENERATION || msg.op == TC_MSG_FILLED);
	FUZZ_CHECK(msg.keylen >= 1 && msg.keylen <= TWOCACHE_MAX_KEY_LEN);
	FUZZ_CHECK(memchr(msg.instance_id, '\0', sizeof(msg.instance_id)) != NULL);
	FUZZ_CHECK(memchr(msg.dbname, '\0', sizeof(msg.dbname)) != NULL);
	/* database scope names a database, cluster scope none */
	FUZZ_CHECK(msg.cluster_scope == (msg.dbname[0] == '\0'));
	/* role scope names a role too, and is never cluster scope */
	FUZZ_CHECK(memchr(msg.rolename, '\0', sizeof(msg.rolename)) != NULL);
	FUZZ_CHECK(msg.role_scope == (msg.rolename[0] != '\0'));
	FUZZ_CHECK(!(msg.role_scope && msg.cluster_scope));

	/* canonical: re-encoding into a buffer of exactly size bytes */
	buf = malloc(size);
	n = TwoCacheMessageEncode(&msg, buf, (int) size);
	FUZZ_CHECK(n == (int) size);
	FUZZ_CHECK(memcmp(buf, data, size) == 0);
	free(buf);

	/* one byte short must be refused, not overrun (ASan sees the buffer) */
	buf = malloc(size - 1);
	FUZZ_CHECK(TwoCacheMessageEncode(&msg, buf, (int) size - 1) == -1);
	free(buf);
}

/* Take up to n bytes of *data as a C string of at most max bytes. */
static void
take_string(const uint8_t **data, size_t *size, char *dst, size_t n, size_t max)
{
	size_t		i;

	n = Min(Min(n, max), *size);
	for (i = 0; i < n; i++)
		dst[i] = (*data)[i] != '\0' ? (char) (*data)[i] : 'x';
	dst[n] = '\0';
	*data += n;
	*size -= n;
}

/*
 * Read the input as message fields (a flag byte, lsn, sysid, three lengths,
 * then instance id, database name, role name and key bytes) and check that
 * encode then decode returns them unchanged.  Builds only what callers may
 * pass: a non-empty key, a database name exactly when not in cluster scope,
 * and a role name exactly in role scope.
 */
static void
check_encode(const uint8_t *data, size_t size)
{
	TcMessage	in;
	TcMessage	out;
	char		buf[TC_MESSAGE_MAX];
	char	   *exact;
	size_t		idlen;
	size_t		dblen;
	size_t		rolelen;
	size_t		need;
	int			n;
	int			i;

	if (size < 1 + 8 + 8 + 3)
		return;
	memset(&in, 0, sizeof(in));
	in.op = (data[0] & 1) ? TC_MSG_SET : (data[0] & 4) ? TC_MSG_TAG :
		(data[0] & 16) ? TC_MSG_GENERATION : (data[0] & 32) ? TC_MSG_FILLED : TC_MSG_DEL;
	in.cluster_scope = (data[0] & 2) != 0;
	in.role_scope = !in.cluster_scope && (data[0] & 8) != 0;
	for (i = 0; i < 8; i++)
		in.lsn = (in.lsn << 8) | data[1 + i];
	for (i = 0; i < 8; i++)
		in.sysid = (in.sysid << 8) | data[9 + i];
	idlen = data[17];
	dblen = in.cluster_scope ? 0 : data[18];
	rolelen = in.role_scope ? data[19] : 0;
	data += 20;
	size -= 20;
	take_string(&data, &size, in.instance_id, idlen, TWOCACHE_MAX_INSTANCE_ID);
	take_string(&data, &size, in.dbname, dblen, NAMEDATALEN - 1);
	take_string(&data, &size, in.rolename, rolelen, NAMEDATALEN - 1);
	if (!in.cluster_scope && in.dbname[0] == '\0')
		return;
	if (in.role_scope && in.rolename[0] == '\0')
		return;
	in.keylen = (uint32) Min(size, TWOCACHE_MAX_KEY_LEN);
	if (in.keylen == 0)
		return;
	memcpy(in.key, data, in.keylen);

	need = 2 + 1 + 1 + 1 + 8 + 8 + 1 + strlen(in.instance_id) +
		1 + strlen(in.dbname) + (in.role_scope ? 1 + strlen(in.rolename) : 0) +
		2 + in.keylen;
	n = TwoCacheMessageEncode(&in, buf, sizeof(buf));
	FUZZ_CHECK(n == (int) need);

	/* an exactly sized buffer is enough, one byte less is refused */
	exact = malloc(need);
	FUZZ_CHECK(TwoCacheMessageEncode(&in, exact, (int) need) == n);
	FUZZ_CHECK(memcmp(exact, buf, need) == 0);
	free(exact);
	exact = malloc(need - 1);
	FUZZ_CHECK(TwoCacheMessageEncode(&in, exact, (int) need - 1) == -1);
	free(exact);

	memset(&out, 0xA5, sizeof(out));
	FUZZ_CHECK(TwoCacheMessageDecode(buf, n, &out));
	FUZZ_CHECK(out.op == in.op);
	FUZZ_CHECK(out.cluster_scope == in.cluster_scope);
	FUZZ_CHECK(out.lsn == in.lsn);
	FUZZ_CHECK(out.sysid == in.sysid);
	FUZZ_CHECK(strcmp(out.instance_id, in.instance_id) == 0);
	FUZZ_CHECK(strcmp(out.dbname, in.dbname) == 0);
	FUZZ_CHECK(out.role_scope == in.role_scope);
	FUZZ_CHECK(strcmp(out.rolename, in.rolename) == 0);
	FUZZ_CHECK(out.keylen == in.keylen);
	FUZZ_CHECK(memcmp(out.key, in.key, in.keylen) == 0);

	/* one byte missing or one byte too many is malformed */
	FUZZ_CHECK(!TwoCacheMessageDecode(buf, n - 1, &out));
	if (n < (int) sizeof(buf))
	{
		buf[n] = 'x';
		FUZZ_CHECK(!TwoCacheMessageDecode(buf, n + 1, &out));
	}

	/* a key over the limit is refused, not read */
	in.keylen = TWOCACHE_MAX_KEY_LEN + 1;
	FUZZ_CHECK(TwoCacheMessageEncode(&in, buf, sizeof(buf)) == -1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_decode(data, size);
	check_encode(data, size);
	return 0;
}
