/* shm_lanes.c - the shared semaphore's lanes: the per-thread slots of the
 * fast path, bound on a thread's first fast operation on a handle and
 * folded back into the handle's holder slot when the thread exits or the
 * handle is freed.
 *
 * Locking: reg_mu (process-local) guards the registry of open handles and
 * is taken before a segment's mu, never after; it keeps a handle mapped
 * while a thread-exit destructor folds its lane. Everything else here runs
 * under the segment's mu (see shm_seg.c). A lane's busy/held/acquired are
 * written only by its owner thread, except by lane_free() once that thread
 * no longer runs operations on the handle (it is exiting, or the handle is
 * being freed, which the caller promises is idle).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/hist.h"
#include "shm.h"
#include "shm_seg.h"

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ration__shm *registry; /* reg_mu */
static pthread_key_t lanes_key;

void
ration__shm_register(struct ration__shm *sh)
{
	static _Atomic uint64_t next_id = 1;
	sh->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
	pthread_mutex_lock(&reg_mu);
	sh->reg_next = registry;
	registry = sh;
	pthread_mutex_unlock(&reg_mu);
}

/* reg_mu held. */
static struct ration__shm *
find_handle(uint64_t id)
{
	for (struct ration__shm *sh = registry; sh != NULL; sh = sh->reg_next)
		if (sh->id == id)
			return sh;
	return NULL;
}

/* Fold lane @li of @sh into its holder and free it (mu held). Only the
 * owner thread, or anyone once the owner no longer runs ops on @sh. */
static void
lane_free(struct shm_seg *g, uint32_t li)
{
	struct shm_lane *l = &g->lane[li];
	struct shm_holder *h = &g->holder[l->holder];
	atomic_fetch_add_explicit(
		&h->held, atomic_load_explicit(&l->held, memory_order_relaxed),
		memory_order_relaxed);
	g->acquired += atomic_load_explicit(&l->acquired, memory_order_relaxed);
	g->consumed += atomic_load_explicit(&l->consumed, memory_order_relaxed);
	atomic_store_explicit(&l->held, 0, memory_order_relaxed);
	atomic_store_explicit(&l->acquired, 0, memory_order_relaxed);
	atomic_store_explicit(&l->consumed, 0, memory_order_relaxed);
	atomic_store_explicit(&l->token, 0,
			      memory_order_relaxed); /* no holder's any more */
	atomic_store_explicit(&l->state, SLOT_FREE, memory_order_relaxed);
}

/* Whether lane @li is still @sh's: not if @sh was judged dead and its
 * lanes reclaimed (and maybe bound again by someone else) (mu held). */
static bool
lane_ours(struct ration__shm *sh, uint32_t li)
{
	struct shm_lane *l = &sh->g->lane[li];
	return atomic_load_explicit(&l->state, memory_order_relaxed) ==
		       SLOT_USED &&
	       atomic_load_explicit(&l->token, memory_order_relaxed) ==
		       sh->token;
}

/* Thread exit: give every lane this thread bound back to its handle. */
static void
lanes_exit(void *arg)
{
	struct ration__shm_lanes *lc = arg;
	if (lc->gen !=
	    atomic_load_explicit(&ration__shm_fork_gen, memory_order_relaxed))
		return; /* a parent's lanes: not ours to touch */
	pthread_mutex_lock(&reg_mu);
	for (unsigned i = 0; i < SHM_LANE_CACHE; i++) {
		struct ration__shm *sh =
			lc->e[i].id ? find_handle(lc->e[i].id) : NULL;
		lc->e[i].id = 0;
		if (sh == NULL)
			continue;
		struct ration__shm_wake wk = {.n = 0};
		if (ration__shm_lock(sh, &wk) ==
		    0) { /* no deadline: thread exit */
			if (lane_ours(sh, lc->e[i].li))
				lane_free(sh->g, lc->e[i].li);
			ration__shm_unlock_wake(sh->g, &wk);
		}
	}
	pthread_mutex_unlock(&reg_mu);
}

struct ration__shm_lane_ref *
ration__shm_lane_bind(struct ration__shm *sh, struct ration__shm_lanes *lc)
{
	unsigned gen = atomic_load_explicit(&ration__shm_fork_gen,
					    memory_order_relaxed);
	if (lc->gen != gen) {
		memset(lc->e, 0, sizeof(lc->e));
		lc->gen = gen;
	}
	pthread_mutex_lock(&reg_mu);
	unsigned slot = SHM_LANE_CACHE;
	for (unsigned i = 0; i < SHM_LANE_CACHE && slot == SHM_LANE_CACHE; i++)
		if (lc->e[i].id == 0 || find_handle(lc->e[i].id) == NULL)
			slot = i; /* empty, or a handle since freed */
	struct shm_lane *l = NULL;
	struct ration__shm_wake wk = {.n = 0};
	/* Binding only speeds later calls up: not worth a wait for mu. */
	if (slot < SHM_LANE_CACHE &&
	    ration__shm_lock_bound(sh, &wk, NULL, SHM_TRY) == 0) {
		struct shm_seg *g = sh->g;
		unsigned i = 0;
		while (i < SHM_LANES &&
		       atomic_load_explicit(&g->lane[i].state,
					    memory_order_relaxed) != SLOT_FREE)
			i++;
		if (i < SHM_LANES) {
			l = &g->lane[i];
			l->holder = sh->hi;
			atomic_store_explicit(&l->token, sh->token,
					      memory_order_relaxed);
			atomic_store_explicit(&l->busy, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&l->held, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&l->acquired, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&l->consumed, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&l->state, SLOT_USED,
					      memory_order_relaxed);
			lc->e[slot].id = sh->id;
			lc->e[slot].li = i;
			lc->e[slot].lane = l;
			lc->e[slot].g = g;
		}
		ration__shm_unlock_wake(g, &wk);
	}
	pthread_mutex_unlock(&reg_mu);
	if (l != NULL && !lc->keyed) {
		/* Arms lanes_exit() for this thread; the key holds no memory
		 * of its own (lc is the thread's own storage). */
		lc->keyed = pthread_setspecific(lanes_key, lc) == 0;
	}
	return l != NULL ? &lc->e[slot] : NULL;
}

int
ration__shm_release_handle(struct ration__shm *sh)
{
	struct shm_seg *g = sh->g;
	struct ration__shm_wake wk = {.n = 0};
	unsigned gen = atomic_load_explicit(&ration__shm_fork_gen,
					    memory_order_relaxed);
	int rc = 0;

	pthread_mutex_lock(&reg_mu);
	if (sh->gen == gen) { /* our slot (not a parent's, over fork) */
		if ((rc = ration__shm_lock_bound(sh, &wk, NULL,
						 RATION_FOREVER)) != 0) {
			if (rc == -ESTALE)
				rc = 0; /* reclaimed: nothing of ours to give back */
			goto unregister;
		}
		bool busy = ration__shm_held(sh) != 0;
		for (unsigned i = 0; i < SHM_WAITERS && !busy; i++) {
			struct shm_waiter *w = &g->waiter[i];
			busy = atomic_load_explicit(&w->state,
						    memory_order_relaxed) !=
				       WAITER_FREE &&
			       w->holder == sh->hi;
		}
		if (busy) {
			ration__shm_unlock_wake(g, &wk);
			rc = -EBUSY;
			goto out;
		}
		for (uint32_t i = 0; i < SHM_LANES; i++)
			if (atomic_load_explicit(&g->lane[i].state,
						 memory_order_relaxed) ==
				    SLOT_USED &&
			    g->lane[i].holder == sh->hi)
				lane_free(g, i);
		/* Unlock first: a slot USED and unlocked is only judged dead
		 * (and it holds nothing now); FREE and locked would be skipped
		 * by claimers until we unlock. */
		ration__shm_slot_unlock(sh->fd, sh->hi);
		atomic_store_explicit(&g->holder[sh->hi].state, SLOT_FREE,
				      memory_order_relaxed);
		ration__shm_unlock_wake(g, &wk);
	}
unregister:
	for (struct ration__shm **p = &registry; *p != NULL;
	     p = &(*p)->reg_next) {
		if (*p == sh) {
			*p = sh->reg_next;
			break;
		}
	}
out:
	pthread_mutex_unlock(&reg_mu);
	return rc;
}

void
ration__shm_lanes_init(void)
{
	/* If no key can be made, lanes are folded only by ration_sem_free. */
	(void)pthread_key_create(&lanes_key, lanes_exit);
}

void
ration__shm_lanes_atfork_child(void)
{
	pthread_mutex_init(&reg_mu, NULL);
	/* The parent's descriptions hold the parent's slot locks: ours must
	 * not keep them alive (see shm_alive.c). */
	for (struct ration__shm *sh = registry; sh != NULL; sh = sh->reg_next)
		if (sh->fd >= 0)
			sh->fd = ration__shm_reopen(sh->fd);
}
