#!/usr/bin/env bash
# Run twocache's test suites against temporary servers that this script
# starts and stops itself, with twocache preloaded:
#
#   regress    pg_regress topics (sql/, expected/)
#   isolation  isolation specs (test/specs/, test/expected/)
#   pgtap      pgTAP files (test/pgtap/*.sql) through pg_prove
#   tap        TAP tests (test/t/*.pl) with PostgreSQL::Test::Cluster
#   bench      bench/bench.sh --smoke: every benchmark section, tiny sizes,
#              no timing asserted
#   fuzz       fuzz/run.sh --short: replay the corpus, then a few seconds of
#              libFuzzer on each target
#   valgrind   test/valgrind.sh --short: pg_regress topics under memcheck
#              (all of them with TWOCACHE_VALGRIND_FULL=1: make valgrind)
#
# Usage: test/run.sh [suite ...]      (default: all seven, in that order)
# TAP_TESTS="test/t/010_x.pl ..." limits the TAP suite to those files;
# TWOCACHE_STRESS_SECONDS makes the consistency checker run that long.
#
# initdb and postgres refuse to run as root: when called as root, the tree is
# copied to a temporary directory owned by an unprivileged account (postgres,
# or $TWOCACHE_TEST_USER) and the suites run there as that account.  The
# extension itself must already be installed (make test does that).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}

if [ "$(id -u)" = 0 ] && [ -z "${TWOCACHE_TEST_CHILD:-}" ]; then
	user=${TWOCACHE_TEST_USER:-postgres}
	work=$(mktemp -d /tmp/twocache-test.XXXXXX)
	tar -C "$root" --exclude=./.git --exclude=./test/output --exclude=./fuzz/build -cf - . | tar -C "$work" -xf -
	chown -R "$user" "$work"
	chmod 755 "$work"
	echo "running tests as $user in $work"
	runuser -u "$user" -- env TWOCACHE_TEST_CHILD=1 PG_CONFIG="$PG_CONFIG" \
		${TAP_TESTS:+TAP_TESTS="$TAP_TESTS"} \
		${TWOCACHE_STRESS_SECONDS:+TWOCACHE_STRESS_SECONDS="$TWOCACHE_STRESS_SECONDS"} \
		${TWOCACHE_VALGRIND_FULL:+TWOCACHE_VALGRIND_FULL="$TWOCACHE_VALGRIND_FULL"} \
		"$work/test/run.sh" "$@"
	rc=$?
	if [ $rc -eq 0 ]; then
		rm -rf "$work"
	else
		echo "test output kept in $work/test/output"
	fi
	exit $rc
fi

# One directory of port locks for every run on this machine, so that runs
# in parallel (other checkouts) never pick the same free port.
export PG_TEST_PORT_DIR=${PG_TEST_PORT_DIR:-/tmp/twocache-test-ports}

bindir=$("$PG_CONFIG" --bindir)
pgxs=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)
pg_regress="$pgxs/src/test/regress/pg_regress"
pg_isolation_regress="$pgxs/src/test/isolation/pg_isolation_regress"
out="$root/test/output"
conf="$root/test/twocache.conf"
export PATH="$bindir:$PATH"

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(regress isolation pgtap tap bench fuzz valgrind)

total_pass=0
total_fail=0
summary=()

# Count "... ok" / "... FAILED" lines of pg_regress-style output.
count_regress()
{
	local log=$1 name=$2 pass fail
	pass=$(grep -cE '\.\.\. ok|^ok [0-9]+ ' "$log")
	fail=$(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ ' "$log")
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail))
	summary+=("$(printf '%-10s %3d passed, %d failed' "$name" "$pass" "$fail")")
}

# Count test files that passed or failed in prove output.
count_prove()
{
	local log=$1 name=$2 rc=$3 total pass fail
	total=$(grep -cE '^[^ ]+\.(pl|sql) \.\.' "$log")
	pass=$(grep -cE '^[^ ]+\.(pl|sql) \.+ (ok|skipped)' "$log")
	fail=$((total - pass))
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
	fi
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail))
	summary+=("$(printf '%-10s %3d passed, %d failed' "$name" "$pass" "$fail")")
}

# Run a pg_regress-style driver on a temporary instance of its own:
# regress_suite NAME DRIVER INPUTDIR DBNAME TESTS...
regress_suite()
{
	local name=$1 driver=$2 inputdir=$3 dbname=$4 dir="$out/$1" rc
	shift 4
	rm -rf "$dir"
	mkdir -p "$dir"
	echo "== $name: $*"
	(cd "$root" && "$driver" --temp-instance="$dir/instance" \
		--temp-config="$conf" --bindir="$bindir" --inputdir="$inputdir" \
		--outputdir="$dir" --dbname="$dbname" \
		--load-extension=twocache "$@") >"$dir/run.log" 2>&1
	rc=$?
	cat "$dir/run.log"
	count_regress "$dir/run.log" "$name"
	if [ $rc -ne 0 ]; then
		[ -f "$dir/regression.diffs" ] && head -200 "$dir/regression.diffs"
		# a failed run with no failed test (a diff that could not run, an
		# aborted suite) is a failure too
		[ "$(grep -cE '\.\.\. (FAILED|failed)|^not ok ' "$dir/run.log")" -eq 0 ] && total_fail=$((total_fail + 1))
	fi
}

run_regress()
{
	# shellcheck disable=SC2046
	regress_suite regress "$pg_regress" "$root" contrib_regression \
		$(sed -n 's/^REGRESS *= *//p' "$root/Makefile")
}

run_isolation()
{
	# shellcheck disable=SC2046
	regress_suite isolation "$pg_isolation_regress" "$root/test" isolation_regression \
		$(cd "$root/test/specs" && ls -- *.spec 2>/dev/null | sed 's/\.spec$//' | sort)
}

run_pgtap()
{
	local dir="$out/pgtap" sock pid rc
	rm -rf "$dir"
	mkdir -p "$dir"
	sock=$(mktemp -d /tmp/twocache-pgtap.XXXXXX)
	echo "== pgTAP"
	initdb -D "$dir/data" -A trust -N >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; total_fail=$((total_fail + 1)); return; }
	cat "$conf" >>"$dir/data/postgresql.conf"
	printf "listen_addresses = ''\nunix_socket_directories = '%s'\nport = 5432\n" "$sock" >>"$dir/data/postgresql.conf"
	if ! pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null; then
		cat "$dir/server.log"
		total_fail=$((total_fail + 1))
		return
	fi
	psql -X -q -h "$sock" -d postgres -v ON_ERROR_STOP=1 \
		-c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION twocache' >"$dir/setup.log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		(cd "$root" && pg_prove -h "$sock" -d postgres test/pgtap/*.sql) >"$dir/run.log" 2>&1
		rc=$?
	else
		cp "$dir/setup.log" "$dir/run.log"
	fi
	pg_ctl -D "$dir/data" -m fast -w stop >/dev/null
	rm -rf "$sock"
	cat "$dir/run.log"
	count_prove "$dir/run.log" pgtap $rc
}

run_tap()
{
	local dir="$out/tap" rc tests
	rm -rf "$dir"
	mkdir -p "$dir"
	tests=${TAP_TESTS:-$(cd "$root" && ls test/t/*.pl)}
	echo "== TAP: $(echo $tests)"
	(cd "$root" && TESTDIR="$dir" PG_REGRESS="$pg_regress" TEMP_CONFIG="$conf" \
		PERL5LIB="$pgxs/src/test/perl:$root/test/perl${PERL5LIB:+:$PERL5LIB}" \
		prove $tests) >"$dir/run.log" 2>&1
	rc=$?
	cat "$dir/run.log"
	count_prove "$dir/run.log" tap $rc
	if [ $rc -ne 0 ]; then
		for f in "$dir"/tmp_check/log/regress_log_*; do
			[ -f "$f" ] || continue
			echo "---- tail of $f"
			tail -40 "$f"
		done
	fi
}

# The benchmark's smoke run: 1 passed or 1 failed, by its exit status.
run_bench()
{
	local dir="$out/bench" rc pass=0 fail=0
	rm -rf "$dir"
	mkdir -p "$dir"
	echo "== bench (smoke)"
	"$root/bench/bench.sh" --smoke --out "$dir" >"$dir/run.log" 2>&1
	rc=$?
	cat "$dir/run.log"
	if [ $rc -eq 0 ]; then pass=1; else fail=1; fi
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail))
	summary+=("$(printf '%-10s %3d passed, %d failed' bench "$pass" "$fail")")
}

# A script that exits 0 or not: 1 passed or 1 failed.
# script_suite NAME COMMAND...
script_suite()
{
	local name=$1 dir="$out/$1" rc pass=0 fail=0
	shift
	rm -rf "$dir"
	mkdir -p "$dir"
	echo "== $name: $*"
	"$@" --out "$dir" >"$dir/run.log" 2>&1
	rc=$?
	cat "$dir/run.log"
	if [ $rc -eq 0 ]; then pass=1; else fail=1; fi
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail))
	summary+=("$(printf '%-10s %3d passed, %d failed' "$name" "$pass" "$fail")")
}

for s in "${suites[@]}"; do
	case $s in
		regress) run_regress ;;
		isolation) run_isolation ;;
		pgtap) run_pgtap ;;
		tap) run_tap ;;
		bench) run_bench ;;
		fuzz) script_suite fuzz "$root/fuzz/run.sh" --short ;;
		valgrind)
			if [ -n "${TWOCACHE_VALGRIND_FULL:-}" ]; then
				script_suite valgrind "$root/test/valgrind.sh"
			else
				script_suite valgrind "$root/test/valgrind.sh" --short
			fi ;;
		*) echo "unknown suite: $s" >&2; exit 2 ;;
	esac
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "twocache: $total_pass passed, $total_fail failed"
[ $total_fail -eq 0 ]
