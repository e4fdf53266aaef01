#!/usr/bin/env bash
# bench/compare.sh - ration against its peers, W1-W5 (contract §8), one run.
#
# Builds ration-bench (meson -Dbench=true in build-bench) and the peer
# programs in bench/peers (cbench, gobench; bench/peers/README.md), runs
# every job REPS times, interleaved (rep 1 of everything, then rep 2, ...)
# so drift on a noisy VM hits everyone alike, and prints a Markdown table of
# medians with ratio = peer / ration, then the targets. Each job runs under
# `perf stat -e context-switches` when perf works, and its context
# switches per op/task are a metric of their own (cs_per_op, cs_per_task).
#
#   bench/compare.sh                 REPS=3, about 6-8 minutes on 2 vCPUs
#   REPS=5 bench/compare.sh
#   ONLY='^W2' bench/compare.sh      only jobs whose "W peer [cpus=1]" matches
#   ONLY='cpus=1' bench/compare.sh   only the one-CPU rows (taskset -c 0)
#   CBENCH_ALL=1 bench/compare.sh    also cbench's copies of the C peers
#                                    that ration-bench has (as cbench:NAME)
#
# Needs, beyond the README set-up (gcc, meson, ninja, pkg-config):
#   apt-get install -y libglib2.0-dev cthreadpool-dev golang-go golang-golang-x-sync-dev
# Go or x/sync missing: the Go peers are skipped (with this hint); likewise
# cthreadpool-dev for c-cthreadpool.
#
# Scaled-down counts, so a run stays under ~15 minutes (per-op metrics, so
# only the noise changes):
#   W2 c-wsem t=4             n=200000 per thread (1e6 takes ~100 s a run)
#   W2 c-wsem t=8             n=50000 per thread (1e6 takes ~370 s a run)
#   W2 t=16, 32, 64           n=2000000/t per thread (2e6 ops in all)
#   W2 futex-pingpong         n=200000 (each op is a real sleep + wake, ~7 us)
#   W3 c-pthread              n=100000 (a thread create + exit per task)
#   W4 *+wsem (C pools)       n=100000 (tens of us per task)
# Output files in build-bench/compare/: raw.txt (every line), summary.txt
# (median/min/max per metric), table.md (the table printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/bench/peers
REPS=${REPS:-3}
ONLY=${ONLY:-.}
BUILD=build-bench
OUT=$BUILD/compare
APT="apt-get install -y meson ninja-build gcc pkg-config libglib2.0-dev cthreadpool-dev golang-go golang-golang-x-sync-dev"

for need in gcc meson ninja pkg-config awk; do
	command -v "$need" >/dev/null 2>&1 || { echo "missing $need: $APT" >&2; exit 1; }
done
pkg-config --exists glib-2.0 || { echo "missing GLib (c-gthreadpool): $APT" >&2; exit 1; }

# ---- build ration-bench --------------------------------------------------
echo "# build ration-bench ($BUILD)" >&2
opts=(-Dbench=true -Dbuildtype=release -Dwerror=true -Dtests=disabled -Dexamples=false)
if [ -f "$BUILD/build.ninja" ]; then
	# reconfigure: lib/ and bench/ pick layers up by file existence
	meson setup --reconfigure "$BUILD" "${opts[@]}" >/dev/null
else
	meson setup "$BUILD" "${opts[@]}" >/dev/null
fi
ninja -C "$BUILD" bench/ration-bench >/dev/null
RB=$BUILD/bench/ration-bench

# ---- build the peers (bench/peers/README.md) ------------------------------
PB=$BUILD/peers
mkdir -p "$PB" "$OUT"
C="" G=""
if [ ! -e /usr/include/cthreadpool/thpool.h ]; then
	echo "# cthreadpool-dev missing: c-cthreadpool skipped ($APT)" >&2
else
	echo "# build cbench ($PB)" >&2
	# -Ibench: its "wsem.h" is bench/wsem.h, the one ration-bench uses too
	# shellcheck disable=SC2046
	gcc -O2 -pthread -Wall -Wextra -Ibench -I/usr/include/cthreadpool $(pkg-config --cflags glib-2.0) \
		-o "$PB/cbench" "$PEERS/c/bench.c" /usr/share/cthreadpool/thpool.c \
		$(pkg-config --libs glib-2.0)
	C=$PB/cbench
fi
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/sync/semaphore ]; then
	echo "# go or golang.org/x/sync missing: Go peers skipped." >&2
	echo "#   install: apt-get install -y golang-go golang-golang-x-sync-dev" >&2
else
	echo "# build gobench ($PB)" >&2
	(cd "$PEERS/go" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$ROOT/$PB/gocache" \
		go build -o "$ROOT/$PB/gobench" .)
	G=$PB/gobench
fi

# ---- machine, busy-work calibration -------------------------------------
{
	echo "# machine: $(date -u +%FT%TZ) nproc=$(nproc) cpu=\"$(lscpu | sed -n 's/^Model name: *//p')\"" \
		"kernel=$(uname -r) gcc-$(gcc -dumpversion) glib-$(pkg-config --modversion glib-2.0)" \
		"${G:+$(go version | cut -d' ' -f3)} loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
} | tee "$OUT/machine.txt" >&2
SPIN=$($RB -calibrate) # W4 busy work: calibrated once, same count for every peer
echo "$SPIN" >"$OUT/spin.txt" # reused by bench/perf_stat.sh
echo "# W4 busy work: spin=$SPIN" >&2
{ $RB -spincheck -spin "$SPIN"; [ -z "$C" ] || $C -spincheck -spin "$SPIN"
  [ -z "$G" ] || $G -spincheck -spin "$SPIN"; } | sed 's/^/# /' >&2

# ---- jobs ----------------------------------------------------------------
# "tag|command": a tag NAME relabels the peer as NAME:peer (CBENCH_ALL
# copies); a tag key=value is added to the line's parameters (cpus=1).
jobs=()
add() { jobs+=("$1|$2"); }
# W0 first in every repetition: the cache-line round trip of the moment,
# which sets what every cross-thread hand-off below costs.
add "" "$RB -w W0 -peer cacheline-rtt"
for p in ration c-posix-sem c-wsem; do add "" "$RB -w W1 -peer $p"; done
[ -z "$G" ] || add "" "$G -w W1 -peer go-weighted"
for t in 2 4 8; do
	wsem_n=1000000; [ "$t" = 4 ] && wsem_n=200000; [ "$t" = 8 ] && wsem_n=50000
	add "" "$RB -w W2 -peer ration -t $t"
	add "" "$RB -w W2 -peer c-posix-sem -t $t"
	add "" "$RB -w W2 -peer c-wsem -t $t -n $wsem_n"
	[ -z "$G" ] || add "" "$G -w W2 -peer go-weighted -t $t"
done
# More threads than CPUs (batch_budget's 64 workers on a 2-CPU box).
for t in 16 32 64; do
	n=$((2000000 / t))
	add "" "$RB -w W2 -peer ration -t $t -n $n"
	add "" "$RB -w W2 -peer c-posix-sem -t $t -n $n"
	[ -z "$G" ] || add "" "$G -w W2 -peer go-weighted -t $t -n $n"
done
add "" "$RB -w W2 -peer futex-pingpong -t 2 -n 200000"
have_peer() { $RB -w "$1" -peer "$2" -n 0 >/dev/null 2>&1; }
for p in ration-group ration-pool; do
	if have_peer W3 "$p"; then add "" "$RB -w W3 -peer $p"
	else echo "# $p not built yet (lib/${p#ration-}.c missing): skipped" >&2; fi
done
add "" "$RB -w W3 -peer c-gthreadpool"
add "" "$RB -w W3 -peer c-pthread -n 100000"
if have_peer W3 ration-group; then add "" "$RB -w W4 -peer ration-group -spin $SPIN"; fi
add "" "$RB -w W4 -peer c-gthreadpool+wsem -spin $SPIN -n 100000"
if have_peer W3 ration-pool; then add "" "$RB -w W5 -peer ration-pool"; fi
add "" "$RB -w W5 -peer c-gthreadpool"
if [ -n "$G" ]; then
	add "" "$G -w W3 -peer go-errgroup"
	add "" "$G -w W3 -peer go-chan"
	add "" "$G -w W3 -peer go-weighted"
	add "" "$G -w W4 -peer go-weighted -spin $SPIN"
	add "" "$G -w W4 -peer go-weighted-intask -spin $SPIN"
	add "" "$G -w W5 -peer go-weighted-intask"
	add "" "$G -w W5 -peer go-errgroup"
fi
# One CPU (taskset -c 0; Go with GOMAXPROCS=1): tagged cpus=1, so they
# get rows of their own.
one="taskset -c 0"
if have_peer W3 ration-group; then
	add cpus=1 "$one $RB -w W3 -peer ration-group"
	add cpus=1 "$one $RB -w W4 -peer ration-group -spin $SPIN"
fi
if have_peer W3 ration-pool; then add cpus=1 "$one $RB -w W3 -peer ration-pool"; fi
if [ -n "$G" ]; then
	add cpus=1 "env GOMAXPROCS=1 $one $G -w W3 -peer go-errgroup"
	add cpus=1 "env GOMAXPROCS=1 $one $G -w W4 -peer go-weighted -spin $SPIN"
fi
if [ -n "$C" ]; then
	add "" "$C -w W3 -peer c-cthreadpool"
	add "" "$C -w W4 -peer c-cthreadpool+wsem -spin $SPIN -n 100000"
	add "" "$C -w W5 -peer c-cthreadpool"
	if [ "${CBENCH_ALL:-0}" = 1 ]; then
		for p in c-wsem c-posix-sem; do add cbench "$C -w W1 -peer $p"; done
		for t in 2 4 8; do
			wsem_n=1000000; [ "$t" = 4 ] && wsem_n=200000; [ "$t" = 8 ] && wsem_n=50000
			add cbench "$C -w W2 -peer c-posix-sem -t $t"
			add cbench "$C -w W2 -peer c-wsem -t $t -n $wsem_n"
		done
		add cbench "$C -w W3 -peer c-gthreadpool"
		add cbench "$C -w W3 -peer c-pthread -n 100000"
		add cbench "$C -w W4 -peer c-gthreadpool+wsem -spin $SPIN -n 100000"
		add cbench "$C -w W5 -peer c-gthreadpool"
	fi
fi

# ---- run, interleaved -------------------------------------------------------
# Context switches per op/task: perf stat around each job (all threads,
# taskset and env included, which switch a handful of times in all).
PERF=""
if command -v perf >/dev/null 2>&1 && perf stat -x, -e context-switches -o /dev/null true 2>/dev/null; then
	PERF=1
else
	echo "# perf stat -e context-switches does not work here (apt-get install -y linux-perf;" \
		"kernel.perf_event_paranoid <= 2): no cs_per_op/cs_per_task" >&2
fi
pstat=$OUT/perf.tmp
echo "# raw results ($REPS interleaved repetitions)" >&2
: >"$OUT/raw.txt"
failed=0
for r in $(seq "$REPS"); do
	for j in "${jobs[@]}"; do
		tag=${j%%|*} cmd=${j#*|}
		# "-w W2 -peer x" -> "W2 x" (plus a key=value tag), for ONLY
		desc=$(sed -E 's/.*-w (W[0-5]) -peer ([^ ]+).*/\1 \2/' <<<"$cmd")
		[[ "$tag" != *=* ]] || desc="$desc $tag"
		grep -Eq -- "$ONLY" <<<"$desc" || continue
		run=$cmd
		[ -z "$PERF" ] || [[ "$desc" == W0* ]] || run="perf stat -x, -e context-switches -o $pstat -- $cmd"
		if ! res=$(timeout 600 $run); then
			echo "# FAILED (rep $r): $cmd" >&2
			failed=$((failed + 1))
			continue
		fi
		if [ "$run" != "$cmd" ]; then
			# one more line: context switches per op (W1, W2: t*n ops) or per task
			res+=$'\n'$(awk -F, -v line="$(sed -n 1p <<<"$res")" '
				$3 == "context-switches" { cs = $1 }
				END {
					n = split(line, f, " "); ops = 1; t = 1; p = ""
					for (i = 3; i <= n - 2; i++) {
						p = p " " f[i]
						if (f[i] ~ /^n=/) ops = substr(f[i], 3)
						if (f[i] ~ /^t=/) t = substr(f[i], 3)
					}
					if (f[1] == "W2") ops *= t
					m = f[1] ~ /^W[12]$/ ? "cs_per_op" : "cs_per_task"
					printf "%s %s%s %s=%.4f cs\n", f[1], f[2], p, m, cs / ops
				}' "$pstat")
		fi
		if [[ "$tag" == *=* ]]; then
			res=$(awk -v t="$tag" '{ $3 = t " " $3; print }' <<<"$res")
		elif [ -n "$tag" ]; then
			res=$(awk -v t="$tag" '{ $2 = t ":" $2; print }' <<<"$res")
		fi
		printf '%s\n' "$res" | tee -a "$OUT/raw.txt" >&2
	done
done
rm -f "$pstat"

# ---- table -------------------------------------------------------------------
awk -v summary="$OUT/summary.txt" -f bench/compare.awk "$OUT/raw.txt" >"$OUT/table.md"
echo
echo "# $(sed 's/^# //' "$OUT/machine.txt"); loadavg at end=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
echo "# spin=$SPIN; REPS=$REPS interleaved; cells: median (min–max); ratio = peer / ration (> 1: ration ahead)"
echo "# cache-line round trip between two threads (W0), ns, per repetition:" \
	"$(awk '/^W0 / { split($(NF - 1), v, "="); printf "%s%s", sep, v[2]; sep = ", " }' "$OUT/raw.txt")"
echo
cat "$OUT/table.md"
[ "$failed" -eq 0 ] || { echo "# $failed job(s) failed, see above" >&2; exit 1; }
