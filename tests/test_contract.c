/* test_contract.c - the semaphore contract of ration/sem.h, written once and
 * run against every backend: the in-process semaphore, the shared-memory
 * one (ration/shared.h) and the Redis one (ration/redis.h).
 *
 *	test_contract inproc|shared|redis
 *
 * Each backend is an opener (a fresh semaphore of a given size) and a
 * clean-up; tests/meson.build runs the binary once per backend. The Redis
 * run starts its own redis-server (tests/redis_server.h) and is skipped
 * (77) without one. What only one backend has (crash recovery, a server
 * restart, segments, several handles) stays in test_shared*.c and
 * test_redis*.c. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ration.h>

#include "helpers.h"
#include "redis_server.h"

/* ---- backends ---- */

struct backend {
	const char *name;
	/* Open a new semaphore of @size units, named @name (for stats). */
	int (*open)(const char *name, int64_t size, ration_sem_t **out);
	/* Remove what open left behind, once every handle is freed. */
	void (*remove)(const char *name);
	bool leases; /* ration_sem_acquire_lease() works */
	int64_t max; /* the most units in use it counts exactly */
};

static int
open_inproc(const char *name, int64_t size, ration_sem_t **out)
{
	return ration_sem_new(size, &(ration_sem_opts_t){.name = name}, out);
}

static int
open_shared(const char *name, int64_t size, ration_sem_t **out)
{
	return ration_sem_open_shared(
		name, size, &(ration_shared_opts_t){.create = true}, out);
}

static void
remove_shared(const char *name)
{
	(void)ration_sem_unlink_shared(name);
}

static int
open_redis(const char *name, int64_t size, ration_sem_t **out)
{
	return ration_sem_open_redis(main_srv.uri, name, size, NULL, out);
}

static const struct backend backends[] = {
	{"inproc", open_inproc, NULL, false, RATION_SEM_MAX},
	{"shared", open_shared, remove_shared, true, RATION_SEM_MAX},
	/* Lua numbers are doubles: exact only up to 2^53. */
	{"redis", open_redis, NULL, true, RATION_REMOTE_SEM_MAX},
};

static const struct backend *B; /* the one under test */

/* ---- fixture: every test gets a fresh name; teardown removes it ---- */

static char cur_name[64];
static _Atomic int name_seq;

static void
setup(void)
{
	snprintf(cur_name, sizeof(cur_name), "ration-c-%d-%d", (int)getpid(),
		 atomic_fetch_add(&name_seq, 1));
}

static void
teardown(void)
{
	if (B->remove != NULL)
		B->remove(cur_name);
}

/* The test's semaphore: @size units, all free. */
static ration_sem_t *
sem(int64_t size)
{
	ration_sem_t *s = NULL;
	ck_assert_int_eq(B->open(cur_name, size, &s), 0);
	return s;
}

static ration_sem_stats_t
stats(ration_sem_t *s)
{
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	return st;
}

/* Nothing more is granted for a while: the queue must hold. */
static void
assert_still_waiting(struct bg *b)
{
	sleep_ns(50 * MS);
	ck_assert(!atomic_load(&b->done));
}

/* ---- the contract ---- */

START_TEST(test_contract_errors_in_order)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(NULL, NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 0), -EINVAL);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, -1), -EINVAL);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 11), -E2BIG);
	ck_assert_int_eq(ration_sem_try_acquire(s, 11), -E2BIG);
	ck_assert_int_eq(ration_sem_release(s, 0), -EINVAL);
	ck_assert_int_eq(ration_sem_release(s, 1),
			 -EOVERFLOW); /* nothing held */
	ck_assert_int_eq(ration_sem_resize(s, 0), -EINVAL);
	/* A deadline already past fails at once, even with units free. */
	ck_assert_int_eq(ration_sem_acquire_until(s, ration_now() - 1, 1),
			 -ETIMEDOUT);
	/* -E2BIG comes before the ctx's error. */
	ration_ctx_t *done;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &done), 0);
	ration_ctx_cancel(done);
	ck_assert_int_eq(ration_sem_acquire(s, done, 11), -E2BIG);
	ck_assert_int_eq(ration_sem_acquire(s, done, 1), -ECANCELED);
	ration_ctx_unref(done);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

START_TEST(test_contract_weights_and_try)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 6), 0);
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_try_acquire(s, 5), -EAGAIN);
	ck_assert_int_eq(ration_sem_try_acquire(s, 4), 0);
	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_release(s, 11), -EOVERFLOW); /* 10 held */
	ck_assert_int_eq(ration_sem_free(s), -EBUSY); /* still usable */
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ration_sem_stats_t st = stats(s);
	ck_assert_int_eq(st.size, 10);
	ck_assert_int_eq(st.in_use, 0);
	ck_assert_int_eq(st.max_in_use, 10);
	ck_assert_uint_eq(st.acquired, 2);
	ck_assert_uint_eq(st.rejected, 1);
	ck_assert_str_eq(st.name, cur_name);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* 6, 5, 1, 5 queue in this order on a full semaphore of 10. */
START_TEST(test_contract_fifo_small_does_not_pass_large)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 10), 0);
	struct bg w[4];
	int64_t want[4] = {6, 5, 1, 5};
	for (int i = 0; i < 4; i++) {
		bg_acquire(&w[i], s, NULL, want[i]);
		wait_waiters(s, i + 1);
	}
	/* 10 free: 6 goes; 5 does not fit in the 4 left, and the 1 behind
	 * it, which would, must not pass it. */
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(bg_join(&w[0]), 0);
	assert_still_waiting(&w[2]);
	ck_assert(!atomic_load(&w[1].done));
	/* The 6 back: 5 and 1 go; the last 5 waits for them. */
	ck_assert_int_eq(ration_sem_release(s, 6), 0);
	ck_assert_int_eq(bg_join(&w[1]), 0);
	ck_assert_int_eq(bg_join(&w[2]), 0);
	assert_still_waiting(&w[3]);
	ck_assert_int_eq(ration_sem_release(s, 6), 0);
	ck_assert_int_eq(bg_join(&w[3]), 0);
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ration_sem_stats_t st = stats(s);
	ck_assert_int_eq(st.available, 10);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_uint_eq(st.contended, 4);
	ck_assert_uint_eq(st.acquired, 5);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* A request for the whole size is not starved by a stream of small ones:
 * once it queues, nobody passes it, not even a try. */
START_TEST(test_contract_large_request_is_not_starved)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 5), 0);
	struct bg big, small;
	bg_acquire(&big, s, NULL, 10);
	wait_waiters(s, 1);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN); /* 5 free */
	bg_acquire(&small, s, NULL, 1);
	wait_waiters(s, 2);
	assert_still_waiting(&small);
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ck_assert_int_eq(bg_join(&big), 0);
	assert_still_waiting(&small);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(bg_join(&small), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

static void
cancel_after(ration_ctx_t *ctx, int64_t delay_ns)
{
	sleep_ns(delay_ns);
	ration_ctx_cancel(ctx);
}

/* Waits that end by deadline or cancel take nothing and leave nothing
 * behind: the head leaving lets the one behind it through. */
START_TEST(test_contract_deadline_and_cancel_lose_no_weight)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 8), 0);
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	struct bg head, behind;
	bg_acquire(&head, s, ctx, 5); /* does not fit: 2 free */
	wait_waiters(s, 1);
	bg_acquire(&behind, s, NULL, 2); /* would fit, but FIFO */
	wait_waiters(s, 2);
	assert_still_waiting(&behind);
	cancel_after(ctx, 0);
	ck_assert_int_eq(bg_join(&head), -ECANCELED);
	ck_assert_int_eq(bg_join(&behind), 0); /* the head left: it goes */
	ration_ctx_unref(ctx);

	int64_t t0 = ration_now();
	ck_assert_int_eq(ration_sem_acquire_until(s, t0 + 50 * MS, 1),
			 -ETIMEDOUT);
	int64_t late = ration_now() - (t0 + 50 * MS);
	ck_assert_int_ge(late, 0);
	ck_assert_int_lt(late, TEST_LATE_NS);

	ration_sem_stats_t st = stats(s);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_uint_eq(st.cancels, 1);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_int_eq(st.in_use, 10);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 10),
			 0); /* all of it came back */
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

START_TEST(test_contract_resize_grows_wakes_and_shrinks_into_deficit)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 4), 0);
	struct bg w;
	bg_acquire(&w, s, NULL, 8);
	wait_waiters(s, 1);
	ck_assert_int_eq(ration_sem_resize(s, 12), 0); /* 8 free now */
	ck_assert_int_eq(bg_join(&w), 0);
	ck_assert_int_eq(ration_sem_available(s), 0);

	/* Shrink below what is held: a deficit that releases repay. */
	ck_assert_int_eq(ration_sem_resize(s, 6), 0);
	ck_assert_int_eq(ration_sem_available(s), -6);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	/* A waiter asking more than the new size fails with -E2BIG. */
	bg_acquire(&w, s, NULL, 6);
	wait_waiters(s, 1);
	ck_assert_int_eq(ration_sem_resize(s, 5), 0);
	ck_assert_int_eq(bg_join(&w), -E2BIG);
	ck_assert_int_eq(ration_sem_release(s, 8), 0);
	ck_assert_int_eq(ration_sem_available(s), 1);
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_available(s), 5);
	ck_assert_int_eq(stats(s).size, 5);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

START_TEST(test_contract_close_fails_waiters_release_still_works)
{
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 10), 0);
	struct bg w[2];
	bg_acquire(&w[0], s, NULL, 3);
	wait_waiters(s, 1);
	bg_acquire_until(&w[1], s, ration_now() + TEST_WAIT_NS, 1);
	wait_waiters(s, 2);
	ration_sem_close(s);
	ck_assert_int_eq(bg_join(&w[0]), -EPIPE);
	ck_assert_int_eq(bg_join(&w[1]), -EPIPE);
	ration_sem_close(s); /* idempotent */
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 100),
			 -EPIPE); /* before -E2BIG */
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_resize(s, 3), -EPIPE);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ration_sem_stats_t st = stats(s);
	ck_assert(st.closed);
	ck_assert_int_eq(st.size, 10);
	ck_assert_int_eq(st.available, 10);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* Threads taking and giving back random weights never hold more than
 * the size together, and every acquire is counted. */
struct occupancy {
	ration_sem_t *s;
	int64_t size;
	int rounds;
	_Atomic int64_t held;
	_Atomic int violations;
};

static void *
occupant(void *arg)
{
	struct occupancy *o = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (int i = 0; i < o->rounds; i++) {
		int64_t n = 1 + rand_r(&seed) % o->size;
		if (ration_sem_acquire(o->s, NULL, n) != 0) {
			atomic_fetch_add(&o->violations, 1);
			break;
		}
		if (atomic_fetch_add(&o->held, n) + n > o->size)
			atomic_fetch_add(&o->violations, 1);
		atomic_fetch_sub(&o->held, n);
		ck_assert_int_eq(ration_sem_release(o->s, n), 0);
	}
	return NULL;
}

START_TEST(test_contract_weights_never_exceed_size)
{
	struct occupancy o = {.s = sem(8), .size = 8};
	/* A Redis round trip is ~100x a local one: fewer rounds there. */
	o.rounds =
		(int)stress_rounds(strcmp(B->name, "redis") == 0 ? 100 : 2000);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, occupant, &o), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&o.violations), 0);
	ration_sem_stats_t st = stats(o.s);
	ck_assert_int_eq(st.available, 8);
	ck_assert_int_le(st.max_in_use, 8);
	ck_assert_uint_eq(st.acquired, 4 * (uint64_t)o.rounds);
	ck_assert_int_eq(ration_sem_free(o.s), 0);
}
END_TEST

START_TEST(test_contract_leases)
{
	ration_sem_t *s = sem(4);
	ration_lease_t a, b;
	if (!B->leases) {
		ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 1, &a),
				 -EINVAL);
		ck_assert_int_eq(ration_lease_release(s, &a), -EINVAL);
		ck_assert_int_eq(ration_sem_available(s), 4);
		ck_assert_int_eq(ration_sem_free(s), 0);
		return;
	}
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 1, NULL), -EINVAL);
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 0, &a), -EINVAL);
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 5, &a), -E2BIG);
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 1, &a), 0);
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 3, &b), 0);
	ck_assert_int_eq(a.n, 1);
	ck_assert_int_eq(b.n, 3);
	ck_assert_uint_gt(b.fence, a.fence);
	ck_assert_int_gt(a.expires_ns, ration_now());
	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_lease_release(s, &a), 0);
	ck_assert_int_eq(ration_lease_release(s, &a),
			 -ESTALE); /* already given back */
	ck_assert_int_eq(ration_lease_release(s, NULL), -EINVAL);
	ck_assert_int_eq(ration_sem_available(s), 1);
	ck_assert_int_eq(ration_lease_release(s, &b), 0);
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* consume takes units now, past the size if need be; a waiter is granted
 * only once in_use + its weight fits again, in FIFO order. */
START_TEST(test_contract_consume_past_the_size)
{
	ration_sem_t *s = sem(4);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 2), 0);
	ck_assert_int_eq(ration_sem_consume(s, 3), 0);
	ck_assert_int_eq(ration_sem_available(s), -1);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	struct bg w;
	bg_acquire(&w, s, NULL, 2);
	wait_waiters(s, 1);
	ck_assert_int_eq(ration_sem_release(s, 2),
			 0); /* in_use 3: 2 does not fit */
	assert_still_waiting(&w);
	ck_assert_int_eq(ration_sem_release(s, 1), 0); /* in_use 2: it fits */
	ck_assert_int_eq(bg_join(&w), 0);
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ration_sem_stats_t st = stats(s);
	ck_assert_int_eq(st.available, 4);
	ck_assert_uint_eq(st.consumed, 3);
	ck_assert_int_ge(st.max_in_use, 5);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* consume's errors come in the documented order (-EINVAL, -EPIPE,
 * -EOVERFLOW) and take nothing; in_use may reach the backend's B->max
 * exactly, not one more. */
START_TEST(test_contract_consume_errors_in_order)
{
	const int64_t max = B->max;
	ration_sem_t *s = sem(10);
	ck_assert_int_eq(ration_sem_consume(NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_consume(s, 0), -EINVAL);
	ck_assert_int_eq(ration_sem_consume(s, -3), -EINVAL);
	ck_assert_int_eq(ration_sem_consume(s, max + 1), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_consume(s, INT64_MAX), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_try_acquire(s, 3), 0);
	ck_assert_int_eq(ration_sem_consume(s, max - 2), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_available(s), 7);
	ck_assert_int_eq(ration_sem_consume(s, max - 3),
			 0); /* in_use at the limit */
	ck_assert_int_eq(ration_sem_consume(s, 1), -EOVERFLOW);

	/* Closed with in_use at the limit: -EPIPE before -EOVERFLOW, and
	 * -EINVAL before -EPIPE. */
	ration_sem_close(s);
	ck_assert_int_eq(ration_sem_consume(s, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_consume(s, max + 1), -EPIPE);
	ck_assert_int_eq(ration_sem_consume(s, INT64_MAX), -EPIPE);
	ck_assert_int_eq(ration_sem_consume(s, 0), -EINVAL);
	ck_assert_int_eq(ration_sem_release(s, max), 0);
	ration_sem_stats_t st = stats(s);
	ck_assert_int_eq(st.available, 10);
	ck_assert_uint_eq(st.consumed, (uint64_t)(max - 3));
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

static Suite *
contract_suite(void)
{
	Suite *su = suite_create(B->name);
	TCase *tc = tcase_create("contract");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_contract_errors_in_order);
	tcase_add_test(tc, test_contract_weights_and_try);
	tcase_add_test(tc, test_contract_fifo_small_does_not_pass_large);
	tcase_add_test(tc, test_contract_large_request_is_not_starved);
	tcase_add_test(tc, test_contract_deadline_and_cancel_lose_no_weight);
	tcase_add_test(
		tc, test_contract_resize_grows_wakes_and_shrinks_into_deficit);
	tcase_add_test(tc,
		       test_contract_close_fails_waiters_release_still_works);
	tcase_add_test(tc, test_contract_weights_never_exceed_size);
	tcase_add_test(tc, test_contract_leases);
	tcase_add_test(tc, test_contract_consume_past_the_size);
	tcase_add_test(tc, test_contract_consume_errors_in_order);
	suite_add_tcase(su, tc);
	return su;
}

int
main(int argc, char **argv)
{
	for (size_t i = 0;
	     argc == 2 && i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(argv[1], backends[i].name) == 0)
			B = &backends[i];
	if (B == NULL) {
		fprintf(stderr, "usage: test_contract inproc|shared|redis\n");
		return EXIT_FAILURE;
	}
	if (strcmp(B->name, "redis") == 0)
		return redis_suite_main(contract_suite);
	return run_suite(contract_suite()) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
