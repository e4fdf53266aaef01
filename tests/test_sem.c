/* test_sem.c - Check suite for the weighted FIFO semaphore (contract §4,
 * §7 pitfalls 1-6 and 8-13, §10 sem), named semaphores and acquire_all.
 * §7.3 has a deterministic test through the test-only hook
 * ration__ctx_done_hook (lib/internal/ctx.h) besides the timing sweep.
 *
 * Every wait is bounded: TCases set a timeout, background callers are
 * joined with bg_join, conditions are polled with WAIT_FOR/wait_waiters.
 * Sleeps only give a thread time to block before checking it still is.
 * The long versions of the races live in stress_sem.c.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "internal/tslot.h"
#include "sem_races.h"

/* ---- local helpers ------------------------------------------------------ */

/* The first field of two snapshots that differs, or NULL. */
static const char *
stats_diff(const ration_sem_stats_t *a, const ration_sem_stats_t *b)
{
#define SAME(f)                                                                \
	do {                                                                   \
		if (a->f != b->f)                                              \
			return #f;                                             \
	} while (0)
	SAME(size);
	SAME(in_use);
	SAME(available);
	SAME(waiters);
	SAME(waiting_weight);
	SAME(max_in_use);
	SAME(max_waiters_seen);
	SAME(acquired);
	SAME(contended);
	SAME(timeouts);
	SAME(cancels);
	SAME(rejected);
	SAME(wait_ns_total);
	SAME(closed);
#undef SAME
	if (memcmp(a->wait_hist, b->wait_hist, sizeof(a->wait_hist)) != 0)
		return "wait_hist";
	if (strcmp(a->name, b->name) != 0)
		return "name";
	return NULL;
}

/* After an error: @s looks exactly as in the snapshot @before. */
#define assert_nothing_moved(s, before)                                        \
	do {                                                                   \
		ration_sem_stats_t now_;                                       \
		ration_sem_stats((s), &now_);                                  \
		const char *d_ = stats_diff((before), &now_);                  \
		ck_assert_msg(d_ == NULL, "stats.%s changed", d_);             \
	} while (0)

/* Call, check the error, check that nothing moved. */
#define assert_fails_unchanged(s, before, call, err)                           \
	do {                                                                   \
		ck_assert_int_eq((call), (err));                               \
		assert_nothing_moved((s), (before));                           \
	} while (0)

static ration_sem_stats_t
stats_of(ration_sem_t *s)
{
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	return st;
}

static uint64_t
hist_sum(const ration_sem_stats_t *st)
{
	uint64_t n = 0;
	for (int i = 0; i < RATION_HIST_BUCKETS; i++)
		n += st->wait_hist[i];
	return n;
}

/* A waiter that notes the order in which grants arrive: acquire, take the
 * next sequence number, release at once (so the next grant can only come
 * after this one was recorded). */
struct seq_waiter {
	pthread_t t;
	ration_sem_t *s;
	int64_t n;
	_Atomic int *next_seq;
	int seq;
	int rc;
	_Atomic bool done;
};

static void *
seq_waiter_main(void *arg)
{
	struct seq_waiter *w = arg;
	w->rc = acquire_bounded(w->s, w->n);
	if (w->rc == 0) {
		w->seq = atomic_fetch_add(w->next_seq, 1);
		w->rc = ration_sem_release(w->s, w->n);
	}
	atomic_store(&w->done, true);
	return NULL;
}

/* A thread that cancels @ctx as soon as it runs. */
static void *
cancel_main(void *arg)
{
	ration_ctx_cancel(arg);
	return NULL;
}

/* ---- args and check order ----------------------------------------------- */

START_TEST(test_sem_new_rejects_bad_sizes)
{
	ration_sem_t *s = NULL;

	ck_assert_int_eq(ration_sem_new(0, NULL, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_new(-1, NULL, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_new(RATION_SEM_MAX + 1, NULL, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_new(INT64_MAX, NULL, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_new(1, NULL, NULL), -EINVAL);
	ck_assert_ptr_null(s);

	ck_assert_int_eq(ration_sem_new(RATION_SEM_MAX, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_available(s), RATION_SEM_MAX);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

START_TEST(test_sem_null_sem_is_rejected)
{
	ration_sem_stats_t st;
	memset(&st, 0xff, sizeof(st));

	ck_assert_int_eq(ration_sem_acquire(NULL, NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_acquire_until(NULL, RATION_FOREVER, 1),
			 -EINVAL);
	ck_assert_int_eq(ration_sem_try_acquire(NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_release(NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_resize(NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_free(NULL), -EINVAL);
	ration_sem_close(NULL);
	ration_sem_stats(NULL, &st);

	ck_assert_int_eq(ration_sem_available(NULL), 0);
	ck_assert_int_eq(st.size, 0);
	ck_assert_int_eq(st.acquired, 0);
	ck_assert_str_eq(st.name, "");
}
END_TEST

/* contract §4: -EINVAL, -EPIPE, -E2BIG, ctx error, -EBUSY, in that order;
 * after each error, nothing moved. */
START_TEST(test_sem_acquire_checks_in_design_order)
{
	ration_sem_opts_t o = {.max_waiters = 1};
	ration_sem_t *s;
	ration_ctx_t *done, *live;
	ration_sem_stats_t st;
	struct bg w;
	ck_assert_int_eq(ration_sem_new(4, &o, &s), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &done), 0);
	ration_ctx_cancel(done);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &live), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 4), 0);
	bg_acquire(&w, s, live, 1); /* the queue (max 1) is now full */
	wait_waiters(s, 1);
	st = stats_of(s);

	/* -EINVAL beats everything */
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, 0), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, -1),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, INT64_MIN),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_acquire_until(s, 0, 0),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, 0), -EINVAL);
	/* -E2BIG beats the ctx error and -EBUSY */
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, 5), -E2BIG);
	assert_fails_unchanged(s, &st, ration_sem_acquire_until(s, 0, 5),
			       -E2BIG);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, 5), -E2BIG);
	/* the ctx error beats -EBUSY */
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, 1),
			       -ECANCELED);
	assert_fails_unchanged(s, &st, ration_sem_acquire_until(s, 0, 1),
			       -ETIMEDOUT);
	/* -EBUSY last: counted as rejected, nothing else moves */
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), -EBUSY);
	st.rejected++;
	assert_nothing_moved(s, &st);
	ck_assert_int_eq(ration_sem_acquire_until(s, RATION_FOREVER, 4),
			 -EBUSY);
	st.rejected++;
	assert_nothing_moved(s, &st);

	/* -EPIPE comes right after -EINVAL */
	ration_ctx_cancel(live);
	ck_assert_int_eq(bg_join(&w), -ECANCELED);
	ration_sem_close(s);
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, 0), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, -3), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, done, 5), -EPIPE);
	assert_fails_unchanged(s, &st, ration_sem_acquire_until(s, 0, 5),
			       -EPIPE);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, NULL, 1), -EPIPE);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, 5), -EPIPE);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, 1), -EPIPE);

	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_available(s), 4);
	ration_ctx_unref(done);
	ration_ctx_unref(live);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §4: a try never overtakes a waiter, even when the units fit. */
START_TEST(test_sem_try_acquire_fails_while_anyone_is_queued)
{
	ration_sem_t *s;
	ration_sem_stats_t st;
	struct bg w;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 5), 0);
	bg_acquire(&w, s, NULL, 6); /* 5 free: does not fit */
	wait_waiters(s, 1);
	st = stats_of(s);

	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	st.rejected++;
	assert_nothing_moved(s, &st);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, 11), -E2BIG);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(bg_join(&w), 0);

	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN); /* no units */
	ck_assert_int_eq(stats_of(s).rejected, 2);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 10), 0);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §7.11: zero/negative weight, over-release and overflow fail with a
 * clear error and change nothing, on the fast and the slow path. */
START_TEST(test_sem_bad_weights_and_over_release_change_nothing)
{
	ration_sem_t *s;
	ration_sem_stats_t st;
	struct bg w;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 3), 0);
	st = stats_of(s);

	assert_fails_unchanged(s, &st, ration_sem_acquire(s, NULL, 0), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, NULL, -7),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_release(s, 0), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_release(s, -1), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_release(s, INT64_MIN),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_release(s, 4), -EOVERFLOW);
	assert_fails_unchanged(s, &st, ration_sem_release(s, INT64_MAX),
			       -EOVERFLOW);
	assert_fails_unchanged(s, &st, ration_sem_resize(s, 0), -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_resize(s, -10), -EINVAL);
	ration_claim_t sum_overflows[] = {{s, INT64_MAX}, {s, 1}};
	assert_fails_unchanged(
		s, &st, ration_acquire_all(NULL, sum_overflows, 2), -EOVERFLOW);
	ration_claim_t zero[] = {{s, 1}, {s, 0}};
	assert_fails_unchanged(s, &st, ration_acquire_all(NULL, zero, 2),
			       -EINVAL);

	/* slow path (someone queued): the same */
	ck_assert_int_eq(ration_sem_try_acquire(s, 7), 0);
	bg_acquire(&w, s, NULL, 5);
	wait_waiters(s, 1);
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_release(s, 11), -EOVERFLOW);
	assert_fails_unchanged(s, &st, ration_sem_release(s, INT64_MAX),
			       -EOVERFLOW);
	assert_fails_unchanged(s, &st, ration_sem_release(s, 0), -EINVAL);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(bg_join(&w), 0);
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_release(s, 1), -EOVERFLOW);

	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §10: sizes up to RATION_SEM_MAX; weights judged against the size
 * whatever their magnitude. */
START_TEST(test_sem_limits_at_ration_sem_max)
{
	ration_sem_t *s, *small;
	ration_sem_stats_t st;
	ck_assert_int_eq(ration_sem_new(RATION_SEM_MAX, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_new(3, NULL, &small), 0);
	st = stats_of(s);

	assert_fails_unchanged(s, &st, ration_sem_acquire(s, NULL, INT64_MAX),
			       -E2BIG);
	assert_fails_unchanged(s, &st,
			       ration_sem_acquire(s, NULL, RATION_SEM_MAX + 1),
			       -E2BIG);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, INT64_MAX),
			       -E2BIG);
	assert_fails_unchanged(s, &st, ration_sem_resize(s, RATION_SEM_MAX + 1),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_resize(s, INT64_MAX),
			       -EINVAL);
	assert_fails_unchanged(s, &st, ration_sem_release(s, INT64_MAX),
			       -EOVERFLOW);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, RATION_SEM_MAX), 0);
	ck_assert_int_eq(ration_sem_available(s), 0);
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_release(s, INT64_MAX),
			       -EOVERFLOW);
	assert_fails_unchanged(
		s, &st, ration_sem_release(s, RATION_SEM_MAX + 1), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_release(s, RATION_SEM_MAX), 0);
	ck_assert_int_eq(ration_sem_resize(small, RATION_SEM_MAX), 0);
	ck_assert_int_eq(ration_sem_available(small), RATION_SEM_MAX);
	ck_assert_int_eq(ration_sem_acquire(small, NULL, RATION_SEM_MAX - 1),
			 0);
	ck_assert_int_eq(ration_sem_resize(small, 1), 0); /* deep deficit */

	ck_assert_int_eq(ration_sem_available(small), 1 - (RATION_SEM_MAX - 1));
	ck_assert_int_eq(ration_sem_release(small, RATION_SEM_MAX - 1), 0);
	ck_assert_int_eq(ration_sem_available(small), 1);
	ck_assert_int_eq(ration_sem_available(s), RATION_SEM_MAX);
	ck_assert_int_eq(stats_of(s).max_in_use, RATION_SEM_MAX);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(small), 0);
}
END_TEST

/* contract §7.2: an already-done ctx fails even when tokens are free; the
 * count is unchanged. */
START_TEST(test_sem_done_ctx_fails_even_when_units_are_free)
{
	ration_sem_t *s;
	ration_ctx_t *cancelled, *cause, *timed_out, *child;
	ration_sem_stats_t st;
	ck_assert_int_eq(ration_sem_new(5, NULL, &s), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &cancelled), 0);
	ration_ctx_cancel(cancelled);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &cause), 0);
	ration_ctx_cancel_with(cause, -EIO);
	ck_assert_int_eq(
		ration_ctx_with_deadline(NULL, ration_now() - 1, &timed_out),
		0);
	ck_assert_int_eq(ration_ctx_with_cancel(cancelled, &child), 0);
	st = stats_of(s);

	assert_fails_unchanged(s, &st, ration_sem_acquire(s, cancelled, 1),
			       -ECANCELED);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, cause, 5), -EIO);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, timed_out, 1),
			       -ETIMEDOUT);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, child, 2),
			       -ECANCELED);

	ck_assert_int_eq(ration_sem_available(s), 5);
	ck_assert_int_eq(st.acquired, 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 5), 0); /* still usable */
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ration_ctx_unref(child);
	ration_ctx_unref(cancelled);
	ration_ctx_unref(cause);
	ration_ctx_unref(timed_out);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

static int64_t
timespec_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* contract §7.12: deadlines are CLOCK_MONOTONIC; one in the past fails at
 * once, even if units are free. */
START_TEST(test_sem_deadlines_are_monotonic_and_past_ones_fail_at_once)
{
	ration_sem_t *s;
	ration_sem_stats_t st;
	struct timespec a, b, ts;
	ck_assert_int_eq(ration_sem_new(1, NULL, &s), 0);
	st = stats_of(s);

	clock_gettime(CLOCK_MONOTONIC, &a);
	int64_t now = ration_now();
	clock_gettime(CLOCK_MONOTONIC, &b);
	ck_assert_int_le(timespec_ns(&a), now);
	ck_assert_int_ge(timespec_ns(&b), now);
	assert_fails_unchanged(s, &st,
			       ration_sem_acquire_until(s, ration_now() - 1, 1),
			       -ETIMEDOUT);
	assert_fails_unchanged(s, &st, ration_sem_acquire_until(s, 0, 1),
			       -ETIMEDOUT);
	assert_fails_unchanged(
		s, &st, ration_sem_acquire_until(s, INT64_MIN, 1), -ETIMEDOUT);

	/* a deadline read straight off CLOCK_MONOTONIC is honoured */
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t d = timespec_ns(&ts) + 30 * MS;
	int rc = ration_sem_acquire_until(s, d, 1);
	int64_t t = ration_now();

	ck_assert_int_eq(rc, -ETIMEDOUT);
	ck_assert_int_ge(t, d);
	ck_assert_int_lt(t - d, TEST_LATE_NS);
	st = stats_of(s);
	ck_assert_int_eq(st.timeouts, 1);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(st.available, 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* ---- FIFO --------------------------------------------------------------- */

/* contract §7.1: a cancelled head waiter lets the one behind it through. */
START_TEST(test_sem_cancelled_head_wakes_follower)
{
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg a, b;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);

	bg_acquire(&a, s, ctx, 10); /* head; cannot fit */
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 1); /* fits, but queued behind a */
	wait_waiters(s, 2);
	ration_ctx_cancel(ctx);

	ck_assert_int_eq(bg_join(&a), -ECANCELED);
	ck_assert_int_eq(bg_join(&b), 0);
	ck_assert_int_eq(ration_sem_available(s), 8);
	ck_assert_int_eq(stats_of(s).cancels, 1);
	ck_assert_int_eq(ration_sem_release(s, 2), 0);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §7.1 with a deadline: a timed-out head lets the follower through. */
START_TEST(test_sem_timed_out_head_wakes_follower)
{
	ration_sem_t *s;
	struct bg a, b;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);

	/* long enough for b to queue behind a on a loaded machine */
	bg_acquire_until(&a, s, ration_now() + 1000 * MS, 10);
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 1);
	wait_waiters(s, 2);

	ck_assert_int_eq(bg_join(&a), -ETIMEDOUT);
	ck_assert_int_eq(bg_join(&b), 0);
	ck_assert_int_eq(ration_sem_available(s), 8);
	ck_assert_int_eq(stats_of(s).timeouts, 1);
	ck_assert_int_eq(ration_sem_release(s, 2), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §4: strict FIFO. Queued waiters of different weights are granted
 * in arrival order; any two neighbours together exceed the size, so each
 * grant can only follow the previous holder's release, and a waiter that
 * would fit early (the 2) must still wait for the 9 ahead of it. */
START_TEST(test_sem_grants_in_arrival_order)
{
	static const int64_t weights[] = {7, 4, 9, 2, 10, 6, 5, 8};
	enum { N = sizeof(weights) / sizeof(weights[0]) };
	ration_sem_t *s;
	struct seq_waiter w[N];
	_Atomic int next_seq = 0;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 10), 0);
	for (int i = 0; i < N; i++) {
		w[i] = (struct seq_waiter){.s = s,
					   .n = weights[i],
					   .next_seq = &next_seq,
					   .seq = -1};
		atomic_init(&w[i].done, false);
		ck_assert_int_eq(
			pthread_create(&w[i].t, NULL, seq_waiter_main, &w[i]),
			0);
		wait_waiters(s, i + 1); /* fixes the arrival order */
	}

	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	for (int i = 0; i < N; i++) {
		WAIT_FOR(atomic_load(&w[i].done));
		pthread_join(w[i].t, NULL);
	}

	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(w[i].rc, 0);
		ck_assert_msg(w[i].seq == i,
			      "waiter %d (n=%lld) granted as #%d", i,
			      (long long)weights[i], w[i].seq);
	}
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.acquired, N + 1);
	ck_assert_int_eq(st.contended, N);
	ck_assert_int_eq(st.max_waiters_seen, N);
	ck_assert_int_eq(st.available, 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §4: release hands units to exactly the head waiters that fit, in
 * order; a fitting waiter behind one that does not fit keeps waiting. */
START_TEST(test_sem_release_grants_exactly_the_head_waiters_that_fit)
{
	ration_sem_t *s;
	struct bg a, b, c, d;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 10), 0);
	bg_acquire(&a, s, NULL, 3);
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 3);
	wait_waiters(s, 2);
	bg_acquire(&c, s, NULL, 5);
	wait_waiters(s, 3);
	bg_acquire(&d, s, NULL, 1);
	wait_waiters(s, 4);

	ck_assert_int_eq(ration_sem_release(s, 6), 0); /* a and b fit, c not */
	ck_assert_int_eq(bg_join(&a), 0);
	ck_assert_int_eq(bg_join(&b), 0);
	sleep_ns(20 * MS); /* give a wrong grant time to show */
	ck_assert(!atomic_load(&c.done) && !atomic_load(&d.done));
	ck_assert_int_eq(sem_waiters(s), 2);
	ck_assert_int_eq(stats_of(s).waiting_weight, 6);
	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_release(s, 4),
			 0); /* 4 free: c (5) blocks d (1) */
	sleep_ns(20 * MS);
	ck_assert(!atomic_load(&c.done) && !atomic_load(&d.done));
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_release(s, 3),
			 0); /* a's: 7 free, c then d */

	ck_assert_int_eq(bg_join(&c), 0);
	ck_assert_int_eq(bg_join(&d), 0);
	ck_assert_int_eq(ration_sem_available(s), 1);
	ck_assert_int_eq(sem_waiters(s), 0);
	ck_assert_int_eq(ration_sem_release(s, 9), 0); /* b, c, d */
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §7.4: n > size fails with -E2BIG at once and blocks nobody. */
START_TEST(test_sem_e2big_returns_at_once_and_blocks_nobody)
{
	ration_sem_t *s;
	struct bg a, b;
	ck_assert_int_eq(ration_sem_new(5, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 2), 0);
	bg_acquire(&a, s, NULL, 5); /* queued: 3 free */
	wait_waiters(s, 1);
	ration_sem_stats_t st = stats_of(s);

	int64_t t0 = ration_now();
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, NULL, 6), -E2BIG);
	assert_fails_unchanged(
		s, &st, ration_sem_acquire_until(s, RATION_FOREVER, 6), -E2BIG);
	assert_fails_unchanged(s, &st, ration_sem_try_acquire(s, 6), -E2BIG);
	int64_t t1 = ration_now();
	bg_acquire(&b, s, NULL, 1); /* behind a, as if no E2BIG had come */
	wait_waiters(s, 2);
	ck_assert_int_eq(ration_sem_release(s, 2), 0);

	ck_assert_int_lt(t1 - t0, TEST_LATE_NS);
	ck_assert_int_eq(bg_join(&a), 0);
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ck_assert_int_eq(bg_join(&b), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(ration_sem_available(s), 5);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* A stream of small acquirers that keep every unit busy. */
struct smalls {
	ration_sem_t *s;
	_Atomic bool stop;
	_Atomic long ops;
	_Atomic long bad;
};

static void *
small_main(void *arg)
{
	struct smalls *sm = arg;
	while (!atomic_load(&sm->stop)) {
		int rc = acquire_bounded(sm->s, 1);
		if (rc != 0) {
			atomic_fetch_add(&sm->bad, 1);
			break;
		}
		spin_ns(2000);
		if (ration_sem_release(sm->s, 1) != 0)
			atomic_fetch_add(&sm->bad, 1);
		atomic_fetch_add(&sm->ops, 1);
	}
	return NULL;
}

/* contract §7.5 (Go x/sync TestLargeAcquireDoesntStarve): a large request is
 * not starved by a stream of small ones: once it queues, the small ones
 * queue behind it. */
START_TEST(test_sem_large_request_is_not_starved)
{
	enum { SMALL = 4 };
	struct smalls sm = {.stop = false};
	pthread_t t[SMALL];
	ck_assert_int_eq(ration_sem_new(SMALL, NULL, &sm.s), 0);
	for (int i = 0; i < SMALL; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, small_main, &sm),
				 0);
	WAIT_FOR(atomic_load(&sm.ops) >= 1000);

	int rc = acquire_bounded(sm.s, SMALL);
	long ops_at_grant = atomic_load(&sm.ops);
	ck_assert_int_eq(ration_sem_available(sm.s), 0);
	if (rc == 0)
		ck_assert_int_eq(ration_sem_release(sm.s, SMALL), 0);
	WAIT_FOR(atomic_load(&sm.ops) >= ops_at_grant + 100); /* smalls go on */
	atomic_store(&sm.stop, true);
	for (int i = 0; i < SMALL; i++)
		pthread_join(t[i], NULL);

	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(atomic_load(&sm.bad), 0);
	ck_assert_int_eq(ration_sem_available(sm.s), SMALL);
	ck_assert_int_eq(ration_sem_free(sm.s), 0);
}
END_TEST

/* contract §7.13: no grant goes to a waiter that has already left. */
START_TEST(test_sem_no_grant_to_a_waiter_that_left)
{
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg a, b, c;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 10), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	bg_acquire(&a, s, ctx, 5);
	wait_waiters(s, 1);
	bg_acquire_until(&b, s, ration_now() + 1000 * MS,
			 3); /* c queues first */
	wait_waiters(s, 2);
	bg_acquire(&c, s, NULL, 5);
	wait_waiters(s, 3);

	ration_ctx_cancel(ctx);
	ck_assert_int_eq(bg_join(&a), -ECANCELED);
	ck_assert_int_eq(bg_join(&b), -ETIMEDOUT);
	ck_assert_int_eq(sem_waiters(s), 1);
	ck_assert_int_eq(ration_sem_release(s, 8),
			 0); /* a and b would take it */

	ck_assert_int_eq(bg_join(&c), 0);
	ck_assert_int_eq(ration_sem_available(s), 3);
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.acquired, 2);
	ck_assert_int_eq(st.cancels, 1);
	ck_assert_int_eq(st.timeouts, 1);
	ck_assert_int_eq(st.waiting_weight, 0);
	ck_assert_int_eq(ration_sem_release(s, 7), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* Go x/sync TestWeightedAcquire (cancelled): a cancelled acquire takes
 * nothing, and the unit goes to the next acquirer. */
START_TEST(test_sem_cancelled_acquire_takes_nothing)
{
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg a;
	ck_assert_int_eq(ration_sem_new(1, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	bg_acquire(&a, s, ctx, 1);
	wait_waiters(s, 1);

	ration_ctx_cancel(ctx);
	ck_assert_int_eq(bg_join(&a), -ECANCELED);
	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);

	ck_assert_int_eq(ration_sem_available(s), 1);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), -EOVERFLOW);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* Go x/sync TestAllocCancelDoesntStarve: while a big head waiter is
 * cancelled concurrently, a small acquire queued behind it gets through. */
START_TEST(test_sem_cancelled_head_does_not_starve_others)
{
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg big;
	pthread_t canceller;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	bg_acquire(&big, s, ctx, 10);
	wait_waiters(s, 1);

	ck_assert_int_eq(pthread_create(&canceller, NULL, cancel_main, ctx), 0);
	int rc = acquire_bounded(s, 1);
	pthread_join(canceller, NULL);

	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(bg_join(&big), -ECANCELED);
	ck_assert_int_eq(ration_sem_available(s), 8);
	ck_assert_int_eq(ration_sem_release(s, 2), 0);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* ---- resize ------------------------------------------------------------- */

START_TEST(test_sem_resize_grow_wakes_waiters)
{
	ration_sem_t *s;
	struct bg a, b;
	ck_assert_int_eq(ration_sem_new(2, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 2), 0);
	bg_acquire(&a, s, NULL, 2);
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 1);
	wait_waiters(s, 2);

	ck_assert_int_eq(ration_sem_resize(s, 5), 0);

	ck_assert_int_eq(bg_join(&a), 0);
	ck_assert_int_eq(bg_join(&b), 0);
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.size, 5);
	ck_assert_int_eq(st.available, 0);
	ck_assert_int_eq(st.in_use, 5);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ck_assert_int_eq(ration_sem_available(s), 5);
	ck_assert_int_eq(ration_sem_try_acquire(s, 5),
			 0); /* fast path is back */
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §4: shrinking below what is held leaves a deficit that releases
 * repay exactly; queued waiters above the new size get -E2BIG. */
START_TEST(test_sem_shrink_into_deficit_is_repaid_exactly)
{
	ration_sem_t *s;
	struct bg a, b, c;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 8), 0);
	bg_acquire(&a, s, NULL, 6);
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 3);
	wait_waiters(s, 2);
	bg_acquire(&c, s, NULL, 4); /* exactly the new size: stays */
	wait_waiters(s, 3);

	ck_assert_int_eq(ration_sem_resize(s, 4), 0);

	ck_assert_int_eq(bg_join(&a), -E2BIG);
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.size, 4);
	ck_assert_int_eq(st.available, -4);
	ck_assert_int_eq(st.in_use, 8);
	ck_assert_int_eq(st.waiters, 2);
	ck_assert_int_eq(st.waiting_weight, 7);
	assert_fails_unchanged(s, &st, ration_sem_release(s, 9), -EOVERFLOW);
	assert_fails_unchanged(s, &st, ration_sem_acquire(s, NULL, 5), -E2BIG);
	ck_assert_int_eq(ration_sem_release(s, 4), 0); /* repays the deficit */
	ck_assert_int_eq(ration_sem_available(s), 0);
	sleep_ns(20 * MS);
	ck_assert(!atomic_load(&b.done));
	ck_assert_int_eq(ration_sem_release(s, 3), 0); /* b fits, c not yet */
	ck_assert_int_eq(bg_join(&b), 0);
	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0); /* the last of the 8 */
	ck_assert_int_eq(ration_sem_release(s, 3), 0); /* b's */
	ck_assert_int_eq(bg_join(&c), 0);

	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_release(s, 1), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §7.8: resize of a closed semaphore keeps it closed (-EPIPE,
 * nothing changes); a deficit is still repaid exactly. */
START_TEST(test_sem_resize_of_closed_sem_keeps_it_closed)
{
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 6), 0);
	ck_assert_int_eq(ration_sem_resize(s, 4), 0);
	ration_sem_close(s);
	ration_sem_stats_t st = stats_of(s);

	assert_fails_unchanged(s, &st, ration_sem_resize(s, 20), -EPIPE);
	assert_fails_unchanged(s, &st, ration_sem_resize(s, 1), -EPIPE);
	assert_fails_unchanged(s, &st, ration_sem_resize(s, 0), -EINVAL);

	ck_assert(st.closed);
	ck_assert_int_eq(st.size, 4);
	ck_assert_int_eq(st.available, -2);
	ck_assert_int_eq(ration_sem_release(s, 3), 0);
	ck_assert_int_eq(ration_sem_available(s), 1);
	ck_assert_int_eq(ration_sem_release(s, 3), 0);
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_release(s, 1), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EPIPE);
	ck_assert(stats_of(s).closed);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* ---- close and free ----------------------------------------------------- */

START_TEST(test_sem_close_wakes_all_waiters_and_release_still_works)
{
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg a, b, c;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 10), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	bg_acquire(&a, s, ctx, 1);
	bg_acquire(&b, s, NULL, 5);
	bg_acquire_until(&c, s, RATION_FOREVER, 10);
	wait_waiters(s, 3);

	ration_sem_close(s);

	ck_assert_int_eq(bg_join(&a), -EPIPE);
	ck_assert_int_eq(bg_join(&b), -EPIPE);
	ck_assert_int_eq(bg_join(&c), -EPIPE);
	ration_sem_stats_t st = stats_of(s);
	ck_assert(st.closed);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(st.waiting_weight, 0);
	ck_assert_int_eq(st.cancels, 0);
	ck_assert_int_eq(st.timeouts, 0);
	ck_assert_int_eq(st.acquired, 1);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_acquire_until(s, RATION_FOREVER, 1),
			 -EPIPE);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_release(s, 6), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1),
			 -EPIPE); /* free, still closed */
	ration_sem_close(s);      /* idempotent */
	ck_assert(stats_of(s).closed);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §7.10: free of a held or waited-on semaphore returns -EBUSY and
 * frees nothing: the semaphore stays usable and unchanged. */
START_TEST(test_sem_free_of_busy_sem_returns_ebusy)
{
	ration_sem_t *s;
	struct bg w;
	ck_assert_int_eq(ration_sem_new(3, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	ration_sem_stats_t st = stats_of(s);

	assert_fails_unchanged(s, &st, ration_sem_free(s), -EBUSY);
	ck_assert_int_eq(ration_sem_try_acquire(s, 2), 0); /* still usable */
	bg_acquire(&w, s, NULL, 3);
	wait_waiters(s, 1);
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_free(s), -EBUSY);
	ck_assert_int_eq(ration_sem_release(s, 3), 0);
	ck_assert_int_eq(bg_join(&w), 0);
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_free(s), -EBUSY);
	ration_sem_close(s); /* closed but held: still busy */
	st = stats_of(s);
	assert_fails_unchanged(s, &st, ration_sem_free(s), -EBUSY);
	ck_assert_int_eq(ration_sem_resize(s, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_release(s, 3), 0);

	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

START_TEST(test_sem_free_of_sem_in_deficit_returns_ebusy)
{
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_new(4, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 4), 0);
	ck_assert_int_eq(ration_sem_resize(s, 2), 0);
	ck_assert_int_eq(ration_sem_release(s, 3), 0); /* 1 still held */
	ration_sem_stats_t st = stats_of(s);

	assert_fails_unchanged(s, &st, ration_sem_free(s), -EBUSY);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);

	ck_assert_int_eq(ration_sem_available(s), 2);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* ---- limits and stats --------------------------------------------------- */

/* contract §4: with max_waiters queued, acquire fails at once with -EBUSY
 * (counted as rejected); a place freed in the queue can be taken again. */
START_TEST(test_sem_max_waiters_sheds_load)
{
	ration_sem_opts_t o = {.max_waiters = 2};
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg a, b, c;
	ck_assert_int_eq(ration_sem_new(1, &o, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	bg_acquire(&a, s, ctx, 1);
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 1);
	wait_waiters(s, 2);

	int64_t t0 = ration_now();
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), -EBUSY);
	ck_assert_int_eq(ration_sem_acquire_until(s, RATION_FOREVER, 1),
			 -EBUSY);
	ck_assert_int_lt(ration_now() - t0, TEST_LATE_NS);
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.rejected, 2);
	ck_assert_int_eq(st.waiters, 2);
	ck_assert_int_eq(st.max_waiters_seen, 2);
	ck_assert_int_eq(st.contended, 2);
	ration_ctx_cancel(ctx);
	ck_assert_int_eq(bg_join(&a), -ECANCELED);
	bg_acquire(&c, s, NULL, 1); /* a's place */
	wait_waiters(s, 2);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(bg_join(&b), 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0); /* b's */
	ck_assert_int_eq(bg_join(&c), 0);

	st = stats_of(s);
	ck_assert_int_eq(st.rejected, 2);
	ck_assert_int_eq(st.max_waiters_seen, 2);
	ck_assert_int_eq(st.acquired, 3);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §4: every counter, exact once no operation is in flight (§10). */
START_TEST(test_sem_stats_count_every_outcome)
{
	ration_sem_opts_t o = {.name = "budget"};
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg a, b, c;
	ck_assert_int_eq(ration_sem_new(10, &o, &s), 0);
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.size, 10);
	ck_assert_int_eq(st.available, 10);
	ck_assert_int_eq(st.acquired + st.contended + hist_sum(&st), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 3), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 2), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);

	bg_acquire(&a, s, ctx, 6); /* 5 free: queues, then is cancelled */
	wait_waiters(s, 1);
	bg_acquire(&c, s, NULL, 6); /* queues behind a, later granted */
	wait_waiters(s, 2);
	st = stats_of(s);
	ck_assert_int_eq(st.waiting_weight, 12);
	ration_ctx_cancel(ctx);
	ck_assert_int_eq(bg_join(&a), -ECANCELED);
	bg_acquire_until(&b, s, ration_now() + 200 * MS, 6); /* times out */
	ck_assert_int_eq(bg_join(&b), -ETIMEDOUT);
	ck_assert_int_eq(ration_sem_release(s, 1), 0); /* 6 free: c */
	ck_assert_int_eq(bg_join(&c), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN); /* none free */

	st = stats_of(s);
	ck_assert_int_eq(st.size, 10);
	ck_assert_int_eq(st.available, 0);
	ck_assert_int_eq(st.in_use, 10);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(st.waiting_weight, 0);
	ck_assert_int_eq(st.max_in_use, 10);
	ck_assert_int_eq(st.max_waiters_seen, 2);
	ck_assert_int_eq(st.acquired, 3);
	ck_assert_int_eq(st.contended, 3);
	ck_assert_int_eq(st.timeouts, 1);
	ck_assert_int_eq(st.cancels, 1);
	ck_assert_int_eq(st.rejected, 1);
	ck_assert_int_eq(hist_sum(&st), 1); /* one granted wait */
	ck_assert_int_gt(st.wait_ns_total, 0);
	ck_assert(!st.closed);
	ck_assert_str_eq(st.name, "budget");
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(stats_of(s).max_in_use, 10);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

#define FAST_THREADS (RATION_TSLOTS + 4)
#define FAST_ROUNDS  3
#define FAST_OPS     2000

static void *
fast_acquirer(void *arg)
{
	for (int i = 0; i < FAST_OPS; i++) {
		ck_assert_int_eq(ration_sem_acquire(arg, NULL, 1), 0);
		ck_assert_int_eq(ration_sem_release(arg, 1), 0);
	}
	return NULL;
}

/* contract §10: acquired is exact once no operation is in flight, whoever
 * took the units on the fast path: threads that own a counter slot, the
 * ones past RATION_TSLOTS that count on the shared counter, and threads
 * that inherit an exited thread's slot (lib/internal/tslot.h). */
START_TEST(test_sem_stats_count_fast_acquires_of_every_thread)
{
	ration_sem_t *s;
	pthread_t t[FAST_THREADS];
	/* A unit per thread besides the one held here: nobody ever queues,
	 * every acquire is fast, however the threads are scheduled. */
	ck_assert_int_eq(ration_sem_new(FAST_THREADS + 1, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), 0);
	for (int r = 0; r < FAST_ROUNDS; r++) {
		for (int i = 0; i < FAST_THREADS; i++)
			ck_assert_int_eq(
				pthread_create(&t[i], NULL, fast_acquirer, s),
				0);
		for (int i = 0; i < FAST_THREADS; i++)
			pthread_join(t[i], NULL);
	}
	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.acquired,
			 (uint64_t)FAST_ROUNDS * FAST_THREADS * FAST_OPS + 1);
	ck_assert_int_eq(st.contended, 0);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §4 stats: the log2 histogram holds granted waits only, each in
 * bucket floor(log2(wait ns)); fast-path acquires are counted in acquired
 * but not as waits; the high-water marks keep their peak. */
START_TEST(test_sem_wait_histogram_buckets_granted_waits)
{
	ration_sem_t *s;
	struct bg w;
	ck_assert_int_eq(ration_sem_new(2, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 2), 0);
	bg_acquire(&w, s, NULL, 2);
	wait_waiters(s, 1);
	sleep_ns(5 * MS); /* the wait lasts at least this */
	ck_assert_int_eq(ration_sem_release(s, 2), 0);
	ck_assert_int_eq(bg_join(&w), 0);

	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(hist_sum(&st), 1);
	ck_assert_uint_ge(st.wait_ns_total, (uint64_t)(5 * MS));
	int b = 63 - __builtin_clzll(st.wait_ns_total);
	if (b > RATION_HIST_BUCKETS - 1)
		b = RATION_HIST_BUCKETS - 1;
	ck_assert_msg(st.wait_hist[b] == 1, "wait of %llu ns not in bucket %d",
		      (unsigned long long)st.wait_ns_total, b);
	ck_assert_int_eq(st.max_in_use, 2);
	ck_assert_int_eq(st.max_waiters_seen, 1);

	ck_assert_int_eq(ration_sem_release(s, 2), 0);
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), 0);
		ck_assert_int_eq(ration_sem_release(s, 1), 0);
	}
	ration_sem_stats_t st2 = stats_of(s);
	ck_assert_int_eq(st2.acquired, st.acquired + 100);
	ck_assert_int_eq(hist_sum(&st2), 1);
	ck_assert_int_eq(st2.wait_ns_total, st.wait_ns_total);
	ck_assert_int_eq(st2.contended, 1);
	ck_assert_int_eq(st2.max_in_use, 2);
	ck_assert_int_eq(st2.max_waiters_seen, 1);
	ck_assert_int_eq(st2.in_use, 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

START_TEST(test_sem_stats_name_is_copied_and_truncated)
{
	char buf[64] = "pool-a";
	char longname[61];
	ration_sem_opts_t o = {.name = buf};
	ration_sem_t *a, *b, *c;
	memset(longname, 'x', 60);
	longname[60] = '\0';
	ck_assert_int_eq(ration_sem_new(1, &o, &a), 0);
	o.name = longname;
	ck_assert_int_eq(ration_sem_new(1, &o, &b), 0);
	ck_assert_int_eq(ration_sem_new(1, NULL, &c), 0);

	strcpy(buf, "changed");
	memset(longname, 'y', 60);

	ration_sem_stats_t st = stats_of(a);
	ck_assert_str_eq(st.name, "pool-a");
	st = stats_of(b);
	ck_assert_uint_eq(strlen(st.name), sizeof(st.name) - 1);
	ck_assert_int_eq(st.name[0], 'x');
	ck_assert_int_eq(st.name[sizeof(st.name) - 2], 'x');
	ck_assert_str_eq(stats_of(c).name, "");
	ck_assert_int_eq(ration_sem_free(a), 0);
	ck_assert_int_eq(ration_sem_free(b), 0);
	ck_assert_int_eq(ration_sem_free(c), 0);
}
END_TEST

/* ---- named semaphores --------------------------------------------------- */

/* contract §4 and §10: same name, same semaphore; size used on the first
 * open only; each open paired with a free; the last free follows the
 * -EBUSY rule. */
START_TEST(test_sem_open_shares_one_semaphore_by_name)
{
	ration_sem_t *a, *b, *c, *other, *again;
	ration_sem_t *none = NULL;
	ck_assert_int_eq(ration_sem_open(NULL, 5, &none), -EINVAL);
	ck_assert_int_eq(ration_sem_open("", 5, &none), -EINVAL);
	ck_assert_int_eq(ration_sem_open("test-sem-open", 5, NULL), -EINVAL);
	ck_assert_int_eq(ration_sem_open("test-sem-open-new", 0, &none),
			 -EINVAL);
	ck_assert_int_eq(
		ration_sem_open("test-sem-open-new", RATION_SEM_MAX + 1, &none),
		-EINVAL);
	ck_assert_ptr_null(none);

	ck_assert_int_eq(ration_sem_open("test-sem-open", 5, &a), 0);
	ck_assert_int_eq(ration_sem_open("test-sem-open", 99, &b), 0);
	ck_assert_int_eq(ration_sem_open("test-sem-open", 0, &c), 0);
	ck_assert_int_eq(ration_sem_open("test-sem-open-2", 2, &other), 0);

	ck_assert_ptr_eq(a, b);
	ck_assert_ptr_eq(a, c);
	ck_assert_ptr_ne(a, other);
	ck_assert_int_eq(stats_of(a).size, 5);
	ck_assert_str_eq(stats_of(a).name, "test-sem-open");
	ck_assert_int_eq(ration_sem_try_acquire(b, 5),
			 0); /* one limit for all */
	ck_assert_int_eq(ration_sem_try_acquire(a, 1), -EAGAIN);
	ck_assert_int_eq(ration_sem_free(a), 0); /* drops a reference only */
	ck_assert_int_eq(ration_sem_free(b), 0);
	ck_assert_int_eq(ration_sem_available(c), 0); /* c is still alive */
	ck_assert_int_eq(ration_sem_free(c), -EBUSY); /* last one: held */
	ck_assert_int_eq(ration_sem_release(c, 5), 0);
	ck_assert_int_eq(ration_sem_free(c), 0);
	ck_assert_int_eq(ration_sem_open("test-sem-open", 7, &again), 0);
	ck_assert_int_eq(stats_of(again).size, 7); /* a fresh one */
	ck_assert_int_eq(ration_sem_free(again), 0);
	ck_assert_int_eq(ration_sem_free(other), 0);
}
END_TEST

START_TEST(test_sem_open_tells_long_names_apart)
{
	char n1[80], n2[80];
	ration_sem_t *a, *b, *a2;
	memset(n1, 'q', 70);
	n1[70] = '\0';
	memcpy(n2, n1, sizeof(n1));
	n2[69] = 'r'; /* differs only past the stats name's length */

	ck_assert_int_eq(ration_sem_open(n1, 1, &a), 0);
	ck_assert_int_eq(ration_sem_open(n2, 2, &b), 0);
	ck_assert_int_eq(ration_sem_open(n1, 3, &a2), 0);

	ck_assert_ptr_ne(a, b);
	ck_assert_ptr_eq(a, a2);
	ck_assert_int_eq(stats_of(a).size, 1);
	ck_assert_int_eq(stats_of(b).size, 2);
	ck_assert_int_eq(ration_sem_free(a), 0);
	ck_assert_int_eq(ration_sem_free(a2), 0);
	ck_assert_int_eq(ration_sem_free(b), 0);
}
END_TEST

/* contract §10: the last free of a named semaphore follows the -EBUSY rule
 * and then frees nothing: the caller keeps its reference, and the name
 * still opens the same semaphore. */
START_TEST(test_sem_open_busy_last_free_keeps_the_name)
{
	ration_sem_t *a, *b;
	ck_assert_int_eq(ration_sem_open("test-open-busy", 4, &a), 0);
	ck_assert_int_eq(ration_sem_acquire(a, NULL, 1), 0);

	ck_assert_int_eq(ration_sem_free(a), -EBUSY);
	ck_assert_int_eq(ration_sem_open("test-open-busy", 9, &b), 0);

	ck_assert_ptr_eq(a, b);
	ck_assert_int_eq(stats_of(b).size, 4);
	ck_assert_int_eq(ration_sem_available(b), 3);
	ck_assert_int_eq(ration_sem_free(b), 0); /* a's reference is left */
	ck_assert_int_eq(ration_sem_free(a), -EBUSY);
	ck_assert_int_eq(ration_sem_release(a, 1), 0);
	ck_assert_int_eq(ration_sem_free(a), 0);
}
END_TEST

/* The registry is separate from opts.name: a semaphore made with
 * ration_sem_new() and a name is not found by ration_sem_open(), and the
 * two never conflict. */
START_TEST(test_sem_open_ignores_unnamed_semaphores_with_the_same_label)
{
	ration_sem_opts_t o = {.name = "test-open-label"};
	ration_sem_t *plain, *named;
	ck_assert_int_eq(ration_sem_new(2, &o, &plain), 0);

	ck_assert_int_eq(ration_sem_open("test-open-label", 5, &named), 0);

	ck_assert_ptr_ne(plain, named);
	ck_assert_int_eq(stats_of(named).size, 5);
	ck_assert_str_eq(stats_of(named).name, "test-open-label");
	ck_assert_int_eq(ration_sem_free(plain), 0);
	ck_assert_int_eq(ration_sem_free(named), 0);
}
END_TEST

struct open_race {
	ration_sem_t *pinned; /* NULL: the name comes and goes */
	long rounds;
	_Atomic long other; /* opens that returned another semaphore */
	_Atomic long bad;
	_Atomic int done;
};

static void *
open_race_main(void *arg)
{
	struct open_race *o = arg;
	for (long i = 0; i < o->rounds; i++) {
		ration_sem_t *s;
		if (ration_sem_open("test-open-race", 3, &s) != 0) {
			atomic_fetch_add(&o->bad, 1);
			break;
		}
		if (o->pinned != NULL && s != o->pinned)
			atomic_fetch_add(&o->other, 1);
		if (ration_sem_acquire_until(
			    s, ration_deadline_after(TEST_WAIT_NS), 1) != 0 ||
		    ration_sem_release(s, 1) != 0)
			atomic_fetch_add(&o->bad, 1);
		/* nobody holds units at a last free: it must succeed */
		if (ration_sem_free(s) != 0)
			atomic_fetch_add(&o->bad, 1);
	}
	atomic_fetch_add(&o->done, 1);
	return NULL;
}

static void
open_race_run(struct open_race *o)
{
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, open_race_main, o),
				 0);
	WAIT_FOR(atomic_load(&o->done) == 4);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
}

/* contract §4: concurrent opens of one name share one semaphore, and the
 * reference count survives opens and frees racing with each other (also
 * while the last reference comes and goes: ASan/TSan watch that phase). */
START_TEST(test_sem_open_concurrent_opens_and_frees_keep_one_semaphore)
{
	ration_sem_t *pin, *fresh;
	struct open_race o1 = {.rounds = stress_rounds(3000)};
	struct open_race o2 = {.rounds = stress_rounds(3000)};
	ck_assert_int_eq(ration_sem_open("test-open-race", 3, &pin), 0);
	o1.pinned = pin;

	open_race_run(&o1);
	ck_assert_int_eq(ration_sem_free(pin), 0); /* the last reference */
	open_race_run(&o2);

	ck_assert_int_eq(atomic_load(&o1.bad) + atomic_load(&o2.bad), 0);
	ck_assert_int_eq(atomic_load(&o1.other), 0);
	ck_assert_int_eq(ration_sem_open("test-open-race", 7, &fresh), 0);
	ck_assert_int_eq(stats_of(fresh).size,
			 7); /* every reference was freed */
	ck_assert_int_eq(ration_sem_free(fresh), 0);
}
END_TEST

/* ---- acquire_all -------------------------------------------------------- */

START_TEST(test_acquire_all_takes_all_or_none)
{
	ration_sem_t *x, *y, *lo, *hi;
	ck_assert_int_eq(ration_sem_new(2, NULL, &x), 0);
	ck_assert_int_eq(ration_sem_new(2, NULL, &y), 0);
	lo = x < y ? x : y; /* taken first: address order */
	hi = x < y ? y : x;
	ration_claim_t ok[] = {{hi, 2}, {lo, 1}};
	ration_claim_t too_big[] = {{hi, 3}, {lo, 1}};
	ration_claim_t null_sem[] = {{lo, 1}, {NULL, 1}};

	ck_assert_int_eq(ration_acquire_all(NULL, NULL, 0), 0);
	ck_assert_int_eq(ration_acquire_all(NULL, NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_acquire_all(NULL, null_sem, 2), -EINVAL);
	ck_assert_int_eq(ration_acquire_all(NULL, too_big, 2), -E2BIG);
	/* hi's -E2BIG is found before anything is taken */
	ck_assert_int_eq(stats_of(lo).acquired, 0);
	ck_assert_int_eq(ration_sem_available(lo), 2);
	ck_assert_int_eq(ration_sem_available(hi), 2);
	ck_assert_int_eq(ration_acquire_all(NULL, ok, 2), 0);
	ck_assert_int_eq(ration_sem_available(hi), 0);
	ck_assert_int_eq(ration_sem_available(lo), 1);

	/* hi is exhausted: a bounded try gives back lo again */
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, 20 * MS, &ctx), 0);
	ck_assert_int_eq(ration_acquire_all(ctx, ok, 2), -ETIMEDOUT);
	ck_assert_int_eq(ration_sem_available(lo), 1);
	ck_assert_int_eq(ration_sem_available(hi), 0);
	ration_release_all(ok, 2);

	ck_assert_int_eq(ration_sem_available(lo), 2);
	ck_assert_int_eq(ration_sem_available(hi), 2);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(x), 0);
	ck_assert_int_eq(ration_sem_free(y), 0);
}
END_TEST

/* contract §10: the same semaphore twice counts as one claim of the sum. */
START_TEST(test_acquire_all_sums_a_semaphore_listed_twice)
{
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_new(3, NULL, &s), 0);
	ration_claim_t fits[] = {{s, 2}, {s, 1}};
	ration_claim_t sum_too_big[] = {{s, 2}, {s, 2}}; /* each fits alone */

	ck_assert_int_eq(ration_acquire_all(NULL, sum_too_big, 2), -E2BIG);
	ck_assert_int_eq(ration_sem_available(s), 3);
	ck_assert_int_eq(ration_acquire_all(NULL, fits, 2), 0);

	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(stats_of(s).acquired, 1); /* one acquire of 3 */
	ration_release_all(fits, 2);
	ck_assert_int_eq(ration_sem_available(s), 3);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* More claims than RATION_CLAIMS_INLINE take the allocating path. */
START_TEST(test_acquire_all_more_than_inline_claims)
{
	enum { K = RATION_CLAIMS_INLINE + 4 };
	ration_sem_t *s[K];
	ration_claim_t c[K + 1];
	for (int i = 0; i < K; i++)
		ck_assert_int_eq(ration_sem_new(2, NULL, &s[i]), 0);
	for (int i = 0; i < K; i++)
		c[i] = (ration_claim_t){s[K - 1 - i],
					1}; /* not in address order */
	c[K] = (ration_claim_t){s[3], 1};   /* a duplicate: s[3] gets 2 */

	ck_assert_int_eq(ration_acquire_all(NULL, c, K + 1), 0);
	for (int i = 0; i < K; i++)
		ck_assert_int_eq(ration_sem_available(s[i]), i == 3 ? 0 : 1);
	ration_release_all(c, K + 1);
	for (int i = 0; i < K; i++)
		ck_assert_int_eq(ration_sem_available(s[i]), 2);
	/* the highest address is taken last and times out: everything taken
	 * before it is given back */
	ration_sem_t *top = s[0];
	for (int i = 1; i < K; i++)
		if (s[i] > top)
			top = s[i];
	ck_assert_int_eq(ration_sem_try_acquire(top, 2), 0);
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, 20 * MS, &ctx), 0);

	ck_assert_int_eq(ration_acquire_all(ctx, c, K + 1), -ETIMEDOUT);
	for (int i = 0; i < K; i++) {
		ck_assert_int_eq(ration_sem_available(s[i]),
				 s[i] == top ? 0 : 2);
		ck_assert_int_eq(stats_of(s[i]).acquired, 2);
	}
	ck_assert_int_eq(ration_sem_release(top, 2), 0);
	ration_ctx_unref(ctx);
	for (int i = 0; i < K; i++)
		ck_assert_int_eq(ration_sem_free(s[i]), 0);
}
END_TEST

struct claimer {
	ration_claim_t claims[2];
	long rounds;
	_Atomic long done;
	_Atomic long bad;
	_Atomic bool finished;
};

static void *
claimer_main(void *arg)
{
	struct claimer *cl = arg;
	for (long i = 0; i < cl->rounds; i++) {
		ration_ctx_t *ctx;
		if (ration_ctx_with_timeout(NULL, TEST_WAIT_NS, &ctx) != 0) {
			atomic_fetch_add(&cl->bad, 1);
			break;
		}
		int rc = ration_acquire_all(ctx, cl->claims, 2);
		ration_ctx_unref(ctx);
		if (rc != 0) {
			atomic_fetch_add(&cl->bad, 1);
			break;
		}
		spin_ns(500);
		ration_release_all(cl->claims, 2);
		atomic_fetch_add(&cl->done, 1);
	}
	atomic_store(&cl->finished, true);
	return NULL;
}

/* contract §4: two callers claiming overlapping sets in opposite order never
 * deadlock (each bounded acquire_all would fail with -ETIMEDOUT). */
START_TEST(test_acquire_all_opposite_orders_do_not_deadlock)
{
	ration_sem_t *x, *y;
	pthread_t t1, t2;
	long rounds = stress_rounds(5000);
	ck_assert_int_eq(ration_sem_new(1, NULL, &x), 0);
	ck_assert_int_eq(ration_sem_new(1, NULL, &y), 0);
	struct claimer a = {.claims = {{x, 1}, {y, 1}}, .rounds = rounds};
	struct claimer b = {.claims = {{y, 1}, {x, 1}}, .rounds = rounds};

	ck_assert_int_eq(pthread_create(&t1, NULL, claimer_main, &a), 0);
	ck_assert_int_eq(pthread_create(&t2, NULL, claimer_main, &b), 0);
	WAIT_FOR(atomic_load(&a.finished) && atomic_load(&b.finished));
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);

	ck_assert_int_eq(atomic_load(&a.bad) + atomic_load(&b.bad), 0);
	ck_assert_int_eq(atomic_load(&a.done), rounds);
	ck_assert_int_eq(atomic_load(&b.done), rounds);
	ck_assert_int_eq(ration_sem_available(x), 1);
	ck_assert_int_eq(ration_sem_available(y), 1);
	ck_assert_int_eq(ration_sem_free(x), 0);
	ck_assert_int_eq(ration_sem_free(y), 0);
}
END_TEST

/* contract §4 check order, across claims: an impossible claim (-E2BIG), a
 * closed semaphore (-EPIPE) or a done ctx fails at once, before waiting
 * for an earlier claim that is busy; nothing is taken. (A bounded ctx: a
 * version that waits first fails with -ETIMEDOUT instead.) */
START_TEST(test_acquire_all_impossible_claim_fails_before_waiting)
{
	ration_sem_t *x, *y, *lo, *hi;
	ration_ctx_t *ctx, *done;
	ck_assert_int_eq(ration_sem_new(2, NULL, &x), 0);
	ck_assert_int_eq(ration_sem_new(2, NULL, &y), 0);
	lo = x < y ? x : y; /* taken first: address order */
	hi = x < y ? y : x;
	ck_assert_int_eq(ration_sem_try_acquire(lo, 2), 0); /* lo is busy */
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, TEST_WAIT_NS, &ctx), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &done), 0);
	ration_ctx_cancel(done);
	ration_claim_t too_big[] = {{lo, 1}, {hi, 3}};
	ration_claim_t sum_too_big[] = {{hi, 2}, {lo, 1}, {hi, 1}};
	ration_claim_t fits[] = {{lo, 1}, {hi, 1}};
	ration_sem_stats_t st = stats_of(lo);

	assert_fails_unchanged(lo, &st, ration_acquire_all(ctx, too_big, 2),
			       -E2BIG);
	assert_fails_unchanged(
		lo, &st, ration_acquire_all(NULL, sum_too_big, 3), -E2BIG);
	ck_assert_int_eq(ration_sem_release(lo, 2), 0);
	st = stats_of(lo);
	assert_fails_unchanged(lo, &st, ration_acquire_all(done, fits, 2),
			       -ECANCELED);
	ck_assert_int_eq(ration_sem_try_acquire(lo, 2), 0);
	ration_sem_close(hi);
	st = stats_of(lo);
	assert_fails_unchanged(lo, &st, ration_acquire_all(ctx, fits, 2),
			       -EPIPE);
	assert_fails_unchanged(lo, &st, ration_acquire_all(ctx, too_big, 2),
			       -EPIPE);

	ck_assert_int_eq(ration_sem_available(hi), 2);
	ck_assert_int_eq(ration_ctx_err(ctx), 0); /* it never waited */
	ck_assert_int_eq(ration_sem_release(lo, 2), 0);
	ration_ctx_unref(ctx);
	ration_ctx_unref(done);
	ck_assert_int_eq(ration_sem_free(x), 0);
	ck_assert_int_eq(ration_sem_free(y), 0);
}
END_TEST

/* acquire_all is all or nothing under contention too: three callers claim
 * rotating subsets of three semaphores of size 1 while a fourth takes each
 * alone; occupancy of every semaphore never exceeds 1 and nobody hangs. */
struct rot {
	ration_sem_t *s[3];
	_Atomic int occ[3];
	_Atomic long over;
	_Atomic long bad;
	_Atomic long done;
	long rounds;
	_Atomic int id;
};

static void *
rot_main(void *arg)
{
	struct rot *r = arg;
	int id = atomic_fetch_add(&r->id, 1);
	for (long i = 0; i < r->rounds; i++) {
		ration_claim_t c[3];
		size_t k = 0;
		int which[3];
		if (id == 3) { /* one at a time */
			which[k] = (int)(i % 3);
			c[k] = (ration_claim_t){r->s[which[k]], 1};
			k++;
		} else { /* two or three, starting at a rotating place */
			size_t want = 2 + (size_t)((i + id) % 2);
			for (size_t j = 0; j < want; j++) {
				which[k] = (int)((id + i + (long)j) % 3);
				c[k] = (ration_claim_t){r->s[which[k]], 1};
				k++;
			}
		}
		ration_ctx_t *ctx;
		if (ration_ctx_with_timeout(NULL, TEST_WAIT_NS, &ctx) != 0) {
			atomic_fetch_add(&r->bad, 1);
			break;
		}
		int rc = ration_acquire_all(ctx, c, k);
		ration_ctx_unref(ctx);
		if (rc != 0) {
			atomic_fetch_add(&r->bad, 1);
			break;
		}
		for (size_t j = 0; j < k; j++)
			if (atomic_fetch_add(&r->occ[which[j]], 1) != 0)
				atomic_fetch_add(&r->over, 1);
		spin_ns(300);
		for (size_t j = 0; j < k; j++)
			atomic_fetch_sub(&r->occ[which[j]], 1);
		ration_release_all(c, k);
	}
	atomic_fetch_add(&r->done, 1);
	return NULL;
}

START_TEST(test_acquire_all_rotating_overlaps_stay_exclusive)
{
	struct rot r = {.rounds = stress_rounds(3000)};
	pthread_t t[4];
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ration_sem_new(1, NULL, &r.s[i]), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, rot_main, &r), 0);

	WAIT_FOR(atomic_load(&r.done) == 4);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);

	ck_assert_int_eq(atomic_load(&r.bad), 0);
	ck_assert_int_eq(atomic_load(&r.over), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(ration_sem_available(r.s[i]), 1);
		ck_assert_int_eq(ration_sem_free(r.s[i]), 0);
	}
}
END_TEST

/* ---- races (short; stress_sem.c runs them long) ------------------------- */

/* The test-only hook of lib/internal/ctx.h: called by a thread the moment
 * it learns that a ctx is done (the library is linked statically, so the
 * hidden symbol resolves). */
typedef void (*ctx_done_hook_fn)(const ration_ctx_t *ctx, int err);
extern _Atomic(ctx_done_hook_fn) ration__ctx_done_hook;

static struct {
	const ration_ctx_t *ctx; /* act only for this ctx */
	ration_sem_t *s;
	_Atomic bool armed;
	_Atomic int fired;
	int release_rc;
} grant_hook;

/* Runs in the waiter's thread after it saw its ctx end and before it takes
 * the semaphore lock to leave: hand it the unit right there. */
static void
grant_when_seen_done(const ration_ctx_t *ctx, int err)
{
	(void)err;
	if (ctx != grant_hook.ctx || !atomic_exchange(&grant_hook.armed, false))
		return;
	grant_hook.release_rc = ration_sem_release(grant_hook.s, 1);
	atomic_fetch_add(&grant_hook.fired, 1);
}

/* contract §7.3, deterministically: the grant lands exactly after the waiter
 * saw its ctx end (cancel, then deadline) and before it left the queue.
 * The outcome is settled under the lock (decision 001): the grant came
 * first, so acquire returns 0 and the caller owns the unit. A waiter that
 * left without re-checking would return the ctx error and the unit would
 * be lost (available stuck at 0). */
START_TEST(test_sem_grant_landing_as_waiter_leaves_is_kept)
{
	for (int variant = 0; variant < 2; variant++) {
		bool deadline = variant == 1;
		ration_sem_t *s;
		ration_ctx_t *ctx;
		struct bg w;
		ck_assert_int_eq(ration_sem_new(1, NULL, &s), 0);
		ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
		int64_t timeout = 200 * MS;
		for (;
		     ;) { /* a deadline variant retries if it expired too soon */
			if (deadline)
				ck_assert_int_eq(ration_ctx_with_timeout(
							 NULL, timeout, &ctx),
						 0);
			else
				ck_assert_int_eq(
					ration_ctx_with_cancel(NULL, &ctx), 0);
			grant_hook.ctx = ctx;
			grant_hook.s = s;
			atomic_store(&grant_hook.armed, false);
			atomic_store(&grant_hook.fired, 0);
			atomic_store(&ration__ctx_done_hook,
				     grant_when_seen_done);
			bg_acquire(&w, s, ctx, 1);
			WAIT_FOR(sem_waiters(s) == 1 || atomic_load(&w.done));
			if (sem_waiters(s) == 1 || !deadline)
				break;
			ck_assert_int_eq(bg_join(&w),
					 -ETIMEDOUT); /* never queued */
			ration_ctx_unref(ctx);
			timeout *= 4;
		}
		/* Queued: past acquire's locked check block, so the hook may
		 * take the semaphore lock. */
		atomic_store(&grant_hook.armed, true);
		if (!deadline)
			ration_ctx_cancel(ctx);

		int rc = bg_join(&w);
		atomic_store(&ration__ctx_done_hook, NULL);

		ck_assert_int_eq(atomic_load(&grant_hook.fired), 1);
		ck_assert_int_eq(grant_hook.release_rc, 0);
		ck_assert_msg(rc == 0,
			      "%s: grant then leave returned %d, not 0",
			      deadline ? "deadline" : "cancel", rc);
		ration_sem_stats_t st = stats_of(s);
		ck_assert_int_eq(st.available, 0); /* the waiter holds it */
		ck_assert_int_eq(st.waiters, 0);
		ck_assert_int_eq(st.cancels + st.timeouts, 0);
		ck_assert_int_eq(st.acquired, 2);
		ck_assert_int_eq(ration_sem_release(s, 1), 0);
		ck_assert_int_eq(ration_sem_available(s), 1);
		ration_ctx_unref(ctx);
		ck_assert_int_eq(ration_sem_free(s), 0);
	}
}
END_TEST

/* Internal (lib/internal/sem.h): the check ration_sem_free() makes. */
bool ration__sem_busy(ration_sem_t *s);

static struct {
	const ration_ctx_t *ctx;
	ration_sem_t *s;
	_Atomic bool armed;
	_Atomic int fired;
	bool busy_after_close;
} close_hook;

/* In the waiter's thread, after it saw its ctx end and before it left:
 * close the semaphore (its outcome becomes -EPIPE), give back the test's
 * unit (release works after close) and ask whether a free would now be
 * refused. It must be: the waiter is still inside acquire
 * and is about to take the semaphore's lock in leave(). */
static void
close_when_seen_done(const ration_ctx_t *ctx, int err)
{
	(void)err;
	if (ctx != close_hook.ctx || !atomic_exchange(&close_hook.armed, false))
		return;
	ration_sem_close(close_hook.s);
	(void)ration_sem_release(close_hook.s,
				 1); /* the test's unit: now idle */
	close_hook.busy_after_close = ration__sem_busy(close_hook.s);
	atomic_fetch_add(&close_hook.fired, 1);
}

/* contract §7.10 / §4: ration_sem_free() must not free a semaphore that a
 * caller of acquire is still inside. close (or a shrink's -E2BIG) settles
 * a waiter's outcome and unlinks it; if that waiter is at the same moment
 * leaving on its own cancel/deadline, it still locks s->mu in leave()
 * afterwards. With a busy check of only "no waiters, nothing held", a
 * "close; free" shutdown path freed the mutex under the leaving waiter
 * (use after free). The semaphore counts the callers still inside
 * acquire (s->inside) and refuses to free while any is. */
START_TEST(test_sem_free_refused_while_a_closed_out_waiter_is_still_inside)
{
	ration_sem_t *s;
	ration_ctx_t *ctx;
	struct bg w;
	ck_assert_int_eq(ration_sem_new(1, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	close_hook.ctx = ctx;
	close_hook.s = s;
	atomic_store(&close_hook.armed, false);
	atomic_store(&close_hook.fired, 0);
	atomic_store(&ration__ctx_done_hook, close_when_seen_done);
	bg_acquire(&w, s, ctx, 1);
	wait_waiters(s, 1);
	atomic_store(&close_hook.armed, true);

	ration_ctx_cancel(ctx);
	int rc = bg_join(&w);
	atomic_store(&ration__ctx_done_hook, NULL);

	ck_assert_int_eq(atomic_load(&close_hook.fired), 1);
	ck_assert_int_eq(rc, -EPIPE); /* close settled it first */
	ck_assert_msg(
		close_hook.busy_after_close,
		"free would have freed the semaphore while the closed-out "
		"waiter still had to lock it (lib/sem_queue.c leave())");
	ck_assert_int_eq(ration_sem_available(s), 1);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* contract §7.3: a grant racing with a cancel never loses weight. */
START_TEST(test_sem_grant_cancel_race_loses_no_weight)
{
	struct gc_race g;
	long rounds = stress_rounds(3000);

	gc_race_run(&g, rounds);

	gc_race_check(&g, rounds);
}
END_TEST

/* contract §7.6: two waiters, two concurrent releasers: no lost wake-up. */
START_TEST(test_sem_concurrent_releasers_lose_no_wakeup)
{
	struct lw_race l;
	long rounds = stress_rounds(20000);

	lw_race_run(&l, rounds);

	lw_race_check(&l, rounds);
}
END_TEST

/* contract §7.9: a cancel racing with the waiter parking still wakes it. */
START_TEST(test_sem_cancel_racing_with_park_wakes_waiter)
{
	struct cp_race c;
	long rounds = stress_rounds(3000);

	cp_race_run(&c, rounds);

	cp_race_check(&c, rounds);
}
END_TEST

/* Go x/sync TestWeighted: random weights under many threads never exceed
 * the size. */
START_TEST(test_sem_random_weights_never_exceed_size)
{
	struct mix m = {.size_max = 8, .ops = stress_rounds(3000)};

	bool finished = mix_run(&m, 6);

	ck_assert(finished);
	ck_assert_int_eq(atomic_load(&m.bad), 0);
	ck_assert_int_eq(atomic_load(&m.over), 0);
	ck_assert_int_le(atomic_load(&m.occ_max), 8);
	ck_assert_int_eq(atomic_load(&m.ok), 6 * m.ops);
	ck_assert_int_eq(atomic_load(&m.occ), 0);
	ration_sem_stats_t st = stats_of(m.s);
	ck_assert_int_eq(st.available, 8);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(st.acquired, (uint64_t)(6 * m.ops));
	ck_assert_int_le(st.max_in_use, 8);
	ck_assert_int_eq(ration_sem_free(m.s), 0);
}
END_TEST

/* consume records use past the size; available goes negative and plain
 * releases repay it, as after a shrink. */
START_TEST(test_sem_consume_passes_the_size_and_is_repaid_by_release)
{
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 4), 0);

	ck_assert_int_eq(ration_sem_consume(s, 15), 0); /* more than the size */

	ration_sem_stats_t st = stats_of(s);
	ck_assert_int_eq(st.available, -9);
	ck_assert_int_eq(st.in_use, 19);
	ck_assert_int_eq(st.max_in_use, 19);
	ck_assert_int_eq(st.consumed, 15);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	ck_assert_int_eq(ration_sem_release(s, 20), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_release(s, 15), 0);
	ck_assert_int_eq(ration_sem_available(s), 6);
	ck_assert_int_eq(ration_sem_try_acquire(s, 6), 0);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* While consumed units keep in_use high, no queued waiter is granted; once
 * releases bring it back in range, waiters are granted in arrival order. */
START_TEST(test_sem_consume_holds_back_waiters_in_fifo_order)
{
	ration_sem_t *s;
	struct bg a, b;
	ck_assert_int_eq(ration_sem_new(10, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 8), 0);
	bg_acquire(&a, s, NULL, 5);
	wait_waiters(s, 1);
	bg_acquire(&b, s, NULL, 2);
	wait_waiters(s, 2);

	ck_assert_int_eq(ration_sem_consume(s, 6), 0); /* in_use 14 */
	ck_assert_int_eq(ration_sem_release(s, 8),
			 0); /* in_use 6: a (5) does not fit */
	sleep_ns(20 * MS);   /* give a wrong grant time to show */
	ck_assert(!atomic_load(&a.done) && !atomic_load(&b.done));
	ck_assert_int_eq(ration_sem_available(s), 4);
	ck_assert_int_eq(ration_sem_release(s, 6), 0); /* in_use 0: a, then b */

	ck_assert_int_eq(bg_join(&a), 0);
	ck_assert_int_eq(bg_join(&b), 0);
	ck_assert_int_eq(ration_sem_available(s), 3);
	ck_assert_int_eq(ration_sem_release(s, 7), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

struct consumer {
	pthread_t t;
	ration_sem_t *s;
	long rounds;
	_Atomic long errors;
};

static void *
consumer_main(void *arg)
{
	struct consumer *c = arg;
	for (long i = 0; i < c->rounds; i++) {
		int64_t n = 1 + i % 7;
		if (ration_sem_consume(c->s, n) != 0 ||
		    ration_sem_release(c->s, n) != 0)
			atomic_fetch_add(&c->errors, 1);
	}
	return NULL;
}

/* Consumers racing with queued and fast-path acquirers lose no weight and
 * leave nobody stuck. */
START_TEST(test_sem_consume_races_with_acquirers_lose_no_weight)
{
	struct mix m = {.size_max = 8, .ops = stress_rounds(3000)};
	struct consumer c = {.rounds = stress_rounds(3000) * 4};
	atomic_init(&c.errors, 0);
	ck_assert_int_eq(ration_sem_new(8, NULL, &c.s), 0);
	m.s = c.s;
	ck_assert_int_eq(pthread_create(&c.t, NULL, consumer_main, &c), 0);

	bool finished = mix_run(&m, 4);

	pthread_join(c.t, NULL);
	ck_assert(finished);
	ck_assert_int_eq(atomic_load(&c.errors), 0);
	ck_assert_int_eq(atomic_load(&m.bad), 0);
	ck_assert_int_eq(atomic_load(&m.ok), 4 * m.ops);
	ration_sem_stats_t st = stats_of(c.s);
	ck_assert_int_eq(st.available, 8);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(ration_sem_free(c.s), 0);
}
END_TEST

/* A sanitizer's runtime slows each operation so much that a few yields no
 * longer cover a preempted holder: there the convoy test checks results
 * only, not how many acquires queued. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CONVOY_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CONVOY_CHECKED 0
#endif
#endif
#ifndef CONVOY_CHECKED
#define CONVOY_CHECKED 1
#endif

struct convoy {
	ration_sem_t *s;
	_Atomic bool stop;
	_Atomic long ops;
	_Atomic long bad;
};

static void *
convoy_main(void *arg)
{
	struct convoy *c = arg;
	long ops = 0;
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		if (acquire_bounded(c->s, 1) != 0 ||
		    ration_sem_release(c->s, 1) != 0)
			atomic_fetch_add(&c->bad, 1);
		ops++;
	}
	atomic_fetch_add(&c->ops, ops);
	return NULL;
}

/* Sixteen threads looping on a semaphore of size 2 for long enough to be
 * preempted, holders included (W2 with more threads than CPUs): a caller
 * that finds the units held while nobody is queued yields to the holder
 * instead of queueing, so no convoy forms in which operations queue and
 * sleep (docs/sem.md, "Convoys"). Returns how many acquires queued, per
 * thousand. */
static long
convoy_round(void)
{
	enum { T = 16 };
	struct convoy c = {0};
	pthread_t t[T];
	ck_assert_int_eq(ration_sem_new(2, NULL, &c.s), 0);

	for (int i = 0; i < T; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, convoy_main, &c),
				 0);
	sleep_ns(500 * MS); /* many time slices: holders get preempted */
	atomic_store(&c.stop, true);
	for (int i = 0; i < T; i++)
		pthread_join(t[i], NULL);

	ration_sem_stats_t st = stats_of(c.s);
	ck_assert_int_eq(atomic_load(&c.bad), 0);
	ck_assert_int_eq(st.acquired, (uint64_t)atomic_load(&c.ops));
	ck_assert_int_eq(ration_sem_free(c.s), 0);
	return (long)(st.contended * 1000 / (st.acquired ? st.acquired : 1));
}

/* Without the yield a round queued 13-130 of every thousand acquires
 * (this test failed 2 of 4 runs), with it fewer than one; but a loaded
 * machine (other tests running beside this one) can preempt enough
 * holders to push a single round to 200, so the best of three rounds is
 * what is checked. */
START_TEST(test_sem_threads_past_the_cpus_form_no_convoy)
{
	long best = 1000;
	for (int round = 0; round < 3 && best >= 10; round++) {
		long queued = convoy_round();
		if (queued < best)
			best = queued;
	}
	ck_assert_msg(!CONVOY_CHECKED || best < 10,
		      "%ld of every 1000 acquires queued in the best round",
		      best);
}
END_TEST

static Suite *
sem_suite(void)
{
	Suite *su = suite_create("sem");
	TCase *tc;

	tc = tcase_create("args");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_sem_new_rejects_bad_sizes);
	tcase_add_test(tc, test_sem_null_sem_is_rejected);
	tcase_add_test(tc, test_sem_acquire_checks_in_design_order);
	tcase_add_test(tc, test_sem_try_acquire_fails_while_anyone_is_queued);
	tcase_add_test(tc,
		       test_sem_bad_weights_and_over_release_change_nothing);
	tcase_add_test(tc, test_sem_limits_at_ration_sem_max);
	tcase_add_test(tc, test_sem_done_ctx_fails_even_when_units_are_free);
	tcase_add_test(
		tc,
		test_sem_deadlines_are_monotonic_and_past_ones_fail_at_once);
	suite_add_tcase(su, tc);

	tc = tcase_create("fifo");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_sem_cancelled_head_wakes_follower);
	tcase_add_test(tc, test_sem_timed_out_head_wakes_follower);
	tcase_add_test(tc, test_sem_grants_in_arrival_order);
	tcase_add_test(
		tc, test_sem_release_grants_exactly_the_head_waiters_that_fit);
	tcase_add_test(tc, test_sem_e2big_returns_at_once_and_blocks_nobody);
	tcase_add_test(tc, test_sem_large_request_is_not_starved);
	tcase_add_test(tc, test_sem_no_grant_to_a_waiter_that_left);
	tcase_add_test(tc, test_sem_cancelled_acquire_takes_nothing);
	tcase_add_test(tc, test_sem_cancelled_head_does_not_starve_others);
	suite_add_tcase(su, tc);

	tc = tcase_create("consume");
	tcase_set_timeout(tc, 60);
	tcase_add_test(
		tc, test_sem_consume_passes_the_size_and_is_repaid_by_release);
	tcase_add_test(tc, test_sem_consume_holds_back_waiters_in_fifo_order);
	tcase_add_test(tc,
		       test_sem_consume_races_with_acquirers_lose_no_weight);
	suite_add_tcase(su, tc);

	tc = tcase_create("convoy");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sem_threads_past_the_cpus_form_no_convoy);
	suite_add_tcase(su, tc);

	tc = tcase_create("resize");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_sem_resize_grow_wakes_waiters);
	tcase_add_test(tc, test_sem_shrink_into_deficit_is_repaid_exactly);
	tcase_add_test(tc, test_sem_resize_of_closed_sem_keeps_it_closed);
	suite_add_tcase(su, tc);

	tc = tcase_create("close");
	tcase_set_timeout(tc, 30);
	tcase_add_test(
		tc, test_sem_close_wakes_all_waiters_and_release_still_works);
	tcase_add_test(tc, test_sem_free_of_busy_sem_returns_ebusy);
	tcase_add_test(tc, test_sem_free_of_sem_in_deficit_returns_ebusy);
	suite_add_tcase(su, tc);

	tc = tcase_create("stats");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_sem_max_waiters_sheds_load);
	tcase_add_test(tc, test_sem_stats_count_every_outcome);
	tcase_add_test(tc, test_sem_stats_count_fast_acquires_of_every_thread);
	tcase_add_test(tc, test_sem_wait_histogram_buckets_granted_waits);
	tcase_add_test(tc, test_sem_stats_name_is_copied_and_truncated);
	suite_add_tcase(su, tc);

	tc = tcase_create("open");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_sem_open_shares_one_semaphore_by_name);
	tcase_add_test(tc, test_sem_open_tells_long_names_apart);
	tcase_add_test(tc, test_sem_open_busy_last_free_keeps_the_name);
	tcase_add_test(
		tc,
		test_sem_open_ignores_unnamed_semaphores_with_the_same_label);
	tcase_add_test(
		tc,
		test_sem_open_concurrent_opens_and_frees_keep_one_semaphore);
	suite_add_tcase(su, tc);

	tc = tcase_create("all");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_acquire_all_takes_all_or_none);
	tcase_add_test(tc, test_acquire_all_sums_a_semaphore_listed_twice);
	tcase_add_test(tc, test_acquire_all_more_than_inline_claims);
	tcase_add_test(tc, test_acquire_all_opposite_orders_do_not_deadlock);
	tcase_add_test(tc,
		       test_acquire_all_impossible_claim_fails_before_waiting);
	tcase_add_test(tc, test_acquire_all_rotating_overlaps_stay_exclusive);
	suite_add_tcase(su, tc);

	tc = tcase_create("race");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sem_grant_landing_as_waiter_leaves_is_kept);
	tcase_add_test(
		tc,
		test_sem_free_refused_while_a_closed_out_waiter_is_still_inside);
	tcase_add_test(tc, test_sem_grant_cancel_race_loses_no_weight);
	tcase_add_test(tc, test_sem_concurrent_releasers_lose_no_wakeup);
	tcase_add_test(tc, test_sem_cancel_racing_with_park_wakes_waiter);
	tcase_add_test(tc, test_sem_random_weights_never_exceed_size);
	suite_add_tcase(su, tc);

	return su;
}

int
main(void)
{
	int failed = run_suite(sem_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
