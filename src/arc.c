/*-------------------------------------------------------------------------
 *
 * arc.c
 *	  The ARC replacement policy over one partition of shared memory.
 *
 * This is the algorithm of Megiddo and Modha ("ARC: A Self-Tuning, Low
 * Overhead Replacement Cache", FAST 2003, figure 4) with an integer target
 * p and delta = max(1, |B_other| / |B_this|).  T1 and T2 hold resident
 * entries, B1 and B2 their ghosts (keys only).  Each list is a dlist whose
 * head is the MRU end.  The directory is a dynahash keyed by ArcKey.
 *
 * Departures from the paper, none of which changes its behaviour on a trace
 * of plain lookups and fills that fit in memory:
 *	- An entry is inserted when its value arrives (after the fetch) rather
 *	  than when the miss is seen; with no concurrency this is the same trace.
 *	- Deletes and expiries remove an entry without making it a ghost, so the
 *	  cache may hold fewer than c entries after warm-up; REPLACE then runs
 *	  only while T1 and T2 together are full.
 *	- When the arena cannot hold a new key or value, ghosts give their key
 *	  bytes back first, oldest ghost first; only when no ghost holds any
 *	  does REPLACE run, until the new key or value fits.
 *
 * Ghosts and memory.  The directory has room for 2c entries from the start
 * (shmem.c), so a ghost's entry costs nothing more; only its key bytes live
 * in the arena, next to the residents' keys and values.  When
 * twocache.memory binds before twocache.max_entries does, up to c ghost keys
 * would take the arena from residents, and with long keys they take most of
 * it: REPLACE would evict residents to keep keys that have no value.  So a
 * ghost holds its key bytes only while the arena has room for them.  When an
 * allocation fails, the oldest ghost that still holds key bytes (keyed_ghosts
 * is a list of those, newest first) frees them and keeps, in its directory
 * entry, the key's length and a 64-bit fingerprint of its bytes
 * (ArcKeyPrint); its directory key gets len = 0 and points at that print.
 * It stays where it was in B1 or B2 and ArcFind still finds it, so ghost
 * hits adapt p exactly as before.  Dropping such ghosts instead would also
 * give their memory back, but would starve the ARC of the history it adapts
 * p from just when memory binds: every demoted entry's ghost would go at the
 * next allocation, B1 and B2 would stay empty and p would never move.
 * Keeping the bytes while there is room is what lets twocache_entries()
 * name ghosts (a ghost that gave its bytes up shows a NULL key), and it
 * leaves the lists, and so test/t/001_arc_trace.pl, unchanged when memory
 * does not bind.  Keys are never empty, so len = 0 marks a print; a print
 * matches a key of the same database, role, 32-bit hash, length and
 * fingerprint.  Two different keys alike in all of those would be taken for
 * one ghost: that can misplace an entry in the ARC (a ghost has no value),
 * never serve a wrong value.
 *
 * Locking: every function here expects the partition's LWLock held
 * exclusively, except ArcFind, for which shared mode suffices (a ghost's
 * print, like the rest of an entry, changes only under the exclusive lock).
 * Nothing here does I/O, raises errors or allocates backend memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"

#include "arc.h"
#include "twocache.h"

/*
 * Seed of a ghost's fingerprint: any nonzero one, so that its bits are not
 * those of the key's 32-bit hash.
 */
#define ARC_PRINT_SEED		UINT64CONST(0x74776f6361636865)

/* Is this directory key a ghost's print rather than key bytes? */
static inline bool
key_is_print(const ArcKey *key)
{
	return key->len == 0;
}

static inline uint64
key_fingerprint(const ArcKey *key)
{
	return hash_bytes_extended((const unsigned char *) key->data,
							   (int) key->len, ARC_PRINT_SEED);
}

static inline ArcEntry *
list_lru(ArcPartition *part, ArcList list)
{
	if (dlist_is_empty(&part->lists[list]))
		return NULL;
	return dlist_tail_element(ArcEntry, node, &part->lists[list]);
}

/* Put an entry on a list; a ghost with key bytes also goes on keyed_ghosts. */
static inline void
list_push_mru(ArcPartition *part, ArcEntry *e, ArcList list)
{
	e->list = list;
	dlist_push_head(&part->lists[list], &e->node);
	part->len[list]++;
	if (ArcListIsGhost(list) && !key_is_print(&e->key))
		dlist_push_head(&part->keyed_ghosts, &e->keyed_node);
}

static inline void
list_unlink(ArcPartition *part, ArcEntry *e)
{
	dlist_delete(&e->node);
	part->len[e->list]--;
	if (ArcListIsGhost(e->list) && !key_is_print(&e->key))
		dlist_delete(&e->keyed_node);
}

static inline void
free_value(ArcPartition *part, ArcEntry *e)
{
	if (e->value != NULL)
		ArenaFree(&part->arena, e->value);
	e->value = NULL;
	e->value_len = 0;
	e->tags_len = 0;
	e->negative = false;
}

/* Remove an entry that is not on any list from the directory. */
static void
forget_entry(ArcPartition *part, HTAB *hash, ArcEntry *e)
{
	char	   *keydata = key_is_print(&e->key) ? NULL : (char *) e->key.data;
	bool		found;

	free_value(part, e);
	hash_search_with_hash_value(hash, &e->key, e->key.hash, HASH_REMOVE, &found);
	Assert(found);
	if (keydata != NULL)
		ArenaFree(&part->arena, keydata);
}

/*
 * The oldest ghost that still holds key bytes gives them back to the arena,
 * keeping its key's length and fingerprint: it stays in its list, and
 * ArcFind finds it as before.  keyed_ghosts must not be empty.
 */
static void
release_ghost_key(ArcPartition *part)
{
	ArcEntry   *e = dlist_tail_element(ArcEntry, keyed_node, &part->keyed_ghosts);
	char	   *keydata = (char *) e->key.data;

	Assert(ArcListIsGhost(e->list) && !key_is_print(&e->key));
	dlist_delete(&e->keyed_node);
	e->print.fingerprint = key_fingerprint(&e->key);
	e->print.len = e->key.len;
	e->key.data = (const char *) &e->print;
	e->key.len = 0;
	ArenaFree(&part->arena, keydata);
}

/* Take the LRU entry of a list out of the directory altogether. */
static void
drop_lru(ArcPartition *part, HTAB *hash, ArcList list)
{
	ArcEntry   *e = list_lru(part, list);

	if (e == NULL)
		return;
	list_unlink(part, e);
	forget_entry(part, hash, e);
}

/*
 * REPLACE(x, p) of the paper: demote the LRU entry of T1 or T2 to the MRU
 * end of its ghost list, freeing its value.
 */
static void
arc_replace(ArcPartition *part, bool x_in_b2, uint64 *evicted)
{
	int			t1 = part->len[ARC_T1];
	ArcList		from;
	ArcEntry   *victim;

	if (t1 >= 1 && ((x_in_b2 && t1 == part->p) || t1 > part->p))
		from = ARC_T1;
	else
		from = ARC_T2;
	if (part->len[from] == 0)
		from = (from == ARC_T1) ? ARC_T2 : ARC_T1;

	victim = list_lru(part, from);
	if (victim == NULL)
		return;
	list_unlink(part, victim);
	free_value(part, victim);
	list_push_mru(part, victim, from == ARC_T1 ? ARC_B1 : ARC_B2);
	(*evicted)++;
}

/*
 * Allocate from the arena.  While it is full, ghosts give up their key bytes
 * first; only when none holds any does REPLACE demote a resident (whose
 * ghost then gives up its key bytes in turn).  The entry being stored must
 * not be on any list.
 */
static char *
alloc_evicting(ArcPartition *part, Size size, bool x_in_b2, uint64 *evicted)
{
	for (;;)
	{
		char	   *p = ArenaAlloc(&part->arena, size);

		if (p != NULL)
			return p;
		if (!dlist_is_empty(&part->keyed_ghosts))
			release_ghost_key(part);
		else if (part->len[ARC_T1] + part->len[ARC_T2] > 0)
			arc_replace(part, x_in_b2, evicted);
		else
			return NULL;
	}
}

/*
 * dynahash support: the hash is computed once by the caller and kept in the
 * key; equality compares database, role and bytes.  dynahash passes the
 * directory's key first and the key searched for second.  A directory key
 * that is a ghost's print matches a key with the print's length and
 * fingerprint; a print searched for (forget_entry removing that ghost)
 * matches only itself.
 */
uint32
ArcKeyHash(const void *key, Size keysize pg_attribute_unused())
{
	return ((const ArcKey *) key)->hash;
}

int
ArcKeyMatch(const void *key1, const void *key2,
			Size keysize pg_attribute_unused())
{
	const ArcKey *a = key1;
	const ArcKey *b = key2;

	if (a->hash != b->hash || a->dbid != b->dbid || a->roleid != b->roleid)
		return 1;
	if (key_is_print(b))
		return a->data == b->data ? 0 : 1;
	if (key_is_print(a))
	{
		const ArcKeyPrint *print = (const ArcKeyPrint *) a->data;

		if (print->len != b->len)
			return 1;
		return print->fingerprint == key_fingerprint(b) ? 0 : 1;
	}
	if (a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

/* Initialize an empty partition (at shared memory creation). */
void
ArcPartitionInit(ArcPartition *part, LWLock *lock, int capacity,
				 char *arena_base, Size arena_size)
{
	int			i;

	memset(part, 0, sizeof(ArcPartition));
	part->lock = lock;
	part->capacity = capacity;
	part->p = 0;
	for (i = 0; i < ARC_NLISTS; i++)
	{
		dlist_init(&part->lists[i]);
		part->len[i] = 0;
	}
	dlist_init(&part->keyed_ghosts);
	dlist_init(&part->flights);
	ArenaInit(&part->arena, arena_base, arena_size);
}

/* Find a directory entry (resident or ghost).  Shared lock suffices. */
ArcEntry *
ArcFind(HTAB *hash, const ArcKey *key)
{
	return (ArcEntry *) hash_search_with_hash_value(hash, key, key->hash,
													HASH_FIND, NULL);
}

/* Case I: a hit on a resident entry moves it to the MRU end of T2. */
void
ArcHit(ArcPartition *part, ArcEntry *e)
{
	Assert(!ArcListIsGhost(e->list));
	list_unlink(part, e);
	list_push_mru(part, e, ARC_T2);
}

/* Remove an entry (resident or ghost) without leaving a ghost. */
void
ArcRemove(ArcPartition *part, HTAB *hash, ArcEntry *e)
{
	list_unlink(part, e);
	forget_entry(part, hash, e);
}

/*
 * Largest key plus value a partition can always make room for: half its
 * arena, less what a resident key may cost, since after evicting everything
 * else (and every ghost giving up its key bytes) the key chunk of the entry
 * being stored can still split the free space in two.
 */
Size
ArcMaxItemSize(ArcPartition *part)
{
	Size		reserve = 2 * (TWOCACHE_MAX_KEY_LEN + ArenaChunkOverhead());

	return part->arena.size / 2 > reserve ? part->arena.size / 2 - reserve : 0;
}

/*
 * Can the partition always make room for an entry whose key takes key_len
 * bytes and whose value chunk takes chunk_len: the value and its encoded
 * tags, which are stored together?  Each of the two chunks has its header.
 * The arena's size never changes, so no lock is needed.
 */
bool
ArcItemFits(ArcPartition *part, Size key_len, Size chunk_len)
{
	return key_len + chunk_len + 2 * ArenaChunkOverhead() <= ArcMaxItemSize(part);
}

/*
 * Store a value (or a not-found placeholder) under key: the ARC request for
 * a key whose value has just been fetched or set.  A resident key is updated
 * and counts as a hit; a ghost is brought back into T2 after adapting p; a
 * new key goes through case IV and enters T1.  *evicted is increased by the
 * number of resident entries demoted or dropped.
 *
 * ARC_TOO_LARGE leaves the key without a resident entry (a ghost of it may
 * stay): a write that did not fit drops the key's old value, since the
 * caller may have written the new value to Redis already, and the old one
 * must not be served here meanwhile.
 */
ArcStoreResult
ArcStore(ArcPartition *part, HTAB *hash, const ArcKey *key,
		 const char *value, uint32 value_len, bool negative, int encoding,
		 const ArcTags *tags, TimestampTz expires_at, uint64 *evicted)
{
	ArcEntry   *e;
	char	   *vcopy = NULL;
	uint32		tlen = tags != NULL ? tags->len : 0;
	Size		vsize = (negative ? 0 : value_len) + tlen;
	int			c = part->capacity;
	bool		found;

	Assert(key->len > 0);
	e = ArcFind(hash, key);
	if (!ArcItemFits(part, key->len, vsize))
	{
		if (e != NULL && !ArcListIsGhost(e->list))
			ArcRemove(part, hash, e);
		return ARC_TOO_LARGE;
	}

	if (e != NULL && !ArcListIsGhost(e->list))
	{
		/* Case I on a write: replace the value, move to MRU of T2. */
		list_unlink(part, e);
		free_value(part, e);
		if (vsize > 0)
		{
			vcopy = alloc_evicting(part, vsize, false, evicted);
			if (vcopy == NULL)
			{
				forget_entry(part, hash, e);
				return ARC_TOO_LARGE;
			}
		}
		list_push_mru(part, e, ARC_T2);
	}
	else if (e != NULL)
	{
		/* Cases II and III: a ghost hit adapts p, then REPLACE. */
		bool		in_b2 = (e->list == ARC_B2);
		int			b1 = part->len[ARC_B1];
		int			b2 = part->len[ARC_B2];

		if (!in_b2)
			part->p = Min(c, part->p + Max(1, b2 / b1));
		else
			part->p = Max(0, part->p - Max(1, b1 / b2));
		if (part->len[ARC_T1] + part->len[ARC_T2] >= c)
			arc_replace(part, in_b2, evicted);
		list_unlink(part, e);
		if (key_is_print(&e->key))
		{
			/* it gave its key bytes up: a resident needs them back */
			char	   *kcopy = alloc_evicting(part, key->len, in_b2, evicted);

			if (kcopy == NULL)
			{
				forget_entry(part, hash, e);
				return ARC_TOO_LARGE;
			}
			memcpy(kcopy, key->data, key->len);
			e->key.data = kcopy;
			e->key.len = key->len;
		}
		if (vsize > 0)
		{
			vcopy = alloc_evicting(part, vsize, in_b2, evicted);
			if (vcopy == NULL)
			{
				forget_entry(part, hash, e);
				return ARC_TOO_LARGE;
			}
		}
		list_push_mru(part, e, ARC_T2);
	}
	else
	{
		/* Case IV: not in the directory. */
		int			l1 = part->len[ARC_T1] + part->len[ARC_B1];
		int			total = l1 + part->len[ARC_T2] + part->len[ARC_B2];
		char	   *kcopy;

		if (l1 >= c)
		{
			if (part->len[ARC_T1] < c)
			{
				drop_lru(part, hash, ARC_B1);
				if (part->len[ARC_T1] + part->len[ARC_T2] >= c)
					arc_replace(part, false, evicted);
			}
			else
			{
				drop_lru(part, hash, ARC_T1);
				(*evicted)++;
			}
		}
		else if (total >= c)
		{
			if (total >= 2 * c)
				drop_lru(part, hash, part->len[ARC_B2] > 0 ? ARC_B2 : ARC_B1);
			if (part->len[ARC_T1] + part->len[ARC_T2] >= c)
				arc_replace(part, false, evicted);
		}

		kcopy = alloc_evicting(part, key->len, false, evicted);
		if (kcopy == NULL)
			return ARC_TOO_LARGE;
		if (vsize > 0)
		{
			vcopy = alloc_evicting(part, vsize, false, evicted);
			if (vcopy == NULL)
			{
				ArenaFree(&part->arena, kcopy);
				return ARC_TOO_LARGE;
			}
		}
		memcpy(kcopy, key->data, key->len);

		e = (ArcEntry *) hash_search_with_hash_value(hash, key, key->hash,
													 HASH_ENTER_NULL, &found);
		if (e == NULL)
		{
			/* directory full: cannot happen while the ARC bounds hold */
			if (vcopy)
				ArenaFree(&part->arena, vcopy);
			ArenaFree(&part->arena, kcopy);
			return ARC_TOO_LARGE;
		}
		Assert(!found);
		e->key.data = kcopy;
		e->value = NULL;
		e->value_len = 0;
		e->tags_len = 0;
		list_push_mru(part, e, ARC_T1);
	}

	if (vsize > 0)
	{
		if (!negative)
			memcpy(vcopy, value, value_len);
		if (tlen > 0)
			memcpy(vcopy + (negative ? 0 : value_len), tags->data, tlen);
	}
	e->value = vcopy;
	e->value_len = negative ? 0 : value_len;
	e->encoding = (uint8) encoding;
	e->tags_len = tlen;
	e->negative = negative;
	e->expires_at = expires_at;
	return ARC_STORED;
}

/*
 * Drop every entry, residents and ghosts, and reset p.  Returns how many
 * resident entries were dropped.
 */
uint64
ArcClear(ArcPartition *part, HTAB *hash)
{
	uint64		dropped = part->len[ARC_T1] + part->len[ARC_T2];
	int			i;

	for (i = 0; i < ARC_NLISTS; i++)
	{
		while (part->len[i] > 0)
			drop_lru(part, hash, (ArcList) i);
	}
	part->p = 0;
	return dropped;
}
