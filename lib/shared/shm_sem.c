/* shm_sem.c - ration_sem_t over a POSIX shm segment (ration/shared.h):
 * the operations, their lock-free fast paths, and the ops table.
 *
 * Layout: shm.h. Segment, liveness, the robust lock, recount
 * and holder slots: shm_seg.c; lanes: shm_lanes.c; a queued caller's
 * wait: shm_wait.c; granting: shm_queue.c; open and unlink: shm_object.c.
 *
 * Fast path, lock-free: as in-process, one word = avail * 2 + SLOW in the
 * segment. While SLOW is clear (nobody queued, not closed, no resize or
 * recount under way) a thread takes or gives back weight with one CAS of
 * the word and records it in its lane, a slot of the segment that only
 * this thread writes:
 *	busy = 1;  CAS word;  held += n;  busy = 0
 * So a crash anywhere is recoverable: a dead process's slots count for
 * nothing whatever it did last, and a recount (under mu, SLOW raised)
 * waits until no live lane is busy before it adds the slots up. Slow path:
 * everything else, under the robust mutex, as before the fast path
 * existed; weight taken there is counted in the handle's holder slot.
 *
 * Locking: see shm_seg.c. A caller that must queue waits in shm_wait.c
 * (no daemon: waiters themselves look for dead processes). See
 * docs/shared.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/compiler.h"
#include "internal/ctx.h"
#include "internal/sem.h"
#include "ration/shared.h"
#include "shm.h"
#include "shm_seg.h"

typedef struct ration__shm shared_t;
typedef struct ration__shm_wake wake_t;

/* The lanes this thread has bound (shm_lanes.c's thread-exit destructor
 * gives them back to their handles). */
static _Thread_local struct ration__shm_lanes tls_lanes;

/* ---- fast path ---- */

/* This thread's lane for @sh, or NULL: not bound yet, @sh was made or
 * bound in an ancestor process (fork), or the lane is no longer @sh's (the
 * handle was judged dead and its slots reclaimed: the slow path then
 * answers -ESTALE). */
static inline struct ration__shm_lane_ref *
lane_of(const shared_t *sh)
{
	unsigned gen = atomic_load_explicit(&ration__shm_fork_gen,
					    memory_order_relaxed);
	if (RATION_UNLIKELY(sh->gen != gen || tls_lanes.gen != gen))
		return NULL;
	for (unsigned i = 0; i < SHM_LANE_CACHE; i++)
		if (tls_lanes.e[i].id == sh->id)
			return RATION_LIKELY(
				       atomic_load_explicit(
					       &tls_lanes.e[i].lane->token,
					       memory_order_relaxed) ==
				       sh->token)
				       ? &tls_lanes.e[i]
				       : NULL;
	return NULL;
}

/* Fast path, lock-free: take @n while nobody is queued (SLOW clear), so a
 * newcomer never passes a waiter; record it in our lane. */
static inline bool
take_fast(const struct ration__shm_lane_ref *r, int64_t n)
{
	struct shm_seg *g = r->g;
	struct shm_lane *l = r->lane;
	int64_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
	if ((w & SHM_SLOW) || (w >> 1) < n)
		return false;
	atomic_store_explicit(&l->busy, 1, memory_order_relaxed);
	/* acq_rel: acquire the previous holder's writes (published by the
	 * CAS that gave the weight back); release busy = 1 to a recount
	 * whose SLOW fetch_or comes after this CAS (shm_seg.c recount()). */
	while (!atomic_compare_exchange_weak_explicit(&g->word, &w, w - n * 2,
						      memory_order_acq_rel,
						      memory_order_relaxed)) {
		if ((w & SHM_SLOW) || (w >> 1) < n) {
			atomic_store_explicit(&l->busy, 0,
					      memory_order_release);
			return false;
		}
	}
	/* Single writer: plain read-modify-write of our own lane. */
	shm_count_add(&l->held, n);
	atomic_store_explicit(
		&l->acquired,
		atomic_load_explicit(&l->acquired, memory_order_relaxed) + 1,
		memory_order_relaxed);
	/* release: a recount that sees busy = 0 sees held. */
	atomic_store_explicit(&l->busy, 0, memory_order_release);
	int64_t in_use = atomic_load_explicit(&g->size, memory_order_relaxed) -
			 ((w >> 1) - n);
	if (RATION_UNLIKELY(
		    in_use >
		    atomic_load_explicit(&g->max_in_use, memory_order_relaxed)))
		ration__shm_note_in_use(g, (w >> 1) - n);
	return true;
}

/* Fast path for release: give @n back from our lane while SLOW is clear
 * (nobody to hand it to). Weight this thread did not take on the fast path
 * (a grant, another thread's) goes through give_back_locked(). */
static inline bool
give_fast(const struct ration__shm_lane_ref *r, int64_t n)
{
	struct shm_seg *g = r->g;
	struct shm_lane *l = r->lane;
	int64_t held = atomic_load_explicit(&l->held, memory_order_relaxed);
	int64_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
	if (held < n || (w & SHM_SLOW))
		return false;
	atomic_store_explicit(&l->busy, 1, memory_order_relaxed);
	/* release: hands this holder's writes to the next taker; pairs with
	 * the acquire side of the CAS in take_fast(). */
	while (!atomic_compare_exchange_weak_explicit(&g->word, &w, w + n * 2,
						      memory_order_acq_rel,
						      memory_order_relaxed)) {
		if (w & SHM_SLOW) {
			atomic_store_explicit(&l->busy, 0,
					      memory_order_release);
			return false;
		}
	}
	atomic_store_explicit(&l->held, held - n, memory_order_relaxed);
	atomic_store_explicit(&l->busy, 0, memory_order_release);
	return true;
}

/* The lane to use for @sh, binding one on first use; NULL = slow path. */
static inline struct ration__shm_lane_ref *
lane_get(shared_t *sh)
{
	struct ration__shm_lane_ref *l = lane_of(sh);
	if (RATION_LIKELY(l != NULL))
		return l;
	if (sh->gen !=
	    atomic_load_explicit(&ration__shm_fork_gen, memory_order_relaxed))
		return NULL; /* the slow path binds the holder first */
	return ration__shm_lane_bind(sh, &tls_lanes);
}

struct ration__shm_lane_ref *
ration__shm_lane_get(struct ration__shm *sh)
{
	return lane_get(sh);
}

/* ---- slow path ---- */

/* Take @n with the queue empty (mu held); SLOW may be clear, so fast-path
 * callers race with us: CAS. */
static bool
take_locked(shared_t *sh, int64_t n)
{
	struct shm_seg *g = sh->g;
	if (g->nwaiters != 0 || g->dirty)
		return false;
	int64_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
	while ((w >> 1) >= n) {
		if (atomic_compare_exchange_weak_explicit(
			    &g->word, &w, w - n * 2, memory_order_acquire,
			    memory_order_relaxed)) {
			struct shm_holder *h = &g->holder[sh->hi];
			shm_count_add(&h->held, n);
			g->acquired++;
			ration__shm_note_in_use(g, (w >> 1) - n);
			return true;
		}
	}
	return false;
}

/* Slow path for acquire: a ctx to check, a lane to bind, or no weight
 * free with nobody queued. */
static RATION_NOINLINE int
acquire_slow(shared_t *sh, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n)
{
	if (ration__wait_err(ctx, deadline_ns) == 0) {
		struct ration__shm_lane_ref *l = lane_get(sh);
		if (l != NULL && take_fast(l, n))
			return 0;
	}
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	int err = ration__shm_lock_bound(sh, &wk, ctx, deadline_ns);
	if (err != 0)
		return err;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed))
		err = -EPIPE;
	else if (n > atomic_load_explicit(&g->size, memory_order_relaxed))
		err = -E2BIG;
	else if ((err = ration__wait_err(ctx, deadline_ns)) != 0)
		;
	else if (!take_locked(sh, n)) {
		/* Not enough: before queueing, reclaim from the dead. */
		ration__shm_maybe_reclaim(sh, &wk);
		if (!take_locked(sh, n)) {
			struct shm_waiter *w = ration__shm_enqueue(sh, n, &wk);
			if (w == NULL) {
				g->rejected++;
				err = -EBUSY;
			} else {
				ration__shm_unlock_wake(g, &wk);
				return ration__shm_wait(sh, w, ctx,
							deadline_ns);
			}
		}
	}
	ration__shm_unlock_wake(g, &wk);
	return err;
}

/* n > 0 (sem.c checked). Check order of contract §4: closed, E2BIG, ctx,
 * then take or wait; the fast path may only succeed where all pass. */
static int
sh_acquire(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n)
{
	shared_t *sh = s->impl;
	/* Fast path: no ctx, a lane bound, weight free with nobody queued.
	 * Anything else (a ctx to check first included): acquire_slow(). */
	if (RATION_LIKELY(ctx == NULL && deadline_ns == RATION_FOREVER)) {
		struct ration__shm_lane_ref *l = lane_of(sh);
		if (RATION_LIKELY(l != NULL) && take_fast(l, n))
			return 0;
	}
	return acquire_slow(sh, ctx, deadline_ns, n);
}

static RATION_NOINLINE int
try_slow(shared_t *sh, int64_t n)
{
	struct ration__shm_lane_ref *l = lane_get(sh);
	if (l != NULL && take_fast(l, n))
		return 0;
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	/* Never blocks: a busy mu (its owner may be stopped) is -EAGAIN. */
	int err = ration__shm_lock_bound(sh, &wk, NULL, SHM_TRY);
	if (err != 0)
		return err;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed))
		err = -EPIPE;
	else if (n > atomic_load_explicit(&g->size, memory_order_relaxed))
		err = -E2BIG;
	else if (!take_locked(sh, n)) {
		ration__shm_maybe_reclaim(sh, &wk);
		if (!take_locked(sh, n)) {
			g->rejected++;
			err = -EAGAIN;
		}
	}
	ration__shm_unlock_wake(g, &wk);
	return err;
}

static int
sh_try_acquire(ration_sem_t *s, int64_t n)
{
	shared_t *sh = s->impl;
	struct ration__shm_lane_ref *l = lane_of(sh);
	if (RATION_LIKELY(l != NULL) && take_fast(l, n))
		return 0;
	return try_slow(sh, n);
}

/* Give @n back from what the handle holds (mu held): from the holder
 * slot, which may go negative while this thread's or another's lane holds
 * the rest; the sum is what counts. */
static int
give_back_locked(shared_t *sh, int64_t n, wake_t *wk)
{
	struct shm_seg *g = sh->g;
	if (n > ration__shm_held(sh))
		return -EOVERFLOW;
	struct shm_holder *h = &g->holder[sh->hi];
	shm_count_add(&h->held, -n);
	/* release: pairs with the acquire CAS of a fast taker or the acquire
	 * load in grant; SLOW may be clear, so an RMW. */
	atomic_fetch_add_explicit(&g->word, n * 2, memory_order_release);
	ration__shm_grant(g, wk);
	ration__shm_clear_slow(g);
	return 0;
}

static RATION_NOINLINE int
release_slow(shared_t *sh, int64_t n)
{
	wake_t wk = {.n = 0};
	int err = ration__shm_lock_bound(sh, &wk, NULL, RATION_FOREVER);
	if (err != 0)
		return err;
	err = give_back_locked(sh, n, &wk);
	ration__shm_unlock_wake(sh->g, &wk);
	return err;
}

static int
sh_release(ration_sem_t *s, int64_t n)
{
	shared_t *sh = s->impl;
	struct ration__shm_lane_ref *l = lane_of(sh);
	if (RATION_LIKELY(l != NULL) && give_fast(l, n))
		return 0;
	return release_slow(sh, n);
}

static int
sh_resize(ration_sem_t *s, int64_t new_size)
{
	shared_t *sh = s->impl;
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	int err = ration__shm_lock(sh, &wk);
	if (err != 0)
		return err;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed)) {
		ration__shm_unlock_wake(g, &wk);
		return -EPIPE;
	}
	/* SLOW first, so fast-path callers queue on mu instead of racing. */
	atomic_fetch_or_explicit(&g->word, SHM_SLOW, memory_order_relaxed);
	int64_t old = atomic_load_explicit(&g->size, memory_order_relaxed);
	atomic_store_explicit(&g->size, new_size, memory_order_relaxed);
	atomic_fetch_add_explicit(&g->word, (new_size - old) * 2,
				  memory_order_relaxed);
	for (unsigned i = 0; i < SHM_WAITERS && new_size < old; i++) {
		struct shm_waiter *w = &g->waiter[i];
		if (atomic_load_explicit(&w->state, memory_order_relaxed) ==
			    WAITER_WAITING &&
		    w->n > new_size)
			ration__shm_decide(g, w, -E2BIG, &wk);
	}
	ration__shm_grant(g, &wk);
	ration__shm_clear_slow(g);
	ration__shm_unlock_wake(g, &wk);
	return 0;
}

static void
sh_close(ration_sem_t *s)
{
	shared_t *sh = s->impl;
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	if (ration__shm_lock(sh, &wk) != 0)
		return;
	atomic_store_explicit(&g->closed, 1, memory_order_relaxed);
	atomic_fetch_or_explicit(&g->word, SHM_SLOW, memory_order_relaxed);
	for (unsigned i = 0; i < SHM_WAITERS; i++)
		if (atomic_load_explicit(&g->waiter[i].state,
					 memory_order_relaxed) ==
		    WAITER_WAITING)
			ration__shm_decide(g, &g->waiter[i], -EPIPE, &wk);
	ration__shm_unlock_wake(g, &wk);
}

static int64_t
sh_available(const ration_sem_t *s)
{
	const shared_t *sh = s->impl;
	return atomic_load_explicit(&sh->g->word, memory_order_relaxed) >> 1;
}

static void
sh_stats(const ration_sem_t *s, ration_sem_stats_t *out)
{
	shared_t *sh = s->impl; /* stats locks and may reclaim: not const */
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	if (ration__shm_lock(sh, &wk) != 0)
		return;
	ration__shm_maybe_reclaim(sh, &wk);
	out->size = atomic_load_explicit(&g->size, memory_order_relaxed);
	out->available =
		atomic_load_explicit(&g->word, memory_order_relaxed) >> 1;
	out->in_use = out->size - out->available;
	out->waiters = g->nwaiters;
	out->waiting_weight = g->waiting_weight;
	out->max_in_use =
		atomic_load_explicit(&g->max_in_use, memory_order_relaxed);
	out->max_waiters_seen = g->max_waiters_seen;
	out->acquired = g->acquired;
	out->consumed = g->consumed;
	for (unsigned i = 0; i < SHM_LANES; i++) {
		if (atomic_load_explicit(&g->lane[i].state,
					 memory_order_relaxed) != SLOT_USED)
			continue;
		out->acquired += atomic_load_explicit(&g->lane[i].acquired,
						      memory_order_relaxed);
		out->consumed += atomic_load_explicit(&g->lane[i].consumed,
						      memory_order_relaxed);
	}
	out->contended = g->contended;
	out->timeouts = g->timeouts;
	out->cancels = g->cancels;
	out->rejected = g->rejected;
	out->wait_ns_total = g->wait_ns_total;
	memcpy(out->wait_hist, g->wait_hist, sizeof(out->wait_hist));
	out->closed =
		atomic_load_explicit(&g->closed, memory_order_relaxed) != 0;
	ration__shm_unlock_wake(g, &wk);
	memcpy(out->name, s->name, sizeof(out->name));
}

/* -EBUSY while this handle holds weight or has a caller queued; else give
 * up its slots and unmap. */
static int
sh_free(ration_sem_t *s)
{
	shared_t *sh = s->impl;
	int rc = ration__shm_release_handle(sh);
	if (rc != 0)
		return rc;
	munmap(sh->g, sizeof(*sh->g));
	if (sh->fd >= 0)
		close(sh->fd); /* drops our slot's lock, if still held */
	free(sh);
	return 0;
}

/* ---- leases ---- */

static int
sh_acquire_lease(ration_sem_t *s, ration_ctx_t *ctx, int64_t n,
		 ration_lease_t *out)
{
	int rc = ration_sem_acquire(s, ctx, n);
	if (rc != 0)
		return rc;
	shared_t *sh = s->impl;
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	if ((rc = ration__shm_lock_bound(sh, &wk, NULL, RATION_FOREVER)) != 0)
		return rc;
	struct shm_lease *l = NULL, *tab = g->holder[sh->hi].leases;
	for (unsigned i = 0; i < SHM_LEASES && l == NULL; i++)
		if (tab[i].fence == 0)
			l = &tab[i];
	if (l == NULL) {
		(void)give_back_locked(sh, n, &wk);
		rc = -EBUSY;
	} else {
		/* Under mu, so fences are handed out in grant order too. */
		l->n = n;
		l->fence = atomic_fetch_add_explicit(&g->fence, 1,
						     memory_order_relaxed) +
			   1;
		*out = (ration_lease_t){.n = n,
					.fence = l->fence,
					.expires_ns = RATION_FOREVER};
	}
	ration__shm_unlock_wake(g, &wk);
	return rc;
}

static int
sh_lease_release(ration_sem_t *s, const ration_lease_t *lease)
{
	shared_t *sh = s->impl;
	struct shm_seg *g = sh->g;
	wake_t wk = {.n = 0};
	int rc = ration__shm_lock_bound(sh, &wk, NULL, RATION_FOREVER);
	if (rc != 0)
		return rc;
	struct shm_lease *tab = g->holder[sh->hi].leases;
	rc = -ESTALE;
	for (unsigned i = 0; i < SHM_LEASES; i++) {
		if (lease->fence != 0 && tab[i].fence == lease->fence &&
		    tab[i].n == lease->n) {
			/* -EOVERFLOW: its weight already went back by a plain
			 * release; the lease is stale either way. */
			if (give_back_locked(sh, lease->n, &wk) == 0)
				rc = 0;
			tab[i].fence = 0;
			break;
		}
	}
	ration__shm_unlock_wake(g, &wk);
	return rc;
}

const struct ration__sem_ops ration__shm_ops = {
	.acquire = sh_acquire,
	.try_acquire = sh_try_acquire,
	.release = sh_release,
	.consume = ration__shm_consume,
	.resize = sh_resize,
	.close = sh_close,
	.available = sh_available,
	.stats = sh_stats,
	.free = sh_free,
	.acquire_lease = sh_acquire_lease,
	.lease_release = sh_lease_release,
};
