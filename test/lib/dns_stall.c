/*
 * dns_stall.c: an LD_PRELOAD shim that makes host name lookups hang, for
 * the test of bounded resolution (test/t/050_redis_dns.pl).
 *
 * Names ending in ".stall.invalid" do not resolve while the file named by
 * $TWOCACHE_DNS_STALL exists, as with a DNS server that does not answer:
 * getaddrinfo blocks, and a getaddrinfo_a request stays in progress and
 * cannot be cancelled (a resolver thread stuck in its read).  Once the file
 * is removed they resolve to 127.0.0.1.  Every other name goes to the C
 * library.  Test code only; not part of the extension.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUFFIX ".stall.invalid"
#define MAX_REQ 64

static struct gaicb *requests[MAX_REQ];

static int
stalled_name(const char *name)
{
	size_t		n = name ? strlen(name) : 0;
	size_t		m = strlen(SUFFIX);

	return n > m && strcmp(name + n - m, SUFFIX) == 0;
}

static int
stalling(void)
{
	const char *f = getenv("TWOCACHE_DNS_STALL");

	return f != NULL && access(f, F_OK) == 0;
}

static int
real_getaddrinfo(const char *node, const char *service,
				 const struct addrinfo *hints, struct addrinfo **res)
{
	static int (*fn) (const char *, const char *, const struct addrinfo *,
					  struct addrinfo **);

	if (fn == NULL)
		fn = dlsym(RTLD_NEXT, "getaddrinfo");
	return fn(node, service, hints, res);
}

int
getaddrinfo(const char *node, const char *service,
			const struct addrinfo *hints, struct addrinfo **res)
{
	if (stalled_name(node))
	{
		struct addrinfo h;

		if (hints != NULL && (hints->ai_flags & AI_NUMERICHOST))
			return EAI_NONAME;
		while (stalling())
			usleep(10000);
		h = hints ? *hints : (struct addrinfo) {0};
		h.ai_flags &= ~AI_ADDRCONFIG;
		return real_getaddrinfo("127.0.0.1", service, &h, res);
	}
	return real_getaddrinfo(node, service, hints, res);
}

static int
tracked(struct gaicb *req)
{
	for (int i = 0; i < MAX_REQ; i++)
		if (requests[i] == req)
			return i;
	return -1;
}

int
getaddrinfo_a(int mode, struct gaicb *list[], int nitems, struct sigevent *sevp)
{
	static int (*fn) (int, struct gaicb **, int, struct sigevent *);

	if (fn == NULL)
		fn = dlsym(RTLD_NEXT, "getaddrinfo_a");
	if (nitems == 1 && mode == GAI_NOWAIT && sevp == NULL &&
		stalled_name(list[0]->ar_name))
	{
		for (int i = 0; i < MAX_REQ; i++)
			if (requests[i] == NULL)
			{
				requests[i] = list[0];
				list[0]->ar_result = NULL;
				return 0;
			}
		return EAI_AGAIN;
	}
	return fn(mode, list, nitems, sevp);
}

int
gai_error(struct gaicb *req)
{
	static int (*fn) (struct gaicb *);
	int			i = tracked(req);

	if (fn == NULL)
		fn = dlsym(RTLD_NEXT, "gai_error");
	if (i < 0)
		return fn(req);
	if (stalling())
		return EAI_INPROGRESS;
	requests[i] = NULL;
	{
		struct addrinfo h = *req->ar_request;

		h.ai_flags &= ~AI_ADDRCONFIG;
		return real_getaddrinfo("127.0.0.1", req->ar_service, &h, &req->ar_result);
	}
}

int
gai_cancel(struct gaicb *req)
{
	static int (*fn) (struct gaicb *);

	if (fn == NULL)
		fn = dlsym(RTLD_NEXT, "gai_cancel");
	if (tracked(req) >= 0)
		return stalling() ? EAI_NOTCANCELED : EAI_ALLDONE;
	return fn(req);
}
