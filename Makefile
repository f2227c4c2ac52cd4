# twocache: PGXS build, dependency set-up, tests and demo.
#
#   make demo      start a throwaway server and show twocache at work
#   make test      build, install and run every test suite (short forms)
#   make stress    the consistency checker, long form
#   make fuzz      the fuzz targets, long form
#   make valgrind  the pg_regress suite under valgrind memcheck
#   make bench     the benchmarks
#
# Both install missing Debian packages first (make deps).

EXTENSION = twocache
MODULE_big = twocache
OBJS = \
	src/twocache.o \
	src/shmem.o \
	src/store.o \
	src/arc.o \
	src/flight.o \
	src/fence.o \
	src/fetch.o \
	src/lease.o \
	src/cache.o \
	src/batch.o \
	src/tags.o \
	src/redis.o \
	src/redis_url.o \
	src/redis_topology.o \
	src/redis_slots.o \
	src/redis_cluster.o \
	src/message.o \
	src/l2.o \
	src/inval.o \
	src/worker.o \
	src/funcs.o

DATA = sql/twocache--1.0.sql sql/twocache--1.1.sql sql/twocache--1.0--1.1.sql sql/twocache--1.1--1.2.sql \
	sql/twocache--1.2.sql sql/twocache--1.2--1.3.sql sql/twocache--1.3.sql \
	sql/twocache--1.3--1.4.sql sql/twocache--1.4.sql
PGFILEDESC = "twocache - two-layer cache for PostgreSQL"

# pg_regress topics, for "make installcheck" against a server that preloads
# twocache; "make test" runs them on temporary servers of its own.
REGRESS = api ttl negative errors settings stats privileges bad_input tags auto_tag limits role_scope output_settings sizes script_security upgrade batch
REGRESS_OPTS = --load-extension=twocache --temp-config=$(srcdir)/test/twocache.conf

PG_CONFIG ?= pg_config
# Server headers are included as system headers, so -Wextra judges only our
# own code (PostgreSQL's inline functions have unused parameters).
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS = -Wall -Wextra
SHLIB_LINK = -lhiredis -lssl -lcrypto

EXTRA_CLEAN = test/results test/output tmp_check results regression.diffs regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
$(OBJS): src/twocache.h src/arc.h src/flight.h src/redis.h src/l2.h src/message.h src/inval.h src/fence.h src/lease.h src/cache.h
else
# No server headers yet (fresh machine): "make deps" installs them, and the
# targets below re-run make once they are there.
all install:
	@echo "PostgreSQL server headers not found: run 'make deps' first." >&2
	@exit 1
endif

.PHONY: deps test demo install-for-test

# Install whatever is missing from Debian's packages (sudo when not root).
deps:
	@$(CURDIR)/test/deps.sh

# Install the built extension into the server's directories (sudo when not root).
install-for-test:
	@$(MAKE) --no-print-directory all
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory install >/dev/null; \
	else sudo $(MAKE) --no-print-directory install PG_CONFIG=$(PG_CONFIG) >/dev/null; fi

# Build, install, and run every suite on temporary servers.
test: deps
	@$(MAKE) --no-print-directory install-for-test
	@PG_CONFIG=$(PG_CONFIG) $(CURDIR)/test/run.sh

# A throwaway server showing twocache at work; leaves nothing running.
demo: deps
	@$(MAKE) --no-print-directory install-for-test
	@PG_CONFIG=$(PG_CONFIG) $(CURDIR)/bench/demo.sh

# Everything side by side on throwaway servers (its own Redis and memcached);
# writes bench/results.md and results.png, then bench/hotkeys.sh writes
# bench/hotkeys.md and hotkeys.png.  Leaves nothing running.
.PHONY: bench
bench: deps
	@$(MAKE) --no-print-directory install-for-test
	@PG_CONFIG=$(PG_CONFIG) $(CURDIR)/bench/bench.sh

# Long forms of the reliability suites (make test runs their short forms).
# STRESS_SECONDS, FUZZ_SECONDS tune their length.
.PHONY: stress fuzz valgrind
stress: deps
	@$(MAKE) --no-print-directory install-for-test
	@PG_CONFIG=$(PG_CONFIG) TWOCACHE_STRESS_SECONDS=$${STRESS_SECONDS:-600} \
		TAP_TESTS=test/t/040_consistency.pl $(CURDIR)/test/run.sh tap

fuzz: deps
	@PG_CONFIG=$(PG_CONFIG) $(CURDIR)/fuzz/run.sh --seconds $${FUZZ_SECONDS:-300}

valgrind: deps
	@$(MAKE) --no-print-directory install-for-test
	@PG_CONFIG=$(PG_CONFIG) TWOCACHE_VALGRIND_FULL=1 $(CURDIR)/test/run.sh valgrind
