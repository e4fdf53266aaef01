/* test_group.c - the spawner: errgroup semantics, weights, limit, reports.
 * contract §6, §9, §10 (group). */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <ration.h>

#include "helpers.h"
#include "internal/atomic_max.h"

/* ---- shared fixtures ---------------------------------------------------- */

/* A flag tasks wait on; bounded, so a bug fails the test instead of
 * hanging it. */
static _Atomic bool gate;

static void
gate_wait(void)
{
	WAIT_FOR(atomic_load(&gate));
}

static _Atomic int calls;

static int
task_ok(ration_ctx_t *ctx, void *arg)
{
	atomic_fetch_add(&calls, 1);
	return 0;
}

static int
task_gated(ration_ctx_t *ctx, void *arg)
{
	atomic_fetch_add(&calls, 1);
	gate_wait();
	return 0;
}

/* Waits (bounded) for the group ctx to end; returns its error, or 0 if it
 * never ended, which the tests then see as a wrong result. */
static int
task_until_cancelled(ration_ctx_t *ctx, void *arg)
{
	ration_ctx_t *bounded;
	atomic_fetch_add(&calls, 1);
	ck_assert_int_eq(ration_ctx_with_timeout(ctx, TEST_WAIT_NS, &bounded),
			 0);
	(void)ration_ctx_wait(bounded);
	ration_ctx_unref(bounded);
	return ration_ctx_err(ctx);
}

static int
task_ret(ration_ctx_t *ctx, void *arg)
{
	atomic_fetch_add(&calls, 1);
	return (int)(intptr_t)arg;
}

static uint64_t
group_running(ration_group_t *g)
{
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	return st.running;
}

static int nreps; /* reports seen (report tests) */

static void
setup(void)
{
	atomic_store(&gate, false);
	atomic_store(&calls, 0);
	nreps = 0; /* CK_FORK=no runs every test in one process */
}

/* ---- args --------------------------------------------------------------- */

START_TEST(test_group_bad_arguments_are_einval)
{
	ration_group_t *g;
	ration_sem_t *budget;
	ck_assert_int_eq(ration_sem_new(16, NULL, &budget), 0);

	ck_assert_int_eq(ration_group_new(NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.limit = -1}, &g),
		-EINVAL);
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.budget = budget},
				 &g),
		0);

	ck_assert_int_eq(ration_group_go(NULL, 1, task_ok, NULL), -EINVAL);
	ck_assert_int_eq(ration_group_go(g, 1, NULL, NULL), -EINVAL);
	ck_assert_int_eq(ration_group_go(g, 0, task_ok, NULL), -EINVAL);
	ck_assert_int_eq(ration_group_go(g, -3, task_ok, NULL), -EINVAL);
	ck_assert_int_eq(ration_group_try_go(g, 0, task_ok, NULL), -EINVAL);
	ck_assert_int_eq(ration_group_wait(NULL), -EINVAL);

	ck_assert_int_eq(ration_group_wait(g),
			 -EINVAL); /* a failed go is recorded */
	ck_assert_int_eq(atomic_load(&calls), 0);
	ck_assert_int_eq(ration_sem_available(budget), 16);
	ration_group_free(g);
	ration_group_free(NULL);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* -E2BIG at once, even while the group's only limit slot is taken. */
START_TEST(test_group_weight_above_budget_is_e2big_at_once)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(16, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget, .limit = 1};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	ck_assert_int_eq(ration_group_go(g, 2, task_gated, NULL), 0);
	WAIT_FOR(atomic_load(&calls) == 1);

	ck_assert_int_eq(ration_group_go(g, 17, task_ok, NULL), -E2BIG);
	ck_assert_int_eq(ration_group_try_go(g, 17, task_ok, NULL), -E2BIG);
	ck_assert_int_eq(ration_sem_available(budget), 14);

	atomic_store(&gate, true);
	ck_assert_int_eq(ration_group_wait(g), -E2BIG);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ck_assert_int_eq(ration_sem_available(budget), 16);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* Without a budget any weight >= 1 is accepted. */
START_TEST(test_group_weight_unchecked_without_budget)
{
	ration_group_t *g;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);
	ck_assert_int_eq(ration_group_go(g, INT64_MAX, task_ok, NULL), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ration_group_free(g);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

/* contract §10: wait returns the error that cancelled the group, never a
 * sibling's -ECANCELED. */
START_TEST(test_group_first_error_cancels_siblings_and_is_returned)
{
	ration_pool_t *p = pool_of(4);
	ration_group_t *g;
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.pool = p}, &g),
		0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(
			ration_group_go(g, 1, task_until_cancelled, NULL), 0);
	WAIT_FOR(atomic_load(&calls) == 3);

	ck_assert_int_eq(
		ration_group_go(g, 1, task_ret, (void *)(intptr_t)-EIO), 0);

	ck_assert_int_eq(ration_group_wait(g), -EIO);
	ck_assert_int_eq(ration_ctx_err(ration_group_ctx(g)), -ECANCELED);
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_uint_eq(st.tasks, 4);
	ck_assert_uint_eq(st.failed, 4); /* the siblings returned -ECANCELED */
	ck_assert_int_eq(st.first_error, -EIO);
	ck_assert_int_eq(ration_group_wait(g), -EIO); /* repeatable */
	ration_group_free(g);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_group_go_after_first_error_returns_ctx_error)
{
	ration_group_t *g;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);
	ck_assert_int_eq(
		ration_group_go(g, 1, task_ret, (void *)(intptr_t)-EPERM), 0);
	WAIT_FOR(ration_ctx_err(ration_group_ctx(g)) != 0);

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -ECANCELED);
	ck_assert_int_eq(ration_group_try_go(g, 1, task_ok, NULL), -ECANCELED);

	ck_assert_int_eq(ration_group_wait(g), -EPERM);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ration_group_free(g);
}
END_TEST

START_TEST(test_group_keep_going_runs_everything)
{
	ration_group_t *g;
	ration_group_opts_t o = {.keep_going = true, .limit = 2};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);

	ck_assert_int_eq(
		ration_group_go(g, 1, task_ret, (void *)(intptr_t)-EIO), 0);
	WAIT_FOR(group_running(g) == 0 && atomic_load(&calls) == 1);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(
			ration_group_go(
				g, 1, task_ret,
				(void *)(intptr_t)(i % 5 == 0 ? -EPERM : 0)),
			0);
	ck_assert_int_eq(ration_ctx_err(ration_group_ctx(g)), 0);

	ck_assert_int_eq(ration_group_wait(g), -EIO);
	ck_assert_int_eq(atomic_load(&calls), 21);
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_uint_eq(st.tasks, 21);
	ck_assert_uint_eq(st.failed, 5);
	ck_assert_int_eq(ration_ctx_err(ration_group_ctx(g)),
			 -ECANCELED); /* by wait */
	ration_group_free(g);
}
END_TEST

/* ---- limits ------------------------------------------------------------- */

static _Atomic int64_t run_now, run_max, weight_now, weight_max;

static int
task_weighed(ration_ctx_t *ctx, void *arg)
{
	int64_t w = (int64_t)(intptr_t)arg;
	ration__atomic_max(&run_max, atomic_fetch_add(&run_now, 1) + 1);
	ration__atomic_max(&weight_max, atomic_fetch_add(&weight_now, w) + w);
	sleep_ns(200000);
	atomic_fetch_sub(&weight_now, w);
	atomic_fetch_sub(&run_now, 1);
	atomic_fetch_add(&calls, 1);
	return 0;
}

static void
reset_maxima(void)
{
	atomic_store(&run_now, 0);
	atomic_store(&run_max, 0);
	atomic_store(&weight_now, 0);
	atomic_store(&weight_max, 0);
}

START_TEST(test_group_limit_is_respected)
{
	ration_pool_t *p = pool_of(8);
	ration_group_t *g;
	reset_maxima();
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.pool = p, .limit = 3},
				 &g),
		0);

	for (int i = 0; i < 60; i++)
		ck_assert_int_eq(ration_group_go(g, 1, task_weighed,
						 (void *)(intptr_t)1),
				 0);

	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 60);
	ck_assert_int_le(atomic_load(&run_max), 3);
	ck_assert_int_ge(atomic_load(&run_max), 1);
	ration_group_free(g);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_group_budget_is_never_exceeded)
{
	ration_pool_t *p = pool_of(8);
	ration_sem_t *budget;
	ration_group_t *g;
	reset_maxima();
	ck_assert_int_eq(ration_sem_new(16, NULL, &budget), 0);
	ration_group_opts_t o = {.pool = p, .budget = budget};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);

	for (int i = 0; i < 200; i++) {
		int64_t w = 1 + i % 8;
		ck_assert_int_eq(ration_group_go(g, w, task_weighed,
						 (void *)(intptr_t)w),
				 0);
	}

	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 200);
	ck_assert_int_le(atomic_load(&weight_max), 16);
	ck_assert_int_eq(ration_sem_available(budget), 16);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	ration_pool_free(p);
}
END_TEST

/* go blocks while the budget is full and proceeds once a task releases. */
START_TEST(test_group_go_blocks_while_budget_full)
{
	ration_sem_t *budget;
	ration_group_t *g;
	/* A pool of its own: on the default pool of a one-CPU machine the
	 * default limit would be 1, and the second go would wait for a
	 * slot, not for the budget. */
	ration_pool_t *p = pool_of(4);
	ck_assert_int_eq(ration_sem_new(4, NULL, &budget), 0);
	ck_assert_int_eq(ration_group_new(NULL,
					  &(ration_group_opts_t){
						  .budget = budget, .pool = p},
					  &g),
			 0);
	ck_assert_int_eq(ration_group_go(g, 4, task_gated, NULL), 0);
	WAIT_FOR(atomic_load(&calls) == 1);

	struct bg_go b;
	bg_go(&b, g, 1, task_ok, NULL);
	wait_waiters(budget, 1);
	ck_assert(!atomic_load(&b.done));
	ck_assert_int_eq(ration_group_try_go(g, 1, task_ok, NULL), -EAGAIN);
	atomic_store(&gate, true);

	ck_assert_int_eq(bg_go_join(&b), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 2);
	ck_assert_int_eq(ration_sem_available(budget), 4);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	ration_pool_free(p);
}
END_TEST

/* A caller waiting for a limit slot holds no budget. */
START_TEST(test_group_waiting_for_slot_holds_no_budget)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(10, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget, .limit = 1};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	ck_assert_int_eq(ration_group_go(g, 3, task_gated, NULL), 0);
	WAIT_FOR(atomic_load(&calls) == 1);

	struct bg_go b;
	bg_go(&b, g, 5, task_ok, NULL);
	WAIT_FOR(group_running(g) == 1);
	sleep_ns(2000000); /* give a wrong implementation time to take units */
	ck_assert(!atomic_load(&b.done));
	ck_assert_int_eq(ration_sem_available(budget), 7);
	atomic_store(&gate, true);

	ck_assert_int_eq(bg_go_join(&b), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(ration_sem_available(budget), 10);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* ---- a blocked go runs the group's queued tasks ---------------------- */

static pthread_t ran_by; /* task_where; read after ration_group_wait() */

static int
task_where(ration_ctx_t *ctx, void *arg)
{
	ran_by = pthread_self();
	return 0;
}

/* Task A of @ga holds the one thread of @p and, with B, the slots of @ga;
 * task B of @gb waits in the pool queue behind it. A go() on @ga from
 * another thread then finds no slot. Returns whether B ran on that thread
 * (the blocked go ran it instead of sleeping). */
static bool
blocked_go_ran_queued_task(ration_group_t *ga, ration_group_t *gb)
{
	struct bg_go b;

	ck_assert_int_eq(ration_group_go(ga, 1, task_gated, NULL), 0);
	WAIT_FOR(group_running(ga) == 1);
	ck_assert_int_eq(ration_group_go(gb, 1, task_where, NULL), 0);
	bg_go(&b, ga, 1, task_ok, NULL);
	sleep_ns(50 * MS); /* the go has found no slot by now */
	atomic_store(&gate, true);
	ck_assert_int_eq(bg_go_join(&b), 0);
	ck_assert_int_eq(ration_group_wait(ga), 0);
	ck_assert_int_eq(ration_group_wait(gb), 0);
	return pthread_equal(ran_by, b.t);
}

/* A group on @p with a limit of @limit slots. */
static ration_group_t *
group_on(ration_pool_t *p, int64_t limit)
{
	ration_group_t *g;
	ck_assert_int_eq(
		ration_group_new(
			NULL, &(ration_group_opts_t){.pool = p, .limit = limit},
			&g),
		0);
	return g;
}

START_TEST(test_group_blocked_go_runs_its_own_queued_task)
{
	ration_pool_t *p = pool_of(1);
	ration_group_t *g = group_on(p, 2);
	ck_assert(blocked_go_ran_queued_task(g, g));
	ck_assert_int_eq(atomic_load(&calls), 2);
	ration_group_free(g);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_group_blocked_go_leaves_other_groups_tasks_alone)
{
	ration_pool_t *p = pool_of(1);
	ration_group_t *ga, *gb;
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.pool = p, .limit = 1},
				 &ga),
		0);
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.pool = p}, &gb),
		0);
	ck_assert(!blocked_go_ran_queued_task(ga, gb));
	ration_group_free(ga);
	ration_group_free(gb);
	ration_pool_free(p);
}
END_TEST

static void
thread_init_noop(void *udata)
{
}

/* A pool's tasks may rely on its thread_init: they run on its threads. */
START_TEST(test_group_blocked_go_runs_nothing_of_a_pool_with_thread_init)
{
	ration_pool_t *p;
	ration_group_t *g;
	ration_pool_opts_t po = {.threads = 1, .thread_init = thread_init_noop};
	ck_assert_int_eq(ration_pool_new(&po, &p), 0);
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.pool = p, .limit = 2},
				 &g),
		0);
	ck_assert(!blocked_go_ran_queued_task(g, g));
	ration_group_free(g);
	ration_pool_free(p);
}
END_TEST

static pthread_t producer; /* task_long_where */
static _Atomic int ran_by_producer;

static int
task_long_where(ration_ctx_t *ctx, void *arg)
{
	if (pthread_equal(pthread_self(), producer))
		atomic_fetch_add(&ran_by_producer, 1);
	sleep_ns(2 * MS); /* far past HELP_MAX_NS (group.c, 20 us) */
	return 0;
}

/* A blocked go() stops running queued tasks once 4 in a row were long
 * (docs/group.md): with a limit of 2 on one pool thread, every go() but
 * the first finds no slot while a task waits in the queue, so without
 * the cut-off the producer would run about half of the 16 tasks. */
START_TEST(test_group_blocked_go_stops_helping_after_long_tasks)
{
	ration_pool_t *p = pool_of(1);
	ration_group_t *g = group_on(p, 2);
	producer = pthread_self();
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(ration_group_go(g, 1, task_long_where, NULL),
				 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_le(atomic_load(&ran_by_producer), 4);
	ration_group_free(g);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_group_try_go_never_blocks)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(4, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget, .limit = 2};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);

	ck_assert_int_eq(ration_group_try_go(g, 3, task_gated, NULL), 0);
	ck_assert_int_eq(ration_group_try_go(g, 2, task_gated, NULL),
			 -EAGAIN); /* budget */
	ck_assert_int_eq(ration_group_try_go(g, 1, task_gated, NULL), 0);
	ck_assert_int_eq(ration_group_try_go(g, 1, task_gated, NULL),
			 -EAGAIN); /* limit */
	ck_assert_int_eq(ration_sem_available(budget), 0);

	atomic_store(&gate, true);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 2);
	ck_assert_int_eq(ration_sem_available(budget), 4);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* ---- life cycle --------------------------------------------------------- */

START_TEST(test_group_go_after_wait_is_epipe)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(4, NULL, &budget), 0);
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.budget = budget},
				 &g),
		0);
	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -EPIPE);
	ck_assert_int_eq(ration_group_try_go(g, 1, task_ok, NULL), -EPIPE);

	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ck_assert_int_eq(ration_sem_available(budget), 4);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* A go blocked for room when wait() completes fails with -EPIPE. */
START_TEST(test_group_go_blocked_at_wait_is_epipe)
{
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(4, NULL, &budget), 0);
	ck_assert_int_eq(ration_sem_try_acquire(budget, 4),
			 0); /* held outside */
	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.budget = budget},
				 &g),
		0);
	struct bg_go b;
	bg_go(&b, g, 1, task_ok, NULL);
	wait_waiters(budget, 1);

	ck_assert_int_eq(ration_group_wait(g), 0);

	ck_assert_int_eq(bg_go_join(&b), -EPIPE);
	ck_assert_int_eq(atomic_load(&calls), 0);
	ck_assert_int_eq(ration_sem_release(budget, 4), 0);
	ck_assert_int_eq(ration_sem_available(budget), 4);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

START_TEST(test_group_cancelled_group_go_fails_and_fn_never_runs)
{
	ration_ctx_t *parent;
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &parent), 0);
	ck_assert_int_eq(ration_sem_new(4, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget, .limit = 2};
	ck_assert_int_eq(ration_group_new(parent, &o, &g), 0);
	ration_ctx_cancel(parent);

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -ECANCELED);
	ck_assert_int_eq(ration_group_try_go(g, 1, task_ok, NULL), -ECANCELED);

	ck_assert_int_eq(ration_sem_available(budget), 4);
	ck_assert_int_eq(ration_group_wait(g), -ECANCELED);
	ck_assert_int_eq(atomic_load(&calls), 0);
	ration_group_free(g);
	ration_ctx_unref(parent);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

START_TEST(test_group_deadline_parent_reports_etimedout)
{
	ration_ctx_t *parent;
	ration_group_t *g;
	ck_assert_int_eq(
		ration_ctx_with_deadline(NULL, ration_now() - 1, &parent), 0);
	ck_assert_int_eq(ration_group_new(parent, NULL, &g), 0);

	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), -ETIMEDOUT);

	ck_assert_int_eq(ration_group_wait(g), -ETIMEDOUT);
	ck_assert_int_eq(atomic_load(&calls), 0);
	ration_group_free(g);
	ration_ctx_unref(parent);
}
END_TEST

/* Nested go: a task spawns two children down to depth 4 (31 tasks), on a
 * 2-thread pool, while wait() is already running. There is room for all
 * (docs/group.md: a nested go that needs room only its ancestors hold
 * waits for ever). */
static ration_group_t *nest_group;

static int
task_nest(ration_ctx_t *ctx, void *arg)
{
	intptr_t depth = (intptr_t)arg;
	atomic_fetch_add(&calls, 1);
	if (depth < 4)
		for (int i = 0; i < 2; i++)
			ck_assert_int_eq(ration_group_go(nest_group, 1,
							 task_nest,
							 (void *)(depth + 1)),
					 0);
	return 0;
}

START_TEST(test_group_nested_go_from_task)
{
	ration_pool_t *p = pool_of(2);
	ration_sem_t *budget;
	ck_assert_int_eq(ration_sem_new(32, NULL, &budget), 0);
	ration_group_opts_t o = {.pool = p, .budget = budget, .limit = 32};
	ck_assert_int_eq(ration_group_new(NULL, &o, &nest_group), 0);

	ck_assert_int_eq(ration_group_go(nest_group, 1, task_nest, (void *)0),
			 0);

	ck_assert_int_eq(ration_group_wait(nest_group), 0);
	ck_assert_int_eq(atomic_load(&calls), 31);
	ck_assert_int_eq(ration_sem_available(budget), 32);
	ration_group_free(nest_group);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	ration_pool_free(p);
}
END_TEST

/* With a budget, limit 0 = the pool's thread limit: a go() beyond it
 * waits instead of queueing a task (and its weight) behind busy threads. */
START_TEST(test_group_default_limit_is_pool_threads)
{
	ration_pool_t *p = pool_of(2);
	ration_sem_t *budget;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(10, NULL, &budget), 0);
	ration_group_opts_t o = {.pool = p, .budget = budget};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_int_eq(st.limit, 2);

	ck_assert_int_eq(ration_group_go(g, 3, task_gated, NULL), 0);
	ck_assert_int_eq(ration_group_go(g, 3, task_gated, NULL), 0);
	ck_assert_int_eq(ration_group_try_go(g, 1, task_ok, NULL), -EAGAIN);
	ck_assert_int_eq(ration_sem_available(budget),
			 4); /* the third holds nothing */
	struct bg_go b;
	bg_go(&b, g, 3, task_ok, NULL);
	sleep_ns(2000000);
	ck_assert(!atomic_load(&b.done));
	ck_assert_int_eq(ration_sem_available(budget), 4);

	atomic_store(&gate, true);
	ck_assert_int_eq(bg_go_join(&b), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);
	ck_assert_int_eq(atomic_load(&calls), 3);
	ck_assert_int_eq(ration_sem_available(budget), 10);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	ration_pool_free(p);
}
END_TEST

/* The default limit does not apply to a go() from the group's own task:
 * a tree deeper than the pool still completes on one thread. */
START_TEST(test_group_nested_go_ignores_default_limit)
{
	ration_pool_t *p = pool_of(1);
	ration_sem_t *budget;
	ck_assert_int_eq(ration_sem_new(32, NULL, &budget), 0);
	ration_group_opts_t o = {.pool = p, .budget = budget};
	ck_assert_int_eq(ration_group_new(NULL, &o, &nest_group), 0);
	ration_group_stats_t st;
	ration_group_stats(nest_group, &st);
	ck_assert_int_eq(st.limit, 1);

	ck_assert_int_eq(ration_group_go(nest_group, 1, task_nest, (void *)0),
			 0);

	ck_assert_int_eq(ration_group_wait(nest_group), 0);
	ck_assert_int_eq(atomic_load(&calls), 31);
	ck_assert_int_eq(ration_sem_available(budget), 32);
	ration_group_free(nest_group);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	ration_pool_free(p);
}
END_TEST

/* contract §10: tasks the pool discards at shutdown count as failed with
 * -ECANCELED and give their weight back. */
START_TEST(test_group_discarded_tasks_count_as_failed)
{
	ration_pool_t *p = pool_of(1);
	ration_sem_t *budget;
	ration_group_t *g;
	ration_ctx_t *now;
	ck_assert_int_eq(ration_sem_new(8, NULL, &budget), 0);
	/* limit 3 > 1 thread: tasks queue in the pool (the default limit
	 * would be 1) */
	ration_group_opts_t o = {
		.pool = p, .budget = budget, .keep_going = true, .limit = 3};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	ck_assert_int_eq(ration_group_go(g, 2, task_gated, NULL), 0);
	WAIT_FOR(atomic_load(&calls) == 1);
	ck_assert_int_eq(ration_group_go(g, 3, task_ok, NULL), 0); /* queued */
	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL), 0); /* queued */
	ck_assert_int_eq(ration_sem_available(budget), 2);

	ck_assert_int_eq(ration_ctx_with_deadline(NULL, ration_now() - 1, &now),
			 0);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DISCARD, now),
			 -ETIMEDOUT);
	ck_assert_int_eq(ration_sem_available(budget), 6);
	ck_assert_int_eq(ration_group_go(g, 1, task_ok, NULL),
			 -EPIPE); /* pool down */
	atomic_store(&gate, true);

	ck_assert_int_eq(ration_group_wait(g), -ECANCELED);
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_uint_eq(st.tasks, 3);
	ck_assert_uint_eq(st.failed, 2);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ck_assert_int_eq(ration_sem_available(budget), 8);
	ration_group_free(g);
	ration_ctx_unref(now);
	ration_pool_free(p);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

START_TEST(test_group_free_waits_for_running_tasks)
{
	ration_group_t *g;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(ration_group_go(g, 1, task_weighed,
						 (void *)(intptr_t)1),
				 0);

	ration_group_free(g);

	ck_assert_int_eq(atomic_load(&calls), 10);
}
END_TEST

/* ---- report ------------------------------------------------------------- */

static pthread_mutex_t rep_mu = PTHREAD_MUTEX_INITIALIZER;
static ration_task_report_t reps[8];
static void *rep_udata;

static void
on_report(const ration_task_report_t *r, void *udata)
{
	pthread_mutex_lock(&rep_mu);
	if (nreps < 8)
		reps[nreps++] = *r;
	rep_udata = udata;
	pthread_mutex_unlock(&rep_mu);
}

static int
task_sleep_fail(ration_ctx_t *ctx, void *arg)
{
	sleep_ns(2000000);
	return -EIO;
}

START_TEST(test_group_report_fields)
{
	ration_sem_t *budget;
	ration_group_t *g;
	int udata;
	ck_assert_int_eq(ration_sem_new(16, NULL, &budget), 0);
	ration_group_opts_t o = {.budget = budget,
				 .keep_going = true,
				 .on_report = on_report,
				 .udata = &udata,
				 .measure_cpu = true};
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);

	ck_assert_int_eq(ration_group_go(g, 5, task_sleep_fail, NULL), 0);
	ck_assert_int_eq(ration_group_wait(g), -EIO);

	ck_assert_int_eq(nreps, 1);
	ck_assert_ptr_eq(rep_udata, &udata);
	ck_assert_int_eq(reps[0].declared, 5);
	ck_assert_int_eq(reps[0].status, -EIO);
	ck_assert_int_ge(reps[0].wait_ns, 0);
	ck_assert_int_ge(reps[0].run_ns, 2000000);
	ck_assert_int_ge(reps[0].cpu_ns, 0);
	ck_assert_int_lt(reps[0].cpu_ns, reps[0].run_ns);
	if (ration_account_available()) {
		ck_assert_int_ge(reps[0].peak_bytes, 0);
		ck_assert_int_ge(reps[0].allocated_bytes, 0);
	} else {
		ck_assert_int_eq(reps[0].peak_bytes, -1);
		ck_assert_int_eq(reps[0].allocated_bytes, -1);
	}
	ration_group_stats_t st;
	ration_group_stats(g, &st);
	ck_assert_uint_eq(st.started, 1);
	ck_assert_uint_eq(st.tasks, 1);
	ck_assert_uint_eq(st.failed, 1);
	ck_assert_int_ge(st.run_ns_total, 2000000);
	ck_assert_int_gt(st.wait_p50_ns, 0);
	ck_assert_int_ge(st.wait_p99_ns, st.wait_p50_ns);
	ck_assert_int_eq(st.max_peak_bytes,
			 ration_account_available() ? reps[0].peak_bytes : -1);
	ration_group_free(g);
	ck_assert_int_eq(ration_sem_free(budget), 0);
}
END_TEST

/* A discarded task is reported too: status -ECANCELED, nothing used. */
START_TEST(test_group_report_of_discarded_task)
{
	ration_pool_t *p = pool_of(1);
	ration_group_t *g;
	ration_ctx_t *now;
	ration_group_opts_t o = {.pool = p,
				 .keep_going = true,
				 .on_report = on_report,
				 .limit = 2}; /* queue behind the 1 thread */
	ck_assert_int_eq(ration_group_new(NULL, &o, &g), 0);
	ck_assert_int_eq(ration_group_go(g, 1, task_gated, NULL), 0);
	WAIT_FOR(atomic_load(&calls) == 1);
	ck_assert_int_eq(ration_group_go(g, 7, task_ok, NULL), 0);
	ck_assert_int_eq(ration_ctx_with_deadline(NULL, ration_now() - 1, &now),
			 0);

	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DISCARD, now),
			 -ETIMEDOUT);

	ck_assert_int_eq(nreps, 1);
	ck_assert_int_eq(reps[0].declared, 7);
	ck_assert_int_eq(reps[0].status, -ECANCELED);
	ck_assert_int_eq(reps[0].run_ns, 0);
	atomic_store(&gate, true);
	ck_assert_int_eq(ration_group_wait(g), -ECANCELED);
	ck_assert_int_eq(nreps, 2);
	ration_group_free(g);
	ration_ctx_unref(now);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_group_stats_of_empty_group)
{
	ration_group_t *g;
	ration_group_stats_t st;
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);

	ration_group_stats(g, &st);

	ck_assert_int_eq(st.limit, 0); /* no budget: no default limit */
	ck_assert_uint_eq(st.started, 0);
	ck_assert_uint_eq(st.tasks, 0);
	ck_assert_int_eq(st.wait_p50_ns, 0);
	ck_assert_int_eq(st.max_peak_bytes, -1);
	ck_assert_int_eq(st.first_error, 0);
	ration_group_free(g);
}
END_TEST

static TCase *
tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, setup, NULL);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *
group_suite(void)
{
	Suite *s = suite_create("group");
	TCase *tc;

	tc = tcase(s, "args");
	tcase_add_test(tc, test_group_bad_arguments_are_einval);
	tcase_add_test(tc, test_group_weight_above_budget_is_e2big_at_once);
	tcase_add_test(tc, test_group_weight_unchecked_without_budget);

	tc = tcase(s, "errors");
	tcase_add_test(tc,
		       test_group_first_error_cancels_siblings_and_is_returned);
	tcase_add_test(tc, test_group_go_after_first_error_returns_ctx_error);
	tcase_add_test(tc, test_group_keep_going_runs_everything);

	tc = tcase(s, "limits");
	tcase_add_test(tc, test_group_limit_is_respected);
	tcase_add_test(tc, test_group_default_limit_is_pool_threads);
	tcase_add_test(tc, test_group_nested_go_ignores_default_limit);
	tcase_add_test(tc, test_group_budget_is_never_exceeded);
	tcase_add_test(tc, test_group_go_blocks_while_budget_full);
	tcase_add_test(tc, test_group_waiting_for_slot_holds_no_budget);
	tcase_add_test(tc, test_group_try_go_never_blocks);
	tcase_add_test(tc, test_group_blocked_go_runs_its_own_queued_task);
	tcase_add_test(tc,
		       test_group_blocked_go_leaves_other_groups_tasks_alone);
	tcase_add_test(
		tc,
		test_group_blocked_go_runs_nothing_of_a_pool_with_thread_init);
	tcase_add_test(tc,
		       test_group_blocked_go_stops_helping_after_long_tasks);

	tc = tcase(s, "lifecycle");
	tcase_add_test(tc, test_group_go_after_wait_is_epipe);
	tcase_add_test(tc, test_group_go_blocked_at_wait_is_epipe);
	tcase_add_test(tc,
		       test_group_cancelled_group_go_fails_and_fn_never_runs);
	tcase_add_test(tc, test_group_deadline_parent_reports_etimedout);
	tcase_add_test(tc, test_group_nested_go_from_task);
	tcase_add_test(tc, test_group_discarded_tasks_count_as_failed);
	tcase_add_test(tc, test_group_free_waits_for_running_tasks);

	tc = tcase(s, "report");
	tcase_add_test(tc, test_group_report_fields);
	tcase_add_test(tc, test_group_report_of_discarded_task);
	tcase_add_test(tc, test_group_stats_of_empty_group);
	return s;
}

int
main(void)
{
	int failed = run_suite(group_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
