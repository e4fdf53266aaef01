#!/usr/bin/env bash
# bench/compare.sh - ration against its peers, W1-W5 (DESIGN §8), one run.
#
# Builds ration-bench (meson -Dbench=true in build-bench) and the peer
# harness of ../shared/peers (cbench, gobench: built the way its
# run_all.sh builds them, into build-bench/peers), runs every job REPS
# times, interleaved (rep 1 of everything, then rep 2, ...) so drift on a
# noisy VM hits everyone alike, and prints a Markdown table of medians with
# ratio = peer / ration, then the issue #5 targets.
#
#   bench/compare.sh                 REPS=3, about 6-8 minutes on 2 vCPUs
#   REPS=5 bench/compare.sh
#   ONLY='^W2' bench/compare.sh      only jobs whose "W peer" matches
#   CBENCH_ALL=1 bench/compare.sh    also cbench's copies of the C peers
#                                    that ration-bench has (as cbench:NAME)
#
# Needs, beyond the README set-up (gcc, meson, ninja, pkg-config):
#   apt-get install -y libglib2.0-dev cthreadpool-dev golang-go golang-golang-x-sync-dev
# Go or x/sync missing: the Go peers are skipped (with this hint); likewise
# cthreadpool-dev for c-cthreadpool.
#
# Scaled-down counts, so a run stays under ~10 minutes (per-op metrics, so
# only the noise changes), as ../shared/peers/run_all.sh does, except that
# c-wsem t=4 gets 200000 (at 50000 it is bimodal: some runs never contend):
#   W2 c-wsem t=4             n=200000 per thread (1e6 takes ~100 s a run)
#   W2 c-wsem t=8             n=50000 per thread (1e6 takes ~370 s a run)
#   W2 futex-pingpong         n=200000 (each op is a real sleep + wake, ~7 us)
#   W3 c-pthread              n=100000 (a thread create + exit per task)
#   W4 *+wsem (C pools)       n=100000 (tens of us per task)
# Output files in build-bench/compare/: raw.txt (every line), summary.txt
# (median/min/max per metric), table.md (the table printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
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
opts=(-Dbench=true -Dbuildtype=release -Dwerror=true -Dtests=false -Dexamples=false)
if [ -f "$BUILD/build.ninja" ]; then
	# reconfigure: lib/ and bench/ pick layers up by file existence
	meson setup --reconfigure "$BUILD" "${opts[@]}" >/dev/null
else
	meson setup "$BUILD" "${opts[@]}" >/dev/null
fi
ninja -C "$BUILD" bench/ration-bench >/dev/null
RB=$BUILD/bench/ration-bench

# ---- build the peers (as ../shared/peers/run_all.sh does) ----------------
PB=$BUILD/peers
mkdir -p "$PB" "$OUT"
C="" G=""
if [ ! -f "$PEERS/c/bench.c" ]; then
	echo "# no peer harness at $PEERS (set PEERS_DIR): cbench/gobench skipped" >&2
elif [ ! -e /usr/include/cthreadpool/thpool.h ]; then
	echo "# cthreadpool-dev missing: c-cthreadpool skipped ($APT)" >&2
else
	echo "# build cbench ($PB)" >&2
	# shellcheck disable=SC2046
	gcc -O2 -pthread -Wall -Wextra -I/usr/include/cthreadpool $(pkg-config --cflags glib-2.0) \
		-o "$PB/cbench" "$PEERS/c/bench.c" /usr/share/cthreadpool/thpool.c \
		$(pkg-config --libs glib-2.0)
	C=$PB/cbench
fi
if [ ! -f "$PEERS/go/bench.go" ]; then
	:
elif ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/sync/semaphore ]; then
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
# "tag|command": tag relabels the peer in the output (CBENCH_ALL copies).
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
echo "# raw results ($REPS interleaved repetitions)" >&2
: >"$OUT/raw.txt"
failed=0
for r in $(seq "$REPS"); do
	for j in "${jobs[@]}"; do
		tag=${j%%|*} cmd=${j#*|}
		# "-w W2 -peer x" -> "W2 x", for ONLY
		desc=$(sed -E 's/.*-w (W[0-5]) -peer ([^ ]+).*/\1 \2/' <<<"$cmd")
		grep -Eq -- "$ONLY" <<<"$desc" || continue
		if ! res=$(timeout 600 $cmd); then
			echo "# FAILED (rep $r): $cmd" >&2
			failed=$((failed + 1))
			continue
		fi
		[ -z "$tag" ] || res=$(awk -v t="$tag" '{ $2 = t ":" $2; print }' <<<"$res")
		printf '%s\n' "$res" | tee -a "$OUT/raw.txt" >&2
	done
done

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
