/* sem_inproc.h (internal) - what the three files of the in-process
 * semaphore share, and nobody else includes:
 *   lib/sem.c            the lock-free word: the fast paths
 *   lib/sem_queue.c      the FIFO wait queue under s->mu: the slow paths,
 *                        grants, resize and close
 *   lib/sem_lifecycle.c  new, free, stats, backend handles
 * The object itself and the backend ops are in internal/sem.h.
 */
#ifndef RATION_INTERNAL_SEM_INPROC_H
#define RATION_INTERNAL_SEM_INPROC_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal/atomic_max.h"
#include "internal/park.h"
#include "internal/sem.h"
#include "ration/ctx.h"
#include "ration/sem.h"

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

/* The available units in the word @word (internal/sem.h). */
static inline int64_t
ration__sem_avail(int64_t word)
{
	return word >> 1; /* arithmetic shift: available may be negative */
}

/* @n units as they count in the word. */
static inline int64_t
ration__sem_units(int64_t n)
{
	return n * 2; /* n <= RATION_SEM_MAX, so no overflow */
}

/* Raise the in-use high-water mark of @s after a take that left
 * @avail_after units available. */
static inline void
ration__sem_note_in_use(ration_sem_t *s, int64_t avail_after)
{
	ration__atomic_max(
		&s->max_in_use,
		atomic_load_explicit(&s->size, memory_order_relaxed) -
			avail_after);
}

/* ration_sem_acquire() and _until() once the fast path found no units
 * free with nobody queued, or a ctx error: yield, then queue (or fail) in
 * contract order, and wait until @deadline_ns or @ctx is done (sem_queue.c).
 * Returns as ration_sem_acquire(). */
int ration__sem_acquire_wait(ration_sem_t *s, ration_ctx_t *ctx,
			     int64_t deadline_ns, int64_t n);

/* ration_sem_try_acquire() once the fast path missed: decide under s->mu
 * (sem_queue.c). Returns as ration_sem_try_acquire(). */
int ration__sem_try_acquire_slow(ration_sem_t *s, int64_t n);

/* ration_sem_release() with someone queued, or when the check needs s->mu
 * (sem_queue.c). Returns 0 or -EOVERFLOW. */
int ration__sem_release_slow(ration_sem_t *s, int64_t n);

#endif
