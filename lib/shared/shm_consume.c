/* shm_consume.c - ration_sem_consume() on a shared semaphore: take units
 * now, past the size if need be (use that has already happened). It
 * never waits for units and never queues: while nobody is queued (SLOW
 * clear) it is one CAS of the word recorded in the thread's lane, as a
 * fast acquire is, only without the "enough free" test; otherwise it
 * takes mu and counts the units in the handle's holder slot. Waiters are
 * granted only once in_use + their weight fits again: grant() compares
 * with the word, which consume may drive negative (word = avail * 2 +
 * SLOW with avail < 0; >> 1 still gives avail). Given back with
 * ration_sem_release(), as any other units of the handle. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal/compiler.h"
#include "internal/sem.h"
#include "shm.h"
#include "shm_seg.h"

/* -EOVERFLOW if in_use + @n would pass RATION_SEM_MAX, for word @w. */
static int
room(struct shm_seg *g, int64_t w, int64_t n)
{
	int64_t in_use =
		atomic_load_explicit(&g->size, memory_order_relaxed) - (w >> 1);
	return n > RATION_SEM_MAX - in_use ? -EOVERFLOW : 0;
}

/* Lock-free while SLOW is clear: 0, -EOVERFLOW, or 1 (SLOW seen: the
 * caller goes through mu). The lane protocol of the fast acquire
 * (shm_sem.c take_fast): busy around CAS and held store. */
static int
consume_fast(const struct ration__shm_lane_ref *r, int64_t n)
{
	struct shm_seg *g = r->g;
	struct shm_lane *l = r->lane;
	int64_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
	if (w & SHM_SLOW)
		return 1;
	atomic_store_explicit(&l->busy, 1, memory_order_relaxed);
	int rc;
	for (;;) {
		if (w & SHM_SLOW) {
			rc = 1;
			break;
		}
		if ((rc = room(g, w, n)) != 0)
			break;
		/* acq_rel: release busy = 1 to a recount whose SLOW fetch_or
		 * comes after this CAS (shm_seg.c recount()); the units hand
		 * nothing to anyone. */
		if (atomic_compare_exchange_weak_explicit(
			    &g->word, &w, w - n * 2, memory_order_acq_rel,
			    memory_order_relaxed)) {
			/* Single writer: plain read-modify-write of our lane. */
			shm_count_add(&l->held, n);
			atomic_store_explicit(
				&l->consumed,
				atomic_load_explicit(&l->consumed,
						     memory_order_relaxed) +
					(uint64_t)n,
				memory_order_relaxed);
			break;
		}
	}
	/* release: a recount that sees busy = 0 sees held. */
	atomic_store_explicit(&l->busy, 0, memory_order_release);
	if (rc == 0)
		ration__shm_note_in_use(g, (w >> 1) - n);
	return rc;
}

/* Under mu: fast paths may still move the word while SLOW is clear, so a
 * CAS; counted in the holder slot. */
static int
consume_locked(struct ration__shm *sh, int64_t n)
{
	struct shm_seg *g = sh->g;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed))
		return -EPIPE;
	int64_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
	do {
		if (room(g, w, n) != 0)
			return -EOVERFLOW;
	} while (!atomic_compare_exchange_weak_explicit(&g->word, &w, w - n * 2,
							memory_order_relaxed,
							memory_order_relaxed));
	struct shm_holder *h = &g->holder[sh->hi];
	shm_count_add(&h->held, n);
	g->consumed += (uint64_t)n;
	ration__shm_note_in_use(g, (w >> 1) - n);
	return 0;
}

int
ration__shm_consume(struct ration_sem *s, int64_t n)
{
	struct ration__shm *sh = s->impl;
	struct ration__shm_lane_ref *l = ration__shm_lane_get(sh);
	if (l != NULL) {
		int rc = consume_fast(l, n);
		if (rc <= 0)
			return rc;
	}
	struct ration__shm_wake wk = {.n = 0};
	/* No deadline to honour: like release, it waits for mu (which a
	 * stopped owner can hold up: docs/shared.md). */
	int rc = ration__shm_lock_bound(sh, &wk, NULL, RATION_FOREVER);
	if (rc != 0)
		return rc;
	rc = consume_locked(sh, n);
	ration__shm_unlock_wake(sh->g, &wk);
	return rc;
}
