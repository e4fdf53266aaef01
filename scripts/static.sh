#!/usr/bin/env bash
# scripts/static.sh - static analysis of lib/ (core and backends): clang-tidy (.clang-tidy),
# cppcheck, gcc -fanalyzer. Installs nothing: a missing tool is reported
# and skipped (exit 2 if any was missing and STATIC_STRICT=1). Exit 1 on
# any finding. Needs a configured build dir for clang-tidy's compile
# commands: build-r (made with `meson setup build-r` if absent).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${STATIC_JOBS:-2}
fail=0
missing=0
srcs=$(ls lib/*.c lib/shared/*.c lib/redis/*.c)

echo "=== clang-tidy ==="
if command -v clang-tidy >/dev/null; then
	[ -f build-r/compile_commands.json ] || meson setup build-r >/dev/null
	out=$(printf '%s\n' $srcs | xargs -P "$jobs" -n 1 clang-tidy -p build-r --quiet 2>/dev/null |
		grep -E "^[^ ].*: (warning|error):" || true)
	if [ -n "$out" ]; then
		echo "$out"
		fail=1
	else
		echo "clean ($(echo $srcs | wc -w) files)"
	fi
else
	echo "MISSING: clang-tidy (apt-get install clang-tidy)"
	missing=1
fi

echo "=== cppcheck ==="
if command -v cppcheck >/dev/null; then
	if cppcheck --std=c11 --enable=warning,performance,portability --inline-suppr \
		--error-exitcode=1 -q -D_GNU_SOURCE -DRATION_BUILDING -DRATION_HAVE_JEMALLOC=0 \
		-I include -I lib --suppress=missingIncludeSystem $srcs; then
		echo "clean"
	else
		fail=1
	fi
else
	echo "MISSING: cppcheck (apt-get install cppcheck)"
	missing=1
fi

echo "=== gcc -fanalyzer ==="
if command -v gcc >/dev/null && gcc -fanalyzer -E -x c /dev/null >/dev/null 2>&1; then
	out=$(printf '%s\n' $srcs | xargs -P "$jobs" -I{} gcc -std=c11 -D_GNU_SOURCE \
		-DRATION_BUILDING -DRATION_VERSION='"0"' -DRATION_HAVE_JEMALLOC=0 -Iinclude -Ilib \
		-O1 -fanalyzer -Wall -Wextra -Wno-unused-parameter -c {} -o /dev/null 2>&1 |
		grep -E "(warning|error):" || true)
	# The jemalloc side of account.c too, when jemalloc's headers are here.
	if pkg-config --exists jemalloc 2>/dev/null; then
		out+=$(gcc -std=c11 -D_GNU_SOURCE -DRATION_BUILDING -DRATION_VERSION='"0"' \
			-DRATION_HAVE_JEMALLOC=1 $(pkg-config --cflags jemalloc) -Iinclude -Ilib \
			-O1 -fanalyzer -Wall -Wextra -Wno-unused-parameter -c lib/account.c \
			-o /dev/null 2>&1 | grep -E "(warning|error):" || true)
	fi
	if [ -n "$out" ]; then
		echo "$out"
		fail=1
	else
		echo "clean"
	fi
else
	echo "MISSING: gcc >= 10 with -fanalyzer"
	missing=1
fi

if [ "$fail" != 0 ]; then
	echo "static.sh: findings above"
	exit 1
fi
if [ "$missing" != 0 ] && [ "${STATIC_STRICT:-0}" = 1 ]; then
	exit 2
fi
echo "static.sh: ok"
