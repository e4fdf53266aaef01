/* stress_pool.c - random submit / try_submit / resize / stats / shutdown
 * from several threads against a few pools, with shutdown racing the
 * submitters; every fn must be called exactly once per accepted task and
 * never for a rejected one.
 *
 * The run is cut into epochs: each makes fresh pools, lets THREADS threads
 * do EPOCH_OPS random operations on them (one thread also shuts a pool
 * down at a random point, sometimes with a short ctx), then drains, checks
 * every task's record and the pools' counters, and frees.
 *
 *     RATION_STRESS_ROUNDS=20000 build/tests/stress_pool
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"

#define NPOOLS           3
#define THREADS          4
#define EPOCH_OPS        5000
#define MAX_THREADS_EVER 6 /* resize picks 1..6; initial sizes are <= 4 */
/* Tasks per epoch: one per op, plus nested submits from tasks (fewer). */
#define MAX_TASKS (2 * EPOCH_OPS)

static ration_pool_t *pools[NPOOLS];
static _Atomic uint32_t next_id;
static _Atomic uint8_t calls[MAX_TASKS];    /* times fn was called */
static _Atomic uint8_t accepted[MAX_TASKS]; /* submit returned 0 */
static uint8_t task_pool[MAX_TASKS];        /* written before submit */
static _Atomic uint64_t n_accepted, n_ok, n_cancelled;
static _Atomic int bad;      /* unexpected return code or status */
static _Atomic int bad_code; /* the first one, for the message */
static _Atomic int bad_where;
static _Atomic int too_many; /* stats showed more threads than ever allowed */

static void
note_bad(int where, int code)
{
	if (atomic_fetch_add(&bad, 1) == 0) {
		atomic_store(&bad_code, code);
		atomic_store(&bad_where, where);
	}
}

static uint64_t
rnd(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void task_fn(void *arg, int status);

/* Submit a fresh task to pool @pi in one of the ways; count it if taken. */
static void
submit_one(unsigned pi, int how, uint64_t *rs)
{
	uint32_t id = atomic_fetch_add(&next_id, 1);
	if (id >= MAX_TASKS)
		return;
	task_pool[id] = (uint8_t)pi;
	void *arg = (void *)(uintptr_t)id;
	ration_pool_t *p = pools[pi];
	int rc;

	if (how == 0) {
		rc = ration_pool_try_submit(p, task_fn, arg);
		if (rc != 0 && rc != -EAGAIN && rc != -EPIPE)
			note_bad(1, rc);
	} else if (how == 1 || (rnd(rs) & 7) != 0) {
		rc = ration_pool_submit(p, NULL, task_fn, arg);
		if (rc != 0 && rc != -EPIPE)
			note_bad(2, rc);
	} else {
		ration_ctx_t *ctx;
		if (ration_ctx_with_timeout(NULL, 100000, &ctx) != 0) {
			note_bad(3, -ENOMEM);
			return;
		}
		rc = ration_pool_submit(p, ctx, task_fn, arg);
		if (rc != 0 && rc != -EPIPE && rc != -ETIMEDOUT)
			note_bad(4, rc);
		ration_ctx_unref(ctx);
	}
	if (rc == 0) {
		atomic_store(&accepted[id], 1);
		atomic_fetch_add(&n_accepted, 1);
	}
}

static void
task_fn(void *arg, int status)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;

	if (status == 0)
		atomic_fetch_add(&n_ok, 1);
	else if (status == -ECANCELED)
		atomic_fetch_add(&n_cancelled, 1);
	else
		note_bad(5, status);
	atomic_fetch_add(&calls[id], 1);
	if (status != 0)
		return;
	uint64_t rs = (uint64_t)id * 0x9e3779b97f4a7c15u + 1;
	uint64_t r = rnd(&rs);
	if ((r & 63) == 0)
		sleep_ns(50000); /* lets the small queue fill up */
	else if ((r & 63) == 1)
		submit_one(task_pool[id], 0, &rs); /* nested, never blocks */
}

struct runner {
	pthread_t t;
	int idx;
	long ops;
	long shutdown_at; /* op index, or -1 */
	uint64_t seed;
	_Atomic bool done;
};

static void *
runner_main(void *arg)
{
	struct runner *r = arg;
	uint64_t rs = r->seed;

	for (long i = 0; i < r->ops; i++) {
		uint64_t x = rnd(&rs);
		unsigned pi = (unsigned)(x >> 8) % NPOOLS;
		unsigned op = (unsigned)(x & 255);
		if (i == r->shutdown_at) {
			/* A racing shutdown: sometimes bounded, sometimes not. */
			enum ration_shutdown mode =
				(x >> 16) & 1 ? RATION_DISCARD : RATION_DRAIN;
			ration_ctx_t *ctx = NULL;
			if ((x >> 17) & 1 &&
			    ration_ctx_with_timeout(NULL, 200000, &ctx) != 0)
				note_bad(6, -ENOMEM);
			int rc = ration_pool_shutdown(pools[pi], mode, ctx);
			if (rc != 0 && !(ctx != NULL && rc == -ETIMEDOUT))
				note_bad(7, rc);
			if (ctx != NULL)
				ration_ctx_unref(ctx);
		} else if (op < 110) {
			submit_one(pi, 0, &rs);
		} else if (op < 230) {
			submit_one(pi, 1 + (op & 1), &rs);
		} else if (op < 240) {
			int rc = ration_pool_resize(
				pools[pi],
				1 + (unsigned)(x >> 20) % MAX_THREADS_EVER);
			if (rc != 0 && rc != -EPIPE)
				note_bad(8, rc);
		} else {
			ration_pool_stats_t st;
			ration_pool_stats(pools[pi], &st);
			if (st.threads > MAX_THREADS_EVER ||
			    st.running > MAX_THREADS_EVER)
				atomic_fetch_add(&too_many, 1);
		}
	}
	atomic_store(&r->done, true);
	return NULL;
}

/* A runner that does not finish: say where every pool stands. */
static void
dump_and_fail(long epoch, int runner)
{
	for (int i = 0; i < NPOOLS; i++) {
		ration_pool_stats_t st;
		ration_pool_stats(pools[i], &st);
		fprintf(stderr,
			"pool %d: threads %llu idle %llu running %llu queued "
			"%llu "
			"submitted %llu completed %llu discarded %llu\n",
			i, (unsigned long long)st.threads,
			(unsigned long long)st.idle,
			(unsigned long long)st.running,
			(unsigned long long)st.queued,
			(unsigned long long)st.submitted,
			(unsigned long long)st.completed,
			(unsigned long long)st.discarded);
	}
	ck_abort_msg("epoch %ld: runner %d did not finish its operations",
		     epoch, runner);
}

static void
run_epoch(long epoch, long ops)
{
	static const ration_pool_opts_t opts[NPOOLS] = {
		{.threads = 2, .queue_cap = 4, .name = "st-small"},
		{.threads = 4,
		 .min_threads = 1,
		 .queue_cap = 64,
		 .idle_timeout_ns = 2 * MS,
		 .name = "st-mid"},
		{.threads = 3, .queue_cap = SIZE_MAX, .name = "st-unb"},
	};
	for (int i = 0; i < NPOOLS; i++)
		ck_assert_int_eq(ration_pool_new(&opts[i], &pools[i]), 0);
	atomic_store(&next_id, 0);
	for (int i = 0; i < MAX_TASKS; i++) {
		atomic_store_explicit(&calls[i], 0, memory_order_relaxed);
		atomic_store_explicit(&accepted[i], 0, memory_order_relaxed);
	}
	atomic_store(&n_accepted, 0);
	atomic_store(&n_ok, 0);
	atomic_store(&n_cancelled, 0);

	struct runner r[THREADS];
	for (int i = 0; i < THREADS; i++) {
		r[i] = (struct runner){
			.idx = i,
			.ops = ops / THREADS,
			.seed = (uint64_t)(epoch * THREADS + i) *
					0x2545f4914f6cdd1du +
				7,
		};
		/* Runner 0 shuts one pool down somewhere in the epoch (in
		 * about a third of the epochs, near the end: the pools stay
		 * useful for most of the run). */
		r[i].shutdown_at = -1;
		if (i == 0 && epoch % 3 == 0 && r[i].ops >= 2)
			r[i].shutdown_at =
				r[i].ops / 2 + epoch % (r[i].ops / 2);
		atomic_init(&r[i].done, false);
		ck_assert_int_eq(
			pthread_create(&r[i].t, NULL, runner_main, &r[i]), 0);
	}
	/* An epoch takes well under a second alone; the machine is shared
	 * with other builds, so allow far more before calling it a hang. */
	int64_t deadline = ration_now() + 6 * TEST_WAIT_NS;
	for (int i = 0; i < THREADS; i++) {
		while (!atomic_load(&r[i].done) && ration_now() < deadline)
			sleep_ns(100000);
		if (!atomic_load(&r[i].done))
			dump_and_fail(epoch, i);
		pthread_join(r[i].t, NULL);
	}

	for (int i = 0; i < NPOOLS; i++) {
		int rc = ration_pool_shutdown(
			pools[i], i == 1 ? RATION_DISCARD : RATION_DRAIN, NULL);
		ck_assert_int_eq(rc, 0);
	}
	ck_assert_msg(atomic_load(&bad) == 0,
		      "epoch %ld: unexpected code %d at site %d", epoch,
		      atomic_load(&bad_code), atomic_load(&bad_where));
	ck_assert_int_eq(atomic_load(&too_many), 0);

	uint64_t submitted = 0, completed = 0, discarded = 0;
	for (int i = 0; i < NPOOLS; i++) {
		ration_pool_stats_t st;
		ration_pool_stats(pools[i], &st);
		ck_assert_uint_eq(st.submitted, st.completed + st.discarded);
		ck_assert_uint_eq(st.threads, 0);
		ck_assert_uint_eq(st.running, 0);
		ck_assert_uint_eq(st.queued, 0);
		submitted += st.submitted;
		completed += st.completed;
		discarded += st.discarded;
	}
	ck_assert_uint_eq(submitted, atomic_load(&n_accepted));
	ck_assert_uint_eq(completed, atomic_load(&n_ok));
	ck_assert_uint_eq(discarded, atomic_load(&n_cancelled));
	uint32_t n = atomic_load(&next_id);
	if (n > MAX_TASKS)
		n = MAX_TASKS;
	for (uint32_t id = 0; id < n; id++)
		ck_assert_msg(
			atomic_load(&calls[id]) == atomic_load(&accepted[id]),
			"epoch %ld task %u: accepted %d, fn called %d times",
			epoch, id, atomic_load(&accepted[id]),
			atomic_load(&calls[id]));
	for (int i = 0; i < NPOOLS; i++)
		ration_pool_free(pools[i]);
}

START_TEST(test_pool_random_ops_lose_and_duplicate_no_task)
{
	long total = stress_rounds(1000000);
	long epochs = (total + EPOCH_OPS - 1) / EPOCH_OPS;

	for (long e = 0; e < epochs; e++)
		run_epoch(e, total < EPOCH_OPS ? total : EPOCH_OPS);
}
END_TEST

/* Shutdown races a crowd of blocked submitters on a tiny queue: each gets
 * 0 (and its fn runs or is discarded, once) or -EPIPE (and it never runs). */
struct crowd {
	pthread_t t;
	ration_pool_t *p;
	int base, n;
	_Atomic bool done;
};

static void *
crowd_main(void *arg)
{
	struct crowd *c = arg;
	for (int i = 0; i < c->n; i++) {
		uint32_t id = (uint32_t)(c->base + i);
		int rc = ration_pool_submit(c->p, NULL, task_fn,
					    (void *)(uintptr_t)id);
		if (rc == 0) {
			atomic_store(&accepted[id], 1);
			atomic_fetch_add(&n_accepted, 1);
		} else if (rc != -EPIPE) {
			note_bad(9, rc);
		}
	}
	atomic_store(&c->done, true);
	return NULL;
}

START_TEST(test_pool_shutdown_racing_blocked_submitters_loses_nothing)
{
	long rounds = stress_rounds(1000000) / 2000;
	enum { SUBMITTERS = 4, PER = 200 };
	if (rounds < 5)
		rounds = 5;

	for (long round = 0; round < rounds; round++) {
		ration_pool_t *p;
		ck_assert_int_eq(
			ration_pool_new(&(ration_pool_opts_t){.threads = 2,
							      .queue_cap = 2},
					&p),
			0);
		for (int i = 0; i < MAX_TASKS; i++) {
			atomic_store(&calls[i], 0);
			atomic_store(&accepted[i], 0);
			task_pool[i] = 0;
		}
		atomic_store(&next_id,
			     SUBMITTERS * PER); /* nested ids follow */
		atomic_store(&n_accepted, 0);
		atomic_store(&n_ok, 0);
		atomic_store(&n_cancelled, 0);
		pools[0] = p; /* for nested submits from task_fn */
		struct crowd c[SUBMITTERS];
		for (int i = 0; i < SUBMITTERS; i++) {
			c[i] = (struct crowd){
				.p = p, .base = i * PER, .n = PER};
			atomic_init(&c[i].done, false);
			ck_assert_int_eq(pthread_create(&c[i].t, NULL,
							crowd_main, &c[i]),
					 0);
		}
		sleep_ns((round % 5) * 200000);

		int rc = ration_pool_shutdown(
			p, round & 1 ? RATION_DISCARD : RATION_DRAIN, NULL);

		ck_assert_int_eq(rc, 0);
		for (int i = 0; i < SUBMITTERS; i++) {
			WAIT_FOR(atomic_load(&c[i].done));
			pthread_join(c[i].t, NULL);
		}
		ck_assert_int_eq(atomic_load(&bad), 0);
		ration_pool_stats_t st;
		ration_pool_stats(p, &st);
		ck_assert_uint_eq(st.submitted, st.completed + st.discarded);
		ck_assert_uint_eq(st.completed, atomic_load(&n_ok));
		ck_assert_uint_eq(st.discarded, atomic_load(&n_cancelled));
		/* Nested submits use ids past the crowd's; they are counted in
		 * n_accepted too, so compare the crowd's own ids one by one. */
		for (int id = 0; id < SUBMITTERS * PER; id++)
			ck_assert_int_eq(atomic_load(&calls[id]),
					 atomic_load(&accepted[id]));
		ck_assert_uint_eq(st.submitted, atomic_load(&n_accepted));
		ration_pool_free(p);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("stress_pool");
	TCase *tc = tcase_create("stress");
	tcase_set_timeout(tc, 500);
	tcase_add_test(tc, test_pool_random_ops_lose_and_duplicate_no_task);
	tcase_add_test(
		tc, test_pool_shutdown_racing_blocked_submitters_loses_nothing);
	suite_add_tcase(s, tc);

	int failed = run_suite(s);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
