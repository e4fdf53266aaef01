#!/usr/bin/env bash
# bench/batch-budget-lie.sh - the main job's throughput targets under lying
# tasks (docs/batch_budget.md, "Tasks that lie"): REPS interleaved rounds
# (every run of round 1, then round 2, ...) so drift on a shared machine
# hits every run alike, then a Markdown table of medians:
#
#   honest budget     --mode budget                  the reference
#   lying elastic     --mode elastic --lie 0.2:3     target: >= 80% of it
#   honest elastic    --mode elastic                 target: within 2% of it
#   lying, no limit   --mode budget --budget 16G --rss-slack 0 --lie 0.2:3
#                     (nothing held back: the ceiling for any memory policy)
#   lying elastic, backpressure
#                     --mode elastic --backpressure --lie 0.2:3 (a liar
#                     that is not the oldest waits inside malloc)
#
#   bench/batch-budget-lie.sh                   REPS=3, about 1.5 minutes when quiet
#   REPS=5 ARGS='--budget 512M' bench/batch-budget-lie.sh
#
# BB: the batch_budget binary (default build/examples/batch_budget); ARGS:
# flags given to every run before its own (so the no-limit run keeps its
# 16G budget). CPU time and page faults come from perf stat when it works,
# else they are "-". Prints the load average before and after: compare
# only figures from one session. Exit status 1 if a run's checks failed.
set -euo pipefail
cd "$(dirname "$0")/.."
BB=${BB:-build/examples/batch_budget}
REPS=${REPS:-3}
ARGS=${ARGS:-}
[ -x "$BB" ] || { echo "no $BB: build first (meson setup build && meson compile -C build)" >&2; exit 1; }
PERF=0
perf stat -e task-clock true >/dev/null 2>&1 && PERF=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

names=("honest budget" "lying elastic" "honest elastic" "lying, no limit"
	"lying elastic, backpressure")
flags=("--mode budget" "--mode elastic --lie 0.2:3" "--mode elastic"
	"--mode budget --budget 16G --rss-slack 0 --lie 0.2:3"
	"--mode elastic --backpressure --lie 0.2:3")
echo "load before: $(cat /proc/loadavg)"
for r in $(seq "$REPS"); do
	for i in "${!names[@]}"; do
		# shellcheck disable=SC2086 # the flags are words
		if [ $PERF = 1 ]; then
			perf stat -x, -e task-clock,page-faults -o "$tmp/perf" \
				"$BB" --json $ARGS ${flags[$i]} >"$tmp/json" || true
			cpu=$(awk -F, '$3 == "task-clock" { printf "%.2f", $1 / 1000 }' "$tmp/perf")
			pf=$(awk -F, '$3 == "page-faults" { print $1 }' "$tmp/perf")
		else
			"$BB" --json $ARGS ${flags[$i]} >"$tmp/json" || true
			cpu=- pf=-
		fi
		wall=$(grep -o '"wall_ns": [0-9]*' "$tmp/json" | awk '{ print $2 / 1e9 }')
		rss=$(grep -o '"peak_rss_bytes": [0-9]*' "$tmp/json" | awk '{ print $2 / 1048576 }')
		claims=$(grep -o '"max_in_use_bytes": [0-9]*' "$tmp/json" | awk '{ print $2 / 1048576 }')
		ok=$(grep -q '"ok": true' "$tmp/json" && echo 1 || echo 0)
		[ -n "$wall" ] || { echo "${names[$i]}: no result (round $r)" >&2; exit 1; }
		echo "$i $wall $cpu $pf $rss $ok ${claims:--}" >>"$tmp/rows"
	done
done
echo "load after:  $(cat /proc/loadavg)"

# medians per run (column c of the rows of run i); "-" when not measured
med() { awk -v i="$1" -v c="$2" '$1 == i && $c != "-" { print $c }' "$tmp/rows" |
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ref=$(med 0 2)
echo
echo "| run (median of $REPS) | wall s | vs honest budget | CPU s | page faults | peak RSS MiB (max) | max in use MiB (max) | checks ok |"
echo "|---|---|---|---|---|---|---|---|"
for i in "${!names[@]}"; do
	w=$(med "$i" 2)
	maxrss=$(awk -v i="$i" '$1 == i && $5 > m { m = $5 } END { printf "%.1f", m }' "$tmp/rows")
	maxuse=$(awk -v i="$i" '$1 == i && $7 > m { m = $7 } END { printf "%.1f", m }' "$tmp/rows")
	oks=$(awk -v i="$i" '$1 == i { n++; s += $6 } END { print s "/" n }' "$tmp/rows")
	printf '| %s | %.2f | %.0f%% | %s | %s | %s | %s | %s |\n' "${names[$i]}" "$w" \
		"$(awk -v a="$ref" -v b="$w" 'BEGIN { print 100 * a / b }')" \
		"$(med "$i" 3)" "$(med "$i" 4)" "$maxrss" "$maxuse" "$oks"
done
echo
awk -v a="$ref" -v l="$(med 1 2)" -v h="$(med 2 2)" -v n="$(med 3 2)" 'BEGIN {
	printf "lying elastic: %.0f%% of the honest throughput (target >= 80%%; ceiling with no memory limit: %.0f%%)\n", 100 * a / l, 100 * a / n
	printf "honest elastic vs budget: %+.1f%% wall time (target within 2%%)\n", 100 * (h - a) / a }'
awk '$6 != 1 { bad = 1 } END { exit bad }' "$tmp/rows" || { echo "some run's checks failed" >&2; exit 1; }
