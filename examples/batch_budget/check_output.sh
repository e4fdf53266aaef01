#!/bin/sh
# check_output.sh BATCH_BUDGET - what the outputs carry beyond the smoke
# runs: --timeline's last column is the claims on the budget (the
# semaphore's in_use), above 0 while an elastic run's tasks run and -1 in a
# mode without a budget semaphore; --compare --lie ends with the honest
# budget and elastic runs and compares every run's throughput with the
# honest budget run's.
set -eu
bb=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() {
	echo "$*" >&2
	exit 1
}

"$bb" --mode elastic --lie 0.2:3 --tasks 30 --budget 32M --io-bw 64M \
	--timeline "$out/e.csv" >/dev/null
"$bb" --mode fixed --tasks 20 --budget 32M --io-bw 64M \
	--timeline "$out/f.csv" >/dev/null
header='t_ms,in_use_bytes,rss_bytes,budget_bytes,done,mode,claimed_bytes'
head -n 1 "$out/e.csv" | grep -qx "$header" ||
	fail "bad header: $(head -n 1 "$out/e.csv")"
awk -F, 'NR > 1 && $7 > 0 { n++ } END { exit !(n > 0) }' "$out/e.csv" ||
	fail "elastic run: no sample with claims above 0"
awk -F, 'NR > 1 && $7 != -1 { bad++ } END { exit bad > 0 }' "$out/f.csv" ||
	fail "fixed run: a claims value other than -1"

args='--compare --lie 0.2:3 --tasks 16 --budget 32M --seed 5 --io-bw 4G'
# shellcheck disable=SC2086 # word splitting of $args is meant
"$bb" $args --json >"$out/c.json" 2>/dev/null
modes=$(grep -o '"mode": "[a-z]*"' "$out/c.json" | cut -d'"' -f4 | tr '\n' ' ')
[ "$modes" = "budget fixed unbounded elastic budget elastic " ] ||
	fail "--compare --lie --json runs: $modes"
liars=$(grep -o '"liars": [0-9]*' "$out/c.json" | cut -d' ' -f2 | tr '\n' ' ')
# shellcheck disable=SC2086 # one word per run
set -- $liars
if ! { [ $# -eq 6 ] && [ "$1" -gt 0 ] && [ "$2" -gt 0 ] &&
	[ "$3" -gt 0 ] && [ "$4" -gt 0 ] && [ "$5" -eq 0 ] && [ "$6" -eq 0 ]; }; then
	fail "liars per run: $liars (the last two runs must be honest)"
fi
# shellcheck disable=SC2086
"$bb" $args >"$out/c.txt" 2>/dev/null
grep -q '^ *tasks/s vs budget honest .* 100% ' "$out/c.txt" ||
	fail "no throughput row against the honest run: $(cat "$out/c.txt")"
grep -q 'elastic honest' "$out/c.txt" || fail "no elastic honest column"
