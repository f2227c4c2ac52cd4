/*-------------------------------------------------------------------------
 *
 * redis_slots.c
 *	  Redis Cluster key slots: CRC16 of a key or of its hash tag, and for
 *	  each slot a short string that hashes to it.
 *
 * A key's slot is CRC16 (XMODEM) of the key modulo 16384, or of its hash
 * tag: the bytes between the first '{' and the first '}' after it, when
 * there is at least one ("{}" and a '{' without '}' do not make a tag: the
 * whole key is hashed), as Redis's cluster specification says.  Every
 * deployment uses slots, a single Redis too: a key's fill fence is its
 * slot's, named with the slot's string so that the key and its fence share
 * a slot in a cluster (l2.c).  Nothing here talks to Redis, allocates
 * (beyond a static table built once per process, in about half a
 * millisecond) or raises an error, so commit callbacks may use it.  No
 * shared state, so no locking.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "redis.h"

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0 */
static const uint16 crc16_table[256] = {
	0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
	0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
	0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
	0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
	0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
	0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
	0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
	0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
	0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
	0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
	0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
	0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
	0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
	0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
	0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
	0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
	0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
	0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
	0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
	0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
	0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
	0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
	0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
	0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
	0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
	0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
	0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
	0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
	0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
	0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
	0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
	0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

/* CRC16 (XMODEM) of buf, as the cluster spec hashes keys. */
uint16
TwoCacheClusterCrc16(const char *buf, size_t len)
{
	uint16		crc = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		crc = (uint16) (crc << 8) ^
			crc16_table[((crc >> 8) ^ (unsigned char) buf[i]) & 0xff];
	return crc;
}

/* The slot of a key: of its hash tag, if it has one (see the header). */
int
TwoCacheClusterKeySlot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);
	const char *close;

	if (open != NULL)
	{
		size_t		rest = len - (open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1)
			return TwoCacheClusterCrc16(open + 1, close - open - 1) &
				(TC_CLUSTER_SLOTS - 1);
	}
	return TwoCacheClusterCrc16(key, len) & (TC_CLUSTER_SLOTS - 1);
}

/*
 * For each slot, a short string that hashes to it, so that "{<tag>}" in a
 * key puts the key in that slot (the fill fences of l2.c).  The strings are
 * part of the Redis key layout, shared by every server and every version:
 * for each slot, the first string of 1 to 3 characters of TAG_ALPHABET, in
 * the order of length and then of the alphabet (first character most
 * significant), whose CRC16 modulo 16384 is the slot.  Strings of up to 3
 * alphanumerics cover every slot (checked when the table is built).
 */
#define TAG_ALPHABET	"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define TAG_MAX_LEN		3

static char slot_tags[TC_CLUSTER_SLOTS][TAG_MAX_LEN + 1];
static bool slot_tags_built = false;

static void
build_slot_tags(void)
{
	const int	nalpha = sizeof(TAG_ALPHABET) - 1;
	int			found = 0;
	int			len;

	memset(slot_tags, 0, sizeof(slot_tags));
	for (len = 1; len <= TAG_MAX_LEN && found < TC_CLUSTER_SLOTS; len++)
	{
		int			total = 1;
		int			n;
		int			i;

		for (i = 0; i < len; i++)
			total *= nalpha;
		for (n = 0; n < total && found < TC_CLUSTER_SLOTS; n++)
		{
			char		s[TAG_MAX_LEN + 1];
			int			rest = n;
			int			slot;

			for (i = len - 1; i >= 0; i--)
			{
				s[i] = TAG_ALPHABET[rest % nalpha];
				rest /= nalpha;
			}
			s[len] = '\0';
			slot = TwoCacheClusterCrc16(s, len) & (TC_CLUSTER_SLOTS - 1);
			if (slot_tags[slot][0] == '\0')
			{
				memcpy(slot_tags[slot], s, len + 1);
				found++;
			}
		}
	}
	/* 62^3 strings cover every slot: this never fails, so never raises */
	Assert(found == TC_CLUSTER_SLOTS);
	slot_tags_built = true;
}

/* A short string whose slot is slot (see build_slot_tags). */
const char *
TwoCacheClusterSlotTag(int slot)
{
	Assert(slot >= 0 && slot < TC_CLUSTER_SLOTS);
	if (!slot_tags_built)
		build_slot_tags();
	return slot_tags[slot];
}
