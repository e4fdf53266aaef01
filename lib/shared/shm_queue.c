/* shm_queue.c - the shared semaphore's FIFO grant queue: waiters are
 * granted in ticket order, under the segment's mu (see shm_seg.c). */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal/atomic_max.h"
#include "internal/hist.h"
#include "shm.h"
#include "shm_seg.h"

bool
ration__shm_decide(struct shm_seg *g, struct shm_waiter *w, int outcome,
		   struct ration__shm_wake *wk)
{
	/* A CAS: the waiter may leave without mu (WAITING -> ABANDONED).
	 * release: pairs with the acquire load of state by the waiter. */
	int32_t waiting = WAITER_WAITING;
	if (!atomic_compare_exchange_strong_explicit(
		    &w->state, &waiting, outcome, memory_order_release,
		    memory_order_relaxed))
		return false;
	g->nwaiters--;
	g->waiting_weight -= w->n;
	atomic_fetch_add_explicit(&w->futex, 1, memory_order_release);
	wk->idx[wk->n++] = (uint16_t)(w - g->waiter);
	return true;
}

void
ration__shm_note_in_use(struct shm_seg *g, int64_t avail_after)
{
	ration__atomic_max(
		&g->max_in_use,
		atomic_load_explicit(&g->size, memory_order_relaxed) -
			avail_after);
}

static struct shm_waiter *
head(struct shm_seg *g)
{
	struct shm_waiter *best = NULL;
	for (unsigned i = 0; i < SHM_WAITERS; i++) {
		struct shm_waiter *w = &g->waiter[i];
		if (atomic_load_explicit(&w->state, memory_order_relaxed) ==
			    WAITER_WAITING &&
		    (best == NULL || w->ticket < best->ticket))
			best = w;
	}
	return best;
}

void
ration__shm_grant(struct shm_seg *g, struct ration__shm_wake *wk)
{
	int64_t now = 0;
	while (g->nwaiters > 0 && !g->dirty) {
		struct shm_waiter *w = head(g);
		/* SLOW is up while anyone waits: only mu holders move the
		 * word. acquire: the releasers' writes pass to the waiter. */
		int64_t word =
			atomic_load_explicit(&g->word, memory_order_acquire);
		if (w == NULL || w->n > word >> 1)
			break;
		if (!ration__shm_decide(g, w, WAITER_GRANTED, wk))
			continue; /* it left just now: the next head */
		atomic_fetch_sub_explicit(&g->word, w->n * 2,
					  memory_order_relaxed);
		ration__shm_note_in_use(g, (word >> 1) - w->n);
		g->acquired++;
		ration__hist_note_wait(&g->wait_ns_total, g->wait_hist, &now,
				       w->t0);
	}
}

void
ration__shm_clear_slow(struct shm_seg *g)
{
	if (g->nwaiters == 0 && !g->dirty &&
	    !atomic_load_explicit(&g->closed, memory_order_relaxed))
		/* release: pairs with the acquire CAS of the fast path, which
		 * then sees the weight given back under mu. */
		atomic_fetch_and_explicit(&g->word, ~SHM_SLOW,
					  memory_order_release);
}
