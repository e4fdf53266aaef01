/* test_group_result.c - what wait() returns when go() fails, and what a
 * report says about the task it describes (arg, seq, thread, timing). */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <ration.h>

#include "helpers.h"

static _Atomic int ran;

static int
task_ok(ration_ctx_t *ctx, void *arg)
{
	atomic_fetch_add(&ran, 1);
	return 0;
}

static int
task_fail(ration_ctx_t *ctx, void *arg)
{
	return -EIO;
}

static void
setup(void)
{
	atomic_store(&ran, 0);
}

/* ---- a failed go() is the group's result ------------------------------- */

/* The README loop: stop at the first failed go(); wait() must say why. */
START_TEST(test_go_e2big_is_returned_by_wait)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(10, NULL, &budget), 0);
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.budget = budget},
				 &g),
		0);
	int64_t weights[] = {1, 2, 11, 1};
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < 4; i++)
		rc = ration_group_go(g, weights[i], task_ok, NULL);

	ck_assert_int_eq(rc, -E2BIG);
	ck_assert_int_eq(ration_group_wait(g), -E2BIG);
	ck_assert_int_eq(ration_group_wait(g), -E2BIG); /* same again */
	ck_assert_int_eq(atomic_load(&ran), 2);
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_int_eq(st.first_error, -E2BIG);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

START_TEST(test_go_einval_is_returned_by_wait)
{
	ration_group_t *g;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);

	ck_assert_int_eq(ration_group_go(g, 0, task_ok, NULL), -EINVAL);
	ck_assert_int_eq(ration_group_try_go(g, 1, NULL, NULL), -EINVAL);

	ck_assert_int_eq(ration_group_wait(g), -EINVAL);
	ration_group_free(g);
}
END_TEST

/* A parent's deadline ends the feeding loop: wait() returns -ETIMEDOUT. */
START_TEST(test_go_ended_by_parent_deadline_is_returned_by_wait)
{
	ration_sem_t *budget;
	ration_ctx_t *parent;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(1, NULL, &budget), 0);
	ck_assert_int_eq(ration_sem_acquire(budget, NULL, 1), 0); /* full */
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, 20 * MS, &parent), 0);
	ck_assert_int_eq(
		ration_group_new(parent,
				 &(ration_group_opts_t){.budget = budget}, &g),
		0);

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -ETIMEDOUT);

	ck_assert_int_eq(ration_group_wait(g), -ETIMEDOUT);
	ck_assert_int_eq(atomic_load(&ran), 0);
	ration_group_free(g);
	ration_ctx_unref(parent);
	ck_assert_int_eq(ration_sem_release(budget, 1), 0);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* try_go's -EAGAIN is "no room now", not a failure of the group. */
START_TEST(test_try_go_eagain_is_not_a_group_error)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(1, NULL, &budget), 0);
	ck_assert_int_eq(ration_sem_acquire(budget, NULL, 1), 0);
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.budget = budget},
				 &g),
		0);

	ck_assert_int_eq(ration_group_try_go(g, 1, task_ok, NULL), -EAGAIN);

	ck_assert_int_eq(ration_sem_release(budget, 1), 0);
	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* After a task's error cancelled the group, go()'s -ECANCELED loses. */
START_TEST(test_go_after_task_error_keeps_task_error)
{
	ration_group_t *g;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);
	ck_assert_int_eq(ration_group_go(g, 1, task_fail, NULL), 0);
	(void)ration_ctx_wait(ration_group_ctx(g));

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -ECANCELED);

	ck_assert_int_eq(ration_group_wait(g), -EIO);
	ration_group_free(g);
}
END_TEST

/* A go() after wait() cannot change the delivered result. */
START_TEST(test_go_after_wait_changes_nothing)
{
	ration_group_t *g;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -EPIPE);
	ck_assert_int_eq(ration_group_go(g, 0, task_ok, NULL), -EINVAL);

	ck_assert_int_eq(ration_group_wait(g), 0);
	ration_group_free(g);
}
END_TEST

/* ---- reports ------------------------------------------------------------ */

#define NTASKS 16

static _Thread_local void *tl_running; /* set by fn, read by on_report */

struct seen {
	pthread_mutex_t mu;
	int n;
	bool same_thread[NTASKS + 1];
	bool weight_held[NTASKS + 1];
	void *arg[NTASKS + 1];
	int64_t declared[NTASKS + 1];
	int bad_seq;
	ration_sem_t *budget;
};

static int
task_mark(ration_ctx_t *ctx, void *arg)
{
	tl_running = arg;
	return 0;
}

static void
on_report(const ration_task_report_t *r, void *udata)
{
	struct seen *s = udata;
	ration_sem_stats_t st;
	ration_sem_stats(s->budget, &st);
	pthread_mutex_lock(&s->mu);
	if (r->seq < 1 || r->seq > NTASKS || s->arg[r->seq] != NULL) {
		s->bad_seq++;
	} else {
		s->arg[r->seq] = r->arg;
		s->declared[r->seq] = r->declared;
		s->same_thread[r->seq] = tl_running == r->arg;
		s->weight_held[r->seq] = st.in_use >= r->declared;
	}
	s->n++;
	pthread_mutex_unlock(&s->mu);
	tl_running = NULL;
}

/* Each report carries its task's arg and the 1-based order of its go(),
 * runs on the thread that ran fn and before the weight is released. */
START_TEST(test_report_has_arg_seq_and_runs_before_release)
{
	static int args[NTASKS + 1];
	struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
	ration_pool_t *p = pool_of(4);
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(NTASKS, NULL, &s.budget), 0);
	ration_group_opts_t o = {.pool = p,
				 .budget = s.budget,
				 .on_report = on_report,
				 .udata = &s};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);

	/* A failed go takes no number. */
	ck_assert_int_eq(ration_group_go(g, 0, task_mark, &args[0]), -EINVAL);
	/* Each task takes the whole budget: while one reports, no other
	 * can hold units, so in_use shows whether its own are still held. */
	for (int i = 1; i <= NTASKS; i++)
		ck_assert_int_eq(
			ration_group_go(g, NTASKS, task_mark, &args[i]), 0);
	ck_assert_int_eq(ration_group_wait(g), -EINVAL);

	ck_assert_int_eq(s.n, NTASKS);
	ck_assert_int_eq(s.bad_seq, 0);
	for (int i = 1; i <= NTASKS; i++) {
		ck_assert_ptr_eq(s.arg[i], &args[i]);
		ck_assert_int_eq(s.declared[i], NTASKS);
		ck_assert(s.same_thread[i]);
		ck_assert(s.weight_held[i]);
	}
	ration_group_free(g);
	ration_pool_free(p);
	ck_assert_int_eq(ration_sem_free(s.budget), 0);
}
END_TEST

static Suite *
group_result_suite(void)
{
	Suite *s = suite_create("group_result");
	TCase *tc = tcase_create("go errors");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_go_e2big_is_returned_by_wait);
	tcase_add_test(tc, test_go_einval_is_returned_by_wait);
	tcase_add_test(tc,
		       test_go_ended_by_parent_deadline_is_returned_by_wait);
	tcase_add_test(tc, test_try_go_eagain_is_not_a_group_error);
	tcase_add_test(tc, test_go_after_task_error_keeps_task_error);
	tcase_add_test(tc, test_go_after_wait_changes_nothing);
	suite_add_tcase(s, tc);
	tc = tcase_create("reports");
	tcase_add_test(tc, test_report_has_arg_seq_and_runs_before_release);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(group_result_suite()) == 0 ? 0 : 1;
}
