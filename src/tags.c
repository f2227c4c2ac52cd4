/*-------------------------------------------------------------------------
 *
 * tags.c
 *	  Cache tags: an entry carries tags, and invalidating a tag drops every
 *	  entry carrying it.
 *
 * Tags are given to twocache_get (for the value it fills) and twocache_set,
 * and stored with the entry, after its value, encoded as a 2-byte length and
 * the bytes of each tag (ArcTags).  Like keys, tags live in a database (or,
 * with twocache.scope = cluster, in the server): a tag invalidation drops
 * the entries of its own database only.  In role scope an invalidation
 * names a role (twocache_invalidate_tag: current_user's entries only) or
 * none (a table trigger: the table changed, so every role's entries go).
 * Fence stripes are per database and tag, whatever the role, so an
 * invalidation for one role fences the fills of all (a needless rejection
 * at worst) and one for every role fences every fill.
 *
 * Invalidating a tag first raises the tag's fence (fence.c), then drops the
 * matching entries partition by partition.  A fill checks the fences of its
 * tags under its partition lock before storing, so either it sees the fence
 * and is rejected, or it stored before the scan reached its partition and
 * the scan drops it.
 *
 * Locking: the scan takes each partition's lock exclusively in turn.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/timestamp.h"

#include "fence.h"
#include "flight.h"
#include "twocache.h"

/*
 * Encode a text[] of tags (NULL: none) into *tags (palloc'd).  Raises the
 * key errors for a NULL, empty or oversize tag; duplicates are dropped.
 */
void
TwoCacheTagsFromArray(ArrayType *arr, ArcTags *tags)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	StringInfoData buf;

	tags->data = NULL;
	tags->len = 0;
	if (arr == NULL)
		return;
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("array of cache tags must be one-dimensional")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > TWOCACHE_MAX_TAGS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many cache tags: %d", n),
				 errdetail("An entry carries at most %d tags.", TWOCACHE_MAX_TAGS)));

	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		text	   *t;
		int			len;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("cache tag must not be null")));
		t = DatumGetTextPP(elems[i]);
		len = VARSIZE_ANY_EXHDR(t);
		if (len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cache tag must not be empty")));
		if (len > TWOCACHE_MAX_KEY_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cache tag is too long: %d bytes", len),
					 errdetail("Tags are limited to %d bytes.", TWOCACHE_MAX_KEY_LEN)));
		if (TwoCacheTagsContain(buf.data, buf.len, VARDATA_ANY(t), len))
			continue;
		appendStringInfoChar(&buf, (char) (len >> 8));
		appendStringInfoChar(&buf, (char) (len & 0xff));
		appendBinaryStringInfo(&buf, VARDATA_ANY(t), len);
	}
	tags->data = buf.data;
	tags->len = buf.len;
}

/* Number of tags in an encoded list. */
int
TwoCacheTagsCount(const ArcTags *tags)
{
	const unsigned char *p;
	const unsigned char *end;
	int			n = 0;

	if (tags == NULL || tags->len == 0)
		return 0;
	p = (const unsigned char *) tags->data;
	end = p + tags->len;
	while (end - p >= 2)
	{
		p += 2 + ((p[0] << 8) | p[1]);
		n++;
	}
	return n;
}

/* *out = a, then the tags of b that a lacks (palloc'd). */
void
TwoCacheTagsMerge(const ArcTags *a, const ArcTags *b, ArcTags *out)
{
	StringInfoData buf;
	const unsigned char *p;
	const unsigned char *end;

	initStringInfo(&buf);
	if (a != NULL && a->len > 0)
		appendBinaryStringInfo(&buf, a->data, a->len);
	if (b != NULL && b->len > 0)
	{
		p = (const unsigned char *) b->data;
		end = p + b->len;
		while (end - p >= 2)
		{
			int			n = (p[0] << 8) | p[1];

			if (!TwoCacheTagsContain(buf.data, buf.len, (const char *) p + 2, n))
				appendBinaryStringInfo(&buf, (const char *) p, 2 + n);
			p += 2 + n;
		}
	}
	out->data = buf.data;
	out->len = buf.len;
}

/* Does the encoded tag list hold this tag? */
bool
TwoCacheTagsContain(const char *data, uint32 len, const char *tag, int taglen)
{
	const unsigned char *p = (const unsigned char *) data;
	const unsigned char *end = p + len;

	while (end - p >= 2)
	{
		int			n = (p[0] << 8) | p[1];

		p += 2;
		if (n > end - p)
			break;
		if (n == taglen && memcmp(p, tag, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/*
 * Drop every L1 entry of database dbid carrying tag, of role roleid if it is
 * valid (else of every role), after fencing fills of it; on a standby, lsn (if valid) is the WAL position the invalidation
 * holds from, not replayed yet.  Returns how many resident entries were
 * dropped.
 */
uint64
TwoCacheInvalidateTagLocal(Oid dbid, Oid roleid, const char *tag, int taglen,
						   XLogRecPtr lsn)
{
	uint64		dropped = 0;
	int			i;

	FenceTag(dbid, tag, taglen, lsn);

	for (i = 0; i < twocache_shared->npartitions; i++)
	{
		ArcPartition *part = &twocache_shared->partitions[i];
		HTAB	   *hash = TwoCachePartitionHash(i);
		int			l;

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		for (l = ARC_T1; l <= ARC_T2; l++)
		{
			dlist_mutable_iter iter;

			dlist_foreach_modify(iter, &part->lists[l])
			{
				ArcEntry   *e = dlist_container(ArcEntry, node, iter.cur);

				if (e->tags_len == 0 || e->key.dbid != dbid ||
					(OidIsValid(roleid) && e->key.roleid != roleid) ||
					!TwoCacheTagsContain(ArcEntryTags(e), e->tags_len, tag, taglen))
					continue;
				FenceKey(part, &e->key);
				ArcRemove(part, hash, e);
				dropped++;
			}
		}
		LWLockRelease(part->lock);
	}
	return dropped;
}
