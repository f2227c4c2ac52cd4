#!/usr/bin/env bash
# Build and run twocache's libFuzzer targets (clang, ASan and UBSan):
#
#   message   fuzz_message.c: the invalidation message codec (src/message.c),
#             which the worker runs on bytes from the network
#   url       fuzz_url.c: the twocache.redis_url parser (src/redis_url.c)
#
# Usage: fuzz/run.sh [--short | --seconds N] [--out DIR]
#
#   --short      replay each target's corpus, then fuzz each for 5 seconds
#                (test/run.sh runs this)
#   --seconds N  fuzz each target for N seconds (the default, with N = 300;
#                make fuzz), then merge what it found that adds coverage
#                into a working corpus, DIR/corpus/TARGET, kept between runs
#                (fuzz/corpus/ stays as committed)
#   --out DIR    binaries, working corpora, logs and crash reproducers
#                (default fuzz/build)
#
# Every run first regenerates the message seeds (fuzz/corpus/message/seed-*
# and bad-*) with TwoCacheMessageEncode, so they follow the current message
# format; it says so when they changed, and they should then be committed.
# A crash, a failed check or a sanitizer report fails the run, naming the
# reproducer; replay it with DIR/bin/fuzz_TARGET REPRODUCER.
#
# Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev; make deps
# installs them) and pg_config ($PG_CONFIG, or the one on PATH).  Works as
# root and as an ordinary user; writes only to DIR and fuzz/corpus/message.
set -uo pipefail

fuzzdir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzzdir")
PG_CONFIG=${PG_CONFIG:-pg_config}
CC=${FUZZ_CC:-clang}
targets=(message url)

mode=long
seconds=300
out="$fuzzdir/build"
short_seconds=5

usage()
{
	sed -n '8,17s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
		--short) mode=short; shift ;;
		--seconds)
			if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
				usage
			fi
			mode=long; seconds=$2; shift 2 ;;
		--out)
			[ $# -ge 2 ] || usage
			out=$2; shift 2 ;;
		-h|--help) usage ;;
		*) echo "fuzz/run.sh: unknown argument: $1" >&2; usage ;;
	esac
done

mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
bin="$out/bin"
logs="$out/logs"
mkdir -p "$bin" "$logs"

die()
{
	echo "fuzz: $*" >&2
	exit 1
}

# ---- build ----------------------------------------------------------------

command -v "$CC" >/dev/null || die "$CC not found (Debian: apt-get install clang libclang-rt-14-dev, or make deps)"
command -v "$PG_CONFIG" >/dev/null || die "pg_config not found: set PG_CONFIG"
incdir=$("$PG_CONFIG" --includedir-server) || die "$PG_CONFIG --includedir-server failed"

# pg_snprintf and friends (port.h maps snprintf to them) come from libpgport,
# which Debian ships in the package directory; stubs stand in without it.
pgport=""
for d in "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --libdir)"; do
	if [ -f "$d/libpgport.a" ]; then
		pgport="$d/libpgport.a"
		break
	fi
done
cflags=(-g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all
	-DUSE_ASSERT_CHECKING -Wall -Wextra
	-I "$root/src" -isystem "$incdir")
if [ -n "$pgport" ]; then
	libs=("$pgport")
else
	cflags+=(-DFUZZ_STUB_SNPRINTF)
	libs=()
fi

# build OUTPUT SANITIZERS SOURCE...
build()
{
	local output=$1 sanitizers=$2 log="$logs/build-${1##*/}.log"
	shift 2
	if ! "$CC" "${cflags[@]}" -fsanitize="$sanitizers" "$@" "$fuzzdir/pg_stubs.c" \
		"${libs[@]}" -o "$output" >"$log" 2>&1; then
		cat "$log" >&2
		die "could not build $(basename "$output") (log: $log)"
	fi
	[ -s "$log" ] && cat "$log" >&2
	return 0
}

build "$bin/fuzz_message" fuzzer,address,undefined "$fuzzdir/fuzz_message.c" "$root/src/message.c"
build "$bin/fuzz_url" fuzzer,address,undefined "$fuzzdir/fuzz_url.c" "$root/src/redis_url.c"
build "$bin/gen_message_corpus" address,undefined "$fuzzdir/gen_message_corpus.c" "$root/src/message.c"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
	for s in "$(command -v llvm-symbolizer 2>/dev/null)" /usr/lib/llvm-*/bin/llvm-symbolizer; do
		if [ -n "$s" ] && [ -x "$s" ]; then
			export ASAN_SYMBOLIZER_PATH=$s
			break
		fi
	done
fi

# ---- message seeds --------------------------------------------------------

seeds="$out/seeds/message"
rm -rf "$seeds"
mkdir -p "$seeds"
"$bin/gen_message_corpus" "$seeds" >"$logs/gen_message_corpus.log" 2>&1 ||
	{ cat "$logs/gen_message_corpus.log" >&2; die "could not generate the message seeds"; }

# Bring fuzz/corpus/message up to date: generated files are seed-* and bad-*,
# anything else there (a reproducer kept on purpose) is left alone.
msgcorpus="$fuzzdir/corpus/message"
stale_seeds=""
changed=$( (cd "$seeds" && ls) | while read -r f; do
	cmp -s "$seeds/$f" "$msgcorpus/$f" || echo "$f"
done; (cd "$msgcorpus" 2>/dev/null && ls -d seed-* bad-* 2>/dev/null) | while read -r f; do
	[ -e "$seeds/$f" ] || echo "$f"
done)
if [ -n "$changed" ]; then
	if mkdir -p "$msgcorpus" 2>/dev/null && [ -w "$msgcorpus" ]; then
		rm -f "$msgcorpus"/seed-* "$msgcorpus"/bad-*
		cp "$seeds"/* "$msgcorpus"/
		echo "fuzz: regenerated fuzz/corpus/message for the current message format ($(echo "$changed" | wc -l) files changed): commit them"
	else
		echo "fuzz: fuzz/corpus/message is out of date and not writable; using fresh seeds from $seeds"
		stale_seeds=1
	fi
fi

# Set dirs to the committed corpus of target $1 (for messages, plus the
# fresh seeds when fuzz/corpus/message could not be brought up to date).
set_corpus_dirs()
{
	case $1 in
		message) dirs=("$msgcorpus" ${stale_seeds:+"$seeds"}) ;;
		url) dirs=("$fuzzdir/corpus/url") ;;
	esac
}

# ---- running --------------------------------------------------------------

# Options every libFuzzer run shares.  Inputs longer than max_len would be
# cut short, so it exceeds both the largest message and the URL limits.
fuzz_opts=(-max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

status=0

# Report a failed run of target $1, logged in $2: the sanitizer's or check's
# report, and where libFuzzer saved the input.
report_failure()
{
	local t=$1 log=$2 unit d f
	local -a dirs
	status=1
	echo "fuzz_$t: FAILED (log: $log)"
	grep -E -A40 '^==[0-9]+==ERROR|FUZZ_CHECK failed|^TRAP:|runtime error:|ERROR: libFuzzer' "$log" | head -60
	unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
	if [ -n "$unit" ]; then
		echo "fuzz_$t: reproducer: $unit"
		set_corpus_dirs "$t"
		for d in "${dirs[@]}"; do
			for f in "$d"/*; do
				cmp -s "$f" "$unit" && echo "fuzz_$t: (the same bytes as corpus file ${f#"$root"/})"
			done
		done
		echo "fuzz_$t: replay with: $bin/fuzz_$t $unit"
	fi
}

# The last "corp: N/..." count libFuzzer printed in $1.
corpus_count()
{
	sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' "$1" | tail -1
}

# Executed inputs, from -print_final_stats.
runs_count()
{
	sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -1
}

# Run every input of the target's corpus once.
replay()
{
	local t=$1 log="$logs/$1-replay.log" art="$out/artifacts/$1"
	local -a dirs
	set_corpus_dirs "$t"
	mkdir -p "$art"
	if ! "$bin/fuzz_$t" -runs=0 "${fuzz_opts[@]}" -artifact_prefix="$art/" \
		"${dirs[@]}" >"$log" 2>&1; then
		report_failure "$t" "$log"
		return 1
	fi
	return 0
}

# Fuzz the target for $2 seconds; new inputs go to $3.
fuzz()
{
	local t=$1 secs=$2 newdir=$3 log="$logs/$1-fuzz.log" art="$out/artifacts/$1"
	local -a dirs
	set_corpus_dirs "$t"
	mkdir -p "$art" "$newdir"
	[ -d "$out/corpus/$t" ] && dirs+=("$out/corpus/$t")
	if ! "$bin/fuzz_$t" -max_total_time="$secs" "${fuzz_opts[@]}" \
		-artifact_prefix="$art/" "$newdir" "${dirs[@]}" >"$log" 2>&1; then
		report_failure "$t" "$log"
		return 1
	fi
	return 0
}

for t in "${targets[@]}"; do
	if [ "$mode" = short ]; then
		replay "$t" || continue
		scratch="$out/scratch/$t"
		rm -rf "$scratch"
		if fuzz "$t" "$short_seconds" "$scratch"; then
			echo "fuzz_$t: ok: replayed $(runs_count "$logs/$t-replay.log") corpus inputs, then fuzzed ${short_seconds} s: $(runs_count "$logs/$t-fuzz.log") runs, corpus $(corpus_count "$logs/$t-fuzz.log") inputs"
		fi
		rm -rf "$scratch"
	else
		new="$out/new/$t"
		work="$out/corpus/$t"
		rm -rf "$new"
		mkdir -p "$work"
		if fuzz "$t" "$seconds" "$new"; then
			runs=$(runs_count "$logs/$t-fuzz.log")
			before=$(find "$work" -type f | wc -l)
			set_corpus_dirs "$t"
			if ! "$bin/fuzz_$t" -merge=1 "${fuzz_opts[@]}" "$work" "$new" "${dirs[@]}" \
				>"$logs/$t-merge.log" 2>&1; then
				report_failure "$t" "$logs/$t-merge.log"
				continue
			fi
			after=$(find "$work" -type f | wc -l)
			echo "fuzz_$t: ok: fuzzed ${seconds} s: $runs runs; working corpus $after inputs ($((after - before)) new, $work)"
		fi
		rm -rf "$new"
	fi
done

rmdir "$out/new" "$out/scratch" 2>/dev/null

if [ $status -eq 0 ]; then
	echo "fuzz: all targets passed"
else
	echo "fuzz: FAILED"
fi
exit $status
