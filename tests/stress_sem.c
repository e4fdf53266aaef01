/* stress_sem.c - the semaphore races of contract §7 at full length (meson
 * suite 'stress'). RATION_STRESS_ROUNDS caps every round count, for the
 * sanitizer runs. The drivers are in sem_races.h; test_sem.c runs the
 * same ones briefly in the unit suite.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "helpers.h"
#include "sem_races.h"

/* One line per test on stderr: how long the rounds took (the log shows
 * whether a slowdown, not only a failure, crept in). */
static void
report(const char *what, long rounds, int64_t t0)
{
	double s = (double)(ration_now() - t0) / 1e9;
	fprintf(stderr, "%s: %ld rounds in %.2f s (%.0f/s)\n", what, rounds, s,
		s > 0 ? (double)rounds / s : 0.0);
}

/* contract §7.3: 10^5 grant/cancel races; final available == size. */
START_TEST(test_stress_grant_cancel_race_loses_no_weight)
{
	struct gc_race g;
	long rounds = stress_rounds(100000);

	int64_t t0 = ration_now();
	gc_race_run(&g, rounds);
	report("grant/cancel", rounds, t0);

	gc_race_check(&g, rounds);
}
END_TEST

/* contract §7.6: 2 waiters, 2 concurrent releasers, 10^6 rounds, no hang. */
START_TEST(test_stress_concurrent_releasers_lose_no_wakeup)
{
	struct lw_race l;
	long rounds = stress_rounds(1000000);

	int64_t t0 = ration_now();
	lw_race_run(&l, rounds);
	report("lost wake-up", rounds, t0);

	lw_race_check(&l, rounds);
}
END_TEST

/* contract §7.9: 5 * 10^4 cancels (and deadlines) racing with the waiter
 * parking; the cancel delay sweeps 0..150 us, so every phase of the wait
 * (queueing, head spin, park, sleep) is hit thousands of times. */
START_TEST(test_stress_cancel_racing_with_park_wakes_waiter)
{
	struct cp_race c;
	long rounds = stress_rounds(50000);

	int64_t t0 = ration_now();
	cp_race_run(&c, rounds);
	report("cancel/park", rounds, t0);

	cp_race_check(&c, rounds);
}
END_TEST

/* Many threads: acquires with random ctx timeouts, tries, _until, and the
 * occasional resize (between 8 and 16). Occupancy never exceeds the
 * largest size; at the end every unit is back. */
START_TEST(test_stress_random_mix_keeps_the_books)
{
	struct mix m = {.size_max = 16,
			.ops = stress_rounds(40000),
			.timeouts = true,
			.resize = true};

	int64_t t0 = ration_now();
	bool finished = mix_run(&m, 8);
	report("mix+resize (ops/thread)", m.ops, t0);

	ck_assert(finished);
	ck_assert_int_eq(atomic_load(&m.bad), 0);
	ck_assert_int_eq(atomic_load(&m.over), 0);
	ck_assert_int_le(atomic_load(&m.occ_max), 16);
	ck_assert_int_eq(atomic_load(&m.occ), 0);
	ck_assert_int_gt(atomic_load(&m.ok), 0);
	ck_assert_int_gt(atomic_load(&m.fails), 0);
	ration_sem_stats_t st;
	ration_sem_stats(m.s, &st);
	ck_assert_int_eq(st.available, st.size);
	ck_assert_int_eq(st.in_use, 0);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(st.waiting_weight, 0);
	ck_assert_int_le(st.max_in_use, 16);
	ck_assert_int_eq(st.acquired, (uint64_t)atomic_load(&m.ok));
	ck_assert_int_eq(ration_sem_free(m.s), 0);
}
END_TEST

/* The same mix without resizes: occupancy stays within the one size. */
START_TEST(test_stress_random_mix_without_resize_stays_within_size)
{
	struct mix m = {
		.size_max = 10, .ops = stress_rounds(40000), .timeouts = true};

	int64_t t0 = ration_now();
	bool finished = mix_run(&m, 6);
	report("mix (ops/thread)", m.ops, t0);

	ck_assert(finished);
	ck_assert_int_eq(atomic_load(&m.bad), 0);
	ck_assert_int_eq(atomic_load(&m.over), 0);
	ck_assert_int_le(atomic_load(&m.occ_max), 10);
	ck_assert_int_eq(atomic_load(&m.occ), 0);
	ration_sem_stats_t st;
	ration_sem_stats(m.s, &st);
	ck_assert_int_eq(st.size, 10);
	ck_assert_int_eq(st.available, 10);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_le(st.max_in_use, 10);
	ck_assert_int_eq(st.acquired, (uint64_t)atomic_load(&m.ok));
	ck_assert_int_eq(ration_sem_free(m.s), 0);
}
END_TEST

/* `acquired` is counted per thread on the fast path (lib/sem.c, a few
 * semaphores per thread): with more semaphores than that, threads that
 * come and go, and a semaphore freed and made again in between, every
 * fast acquire is still counted exactly once, on its own semaphore. */
#define NSEMS 7
static ration_sem_t *count_sems[NSEMS];

static void *
count_worker(void *arg)
{
	long rounds = (long)(intptr_t)arg;
	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < NSEMS; i++) {
			/* sem i gets i + 1 acquires per round */
			for (int k = 0; k <= i; k++) {
				ck_assert_int_eq(ration_sem_try_acquire(
							 count_sems[i], 1),
						 0);
				ck_assert_int_eq(
					ration_sem_release(count_sems[i], 1),
					0);
			}
		}
	}
	return NULL;
}

START_TEST(test_stress_acquired_counted_once_per_thread_and_sem)
{
	long rounds = stress_rounds(20000);
	int64_t t0 = ration_now();
	for (int gen = 0; gen < 3; gen++) {
		for (int i = 0; i < NSEMS; i++)
			ck_assert_int_eq(
				ration_sem_new(64, NULL, &count_sems[i]), 0);
		pthread_t t[3];
		for (int k = 0; k < 3; k++)
			ck_assert_int_eq(
				pthread_create(&t[k], NULL, count_worker,
					       (void *)(intptr_t)rounds),
				0);
		/* one more on this (long-lived) thread */
		(void)count_worker((void *)(intptr_t)rounds);
		for (int k = 0; k < 3; k++)
			pthread_join(t[k], NULL);
		for (int i = 0; i < NSEMS; i++) {
			ration_sem_stats_t st;
			ration_sem_stats(count_sems[i], &st);
			ck_assert_uint_eq(st.acquired,
					  (uint64_t)(4 * rounds * (i + 1)));
			ck_assert_int_eq(ration_sem_free(count_sems[i]), 0);
		}
	}
	report("acquired counts", 3 * 4 * rounds, t0);
}
END_TEST

static Suite *
stress_suite(void)
{
	Suite *su = suite_create("stress_sem");
	TCase *tc = tcase_create("races");

	tcase_set_timeout(tc, 500); /* 10^6 hand-offs on 2 busy vCPUs */
	tcase_add_test(tc, test_stress_grant_cancel_race_loses_no_weight);
	tcase_add_test(tc, test_stress_concurrent_releasers_lose_no_wakeup);
	tcase_add_test(tc, test_stress_cancel_racing_with_park_wakes_waiter);
	tcase_add_test(tc, test_stress_random_mix_keeps_the_books);
	tcase_add_test(tc,
		       test_stress_random_mix_without_resize_stays_within_size);
	tcase_add_test(tc,
		       test_stress_acquired_counted_once_per_thread_and_sem);
	suite_add_tcase(su, tc);
	return su;
}

int
main(void)
{
	int failed = run_suite(stress_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
