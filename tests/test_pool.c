/* test_pool.c - ration_pool: arguments, nothing lost, back-pressure,
 * threads, liveness of the wake policy, resize, stats, the default pool.
 *
 * Tasks never block without a deadline: a gate task that waits longer than
 * TEST_WAIT_NS gives up and counts itself as expired, so a bug shows up as
 * a failed assertion, not a hung test. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"
#include "internal/cpu.h"
#include "internal/pool.h"

/* ---- helpers ----------------------------------------------------------- */

/* One task's record: how often its fn was called, with what, where. */
struct rec {
	_Atomic int calls;
	_Atomic int status;
	_Atomic int ok;            /* calls with status 0 */
	_Atomic int cancelled;     /* calls with -ECANCELED */
	_Atomic(pthread_t) thread; /* of the last call */
};

static void
rec_fn(void *arg, int status)
{
	struct rec *r = arg;
	atomic_store(&r->thread, pthread_self());
	atomic_store(&r->status, status);
	if (status == 0)
		atomic_fetch_add(&r->ok, 1);
	else if (status == -ECANCELED)
		atomic_fetch_add(&r->cancelled, 1);
	atomic_fetch_add(&r->calls, 1);
}

/* Tasks that stay inside fn until the gate opens (or, with want > 0,
 * until want tasks have entered). */
struct gate {
	int want;
	_Atomic bool open;
	_Atomic int entered;
	_Atomic int running;
	_Atomic int max_running;
	_Atomic int left;
	_Atomic int cancelled;
	_Atomic int expired; /* gave up waiting: always a failure */
};

static void
gate_fn(void *arg, int status)
{
	struct gate *g = arg;

	if (status != 0) {
		atomic_fetch_add(&g->cancelled, 1);
		return;
	}
	/* running before entered: once entered reaches want, all of them
	 * count as running, so max_running sees the rendezvous. */
	int now = atomic_fetch_add(&g->running, 1) + 1;
	int max = atomic_load(&g->max_running);
	while (now > max &&
	       !atomic_compare_exchange_weak(&g->max_running, &max, now))
		;
	atomic_fetch_add(&g->entered, 1);
	int64_t deadline = ration_now() + TEST_WAIT_NS;
	for (;;) {
		if (g->want > 0 ? atomic_load(&g->entered) >= g->want
				: atomic_load(&g->open))
			break;
		if (ration_now() >= deadline) {
			atomic_fetch_add(&g->expired, 1);
			break;
		}
		sleep_ns(50000);
	}
	atomic_fetch_sub(&g->running, 1);
	atomic_fetch_add(&g->left, 1);
}

static ration_pool_stats_t
stats_of(ration_pool_t *p)
{
	ration_pool_stats_t st;
	ration_pool_stats(p, &st);
	return st;
}

static ration_pool_t *
pool_make(const ration_pool_opts_t *o)
{
	ration_pool_t *p = NULL;
	ck_assert_int_eq(ration_pool_new(o, &p), 0);
	ck_assert_ptr_nonnull(p);
	return p;
}

/* A ration call on its own thread, joined with a deadline. */
struct call {
	pthread_t t;
	int (*fn)(struct call *);
	ration_pool_t *p;
	ration_ctx_t *ctx;
	ration_task_fn task;
	void *arg;
	enum ration_shutdown mode;
	_Atomic bool started;
	_Atomic bool done;
	int rc;
};

static void *
call_main(void *arg)
{
	struct call *c = arg;
	atomic_store(&c->started, true);
	c->rc = c->fn(c);
	atomic_store(&c->done, true);
	return NULL;
}

static void
call_start(struct call *c)
{
	atomic_init(&c->started, false);
	atomic_init(&c->done, false);
	ck_assert_int_eq(pthread_create(&c->t, NULL, call_main, c), 0);
	WAIT_FOR(atomic_load(&c->started));
}

static int
call_join(struct call *c)
{
	WAIT_FOR(atomic_load(&c->done));
	pthread_join(c->t, NULL);
	return c->rc;
}

static int
do_submit(struct call *c)
{
	return ration_pool_submit(c->p, c->ctx, c->task, c->arg);
}

static int
do_shutdown(struct call *c)
{
	return ration_pool_shutdown(c->p, c->mode, c->ctx);
}

static ration_ctx_t *
ctx_timeout(int64_t timeout_ns)
{
	ration_ctx_t *ctx = NULL;
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, timeout_ns, &ctx), 0);
	return ctx;
}

/* A pool of @threads whose every thread is held in a gate task. */
static ration_pool_t *
pool_blocked(unsigned threads, size_t queue_cap, struct gate *g)
{
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){
		.threads = threads, .queue_cap = queue_cap});
	for (unsigned i = 0; i < threads; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, g), 0);
	WAIT_FOR(atomic_load(&g->entered) == (int)threads);
	return p;
}

/* ---- args -------------------------------------------------------------- */

START_TEST(test_pool_new_rejects_bad_options)
{
	ration_pool_t *p = (ration_pool_t *)&p; /* must stay untouched */
	ration_pool_t *before = p;

	ck_assert_int_eq(ration_pool_new(NULL, NULL), -EINVAL);
	ck_assert_int_eq(
		ration_pool_new(
			&(ration_pool_opts_t){.threads = 2, .min_threads = 3},
			&p),
		-EINVAL);
	ck_assert_int_eq(
		ration_pool_new(&(ration_pool_opts_t){.idle_timeout_ns = -1},
				&p),
		-EINVAL);

	ck_assert_ptr_eq(p, before);
}
END_TEST

START_TEST(test_pool_calls_reject_null_pool_fn_and_zero_resize)
{
	ration_pool_t *p = pool_make(NULL);
	struct rec r = {0};

	ck_assert_int_eq(ration_pool_submit(NULL, NULL, rec_fn, &r), -EINVAL);
	ck_assert_int_eq(ration_pool_submit(p, NULL, NULL, &r), -EINVAL);
	ck_assert_int_eq(ration_pool_try_submit(NULL, rec_fn, &r), -EINVAL);
	ck_assert_int_eq(ration_pool_try_submit(p, NULL, &r), -EINVAL);
	ck_assert_int_eq(ration_pool_resize(p, 0), -EINVAL);
	ck_assert_int_eq(ration_pool_resize(NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_pool_shutdown(NULL, RATION_DRAIN, NULL),
			 -EINVAL);

	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.submitted, 0);
	ck_assert_uint_eq(st.threads, 0);
	ck_assert_int_eq(atomic_load(&r.calls), 0);
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&r.calls), 1);
}
END_TEST

/* Usable CPUs: the affinity mask (taskset, cpusets), not the online
 * count (docs/pool.md). */
START_TEST(test_pool_zero_threads_means_usable_cpus)
{
	cpu_set_t set;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	unsigned ncpu = (unsigned)CPU_COUNT(&set);
	struct gate g = {0};
	struct gate more = {0};
	ration_pool_t *p = pool_make(NULL);
	for (unsigned i = 0; i < ncpu; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == (int)ncpu);

	/* One more than the CPUs: it must wait in the queue. */
	ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &more), 0);
	sleep_ns(20 * MS);

	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.threads, ncpu);
	ck_assert_uint_eq(st.running, ncpu);
	ck_assert_uint_eq(st.queued, 1);
	ck_assert_int_eq(atomic_load(&more.entered), 0);
	atomic_store(&g.open, true);
	atomic_store(&more.open, true);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&g.left), (int)ncpu);
	ck_assert_int_eq(atomic_load(&more.left), 1);
	ck_assert_int_eq(atomic_load(&g.expired) + atomic_load(&more.expired),
			 0);
}
END_TEST

/* queue_cap 0 = 1024 per thread. Workers give queue slots back in batches
 * of up to cap/64 (pool_lifecycle.c, slot_batch), so behind busy threads
 * "full" may come up to one batch per thread early, never late. */
START_TEST(test_pool_zero_queue_cap_means_1024_per_thread)
{
	struct gate g = {0};
	struct rec r = {0};
	ration_pool_t *p = pool_blocked(2, 0, &g);

	int accepted = 0;
	while (accepted <= 2 * 1024 &&
	       ration_pool_try_submit(p, rec_fn, &r) == 0)
		accepted++;

	ck_assert_int_le(accepted, 2 * 1024);
	ck_assert_int_ge(accepted, 2 * 1024 - 2 * 32);
	ck_assert_uint_eq(stats_of(p).queued, (uint64_t)accepted);
	ck_assert_uint_eq(stats_of(p).rejected, 1);
	ck_assert_int_eq(ration_pool_try_submit(p, rec_fn, &r), -EAGAIN);
	atomic_store(&g.open, true);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&r.ok), accepted);
}
END_TEST

START_TEST(test_pool_min_threads_start_at_once)
{
	ration_pool_t *p = pool_make(
		&(ration_pool_opts_t){.threads = 4, .min_threads = 3});

	ration_pool_stats_t st = stats_of(p);

	ck_assert_uint_eq(st.threads, 3);
	WAIT_FOR(stats_of(p).idle == 3);
	ck_assert_uint_eq(stats_of(p).running, 0);
	ration_pool_free(p);
}
END_TEST

/* ---- nothing lost ------------------------------------------------------ */

START_TEST(test_pool_every_accepted_task_runs_exactly_once)
{
	enum { N = 2000 };
	static struct rec r[N];
	memset(r, 0, sizeof(r));
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 4, .queue_cap = 64});

	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);

	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(atomic_load(&r[i].calls), 1);
		ck_assert_int_eq(atomic_load(&r[i].status), 0);
	}
	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.submitted, N);
	ck_assert_uint_eq(st.completed, N);
	ck_assert_uint_eq(st.discarded, 0);
	ck_assert_uint_eq(st.threads, 0);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_pool_submit_after_shutdown_returns_epipe)
{
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 2});
	ration_pool_t *u = pool_make(
		&(ration_pool_opts_t){.threads = 2, .queue_cap = SIZE_MAX});
	struct rec r = {0};
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);
	ck_assert_int_eq(ration_pool_shutdown(u, RATION_DISCARD, NULL), 0);

	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), -EPIPE);
	ck_assert_int_eq(ration_pool_try_submit(p, rec_fn, &r), -EPIPE);
	ck_assert_int_eq(ration_pool_submit(u, NULL, rec_fn, &r), -EPIPE);
	ck_assert_int_eq(ration_pool_try_submit(u, rec_fn, &r), -EPIPE);

	ck_assert_uint_eq(stats_of(p).submitted, 0);
	ck_assert_uint_eq(stats_of(p).rejected, 0);
	ration_pool_free(p);
	ration_pool_free(u);
	ck_assert_int_eq(atomic_load(&r.calls), 0);
}
END_TEST

START_TEST(test_pool_drain_runs_everything_queued)
{
	enum { N = 10 };
	struct rec r[N] = {0};
	struct gate g = {0};
	ration_pool_t *p = pool_blocked(1, 16, &g);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);
	struct call sd = {.fn = do_shutdown, .p = p, .mode = RATION_DRAIN};

	call_start(&sd);
	sleep_ns(10 * MS);
	ck_assert(!atomic_load(&sd.done));
	atomic_store(&g.open, true);

	ck_assert_int_eq(call_join(&sd), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(atomic_load(&r[i].calls), 1);
		ck_assert_int_eq(atomic_load(&r[i].status), 0);
	}
	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.completed, N + 1);
	ck_assert_uint_eq(st.discarded, 0);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.threads, 0);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_pool_discard_cancels_queued_in_the_caller)
{
	enum { N = 5 };
	struct rec r[N] = {0};
	struct gate g = {0};
	ration_pool_t *p = pool_blocked(1, 16, &g);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);
	ration_ctx_t *ctx = ctx_timeout(20 * MS);

	/* The gate task is still running: shutdown times out after
	 * discarding the queue. */
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DISCARD, ctx),
			 -ETIMEDOUT);

	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(atomic_load(&r[i].calls), 1);
		ck_assert_int_eq(atomic_load(&r[i].status), -ECANCELED);
		ck_assert(pthread_equal(atomic_load(&r[i].thread),
					pthread_self()));
	}
	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.discarded, N);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.running, 1);
	atomic_store(&g.open, true);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DISCARD, NULL), 0);
	st = stats_of(p);
	ck_assert_uint_eq(st.submitted, N + 1);
	ck_assert_uint_eq(st.completed, 1);
	ck_assert_uint_eq(st.discarded, N);
	ck_assert_int_eq(atomic_load(&g.cancelled), 0);
	ration_ctx_unref(ctx);
	ration_pool_free(p);
}
END_TEST

/* Opens a gate after a delay, from its own thread. */
struct opener {
	pthread_t t;
	struct gate *g;
	int64_t delay_ns;
};

static void *
opener_main(void *arg)
{
	struct opener *o = arg;
	sleep_ns(o->delay_ns);
	atomic_store(&o->g->open, true);
	return NULL;
}

static void
open_later(struct opener *o, struct gate *g, int64_t delay_ns)
{
	*o = (struct opener){.g = g, .delay_ns = delay_ns};
	ck_assert_int_eq(pthread_create(&o->t, NULL, opener_main, o), 0);
}

START_TEST(test_pool_shutdown_returns_ctx_error_and_free_waits_for_running_task)
{
	struct gate g = {0};
	ration_pool_t *p = pool_blocked(1, 16, &g);
	ration_ctx_t *ctx = ctx_timeout(20 * MS);
	ration_ctx_t *cancelled;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &cancelled), 0);
	ration_ctx_cancel(cancelled);

	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, ctx),
			 -ETIMEDOUT);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, cancelled),
			 -ECANCELED);

	ck_assert_int_eq(atomic_load(&g.left), 0);
	ck_assert_uint_eq(stats_of(p).running, 1);
	ck_assert_uint_eq(stats_of(p).threads, 1);
	struct opener o;
	open_later(&o, &g, 30 * MS);
	ration_pool_free(p); /* returns only after the task */
	ck_assert_int_eq(atomic_load(&g.left), 1);
	ck_assert_int_eq(atomic_load(&g.expired), 0);
	pthread_join(o.t, NULL);
	ration_ctx_unref(ctx);
	ration_ctx_unref(cancelled);
}
END_TEST

START_TEST(test_pool_discard_after_timed_out_drain_discards_the_rest)
{
	enum { N = 5 };
	struct rec r[N] = {0};
	struct gate g = {0};
	ration_pool_t *p = pool_blocked(1, 16, &g);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);
	ration_ctx_t *ctx = ctx_timeout(20 * MS);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, ctx),
			 -ETIMEDOUT);
	ck_assert_uint_eq(stats_of(p).queued, N);
	ration_ctx_unref(ctx);
	ctx = ctx_timeout(20 * MS);

	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DISCARD, ctx),
			 -ETIMEDOUT);

	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(atomic_load(&r[i].calls), 1);
		ck_assert_int_eq(atomic_load(&r[i].status), -ECANCELED);
	}
	atomic_store(&g.open, true);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);
	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.submitted, N + 1);
	ck_assert_uint_eq(st.completed, 1);
	ck_assert_uint_eq(st.discarded, N);
	ck_assert_uint_eq(st.threads, 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(atomic_load(&r[i].calls), 1);
	ration_ctx_unref(ctx);
	ration_pool_free(p);
}
END_TEST

/* DRAIN after every idle thread has timed out: the queue still runs. */
START_TEST(test_pool_drain_with_no_thread_left_still_runs_queue)
{
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){
		.threads = 2, .idle_timeout_ns = 20 * MS});
	struct rec r = {0};
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
	WAIT_FOR(stats_of(p).threads == 0);

	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);

	ck_assert_int_eq(atomic_load(&r.ok), 2);
	ck_assert_uint_eq(stats_of(p).completed, 2);
	ration_pool_free(p);
}
END_TEST

/* ---- back-pressure ----------------------------------------------------- */

START_TEST(test_pool_try_submit_on_full_queue_returns_eagain)
{
	struct gate g = {0};
	struct rec q[2] = {0}, extra = {0};
	ration_pool_t *p = pool_blocked(1, 2, &g);
	ck_assert_int_eq(ration_pool_try_submit(p, rec_fn, &q[0]), 0);
	ck_assert_int_eq(ration_pool_try_submit(p, rec_fn, &q[1]), 0);

	ck_assert_int_eq(ration_pool_try_submit(p, rec_fn, &extra), -EAGAIN);
	ck_assert_int_eq(ration_pool_try_submit(p, rec_fn, &extra), -EAGAIN);

	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.rejected, 2);
	ck_assert_uint_eq(st.submitted, 3);
	ck_assert_uint_eq(st.queued, 2);
	atomic_store(&g.open, true);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&q[0].ok) + atomic_load(&q[1].ok), 2);
	ck_assert_int_eq(atomic_load(&extra.calls), 0);
}
END_TEST

START_TEST(test_pool_submit_blocks_while_full_until_a_slot_frees)
{
	struct gate g = {0};
	struct rec q[2] = {0}, late = {0};
	ration_pool_t *p = pool_blocked(1, 2, &g);
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &q[0]), 0);
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &q[1]), 0);
	struct call c = {.fn = do_submit, .p = p, .task = rec_fn, .arg = &late};

	call_start(&c);
	sleep_ns(30 * MS);
	ck_assert(!atomic_load(&c.done));
	ck_assert_uint_eq(stats_of(p).submitted, 3);
	atomic_store(&g.open, true);

	ck_assert_int_eq(call_join(&c), 0);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&late.calls), 1);
	ck_assert_int_eq(atomic_load(&late.status), 0);
}
END_TEST

START_TEST(test_pool_submit_on_full_queue_times_out_with_ctx)
{
	struct gate g = {0};
	struct rec q = {0}, late = {0};
	ration_pool_t *p = pool_blocked(1, 1, &g);
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &q), 0);
	/* t0 before the ctx: its deadline counts from its creation, and a
	 * loaded (sanitizer) run can spend milliseconds in between. */
	int64_t t0 = ration_now();
	ration_ctx_t *ctx = ctx_timeout(20 * MS);

	ck_assert_int_eq(ration_pool_submit(p, ctx, rec_fn, &late), -ETIMEDOUT);

	ck_assert_int_ge(ration_now() - t0, 20 * MS);
	ck_assert_uint_eq(stats_of(p).submitted, 2);
	ck_assert_uint_eq(stats_of(p).queued, 1);
	atomic_store(&g.open, true);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&late.calls), 0);
	ck_assert_int_eq(atomic_load(&q.calls), 1);
	ration_ctx_unref(ctx);
}
END_TEST

/* contract §10: a done ctx fails submit even when the queue has room. */
START_TEST(test_pool_submit_with_done_ctx_fails_even_with_room)
{
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 2});
	ration_pool_t *u = pool_make(
		&(ration_pool_opts_t){.threads = 2, .queue_cap = SIZE_MAX});
	ration_ctx_t *cancelled, *expired;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &cancelled), 0);
	ration_ctx_cancel(cancelled);
	ck_assert_int_eq(
		ration_ctx_with_deadline(NULL, ration_now() - 1, &expired), 0);
	struct rec r = {0};

	ck_assert_int_eq(ration_pool_submit(p, cancelled, rec_fn, &r),
			 -ECANCELED);
	ck_assert_int_eq(ration_pool_submit(p, expired, rec_fn, &r),
			 -ETIMEDOUT);
	ck_assert_int_eq(ration_pool_submit(u, cancelled, rec_fn, &r),
			 -ECANCELED);
	ck_assert_int_eq(ration_pool_submit(u, expired, rec_fn, &r),
			 -ETIMEDOUT);

	ck_assert_uint_eq(stats_of(p).submitted, 0);
	ck_assert_uint_eq(stats_of(u).submitted, 0);
	ration_pool_free(p);
	ration_pool_free(u);
	ck_assert_int_eq(atomic_load(&r.calls), 0);
	ration_ctx_unref(cancelled);
	ration_ctx_unref(expired);
}
END_TEST

START_TEST(test_pool_blocked_submitter_gets_epipe_at_shutdown)
{
	struct gate g = {0};
	struct rec q = {0}, late = {0};
	ration_pool_t *p = pool_blocked(1, 1, &g);
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &q), 0);
	struct call c = {.fn = do_submit, .p = p, .task = rec_fn, .arg = &late};
	call_start(&c);
	sleep_ns(20 * MS);
	ck_assert(!atomic_load(&c.done));
	ration_ctx_t *ctx = ctx_timeout(20 * MS);

	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, ctx),
			 -ETIMEDOUT);

	ck_assert_int_eq(call_join(&c), -EPIPE);
	atomic_store(&g.open, true);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);
	ck_assert_int_eq(atomic_load(&late.calls), 0);
	ck_assert_int_eq(atomic_load(&q.ok), 1);
	ck_assert_uint_eq(stats_of(p).submitted, 2);
	ration_ctx_unref(ctx);
	ration_pool_free(p);
}
END_TEST

/* ---- threads ----------------------------------------------------------- */

START_TEST(test_pool_starts_threads_on_demand_never_more_than_max)
{
	struct gate g = {0};
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 3});
	ck_assert_uint_eq(stats_of(p).threads, 0);

	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 3);
	sleep_ns(20 * MS); /* the watchdog has had many chances to over-start */

	ration_pool_stats_t st = stats_of(p);
	ck_assert_int_eq(atomic_load(&g.entered), 3);
	ck_assert_uint_eq(st.threads, 3);
	ck_assert_uint_eq(st.running, 3);
	ck_assert_uint_eq(st.queued, 3);
	atomic_store(&g.open, true);
	WAIT_FOR(atomic_load(&g.left) == 6);
	ck_assert_int_eq(atomic_load(&g.max_running), 3);
	ck_assert_uint_le(stats_of(p).threads, 3);
	ck_assert_uint_eq(stats_of(p).max_running, 3);
	ration_pool_free(p);
}
END_TEST

/* Short tasks in a stream: concurrency stays within the limit. */
struct conc {
	_Atomic int running, max_running, done;
};

static void
conc_fn(void *arg, int status)
{
	struct conc *c = arg;
	(void)status;
	int now = atomic_fetch_add(&c->running, 1) + 1;
	int max = atomic_load(&c->max_running);
	while (now > max &&
	       !atomic_compare_exchange_weak(&c->max_running, &max, now))
		;
	sleep_ns(100000);
	atomic_fetch_sub(&c->running, 1);
	atomic_fetch_add(&c->done, 1);
}

START_TEST(test_pool_stream_of_tasks_never_exceeds_max_threads)
{
	struct conc c = {0};
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 3, .queue_cap = 8});

	for (int i = 0; i < 300; i++) {
		ck_assert_int_eq(ration_pool_submit(p, NULL, conc_fn, &c), 0);
		ck_assert_uint_le(stats_of(p).threads, 3);
	}
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);

	ck_assert_int_eq(atomic_load(&c.done), 300);
	ck_assert_int_le(atomic_load(&c.max_running), 3);
	ck_assert_uint_le(stats_of(p).max_running, 3);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_pool_idle_threads_above_min_exit_after_idle_timeout)
{
	struct gate g = {0};
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){
		.threads = 4, .min_threads = 1, .idle_timeout_ns = 50 * MS});
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 4);
	ck_assert_uint_eq(stats_of(p).threads, 4);

	atomic_store(&g.open, true);

	WAIT_FOR(stats_of(p).threads == 1);
	sleep_ns(150 * MS); /* three more timeouts: min_threads stays */
	ck_assert_uint_eq(stats_of(p).threads, 1);
	ck_assert_uint_eq(stats_of(p).idle, 1);
	struct rec r = {0};
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
	WAIT_FOR(atomic_load(&r.calls) == 1);
	ration_pool_free(p);
}
END_TEST

struct exiting {
	_Atomic int in_fini;
	_Atomic bool release;
};

static void
exiting_fini(void *udata)
{
	struct exiting *e = udata;
	atomic_fetch_add(&e->in_fini, 1);
	int64_t deadline = ration_now() + TEST_WAIT_NS;
	while (!atomic_load(&e->release) && ration_now() < deadline)
		sleep_ns(100000);
}

/* A thread leaving after its idle timeout still counts against the limit
 * until thread_fini returns; a task queued meanwhile must not be left
 * with no thread once it is gone. */
START_TEST(test_pool_task_submitted_while_last_thread_exits_still_runs)
{
	struct exiting e = {0};
	struct rec r = {0}, late = {0};
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 1,
						.idle_timeout_ns = 10 * MS,
						.thread_fini = exiting_fini,
						.udata = &e});
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
	WAIT_FOR(atomic_load(&e.in_fini) == 1);

	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &late), 0);
	atomic_store(&e.release, true);

	WAIT_FOR(atomic_load(&late.calls) == 1);
	ck_assert_int_eq(atomic_load(&late.status), 0);
	ck_assert_uint_le(stats_of(p).threads, 1);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&r.calls), 1);
}
END_TEST

struct names {
	_Atomic int n;
	char name[8][16];
};

static void
name_fn(void *arg, int status)
{
	struct names *nm = arg;
	(void)status;
	int i = atomic_fetch_add(&nm->n, 1);
	if (i < 8)
		pthread_getname_np(pthread_self(), nm->name[i],
				   sizeof(nm->name[i]));
}

static void
check_names(const char *name, const char *prefix)
{
	struct names nm = {0};
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 2, .name = name});
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, name_fn, &nm), 0);
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);

	ck_assert_int_eq(atomic_load(&nm.n), 8);
	size_t len = strlen(prefix);
	for (int i = 0; i < 8; i++) {
		ck_assert_msg(strncmp(nm.name[i], prefix, len) == 0,
			      "thread name %s", nm.name[i]);
		ck_assert_msg(strcmp(nm.name[i] + len, "0") == 0 ||
				      strcmp(nm.name[i] + len, "1") == 0,
			      "thread name %s", nm.name[i]);
	}
	ration_pool_free(p);
}

START_TEST(test_pool_threads_are_named_after_the_pool)
{
	check_names("tpool", "tpool-");
	check_names(NULL, "ration-");
}
END_TEST

struct lifecycle {
	_Atomic int init, fini, wrong_udata, fini_without_init, double_init;
};
static _Thread_local int tl_inited;
static struct lifecycle *lc_expected;

static void
lc_init(void *udata)
{
	struct lifecycle *lc = udata;
	if (lc != lc_expected)
		atomic_fetch_add(&lc_expected->wrong_udata, 1);
	if (tl_inited++)
		atomic_fetch_add(&lc_expected->double_init, 1);
	atomic_fetch_add(&lc_expected->init, 1);
}

static void
lc_fini(void *udata)
{
	struct lifecycle *lc = udata;
	if (lc != lc_expected)
		atomic_fetch_add(&lc_expected->wrong_udata, 1);
	if (tl_inited != 1)
		atomic_fetch_add(&lc_expected->fini_without_init, 1);
	atomic_fetch_add(&lc_expected->fini, 1);
}

START_TEST(test_pool_thread_init_and_fini_run_once_per_thread)
{
	struct lifecycle lc = {0};
	lc_expected = &lc;
	struct gate g = {0};
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 3,
						.thread_init = lc_init,
						.thread_fini = lc_fini,
						.udata = &lc});
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 3);
	atomic_store(&g.open, true);

	ration_pool_free(p);

	ck_assert_int_eq(atomic_load(&lc.init), 3);
	ck_assert_int_eq(atomic_load(&lc.fini), 3);
	ck_assert_int_eq(atomic_load(&lc.wrong_udata), 0);
	ck_assert_int_eq(atomic_load(&lc.double_init), 0);
	ck_assert_int_eq(atomic_load(&lc.fini_without_init), 0);
}
END_TEST

/* ---- liveness of the wake policy (contract §10) -------------------------- */

/* More blocking tasks than CPUs: the watchdog must bring a thread for each,
 * or they would wait for each other forever. */
START_TEST(test_pool_blocking_tasks_all_get_threads_beyond_cpu_count)
{
	for (int round = 0; round < 20; round++) {
		struct gate g = {.want = 8};
		ration_pool_t *p =
			pool_make(&(ration_pool_opts_t){.threads = 8});

		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(
				ration_pool_submit(p, NULL, gate_fn, &g), 0);

		WAIT_FOR(atomic_load(&g.left) == 8);
		ck_assert_int_eq(atomic_load(&g.expired), 0);
		ck_assert_int_eq(atomic_load(&g.max_running), 8);
		ck_assert_uint_eq(stats_of(p).max_running, 8);
		ration_pool_free(p);
	}
}
END_TEST

static void
flag_fn(void *arg, int status)
{
	(void)status;
	atomic_store((_Atomic bool *)arg, true);
}

/* A worker that just finished spins for new work; tasks submitted during
 * that spin must still each get a thread. */
START_TEST(test_pool_spinning_worker_does_not_hold_back_queued_tasks)
{
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 4});
	for (int round = 0; round < 200; round++) {
		struct gate g = {.want = 4};
		_Atomic bool done = false;
		ck_assert_int_eq(ration_pool_submit(p, NULL, flag_fn, &done),
				 0);
		WAIT_FOR(atomic_load(&done));

		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(
				ration_pool_submit(p, NULL, gate_fn, &g), 0);

		WAIT_FOR(atomic_load(&g.left) == 4);
		ck_assert_int_eq(atomic_load(&g.expired), 0);
		WAIT_FOR(stats_of(p).running == 0);
	}
	ration_pool_free(p);
}
END_TEST

struct nest {
	ration_pool_t *p;
	struct rec child;
	_Atomic int rc;
};

static void
nest_fn(void *arg, int status)
{
	struct nest *n = arg;
	(void)status;
	atomic_store(&n->rc, ration_pool_submit(n->p, NULL, rec_fn, &n->child));
}

START_TEST(test_pool_task_can_submit_to_its_own_pool)
{
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 1, .queue_cap = 4});
	struct nest n = {.p = p, .rc = 1};

	ck_assert_int_eq(ration_pool_submit(p, NULL, nest_fn, &n), 0);

	WAIT_FOR(atomic_load(&n.child.calls) == 1);
	ck_assert_int_eq(atomic_load(&n.rc), 0);
	ck_assert_int_eq(atomic_load(&n.child.status), 0);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&n.child.calls), 1);
}
END_TEST

/* Worker threads' voluntary context switches (sleeps: parking, futex
 * waits), summed by count_sleeps_fn as each worker's tasks run. */
struct sleeps {
	_Atomic long total; /* sum over tasks of the growth since the last */
	_Atomic int calls;
	_Atomic bool unknown; /* getrusage failed */
};

static _Thread_local long tl_nvcsw = -1;

static void
count_sleeps_fn(void *arg, int status)
{
	struct sleeps *sl = arg;
	struct rusage ru;
	(void)status;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		atomic_store(&sl->unknown, true);
	else if (tl_nvcsw >= 0)
		atomic_fetch_add(&sl->total, ru.ru_nvcsw - tl_nvcsw);
	if (!atomic_load(&sl->unknown))
		tl_nvcsw = ru.ru_nvcsw;
	atomic_fetch_add(&sl->calls, 1);
}

/* One usable CPU: a worker that runs out of work yields the CPU before it
 * parks, so a producer that keeps submitting does not wake it every few
 * tasks (each wake-up preempts the producer; docs/pool.md, "One CPU:
 * yield, then park"). Checks only with one usable CPU (the one-CPU pass
 * of scripts/test.sh, `taskset -c 0`). Before the yield the worker slept
 * 2,700-3,100 times in this test (load 40), after it 6-8 times. */
START_TEST(test_pool_one_cpu_stream_does_not_park_worker_per_task)
{
	cpu_set_t set;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	if (CPU_COUNT(&set) != 1)
		return;
	enum { N = 20000 };
	ration_pool_t *p = pool_make(
		&(ration_pool_opts_t){.threads = 1, .queue_cap = N + 1});
	struct sleeps sl = {0};
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(
			ration_pool_submit(p, NULL, count_sleeps_fn, &sl), 0);
		/* The producer's own work between submits: ~1 us. */
		int64_t until = ration_now() + 1000;
		while (ration_now() < until)
			;
	}
	WAIT_FOR(atomic_load(&sl.calls) == N);
	ration_pool_free(p);
	ck_assert(!atomic_load(&sl.unknown));
	ck_assert_int_lt(atomic_load(&sl.total), N / 200);
}
END_TEST

/* A submitter running short tasks itself (a group's go() that found no
 * room: internal/pool.h) keeps the workers on other CPUs off the queue,
 * and they take it again once it stops (docs/pool.md, "Short tasks the
 * submitter runs itself"). With one usable CPU workers always take the
 * work, so this checks only with two or more. A round: the worker is held
 * in a gate task, a task is queued behind it, and the gate opens while
 * the submitter says so continuously. Without the step back the worker
 * takes the task within microseconds (10 rounds at load 30: 0-1 held it
 * 2 ms, a worker preempted that long); with it the task stays queued as
 * long as the calls go on, unless the calling thread is preempted for a
 * whole nap (7-10 held). */
START_TEST(test_pool_workers_leave_queue_to_submitter_running_short_tasks)
{
	if (ration__ncpu() < 2)
		return;
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 1});
	int held = 0;
	for (int round = 0; round < 10; round++) {
		struct gate g = {0};
		struct rec r = {0};
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
		WAIT_FOR(atomic_load(&g.entered) == 1);
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
		ration__pool_helped_short(p);
		atomic_store(&g.open, true);
		int64_t until = ration_now() + 2 * MS;
		bool taken = false;
		while (!taken && ration_now() < until) {
			ration__pool_helped_short(p);
			taken = atomic_load(&r.calls) != 0;
		}
		held += !taken;
		/* The calls stopped: the worker takes the task. */
		WAIT_FOR(atomic_load(&r.calls) == 1);
		ck_assert_int_eq(atomic_load(&g.expired), 0);
	}
	ration_pool_free(p);
	ck_assert_int_ge(held, 3);
}
END_TEST

/* ---- resize ------------------------------------------------------------ */

START_TEST(test_pool_resize_grow_runs_queued_tasks_on_more_threads)
{
	struct gate g = {.want = 4};
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 1});
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 1);
	sleep_ns(10 * MS);
	ck_assert_int_eq(atomic_load(&g.entered), 1);
	ck_assert_uint_eq(stats_of(p).queued, 3);

	ck_assert_int_eq(ration_pool_resize(p, 4), 0);

	WAIT_FOR(atomic_load(&g.left) == 4);
	ck_assert_int_eq(atomic_load(&g.expired), 0);
	ck_assert_int_eq(atomic_load(&g.max_running), 4);
	ck_assert_uint_eq(stats_of(p).threads, 4);
	ration_pool_free(p);
}
END_TEST

static void
slow_fini(void *udata)
{
	sleep_ns(20 * MS); /* a leaving thread stays counted a while */
	atomic_fetch_add((_Atomic int *)udata, 1);
}

/* Exactly the excess threads leave, even when they all finish at once and
 * each one's exit is slow; the queue is not stranded. */
START_TEST(test_pool_resize_shrink_makes_busy_threads_exit_keeping_queue)
{
	enum { N = 6 };
	struct gate g = {0};
	struct rec r[N] = {0};
	_Atomic int finis = 0;
	ration_pool_t *p =
		pool_make(&(ration_pool_opts_t){.threads = 4,
						.idle_timeout_ns = 60000 * MS,
						.thread_fini = slow_fini,
						.udata = (void *)&finis});
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 4);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);

	ck_assert_int_eq(ration_pool_resize(p, 1), 0);
	atomic_store(&g.open, true);

	WAIT_FOR(stats_of(p).completed == 4 + N);
	WAIT_FOR(stats_of(p).threads == 1);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(atomic_load(&r[i].calls), 1);
	ck_assert_int_eq(atomic_load(&finis), 3);
	struct rec late = {0};
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &late), 0);
	WAIT_FOR(atomic_load(&late.calls) == 1);
	ck_assert_uint_eq(stats_of(p).threads, 1);
	ck_assert_int_eq(atomic_load(&finis), 3);
	ration_pool_free(p);
	ck_assert_int_eq(atomic_load(&finis), 4);
}
END_TEST

START_TEST(test_pool_resize_shrink_makes_idle_threads_exit)
{
	struct gate g = {0};
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){
		.threads = 4, .idle_timeout_ns = 60000 * MS});
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 4);
	atomic_store(&g.open, true);
	WAIT_FOR(stats_of(p).idle == 4);

	ck_assert_int_eq(ration_pool_resize(p, 1), 0);

	WAIT_FOR(stats_of(p).threads == 1);
	sleep_ns(20 * MS);
	ck_assert_uint_eq(stats_of(p).threads, 1);
	struct rec r = {0};
	ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r), 0);
	WAIT_FOR(atomic_load(&r.calls) == 1);
	ration_pool_free(p);
}
END_TEST

/* Shrinking below the running threads must not overshoot: min_threads
 * (capped at the new maximum) stay, and so does the queue's last thread. */
START_TEST(test_pool_resize_shrink_keeps_min_threads)
{
	struct gate g = {0};
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){
		.threads = 4, .min_threads = 4, .idle_timeout_ns = 60000 * MS});
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, gate_fn, &g), 0);
	WAIT_FOR(atomic_load(&g.entered) == 4);

	ck_assert_int_eq(ration_pool_resize(p, 2), 0);
	atomic_store(&g.open, true);

	WAIT_FOR(stats_of(p).threads == 2);
	sleep_ns(20 * MS);
	ck_assert_uint_eq(stats_of(p).threads, 2);
	WAIT_FOR(stats_of(p).idle == 2);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_pool_resize_after_shutdown_returns_epipe)
{
	ration_pool_t *p = pool_make(&(ration_pool_opts_t){.threads = 2});
	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DRAIN, NULL), 0);

	ck_assert_int_eq(ration_pool_resize(p, 4), -EPIPE);

	ck_assert_uint_eq(stats_of(p).threads, 0);
	ration_pool_free(p);
}
END_TEST

/* ---- stats ------------------------------------------------------------- */

START_TEST(test_pool_stats_are_exact_in_a_simple_scenario)
{
	struct gate g = {0};
	struct rec r[5] = {0};
	ration_pool_t *p = pool_blocked(1, 8, &g);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);

	ration_pool_stats_t st = stats_of(p);

	ck_assert_uint_eq(st.threads, 1);
	ck_assert_uint_eq(st.idle, 0);
	ck_assert_uint_eq(st.running, 1);
	ck_assert_uint_eq(st.queued, 5);
	ck_assert_uint_eq(st.submitted, 6);
	ck_assert_uint_eq(st.completed, 0);
	ck_assert_uint_eq(st.discarded, 0);
	ck_assert_uint_eq(st.max_running, 1);
	ck_assert_uint_eq(st.max_queued, 5);
	ck_assert_uint_eq(st.rejected, 0);
	atomic_store(&g.open, true);
	WAIT_FOR(stats_of(p).completed == 6);
	WAIT_FOR(stats_of(p).idle == 1);
	st = stats_of(p);
	ck_assert_uint_eq(st.running, 0);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.max_running, 1);
	ck_assert_uint_eq(st.max_queued, 5);
	ration_pool_free(p);
}
END_TEST

START_TEST(test_pool_stats_balance_after_shutdown)
{
	enum { N = 40 };
	struct gate g = {0};
	struct rec r[N] = {0};
	ration_pool_t *p = pool_blocked(2, 64, &g);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ration_pool_submit(p, NULL, rec_fn, &r[i]), 0);
	struct opener o;
	open_later(&o, &g, 20 * MS);

	ck_assert_int_eq(ration_pool_shutdown(p, RATION_DISCARD, NULL), 0);

	ration_pool_stats_t st = stats_of(p);
	ck_assert_uint_eq(st.submitted, N + 2);
	ck_assert_uint_eq(st.completed, 2);
	ck_assert_uint_eq(st.discarded, N);
	ck_assert_uint_eq(st.submitted, st.completed + st.discarded);
	ck_assert_uint_eq(st.max_running, 2);
	ck_assert_uint_eq(st.max_queued, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(atomic_load(&r[i].cancelled), 1);
	pthread_join(o.t, NULL);
	ration_pool_free(p);
}
END_TEST

/* ---- the default pool -------------------------------------------------- */

START_TEST(test_pool_default_is_a_shared_pool_that_cannot_be_shut_down)
{
	ration_pool_t *d = ration_pool_default();
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_eq(ration_pool_default(), d);
	struct rec r = {0};

	ck_assert_int_eq(ration_pool_submit(d, NULL, rec_fn, &r), 0);
	WAIT_FOR(atomic_load(&r.calls) == 1);
	ck_assert_int_eq(ration_pool_shutdown(d, RATION_DRAIN, NULL), -EINVAL);
	ck_assert_int_eq(ration_pool_shutdown(d, RATION_DISCARD, NULL),
			 -EINVAL);
	ration_pool_free(d);
	ration_pool_free(NULL);

	ck_assert_int_eq(ration_pool_submit(d, NULL, rec_fn, &r), 0);
	WAIT_FOR(atomic_load(&r.calls) == 2);
	ck_assert_int_eq(atomic_load(&r.ok), 2);
	ck_assert_int_eq(ration_pool_try_submit(d, rec_fn, &r), 0);
	WAIT_FOR(atomic_load(&r.calls) == 3);
	ck_assert_uint_le(stats_of(d).threads,
			  (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
}
END_TEST

/* ---- suite ------------------------------------------------------------- */

static TCase *
tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return tc;
}

int
main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc;

	tc = tcase(s, "args");
	tcase_add_test(tc, test_pool_new_rejects_bad_options);
	tcase_add_test(tc, test_pool_calls_reject_null_pool_fn_and_zero_resize);
	tcase_add_test(tc, test_pool_zero_threads_means_usable_cpus);
	tcase_add_test(tc, test_pool_zero_queue_cap_means_1024_per_thread);
	tcase_add_test(tc, test_pool_min_threads_start_at_once);

	tc = tcase(s, "nothing_lost");
	tcase_add_test(tc, test_pool_every_accepted_task_runs_exactly_once);
	tcase_add_test(tc, test_pool_submit_after_shutdown_returns_epipe);
	tcase_add_test(tc, test_pool_drain_runs_everything_queued);
	tcase_add_test(tc, test_pool_discard_cancels_queued_in_the_caller);
	tcase_add_test(
		tc,
		test_pool_shutdown_returns_ctx_error_and_free_waits_for_running_task);
	tcase_add_test(
		tc, test_pool_discard_after_timed_out_drain_discards_the_rest);
	tcase_add_test(tc,
		       test_pool_drain_with_no_thread_left_still_runs_queue);

	tc = tcase(s, "backpressure");
	tcase_add_test(tc, test_pool_try_submit_on_full_queue_returns_eagain);
	tcase_add_test(tc,
		       test_pool_submit_blocks_while_full_until_a_slot_frees);
	tcase_add_test(tc, test_pool_submit_on_full_queue_times_out_with_ctx);
	tcase_add_test(tc, test_pool_submit_with_done_ctx_fails_even_with_room);
	tcase_add_test(tc, test_pool_blocked_submitter_gets_epipe_at_shutdown);

	tc = tcase(s, "threads");
	tcase_add_test(tc,
		       test_pool_starts_threads_on_demand_never_more_than_max);
	tcase_add_test(tc, test_pool_stream_of_tasks_never_exceeds_max_threads);
	tcase_add_test(
		tc, test_pool_idle_threads_above_min_exit_after_idle_timeout);
	tcase_add_test(tc, test_pool_threads_are_named_after_the_pool);
	tcase_add_test(tc, test_pool_thread_init_and_fini_run_once_per_thread);
	tcase_add_test(
		tc,
		test_pool_task_submitted_while_last_thread_exits_still_runs);

	tc = tcase(s, "liveness");
	tcase_add_test(
		tc, test_pool_blocking_tasks_all_get_threads_beyond_cpu_count);
	tcase_add_test(
		tc, test_pool_spinning_worker_does_not_hold_back_queued_tasks);
	tcase_add_test(tc, test_pool_task_can_submit_to_its_own_pool);
	tcase_add_test(tc,
		       test_pool_one_cpu_stream_does_not_park_worker_per_task);
	tcase_add_test(
		tc,
		test_pool_workers_leave_queue_to_submitter_running_short_tasks);

	tc = tcase(s, "resize");
	tcase_add_test(tc,
		       test_pool_resize_grow_runs_queued_tasks_on_more_threads);
	tcase_add_test(
		tc,
		test_pool_resize_shrink_makes_busy_threads_exit_keeping_queue);
	tcase_add_test(tc, test_pool_resize_shrink_makes_idle_threads_exit);
	tcase_add_test(tc, test_pool_resize_shrink_keeps_min_threads);
	tcase_add_test(tc, test_pool_resize_after_shutdown_returns_epipe);

	tc = tcase(s, "stats");
	tcase_add_test(tc, test_pool_stats_are_exact_in_a_simple_scenario);
	tcase_add_test(tc, test_pool_stats_balance_after_shutdown);

	tc = tcase(s, "default");
	tcase_add_test(
		tc,
		test_pool_default_is_a_shared_pool_that_cannot_be_shut_down);

	int failed = run_suite(s);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
