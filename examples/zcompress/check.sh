#!/usr/bin/env bash
# check.sh ZCOMPRESS ZSTD - the example's meson test: a generated tree
# (nested directories, an empty file, text, random and repetitive data of
# 0 B to 3 MiB) compressed under a budget smaller than all files together
# would need at once, then every output checked with the zstd program
# against its input; then a deadline run (exit 124, no partial outputs)
# and a SIGINT run (exit 130).
set -euo pipefail
zc=$1 zstd=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src
mkdir -p "$src/a/b" "$src/c"
: >"$src/empty"
seq 1 200000 >"$src/a/numbers.txt"
head -c 3000000 /dev/urandom >"$src/a/b/random.bin"
head -c 2000000 < <(yes 'ration zcompress') >"$src/c/repeat.txt"
for i in $(seq 1 40); do
	head -c $((i * 5000)) /dev/urandom >"$src/c/small-$i"
done

"$zc" --quiet --budget 24M --threads 4 "$src" "$tmp/out" | tee "$tmp/log"
n=0
while IFS= read -r -d '' f; do
	rel=${f#"$src"/}
	"$zstd" -q -d -c "$tmp/out/$rel.zst" | cmp - "$f"
	n=$((n + 1))
done < <(find "$src" -type f -print0)
[ "$n" = 44 ] || { echo "check: $n files, expected 44" >&2; exit 1; }
grep -q "44 of 44 files" "$tmp/log" || { echo "check: summary" >&2; exit 1; }

# A deadline of 1 s on a tree that takes longer at level 19 on 1 thread.
for i in $(seq 1 8); do head -c 4000000 /dev/urandom >"$src/c/big-$i"; done
rc=0
"$zc" --quiet --level 19 --threads 1 --deadline 1 "$src" "$tmp/out2" >"$tmp/log2" || rc=$?
[ "$rc" = 124 ] || { cat "$tmp/log2"; echo "check: deadline exit $rc" >&2; exit 1; }
# Whatever was written is complete: every output decompresses.
while IFS= read -r -d '' z; do
	"$zstd" -q -t "$z"
done < <(find "$tmp/out2" -name '*.zst' -print0)

# SIGINT: the batch stops, the summary prints, exit 130.
rc=0
"$zc" --quiet --level 19 --threads 1 "$src" "$tmp/out3" >"$tmp/log3" &
pid=$!
sleep 0.5
kill -INT "$pid"
wait "$pid" || rc=$?
[ "$rc" = 130 ] || { cat "$tmp/log3"; echo "check: SIGINT exit $rc" >&2; exit 1; }
grep -q "stopped: Interrupt" "$tmp/log3" || { cat "$tmp/log3"; exit 1; }
echo "check: ok"
