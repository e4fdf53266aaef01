#!/bin/sh
# tools/tests/run_tests.sh - integration tests of ration-run, real children.
#
#     RATION_RUN=build/tools/ration-run MEMHOG=build/tools/memhog \
#         sh tools/tests/run_tests.sh budget
#
# One scenario per call (meson runs them in parallel, one test each).
# Exit 0 pass, 1 fail, 77 skip. Timing checks leave wide margins: the
# suite must pass on 2 loaded cores under ASan.
set -u

RR=${RATION_RUN:?set RATION_RUN to the ration-run binary}
HOG=${MEMHOG:?set MEMHOG to the memhog helper}
MAKE_PROG=${MAKE_PROG:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/ration-run-test.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
# Tests must not see a jobserver of the make that may be running meson.
unset MAKEFLAGS MFLAGS

fail() {
	echo "FAIL: $*" >&2
	for f in out err jl; do
		[ -f "$f" ] && { echo "--- $f:" >&2; cat "$f" >&2; }
	done
	exit 1
}

now() { date +%s.%N; }
elapsed() { echo "$1 $(now)" | awk '{ printf "%.3f", $2 - $1 }'; }
# lt A B: A < B as decimals.
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# From joblog files: "maxjobs maxweight" running at once. A job counts at
# the start of another if it started no later and had not ended 2 us
# before (the joblog's rounding). Logged intervals lie inside the time the
# claims were held, so an overlap here is a real one.
concurrency() {
	awk -F '\t' 'FNR == 1 { next }
		$4 == -1 && $5 == 0 { next }
		{ n++; s[n] = $2; e[n] = $2 + $3; w[n] = $6 }
		END {
			mc = 0; mw = 0
			for (i = 1; i <= n; i++) {
				c = 0; sw = 0
				for (j = 1; j <= n; j++)
					if (s[j] <= s[i] && s[i] < e[j] - 0.000002) {
						c++; sw += w[j]
					}
				if (c > mc) mc = c
				if (sw > mw) mw = sw
			}
			printf "%d %d\n", mc, mw
		}' "$@"
}

# Field $2 of joblog line with Seq $1.
jl_field() { awk -F '\t' -v s="$1" -v f="$2" 'FNR > 1 && $1 == s { print $f }' jl; }

t_usage() {
	"$RR" --help >out 2>err || fail "--help exit $?"
	for opt in --arg-file --job-file --max-args --null --memory --jobs \
		--retries --joblog-format --resume --resume-failed --keep-order \
		--weight --learn --timeout \
		--grace --halt --joblog --tag --line-buffer --progress \
		--no-progress --report --no-jobserver --no-cgroup --dry-run --help \
		--version --overrun --cap-margin --strict-weights \
		--alone-if-too-big --ramp --head-start --no-head-start --backfill; do
		grep -q -- "$opt" out || fail "--help does not document $opt"
		# The man page spells each dash as \-.
		man_opt=$(printf '%s' "$opt" | sed 's/-/\\\\-/g')
		[ -z "${MAN_PAGE:-}" ] || grep -q -- "$man_opt" "$MAN_PAGE" ||
			fail "the man page does not document $opt"
	done
	"$RR" --version >out || fail "--version"
	for bad in "--bogus" "-j abc" "-j -1" "--timeout soon" "--halt sometimes" \
		"-m 12Q" "-w lots" "--overrun never" \
		"--cap-margin -1" "--backfill x" "-w 8*size({}" "-N 0" "4G echo" \
		"--job-file jobs echo" "echo :::+ a" "-N 2 echo ::: a ::: b" \
		"--resume" "--retries x" "--joblog-format csv" "--timeout 0%" \
		"-k --line-buffer"; do
		# shellcheck disable=SC2086
		echo true | "$RR" $bad >out 2>err
		rc=$?
		[ "$rc" -eq 64 ] || fail "'$bad': exit $rc, want 64"
		grep -q "ration-run" err || fail "'$bad': no message"
	done
	# Nothing to do is success.
	: | "$RR" >out 2>err || fail "empty input: exit $?"
	printf '\n   \n' | "$RR" >out 2>err || fail "blank input: exit $?"
	echo PASS
}

t_bad_input() {
	printf 'touch ran1\n4X\ttouch ran2\n1G\t  \ntouch ran3\n' >jobs
	"$RR" -a jobs -m 8G >out 2>err
	rc=$?
	[ "$rc" -eq 64 ] || fail "bad lines: exit $rc, want 64"
	grep -q "line 2: cannot parse weight '4X'" err ||
		fail "no message naming line 2"
	grep -q "line 3: empty command" err || fail "no message naming line 3"
	[ -e ran1 ] || [ -e ran3 ] && fail "jobs ran despite bad input"

	# A weight before a space, not a TAB, is not a program called 4G.
	printf 'touch ran1\n4G touch ran2\n' >jobs
	"$RR" -a jobs -m 8G >out 2>err
	rc=$?
	[ "$rc" -eq 64 ] || fail "weight before a space: exit $rc, want 64"
	grep -q "line 2: '4G' looks like a weight: put a TAB" err ||
		fail "weight before a space: message"
	[ -e ran1 ] || [ -e ran2 ] && fail "jobs ran despite a misplaced weight"
	# A command that merely starts with a digit still runs.
	printf '2>/dev/null touch ran3\n' | "$RR" >out 2>err ||
		fail "digit-led command: exit $?"
	[ -e ran3 ] || fail "digit-led command did not run"

	"$RR" -a does-not-exist >out 2>err
	rc=$?
	[ "$rc" -eq 64 ] || fail "missing file: exit $rc, want 64"
	grep -q "does-not-exist" err || fail "missing file not named"

	# Too heavy for the budget: that job fails, the others run.
	printf '20M\ttouch big\n1M\ttouch small1\ntouch small2\n' |
		"$RR" -m 10M --joblog jl >out 2>err
	rc=$?
	[ "$rc" -eq 1 ] || fail "weight above budget: exit $rc, want 1"
	grep -q "job 1 (line 1): weight 20M is above the memory budget 10M" err ||
		fail "above-budget message"
	[ -e big ] && fail "the too-heavy job ran"
	[ -e small1 ] && [ -e small2 ] || fail "the other jobs did not run"
	[ "$(jl_field 1 4)" = "-1" ] || fail "joblog exit of the rejected job"
	echo PASS
}

t_budget() {
	# 12 jobs of 8..32 MiB under 64 MiB: several fit at once, not all.
	: >jobs
	for mib in 32 16 8 24 16 32 8 24 16 8 32 16; do
		printf '%dM\t%s %d 0.25\n' "$mib" "$HOG" "$mib" >>jobs
	done
	"$RR" -a jobs -m 64M -j 8 --joblog jl --report >out 2>err ||
		fail "exit $?"
	[ "$(grep -c . jl)" -eq 13 ] || fail "joblog lines"
	[ "$(head -n 1 jl)" = "$(printf 'Seq\tStart\tRuntime\tExitval\tSignal\tDeclared\tMeasured\tCommand')" ] ||
		fail "joblog header: $(head -n 1 jl)"
	set -- $(concurrency jl)
	[ "$2" -le $((64 << 20)) ] || fail "declared at once $2 > budget"
	[ "$1" -ge 2 ] || fail "never ran 2 jobs at once (max $1)"
	# Measured peaks are real: each job touched its declared MiB.
	awk -F '\t' 'NR > 1 && $7 < $6 { bad = 1 } END { exit bad }' jl ||
		fail "a measured peak is below what the job touched"
	grep -q "memory budget 64M" err || fail "report"
	echo PASS "(max $1 jobs, $(($2 >> 20)) MiB declared at once)"
}

t_fifo() {
	# -j1: strictly in input order.
	seq 1 8 | sed 's/^/echo /' | "$RR" -j 1 --joblog jl >out 2>err ||
		fail "exit $?"
	[ "$(tr '\n' ' ' <out)" = "1 2 3 4 5 6 7 8 " ] || fail "order $(cat out)"
	# --backfill 0: a big job at the head is not overtaken: job 3 (10M)
	# would fit next to job 1 but must wait behind job 2 (60M).
	printf '60M\tsleep 0.6\n60M\tsleep 0.1\n10M\tsleep 0.1\n10M\ttrue\n' |
		"$RR" -m 100M -j 4 --backfill 0 --joblog jl >out 2>err ||
		fail "exit $?"
	s1=$(jl_field 1 2); r1=$(jl_field 1 3)
	s2=$(jl_field 2 2); s3=$(jl_field 3 2)
	e1=$(awk -v s="$s1" -v r="$r1" 'BEGIN { printf "%.6f", s + r }')
	lt "$s2" "$e1" && fail "job 2 started before job 1 ended"
	lt "$s3" "$s2" && fail "job 3 overtook job 2"
	echo PASS
}

t_timeout() {
	# 0.8 s leave job 2's shell time to set its trap even on a loaded host.
	printf 'sleep 10\ntrap "" TERM; sleep 10\necho fine\n' >jobs
	t0=$(now)
	"$RR" -a jobs -j 3 --timeout 0.8s --grace 0.4s --joblog jl >out 2>err
	rc=$?
	t=$(elapsed "$t0")
	[ "$rc" -eq 2 ] || fail "exit $rc, want 2 (two timed out)"
	lt "$t" 5 || fail "took ${t}s"
	[ "$(jl_field 1 5)" = 15 ] || fail "job 1 not ended by SIGTERM"
	[ "$(jl_field 2 5)" = 9 ] || fail "job 2 (ignores TERM) not SIGKILLed"
	lt "$(jl_field 2 3)" 1.1 && fail "SIGKILL before the grace period"
	[ "$(jl_field 3 4)" = 0 ] || fail "job 3 should succeed"
	grep -q "job 1 (line 1) timed out" err || fail "timeout message"
	grep -qx fine out || fail "output of job 3"
	echo PASS "(${t}s)"
}

t_halt() {
	# Job 3 ignores SIGTERM: it gets SIGKILL after the grace period. Job 1
	# fails only after 0.8 s, so job 3's shell has set its trap by then.
	printf 'sleep 0.8; exit 3\nsleep 10\ntrap "" TERM; sleep 10\ntouch ran4\ntouch ran5\n' >jobs
	t0=$(now)
	"$RR" -a jobs -j 3 --halt now,fail=1 --grace 0.5 --joblog jl >out 2>err
	rc=$?
	t=$(elapsed "$t0")
	[ "$rc" -eq 1 ] || fail "now: exit $rc, want 1"
	lt "$t" 4 || fail "now: took ${t}s, running jobs not stopped"
	[ -e ran4 ] || [ -e ran5 ] && fail "now: jobs started after the halt"
	[ "$(jl_field 2 5)" = 15 ] || fail "now: job 2 not SIGTERMed"
	[ "$(jl_field 3 5)" = 9 ] || fail "now: job 3 (ignores TERM) not SIGKILLed"
	lt "$(jl_field 3 3)" 0.5 && fail "now: SIGKILL before the grace period"
	grep -q "halting after 1 failed job" err || fail "now: message"
	grep -q "2 jobs not started" err || fail "now: not-started count"

	# soon: running jobs finish, nothing new starts.
	printf 'sleep 0.1; exit 4\nsleep 1; echo finished\ntouch ran3\n' >jobs
	"$RR" -a jobs -j 2 --halt soon,fail=1 --joblog jl >out 2>err
	rc=$?
	[ "$rc" -eq 1 ] || fail "soon: exit $rc, want 1"
	grep -qx finished out || fail "soon: running job was stopped"
	[ -e ran3 ] && fail "soon: job 3 started after the halt"

	# success=1: stop at the first success.
	printf 'true\nsleep 10\n' | "$RR" -j 2 --halt now,success=1 \
		--grace 0.2 >out 2>err
	rc=$?
	[ "$rc" -eq 0 ] || fail "success: exit $rc, want 0"
	echo PASS "(${t}s)"
}

t_exit_codes() {
	printf 'true\nfalse\nexit 7\ntrue\nkill -9 $$\n' | "$RR" >out 2>err
	rc=$?
	[ "$rc" -eq 3 ] || fail "3 failures: exit $rc"
	seq 1 5 | sed 's/^/exit 0 #/' | "$RR" >out 2>err || fail "all ok: $?"
	seq 1 105 | sed 's/^/exit 1 #/' | "$RR" -j 8 >out 2>err
	rc=$?
	[ "$rc" -eq 101 ] || fail "105 failures: exit $rc, want 101"
	echo PASS
}

t_tag() {
	lines='for i in $(seq 60); do echo "line $i"; sleep 0.005; done'
	printf '%s\n%s\n%s\n' "$lines" "$lines" "$lines" |
		"$RR" -j 3 --tag >out 2>err || fail "exit $?"
	[ "$(wc -l <out)" -eq 180 ] || fail "line count $(wc -l <out)"
	# Every line tagged, and each job's lines in one block.
	awk -F '\t' '
		$1 !~ /^[123]$/ || $2 !~ /^for i in/ || $3 !~ /^line / { bad = 1 }
		$1 != prev { blocks++; prev = $1 }
		END { exit bad || blocks != 3 }' out ||
		fail "interleaved or untagged output"
	# stderr is passed on too, whole; an unterminated last line is ended.
	printf 'echo a >&2; printf b\n' | "$RR" --tag >out 2>err ||
		fail "stderr exit $?"
	[ "$(cat out)" = "$(printf '1\techo a >&2; printf b\tb')" ] ||
		fail "unterminated stdout line"
	grep -q "^1	echo a >&2; printf b	a$" err || fail "tagged stderr"
	echo PASS
}

t_line_buffer() {
	printf 'echo a; sleep 1.4; echo b\nsleep 0.6; echo c\n' |
		"$RR" -j 2 --line-buffer >out 2>err || fail "exit $?"
	[ "$(tr '\n' ' ' <out)" = "a c b " ] ||
		fail "line-buffer order: $(tr '\n' ' ' <out)"
	# Without it, job 1's output comes whole after job 2's.
	printf 'echo a; sleep 1; echo b\nsleep 0.2; echo c\n' |
		"$RR" -j 2 >out 2>err || fail "exit $?"
	[ "$(tr '\n' ' ' <out)" = "c a b " ] ||
		fail "whole-output order: $(tr '\n' ' ' <out)"
	cmd='printf "x\ny"'
	printf '%s\n' "$cmd" | "$RR" --line-buffer --tag >out 2>err
	printf '1\t%s\tx\n1\t%s\ty\n' "$cmd" "$cmd" >want
	cmp -s out want || fail "partial last line: $(cat out)"
	echo PASS
}

# make_styles: whether make has --jobserver-style (4.4+: fifo default).
make_styles() { "$MAKE_PROG" --help 2>/dev/null | grep -q jobserver-style; }

t_jobserver_pipe() {
	[ -n "$MAKE_PROG" ] || { echo "SKIP: no make"; exit 77; }
	style=
	make_styles && style=--jobserver-style=pipe
	seq 1 4 | sed 's/^/sleep 0.3 #/' >jobs
	# Three jobs that must all overlap: long enough for a loaded host.
	seq 1 3 | sed 's/^/sleep 0.8 #/' >jobs3
	cat >Makefile <<EOF
flags:
	+@echo "\$\$MAKEFLAGS" >flags
all: a b
a:
	+@"$RR" -j 4 -a jobs --joblog jl.a
b:
	+@"$RR" -j 4 -a jobs --joblog jl.b
one:
	+@"$RR" -j 8 -a jobs3 --joblog jl.one
plain:
	@"$RR" -j 4 -a jobs --joblog jl.plain 2>warn
EOF
	"$MAKE_PROG" $style -s -j2 flags >out 2>err || fail "make flags: $?"
	grep -q -- "--jobserver-auth=[0-9]*,[0-9]*" flags ||
		fail "make did not use a pipe jobserver: $(cat flags)"
	"$MAKE_PROG" $style -s -j2 all >out 2>err || fail "make -j2: $?"
	set -- $(concurrency jl.a jl.b)
	[ "$1" -le 2 ] || fail "make -j2 ran $1 jobs at once"
	[ "$1" -eq 2 ] || fail "make -j2 never ran 2 at once"
	"$MAKE_PROG" $style -s -j3 one >out 2>err || fail "make -j3: $?"
	set -- $(concurrency jl.one)
	[ "$1" -eq 3 ] || fail "make -j3 with one recipe ran $1 at once, want 3"
	# Without '+' make 4.3 closes the pipe: run one at a time, say why.
	"$MAKE_PROG" $style -s -j3 plain >out 2>err || fail "make plain: $?"
	set -- $(concurrency jl.plain)
	if grep -q "unavailable" warn; then
		[ "$1" -eq 1 ] || fail "no jobserver access but $1 at once"
	else
		[ "$1" -le 3 ] || fail "plain recipe ran $1 at once"
	fi
	echo PASS
}

t_jobserver_fifo() {
	mkfifo fifo || fail mkfifo
	# Hold the FIFO open, as make does, with 2 tokens: -j3.
	exec 3<>fifo
	printf '++' >&3
	seq 1 4 | sed 's/^/sleep 0.6 #/' >jobs
	MAKEFLAGS="-j3 --jobserver-auth=fifo:$T/fifo" "$RR" -j 8 -a jobs \
		--joblog jl >out 2>err || fail "exit $?"
	set -- $(concurrency jl)
	[ "$1" -eq 3 ] || fail "ran $1 at once with 2 tokens + implicit, want 3"
	# Both tokens came back, as the same bytes.
	got=$(timeout 2 dd bs=1 count=2 <&3 2>/dev/null)
	[ "$got" = "++" ] || fail "tokens not returned: '$got'"
	exec 3>&-
	# The same with a real make -j3 when it has the fifo style (4.4+).
	real="no make with --jobserver-style=fifo: simulated FIFO only"
	if [ -n "$MAKE_PROG" ] && make_styles; then
		cat >Makefile <<EOF
one:
	+@echo "\$\$MAKEFLAGS" >flags
	+@"$RR" -j 8 -a jobs --joblog jl.make
EOF
		"$MAKE_PROG" --jobserver-style=fifo -s -j3 one >out 2>err ||
			fail "make -j3: $?"
		grep -q -- "--jobserver-auth=fifo:" flags ||
			fail "make did not use a fifo: $(cat flags)"
		set -- $(concurrency jl.make)
		[ "$1" -eq 3 ] || fail "make -j3 (fifo) ran $1 at once, want 3"
		real="real make -j3 with a fifo too"
	fi
	# A jobserver that is gone: warn, run one at a time.
	MAKEFLAGS="-j3 --jobserver-auth=fifo:$T/nonexistent" "$RR" -j 8 \
		-a jobs --joblog jl >out 2>err || fail "gone: exit $?"
	grep -q "unavailable" err || fail "no warning for a missing FIFO"
	set -- $(concurrency jl)
	[ "$1" -eq 1 ] || fail "missing FIFO: $1 at once, want 1"
	echo PASS "($real)"
}

t_learn() {
	printf '%s 24 0\n' "$HOG" >jobs
	"$RR" -a jobs --learn state >out 2>err || fail "first run: $?"
	peak=$(awk -F '\t' '$1 == "peak" { print $2 }' state)
	[ "${peak:-0}" -ge $((24 << 20)) ] || fail "learned peak '$peak'"
	"$RR" -a jobs --learn state --dry-run >out 2>err || fail "dry run"
	grep -q "	learned	" out || fail "weight not learned: $(cat out)"
	# The learned weight is used: above a 16M budget the job fails.
	"$RR" -a jobs --learn state -m 16M >out 2>err
	[ $? -eq 1 ] || fail "learned weight not enforced"
	grep -q "above the memory budget" err || fail "message"
	# A declared weight wins over the learned one.
	printf '1M\t%s 24 0\n' "$HOG" | "$RR" --learn state --dry-run >out
	grep -q "	declared	" out || fail "declared should win"
	# A damaged table stops the run before anything runs, and is kept.
	head -c 30 state >bad
	cp bad bad.orig
	echo "touch ran" | "$RR" --learn bad >out 2>err
	rc=$?
	[ $rc -eq 64 ] || fail "damaged learn file: exit $rc"
	grep -q "not a learn table, or damaged" err || fail "damaged: message"
	[ -e ran ] && fail "a job ran despite the damaged learn file"
	cmp -s bad bad.orig || fail "damaged learn file rewritten"
	echo PASS
}

t_signal() {
	printf 'echo $$ >pid1; exec sleep 30\necho $$ >pid2; exec sleep 30\n' |
		"$RR" -j 2 --grace 0.3 >out 2>err &
	rr=$!
	i=0
	while [ ! -s pid1 ] || [ ! -s pid2 ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || fail "jobs did not start"
		sleep 0.05
	done
	t0=$(now)
	kill -TERM $rr
	wait $rr
	rc=$?
	[ "$rc" -eq 143 ] || fail "exit $rc, want 143"
	lt "$(elapsed "$t0")" 3 || fail "slow to stop"
	kill -0 "$(cat pid1)" 2>/dev/null && fail "job 1 survived"
	kill -0 "$(cat pid2)" 2>/dev/null && fail "job 2 survived"
	echo PASS
}

# on_tty CMD...: run CMD with stdout and stderr on a new pseudo-terminal,
# copy what it wrote there to stdout; CMD's exit status. Python's pty
# module if there is python3, else script(1), which with stdin at EOF now
# and then loses what the command wrote early (util-linux 2.38).
on_tty() {
	if command -v python3 >/dev/null; then
		python3 -c '
import os, pty, subprocess, sys
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=s,
                     stderr=s)
os.close(s)
while True:
    try:
        d = os.read(m, 65536)
    except OSError:
        break
    if not d:
        break
    sys.stdout.buffer.write(d)
sys.exit(p.wait())' "$@"
	elif command -v script >/dev/null; then
		cmd=
		for a in "$@"; do cmd="$cmd '$a'"; done
		script -qec "$cmd" /dev/null </dev/null 2>&1
	else
		echo "PASS (no python3 or script(1): tty untested)"
		exit 0
	fi
}

t_progress() {
	# The first line is drawn at the start, the last at the end: no
	# timing to wait for.
	printf '10M\tsleep 0.2\n10M\tsleep 0.4\n' >jobs
	"$RR" -m 64M -j 2 --progress -a jobs >out 2>err || fail "exit $?"
	grep -q "done, .* running, .* queued | mem .*/64M | ETA" err ||
		fail "no progress line"
	grep -q "2/2 done.*took" err || fail "no final line"
	printf 'true\n' | "$RR" >out 2>err
	[ -s err ] && fail "progress without --progress and not a tty"
	# On a terminal: on by default, redrawn in place.
	on_tty "$RR" -m 64M -j 2 -a jobs >tty || fail "on a tty: exit $?"
	esc=$(printf '\033')
	grep -q "${esc}\[K" tty || fail "tty: no line redrawn in place"
	grep -q "done, .* running, .* queued | mem .*/64M | ETA" tty ||
		fail "tty: no progress line: $(cat -v tty)"
	grep -q "2/2 done.*took" tty || fail "tty: no final line"
	echo true >jobs
	on_tty "$RR" --no-progress -a jobs >tty ||
		fail "--no-progress on a tty: exit $?"
	grep -q "done" tty && fail "--no-progress on a tty: $(cat -v tty)"
	echo PASS
}

t_defaults() {
	# -n prints the limits it would run under on stderr.
	unset OMP_NUM_THREADS
	echo true | "$RR" -n >out 2>err || fail "dry run: exit $?"
	grep -q "limits: .* $(nproc) job slots* (nproc)" err ||
		fail "-j default is not nproc ($(nproc)): $(cat err)"
	got=$(sed -n 's/.*limits: memory \([0-9]*\) bytes.*80% of MemAvailable.*/\1/p' err)
	avail=$(awk '/^MemAvailable:/ { print $2 * 1024 }' /proc/meminfo)
	# MemAvailable moves between the two reads: 15% of slack.
	awk -v g="${got:-0}" -v a="$avail" \
		'BEGIN { r = g / (0.8 * a); exit !(r > 0.85 && r < 1.15) }' ||
		fail "-m default $got is not 80% of MemAvailable $avail"
	echo true | "$RR" -n -m 2G -j 3 >out 2>err || fail "dry run: exit $?"
	grep -q "limits: memory 2147483648 bytes (2G), 3 job slots," err ||
		fail "-m/-j: $(cat err)"
	# -w weights the lines without a weight (0 is none); declared wins.
	printf '1M\ttrue\ntrue\n0\ttrue\n' >jobs
	"$RR" -n -w 5M -a jobs >out 2>err || fail "-w: exit $?"
	printf '1\t1M\tdeclared\ttrue\n2\t5M\tdefault\ttrue\n3\t5M\tdefault\ttrue\n' >want
	cmp -s out want || fail "-w: $(cat out)"
	# -w is enforced, not only printed: 3 x 40M under 100M, 2 at a time.
	seq 1 3 | sed 's/^/sleep 0.6 #/' |
		"$RR" -w 40M -m 100M -j 3 --joblog jl >out 2>err || fail "exit $?"
	set -- $(concurrency jl)
	[ "$1" -eq 2 ] || fail "-w 40M -m 100M ran $1 at once, want 2"
	echo PASS
}

t_measure() {
	# A job over its declared weight: both in the joblog, warned at the end.
	printf '1M\t%s 24 0\n' "$HOG" | "$RR" -m 1G --joblog jl >out 2>err ||
		fail "exit $?"
	grep -q "used more memory than declared; worst: job 1 (line 1) declared 1M" err ||
		fail "no under-declared warning"
	[ "$(jl_field 1 6)" -eq $((1 << 20)) ] || fail "declared column"
	[ "$(jl_field 1 7)" -ge $((24 << 20)) ] || fail "measured column"
	# Two 16M processes in one job: both are measured, by a cgroup per
	# job or by the process group. --report says which measure and why.
	printf '%s 16 0.5 & %s 16 0.5; wait\n' "$HOG" "$HOG" |
		"$RR" --report --joblog jl >out 2>err || fail "exit $?"
	m=$(jl_field 1 7)
	[ "$m" -ge $((32 << 20)) ] || fail "peak $m < 32M"
	if grep -q "measured: cgroup v[12] memory cgroup per job" err; then
		dir=$(sed -n 's/.*memory cgroup per job, in //p' err)
		[ -d "$dir" ] && fail "cgroup $dir left behind"
		how=$(sed -n 's/.*measured: \(cgroup v[12]\).*/\1/p' err)
	elif grep -q "measured: RSS of each job's process group (no cgroup: .*)" err; then
		how="process group; $(sed -n 's/.*(no cgroup: \(.*\))$/\1/p' err)"
	else
		fail "--report does not say how jobs are measured"
	fi
	# Without a cgroup: the process group's summed RSS, sampled.
	printf '%s 16 0.5 & %s 16 0.5; wait\n' "$HOG" "$HOG" |
		"$RR" --no-cgroup --report --joblog jl >out 2>err || fail "exit $?"
	grep -q "measured: RSS of each job's process group (no cgroup: --no-cgroup)" err ||
		fail "--no-cgroup"
	m=$(jl_field 1 7)
	[ "$m" -ge $((32 << 20)) ] || fail "process group peak $m < 32M"
	echo PASS "($how)"
}

# cgroup_or_skip: skip unless jobs get a memory cgroup each here.
cgroup_or_skip() {
	echo true | "$RR" --report >out 2>err || fail "probe: exit $?"
	grep -q "measured: cgroup v[12]" err || {
		echo "SKIP: no per-job memory cgroup: $(sed -n 's/.*(no cgroup: \(.*\))$/\1/p' err)"
		exit 77
	}
}

# ends_before A B: job A ended no later than job B started (+ slack s).
starts_after_end() {
	awk -F '\t' -v a="$1" -v b="$2" -v slack="${3:-0}" '
		FNR > 1 && $1 == a && $5 == 0 { e = $2 + $3 }
		FNR > 1 && $1 == b { s = $2 }
		END { exit !(s >= e - slack) }' jl
}

t_backfill() {
	# Job 2 (60M) waits for job 1; job 3 (10M) fits now and leaves room
	# for job 2, so it starts first; job 4 (50M) would keep job 2 out
	# and does not. Job 3 outlives job 1: job 2 must still start when
	# job 1 ends (no delay from the job that passed it).
	printf '60M\tsleep 1\n60M\tsleep 0.1\n10M\tsleep 2\n50M\tsleep 0.1\n10M\tsleep 0.1\n' >jobs
	"$RR" -a jobs -m 100M -j 8 --joblog jl >out 2>err || fail "exit $?"
	s2=$(jl_field 2 2); s3=$(jl_field 3 2); s4=$(jl_field 4 2)
	lt "$s3" "$s2" || fail "job 3 did not backfill"
	lt "$s4" "$s2" && fail "job 4 (50M) passed the head and could keep it out"
	starts_after_end 1 2 || fail "job 2 started before job 1 ended"
	# Started within 0.5 s of job 1's end: not delayed by job 3.
	awk -F '\t' 'FNR > 1 && $1 == 1 { e = $2 + $3 } FNR > 1 && $1 == 2 { s = $2 }
		END { exit !(s - e < 0.5) }' jl || fail "job 2 delayed after job 1 ended"
	set -- $(concurrency jl)
	[ "$2" -le $((100 << 20)) ] || fail "declared at once $2 > budget"
	# The bound: --backfill 1 lets only job 3 pass, not job 5.
	"$RR" -a jobs -m 100M -j 8 --backfill 1 --joblog jl >out 2>err ||
		fail "exit $?"
	s2=$(jl_field 2 2); s3=$(jl_field 3 2); s5=$(jl_field 5 2)
	lt "$s3" "$s2" || fail "--backfill 1: job 3 did not backfill"
	lt "$s5" "$s2" && fail "--backfill 1: job 5 passed too"
	echo PASS
}

t_live() {
	# Job 1 declares 10M but runs a pipeline of two 32M processes. Live
	# measurement counts 64M+ for it, so job 3 (50M), next after job 2
	# frees its slot, must wait for job 1's end; by declarations alone
	# it would start at 0.5 s.
	printf '10M\t%s 32 2 | %s 32 2\n10M\tsleep 0.5\n50M\ttrue\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --joblog jl >out 2>err || fail "exit $?"
	starts_after_end 1 3 0.05 || fail "job 3 started while job 1 held 64M"
	grep -q "job 1 (line 1) used .*, more than its weight 10M" err ||
		fail "no line for the job over its weight"
	m=$(jl_field 1 7)
	# Within 10% of the processes' summed peaks: twice one of them,
	# measured alone the same way (a sanitizer build uses more).
	printf '%s 32 0.5\n' "$HOG" | "$RR" --joblog jl >out 2>err ||
		fail "exit $?"
	one=$(jl_field 1 7)
	awk -v m="$m" -v o="$one" 'BEGIN { exit !(m >= 1.8 * o && m <= 2.2 * o) }' ||
		fail "pipeline measured $m, one process $one"
	echo PASS "(pipeline $((m >> 20)) MiB, one process $((one >> 20)) MiB)"
}

t_overrun_wait() {
	# The default: the liar runs to its end, loudly; exit 0 unless
	# --strict-weights.
	printf '10M\t%s 40 0.3\n' "$HOG" >jobs
	"$RR" -a jobs -m 100M --joblog jl >out 2>err || fail "exit $?"
	grep -q "warning: 1 job used more memory than declared" err ||
		fail "no warning"
	"$RR" -a jobs -m 100M --strict-weights >out 2>err
	[ $? -eq 1 ] || fail "--strict-weights: exit not 1"
	grep -q "failed: --strict-weights" err || fail "--strict-weights message"
	echo PASS
}

t_overrun_suspend() {
	# Job 1 (oldest, honest) and job 2 (declares 10M, uses 90M) pass the
	# 100M budget together: job 2 is stopped until job 1 ends. Alone it
	# would end after 0.3 s.
	printf '24M\t%s 20 1.5\n10M\t%s 90 0.3\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun suspend --report --joblog jl \
		>out 2>err || fail "exit $?"
	grep -q "job 2 (line 2) uses .* weight 10M; budget full: stopped" err ||
		fail "job 2 not stopped"
	grep -q "1 stopped for lack of room" err || fail "report"
	awk -F '\t' 'FNR > 1 { e[$1] = $2 + $3 } END { exit !(e[2] >= e[1]) }' jl ||
		fail "job 2 was not held back until job 1 ended"
	echo PASS
}

t_overrun_requeue() {
	# No cap in the way (no cgroup): the sampler finds 80M + 30M over
	# the 100M budget and kills job 1, the most over its weight, though
	# job 2 is the youngest; job 1 comes back with 100M.
	printf '10M\t%s 80 1\n30M\t%s 30 1.5\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --no-cgroup \
		--report --joblog jl >out 2>err || fail "exit $?"
	grep -q "job 1 (line 1) killed: it used .*, weight 10M, and the budget was full; requeued with weight" err ||
		fail "job 1 not killed and requeued"
	[ "$(awk -F '\t' 'FNR > 1 && $1 == 2' jl | wc -l)" -eq 1 ] ||
		fail "job 2 (youngest, honest) was killed"
	[ "$(awk -F '\t' 'FNR > 1 && $1 == 1 && $5 == 9' jl | wc -l)" -eq 1 ] ||
		fail "joblog: job 1's killed attempt"
	[ "$(awk -F '\t' 'FNR > 1 && $1 == 1 && $4 == 0' jl | wc -l)" -eq 1 ] ||
		fail "joblog: job 1 did not succeed at last"
	grep -q "1 job killed, 1 requeued" err || fail "report"
	echo PASS
}

t_overrun_kill() {
	printf '10M\t%s 80 1\n30M\t%s 30 1.5\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun kill --cap-margin 100 \
		--joblog jl >out 2>err
	[ $? -eq 1 ] || fail "exit not 1"
	grep -q "job 1 (line 1) killed: it used" err || fail "no message"
	[ "$(jl_field 2 4)" = 0 ] || fail "job 2 should succeed"
	echo PASS
}

t_oom() {
	cgroup_or_skip
	# --overrun kill: capped at 10M x 1.25 in its own cgroup, a job
	# using 60M is OOM-killed there and fails, reported as an OOM kill;
	# a plain SIGKILL is not taken for one.
	printf '10M\t%s 60 0.2\nkill -9 $$\n' "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun kill --report --joblog jl >out 2>err
	[ $? -eq 2 ] || fail "kill: exit not 2"
	grep -q "job 1 (line 1) OOM-killed in its cgroup at its cap 12.5M (weight 10M)" err ||
		fail "kill: no OOM kill reported"
	grep -q "job 2 (line 2) OOM" err && fail "kill: SIGKILL taken for OOM"
	grep -q "1 OOM kill in a job's own cgroup" err || fail "kill: report"
	[ "$(jl_field 1 5)" = 9 ] || fail "kill: joblog signal of the OOM kill"
	echo PASS
}

# waits_at_cap CASE W: job 2 (10M, uses 60M) after job 1 (W, uses
# W - 4M for 1 s) in a 100M budget under --overrun requeue: job 2 must
# run once, never killed.
waits_at_cap() {
	printf '%s\t%s %d 1\n10M\t%s 60 0.2\n' "$2" "$HOG" $((${2%M} - 4)) \
		"$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --report --joblog jl \
		>out 2>err || fail "$1: exit $?"
	grep -q "overruns:" err && fail "$1: a job was killed"
	[ "$(awk -F '\t' 'FNR > 1 && $1 == 2' jl | wc -l)" -eq 1 ] ||
		fail "$1: job 2 ran more than once"
}

t_cap_grow() {
	cgroup_or_skip
	v1=no
	grep -q "measured: cgroup v1" err && v1=yes
	# --overrun requeue with room in the budget: the cap grows with the
	# job, its claim with it; on v1 the job waits at its cap meanwhile,
	# so it is never killed.
	printf '10M\t%s 60 0.2\n10M\tsleep 0.2\n' "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --report --joblog jl \
		>out 2>err || fail "room: exit $?"
	[ "$(jl_field 1 4)" = 0 ] || fail "room: job 1 failed"
	[ "$(jl_field 1 7)" -ge $((60 << 20)) ] || fail "room: job 1 did not grow"
	if [ $v1 = yes ]; then
		grep -q "overruns:" err && fail "room: a job was killed on v1"
		[ "$(awk -F '\t' 'FNR > 1 && $1 == 1' jl | wc -l)" -eq 1 ] ||
			fail "room: job 1 ran more than once"
	fi
	[ $v1 = yes ] || { echo "PASS (v2: no waiting at a cap)"; return; }
	# No room (job 1 holds 85M): job 2 waits at its cap, its room
	# reserved ahead of new jobs, and grows once job 1 has ended.
	waits_at_cap full 85M
	awk -F '\t' 'FNR > 1 { e[$1] = $2 + $3 } END { exit !(e[2] >= e[1]) }' jl ||
		fail "full: job 2 did not wait for job 1"
	# On v1 the margin is room like any other: with job 1 holding 89M
	# of 100M, job 2 (10M) is not given its 12.5M cap meanwhile (that
	# would put real use past the budget, and was a kill); it waits at
	# 10M and is never killed.
	waits_at_cap "no margin" 89M
	# Stuck (every running job waits at its cap, no room will come):
	# the job is killed and requeued, heavier than the 30M budget it
	# runs alone, and fits at last.
	printf '10M\t%s 60 0.2\n' "$HOG" >jobs
	"$RR" -a jobs -m 30M --overrun requeue --report --joblog jl \
		>out 2>err || fail "stuck: exit $?"
	grep -q "job 1 (line 1) killed: .*; requeued with weight" err ||
		fail "stuck: not requeued"
	[ "$(awk -F '\t' 'FNR > 1 && $1 == 1 && $4 == 0' jl | wc -l)" -eq 1 ] ||
		fail "stuck: job 1 did not succeed at last"
	echo PASS "(cgroup v1: $v1)"
}

t_ramp() {
	cgroup_or_skip
	grep -q "measured: cgroup v1" err ||
		{ echo "SKIP: claims follow caps only where caps wait (cgroup v1)"; exit 77; }
	# Three 40M jobs in 100M. By weights job 3 would wait for job 1 or
	# 2 to end. Job 2 uses only 10M, so it claims its first cap (16M),
	# and the oldest job's 40M plus that leaves job 3 room for its
	# whole weight: it starts at once.
	printf '40M\tsleep 1\n40M\t%s 10 1\n40M\t%s 10 0.3\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 3 --overrun requeue --ramp --report --joblog jl \
		>out 2>err || fail "exit $?"
	awk -F '\t' 'FNR > 1 { s[$1] = $2; e[$1] = $2 + $3 }
		END { exit !(s[3] < e[1] && s[3] < e[2]) }' jl ||
		fail "job 3 waited for job 1 or 2"
	grep -q "overruns:" err && fail "a job was killed"
	# Job 2 starts to use 35M only after job 3 (35M) took its room:
	# job 2 waits at its cap (24M: the rest is the oldest job's) until
	# job 1 ends, then grows; no kill, no deadlock, never more claimed
	# than the budget.
	printf '40M\t%s 35 1\n40M\tsleep 0.3 && %s 35 0.2\n40M\t%s 35 1\n' \
		"$HOG" "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 3 --overrun requeue --ramp --report --joblog jl \
		>out 2>err || fail "stall: exit $?"
	grep -q "overruns:" err && fail "stall: a job was killed"
	[ "$(awk -F '\t' 'FNR > 1 && $4 == 0' jl | wc -l)" -eq 3 ] ||
		fail "stall: not every job succeeded once"
	[ "$(jl_field 2 7)" -ge $((35 << 20)) ] || fail "stall: job 2 did not grow"
	grep -Eq "claimed at once [^ ]+ \((100|[0-9]{1,2})%" err ||
		fail "stall: claimed more than the budget"
	# Job 1 lies (20M, uses 90M); job 2 (50M) starts to use 45M after
	# job 1 took what was free. A liar's need is unknown, so it counts
	# as the youngest: job 2, within its weight, grows first and ends,
	# then job 1 gets the room; counted oldest, both would wait at their
	# caps for each other and job 1 be killed.
	printf '20M\t%s 90 0.2\n50M\tsleep 0.3 && %s 45 0.3\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --ramp --report --joblog jl \
		>out 2>err || fail "liar: exit $?"
	grep -q "overruns:" err && fail "liar: a job was killed"
	[ "$(awk -F '\t' 'FNR > 1 && $4 == 0' jl | wc -l)" -eq 2 ] ||
		fail "liar: not every job succeeded once"
	echo PASS
}

t_head_start() {
	# Job 2 (60M) waits for job 1 (70M, 2 s) in a 100M budget. Without
	# a cgroup it waits for job 1 to end, as before.
	printf '70M\t%s 66 2\n60M\t%s 50 0.2\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --head-start --no-cgroup \
		--joblog jl >out 2>err || fail "no cgroup: exit $?"
	starts_after_end 1 2 || fail "no cgroup: job 2 started early"
	cgroup_or_skip
	grep -q "measured: cgroup v1" err ||
		{ echo "SKIP: a head start needs caps that wait (cgroup v1)"; exit 77; }
	# With caps that wait it starts at once, capped at the 30M free,
	# waits there (66M + 50M would pass the budget), and gets the rest
	# when job 1 ends: never killed, never more than its weight.
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --head-start --report \
		--joblog jl >out 2>err || fail "exit $?"
	awk -F '\t' 'FNR > 1 { s[$1] = $2; e[$1] = $2 + $3 }
		END { exit !(s[2] < e[1] && e[2] > e[1]) }' jl ||
		fail "job 2 did not start early and wait for job 1"
	grep -q "overruns:" err && fail "a job was killed"
	[ "$(awk -F '\t' 'FNR > 1 && $4 == 0' jl | wc -l)" -eq 2 ] ||
		fail "not every job succeeded once"
	[ "$(jl_field 2 7)" -ge $((50 << 20)) ] || fail "job 2 did not grow"
	grep -q "1 job started early" err || fail "no head start reported"
	grep -Eq "claimed at once [^ ]+ \((100|[0-9]{1,2})%" err ||
		fail "claimed more than the budget"
	# --no-head-start: job 2 waits for job 1, as before.
	printf '70M\t%s 66 1\n60M\t%s 50 0.2\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 2 --overrun requeue --no-head-start \
		--joblog jl >out 2>err || fail "off: exit $?"
	starts_after_end 1 2 || fail "off: job 2 started early"
	# Before the end of the input the free room is backfill's: with job
	# 3 (50M, too big to pass it) behind it, job 2 waits for job 1.
	printf '70M\t%s 66 1\n60M\t%s 50 0.2\n50M\ttrue\n' "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 3 --overrun requeue --head-start --report \
		--joblog jl >out 2>err || fail "not at the end: exit $?"
	starts_after_end 1 2 || fail "not at the end: job 2 started early"
	# A liar (job 2, 20M, grows to 50M) waits at its cap with its room
	# reserved when job 3 (60M) starts early: the older liar's step
	# comes first, job 3 is never taken for a job over its weight, and
	# every job ends once, none killed.
	printf '30M\t%s 28 1.5\n20M\tsleep 0.3 && %s 50 0.5\n60M\t%s 55 0.3\n' \
		"$HOG" "$HOG" "$HOG" >jobs
	"$RR" -a jobs -m 100M -j 3 --overrun requeue --head-start --report \
		--joblog jl >out 2>err || fail "liar: exit $?"
	grep -q "overruns:" err && fail "liar: a job was killed"
	[ "$(awk -F '\t' 'FNR > 1 && $4 == 0' jl | wc -l)" -eq 3 ] ||
		fail "liar: not every job succeeded once"
	echo PASS
}

t_alone() {
	# Heavier than the budget: fails, unless it may run alone.
	printf '200M\tsleep 0.5\n10M\tsleep 0.5\n' >jobs
	"$RR" -a jobs -m 100M -j 2 >out 2>err
	[ $? -eq 1 ] || fail "too big: exit not 1"
	"$RR" -a jobs -m 100M -j 2 --alone-if-too-big --joblog jl >out 2>err ||
		fail "alone: exit $?"
	set -- $(concurrency jl)
	[ "$1" -eq 1 ] || fail "the big job did not run alone ($1 at once)"
	echo PASS
}

# The commands ration-run would run for "$@" (its dry run, field 4 on).
rr_cmds() { "$RR" -n -m 1G "$@" 2>/dev/null | cut -f4-; }

t_template() {
	# parallel's replacement strings, quoting and sources, pinned here so
	# the test means the same where GNU parallel is not installed.
	[ "$(rr_cmds echo {.} {/} {//} {/.} {#} ::: a/b.c/d.tar.gz .hidden dir/)" = \
"echo a/b.c/d.tar d.tar.gz a/b.c d.tar 1
echo '' .hidden . '' 2
echo dir/ '' . '' 3" ] || fail "replacement strings: $(rr_cmds echo {.} {/} {//} {/.} {#} ::: a/b.c/d.tar.gz .hidden dir/)"
	[ "$(rr_cmds echo {} ::: "a b" "it's" "")" = "echo 'a b'
echo 'it'\"'\"'s'
echo ''" ] || fail "quoting"
	[ "$(rr_cmds echo ::: a b ::: 1 2)" = "echo a 1
echo a 2
echo b 1
echo b 2" ] || fail "two sources, appended"
	[ "$(rr_cmds -N2 echo {2} {1} ::: a b c)" = "echo b a
echo  c" ] || fail "-N2"
	[ "$(printf 'x y\0z\0' | rr_cmds -0 echo {})" = "echo 'x y'
echo z" ] || fail "-0"
	# It really runs them: one word each, whatever is in it.
	"$RR" echo x{}x ::: 'a  b' '$HOME' >out 2>err || fail "run: $?"
	sort out >out.s
	[ "$(cat out.s)" = 'x$HOMEx
xa  bx' ] || fail "ran: $(cat out)"
	# Arguments from stdin, -a and :::: are never run as commands.
	printf 'touch pwned1\n' >args
	printf 'touch pwned2\n' | "$RR" echo >out 2>err || fail "stdin args: $?"
	"$RR" -a args echo >>out 2>err || fail "-a args: $?"
	"$RR" echo :::: args >>out 2>err || fail ":::: args: $?"
	[ -e pwned1 ] || [ -e pwned2 ] && fail "an argument ran as a command"
	[ "$(sort out | tr '\n' ' ')" = "touch pwned1 touch pwned1 touch pwned2 " ] ||
		fail "arguments: $(cat out)"
	# Same expansion as GNU parallel on the same input.
	command -v parallel >/dev/null || { echo "PASS (no GNU parallel to compare)"; return; }
	for args in "echo {} ::: a.b 'x y' \"q'q\" '' é a=b" \
		"echo {.} {/} {//} {/.} {#} ::: a/b.c/d.tgz /abs.x noext .h dir/ ./x / a//b a/b/" \
		"echo {1} {2/} {2.} ::: a b ::: c/d.e f" "echo ::: a b ::: 'c d'" \
		"-N2 echo {} {1} {2} {3} ::: a b c" "-N3 echo ::: a b c d" \
		"'echo {} | wc -c; echo {{}}' ::: 'x y'" "echo pre{}post {1x} ::: z"; do
		eval "set -- $args"
		want=$(parallel -k --dry-run "$@" </dev/null)
		got=$(rr_cmds "$@" </dev/null)
		[ "$want" = "$got" ] || fail "parallel --dry-run $args:
$want
ration-run:
$got"
	done
	printf 'l1\n\nl 3\n' >lines
	for opt in "" "-N2"; do
		want=$(parallel -k --dry-run $opt echo <lines)
		got=$(rr_cmds $opt echo <lines)
		[ "$want" = "$got" ] || fail "stdin $opt: $want / $got"
	done
	echo PASS
}

t_weight_expr() {
	head -c 1000 /dev/zero >f1
	head -c 3000 /dev/zero >f2
	"$RR" -n -m 1G -w '8*size({})' gzip ::: f1 f2 >out 2>err || fail "$?"
	[ "$(cut -f2,3 out | tr '\n' ' ')" = "7.8K	default 23.4K	default " ] ||
		fail "8*size({}): $(cat out)"
	"$RR" -n -m 1G -w 'max(64M, 2 * size({1}) + 1K) - 0' cat ::: f1 >out 2>err ||
		fail "max(): $?"
	[ "$(cut -f2 out)" = 64M ] || fail "max(): $(cat out)"
	"$RR" -n -m 1G -w '{2}' sleep ::: 0 ::: 4M 1.5G >out 2>err || fail "{2}"
	[ "$(cut -f2 out | tr '\n' ' ')" = "4M 1.5G " ] || fail "{2}: $(cat out)"
	# The weight is enforced: 8 x 3000 bytes do not fit in 20K.
	"$RR" -m 20K -w '8*size({})' touch ::: f1 f2 >out 2>err
	rc=$?
	[ $rc -eq 1 ] || fail "computed weight above the budget: exit $rc"
	# A file that cannot be weighed stops the run before anything ran.
	"$RR" -m 1G -w '8*size({})' touch {}.ran ::: f1 nofile >out 2>err
	rc=$?
	[ $rc -eq 64 ] || fail "size() of a missing file: exit $rc"
	grep -q "job 2 .*size(nofile): No such file" err || fail "message"
	[ -e f1.ran ] && fail "a job ran before the bad weight was found"
	echo PASS
}

t_retries() {
	# Fails twice, then succeeds: three attempts, one joblog line.
	"$RR" --retries 3 --joblog jl \
		'echo try >>n; [ $(wc -l <n) -ge 3 ] || { echo out; exit 2; }; echo ok {}' \
		::: x >out 2>err || fail "exit $?"
	[ "$(wc -l <n)" -eq 3 ] || fail "$(wc -l <n) attempts, want 3"
	[ "$(cat out)" = "ok x" ] || fail "output of failed attempts shown: $(cat out)"
	[ "$(grep -c '^1	' jl)" -eq 1 ] || fail "one joblog line per job"
	grep -q "attempt 3 of 3" err || fail "retry message"
	# Never more than N in all; the last failure counts.
	rm -f n
	"$RR" --retries 2 'echo {} >>n; exit 5' ::: x >out 2>err
	rc=$?
	[ $rc -eq 1 ] || fail "exit $rc after the last attempt failed"
	[ "$(wc -l <n)" -eq 2 ] || fail "$(wc -l <n) attempts, want 2"
	echo PASS
}

t_resume() {
	# Seq is the input position: job 2 fails, 1 and 3 succeed.
	cmd='echo {} >>ran; exit {}'
	"$RR" -j 1 --joblog jl "$cmd" ::: 0 3 0 >out 2>err
	[ $? -eq 1 ] || fail "first run"
	[ "$(cut -f1,4 jl | tr '\t\n' ': ')" = "Seq:Exitval 1:0 2:3 3:0 " ] ||
		fail "joblog: $(cat jl)"
	: >ran
	# --resume: only the jobs the log lacks (4), appended, Seq kept.
	"$RR" -j 1 --joblog jl --resume "$cmd" ::: 0 3 0 4 >out 2>err
	[ $? -eq 1 ] || fail "resume exit"
	[ "$(cat ran)" = 4 ] || fail "--resume ran: $(cat ran)"
	[ "$(tail -n 1 jl | cut -f1,4)" = "4	4" ] || fail "appended: $(cat jl)"
	[ "$(grep -c ^Seq jl)" -eq 1 ] || fail "header written twice"
	# --resume-failed: the failed ones again (2 and 4), then the new 5.
	: >ran
	"$RR" -j 1 --joblog jl --resume-failed "$cmd" ::: 0 0 0 0 0 >out 2>err ||
		fail "resume-failed exit $?"
	[ "$(tr '\n' ' ' <ran)" = "0 0 0 " ] || fail "--resume-failed ran: $(cat ran)"
	[ "$(tail -n 3 jl | cut -f1 | tr '\n' ' ')" = "2 4 5 " ] ||
		fail "resume-failed Seqs: $(cat jl)"
	# Nothing left: nothing runs.
	: >ran
	"$RR" --joblog jl --resume-failed "$cmd" ::: 0 0 0 0 0 >out 2>err ||
		fail "all done: exit $?"
	[ -s ran ] && fail "a finished job ran again"
	# GNU parallel's columns, and its joblog is resumable by us.
	"$RR" -j 1 --joblog pjl --joblog-format parallel "$cmd" ::: 0 7 >out 2>err
	[ "$(head -n 1 pjl)" = "$(printf 'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand')" ] ||
		fail "parallel header: $(head -n 1 pjl)"
	[ "$(awk -F '\t' 'NR == 3 { print $1, $2, $7, $8, $9 }' pjl)" = "2 : 7 0 echo 7 >>ran; exit 7" ] ||
		fail "parallel line: $(cat pjl)"
	"$RR" --joblog pjl --resume "$cmd" ::: 0 >out 2>err
	[ $? -eq 64 ] || fail "a parallel joblog read as ration's"
	if command -v parallel >/dev/null; then
		parallel -j 1 --joblog gpjl "$cmd" ::: 0 9 >/dev/null 2>&1
		: >ran
		"$RR" --joblog gpjl --joblog-format parallel --resume-failed \
			"$cmd" ::: 0 9 >out 2>err
		[ "$(cat ran)" = 9 ] || fail "resume from parallel's log: $(cat ran)"
	fi
	echo PASS
}

t_keep_order() {
	"$RR" -j 4 -k 'sleep {}; echo {}' ::: 0.6 0.2 0.4 0 >out 2>err ||
		fail "exit $?"
	[ "$(tr '\n' ' ' <out)" = "0.6 0.2 0.4 0 " ] || fail "order: $(cat out)"
	# Without -k: as they end.
	"$RR" -j 4 'sleep {}; echo {}' ::: 0.6 0 >out 2>err || fail "exit $?"
	[ "$(tr '\n' ' ' <out)" = "0 0.6 " ] || fail "unordered: $(cat out)"
	# A job that never ran does not hold the others back.
	printf '50M\tsleep 0.3; echo a\n200M\techo b\n1M\techo c\n' |
		"$RR" -m 100M -k >out 2>err
	[ "$(tr '\n' ' ' <out)" = "a c " ] || fail "with a rejected job: $(cat out)"
	echo PASS
}

t_timeout_pct() {
	# Three 0.1 s jobs set the median; 300% of it times the 10 s job out.
	t0=$(now)
	"$RR" -j 1 --timeout 300% --grace 1 --joblog jl 'sleep {}' \
		::: 0.1 0.1 0.1 10 0.1 >out 2>err
	rc=$?
	t=$(elapsed "$t0")
	[ $rc -eq 1 ] || fail "exit $rc, want 1"
	# SIGTERM; SIGKILL too if a loaded host did not run it within --grace.
	case "$(jl_field 4 5)" in 15 | 9) ;; *) fail "job 4 not stopped" ;; esac
	[ "$(jl_field 5 4)" = 0 ] || fail "job 5 did not run after it"
	lt "$t" 5 || fail "took ${t}s"
	grep -q "job 4 (line 4) timed out" err || fail "message"
	# Until a job has finished there is no limit.
	"$RR" --timeout 50% 'sleep {}' ::: 0.3 >out 2>err ||
		fail "the first job timed out: $?"
	echo PASS "(${t}s)"
}

# wait_file F: until F exists (10 s at most).
wait_file() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}

t_stream() {
	# Jobs start as lines arrive: the writer keeps the pipe open until
	# the first job has run.
	mkfifo in
	"$RR" -j 2 touch {}.ran <in >out 2>err &
	rr=$!
	exec 3>in
	echo a >&3
	wait_file a.ran || fail "no job started while stdin was open"
	printf 'job\tline\n' >&3
	wait_file 'job	line.ran' || fail "second line"
	exec 3>&-
	wait $rr || fail "exit $?"
	# Job lines too; a bad line stops the input there, exit 64.
	mkfifo in2
	"$RR" <in2 >out 2>err &
	rr=$!
	exec 3>in2
	echo 'touch b.ran' >&3
	wait_file b.ran || fail "job line did not start while stdin was open"
	printf '4G touch c.ran\ntouch d.ran\n' >&3
	exec 3>&-
	wait $rr
	rc=$?
	[ $rc -eq 64 ] || fail "bad streamed line: exit $rc, want 64"
	[ -e c.ran ] || [ -e d.ran ] && fail "a job after the bad line ran"
	grep -q "line 2: '4G' looks like a weight" err || fail "message"
	# A signal ends the wait for input at once.
	mkfifo in3
	"$RR" true <in3 >out 2>err &
	rr=$!
	exec 3>in3
	sleep 0.3
	kill -TERM $rr
	t0=$(now)
	wait $rr
	rc=$?
	exec 3>&-
	[ $rc -eq 143 ] || fail "SIGTERM while reading: exit $rc, want 143"
	lt "$(elapsed "$t0")" 5 || fail "slow to stop"
	echo PASS
}

case "${1:-}" in
usage | bad_input | template | weight_expr | retries | resume | keep_order | \
timeout_pct | stream | budget | fifo | timeout | halt | exit_codes | tag | \
line_buffer | jobserver_pipe | jobserver_fifo | learn | signal | progress | \
defaults | measure | backfill | live | overrun_wait | overrun_suspend | \
overrun_requeue | overrun_kill | oom | cap_grow | ramp | head_start | alone)
	"t_$1" ;;
*)
	echo "usage: $0 SCENARIO" >&2
	exit 2 ;;
esac
