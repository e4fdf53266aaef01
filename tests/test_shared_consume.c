/* test_shared_consume.c - ration_sem_consume() on the shared-memory
 * semaphore: the contract of ration/sem.h (units taken now, in_use past
 * the size, FIFO waiters held back until back in range, repaid by release,
 * counted in stats) across processes, on the lock-free path and under the
 * lock, and consumed units of a dead process coming back.
 *
 * Children report through their exit status and a scratch mapping, reaped
 * with a deadline. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include <ration.h>
#include <ration/shared.h>

#include "helpers.h"
#include "procs.h"
#include "shm_helpers.h"

static ration_sem_stats_t
stats_of(ration_sem_t *s)
{
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	return st;
}

/* Nobody queued: the lock-free path (the thread's lane) takes it. */
START_TEST(test_shared_consume_passes_the_size_and_is_repaid_by_release)
{
	char name[64];
	new_name(name, sizeof(name));
	ration_sem_t *s = create(name, 10);
	ck_assert_int_eq(ration_sem_try_acquire(s, 4), 0);
	ck_assert_int_eq(ration_sem_consume(s, 15), 0); /* more than the size */
	struct shm_lane *l = own_lane(shm_of(s)->g, s);
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(atomic_load(&l->consumed), 15); /* it took the lane */

	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.available, -9);
	ck_assert_int_eq(st.in_use, 19);
	ck_assert_int_eq(st.max_in_use, 19);
	ck_assert_uint_eq(st.consumed, 15);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	ck_assert_int_eq(ration_sem_acquire_until(s, ration_now() + 20 * MS, 1),
			 -ETIMEDOUT);
	ck_assert_int_eq(ration_sem_release(s, 20), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_release(s, 15), 0);
	ck_assert_int_eq(ration_sem_available(s), 6);
	ck_assert_int_eq(ration_sem_try_acquire(s, 6), 0);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* With waiters queued (in other processes) consume takes the lock; no
 * waiter is granted until in_use + its weight fits, and then in order. */
START_TEST(test_shared_consume_holds_back_waiters_in_fifo_order)
{
	char name[64];
	new_name(name, sizeof(name));
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	ck_assert_int_eq(ration_sem_try_acquire(s, 8), 0);
	struct job a = {.name = name, .sc = sc, .n = 5, .index = 0};
	struct job b = {.name = name, .sc = sc, .n = 2, .index = 1};
	pid_t pa = spawn(child_wait_log, &a);
	wait_waiters(s, 1);
	pid_t pb = spawn(child_wait_log, &b);
	wait_waiters(s, 2);

	ck_assert_int_eq(ration_sem_consume(s, 6), 0); /* in_use 14 */
	ck_assert_int_eq(ration_sem_release(s, 8),
			 0); /* in_use 6: a (5) does not fit */
	sleep_ns(30 * MS);   /* give a wrong grant time to show */
	ck_assert_int_eq(atomic_load(&sc->nclaimed), 0);
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_release(s, 1),
			 0); /* in_use 5: a fits, b then not */
	WAIT_FOR(atomic_load(&sc->norder) == 1);
	ck_assert_int_eq(atomic_load(&sc->order[0]), 0);
	sleep_ns(30 * MS);
	ck_assert_int_eq(atomic_load(&sc->nclaimed), 1);
	ck_assert_int_eq(ration_sem_release(s, 5), 0); /* the rest: b fits */
	WAIT_FOR(atomic_load(&sc->norder) == 2);
	ck_assert_int_eq(atomic_load(&sc->order[1]), 1);
	ck_assert_uint_eq(stats_of(s).consumed, 6);
	atomic_store(&sc->go, 1 << 0 | 1 << 1); /* a and b release */
	ck_assert_int_eq(reap(pa), 0);
	ck_assert_int_eq(reap(pb), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* Consume j->n, say so, and wait to be killed. */
static int
child_consume_hold(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	int rc = ration_sem_consume(s, j->n);
	atomic_store(&j->sc->ready, 1);
	if (rc != 0)
		return rc;
	for (;;)
		pause();
}

/* Consumed units are the process's weight like any other: they come back
 * when it dies; the count of consumed units stays. */
START_TEST(test_shared_consumed_units_of_a_dead_process_come_back)
{
	char name[64];
	new_name(name, sizeof(name));
	ration_sem_t *s = create(name, 10);
	struct job j = {.name = name, .sc = scratch_new(), .n = 12};
	pid_t child = spawn(child_consume_hold, &j);
	WAIT_FOR(atomic_load(&j.sc->ready));
	ck_assert_int_eq(ration_sem_available(s), -2);
	kill_and_reap(child);
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 10),
		0);
	ration_sem_stats_t st = stats_of(s);
	ck_assert_uint_eq(st.consumed, 12);
	ck_assert_int_eq(st.in_use, 10);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

static Suite *
consume_suite(void)
{
	Suite *s = suite_create("shared_consume");
	TCase *tc = tcase_create("consume");
	tcase_set_timeout(tc, 60);
	tcase_add_test(
		tc,
		test_shared_consume_passes_the_size_and_is_repaid_by_release);
	tcase_add_test(tc,
		       test_shared_consume_holds_back_waiters_in_fifo_order);
	tcase_add_test(tc,
		       test_shared_consumed_units_of_a_dead_process_come_back);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	runner_pid = getpid();
	int failed = run_suite(consume_suite());
	remove_leftovers();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
