#!/bin/sh
# check_timeline.sh BATCH_BUDGET - --timeline's last column is the claims
# on the budget (the semaphore's in_use): above 0 while an elastic run's
# tasks run, -1 in a mode without a budget semaphore.
set -eu
bb=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bb" --mode elastic --lie 0.2:3 --tasks 60 --budget 32M --io-bw 64M \
	--timeline "$out/e.csv" >/dev/null
"$bb" --mode fixed --tasks 20 --budget 32M --io-bw 64M \
	--timeline "$out/f.csv" >/dev/null
header='t_ms,in_use_bytes,rss_bytes,budget_bytes,done,mode,claimed_bytes'
head -n 1 "$out/e.csv" | grep -qx "$header" || {
	echo "bad header: $(head -n 1 "$out/e.csv")" >&2
	exit 1
}
awk -F, 'NR > 1 && $7 > 0 { n++ } END { exit !(n > 0) }' "$out/e.csv" || {
	echo "elastic run: no sample with claims above 0" >&2
	exit 1
}
awk -F, 'NR > 1 && $7 != -1 { bad++ } END { exit bad > 0 }' "$out/f.csv" || {
	echo "fixed run: a claims value other than -1" >&2
	exit 1
}
