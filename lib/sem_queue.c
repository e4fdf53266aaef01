/* sem_queue.c - the in-process semaphore's FIFO wait queue: the slow
 * paths of acquire, try_acquire and release, the grants to queued
 * waiters, and resize and close, which settle waiters too. The word and
 * the fast paths: sem.c (whose header comment has the design).
 *
 * s->mu guards the queue and the fields marked mu in internal/sem.h, and,
 * while SLOW is set, the word: a waiter is granted its units by the thread
 * that makes them free, under mu, so a newcomer never passes it.
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

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/cpu.h"
#include "internal/ctx.h"
#include "internal/hist.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/sem.h"
#include "internal/sem_inproc.h"
#include "ration/sem.h"

#define WAITING 1 /* waiter state until its outcome (0 or -errno) is set */

struct waiter {
	struct ration__list node; /* s->mu */
	int64_t n;
	int64_t t0; /* when queued, for the wait histogram */
	struct ration__parker *pk;
	_Atomic int state; /* WAITING until set once, under s->mu */
};

/* Take @n units with the queue empty; s->mu held. SLOW may be clear, so
 * fast-path callers race with us: CAS. */
static bool
take_locked(ration_sem_t *s, int64_t n)
{
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	while (ration__sem_avail(w) >= n) {
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w - ration__sem_units(n),
			    memory_order_acquire, memory_order_relaxed)) {
			s->acquired_slow++;
			ration__sem_note_in_use(s, ration__sem_avail(w) - n);
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
		if (ration__sem_avail(word) < w->n)
			break;
		atomic_fetch_sub_explicit(&s->word, ration__sem_units(w->n),
					  memory_order_relaxed);
		ration__sem_note_in_use(s, ration__sem_avail(word) - w->n);
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
		if (ration__sem_take(s, n))
			return true;
	}
	return false;
}

/* Slow path for acquire: check in contract order, then queue and wait. */
static int
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

/* ration_sem_acquire()/_until() past the fast path: yield, then queue. */
int
ration__sem_acquire_wait(ration_sem_t *s, ration_ctx_t *ctx,
			 int64_t deadline_ns, int64_t n)
{
	if (yield_for_units(s, ctx, deadline_ns, n))
		return 0;
	return acquire_slow(s, ctx, deadline_ns, n);
}

int
ration__sem_try_acquire_slow(ration_sem_t *s, int64_t n)
{
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

/* Slow path for release: someone is queued (or the check needs mu). */
int
ration__sem_release_slow(ration_sem_t *s, int64_t n)
{
	struct ration__wake_list wl;

	wake_list_init(&wl);
	pthread_mutex_lock(&s->mu);
	/* size is stable under mu; the word may still move under fast-path
	 * callers while SLOW is clear: CAS. */
	int64_t size = atomic_load_explicit(&s->size, memory_order_relaxed);
	int64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	do {
		if (n > size - ration__sem_avail(w)) {
			pthread_mutex_unlock(&s->mu);
			return -EOVERFLOW;
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&s->word, &w, w + ration__sem_units(n), memory_order_release,
		memory_order_relaxed));
	grant_locked(s, &wl);
	pthread_mutex_unlock(&s->mu);
	wake_list_wake(&wl);
	return 0;
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
	atomic_fetch_add_explicit(&s->word, ration__sem_units(new_size - old),
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
