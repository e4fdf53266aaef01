#!/usr/bin/env bash
# scripts/static.sh - static analysis of lib/ (core and backends): the
# layering rule, clang-format on every C file, clang-tidy (.clang-tidy),
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

# The layers (docs/architecture.md): the core (lib/*.c, lib/internal/)
# includes no backend header, and no backend includes another's. A
# backend's headers are its public one (include/ration/<backend>.h) and
# those in its folder (lib/<backend>/*.h); the Redis backend alone may
# include hiredis.
echo "=== layering ==="
backends=$(cd lib && for d in */; do [ "$d" != internal/ ] && echo "${d%/}"; done)
# headers_of B: an extended regex matching what an #include of one of B's
# headers names (whole target, between the quotes or brackets).
headers_of() {
	local re="ration/$1\\.h|(.*/)?$1/.*"
	local h
	for h in lib/"$1"/*.h; do
		[ -e "$h" ] && re="$re|(.*/)?$(basename "$h" | sed 's/\./\\./g')"
	done
	if [ "$1" = redis ]; then
		re="$re|hiredis/.*"
	fi
	echo "^($re)\$"
}
layer_out=
for b in $backends; do
	re=$(headers_of "$b")
	files="lib/*.c lib/internal/*.h"
	for o in $backends; do
		[ "$o" != "$b" ] && files="$files lib/$o/*.c lib/$o/*.h"
	done
	# shellcheck disable=SC2086 # the globs are meant to expand
	while IFS=: read -r file line target; do
		if [[ "$target" =~ $re ]]; then
			layer_out+="$file:$line: includes $target, a header of backend '$b'"$'\n'
		fi
	done < <(grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' $files 2>/dev/null |
		sed -E 's/^([^:]*:[0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]*)[>"].*/\1:\2/')
done
if [ -n "$layer_out" ]; then
	printf '%s' "$layer_out"
	fail=1
else
	echo "clean (core: lib/*.c lib/internal/; backends: $(echo $backends))"
fi

# The layout (.clang-format) holds for every C file but the peers' own.
echo "=== clang-format ==="
if command -v clang-format >/dev/null; then
	unformatted=$(git ls-files '*.c' '*.h' | grep -v '^bench/peers/' |
		xargs clang-format --dry-run 2>&1 | grep -E '^[^ ].*: (warning|error):' |
		cut -d: -f1 | sort -u)
	if [ -n "$unformatted" ]; then
		echo "not formatted (clang-format -i FILE):"
		echo "$unformatted"
		fail=1
	else
		echo clean
	fi
else
	echo "clang-format not found: skipped"
	missing=1
fi

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
