#!/usr/bin/env bash
# scripts/package-check.sh - ration as a user consumes it (one CI step):
#   1. meson setup without Check on the pkg-config path: tests switch off
#      (-Dtests=auto) instead of failing the setup;
#   2. meson install into a temporary prefix;
#   3. every installed public header compiles on its own (-std=c11
#      -pedantic and gnu11);
#   4. tests/consumer/consumer.c built with pkg-config, linked dynamically
#      and fully statically (-static), both run; the cflags must not carry
#      hiredis (no public header needs it);
#   5. the same program as a meson project with ration as a subproject and
#      default_library=static: the result must not need libration.so.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "package-check: setup without Check"
PKG_CONFIG_LIBDIR=$tmp/none meson setup "$tmp/nocheck" -Dtests=auto -Dexamples=false \
	-Djemalloc=disabled -Dredis=disabled >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
grep -q "Run-time dependency check found: NO" "$tmp/log" ||
	{ echo "package-check: Check was found with an empty pkg-config path" >&2; exit 1; }

echo "package-check: install into $tmp/prefix"
meson setup "$tmp/build" --prefix="$tmp/prefix" -Dtests=disabled -Dexamples=false \
	>"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
meson install -C "$tmp/build" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
pcdir=$(dirname "$(find "$tmp/prefix" -name ration.pc | head -1)")
export PKG_CONFIG_PATH=$pcdir
libdir=$(pkg-config --variable=libdir ration)
cflags=$(pkg-config --cflags ration)
case "$cflags" in
*hiredis*) echo "package-check: hiredis in the consumer's cflags: $cflags" >&2; exit 1 ;;
esac

echo "package-check: each public header compiles alone"
# In strict ISO C11 (no feature macro) and in gnu11; with POSIX on,
# ration_ctx_with_signals (which takes a sigset_t) must be declared.
incdir=$(pkg-config --variable=includedir ration)
for h in $(cd "$incdir" && find ration.h ration -name '*.h' | sort); do
	printf '#include <%s>\nint main(void) { return 0; }\n' "$h" >"$tmp/h.c"
	for std in c11 gnu11; do
		# shellcheck disable=SC2086 # cflags' words are meant to split
		cc -std=$std -pedantic -Wall -Wextra -Werror $cflags -c "$tmp/h.c" \
			-o /dev/null || { echo "package-check: <$h> alone, -std=$std" >&2; exit 1; }
	done
done
printf '#include <ration.h>\nvoid *f = (void *)ration_ctx_with_signals;\n' >"$tmp/h.c"
# shellcheck disable=SC2086
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Werror $cflags -c "$tmp/h.c" -o /dev/null ||
	{ echo "package-check: ration_ctx_with_signals hidden under POSIX" >&2; exit 1; }

echo "package-check: pkg-config, shared"
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc -o "$tmp/c-shared" tests/consumer/consumer.c $(pkg-config --cflags --libs ration)
LD_LIBRARY_PATH=$libdir "$tmp/c-shared" | tee "$tmp/out"
if pkg-config --libs ration | grep -q jemalloc; then
	grep -q "heap measured: yes" "$tmp/out" ||
		{ echo "package-check: the consumer's malloc is not jemalloc's" >&2; exit 1; }
fi
ldd "$tmp/c-shared" | grep -q libration.so ||
	{ echo "package-check: the shared build does not use libration.so" >&2; exit 1; }

echo "package-check: pkg-config --static, fully static"
# shellcheck disable=SC2046
cc -static -o "$tmp/c-static" tests/consumer/consumer.c \
	$(pkg-config --static --cflags --libs ration)
"$tmp/c-static"
if ldd "$tmp/c-static" >/dev/null 2>&1; then
	echo "package-check: -static produced a dynamic executable" >&2
	exit 1
fi

echo "package-check: meson subproject, default_library=static"
mkdir -p "$tmp/sub/subprojects"
cp tests/consumer/meson.build tests/consumer/consumer.c "$tmp/sub/"
ln -s "$src" "$tmp/sub/subprojects/ration"
unset PKG_CONFIG_PATH # the installed copy must not stand in for the subproject
(cd "$tmp/sub" && meson setup build --force-fallback-for=ration >"$tmp/log" 2>&1 &&
	meson compile -C build >>"$tmp/log" 2>&1) ||
	{ cat "$tmp/log"; exit 1; }
"$tmp/sub/build/consumer"
if ldd "$tmp/sub/build/consumer" | grep -q libration.so; then
	echo "package-check: default_library=static ignored by the subproject" >&2
	exit 1
fi
echo "package-check: ok"
