#!/usr/bin/env bash
# Install, from Debian's packages, whatever twocache needs to build, test and
# demo that is not there yet.  Uses sudo when not run as root.
set -euo pipefail

packages=(
	build-essential
	postgresql-15
	postgresql-server-dev-15
	libhiredis-dev
	libssl-dev
	openssl
	redis-server
	redis-sentinel
	redis-tools
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	memcached
	postgresql-15-pgmemcache
	gnuplot-nox
	clang
	libclang-rt-14-dev
	valgrind
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	sudo="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
# Keep package scripts from starting system services (redis-server,
# the packaged PostgreSQL cluster): tests start their own.
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod 755 "$policy"
	added_policy=1
fi
status=0
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/twocache-deps.log 2>&1 || status=$?
[ -n "$added_policy" ] && $sudo rm -f "$policy"
if [ $status -ne 0 ]; then
	tail -20 /tmp/twocache-deps.log >&2
	exit $status
fi
echo "deps: done"
