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
 * This file is the fast path: the word, and the lock-free first part of
 * every operation, which goes on in sem_queue.c (the wait queue and the
 * slow paths) as soon as SLOW is set or the units are not there. The
 * uncontended acquire is a leaf: its first try is inline and everything
 * past it is tail-called out of line. New, free and stats:
 * sem_lifecycle.c. Shared helpers: internal/sem_inproc.h.
 *
 * Locking: only ration_sem_consume() takes s->mu here, around one CAS,
 * while waiters are queued. No user code runs here.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/cpu.h"
#include "internal/sem.h"
#include "internal/sem_inproc.h"
#include "internal/tslot.h"
#include "ration/sem.h"

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
	if ((*w & SEM_SLOW) || ration__sem_avail(*w) < n)
		return 0;
	/* acquire: the previous holder's writes, published by the release
	 * CAS/RMW that gave the units back, become visible. */
	if (!atomic_compare_exchange_weak_explicit(
		    &s->word, w, *w - ration__sem_units(n),
		    memory_order_acquire, memory_order_relaxed))
		return -1;
	ration__sem_note_in_use(s, ration__sem_avail(*w) - n);
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

/* ration_sem_acquire() with a backend or a ctx. */
static RATION_NOINLINE int
acquire_other(ration_sem_t *s, ration_ctx_t *ctx, int64_t n)
{
	if (s->ops != NULL)
		return s->ops->acquire(s, ctx, ration_ctx_deadline(ctx), n);
	/* A live ctx takes free units at once; anything else, errors
	 * included, goes on in ration__sem_acquire_wait(). */
	if (ration_ctx_err(ctx) == 0 && take_fast(s, n))
		return 0;
	return ration__sem_acquire_wait(s, ctx, ration_ctx_deadline(ctx), n);
}

/* ration_sem_acquire() after its first CAS lost, from @seen to @w. */
static RATION_NOINLINE int
acquire_lost(ration_sem_t *s, int64_t n, int64_t seen, int64_t w)
{
	after_lost_cas(seen, w);
	if (take_fast_from(s, n, w))
		return 0;
	return ration__sem_acquire_wait(s, NULL, RATION_FOREVER, n);
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
	return ration__sem_acquire_wait(s, NULL, RATION_FOREVER, n);
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
	return ration__sem_acquire_wait(s, NULL, deadline_ns, n);
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
	return ration__sem_try_acquire_slow(s, n);
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
		if (n > RATION_SEM_MAX - (size - ration__sem_avail(w)))
			return -EOVERFLOW;
		/* Relaxed: consumed units hand nothing to anyone; the units
		 * that later come back are published by their release. */
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w - ration__sem_units(n),
			    memory_order_relaxed, memory_order_relaxed)) {
			ration__sem_note_in_use(s, ration__sem_avail(w) - n);
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
	 * changes only under mu (grant_locked() in sem_queue.c reads it, then
	 * takes from it). */
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
			return ration__sem_release_slow(s, n);
		/* acquire: pairs with the release store in resize. A resize
		 * raises SLOW before it stores a new size, so if we read the
		 * new size our CAS below sees SLOW and fails. */
		int64_t size =
			atomic_load_explicit(&s->size, memory_order_acquire);
		if (RATION_UNLIKELY(n > size - ration__sem_avail(w)))
			return ration__sem_release_slow(
				s, n); /* decides -EOVERFLOW under mu */
		/* release: hands this holder's writes to the next taker of the
		 * units; pairs with the acquire CAS in take_fast(). */
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w + ration__sem_units(n),
			    memory_order_release, memory_order_relaxed))
			return 0;
	}
}

int64_t
ration_sem_available(const ration_sem_t *s)
{
	if (s == NULL)
		return 0;
	if (s->ops != NULL)
		return s->ops->available(s);
	return ration__sem_avail(atomic_load_explicit(
		&((ration_sem_t *)s)->word, memory_order_relaxed));
}
