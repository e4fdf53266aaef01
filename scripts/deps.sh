#!/usr/bin/env bash
# scripts/deps.sh - install what building and testing ration needs (Debian 12).
# Runs apt-get only as root and only when something is missing; SKIP_APT=1
# skips it. Sourced by run-main-job.sh and test.sh; safe to run alone.
set -euo pipefail
RATION_PKGS=(gcc clang libclang-rt-14-dev make meson ninja-build pkg-config check
	libjemalloc-dev python3 clang-tidy clang-format cppcheck redis-server libhiredis-dev parallel
	libzstd-dev zstd)
missing=()
for p in "${RATION_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	:
elif [ "${SKIP_APT:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
	echo "deps: missing ${missing[*]} (not root or SKIP_APT=1: not installing)" >&2
else
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
