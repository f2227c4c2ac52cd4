/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Variable-size storage for keys and values in a partition's arena.
 *
 * Each partition owns one contiguous slice of twocache.memory.  Chunks carry
 * a boundary-tag header (their size and the size of the chunk before them),
 * so a freed chunk merges with free neighbours at once; free chunks sit in
 * segregated lists by power-of-two size class.  Allocation takes the first
 * chunk that fits from the smallest class that may hold one, and splits off
 * the rest.  The arena never grows: when an allocation fails, the caller
 * (arc.c) evicts and tries again.
 *
 * Locking: an arena belongs to one partition; callers hold that partition's
 * LWLock exclusively.  Nothing here allocates backend memory or raises
 * errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_bitutils.h"

#include "arc.h"

#define CHUNK_ALIGN		16
#define CHUNK_USED		((Size) 1)
#define ALIGN_CHUNK(n)	TYPEALIGN(CHUNK_ALIGN, (n))

typedef struct ChunkHdr
{
	Size		size;			/* whole chunk, header included; low bit:
								 * in use */
	Size		prev_size;		/* size of the chunk before; 0 for the first */
} ChunkHdr;

#define HDR_SIZE		ALIGN_CHUNK(sizeof(ChunkHdr))
#define MIN_CHUNK		ALIGN_CHUNK(HDR_SIZE + sizeof(dlist_node))

#define chunk_size(c)		((c)->size & ~CHUNK_USED)
#define chunk_used(c)		(((c)->size & CHUNK_USED) != 0)
#define chunk_next(c)		((ChunkHdr *) ((char *) (c) + chunk_size(c)))
#define chunk_prev(c)		((ChunkHdr *) ((char *) (c) - (c)->prev_size))
#define chunk_node(c)		((dlist_node *) ((char *) (c) + HDR_SIZE))
#define node_chunk(n)		((ChunkHdr *) ((char *) (n) - HDR_SIZE))

static inline int
size_bin(Size size)
{
	int			bin = pg_leftmost_one_pos64((uint64) size);

	return Min(bin, ARENA_NBINS - 1);
}

static void
bin_insert(Arena *arena, ChunkHdr *c)
{
	dlist_push_head(&arena->bins[size_bin(chunk_size(c))], chunk_node(c));
}

static void
bin_remove(ChunkHdr *c)
{
	dlist_delete(chunk_node(c));
}

/*
 * Set up an empty arena over [base, base + size).  The last header is a
 * sentinel marked in use, so merging never runs off the end.
 */
void
ArenaInit(Arena *arena, char *base, Size size)
{
	char	   *start = (char *) TYPEALIGN(CHUNK_ALIGN, base);
	Size		avail = TYPEALIGN_DOWN(CHUNK_ALIGN, size - (start - base));
	ChunkHdr   *first = (ChunkHdr *) start;
	ChunkHdr   *sentinel;
	int			i;

	Assert(avail >= MIN_CHUNK + HDR_SIZE);
	arena->base = start;
	arena->size = avail;
	arena->used = 0;
	for (i = 0; i < ARENA_NBINS; i++)
		dlist_init(&arena->bins[i]);

	first->size = avail - HDR_SIZE;
	first->prev_size = 0;
	sentinel = chunk_next(first);
	sentinel->size = CHUNK_USED;
	sentinel->prev_size = chunk_size(first);
	bin_insert(arena, first);
}

/* Bytes a chunk needs beyond its payload, at most. */
Size
ArenaChunkOverhead(void)
{
	return HDR_SIZE + CHUNK_ALIGN;
}

/*
 * Allocate size bytes, or return NULL when no free chunk is large enough.
 */
char *
ArenaAlloc(Arena *arena, Size size)
{
	Size		need = Max(ALIGN_CHUNK(size + HDR_SIZE), MIN_CHUNK);
	ChunkHdr   *found = NULL;
	int			bin;

	for (bin = size_bin(need); bin < ARENA_NBINS && found == NULL; bin++)
	{
		dlist_iter	iter;

		dlist_foreach(iter, &arena->bins[bin])
		{
			ChunkHdr   *c = node_chunk(iter.cur);

			if (chunk_size(c) >= need)
			{
				found = c;
				break;
			}
		}
	}
	if (found == NULL)
		return NULL;

	bin_remove(found);
	if (chunk_size(found) - need >= MIN_CHUNK)
	{
		ChunkHdr   *rest = (ChunkHdr *) ((char *) found + need);

		rest->size = chunk_size(found) - need;
		rest->prev_size = need;
		chunk_next(rest)->prev_size = chunk_size(rest);
		found->size = need;
		bin_insert(arena, rest);
	}
	found->size |= CHUNK_USED;
	arena->used += chunk_size(found);
	return (char *) found + HDR_SIZE;
}

/*
 * Return a chunk to the arena, merging it with free neighbours.
 */
void
ArenaFree(Arena *arena, char *ptr)
{
	ChunkHdr   *c = (ChunkHdr *) (ptr - HDR_SIZE);
	ChunkHdr   *next;

	Assert(chunk_used(c));
	c->size &= ~CHUNK_USED;
	arena->used -= chunk_size(c);

	next = chunk_next(c);
	if (!chunk_used(next))
	{
		bin_remove(next);
		c->size += chunk_size(next);
	}
	if (c->prev_size != 0)
	{
		ChunkHdr   *prev = chunk_prev(c);

		if (!chunk_used(prev))
		{
			bin_remove(prev);
			prev->size += chunk_size(c);
			c = prev;
		}
	}
	chunk_next(c)->prev_size = chunk_size(c);
	bin_insert(arena, c);
}
