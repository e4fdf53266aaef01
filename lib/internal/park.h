/* park.h - per-thread parker (futex) and a bounded wake list.
 *
 * A blocked ration call never sleeps on memory of its own stack: it sleeps
 * on its thread's parker, which is never freed (a thread's parker goes back
 * to a free list when the thread exits and is reused by the next thread).
 * So a waker that saved a parker pointer under a lock may unpark it after
 * the lock is dropped, even if the waiter has long returned: the worst
 * case is one spurious wake-up of whichever wait that parker serves next,
 * and every ration wait loop re-checks its condition after waking.
 */
#ifndef RATION_INTERNAL_PARK_H
#define RATION_INTERNAL_PARK_H

#include <stdatomic.h>
#include <stdint.h>

struct ration__parker {
	/* atomic: EMPTY, NOTIFIED (a wake is pending) or PARKED (asleep). */
	_Atomic uint32_t word;
	struct ration__parker *free_next; /* parker registry lock */
};

/* The calling thread's parker, made on first use; NULL only if none could
 * be allocated, in which case ration__park() polls instead of sleeping. */
struct ration__parker *ration__parker_self(void);

/* Sleep until unparked or @deadline_ns (CLOCK_MONOTONIC) passes; may also
 * return spuriously. Consumes one pending wake. */
void ration__park(struct ration__parker *p, int64_t deadline_ns);

/* Make one ration__park() of @p return (now, or at once when next called).
 * Issues a futex wake only if the owner is asleep: waking a spinner costs
 * one atomic exchange. */
void ration__unpark(struct ration__parker *p);

/* Parkers collected under a lock and unparked after it is dropped, so that
 * a woken thread does not run straight into the lock its waker holds.
 * Holds WAKE_LIST_MAX; past that, ration__wake_list_add() unparks at once
 * (under the lock: correct, just slower, and only when one event wakes
 * more than WAKE_LIST_MAX threads). */
#define WAKE_LIST_MAX 16

struct ration__wake_list {
	unsigned n;
	struct ration__parker *pk[WAKE_LIST_MAX];
};

static inline void
wake_list_init(struct ration__wake_list *wl)
{
	wl->n = 0;
}

static inline void
wake_list_add(struct ration__wake_list *wl, struct ration__parker *pk)
{
	if (wl->n == WAKE_LIST_MAX) {
		ration__unpark(pk);
		return;
	}
	wl->pk[wl->n++] = pk;
}

static inline void
wake_list_wake(struct ration__wake_list *wl)
{
	for (unsigned i = 0; i < wl->n; i++)
		ration__unpark(wl->pk[i]);
	wl->n = 0;
}

#endif
