#!/usr/bin/env bash
# bench/perf_stat.sh - context switches, CPU migrations and CPU time per
# op/task (perf stat, all threads) for ration and its peers on W2 t=8, W3
# and W4: a design that wins has few context switches per task (contract §12).
#
#   bench/perf_stat.sh            REPS=1; run bench/compare.sh once first
#   REPS=3 ONLY='^W3' bench/perf_stat.sh
#
# Needs linux-perf (apt-get install -y linux-perf) and
# kernel.perf_event_paranoid <= 2. Prints a Markdown table; counts are
# per op (W2: t*n acquire+release pairs) or per task (W3, W4), medians of REPS.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-1}
ONLY=${ONLY:-.}
RB=build-bench/bench/ration-bench C=build-bench/peers/cbench G=build-bench/peers/gobench
command -v perf >/dev/null || { echo "missing perf: apt-get install -y linux-perf" >&2; exit 1; }
[ -x "$RB" ] || { echo "run bench/compare.sh first (builds $RB and the peers)" >&2; exit 1; }
# W4 spin count: compare.sh's (calibrating on a busy machine undercounts)
[ -n "${SPIN:-}" ] || SPIN=$(cat build-bench/compare/spin.txt 2>/dev/null || $RB -calibrate)

# "ops|command": ops = how many ops/tasks the command does
jobs=(
	"8000000|$RB -w W2 -peer ration -t 8"
	"8000000|$RB -w W2 -peer c-posix-sem -t 8"
	"400000|$RB -w W2 -peer c-wsem -t 8 -n 50000"
	"400000|$RB -w W2 -peer futex-pingpong -t 2 -n 200000"
	"1000000|$RB -w W3 -peer ration-group"
	"1000000|$RB -w W3 -peer ration-pool"
	"1000000|$RB -w W3 -peer c-gthreadpool"
	"1000000|$RB -w W4 -peer ration-group -spin $SPIN"
	"100000|$RB -w W4 -peer c-gthreadpool+wsem -spin $SPIN -n 100000"
)
if [ -x "$G" ]; then
	jobs+=("8000000|$G -w W2 -peer go-weighted -t 8"
	       "1000000|$G -w W3 -peer go-errgroup"
	       "1000000|$G -w W3 -peer go-chan"
	       "1000000|$G -w W4 -peer go-weighted -spin $SPIN")
fi
if [ -x "$C" ]; then
	jobs+=("1000000|$C -w W3 -peer c-cthreadpool"
	       "100000|$C -w W4 -peer c-cthreadpool+wsem -spin $SPIN -n 100000")
fi

echo "# $(date -u +%FT%TZ) nproc=$(nproc) kernel=$(uname -r) spin=$SPIN REPS=$REPS loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
echo
echo "| workload | peer | ns per op/task | context switches per op/task | CPU migrations per op/task | CPU time per op/task |"
echo "|---|---|---:|---:|---:|---:|"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for j in "${jobs[@]}"; do
	ops=${j%%|*} cmd=${j#*|}
	desc=$(sed -E 's/.*-w (W[1-5]) -peer ([^ ]+).*/\1 \2/' <<<"$cmd")
	grep -Eq -- "$ONLY" <<<"$desc" || continue
	: >"$tmp.rows"
	for _ in $(seq "$REPS"); do
		line=$(perf stat -x, -o "$tmp" -e context-switches,cpu-migrations,task-clock -- $cmd | sed -n 1p)
		ns=$(sed -E 's/.*(ns_per_op|ns_per_task)=([0-9.]+).*/\2/' <<<"$line")
		awk -F, -v ops="$ops" -v ns="$ns" '
			$3 == "context-switches" { cs = $1 }
			$3 == "cpu-migrations" { mig = $1 }
			$3 == "task-clock" { cpu = $1 }   # msec
			END { printf "%s %.4f %.5f %.0f\n", ns, cs / ops, mig / ops, cpu * 1e6 / ops }' "$tmp" >>"$tmp.rows"
	done
	# median of each column
	sort -n -k1,1 "$tmp.rows" | awk -v d="$desc" '
		{ for (i = 1; i <= 4; i++) v[i, NR] = $i }
		END {
			split(d, w, " ")
			printf "| %s | %s", w[1], w[2]
			for (i = 1; i <= 4; i++) {
				n = 0; for (r = 1; r <= NR; r++) a[++n] = v[i, r]
				for (x = 2; x <= n; x++) { t = a[x]; for (y = x - 1; y >= 1 && a[y] > t; y--) a[y + 1] = a[y]; a[y + 1] = t }
				m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
				printf " | %s%s", m, i == 4 ? " ns" : ""
			}
			print " |"
		}'
	rm -f "$tmp.rows"
done
