/* test_account.c - measured per-task heap, CPU and wall time. contract §9.
 *
 * Heap figures exist only when ration was built with jemalloc and the
 * process's malloc is jemalloc's; otherwise both are -1. Each test checks
 * whichever branch this build takes (the sanitizer builds disable
 * jemalloc, so both branches run in CI). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ration.h>

#include "helpers.h"

#define MIB ((int64_t)1 << 20)

/* Stores to volatile objects keep the compiler from removing the
 * malloc/free pair or the writes that touch the pages. */

static int
task_alloc_8mib(ration_ctx_t *ctx, void *arg)
{
	char *p = malloc((size_t)(8 * MIB));
	if (p == NULL)
		return -ENOMEM;
	void *volatile sink = p;
	(void)sink;
	for (size_t i = 0; i < (size_t)(8 * MIB); i += 4096)
		((volatile char *)p)[i] = (char)i;
	free(p);
	return 0;
}

static int
task_nothing(ration_ctx_t *ctx, void *arg)
{
	return 0;
}

static int64_t
thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Burns 3 ms of this thread's CPU, however busy the machine is. */
static int
task_spin_3ms(ration_ctx_t *ctx, void *arg)
{
	int64_t until = thread_cpu_ns() + 3000000;
	while (thread_cpu_ns() < until)
		;
	return 0;
}

static pthread_mutex_t rep_mu = PTHREAD_MUTEX_INITIALIZER;
static ration_task_report_t rep;
static int nreps;

static void
on_report(const ration_task_report_t *r, void *udata)
{
	pthread_mutex_lock(&rep_mu);
	rep = *r;
	nreps++;
	pthread_mutex_unlock(&rep_mu);
}

/* Run @fn as the only task of a group with on_report; return its report. */
static ration_task_report_t
run_one_with(ration_group_fn fn, int64_t weight, bool measure_cpu)
{
	ration_group_t *g;
	nreps = 0;
	ration_group_opts_t o = {.on_report = on_report,
				 .measure_cpu = measure_cpu};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	ck_assert_int_eq(ration_group_go(g, weight, fn, NULL), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ration_group_free(g);
	ck_assert_int_eq(nreps, 1);
	return rep;
}

static ration_task_report_t
run_one(ration_group_fn fn, int64_t weight)
{
	return run_one_with(fn, weight, false);
}

/* ---- availability ------------------------------------------------------- */

START_TEST(test_account_available_is_stable)
{
	bool a = ration_account_available();

	ck_assert(ration_account_available() == a);
}
END_TEST

/* Without jemalloc (or with glibc's malloc) both heap figures are -1. */
START_TEST(test_account_unavailable_reports_minus_one)
{
	if (ration_account_available())
		return; /* the other branch is tested below */
	ration_account_t a;
	ration_task_report_t r = {0};

	ration_account_begin_with(&a, RATION_ACCOUNT_CPU);
	(void)task_alloc_8mib(NULL, NULL);
	ration_account_end(&a, &r);

	ck_assert_int_eq(r.peak_bytes, -1);
	ck_assert_int_eq(r.allocated_bytes, -1);
	ck_assert_int_ge(r.run_ns, 0);
	ck_assert_int_ge(r.cpu_ns, 0);
	r = run_one(task_alloc_8mib, 1);
	ck_assert_int_eq(r.peak_bytes, -1);
	ck_assert_int_eq(r.allocated_bytes, -1);
}
END_TEST

/* ---- heap --------------------------------------------------------------- */

START_TEST(test_account_8mib_task_reports_8mib_peak)
{
	ration_task_report_t r = run_one(task_alloc_8mib, 8 * MIB);

	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(r.declared, 8 * MIB);
	if (ration_account_available()) {
		ck_assert_int_ge(r.peak_bytes, 8 * MIB);
		ck_assert_int_ge(r.allocated_bytes, 8 * MIB);
	} else {
		ck_assert_int_eq(r.peak_bytes, -1);
		ck_assert_int_eq(r.allocated_bytes, -1);
	}
}
END_TEST

START_TEST(test_account_empty_task_reports_small_peak)
{
	ration_task_report_t r = run_one(task_nothing, 1);

	if (ration_account_available()) {
		ck_assert_int_ge(r.peak_bytes, 0);
		ck_assert_int_lt(r.peak_bytes, 64 * 1024);
		ck_assert_int_lt(r.allocated_bytes, 64 * 1024);
	} else {
		ck_assert_int_eq(r.peak_bytes, -1);
	}
}
END_TEST

/* Peak is measured from begin: what the thread held before does not
 * count. */
START_TEST(test_account_peak_is_relative_to_begin)
{
	ration_account_t a;
	ration_task_report_t r;
	char *held = malloc((size_t)(4 * MIB));
	ck_assert_ptr_nonnull(held);
	void *volatile sink = held;
	(void)sink;
	memset(held, 1, (size_t)(4 * MIB));

	ration_account_begin(&a);
	(void)task_alloc_8mib(NULL, NULL);
	ration_account_end(&a, &r);

	free(held);
	if (ration_account_available()) {
		ck_assert_int_ge(r.peak_bytes, 8 * MIB);
		ck_assert_int_lt(r.peak_bytes, 9 * MIB);
	} else {
		ck_assert_int_eq(r.peak_bytes, -1);
	}
}
END_TEST

/* Allocates (intptr_t)arg bytes in one buffer and touches its pages. */
static int
task_alloc(ration_ctx_t *ctx, void *arg)
{
	size_t n = (size_t)(intptr_t)arg;
	char *p = malloc(n);
	if (p == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 4096)
		((volatile char *)p)[i] = (char)i;
	free(p);
	return 0;
}

/* budget_bytes needs measured bytes: -ENOTSUP where there are none. */
START_TEST(test_account_budget_bytes_needs_measurable_heap)
{
	ration_sem_t *budget;
	ration_group_t *g = NULL;
	ck_assert_int_eq(ration_sem_new(64 * MIB, NULL, &budget), 0);
	ration_group_opts_t o = {
		.budget = budget, .budget_bytes = true, .tolerance = -0.1};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), -EINVAL);
	o.tolerance = 0;

	int rc = ration_group_new(NULL, &o, &g);

	ck_assert_int_eq(rc, ration_account_available() ? 0 : -ENOTSUP);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

START_TEST(test_account_round_is_what_the_allocator_hands_out)
{
	ck_assert_int_eq(ration_account_round(0), 0);
	ck_assert_int_eq(ration_account_round(-5), -5);
	ck_assert_int_eq(ration_account_round(INT64_MAX),
			 INT64_MAX); /* too big: as is */
	if (!ration_account_available()) {
		ck_assert_int_eq(ration_account_round(1342177), 1342177);
		return;
	}
	ck_assert_int_eq(ration_account_round(1342177),
			 3 * MIB / 2); /* 1.28 MiB */
	ck_assert_int_eq(ration_account_round(4 * MIB), 4 * MIB);
	ck_assert_int_eq(ration_account_round(4 * MIB + 1), 5 * MIB);
	ck_assert_int_eq(ration_account_round(1), 8);
}
END_TEST

static ration_task_report_t judged[4];

static void
keep_by_seq(const ration_task_report_t *r, void *udata)
{
	if (r->seq >= 1 && r->seq <= 4)
		judged[r->seq - 1] = *r;
}

/* Runs tasks (declared, allocated) in a budget_bytes group with
 * @tolerance; fills judged[] and @st. */
static void
run_judged(double tolerance, const int64_t (*tasks)[2], int n,
	   ration_group_stats_t *st)
{
	ration_sem_t *budget;
	ration_group_t *g;
	memset(judged, 0, sizeof(judged));
	ck_assert_int_eq(ration_sem_new(64 * MIB, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget,
				 .budget_bytes = true,
				 .limit = 1,
				 .tolerance = tolerance,
				 .on_report = keep_by_seq};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(ration_group_go(g, tasks[i][0], task_alloc,
						 (void *)(intptr_t)tasks[i][1]),
				 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ration_group_stats(g, st);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}

/* An honest task is not flagged although jemalloc rounds its buffer up
 * (1.28 MiB -> 1.5 MiB); one that uses 8x its declaration is
 * under-declared; one that uses 1/32 of it over-reserved. */
START_TEST(test_account_under_declared_and_over_reserved)
{
	if (!ration_account_available())
		return; /* budget_bytes is -ENOTSUP: the test above */
	static const int64_t tasks[][2] = {
		{1342177, 1342177}, {1 * MIB, 8 * MIB}, {16 * MIB, MIB / 2}};
	ration_group_stats_t st;

	run_judged(0, tasks, 3, &st);

	ck_assert(!judged[0].under_declared && !judged[0].over_reserved);
	ck_assert(judged[1].under_declared && !judged[1].over_reserved);
	ck_assert(!judged[2].under_declared && judged[2].over_reserved);
	ck_assert_uint_eq(st.under_declared, 1);
	ck_assert_uint_eq(st.over_reserved, 1);
	uint64_t total = 0;
	for (int i = 0; i < RATION_FIT_BUCKETS; i++)
		total += st.fit_hist[i];
	ck_assert_uint_eq(total, 3);
	ck_assert_uint_eq(st.fit_hist[0], 1); /* [0, 1/16): 1/32 */
	ck_assert_uint_eq(st.fit_hist[6], 1); /* [1, 5/4): 1.5 / 1.28 */
	ck_assert_uint_eq(st.fit_hist[9], 1); /* [2, inf): 8 */
}
END_TEST

/* 6 MiB used of 4 MiB declared: over 4 x 1.05 + 1 MiB (the step from the
 * 4 MiB class to the 5 MiB one), within 4 x 1.5 + 1 MiB. */
START_TEST(test_account_tolerance_widens_under_declared)
{
	if (!ration_account_available())
		return;
	static const int64_t tasks[][2] = {{4 * MIB, 6 * MIB}};
	ration_group_stats_t st;

	run_judged(0, tasks, 1, &st);
	ck_assert(judged[0].under_declared);
	run_judged(0.5, tasks, 1, &st);
	ck_assert(!judged[0].under_declared);
	ck_assert_uint_eq(st.under_declared, 0);
}
END_TEST

/* Holds seven 1 MiB buffers at once (below jemalloc's oversize
 * threshold, 8 MiB, above which it purges at once anyway), then frees
 * them. */
static int
task_seven_mib(ration_ctx_t *ctx, void *arg)
{
	char *p[7];
	for (int i = 0; i < 7; i++) {
		p[i] = malloc((size_t)MIB);
		ck_assert_ptr_nonnull(p[i]);
		for (size_t k = 0; k < (size_t)MIB; k += 4096)
			((volatile char *)p[i])[k] = (char)k;
	}
	for (int i = 0; i < 7; i++)
		free(p[i]);
	return 0;
}

/* With budget_bytes, what a task freed leaves the process when it ends,
 * not after jemalloc's decay time (10 s by default). */
START_TEST(test_account_budget_bytes_gives_freed_memory_back)
{
	if (!ration_account_available())
		return;
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(64 * MIB, NULL, &budget), 0);
	ration_group_opts_t o = {
		.budget = budget, .budget_bytes = true, .limit = 1};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	int64_t before = rss_bytes();

	ck_assert_int_eq(ration_group_go(g, 8 * MIB, task_seven_mib, NULL), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);

	int64_t grown = rss_bytes() - before;
	ck_assert_msg(grown < 3 * MIB, "RSS grew %lld KiB",
		      (long long)(grown >> 10));
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* ---- time --------------------------------------------------------------- */

START_TEST(test_account_cpu_and_run_time)
{
	ration_task_report_t r = run_one_with(task_spin_3ms, 1, true);

	ck_assert_int_ge(r.cpu_ns, 3000000);
	ck_assert_int_ge(r.run_ns,
			 r.cpu_ns - 100000); /* clocks differ slightly */
	ck_assert_int_ge(r.wait_ns, 0);
}
END_TEST

/* CPU time costs two system calls: measured only when asked for. */
START_TEST(test_account_cpu_only_when_asked)
{
	ration_account_t a;
	ration_task_report_t r = {0};

	ration_account_begin(&a);
	(void)task_spin_3ms(NULL, NULL);
	ration_account_end(&a, &r);
	ck_assert_int_eq(r.cpu_ns, -1);
	ck_assert_int_ge(r.run_ns, 3000000 - 100000);

	ration_account_begin_with(&a, RATION_ACCOUNT_CPU);
	(void)task_spin_3ms(NULL, NULL);
	ration_account_end(&a, &r);
	ck_assert_int_ge(r.cpu_ns, 3000000);

	r = run_one(task_spin_3ms, 1);
	ck_assert_int_eq(r.cpu_ns, -1);
	ck_assert_int_ge(r.run_ns, 3000000 - 100000);
}
END_TEST

START_TEST(test_account_end_leaves_declared_wait_status)
{
	ration_account_t a;
	ration_task_report_t r = {.declared = 7, .wait_ns = 11, .status = -EIO};

	ration_account_begin_with(&a, RATION_ACCOUNT_CPU);
	sleep_ns(1000000);
	ration_account_end(&a, &r);

	ck_assert_int_eq(r.declared, 7);
	ck_assert_int_eq(r.wait_ns, 11);
	ck_assert_int_eq(r.status, -EIO);
	ck_assert_int_ge(r.run_ns, 1000000);
	ck_assert_int_lt(r.cpu_ns, r.run_ns);
}
END_TEST

static Suite *
account_suite(void)
{
	Suite *s = suite_create("account");
	TCase *tc;

	tc = tcase_create("available");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_account_available_is_stable);
	tcase_add_test(tc, test_account_unavailable_reports_minus_one);
	suite_add_tcase(s, tc);

	tc = tcase_create("heap");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_account_8mib_task_reports_8mib_peak);
	tcase_add_test(tc, test_account_empty_task_reports_small_peak);
	tcase_add_test(tc, test_account_peak_is_relative_to_begin);
	tcase_add_test(tc, test_account_budget_bytes_needs_measurable_heap);
	tcase_add_test(tc, test_account_round_is_what_the_allocator_hands_out);
	tcase_add_test(tc, test_account_under_declared_and_over_reserved);
	tcase_add_test(tc, test_account_tolerance_widens_under_declared);
	tcase_add_test(tc, test_account_budget_bytes_gives_freed_memory_back);
	suite_add_tcase(s, tc);

	tc = tcase_create("time");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_account_cpu_and_run_time);
	tcase_add_test(tc, test_account_cpu_only_when_asked);
	tcase_add_test(tc, test_account_end_leaves_declared_wait_status);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int failed = run_suite(account_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
