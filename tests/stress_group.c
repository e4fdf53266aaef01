/* stress_group.c - many tasks from several producers through one group:
 * weights 1 + i % 8 on a budget of 16, limit 8. The budget and the limit
 * are never exceeded and every fn whose go succeeded runs exactly once.
 * Rounds: RATION_STRESS_ROUNDS caps the task count (default 4 * 10^5). */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <ration.h>

#include "helpers.h"
#include "internal/atomic_max.h"

#define PRODUCERS 4
#define BUDGET    16
#define LIMIT     8

static _Atomic int64_t run_now, run_max, weight_now, weight_max;
static _Atomic unsigned char *calls; /* per task index */
static long ntasks;
static long fail_at = -1; /* task index that fails, or -1 */

static int
task(ration_ctx_t *ctx, void *arg)
{
	long i = (long)(intptr_t)arg;
	int64_t w = 1 + i % 8;
	ration__atomic_max(&run_max, atomic_fetch_add(&run_now, 1) + 1);
	ration__atomic_max(&weight_max, atomic_fetch_add(&weight_now, w) + w);
	atomic_fetch_add_explicit(&calls[i], 1, memory_order_relaxed);
	atomic_fetch_sub(&weight_now, w);
	atomic_fetch_sub(&run_now, 1);
	return i == fail_at ? -EIO : 0;
}

struct producer {
	pthread_t t;
	ration_group_t *g;
	long first; /* takes indices first, first + PRODUCERS, ... */
	unsigned char *accepted;
};

static void *
producer_main(void *arg)
{
	struct producer *pr = arg;
	for (long i = pr->first; i < ntasks; i += PRODUCERS) {
		int rc = ration_group_go(pr->g, 1 + i % 8, task,
					 (void *)(intptr_t)i);
		pr->accepted[i] = rc == 0;
		if (rc != 0 && rc != -ECANCELED)
			ck_abort_msg("go: %s", ration_strerror(rc));
	}
	return NULL;
}

static void
run(long n, long fail)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ntasks = n;
	fail_at = fail;
	calls = calloc((size_t)n, 1);
	unsigned char *accepted = calloc((size_t)n, 1);
	ck_assert_ptr_nonnull(calls);
	ck_assert_ptr_nonnull(accepted);
	ck_assert_int_eq(ration_sem_new(BUDGET, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget, .limit = LIMIT};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);

	struct producer pr[PRODUCERS];
	for (int i = 0; i < PRODUCERS; i++) {
		pr[i] = (struct producer){
			.g = g, .first = i, .accepted = accepted};
		ck_assert_int_eq(
			pthread_create(&pr[i].t, NULL, producer_main, &pr[i]),
			0);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(pr[i].t, NULL);
	int err = ration_group_wait(g);

	ck_assert_int_eq(err, fail >= 0 ? -EIO : 0);
	ck_assert_int_le(atomic_load(&run_max), LIMIT);
	ck_assert_int_le(atomic_load(&weight_max), BUDGET);
	long ran = 0;
	for (long i = 0; i < n; i++) {
		ck_assert_msg(calls[i] == accepted[i],
			      "task %ld: accepted %d, called %d", i,
			      accepted[i], calls[i]);
		ran += calls[i];
	}
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_uint_eq(st.tasks, (uint64_t)ran);
	ck_assert_uint_eq(st.started, (uint64_t)ran);
	ck_assert_int_eq(ration_sem_available(budget), BUDGET);
	if (fail < 0)
		ck_assert_int_eq(ran, n);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	free(calls);
	free(accepted);
}

START_TEST(test_stress_group_budget_limit_exactly_once)
{
	run(stress_rounds(400000), -1);
}
END_TEST

/* A failure midway cancels the group: producers' later gos fail, and
 * every accepted task still runs exactly once. */
START_TEST(test_stress_group_cancel_midway_exactly_once)
{
	long n = stress_rounds(100000);
	run(n, n / 2);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("stress_group");
	TCase *tc = tcase_create("stress");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_stress_group_budget_limit_exactly_once);
	tcase_add_test(tc, test_stress_group_cancel_midway_exactly_once);
	suite_add_tcase(s, tc);
	int failed = run_suite(s);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
