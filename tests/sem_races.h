/* sem_races.h - race drivers for the semaphore, shared by test_sem.c (a few
 * thousand rounds, in the unit suite) and stress_sem.c (the full counts of
 * contract §7, suite 'stress').
 *
 * Each driver runs its threads, joins them and fills a result struct that
 * the test then asserts on. Worker threads never call ck_assert (Check's
 * asserts belong to the test's own thread); they count what they saw. No
 * wait is unbounded: every spin and every acquire gives up after
 * TEST_WAIT_NS without progress and marks the run as stuck, so a lost
 * wake-up fails the test instead of hanging it.
 */
#ifndef RATION_TESTS_SEM_RACES_H
#define RATION_TESTS_SEM_RACES_H

#include <sched.h>
#include <stdint.h>

#include "helpers.h"

/* xorshift64*: cheap per-thread randomness, reproducible per seed. */
static inline uint64_t
race_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

/* Spin until *v >= want, yielding the CPU (there are more threads than
 * the 2 cores); false if TEST_WAIT_NS passes first. */
static inline bool
spin_ge(_Atomic long *v, long want)
{
	int64_t deadline = 0;
	for (unsigned i = 0;; i++) {
		if (atomic_load_explicit(v, memory_order_acquire) >= want)
			return true;
		if (i < 64)
			continue;
		if (deadline == 0)
			deadline = ration_now() + TEST_WAIT_NS;
		else if ((i & 63) == 0 && ration_now() >= deadline)
			return false;
		sched_yield();
	}
}

/* A blocking acquire that gives up (-ETIMEDOUT) after TEST_WAIT_NS. */
static inline int
acquire_bounded(ration_sem_t *s, int64_t n)
{
	return ration_sem_acquire_until(s, ration_deadline_after(TEST_WAIT_NS),
					n);
}

/* Busy-wait about @ns (no sleep: the point is to land at a chosen moment
 * of another thread's call). */
static inline void
spin_ns(int64_t ns)
{
	int64_t until = ration_now() + ns;
	while (ration_now() < until)
		;
}

/* Wait until *done == @n; fail only if *progress stays unchanged for
 * TEST_WAIT_NS (long runs may take longer than that in total). */
static inline bool
wait_done_with_progress(_Atomic int *done, int n, _Atomic long *progress)
{
	long last = atomic_load(progress);
	int64_t stall_deadline = ration_now() + TEST_WAIT_NS;
	while (atomic_load(done) < n) {
		long now_p = atomic_load(progress);
		if (now_p != last) {
			last = now_p;
			stall_deadline = ration_now() + TEST_WAIT_NS;
		} else if (ration_now() >= stall_deadline) {
			return false;
		}
		sleep_ns(1000000);
	}
	return true;
}

/* ---- contract §7.3: a grant racing with a cancel -------------------------
 * Size 1, the test's thread holds the unit. Each round one thread waits
 * for it with a fresh ctx while the test's thread releases it and another
 * thread cancels the ctx at (nearly) the same moment. The waiter either
 * gets the unit (and gives it back) or -ECANCELED; either way, after the
 * round the unit is free again: weight is never lost or duplicated. */

struct gc_race {
	ration_sem_t *s;
	long rounds;
	ration_ctx_t *ctx;         /* this round's; published by round */
	_Atomic long round;        /* test -> waiter: round r begins */
	_Atomic long cancel_round; /* test -> canceller: cancel round r */
	_Atomic long waiter_done;
	_Atomic long cancel_done;
	_Atomic long granted;   /* rounds the waiter got the unit */
	_Atomic long cancelled; /* rounds it got -ECANCELED */
	_Atomic long bad;       /* anything else */
	_Atomic long lost;      /* rounds that ended with available != 1 */
	_Atomic bool stuck;
};

static inline void *
gc_waiter_main(void *arg)
{
	struct gc_race *g = arg;
	for (long r = 1; r <= g->rounds; r++) {
		if (!spin_ge(&g->round, r)) {
			atomic_store(&g->stuck, true);
			break;
		}
		int rc = ration_sem_acquire(g->s, g->ctx, 1);
		if (rc == 0) {
			atomic_fetch_add(&g->granted, 1);
			if (ration_sem_release(g->s, 1) != 0)
				atomic_fetch_add(&g->bad, 1);
		} else if (rc == -ECANCELED) {
			atomic_fetch_add(&g->cancelled, 1);
		} else {
			atomic_fetch_add(&g->bad, 1);
		}
		atomic_store_explicit(&g->waiter_done, r, memory_order_release);
	}
	return NULL;
}

static inline void *
gc_canceller_main(void *arg)
{
	struct gc_race *g = arg;
	uint64_t rnd = 0x9e3779b97f4a7c15u;
	for (long r = 1; r <= g->rounds; r++) {
		if (!spin_ge(&g->cancel_round, r)) {
			atomic_store(&g->stuck, true);
			break;
		}
		spin_ns((int64_t)(race_rand(&rnd) % 3000));
		ration_ctx_cancel(g->ctx);
		atomic_store_explicit(&g->cancel_done, r, memory_order_release);
	}
	return NULL;
}

/* Runs the race; the caller asserts on @g afterwards. */
static inline void
gc_race_run(struct gc_race *g, long rounds)
{
	pthread_t tw, tc;
	uint64_t rnd = 12345;

	*g = (struct gc_race){.rounds = rounds};
	ck_assert_int_eq(ration_sem_new(1, NULL, &g->s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(g->s, 1), 0);
	ck_assert_int_eq(pthread_create(&tw, NULL, gc_waiter_main, g), 0);
	ck_assert_int_eq(pthread_create(&tc, NULL, gc_canceller_main, g), 0);

	for (long r = 1; r <= rounds && !atomic_load(&g->stuck); r++) {
		ration_ctx_t *ctx;
		if (ration_ctx_with_cancel(NULL, &ctx) != 0) {
			atomic_fetch_add(&g->bad, 1);
			break;
		}
		g->ctx = ctx; /* published by the release store below */
		atomic_store_explicit(&g->round, r, memory_order_release);
		/* Mostly let the waiter queue first (the interesting race);
		 * sometimes not, so it may also arrive after either event. */
		if (r % 4 != 0) {
			int64_t until = ration_now() + TEST_WAIT_NS;
			while (sem_waiters(g->s) != 1 && ration_now() < until)
				sched_yield();
		}
		atomic_store_explicit(&g->cancel_round, r,
				      memory_order_release);
		/* Sweep the release over 0..60 us after the cancel is let go:
		 * a woken waiter spins for a grant before it gives up, so the
		 * narrow window (grant after it decided to leave, before it
		 * took the lock) sits some tens of us after the cancel. */
		spin_ns(r % 2 ? (int64_t)(race_rand(&rnd) % 3000)
			      : (r * 7919) % 60000);
		if (ration_sem_release(g->s, 1) != 0)
			atomic_fetch_add(&g->bad, 1);
		if (!spin_ge(&g->waiter_done, r) ||
		    !spin_ge(&g->cancel_done, r)) {
			atomic_store(&g->stuck, true);
			break; /* ctx leaks: the run has failed anyway */
		}
		if (ration_sem_available(g->s) != 1)
			atomic_fetch_add(&g->lost, 1);
		if (ration_sem_try_acquire(g->s, 1) != 0)
			atomic_fetch_add(&g->bad, 1);
		ration_ctx_unref(ctx);
	}
	if (atomic_load(&g->stuck)) {
		/* Unblock whoever is left, so the joins below return. */
		ration_sem_close(g->s);
		atomic_store(&g->round, rounds + 1);
		atomic_store(&g->cancel_round, rounds + 1);
	}
	pthread_join(tw, NULL);
	pthread_join(tc, NULL);
}

/* What a finished gc_race_run() must leave: no weight lost, every round
 * granted or cancelled, nobody queued; frees the semaphore. */
static inline void
gc_race_check(struct gc_race *g, long rounds)
{
	ck_assert(!atomic_load(&g->stuck));
	ck_assert_int_eq(atomic_load(&g->bad), 0);
	ck_assert_int_eq(atomic_load(&g->lost), 0);
	ck_assert_int_eq(atomic_load(&g->granted) + atomic_load(&g->cancelled),
			 rounds);
	ck_assert_int_eq(ration_sem_release(g->s, 1), 0);
	ck_assert_int_eq(ration_sem_available(g->s), 1);
	ck_assert_int_eq(sem_waiters(g->s), 0);
	ck_assert_int_eq(ration_sem_free(g->s), 0);
}

/* ---- contract §7.6: lost wake-up ------------------------------------------
 * Two units circulate between two semaphores through four threads: two
 * waiters each acquire 1 of s (the semaphore under test, both units held
 * at the start) and pass it on by releasing 1 to t; two releasers each
 * acquire 1 of t (both units free at the start) and release 1 to s. So
 * both waiters are often queued on s while both releasers release to it
 * at once - and the same happens on t the other way round. Every thread
 * blocks on a ration semaphore, never on a spin, so rounds are as fast as
 * the hand-offs. A wake-up lost anywhere leaves a thread asleep; its
 * bounded acquire then fails and the run is marked stuck. */

struct lw_race {
	ration_sem_t *s;
	ration_sem_t *t;
	long rounds;          /* acquires of s per waiter */
	_Atomic long granted; /* acquires of s, both waiters */
	_Atomic long passed;  /* acquires of t, both releasers */
	_Atomic long bad;
	_Atomic bool stuck;
	_Atomic int done;
	_Atomic int id;
};

static inline void *
lw_waiter_main(void *arg)
{
	struct lw_race *l = arg;
	int id = atomic_fetch_add(&l->id, 1);
	for (long r = 0; r < l->rounds && !atomic_load(&l->stuck); r++) {
		int rc;
		if (id == 0) {
			rc = acquire_bounded(l->s, 1);
		} else {
			/* the other waiter sleeps through a ctx (watch path) */
			ration_ctx_t *ctx;
			if (ration_ctx_with_timeout(NULL, TEST_WAIT_NS, &ctx) !=
			    0) {
				atomic_fetch_add(&l->bad, 1);
				break;
			}
			rc = ration_sem_acquire(l->s, ctx, 1);
			ration_ctx_unref(ctx);
		}
		if (rc != 0) {
			if (rc == -ETIMEDOUT)
				atomic_store(&l->stuck, true);
			else
				atomic_fetch_add(&l->bad, 1);
			break;
		}
		atomic_fetch_add(&l->granted, 1);
		if (ration_sem_release(l->t, 1) != 0) {
			atomic_fetch_add(&l->bad, 1);
			break;
		}
	}
	atomic_fetch_add(&l->done, 1);
	return NULL;
}

static inline void *
lw_releaser_main(void *arg)
{
	struct lw_race *l = arg;
	for (long r = 0; r < l->rounds && !atomic_load(&l->stuck); r++) {
		int rc = acquire_bounded(l->t, 1);
		if (rc != 0) {
			if (rc == -ETIMEDOUT)
				atomic_store(&l->stuck, true);
			else
				atomic_fetch_add(&l->bad, 1);
			break;
		}
		atomic_fetch_add(&l->passed, 1);
		if (ration_sem_release(l->s, 1) != 0) {
			atomic_fetch_add(&l->bad, 1);
			break;
		}
	}
	atomic_fetch_add(&l->done, 1);
	return NULL;
}

static inline void
lw_race_run(struct lw_race *l, long rounds)
{
	pthread_t th[4];

	*l = (struct lw_race){.rounds = rounds};
	ck_assert_int_eq(ration_sem_new(2, NULL, &l->s), 0);
	ck_assert_int_eq(ration_sem_new(2, NULL, &l->t), 0);
	ck_assert_int_eq(ration_sem_try_acquire(l->s, 2), 0);
	for (int i = 0; i < 4; i++) {
		void *(*fn)(void *) = i < 2 ? lw_waiter_main : lw_releaser_main;
		ck_assert_int_eq(pthread_create(&th[i], NULL, fn, l), 0);
	}

	if (!wait_done_with_progress(&l->done, 4, &l->granted)) {
		atomic_store(&l->stuck, true);
		ration_sem_close(l->s); /* so that the joins return */
		ration_sem_close(l->t);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
}

/* What a finished lw_race_run() must leave: every waiter woken each
 * round, the units where they belong; frees both semaphores. */
static inline void
lw_race_check(struct lw_race *l, long rounds)
{
	ck_assert(!atomic_load(&l->stuck));
	ck_assert_int_eq(atomic_load(&l->bad), 0);
	ck_assert_int_eq(atomic_load(&l->granted), 2 * rounds);
	ck_assert_int_eq(atomic_load(&l->passed), 2 * rounds);
	ck_assert_int_eq(ration_sem_available(l->s), 0);
	ck_assert_int_eq(ration_sem_available(l->t), 2);
	ck_assert_int_eq(sem_waiters(l->s) + sem_waiters(l->t), 0);
	ck_assert_int_eq(ration_sem_release(l->s, 2), 0);
	ck_assert_int_eq(ration_sem_free(l->s), 0);
	ck_assert_int_eq(ration_sem_free(l->t), 0);
}

/* ---- contract §7.9: a cancel racing with the waiter going to sleep --------
 * Size 1, held by the test's thread for the whole run. Each round a waiter
 * acquires with a fresh ctx; the test's thread cancels it after a delay
 * that sweeps 0..150 us, so the cancel lands before the waiter queues,
 * while it spins as head, as it parks, and while it sleeps. Every third
 * round races a short deadline instead. The waiter must always come back
 * with the ctx's error, and nothing may be left queued. */

struct cp_race {
	ration_sem_t *s;
	long rounds;
	ration_ctx_t *ctx;
	_Atomic long round;
	_Atomic long done;
	_Atomic long cancelled;
	_Atomic long timedout;
	_Atomic long bad;
	_Atomic long leftover; /* rounds that ended with waiters != 0 */
	_Atomic bool stuck;
};

static inline void *
cp_waiter_main(void *arg)
{
	struct cp_race *c = arg;
	for (long r = 1; r <= c->rounds; r++) {
		if (!spin_ge(&c->round, r)) {
			atomic_store(&c->stuck, true);
			break;
		}
		int rc = ration_sem_acquire(c->s, c->ctx, 1);
		if (rc == -ECANCELED)
			atomic_fetch_add(&c->cancelled, 1);
		else if (rc == -ETIMEDOUT)
			atomic_fetch_add(&c->timedout, 1);
		else
			atomic_fetch_add(&c->bad, 1);
		atomic_store_explicit(&c->done, r, memory_order_release);
	}
	return NULL;
}

static inline void
cp_race_run(struct cp_race *c, long rounds)
{
	pthread_t tw;

	*c = (struct cp_race){.rounds = rounds};
	ck_assert_int_eq(ration_sem_new(1, NULL, &c->s), 0);
	ck_assert_int_eq(ration_sem_try_acquire(c->s, 1), 0);
	ck_assert_int_eq(pthread_create(&tw, NULL, cp_waiter_main, c), 0);

	for (long r = 1; r <= rounds && !atomic_load(&c->stuck); r++) {
		ration_ctx_t *ctx;
		bool deadline = r % 3 == 0;
		int64_t delay = (r * 7919) % 150000;
		int rc = deadline ? ration_ctx_with_timeout(NULL, delay, &ctx)
				  : ration_ctx_with_cancel(NULL, &ctx);
		if (rc != 0) {
			atomic_fetch_add(&c->bad, 1);
			break;
		}
		c->ctx = ctx; /* published by the release store below */
		atomic_store_explicit(&c->round, r, memory_order_release);
		if (!deadline) {
			spin_ns(delay);
			ration_ctx_cancel(ctx);
		}
		if (!spin_ge(&c->done, r)) {
			atomic_store(&c->stuck, true);
			break;
		}
		if (sem_waiters(c->s) != 0)
			atomic_fetch_add(&c->leftover, 1);
		ration_ctx_unref(ctx);
	}
	if (atomic_load(&c->stuck)) {
		ration_sem_close(c->s);
		atomic_store(&c->round, rounds + 1);
	}
	pthread_join(tw, NULL);
}

/* What a finished cp_race_run() must leave: every wait ended by its
 * cancel or deadline, nothing left over; frees the semaphore. */
static inline void
cp_race_check(struct cp_race *c, long rounds)
{
	ck_assert(!atomic_load(&c->stuck));
	ck_assert_int_eq(atomic_load(&c->bad), 0);
	ck_assert_int_eq(atomic_load(&c->leftover), 0);
	ck_assert_int_eq(atomic_load(&c->cancelled) + atomic_load(&c->timedout),
			 rounds);
	ck_assert_int_eq(atomic_load(&c->timedout), rounds / 3);
	ck_assert_int_eq(ration_sem_available(c->s), 0);
	ck_assert_int_eq(ration_sem_release(c->s, 1), 0);
	ck_assert_int_eq(ration_sem_free(c->s), 0);
}

/* ---- a random mix (Go x/sync TestWeighted, and the stress mix) ----------
 * Threads acquire random weights (with random ctx timeouts, try, and
 * _until), hold them briefly, and release; occasionally one resizes. Each
 * holder adds its weight to an occupancy counter after the acquire and
 * takes it off before the release, so the counter never exceeds what the
 * semaphore really has out: it must stay <= the largest size used. */

struct mix {
	ration_sem_t *s;
	int64_t size_max; /* sizes stay in [size_max / 2, size_max] */
	long ops;         /* per thread */
	bool timeouts;    /* false: every acquire must succeed */
	bool resize;
	_Atomic int64_t occ;
	_Atomic int64_t occ_max;
	_Atomic long over; /* times occ exceeded size_max */
	_Atomic long bad;
	_Atomic long ok;
	_Atomic long fails; /* -ETIMEDOUT, -EAGAIN, -E2BIG: expected here */
	_Atomic long progress;
	_Atomic int done;
	_Atomic int seed;
};

static inline void
mix_hold(struct mix *m, int64_t n, uint64_t *rnd)
{
	int64_t o = atomic_fetch_add(&m->occ, n) + n;
	if (o > m->size_max)
		atomic_fetch_add(&m->over, 1);
	int64_t mx = atomic_load(&m->occ_max);
	while (o > mx && !atomic_compare_exchange_weak(&m->occ_max, &mx, o))
		;
	if (race_rand(rnd) % 4 == 0)
		sched_yield();
	else
		spin_ns((int64_t)(race_rand(rnd) % 2000));
	atomic_fetch_sub(&m->occ, n);
	if (ration_sem_release(m->s, n) != 0)
		atomic_fetch_add(&m->bad, 1);
	atomic_fetch_add(&m->ok, 1);
}

static inline void *
mix_main(void *arg)
{
	struct mix *m = arg;
	uint64_t seed = (uint64_t)atomic_fetch_add(&m->seed, 1) + 1;
	uint64_t rnd = 0x2545f4914f6cdd1du * seed;
	int64_t half = m->size_max / 2;

	for (long i = 0; i < m->ops; i++) {
		uint64_t pick = race_rand(&rnd) % 100;
		/* mostly weights that fit any size used; some up to size_max */
		uint64_t span = (uint64_t)(pick % 10 == 0 ? m->size_max : half);
		int64_t n = 1 + (int64_t)(race_rand(&rnd) % span);
		int rc;
		if (!m->timeouts) {
			rc = acquire_bounded(m->s, n);
		} else if (pick < 45) {
			ration_ctx_t *ctx;
			int64_t t = (int64_t)(race_rand(&rnd) % 2000000);
			if (ration_ctx_with_timeout(NULL, t, &ctx) != 0) {
				atomic_fetch_add(&m->bad, 1);
				continue;
			}
			rc = ration_sem_acquire(m->s, ctx, n);
			ration_ctx_unref(ctx);
		} else if (pick < 70) {
			rc = ration_sem_try_acquire(m->s, n);
		} else if (pick < 97 || !m->resize) {
			int64_t t = (int64_t)(race_rand(&rnd) % 1000000);
			rc = ration_sem_acquire_until(
				m->s, ration_deadline_after(t), n);
		} else {
			uint64_t r = race_rand(&rnd) % (uint64_t)(half + 1);
			int64_t size = half + (int64_t)r;
			if (ration_sem_resize(m->s, size) != 0)
				atomic_fetch_add(&m->bad, 1);
			continue;
		}
		if (rc == 0)
			mix_hold(m, n, &rnd);
		else if (m->timeouts &&
			 (rc == -ETIMEDOUT || rc == -EAGAIN || rc == -E2BIG))
			atomic_fetch_add(&m->fails, 1);
		else
			atomic_fetch_add(&m->bad, 1);
		atomic_fetch_add_explicit(&m->progress, 1,
					  memory_order_relaxed);
	}
	atomic_fetch_add(&m->done, 1);
	return NULL;
}

/* @nthreads <= 16. The caller asserts on @m, then frees m->s. */
static inline bool
mix_run(struct mix *m, int nthreads)
{
	pthread_t t[16];

	ck_assert_int_le(nthreads, 16);
	if (m->s == NULL) /* else the caller's, of size size_max */
		ck_assert_int_eq(ration_sem_new(m->size_max, NULL, &m->s), 0);
	for (int i = 0; i < nthreads; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, mix_main, m), 0);
	bool finished =
		wait_done_with_progress(&m->done, nthreads, &m->progress);
	if (!finished)
		ration_sem_close(m->s); /* so that the joins return */
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	return finished;
}

#endif
