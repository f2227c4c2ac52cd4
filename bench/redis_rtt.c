/*-------------------------------------------------------------------------
 *
 * redis_rtt.c
 *		The bare Redis round trip that bench.sh compares an L2 hit with.
 *
 * Sends n sequential GETs of one key over one blocking hiredis connection
 * (the same library twocache uses) and prints the mean time of one GET in
 * microseconds.  A few hundred GETs are sent first as a warm-up.
 *
 * Usage: redis_rtt host port key n
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <hiredis/hiredis.h>

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One GET; exits on any error, since the figure would be meaningless. */
static void
get_once(redisContext *c, const char *key)
{
	redisReply *r = redisCommand(c, "GET %s", key);

	if (r == NULL)
	{
		fprintf(stderr, "redis_rtt: %s\n", c->errstr);
		exit(1);
	}
	if (r->type == REDIS_REPLY_ERROR)
	{
		fprintf(stderr, "redis_rtt: %s\n", r->str);
		exit(1);
	}
	freeReplyObject(r);
}

int
main(int argc, char **argv)
{
	redisContext *c;
	const char *key;
	long		n,
				i;
	double		t0;

	if (argc != 5 || (n = atol(argv[4])) <= 0)
	{
		fprintf(stderr, "usage: redis_rtt host port key n\n");
		return 2;
	}
	key = argv[3];
	c = redisConnect(argv[1], atoi(argv[2]));
	if (c == NULL || c->err)
	{
		fprintf(stderr, "redis_rtt: could not connect: %s\n",
				c ? c->errstr : "out of memory");
		return 1;
	}
	for (i = 0; i < 500; i++)
		get_once(c, key);
	t0 = now_us();
	for (i = 0; i < n; i++)
		get_once(c, key);
	printf("%.3f\n", (now_us() - t0) / n);
	redisFree(c);
	return 0;
}
