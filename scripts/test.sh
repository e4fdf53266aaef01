#!/usr/bin/env bash
# scripts/test.sh - the whole test suite, as CI runs it:
#   1. plain build (gcc, -Werror): unit, stress and example suites
#   2. AddressSanitizer + LeakSanitizer + UBSan
#   3. ThreadSanitizer
# Each build lives in its own directory (build-test, build-asan, build-tsan),
# reused on the next run. Needs: meson ninja-build check (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
	local dir=$1 label=$2
	shift 2
	echo "=== $label ($dir) ==="
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dwerror=true "$@" >/dev/null
	fi
	meson compile -C "$dir" >/dev/null
	meson test -C "$dir" --no-suite soak --print-errorlogs --num-processes 2
}

run build-test "plain"
# The sanitizer runtimes slow everything 5-20x: the stress loops scale down.
export RATION_STRESS_ROUNDS=${RATION_STRESS_ROUNDS_SANITIZED:-20000}
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run build-asan "asan+lsan+ubsan" -Db_sanitize=address,undefined -Db_lundef=false \
	-Dbuildtype=debug -Djemalloc=disabled
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	run build-tsan "tsan" -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug \
	-Djemalloc=disabled
echo "=== all test runs passed ==="
