#!/usr/bin/env bash
# scripts/test.sh - the whole test suite, as CI runs it:
#   1. plain build (gcc, -Werror): unit, stress, chaos, example and tool
#      suites; the unit suites again on one CPU (taskset -c 0)
#   2. AddressSanitizer + LeakSanitizer + UBSan (clang)
#   3. ThreadSanitizer (gcc)
#   4. reliability (scripts/reliability.sh): the model test at 10^6 ops,
#      60 s of libFuzzer, deadline lateness under load, a 30 s soak and
#      static analysis (clang-tidy, cppcheck, gcc -fanalyzer); each step
#      counts as one test. (Its fault-injection step is skipped here: the
#      suites above already ran it under every sanitizer.)
#   5. packaging (scripts/package-check.sh), one test: setup without Check,
#      install into a temporary prefix, a consumer built with pkg-config
#      (shared and fully static) and as a meson subproject with
#      default_library=static.
# Each build lives in its own directory (build-test, build-asan, build-tsan),
# reused on the next run. Installs missing packages first when run as root
# (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run DIR LABEL [meson setup options...]: configure once, build, test.
# TEST_ARGS picks the suites (default: all but soak, 2 at a time); WRAP
# prefixes the test runner (the one-CPU pass runs it under taskset).
run() {
	local dir=$1 label=$2
	shift 2
	echo "=== $label ($dir) ==="
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dwerror=true "$@" >/dev/null
	fi
	meson compile -C "$dir" >"$log" 2>&1 || { cat "$log"; exit 1; }
	local rc=0
	# shellcheck disable=SC2086 # word splitting of WRAP/TEST_ARGS is wanted
	${WRAP:-} meson test -C "$dir" ${TEST_ARGS:---no-suite soak --num-processes 2} \
		--print-errorlogs | tee "$log" || rc=$?
	local ok
	ok=$(awk '/^Ok:/ {s += $2} END {print s + 0}' "$log")
	passed=$((passed + ok))
	failed=$((failed + $(awk '/^(Fail|Timeout|Unexpected Pass):/ {s += $NF} END {print s + 0}' "$log")))
	if [ "$ok" = 0 ]; then
		echo "$label: no test ran" >&2
		rc=1
	fi
	if [ "$rc" != 0 ]; then
		echo "$passed passed, $failed failed"
		exit "$rc"
	fi
}

run build-test "plain"
# One usable CPU (a container with one CPU, taskset): nothing may spin
# waiting for another thread, and no test may need a second CPU.
WRAP="taskset -c 0" TEST_ARGS="--suite unit --num-processes 1" \
	run build-test "unit suites on one CPU"
# The sanitizer runtimes slow everything 5-20x: the stress loops scale down.
export RATION_STRESS_ROUNDS=${RATION_STRESS_ROUNDS_SANITIZED:-20000}
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 CC=clang \
	run build-asan "asan+lsan+ubsan" -Db_sanitize=address,undefined -Db_lundef=false \
	-Dbuildtype=debug -Djemalloc=disabled
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	run build-tsan "tsan" -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug \
	-Djemalloc=disabled
unset RATION_STRESS_ROUNDS # the plain-build steps run at full size
steps=(model fuzz deadline soak static)
for step in "${steps[@]}"; do
	skip="asan"
	for other in "${steps[@]}"; do
		[ "$other" = "$step" ] || skip="$skip $other"
	done
	echo "=== reliability: $step ==="
	if RELIABILITY_SKIP="$skip" bash scripts/reliability.sh; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "$passed passed, $failed failed"
		exit 1
	fi
done
echo "=== packaging ==="
if bash scripts/package-check.sh; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	echo "$passed passed, $failed failed"
	exit 1
fi
echo "=== all test runs passed ==="
echo "$passed passed, $failed failed"
