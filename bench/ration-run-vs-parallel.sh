#!/usr/bin/env bash
# bench/ration-run-vs-parallel.sh - ration-run against GNU parallel
# --memfree and xargs -P, inside a memory-limited box.
#
#   bench/ration-run-vs-parallel.sh              ROUNDS=1, ~3 minutes
#   ROUNDS=3 SEED=7 bench/ration-run-vs-parallel.sh
#   SETS=liar RUNNERS="ration-run parallel" bench/ration-run-vs-parallel.sh
#   RUNNERS="ration-run ration-run+--ramp parallel" bench/ration-run-vs-parallel.sh
#
# The experiment: JOBS jobs that each allocate and touch N MiB and hold
# it for T s (N log-uniform in 52..1400 MiB, T in 0.5..2.5 s, seeded),
# each declaring N + 16 MiB. The liar set is the same with a seeded 20%
# of the jobs (among those of at most 600 MiB) touching 2-4x what they
# declare. Every runner runs inside one memory cgroup, the box, limited
# to BOX (4 GiB) so the OOM killer is real, with a budget of BUDGET
# (3 GiB):
#
#   ration-run  -m 3G -j 8 --overrun requeue $RR_OPTS (weights from the
#               job list; RR_OPTS none by default); a runner
#               ration-run+OPT,OPT... adds those options (the ratios in
#               the table are then per variant), e.g.
#               ration-run+--no-head-start for the rule before decision 023
#   parallel    -j 8 --memfree 1G (honest), + --retries 3 (liars); it reads
#               the box's free memory, not the host's (see box_awk)
#   xargs       -P 8
#
# Measured per run: makespan (wall clock), peak real use (the box's own
# high-water mark, memory.max_usage_in_bytes / memory.peak, the runner
# itself included), mean real use (sampled every 100 ms), OOM kills of the
# box outside a job's own cgroup (the box's oom_kill count; with v2, less
# those ration-run reports inside its jobs' cgroups, which v2 counts in
# the box too), and jobs lost (a job that
# never completed: each one touches a marker file when it succeeds).
# The runs are interleaved (round 1 of everything, then round 2...) so
# that a busy shared machine hits every runner alike, and the ratios are
# taken within each round. Then one two-stage pipeline checks ration-run's
# Measured against the sum of its processes' own peaks (VmHWM).
#
# Needs root on a host with a writable memory cgroup (v2, or v1 as on a
# hybrid host); without one it prints why and exits 77 (skipped).
# Output: a Markdown table on stdout; raw rows in $OUT/raw.tsv (with the
# load average at the end of each run), ration-run's joblog and stderr
# of each run in $OUT/rr-SET[VARIANT]-ROUND.{jl,err}, parallel's joblog
# in $OUT/par-SET-ROUND.jl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RR=${RATION_RUN:-$ROOT/build/tools/ration-run}
ROUNDS=${ROUNDS:-1}
SETS=${SETS:-honest liar}
RUNNERS=${RUNNERS:-ration-run parallel xargs}
SEED=${SEED:-1}
JOBS=${JOBS:-32}
BUDGET_MIB=${BUDGET_MIB:-3072}
BOX_MIB=${BOX_MIB:-4096}
SLOTS=${SLOTS:-8}
RR_OPTS=${RR_OPTS-}
OUT=${OUT:-$ROOT/build/bench-run}

skip() { echo "SKIP: $*" >&2; exit 77; }
[ -x "$RR" ] || skip "no ration-run at $RR (meson compile -C build, or set RATION_RUN)"
command -v parallel >/dev/null || skip "GNU parallel is not installed"
command -v cc >/dev/null || skip "no C compiler for the job program"

mkdir -p "$OUT"
T=$(mktemp -d "${TMPDIR:-/tmp}/rr-bench.XXXXXX")
BOX=
cleanup() {
	[ -n "$BOX" ] && [ -d "$BOX" ] && {
		for p in $(cat "$BOX/cgroup.procs" 2>/dev/null); do
			kill -9 "$p" 2>/dev/null || true
		done
		sleep 0.2
		find "$BOX" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
		rmdir "$BOX" 2>/dev/null || true
	}
	rm -rf "$T"
}
trap cleanup EXIT

# The job: touch MIB MiB, hold it SECONDS, then (with PEAKFILE set) write
# its own resident peak (VmHWM, KiB) there.
cat >"$T/hog.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	size_t n = (size_t)atol(argv[1]) << 20;
	/* volatile: the stores must happen, though nothing reads them. */
	volatile char *p = malloc(n);
	char line[256];
	for (size_t i = 0; p && i < n; i += 4096)
		p[i] = 1;
	usleep((useconds_t)(atof(argv[2]) * 1e6));
	const char *pf = getenv("PEAKFILE");
	FILE *s = pf ? fopen("/proc/self/status", "r") : NULL;
	while (s && fgets(line, sizeof(line), s))
		if (strncmp(line, "VmHWM:", 6) == 0) {
			FILE *o = fopen(pf, "a");
			if (o) { fputs(line + 6, o); fclose(o); }
		}
	return p == NULL;
}
EOF
cc -O2 -o "$T/hog" "$T/hog.c" || skip "cannot compile the job program"
HOG=$T/hog

# --- the box: a memory cgroup of our own, v2 or v1 -------------------------
own_v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
own_v1=$(sed -n 's/^[0-9]*:[^:]*\bmemory\b[^:]*://p' /proc/self/cgroup)
v1_mnt=$(awk '$9 == "cgroup" && $NF ~ /(^|,)memory(,|$)/ { print $5; exit }' /proc/self/mountinfo)
v2_mnt=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
if [ -n "$v1_mnt" ] && [ -n "$own_v1" ]; then
	BOX=$v1_mnt${own_v1%/}/rr-bench.$$
	F_LIMIT=memory.limit_in_bytes F_PEAK=memory.max_usage_in_bytes
	F_USE=memory.usage_in_bytes F_EVENTS=memory.oom_control
	CGV=v1
elif [ -n "$v2_mnt" ] && [ -n "$own_v2" ] &&
	grep -qw memory "$v2_mnt${own_v2%/}/cgroup.subtree_control" 2>/dev/null; then
	BOX=$v2_mnt${own_v2%/}/rr-bench.$$
	F_LIMIT=memory.max F_PEAK=memory.peak F_USE=memory.current
	F_EVENTS=memory.events
	CGV=v2
else
	skip "no writable memory cgroup here (cgroup v1 memory or a v2 subtree with memory delegated)"
fi
mkdir "$BOX" 2>/dev/null || { BOX=; skip "cannot create a memory cgroup (need root / delegation)"; }
echo $((BOX_MIB << 20)) >"$BOX/$F_LIMIT" || skip "cannot set $F_LIMIT"
# No swap in the box: over the limit means the OOM killer, as on the
# machine the issue measured on.
[ "$CGV" = v1 ] && { echo $((BOX_MIB << 20)) >"$BOX/memory.memsw.limit_in_bytes"; } 2>/dev/null || true
[ "$CGV" = v2 ] && { echo 0 >"$BOX/memory.swap.max"; } 2>/dev/null || true

oom_count() { awk '$1 == "oom_kill" { print $2 }' "$BOX/$F_EVENTS"; }
reset_peak() {
	if [ "$CGV" = v1 ]; then echo 0 >"$BOX/$F_PEAK"; else echo reset >"$BOX/$F_PEAK" 2>/dev/null || true; fi
}

# parallel --memfree reads /proc/meminfo through awk; this awk answers
# that one question with the box's free memory, so parallel sees the box
# as its machine (without it, it would see the host's 24 GiB).
mkdir "$T/shim"
REAL_AWK=$(command -v awk)
cat >"$T/shim/awk" <<EOF
#!/bin/sh
for last; do :; done
case "\$*" in
*MemFree*/proc/meminfo*)
	lim=\$(cat "$BOX/$F_LIMIT"); use=\$(cat "$BOX/$F_USE")
	echo \$(( (lim - use) / 1024 )); exit 0 ;;
esac
exec "$REAL_AWK" "\$@"
EOF
chmod +x "$T/shim/awk"

# --- the job sets -------------------------------------------------------
# gen SET: lines "DECLARED_MIB ACTUAL_MIB SECONDS", seeded.
gen() {
	awk -v seed="$SEED" -v n="$JOBS" -v liars="$1" 'BEGIN {
		srand(seed)
		for (i = 1; i <= n; i++) {
			mib = int(exp(log(52) + rand() * (log(1400) - log(52))))
			t = 0.5 + 2 * rand()
			lie = rand(); f = 2 + 2 * rand()
			act = mib
			# 20% of all jobs, drawn among the 74% of at most 600 MiB
			# (a liar must fit the budget at 4x).
			if (liars && lie < 0.27 && mib <= 600)
				act = int(mib * f)
			printf "%d %d %.2f\n", mib + 16, act, t
		}
	}'
}
gen 0 >"$T/honest.spec"
gen 1 >"$T/liar.spec"
for set in honest liar; do
	awk -v hog="$HOG" -v d="$T/done" '{
		printf "%dM\t%s %d %s && touch %s/%d\n", $1, hog, $2, $3, d, NR
	}' "$T/$set.spec" >"$T/$set.rr"
	cut -f 2 "$T/$set.rr" >"$T/$set.cmds"
done
nliars=$(awk '$2 > $1' "$T/liar.spec" | wc -l)

# --- one run ------------------------------------------------------------
# run SET RUNNER: prints "set runner makespan_s peak_mib mean_mib oom lost".
run() {
	local set=$1 who=$2 round=$3 cmdf=$T/$1.cmds
	rm -rf "$T/done" && mkdir "$T/done"
	reset_peak
	local oom0 t0 t1 rr_oom=0
	oom0=$(oom_count)
	: >"$T/samples"
	( while :; do cat "$BOX/$F_USE" >>"$T/samples"; sleep 0.1; done ) &
	local sampler=$!
	t0=$(date +%s.%N)
	case $who in
	ration-run*)
		local extra=() tag=${who#ration-run}
		[ -n "$tag" ] && IFS=, read -r -a extra <<<"${tag#+}"
		tag=$(printf '%s' "$tag" | tr -c 'A-Za-z0-9\n' _)
		local base=$OUT/rr-$set$tag-$round
		rm -f "$base.jl"
		# shellcheck disable=SC2086 # RR_OPTS: words, split on purpose
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$BOX" \
			"$RR" -m "${BUDGET_MIB}M" -j "$SLOTS" --overrun requeue \
			--report --no-progress -a "$T/$set.rr" \
			--joblog "$base.jl" $RR_OPTS "${extra[@]}" \
			>/dev/null 2>"$base.err" || true
		rr_oom=$(sed -n "s/.*overruns: \([0-9]*\) OOM kill.*/\1/p" "$base.err")
		rr_oom=${rr_oom:-0} ;;
	parallel)
		local retries=
		[ "$set" = liar ] && retries="--retries 3"
		# shellcheck disable=SC2086
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$BOX" \
			env PATH="$T/shim:$PATH" parallel -j "$SLOTS" --memfree 1G $retries \
			--joblog "$OUT/par-$set-$round.jl" \
			<"$cmdf" >/dev/null 2>"$T/par.err" || true ;;
	xargs)
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$BOX" \
			xargs -P "$SLOTS" -d '\n' -n 1 sh -c <"$cmdf" \
			>/dev/null 2>"$T/xargs.err" || true ;;
	esac
	t1=$(date +%s.%N)
	kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
	local peak oom lost mean
	peak=$(cat "$BOX/$F_PEAK")
	# v2's memory.events counts its descendants' OOM kills too, v1's
	# oom_control only the box's own.
	oom=$(( $(oom_count) - oom0 ))
	[ "$CGV" = v2 ] && oom=$((oom - rr_oom))
	lost=$(( JOBS - $(ls "$T/done" | wc -l) ))
	mean=$("$REAL_AWK" '{ s += $1; n++ } END { printf "%.0f", n ? s / n / 1048576 : 0 }' "$T/samples")
	printf '%s\t%s\t%.2f\t%.0f\t%s\t%s\t%s\t%s\n' "$set" "$who" \
		"$(echo "$t0 $t1" | "$REAL_AWK" '{ print $2 - $1 }')" \
		"$(echo "$peak" | "$REAL_AWK" '{ print $1 / 1048576 }')" "$mean" \
		"$oom" "$lost" "$rr_oom"
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, cgroup $CGV box ${BOX_MIB} MiB, budget ${BUDGET_MIB} MiB, $JOBS jobs, seed $SEED, $nliars liars, $ROUNDS round(s), ration-run options: ${RR_OPTS:-none}" >&2
printf 'round\tset\trunner\tmakespan_s\tpeak_mib\tmean_mib\tbox_oom\tlost\tjob_oom\tloadavg\n' >"$OUT/raw.tsv"
for round in $(seq 1 "$ROUNDS"); do
	for set in $SETS; do
		for who in $RUNNERS; do
			row=$(run "$set" "$who" "$round")
			printf '%s\t%s\t%s\n' "$round" "$row" "$(cut -d' ' -f1 /proc/loadavg)" |
				tee -a "$OUT/raw.tsv" >&2
		done
	done
done

# --- the pipeline check ---------------------------------------------------
rm -f "$T/peaks"
printf 'PEAKFILE=%s %s 300 1 | PEAKFILE=%s %s 200 1\n' \
	"$T/peaks" "$HOG" "$T/peaks" "$HOG" >"$T/pipe.rr"
sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$BOX" \
	"$RR" -m "${BUDGET_MIB}M" --joblog "$T/pipe.jl" -a "$T/pipe.rr" \
	>/dev/null 2>&1 || true
pipe_measured=$("$REAL_AWK" -F '\t' 'NR == 2 { print $7 }' "$T/pipe.jl")
pipe_sum=$("$REAL_AWK" '{ s += $1 * 1024 } END { print s }' "$T/peaks")

# --- the table ------------------------------------------------------------
"$REAL_AWK" -F '\t' -v budget="$BUDGET_MIB" -v pm="$pipe_measured" -v ps="$pipe_sum" \
	-v runners="$RUNNERS" '
NR == 1 { next }
{
	k = $2 SUBSEP $3
	n[k]++; mk[k] += $4; if ($5 > pk[k]) pk[k] = $5; mn[k] += $6
	oo[k] += $7; lo[k] += $8; jo[k] += $9
	ms[$1, $2, $3] = $4
	if ($1 > nr) nr = $1
}
END {
	print "| set | runner | makespan s | peak real use MiB | vs budget | mean use MiB | OOM kills (box) | jobs lost | OOM kills in own cgroup |"
	print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
	ns = split("honest liar", sets, " "); nw = split(runners, who, " ")
	for (s = 1; s <= ns; s++) for (w = 1; w <= nw; w++) {
		k = sets[s] SUBSEP who[w]
		if (!n[k]) continue
		printf "| %s | %s | %.1f | %.0f | %+.1f%% | %.0f | %d | %d | %s |\n",
			sets[s], who[w], mk[k] / n[k], pk[k],
			100 * (pk[k] - budget) / budget, mn[k] / n[k], oo[k], lo[k],
			who[w] ~ /^ration-run/ ? jo[k] : "-"
	}
	print ""
	for (s = 1; s <= ns; s++) for (w = 1; w <= nw; w++) {
		if (who[w] !~ /^ration-run/) continue
		line = ""
		for (r = 1; r <= nr; r++) {
			a = ms[r, sets[s], who[w]]; b = ms[r, sets[s], "parallel"]
			if (a && b) line = line sprintf(" %.2f", a / b)
		}
		if (line != "")
			printf "makespan ratio %s / parallel, %s set, per round:%s\n", who[w], sets[s], line
	}
	printf "pipeline (300 MiB | 200 MiB): ration-run measured %.0f MiB, processes'"'"' summed peaks %.0f MiB (%+.1f%%)\n",
		pm / 1048576, ps / 1048576, ps ? 100 * (pm - ps) / ps : 0
	print ""
	print "targets:"
	for (s = 1; s <= ns; s++) for (w = 1; w <= nw; w++) {
		k = sets[s] SUBSEP who[w]; p = sets[s] SUBSEP "parallel"
		if (who[w] !~ /^ration-run/ || !n[k]) continue
		printf "  %s, %s: peak <= budget + 5%%: %s; box OOM kills 0 and jobs lost 0: %s; makespan <= parallel: %s\n",
			sets[s], who[w], pk[k] <= budget * 1.05 ? "yes" : "NO",
			(oo[k] == 0 && lo[k] == 0) ? "yes" : "NO",
			!n[p] ? "-" : mk[k] / n[k] <= mk[p] / n[p] ? "yes" : "NO"
	}
	d = ps ? (pm - ps) / ps : 1
	printf "  pipeline measured within 10%%: %s\n", (d <= 0.1 && d >= -0.1) ? "yes" : "NO"
}' "$OUT/raw.tsv" | tee "$OUT/table.md"
