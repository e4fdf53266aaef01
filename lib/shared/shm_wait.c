/* shm_wait.c - a queued caller of the shared semaphore: it takes a waiter
 * slot (ration__shm_enqueue), sleeps on the slot's shared futex in slices
 * of at most SLICE_NS, checking its ctx between slices and, every SCAN_NS,
 * looking for dead processes ahead of it (no daemon), and once its outcome
 * is decided or its wait ends, settles the slot: under mu if mu can be had
 * within SETTLE_NS, else without it (settle_unlocked), leaving the counting
 * to the next holder of mu. Acquire, which queues, is in shm_sem.c; the
 * grants that decide a waiter's outcome in shm_queue.c.
 *
 * Locking: see shm_seg.c. The slot's state is decided once: by a granter,
 * close or a shrink under mu (ration__shm_decide), or by the waiter itself
 * when it leaves; a decision made first is kept. See docs/shared.md.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal/clock.h"
#include "internal/ctx.h"
#include "shm.h"
#include "shm_seg.h"
#include "shm_sys.h"

#define SLICE_NS ((int64_t)10 * 1000000) /* longest sleep between checks */
#define SCAN_NS  ((int64_t)10 * 1000000) /* least time between dead scans */
/* A waiter done waiting gives the lock this long to settle its slot, then
 * settles it without (the lock's owner may be stopped). */
#define SETTLE_NS ((int64_t)20 * 1000000)

typedef struct ration__shm shared_t;
typedef struct ration__shm_wake wake_t;

struct shm_waiter *
ration__shm_enqueue(shared_t *sh, int64_t n, wake_t *wk)
{
	struct shm_seg *g = sh->g;
	struct shm_waiter *w = NULL;
	for (unsigned i = 0; i < SHM_WAITERS && w == NULL; i++)
		if (atomic_load_explicit(&g->waiter[i].state,
					 memory_order_relaxed) == WAITER_FREE)
			w = &g->waiter[i];
	if (w == NULL)
		return NULL;
	w->holder = sh->hi;
	w->ticket = g->next_ticket++;
	w->n = n;
	w->t0 = clock_mono_ns();
	atomic_store_explicit(&w->state, WAITER_WAITING, memory_order_release);
	g->contended++;
	g->waiting_weight += n;
	if (++g->nwaiters > g->max_waiters_seen)
		g->max_waiters_seen = g->nwaiters;
	atomic_fetch_or_explicit(&g->word, SHM_SLOW, memory_order_relaxed);
	/* A fast release may have returned weight between our failed take
	 * and SLOW going up; nobody else would hand it to us. */
	ration__shm_grant(g, wk);
	return w;
}

/* Settle waiter slot @w without mu (its owner may be stopped): leave the
 * queue if still in it (ABANDONED), take a grant (TAKEN), or free a slot
 * whose outcome was an error; the next holder of mu does the counting.
 * @err: why the wait ended, 0 if decided. Return 0 or the error. */
static int
settle_unlocked(struct shm_seg *g, struct shm_waiter *w, int err)
{
	int32_t st = WAITER_WAITING;
	w->left = err; /* read only once ABANDONED is seen */
	/* release (both): the next holder of mu reads n, holder and left. */
	if (err != 0 && atomic_compare_exchange_strong_explicit(
				&w->state, &st, WAITER_ABANDONED,
				memory_order_release, memory_order_acquire)) {
		atomic_fetch_add_explicit(&g->unsettled, 1,
					  memory_order_release);
		return err;
	}
	st = atomic_load_explicit(&w->state, memory_order_acquire);
	if (st == WAITER_GRANTED) {
		atomic_store_explicit(&w->state, WAITER_TAKEN,
				      memory_order_release);
		atomic_fetch_add_explicit(&g->unsettled, 1,
					  memory_order_release);
		return 0;
	}
	atomic_store_explicit(&w->state, WAITER_FREE, memory_order_release);
	return st;
}

int
ration__shm_wait(shared_t *sh, struct shm_waiter *w, ration_ctx_t *ctx,
		 int64_t deadline_ns)
{
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	int err = 0;

	for (;;) {
		uint32_t seq =
			atomic_load_explicit(&w->futex, memory_order_acquire);
		if (atomic_load_explicit(&w->state, memory_order_acquire) !=
		    WAITER_WAITING)
			break;
		if ((err = ration__wait_err(ctx, deadline_ns)) != 0)
			break;
		int64_t now = clock_mono_ns();
		int64_t until = deadline_ns - now < SLICE_NS ? deadline_ns
							     : now + SLICE_NS;
		shm_futex_wait(&w->futex, seq, until);
		/* Still waiting: maybe whoever is ahead of us has died, or
		 * left without the lock. Only if mu is free: its owner may be
		 * stopped, and our deadline comes first. */
		if (atomic_load_explicit(&w->state, memory_order_relaxed) ==
			    WAITER_WAITING &&
		    (clock_mono_ns() - atomic_load_explicit(
					       &g->last_scan_ns,
					       memory_order_relaxed) >=
			     SCAN_NS ||
		     atomic_load_explicit(&g->unsettled,
					  memory_order_relaxed) != 0) &&
		    ration__shm_lock_until(sh, &wk, NULL, SHM_TRY) == 0) {
			ration__shm_maybe_reclaim(sh, &wk);
			ration__shm_unlock_wake(g, &wk);
		}
	}

	/* Settle: a decision made before we got the lock wins (a grant that
	 * races with cancel is kept, never lost). */
	int rc = ration__shm_lock_until(sh, &wk, NULL,
					clock_mono_ns() + SETTLE_NS);
	if (rc != 0)
		return settle_unlocked(g, w, err);
	int st = atomic_load_explicit(&w->state, memory_order_relaxed);
	if (st == WAITER_WAITING) {
		if (err == -ETIMEDOUT)
			g->timeouts++;
		else
			g->cancels++;
		g->nwaiters--;
		g->waiting_weight -= w->n;
		atomic_store_explicit(&w->state, WAITER_FREE,
				      memory_order_relaxed);
		/* Followers may fit now (Go #37852). */
		ration__shm_grant(g, &wk);
		ration__shm_clear_slow(g);
		rc = err;
	} else {
		if (st == WAITER_GRANTED) {
			struct shm_holder *h = &g->holder[sh->hi];
			shm_count_add(&h->held, w->n);
		}
		atomic_store_explicit(&w->state, WAITER_FREE,
				      memory_order_relaxed);
		rc = st;
	}
	ration__shm_unlock_wake(g, &wk);
	return rc;
}
