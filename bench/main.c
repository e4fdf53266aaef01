/* main.c - ration-bench: W1-W5 of contract §8 for ration and its C peers.
 *
 *   ration-bench -w W1|W2|W3|W4|W5 -peer NAME [-n N] [-t T] [-k K]
 *                [-size S] [-budget B] [-spin S] [-pool P]
 *   ration-bench -calibrate [-target 200]   spin count for ~target ns
 *   ration-bench -spincheck -spin S         ns per spin(S) call
 *
 * Same flags, defaults and output lines as bench/peers/c/bench.c
 * ("W peer param=v ... metric=value unit"), one measurement per process
 * so peak RSS is clean. Peers:
 *   W1 W2   ration, c-posix-sem, c-wsem; W2 also futex-pingpong (t=2)
 *   W3      ration-group (group, limit K, on a pool of -pool threads,
 *           default K), ration-pool (raw pool of K threads),
 *           c-gthreadpool, c-pthread
 *   W4      ration-group (budget sem of B, weights 1+i%8, pool of K),
 *           c-gthreadpool+wsem
 *   W5      ration-pool (queue_cap = SIZE_MAX, K threads), c-gthreadpool
 *   A1      ration (account begin/end pairs), ration-group (group task
 *           with and without on_report): per-task accounting cost;
 *           ration-elastic (budget group, elastic off/on)
 *   W0      cacheline-rtt: one cache line's round trip between two
 *           threads, the yardstick for W2-W4 on this machine
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

long long bench_n = -1, bench_t = 2, bench_k = 8, bench_size = -1,
	  bench_budget = 16, bench_spin = -1, bench_pool_threads = -1;
const char *bench_w = "", *bench_peer = "";
char bench_params[256];
_Atomic long long bench_done;

double
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

long
peak_rss_kb(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return r.ru_maxrss;
}

long
cur_rss_kb(void)
{
	long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The peers' number format: 0, 1 or 2 decimals by magnitude. */
void
out(const char *metric, double v, const char *unit)
{
	int prec = v >= 1000 ? 0 : v >= 10 ? 1 : 2;
	printf("%s %s %s %s=%.*f %s\n", bench_w, bench_peer, bench_params,
	       metric, prec, v, unit);
	fflush(stdout);
}

_Noreturn void
die(const char *msg)
{
	fprintf(stderr, "ration-bench: %s (w=%s peer=%s)\n", msg, bench_w,
		bench_peer);
	exit(2);
}

void
task_done(void)
{
	atomic_fetch_add_explicit(&bench_done, 1, memory_order_relaxed);
}

void
check_done(void)
{
	if (atomic_load_explicit(&bench_done, memory_order_relaxed) != bench_n)
		die("not every task ran");
}

void
run_tasks(const bench_pool_t *p, int weights)
{
	p->start();
	double t0 = now_ns();
	for (long long i = 0; i < bench_n; i++)
		p->submit(1 + (intptr_t)(i % weights));
	p->wait();
	double dt = now_ns() - t0;
	check_done();
	p->stop();
	out("ns_per_task", dt / (double)bench_n, "ns");
	out("tasks_per_s", (double)bench_n / dt * 1e9, "tasks/s");
	out("peak_rss_kb", (double)peak_rss_kb(), "KiB");
}

/* ---- busy work: the same serial multiply-add chain as the peers ---- */

static volatile uint64_t sink;

__attribute__((noinline)) void
spin(long long n)
{
	uint64_t x = (uint64_t)n;
	for (long long i = 0; i < n; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

double
spin_call_ns(long long s)
{
	double best = 1e99;
	for (int r = 0; r < 3; r++) {
		double t0 = now_ns();
		for (int i = 0; i < 200000; i++)
			spin(s);
		double d = (now_ns() - t0) / 200000;
		if (d < best)
			best = d;
	}
	return best;
}

long long
calibrate(double target_ns)
{
	long long s = 64;
	for (int i = 0; i < 5; i++) /* fixed point */
		s = (long long)((double)s * target_ns / spin_call_ns(s) + 0.5);
	return s < 1 ? 1 : s;
}

static void
usage(void)
{
	fputs("usage: ration-bench -w W0..W5|A1 -peer NAME [-n N] [-t T] [-k "
	      "K] [-size S]\n"
	      "                    [-budget B] [-spin S] [-pool P]\n"
	      "       ration-bench -calibrate [-target NS] | -spincheck -spin "
	      "S\n"
	      "peers: W1/W2 ration c-posix-sem c-wsem, W2 futex-pingpong;\n"
	      "       W3 ration-group ration-pool c-gthreadpool c-pthread;\n"
	      "       W4 ration-group c-gthreadpool+wsem; W5 ration-pool "
	      "c-gthreadpool;\n"
	      "       A1 (accounting cost, issue #6) ration ration-group "
	      "ration-elastic;\n"
	      "       W0 (cache-line round trip) cacheline-rtt\n",
	      stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	bool do_calib = false, do_check = false;
	double target = 200;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-calibrate")) {
			do_calib = true;
			continue;
		}
		if (!strcmp(a, "-spincheck")) {
			do_check = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help") || i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "-w"))
			bench_w = v;
		else if (!strcmp(a, "-peer"))
			bench_peer = v;
		else if (!strcmp(a, "-n"))
			bench_n = atoll(v);
		else if (!strcmp(a, "-t"))
			bench_t = atoll(v);
		else if (!strcmp(a, "-k"))
			bench_k = atoll(v);
		else if (!strcmp(a, "-size"))
			bench_size = atoll(v);
		else if (!strcmp(a, "-budget"))
			bench_budget = atoll(v);
		else if (!strcmp(a, "-spin"))
			bench_spin = atoll(v);
		else if (!strcmp(a, "-pool"))
			bench_pool_threads = atoll(v);
		else if (!strcmp(a, "-target"))
			target = atof(v);
		else
			usage();
	}
	if (do_calib) {
		printf("%lld\n", calibrate(target));
		return 0;
	}
	if (do_check) {
		printf("spincheck ration-bench spin=%lld ns_per_call=%.1f ns\n",
		       bench_spin, spin_call_ns(bench_spin));
		return 0;
	}
	if (bench_t < 1 || bench_k < 1 || bench_budget < 1)
		die("-t, -k and -budget must be >= 1");
	if (!strcmp(bench_w, "W0"))
		return w0_rtt();
	if (!strcmp(bench_w, "W1"))
		return w1_sem();
	if (!strcmp(bench_w, "W2"))
		return w2_contended();
	if (!strcmp(bench_w, "W3"))
		return w3_tasks();
	if (!strcmp(bench_w, "W4"))
		return w4_weighted();
	if (!strcmp(bench_w, "W5"))
		return w5_backlog();
	if (!strcmp(bench_w, "A1"))
		return a1_account();
	die("unknown workload");
}
