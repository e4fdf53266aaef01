#!/usr/bin/env bash
# scripts/fuzz.sh - build fuzz/fuzz_api.c with libFuzzer (clang, ASan+UBSan,
# libration compiled with coverage) into build-fuzz/, then fuzz for
# FUZZ_SECONDS (default 60) starting from fuzz/corpus/.
#   FUZZ_SECONDS=600 scripts/fuzz.sh        # longer run
#   scripts/fuzz.sh crash-<hash>            # replay one input
# New interesting inputs go to build-fuzz/corpus (fuzz/corpus stays as
# committed; copy a few small ones back by hand if they add coverage).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
dir=build-fuzz
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (apt-get install clang)"; exit 1; }

if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dbuildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false -Djemalloc=disabled -Dredis=disabled -Dtests=disabled -Dexamples=false \
		-Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined' >/dev/null
fi
ninja -C "$dir" lib/libration.a >/dev/null
clang -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	fuzz/fuzz_api.c "$dir/lib/libration.a" -pthread -o "$dir/fuzz_api"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ $# -gt 0 ]; then
	exec "$dir/fuzz_api" "$@"
fi
mkdir -p "$dir/corpus" "$dir/artifacts"
echo "fuzz.sh: fuzzing for ${secs}s (corpus fuzz/corpus + $dir/corpus)"
rc=0
"$dir/fuzz_api" -max_total_time="$secs" -max_len=512 -timeout=10 -rss_limit_mb=2048 \
	-artifact_prefix="$dir/artifacts/" -print_final_stats=1 \
	"$dir/corpus" fuzz/corpus >"$dir/fuzz.log" 2>&1 || rc=$?
grep -E "INITED|DONE|ERROR|SUMMARY|stat::number_of_executed_units|stat::average_exec|Test unit written|fuzz_api:" \
	"$dir/fuzz.log" | tail -n 20 || true
if [ "$rc" != 0 ]; then
	echo "fuzz.sh: FAILED (rc $rc): see $dir/fuzz.log and $dir/artifacts/"
	exit "$rc"
fi
echo "fuzz.sh: ok"
