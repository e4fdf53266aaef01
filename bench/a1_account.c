/* a1_account.c - A1: the cost of per-task accounting (issue #6: < 100 ns).
 *
 *   ration-bench -w A1 -peer ration        [-n N]
 *       begin/end pairs on one thread, for each set of figures:
 *         what=wall        two ration_now() calls (the floor: a group reads
 *                          these anyway, for wait and run time)
 *         what=heap        ration_account_begin/end: wall + jemalloc peak
 *                          and allocated bytes (what a group with
 *                          on_report measures by default)
 *         what=heap+cpu    ration_account_begin_with(RATION_ACCOUNT_CPU):
 *                          adds two CLOCK_THREAD_CPUTIME_ID system calls
 *         what=give_back   a 1 MiB buffer malloc'd, touched and freed,
 *                          then what a budget_bytes group does at task
 *                          end (flush the thread cache, purge the arena);
 *         what=touch_1mib  the same without the give-back (its baseline)
 *       metric ns_per_task = ns of this thread's CPU time per begin+end
 *       pair (best of 3 loops; the give-back's madvise is CPU time too).
 *   ration-bench -w A1 -peer ration-group  [-n N]
 *       n empty tasks through a group on a 1-thread pool, without and with
 *       on_report (and with measure_cpu); the metric overhead_ns_per_task
 *       is the difference against the run without on_report. This one
 *       includes scheduling noise; the pair figures above are the clean
 *       measurement.
 *   ration-bench -w A1 -peer ration-elastic [-n N]
 *       the same empty tasks through a group with a (roomy) budget, and
 *       tasks that each make 100 malloc(64)/free pairs: elastic off, on
 *       (consume-only), and on with backpressure; the overhead per task
 *       and per malloc/free pair against elastic off
 *       (docs/elastic.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ration.h>

#include "bench.h"

static volatile int64_t a1_sink;

/* lib/internal/account.h; the bench links the static library. */
void ration__account_give_back(void);

static void
touch_1mib(void)
{
	/* Through a volatile pointer: the compiler may not drop the pair. */
	char *volatile p = malloc(1 << 20);
	if (p == NULL)
		die("malloc");
	for (int i = 0; i < 1 << 20; i += 4096)
		p[i] = (char)i;
	free(p);
}

/* The loop is timed on this thread's CPU clock, not the wall clock: on a
 * shared machine a wall-clock loop also counts the time the thread was
 * preempted (a loaded 2-vCPU VM showed 250 ns for two ration_now() calls
 * by wall clock). Two reads per loop of 10^5..10^6 pairs: negligible. */
static double
cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double
pairs(unsigned mode, long long n)
{
	ration_account_t a;
	ration_task_report_t r;
	double best = 1e99;

	for (int rep = 0; rep < 3; rep++) {
		double t0 = cpu_now_ns();
		for (long long i = 0; i < n; i++) {
			if (mode == 0) {
				int64_t s = ration_now();
				a1_sink = ration_now() - s;
			} else if (mode >= 3) {
				touch_1mib();
				if (mode == 3)
					ration__account_give_back();
			} else {
				ration_account_begin_with(
					&a, mode == 2 ? RATION_ACCOUNT_CPU : 0);
				ration_account_end(&a, &r);
				a1_sink = r.run_ns;
			}
		}
		double d = (cpu_now_ns() - t0) / (double)n;
		if (d < best)
			best = d;
	}
	return best;
}

#if BENCH_HAVE_GROUP
static void
a1_report(const ration_task_report_t *r, void *udata)
{
	(void)udata;
	a1_sink = r->peak_bytes;
}

static int
a1_task(ration_ctx_t *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	task_done();
	return 0;
}

#define A1_MALLOCS 100

static int
a1_alloc_task(ration_ctx_t *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	for (int i = 0; i < A1_MALLOCS; i++) {
		void *volatile m = malloc(64);
		free(m);
	}
	task_done();
	return 0;
}

/* ns per task of n tasks (@fn) through a group on a 1-thread pool; with
 * @budget, on a budget of 1 GiB (weight 1), elastic or not. */
static double
group_run_fn(long long n, ration_group_opts_t o, bool budget,
	     ration_group_fn fn)
{
	ration_pool_t *p;
	ration_group_t *g;
	ration_sem_t *s = NULL;
	if (ration_pool_new(&(ration_pool_opts_t){.threads = 1, .name = "a1"},
			    &p) != 0)
		die("ration_pool_new");
	if (budget && ration_sem_new((int64_t)1 << 30, NULL, &s) != 0)
		die("ration_sem_new");
	o.pool = p;
	o.budget = s;
	if (ration_group_new(NULL, &o, &g) != 0)
		die("ration_group_new");
	double t0 = now_ns();
	for (long long i = 0; i < n; i++)
		if (ration_group_go(g, 1, fn, NULL) != 0)
			die("ration_group_go");
	if (ration_group_wait(g) != 0)
		die("ration_group_wait");
	double d = (now_ns() - t0) / (double)n;
	ration_group_free(g);
	ration_pool_free(p);
	if (s != NULL)
		ration_sem_free(s);
	return d;
}

/* ns per task of n empty tasks through a group on a 1-thread pool. */
static double
group_run(long long n, bool report, bool cpu)
{
	ration_group_opts_t o = {.on_report = report ? a1_report : NULL,
				 .measure_cpu = cpu};
	return group_run_fn(n, o, false, a1_task);
}

/* Best of 3 for empty tasks ([0]) and allocating tasks ([1]); phase 0
 * elastic off, 1 elastic (consume-only), 2 elastic with backpressure. */
static void
elastic_phase(int phase, double t[2])
{
	t[0] = t[1] = 1e99;
	for (int rep = 0; rep < 3; rep++) {
		ration_group_opts_t o = {.elastic = phase > 0,
					 .backpressure = phase > 1,
					 .limit = RATION_SEM_MAX};
		double d = group_run_fn(bench_n, o, true, a1_task);
		t[0] = d < t[0] ? d : t[0];
		d = group_run_fn(bench_n / 10, o, true, a1_alloc_task);
		t[1] = d < t[1] ? d : t[1];
	}
}

static void
a1_elastic(void)
{
	double t[3][2];
	for (int p = 0; p < 3; p++)
		elastic_phase(p, t[p]);
	for (int p = 0; p < 3; p++) {
		snprintf(bench_params, sizeof bench_params,
			 "task=empty elastic=%d backpressure=%d jemalloc=%d",
			 p > 0, p > 1, ration_account_available() ? 1 : 0);
		out("ns_per_task", t[p][0], "ns");
		if (p > 0)
			out("overhead_ns_per_task", t[p][0] - t[0][0], "ns");
		snprintf(bench_params, sizeof bench_params,
			 "task=%d_mallocs elastic=%d backpressure=%d",
			 A1_MALLOCS, p > 0, p > 1);
		out("ns_per_task", t[p][1], "ns");
		if (p > 0)
			out("overhead_ns_per_malloc_free",
			    (t[p][1] - t[0][1]) / A1_MALLOCS, "ns");
	}
}
#endif

int
a1_account(void)
{
	static const char *what[] = {"wall", "heap", "heap+cpu", "give_back",
				     "touch_1mib"};

	if (bench_n < 0)
		bench_n = 1000000;
	if (!strcmp(bench_peer, "ration")) {
		for (unsigned m = 0; m < 5; m++) {
			long long n = m >= 2 ? bench_n / 10
					     : bench_n; /* syscalls: fewer */
			snprintf(bench_params, sizeof bench_params,
				 "n=%lld what=%s jemalloc=%d", n, what[m],
				 ration_account_available() ? 1 : 0);
			out("ns_per_task", pairs(m, n), "ns");
		}
		return 0;
	}
#if BENCH_HAVE_GROUP
	if (!strcmp(bench_peer, "ration-group")) {
		double base = 1e99, heap = 1e99, cpu = 1e99;
		for (int rep = 0; rep < 3; rep++) { /* interleaved, best of 3 */
			double d = group_run(bench_n, false, false);
			base = d < base ? d : base;
			d = group_run(bench_n, true, false);
			heap = d < heap ? d : heap;
			d = group_run(bench_n / 10, true, true);
			cpu = d < cpu ? d : cpu;
		}
		snprintf(bench_params, sizeof bench_params, "report=0");
		out("ns_per_task", base, "ns");
		snprintf(bench_params, sizeof bench_params,
			 "report=1 what=heap jemalloc=%d",
			 ration_account_available() ? 1 : 0);
		out("ns_per_task", heap, "ns");
		out("overhead_ns_per_task", heap - base, "ns");
		snprintf(bench_params, sizeof bench_params,
			 "report=1 what=heap+cpu jemalloc=%d",
			 ration_account_available() ? 1 : 0);
		out("ns_per_task", cpu, "ns");
		out("overhead_ns_per_task", cpu - base, "ns");
		return 0;
	}
	if (!strcmp(bench_peer, "ration-elastic")) {
		a1_elastic();
		return 0;
	}
#endif
	die("A1 peers: ration, ration-group, ration-elastic");
}
