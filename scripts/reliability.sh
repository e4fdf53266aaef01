#!/usr/bin/env bash
# scripts/reliability.sh - the reliability evidence of issue #7, for CI:
#   1. fault injection (tests/test_faults) + fuzz corpus replay + a short
#      model run under ASan+LSan+UBSan (clang, build-r-asan)
#   2. the model test at full size (10^6 ops) on the plain build (build-r)
#   3. a bounded libFuzzer run (scripts/fuzz.sh, FUZZ_SECONDS, default 60)
#   4. deadline lateness under load (bench/deadline_accuracy.c; reported,
#      fails only if a wait returns before its deadline)
#   5. a short soak (tests/soak.c, RELIABILITY_SOAK_SECONDS, default 30):
#      RSS, threads and fds flat
#   6. static analysis (scripts/static.sh; a missing tool fails the step,
#      STATIC_STRICT=0 skips it instead)
# Installs nothing (scripts/deps.sh does; CI runs scripts/test.sh first).
# About 3-4 minutes on 2 cores. RELIABILITY_SKIP="fuzz static" skips steps
# (asan model fuzz deadline soak static). Exits non-zero on any failure.
# The full soak (10 min): meson test -C build-r --suite soak.
set -euo pipefail
cd "$(dirname "$0")/.."
skip=" ${RELIABILITY_SKIP:-} "
t0=$(date +%s)
step() { echo; echo "=== $1 ($(( $(date +%s) - t0 )) s) ==="; }

if [[ "$skip" != *" asan "* ]]; then
	step "fault injection + fuzz replay + model, asan+lsan+ubsan (build-r-asan)"
	if [ ! -f build-r-asan/build.ninja ]; then
		CC=clang meson setup build-r-asan -Dwerror=true -Db_sanitize=address,undefined \
			-Db_lundef=false -Djemalloc=disabled -Dbuildtype=debug >/dev/null
	fi
	ninja -C build-r-asan tests/test_faults tests/test_model tests/fuzz_replay >/dev/null
	RATION_STRESS_ROUNDS=${RATION_STRESS_ROUNDS_SANITIZED:-20000} \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		meson test -C build-r-asan --no-rebuild --suite reliability --print-errorlogs \
		--num-processes 2
	grep -h "^faults:\|model_\|fuzz_replay:" build-r-asan/meson-logs/testlog.txt | sort -u | tail -n 60 || true
fi

if [[ "$skip" != *" model "* ]]; then
	step "model test, 10^6 ops (build-r)"
	[ -f build-r/build.ninja ] || meson setup build-r -Dwerror=true >/dev/null
	ninja -C build-r tests/test_model lib/libration.a >/dev/null
	./build-r/tests/test_model
fi

if [[ "$skip" != *" fuzz "* ]]; then
	step "libFuzzer, ${FUZZ_SECONDS:-60} s (build-fuzz)"
	bash scripts/fuzz.sh
fi

if [[ "$skip" != *" deadline "* ]]; then
	step "deadline lateness under load"
	[ -f build-r/build.ninja ] || meson setup build-r -Dwerror=true >/dev/null
	ninja -C build-r lib/libration.a >/dev/null
	libs=$(pkg-config --libs jemalloc 2>/dev/null || true)
	grep -q "RATION_HAVE_JEMALLOC=1" build-r/compile_commands.json || libs=
	if grep -q "lib/redis/redis_sem.c" build-r/compile_commands.json; then
		libs="$libs $(pkg-config --libs hiredis)"
	fi
	cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/deadline_accuracy.c \
		build-r/lib/libration.a $libs -pthread -o build-r/deadline_accuracy
	DEADLINE_WAITS=${DEADLINE_WAITS:-10000} ./build-r/deadline_accuracy
fi

if [[ "$skip" != *" soak "* ]]; then
	step "soak, ${RELIABILITY_SOAK_SECONDS:-30} s (build-r)"
	[ -f build-r/build.ninja ] || meson setup build-r -Dwerror=true >/dev/null
	ninja -C build-r tests/soak >/dev/null
	RATION_SOAK_SECONDS=${RELIABILITY_SOAK_SECONDS:-30} ./build-r/tests/soak
fi

if [[ "$skip" != *" static "* ]]; then
	step "static analysis"
	STATIC_STRICT=${STATIC_STRICT:-1} bash scripts/static.sh
fi

step "reliability: all passed"
