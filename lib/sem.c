/* sem.c - weighted semaphore, strict FIFO, ctx-aware acquire.
 *
 * State: one atomic word = available * 2 + SLOW (internal/sem.h).
 *  - Fast path (lock-free): while SLOW is clear nobody is queued, so an
 *    acquire may CAS units out of the word without passing anyone, and a
 *    release may CAS them back without anyone to hand them to.
 *  - Slow path: s->mu guards the FIFO queue of waiters. While the queue is
 *    non-empty SLOW is set, so every change of the word happens under mu:
 *    units released go to the head waiters directly (a hand-off: the
 *    granter takes the units out of the word and marks the waiter
 *    GRANTED), never back into a pool that a newcomer could barge into.
 *
 * Locking: s->mu, then a ctx's mu (ration__ctx_watch is called without
 * s->mu; the two are never nested the other way). No user code runs here.
 * Wake-ups are collected under mu and issued after it is dropped.
 *
 * Waiters live on the waiting thread's stack and sleep on their thread's
 * parker. A waiter's outcome (state) is decided exactly once, under mu:
 * by a granter (0), by close (-EPIPE), by a shrink (-E2BIG), or by the
 * waiter itself leaving on cancel/deadline (it re-checks state under mu
 * first, so a grant that came in first is kept: weight is never lost, and
 * never granted to a waiter that has left). See docs/sem.md.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/atomic_max.h"
#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/cpu.h"
#include "internal/ctx.h"
#include "internal/hist.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/sem.h"
#include "internal/tslot.h"
#include "ration/sem.h"

#define WAITING 1 /* waiter state until its outcome (0 or -errno) is set */

/* The longest a head waiter spins for its grant before parking: a
 * hand-off to a running thread costs a cache-line transfer, waking a
 * sleeping one costs microseconds on a VM (contract §12). Why 20 us, and
 * not a yield: the W2 measurements in docs/performance.md ("Constants in
 * the code"). The spin actually used adapts between SPIN_MIN_NS and this
 * (s->spin_ns): with more threads than CPUs the holder the spinner waits
 * for is often not running, and every spin then burns the CPU it needs
 * (docs/sem.md, "Spinning"). */
#define HEAD_SPIN_NS 20000
#define SPIN_MIN_NS  1000

struct waiter {
	struct ration__list node; /* s->mu */
	int64_t n;
	int64_t t0; /* when queued, for the wait histogram */
	struct ration__parker *pk;
	_Atomic int state; /* WAITING until set once, under s->mu */
};

static inline int64_t
avail_of(int64_t word)
{
	return word >> 1; /* arithmetic shift: available may be negative */
}

static inline int64_t
units(int64_t n)
{
	return n * 2; /* n <= RATION_SEM_MAX, so no overflow */
}

static void
note_in_use(ration_sem_t *s, int64_t avail_after)
{
	ration__atomic_max(
		&s->max_in_use,
		atomic_load_explicit(&s->size, memory_order_relaxed) -
			avail_after);
}

/* count_fast() for a thread whose slot is not known yet or that has none:
 * out of line, so that the fast path keeps no registers for it. */
static RATION_NOINLINE int
count_fast_unslotted(ration_sem_t *s)
{
	unsigned slot = ration__tslot();
	if (slot < RATION_TSLOTS)
		ration__tslot_inc(&s->acquired_by_slot[slot]);
	else
		atomic_fetch_add_explicit(&s->acquired_fast, 1,
					  memory_order_relaxed);
	return 0;
}

/* Count a fast-path acquire: in the calling thread's slot, without a
 * locked instruction, if it has one (internal/tslot.h). Returns 0, so
 * that ration_sem_acquire() can end in it. */
static inline int
count_fast(ration_sem_t *s)
{
	unsigned slot = ration__tslot_tl - 1; /* 0: not asked yet, wraps */
	if (RATION_LIKELY(slot < RATION_TSLOTS)) {
		ration__tslot_inc(&s->acquired_by_slot[slot]);
		return 0;
	}
	return count_fast_unslotted(s);
}

/* One try of the fast path, lock-free, from *@w, the word as last loaded:
 * take @n units only while nobody is queued (SLOW clear), so a newcomer
 * never passes a waiter. Returns 1 with the units taken (not yet counted),
 * 0 if SLOW is set or too few are free, -1 if the CAS lost (*@w is then
 * the word the CAS found). */
static inline int
take_once(ration_sem_t *s, int64_t n, int64_t *w)
{
	if ((*w & SEM_SLOW) || avail_of(*w) < n)
		return 0;
	/* acquire: the previous holder's writes, published by the release
	 * CAS/RMW that gave the units back, become visible. */
	if (!atomic_compare_exchange_weak_explicit(&s->word, w, *w - units(n),
						   memory_order_acquire,
						   memory_order_relaxed))
		return -1;
	note_in_use(s, avail_of(*w) - n);
	return 1;
}

/* After a CAS of take_once() lost, from @seen to @w, the word it found:
 * another taker won if the units went down. Stand back then, so that it
 * keeps the line for a few operations. Lost to a release: retry at once,
 * units came back. Either way the failed CAS loaded the word, so no
 * reload (a load would fetch the line shared, then the CAS once more to
 * own it). */
static inline void
after_lost_cas(int64_t seen, int64_t w)
{
	if (w < seen)
		ration__backoff();
}

/* The fast path, tried until SLOW is set or too few units are free, from
 * @w, the word as last loaded. */
static inline bool
take_fast_from(ration_sem_t *s, int64_t n, int64_t w)
{
	for (;;) {
		int64_t seen = w;
		int r = take_once(s, n, &w);
		if (r >= 0) {
			if (r > 0)
				(void)count_fast(s);
			return r > 0;
		}
		after_lost_cas(seen, w);
	}
}

static inline bool
take_fast(ration_sem_t *s, int64_t n)
{
	return take_fast_from(
		s, n, atomic_load_explicit(&s->word, memory_order_relaxed));
}

bool
ration__sem_take(ration_sem_t *s, int64_t n)
{
	return take_fast(s, n);
}

/* Take @n units with the queue empty; s->mu held. SLOW may be clear, so
 * fast-path callers race with us: CAS. */
static bool
take_locked(ration_sem_t *s, int64_t n)
{
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	while (avail_of(w) >= n) {
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w - units(n), memory_order_acquire,
			    memory_order_relaxed)) {
			s->acquired_slow++;
			note_in_use(s, avail_of(w) - n);
			return true;
		}
	}
	return false;
}

/* Unlink @w and set its outcome; s->mu held. The parker pointer is read
 * before the state store: once the state is set the waiter may return and
 * its stack frame be gone. */
static void
finish_waiter(ration_sem_t *s, struct waiter *w, int outcome,
	      struct ration__wake_list *wl)
{
	list_remove(&w->node);
	s->nwaiters--;
	s->waiting_weight -= w->n;
	struct ration__parker *pk = w->pk;
	/* release: pairs with the acquire load of state by the waiter, which
	 * then sees the units (and the releaser's writes) as its own. */
	atomic_store_explicit(&w->state, outcome, memory_order_release);
	wake_list_add(wl, pk);
}

/* Hand units to the head waiters, in order, while the head fits; then
 * clear SLOW if the queue emptied. s->mu held. */
static void
grant_locked(ration_sem_t *s, struct ration__wake_list *wl)
{
	int64_t now = 0;

	while (!list_empty(&s->queue)) {
		struct waiter *w = RATION_CONTAINER_OF(list_first(&s->queue),
						       struct waiter, node);
		/* SLOW is set (the queue is not empty): only mu holders change
		 * the word. acquire: see the releasers' writes, to pass them on. */
		int64_t word =
			atomic_load_explicit(&s->word, memory_order_acquire);
		if (avail_of(word) < w->n)
			break;
		atomic_fetch_sub_explicit(&s->word, units(w->n),
					  memory_order_relaxed);
		note_in_use(s, avail_of(word) - w->n);
		s->acquired_slow++;
		ration__hist_note_wait(&s->wait_ns_total, s->wait_hist, &now,
				       w->t0);
		finish_waiter(s, w, 0, wl);
	}
	if (list_empty(&s->queue)) {
		if (!atomic_load_explicit(&s->closed, memory_order_relaxed))
			atomic_fetch_and_explicit(&s->word, ~SEM_SLOW,
						  memory_order_release);
	} else if (now != 0 && ration__may_spin() &&
		   atomic_load_explicit(&s->spin_ns, memory_order_relaxed) >=
			   HEAD_SPIN_NS / 2) {
		/* Pre-wake the new head: it wakes and spins while the units
		 * just granted are in use, so its own grant is a hand-off to
		 * a running thread instead of a futex wake on the critical
		 * path (docs/performance.md, "Constants in the code"). Only while
		 * spins win (spin_ns near its top), and not with one CPU:
		 * there the woken head could only find no grant and park
		 * again, two context switches for nothing. */
		struct waiter *head = RATION_CONTAINER_OF(list_first(&s->queue),
							  struct waiter, node);
		wake_list_add(wl, head->pk);
	}
}

/* A waiter gives up with @err; s->mu not held. Returns the outcome: @err,
 * or whatever was decided for it before it got the lock (a grant wins). */
static int
leave(ration_sem_t *s, struct waiter *w, int err)
{
	struct ration__wake_list wl;

	wake_list_init(&wl);
	pthread_mutex_lock(&s->mu);
	int st = atomic_load_explicit(&w->state, memory_order_acquire);
	if (st == WAITING) {
		if (err == -ETIMEDOUT)
			s->timeouts++;
		else
			s->cancels++;
		list_remove(&w->node);
		s->nwaiters--;
		s->waiting_weight -= w->n;
		/* If it was the head, followers may fit now (Go #37852). */
		grant_locked(s, &wl);
		st = err;
	}
	pthread_mutex_unlock(&s->mu);
	wake_list_wake(&wl);
	return st;
}

/* Spin for @w's outcome for up to s->spin_ns, if fewer than all but one
 * usable CPU already have a spinner on @s: the holders that will release
 * need a CPU. Then adapt s->spin_ns: double it after a win, halve it
 * after a spin that ran out (as glibc's adaptive mutex tunes its count). */
static int
spin_for_grant(ration_sem_t *s, struct waiter *w)
{
	int st = atomic_load_explicit(&w->state, memory_order_acquire);
	if (st != WAITING || !ration__may_spin())
		return st;
	if (atomic_fetch_add_explicit(&s->spinners, 1, memory_order_relaxed) +
		    1 >=
	    ration__ncpu()) {
		atomic_fetch_sub_explicit(&s->spinners, 1,
					  memory_order_relaxed);
		return st;
	}
	int32_t budget =
		atomic_load_explicit(&s->spin_ns, memory_order_relaxed);
	int64_t until = clock_mono_ns() + budget;
	do {
		for (int i = 0; i < 64 && st == WAITING; i++) {
			ration__cpu_relax();
			st = atomic_load_explicit(&w->state,
						  memory_order_acquire);
		}
	} while (st == WAITING && clock_mono_ns() < until);
	int32_t next = st != WAITING ? budget * 2 : budget / 2;
	next = next > HEAD_SPIN_NS  ? HEAD_SPIN_NS
	       : next < SPIN_MIN_NS ? SPIN_MIN_NS
				    : next;
	atomic_store_explicit(&s->spin_ns, next, memory_order_relaxed);
	atomic_fetch_sub_explicit(&s->spinners, 1, memory_order_relaxed);
	return st;
}

/* How many times a caller that found no units, with nobody queued, gives
 * up its CPU before it queues (yield_for_units()). */
#define PREQUEUE_YIELDS 4

/* Before queueing, while nobody is queued: the units are held by threads
 * that have not released them yet, and with more threads than CPUs those
 * are often runnable but not running. Queueing now starts a convoy: every
 * release must then hand its units to a sleeping waiter, and the releaser,
 * which may not pass the queue, sleeps in turn, so each operation costs a
 * wake-up and a context switch for as long as any thread keeps coming
 * back (docs/sem.md, "Convoys"). Giving the CPU away instead lets a holder
 * run and release, and the units are then taken on the fast path. The
 * caller is no waiter yet, so nobody is passed; with anyone queued it
 * queues at once. Returns true with the units taken. */
static bool
yield_for_units(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns,
		int64_t n)
{
	for (int i = 0; i < PREQUEUE_YIELDS; i++) {
		int64_t w =
			atomic_load_explicit(&s->word, memory_order_relaxed);
		if ((w & SEM_SLOW) ||
		    n > atomic_load_explicit(&s->size, memory_order_relaxed) ||
		    ration__wait_err(ctx, deadline_ns) != 0)
			return false; /* queue, or fail, in acquire_slow() */
		sched_yield();
		if (take_fast(s, n))
			return true;
	}
	return false;
}

/* Slow path for acquire: check in contract order, then queue and wait. */
static RATION_NOINLINE int
acquire_slow(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n)
{
	struct ration__wake_list wl;
	struct waiter w;
	int err;

	pthread_mutex_lock(&s->mu);
	if (atomic_load_explicit(&s->closed, memory_order_relaxed)) {
		err = -EPIPE;
		goto unlock;
	}
	if (n > atomic_load_explicit(&s->size, memory_order_relaxed)) {
		err = -E2BIG;
		goto unlock;
	}
	if ((err = ration__wait_err(ctx, deadline_ns)) != 0)
		goto unlock;
	if (list_empty(&s->queue) && take_locked(s, n))
		goto unlock;
	if (s->max_waiters != 0 && (size_t)s->nwaiters >= s->max_waiters) {
		s->rejected++;
		err = -EBUSY;
		goto unlock;
	}

	w.n = n;
	w.t0 = clock_mono_ns();
	w.pk = ration__parker_self();
	atomic_init(&w.state, WAITING);
	list_push_back(&s->queue, &w.node);
	bool head = list_first(&s->queue) == &w.node;
	s->contended++;
	atomic_fetch_add_explicit(&s->inside, 1, memory_order_relaxed);
	s->waiting_weight += n;
	if (++s->nwaiters > s->max_waiters_seen)
		s->max_waiters_seen = s->nwaiters;
	atomic_fetch_or_explicit(&s->word, SEM_SLOW, memory_order_relaxed);
	/* A fast-path release may have returned units between take_locked()
	 * and SLOW going up; nobody else would hand them to us. */
	wake_list_init(&wl);
	grant_locked(s, &wl);
	pthread_mutex_unlock(&s->mu);
	wake_list_wake(&wl);

	int st = head ? spin_for_grant(s, &w) : WAITING;
	if (st == WAITING) {
		struct ration__ctx_watch cw = {.pk = w.pk};
		err = ration__ctx_watch(ctx, &cw);
		while (err == 0 &&
		       (st = atomic_load_explicit(
				&w.state, memory_order_acquire)) == WAITING) {
			if ((err = ration__wait_err(ctx, deadline_ns)) != 0)
				break;
			ration__park(w.pk, deadline_ns);
			/* Woken while still waiting: we were pre-woken as the new
			 * head (or woke spuriously); spin for the grant first. */
			if ((st = spin_for_grant(s, &w)) != WAITING)
				break;
		}
		if (err != 0)
			st = leave(s, &w, err);
		ration__ctx_unwatch(ctx, &cw);
	}
	/* Our last touch of s. release: orders every access above before a
	 * free that sees inside == 0 (acquire load in ration__sem_busy()). */
	atomic_fetch_sub_explicit(&s->inside, 1, memory_order_release);
	return st;

unlock:
	pthread_mutex_unlock(&s->mu);
	return err;
}

/* ration_sem_acquire() once the fast path found no units free with
 * nobody queued: yield, then queue (or fail) in acquire_slow(). */
static RATION_NOINLINE int
acquire_wait(ration_sem_t *s, ration_ctx_t *ctx, int64_t n)
{
	int64_t deadline_ns = ration_ctx_deadline(ctx);
	if (yield_for_units(s, ctx, deadline_ns, n))
		return 0;
	return acquire_slow(s, ctx, deadline_ns, n);
}

/* ration_sem_acquire() with a backend or a ctx. */
static RATION_NOINLINE int
acquire_other(ration_sem_t *s, ration_ctx_t *ctx, int64_t n)
{
	if (s->ops != NULL)
		return s->ops->acquire(s, ctx, ration_ctx_deadline(ctx), n);
	/* A live ctx takes free units at once; anything else, errors
	 * included, goes on in acquire_wait(). */
	if (ration_ctx_err(ctx) == 0 && take_fast(s, n))
		return 0;
	return acquire_wait(s, ctx, n);
}

/* ration_sem_acquire() after its first CAS lost, from @seen to @w. */
static RATION_NOINLINE int
acquire_lost(ration_sem_t *s, int64_t n, int64_t seen, int64_t w)
{
	after_lost_cas(seen, w);
	if (take_fast_from(s, n, w))
		return 0;
	return acquire_wait(s, NULL, n);
}

int
ration_sem_acquire(ration_sem_t *s, ration_ctx_t *ctx, int64_t n)
{
	if (s == NULL || n <= 0)
		return -EINVAL;
	if (s->ops != NULL || ctx != NULL)
		return acquire_other(s, ctx, n);
	/* Fast path: background ctx and units free with nobody queued. Its
	 * first try is inline and everything past it out of line, so that
	 * the uncontended acquire saves no registers and makes no call. */
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	int64_t seen = w;
	int r = take_once(s, n, &w);
	if (RATION_LIKELY(r > 0))
		return count_fast(s);
	if (r < 0)
		return acquire_lost(s, n, seen, w);
	return acquire_wait(s, NULL, n);
}

int
ration_sem_acquire_until(ration_sem_t *s, int64_t deadline_ns, int64_t n)
{
	if (s == NULL || n <= 0)
		return -EINVAL;
	if (s->ops != NULL)
		return s->ops->acquire(s, NULL, deadline_ns, n);
	if (RATION_LIKELY(deadline_ns == RATION_FOREVER ||
			  clock_mono_ns() < deadline_ns) &&
	    take_fast(s, n))
		return 0;
	if (yield_for_units(s, NULL, deadline_ns, n))
		return 0;
	return acquire_slow(s, NULL, deadline_ns, n);
}

int
ration_sem_try_acquire(ration_sem_t *s, int64_t n)
{
	if (s == NULL || n <= 0)
		return -EINVAL;
	if (s->ops != NULL)
		return s->ops->try_acquire(s, n);
	if (RATION_LIKELY(take_fast(s, n)))
		return 0;
	int err = 0;
	pthread_mutex_lock(&s->mu);
	if (atomic_load_explicit(&s->closed, memory_order_relaxed))
		err = -EPIPE;
	else if (n > atomic_load_explicit(&s->size, memory_order_relaxed))
		err = -E2BIG;
	else if (!list_empty(&s->queue) || !take_locked(s, n)) {
		s->rejected++;
		err = -EAGAIN;
	}
	pthread_mutex_unlock(&s->mu);
	return err;
}

/* Subtract @n units from the word unless in_use + @n would pass
 * RATION_SEM_MAX; with @locked false, only while SLOW is clear. Returns 0,
 * -EOVERFLOW, or 1 when SLOW was seen set (the caller retries under mu). */
static int
consume_word(ration_sem_t *s, int64_t n, bool locked)
{
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	for (;;) {
		if (!locked && (w & SEM_SLOW))
			return 1;
		/* acquire: pairs with the release store of size in resize,
		 * as in ration_sem_release(). */
		int64_t size =
			atomic_load_explicit(&s->size, memory_order_acquire);
		if (n > RATION_SEM_MAX - (size - avail_of(w)))
			return -EOVERFLOW;
		/* Relaxed: consumed units hand nothing to anyone; the units
		 * that later come back are published by their release. */
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w - units(n), memory_order_relaxed,
			    memory_order_relaxed)) {
			note_in_use(s, avail_of(w) - n);
			atomic_fetch_add_explicit(&s->consumed, (uint64_t)n,
						  memory_order_relaxed);
			return 0;
		}
	}
}

int
ration_sem_consume(ration_sem_t *s, int64_t n)
{
	if (s == NULL || n <= 0)
		return -EINVAL;
	if (s->ops != NULL)
		return s->ops->consume != NULL ? s->ops->consume(s, n)
					       : -ENOTSUP;
	/* Lock-free while nobody is queued: taking units can only delay
	 * later takers, never grant anyone. With waiters queued the word
	 * changes only under mu (grant_locked() reads it, then takes from it). */
	int rc = consume_word(s, n, false);
	if (rc <= 0)
		return rc;
	pthread_mutex_lock(&s->mu);
	if (atomic_load_explicit(&s->closed, memory_order_relaxed))
		rc = -EPIPE;
	else
		rc = consume_word(s, n, true);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Slow path for release: someone is queued (or the check needs mu). */
static RATION_NOINLINE int
release_slow(ration_sem_t *s, int64_t n)
{
	struct ration__wake_list wl;

	wake_list_init(&wl);
	pthread_mutex_lock(&s->mu);
	/* size is stable under mu; the word may still move under fast-path
	 * callers while SLOW is clear: CAS. */
	int64_t size = atomic_load_explicit(&s->size, memory_order_relaxed);
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	do {
		if (n > size - avail_of(w)) {
			pthread_mutex_unlock(&s->mu);
			return -EOVERFLOW;
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&s->word, &w, w + units(n), memory_order_release,
		memory_order_relaxed));
	grant_locked(s, &wl);
	pthread_mutex_unlock(&s->mu);
	wake_list_wake(&wl);
	return 0;
}

int
ration_sem_release(ration_sem_t *s, int64_t n)
{
	if (s == NULL || n <= 0)
		return -EINVAL;
	if (s->ops != NULL)
		return s->ops->release(s, n);
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	for (;;) {
		if (w & SEM_SLOW)
			return release_slow(s, n);
		/* acquire: pairs with the release store in resize. A resize
		 * raises SLOW before it stores a new size, so if we read the
		 * new size our CAS below sees SLOW and fails. */
		int64_t size =
			atomic_load_explicit(&s->size, memory_order_acquire);
		if (RATION_UNLIKELY(n > size - avail_of(w)))
			return release_slow(
				s, n); /* decides -EOVERFLOW under mu */
		/* release: hands this holder's writes to the next taker of the
		 * units; pairs with the acquire CAS in take_fast(). */
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w + units(n), memory_order_release,
			    memory_order_relaxed))
			return 0;
	}
}

int
ration_sem_resize(ration_sem_t *s, int64_t new_size)
{
	struct ration__wake_list wl;

	if (s == NULL || new_size < 1 || new_size > RATION_SEM_MAX)
		return -EINVAL;
	if (s->ops != NULL)
		return s->ops->resize(s, new_size);
	wake_list_init(&wl);
	pthread_mutex_lock(&s->mu);
	if (atomic_load_explicit(&s->closed, memory_order_relaxed)) {
		pthread_mutex_unlock(&s->mu);
		return -EPIPE;
	}
	/* SLOW first, so fast-path callers queue on mu instead of racing. */
	atomic_fetch_or_explicit(&s->word, SEM_SLOW, memory_order_relaxed);
	int64_t old = atomic_load_explicit(&s->size, memory_order_relaxed);
	atomic_store_explicit(&s->size, new_size, memory_order_release);
	atomic_fetch_add_explicit(&s->word, units(new_size - old),
				  memory_order_relaxed);
	if (new_size < old) {
		struct ration__list *n, *next;
		for (n = s->queue.next; n != &s->queue; n = next) {
			next = n->next;
			struct waiter *w =
				RATION_CONTAINER_OF(n, struct waiter, node);
			if (w->n > new_size)
				finish_waiter(s, w, -E2BIG, &wl);
		}
	}
	grant_locked(s, &wl);
	pthread_mutex_unlock(&s->mu);
	wake_list_wake(&wl);
	return 0;
}

void
ration_sem_close(ration_sem_t *s)
{
	struct ration__wake_list wl;

	if (s == NULL)
		return;
	if (s->ops != NULL) {
		s->ops->close(s);
		return;
	}
	wake_list_init(&wl);
	pthread_mutex_lock(&s->mu);
	if (!atomic_load_explicit(&s->closed, memory_order_relaxed)) {
		atomic_store_explicit(&s->closed, true, memory_order_relaxed);
		atomic_fetch_or_explicit(&s->word, SEM_SLOW,
					 memory_order_relaxed);
		while (!list_empty(&s->queue))
			finish_waiter(s,
				      RATION_CONTAINER_OF(list_first(&s->queue),
							  struct waiter, node),
				      -EPIPE, &wl);
	}
	pthread_mutex_unlock(&s->mu);
	wake_list_wake(&wl);
}

int64_t
ration_sem_available(const ration_sem_t *s)
{
	if (s == NULL)
		return 0;
	if (s->ops != NULL)
		return s->ops->available(s);
	return avail_of(atomic_load_explicit(&((ration_sem_t *)s)->word,
					     memory_order_relaxed));
}

void
ration_sem_stats(const ration_sem_t *cs, ration_sem_stats_t *out)
{
	ration_sem_t *s =
		(ration_sem_t *)cs; /* the lock is not part of the value */

	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return;
	if (s->ops != NULL) {
		s->ops->stats(s, out);
		return;
	}
	pthread_mutex_lock(&s->mu);
	out->size = atomic_load_explicit(&s->size, memory_order_relaxed);
	out->available =
		avail_of(atomic_load_explicit(&s->word, memory_order_relaxed));
	out->in_use = out->size - out->available;
	out->waiters = s->nwaiters;
	out->waiting_weight = s->waiting_weight;
	out->max_in_use =
		atomic_load_explicit(&s->max_in_use, memory_order_relaxed);
	out->max_waiters_seen = s->max_waiters_seen;
	out->acquired =
		s->acquired_slow +
		atomic_load_explicit(&s->acquired_fast, memory_order_relaxed);
	for (unsigned i = 0; i < RATION_TSLOTS; i++)
		out->acquired += atomic_load_explicit(&s->acquired_by_slot[i].n,
						      memory_order_relaxed);
	out->contended = s->contended;
	out->timeouts = s->timeouts;
	out->cancels = s->cancels;
	out->rejected = s->rejected;
	out->consumed =
		atomic_load_explicit(&s->consumed, memory_order_relaxed);
	out->wait_ns_total = s->wait_ns_total;
	memcpy(out->wait_hist, s->wait_hist, sizeof(out->wait_hist));
	out->closed = atomic_load_explicit(&s->closed, memory_order_relaxed);
	memcpy(out->name, s->name, sizeof(out->name));
	pthread_mutex_unlock(&s->mu);
}

int
ration_sem_new(int64_t size, const ration_sem_opts_t *opts, ration_sem_t **out)
{
	if (out == NULL || size < 1 || size > RATION_SEM_MAX)
		return -EINVAL;
	ration_sem_t *s = aligned_alloc(RATION_CACHELINE, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	atomic_init(&s->word, units(size));
	atomic_init(&s->size, size);
	atomic_init(&s->spin_ns, HEAD_SPIN_NS);
	pthread_mutex_init(&s->mu, NULL);
	list_init(&s->queue);
	list_init(&s->reg_node);
	if (opts != NULL) {
		s->max_waiters = opts->max_waiters;
		if (opts->name != NULL)
			snprintf(s->name, sizeof(s->name), "%s", opts->name);
	}
	*out = s;
	return 0;
}

bool
ration__sem_busy(ration_sem_t *s)
{
	pthread_mutex_lock(&s->mu);
	bool busy =
		s->nwaiters != 0 ||
		atomic_load_explicit(&s->inside, memory_order_acquire) != 0 ||
		avail_of(
			atomic_load_explicit(&s->word, memory_order_relaxed)) !=
			atomic_load_explicit(&s->size, memory_order_relaxed);
	pthread_mutex_unlock(&s->mu);
	return busy;
}

void
ration__sem_destroy(ration_sem_t *s)
{
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int
ration_sem_free(ration_sem_t *s)
{
	if (s == NULL)
		return -EINVAL;
	if (s->named)
		return ration__sem_free_named(s);
	if (s->ops != NULL) {
		int rc = s->ops->free(s);
		if (rc == 0)
			ration__sem_destroy(s);
		return rc;
	}
	if (ration__sem_busy(s))
		return -EBUSY;
	ration__sem_destroy(s);
	return 0;
}

int
ration__sem_new_backend(const struct ration__sem_ops *ops, void *impl,
			const char *name, ration_sem_t **out)
{
	ration_sem_opts_t opts = {.name = name};
	ration_sem_t *s;
	int rc = ration_sem_new(1, &opts, &s);
	if (rc != 0)
		return rc;
	atomic_store_explicit(&s->word, SEM_SLOW, memory_order_relaxed);
	s->ops = ops;
	s->impl = impl;
	*out = s;
	return 0;
}
