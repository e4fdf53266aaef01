/* shm_seg.c - the shared semaphore's segment: making and checking it,
 * judging its slots alive (through shm_alive.c's locks), the robust lock
 * (waited for no longer than the caller's deadline) and the recount that
 * repairs the derived state after a crash, and holder slots. The queue:
 * shm_queue.c; waits: shm_wait.c; lanes: shm_lanes.c; ops: shm_sem.c.
 *
 * Truth and derived state. The slots are the truth:
 *	avail = size - sum(held of USED holders) - sum(held of USED lanes)
 *		     - sum(n of GRANTED waiters)
 * and word = avail * 2 + SLOW. A process killed anywhere leaves every slot
 * of its own either counted or not; since a dead process's slots are all
 * freed and count nothing, its half-done updates never matter. What a
 * recount must get right is the slots of the *living*, and those are
 * stable under mu except the lanes (updated by their owner thread without
 * the lock): the recount first raises SLOW (after which no fast-path CAS
 * can succeed) and then waits until no live lane is busy, i.e. between its
 * CAS of the word and its store of held. See docs/shared.md.
 *
 * Locking: g->mu (robust, process-shared) guards the segment but for the
 * word (CAS by fast paths while SLOW is clear), the lanes' busy/held/
 * acquired/consumed (their owner), futex words, fence, last_scan_ns and
 * unsettled (atomics). The registry lock of shm_lanes.c is taken before
 * g->mu, never after. Wakes are issued after g->mu is dropped. A stopped
 * process may own g->mu for as long as it is stopped: see
 * ration__shm_lock_until() and docs/shared.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/ctx.h"
#include "shm.h"
#include "shm_seg.h"
#include "shm_sys.h"

#define INIT_WAIT_NS  ((int64_t)2 * 1000000000) /* a creator filling it in */
#define INIT_POLL_NS  ((int64_t)10 * 1000000)
#define SCAN_NS       ((int64_t)10 * 1000000) /* least time between scans */
#define BUSY_WAIT_NS  ((int64_t)2 * 1000000)  /* a recount waits for lanes */
#define LOCK_SLICE_NS ((int64_t)10 * 1000000) /* ctx polls while locking */

_Atomic unsigned ration__shm_fork_gen = 1;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ---- segment ---- */

int
ration__shm_path(const char *name, char *buf, size_t cap)
{
	if (name == NULL)
		return -EINVAL;
	const char *base = name[0] == '/' ? name + 1 : name;
	size_t len = strlen(base);
	if (len == 0 || len > 200 || len + 2 > cap || strchr(base, '/') != NULL)
		return -EINVAL;
	buf[0] = '/';
	memcpy(buf + 1, base, len + 1);
	return 0;
}

int
ration__shm_create(int fd, int64_t size, struct shm_seg **out)
{
	if (ftruncate(fd, (off_t)sizeof(struct shm_seg)) != 0)
		return errno ? -errno : -EIO;
	struct shm_seg *g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
	if (g == MAP_FAILED)
		return errno ? -errno : -ENOMEM;
	g->init_pid = getpid();
	g->magic = SHM_MAGIC;
	g->version = SHM_VERSION;
	g->seg_size = (uint32_t)sizeof(*g);
	g->holders = SHM_HOLDERS;
	g->lanes = SHM_LANES;
	g->waiters = SHM_WAITERS;
	g->leases = SHM_LEASES;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(&g->mu, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc != 0) {
		munmap(g, sizeof(*g));
		return -rc;
	}
	atomic_init(&g->size, size);
	atomic_init(&g->word, size * 2);
	g->next_ticket = 1;
	for (unsigned i = 0; i < SHM_WAITERS; i++)
		atomic_init(&g->waiter[i].state, WAITER_FREE);
	/* release: everything above is visible to whoever sees READY. */
	atomic_store_explicit(&g->init, SHM_INIT_READY, memory_order_release);
	shm_futex_wake(&g->init, INT32_MAX);
	*out = g;
	return 0;
}

static bool
header_ok(const struct shm_seg *g)
{
	return g->magic == SHM_MAGIC && g->version == SHM_VERSION &&
	       g->seg_size == sizeof(struct shm_seg) &&
	       g->holders == SHM_HOLDERS && g->lanes == SHM_LANES &&
	       g->waiters == SHM_WAITERS && g->leases == SHM_LEASES;
}

int
ration__shm_attach(int fd, struct shm_seg **out)
{
	int64_t give_up = clock_mono_ns() + INIT_WAIT_NS;
	struct stat st;
	const size_t hdr = offsetof(struct shm_seg, word);

	for (;;) {
		if (fstat(fd, &st) != 0)
			return errno ? -errno : -EIO;
		if ((size_t)st.st_size >= hdr)
			break;
		if (st.st_size != 0 || clock_mono_ns() >= give_up)
			return -EPROTO; /* truncated, or a creator that died */
		usleep(1000); /* the creator is between open and ftruncate */
	}
	size_t len = (size_t)st.st_size < sizeof(struct shm_seg)
			     ? (size_t)st.st_size
			     : sizeof(struct shm_seg);
	struct shm_seg *g =
		mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g == MAP_FAILED)
		return errno ? -errno : -ENOMEM;
	int rc = 0;
	for (;;) {
		uint32_t init =
			atomic_load_explicit(&g->init, memory_order_acquire);
		if (g->magic != 0 && !header_ok(g)) {
			rc = -EPROTO; /* another layout: another build or version */
			break;
		}
		if (init == SHM_INIT_READY) {
			if (len < sizeof(struct shm_seg))
				rc = -EPROTO; /* truncated after creation */
			break;
		}
		int64_t now = clock_mono_ns();
		if (now >= give_up) {
			rc = -EPROTO; /* never initialised: its creator died */
			break;
		}
		shm_futex_wait(&g->init, init, now + INIT_POLL_NS);
	}
	if (rc != 0) {
		munmap(g, len);
		return rc;
	}
	*out = g;
	return 0;
}

/* ---- process set-up, who is alive ---- */

static void
atfork_child(void)
{
	atomic_fetch_add_explicit(&ration__shm_fork_gen, 1,
				  memory_order_relaxed);
	ration__shm_lanes_atfork_child();
}

static void
init_once_fn(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
	ration__shm_lanes_init();
}

void
ration__shm_init(void)
{
	pthread_once(&init_once, init_once_fn);
}

/* Liveness answers of one scan, per holder slot (shm_alive.c says how):
 * each slot's lock is probed at most once. */
enum { ALIVE_UNKNOWN, ALIVE_YES, ALIVE_NO };
struct alive_cache {
	struct ration__shm *sh; /* the asking handle: its own slot is alive */
	uint8_t v[SHM_HOLDERS];
};

static void
alive_cache_init(struct alive_cache *ac, struct ration__shm *sh)
{
	ac->sh = sh;
	memset(ac->v, ALIVE_UNKNOWN, sizeof(ac->v));
}

/* Whether holder slot @i is USED by a live process. Our own slot answers
 * our probe "unlocked" (a description never conflicts with itself), so it
 * is known alive; a fork child's handle, not yet bound, is not ours. */
static bool
alive(struct shm_seg *g, struct alive_cache *ac, uint32_t i)
{
	if (i >= SHM_HOLDERS ||
	    atomic_load_explicit(&g->holder[i].state, memory_order_relaxed) !=
		    SLOT_USED)
		return false;
	if (ac->v[i] == ALIVE_UNKNOWN) {
		struct ration__shm *sh = ac->sh;
		bool self =
			i == sh->hi &&
			sh->gen == atomic_load_explicit(&ration__shm_fork_gen,
							memory_order_relaxed);
		ac->v[i] = self || ration__shm_slot_locked(sh->fd, i)
				   ? ALIVE_YES
				   : ALIVE_NO;
	}
	return ac->v[i] == ALIVE_YES;
}

/* ---- recount ---- */

/* Settle the waiter slots their waiters left without the lock (mu held):
 * an ABANDONED one leaves the queue, a TAKEN one's weight moves to its
 * holder. True if a waiter left (followers may fit now). */
static bool
settle_orphans(struct shm_seg *g)
{
	/* acquire: pairs with the waiters' release increments; a waiter
	 * that increments after this exchange is settled by the next one. */
	atomic_exchange_explicit(&g->unsettled, 0, memory_order_acquire);
	bool left = false;
	for (unsigned i = 0; i < SHM_WAITERS; i++) {
		struct shm_waiter *w = &g->waiter[i];
		int st = atomic_load_explicit(&w->state, memory_order_acquire);
		if (st == WAITER_ABANDONED) {
			g->nwaiters--;
			g->waiting_weight -= w->n;
			if (w->left == -ETIMEDOUT)
				g->timeouts++;
			else
				g->cancels++;
			left = true;
		} else if (st == WAITER_TAKEN) {
			struct shm_holder *h = &g->holder[w->holder];
			shm_count_add(&h->held, w->n);
		} else {
			continue;
		}
		atomic_store_explicit(&w->state, WAITER_FREE,
				      memory_order_relaxed);
	}
	return left;
}

static bool
any_dead(struct shm_seg *g, struct alive_cache *ac)
{
	for (unsigned i = 0; i < SHM_HOLDERS; i++) {
		struct shm_holder *h = &g->holder[i];
		if (atomic_load_explicit(&h->state, memory_order_relaxed) ==
			    SLOT_USED &&
		    !alive(g, ac, i))
			return true;
	}
	for (unsigned i = 0; i < SHM_LANES; i++) {
		struct shm_lane *l = &g->lane[i];
		if (atomic_load_explicit(&l->state, memory_order_relaxed) ==
			    SLOT_USED &&
		    !alive(g, ac, l->holder))
			return true;
	}
	for (unsigned i = 0; i < SHM_WAITERS; i++) {
		struct shm_waiter *w = &g->waiter[i];
		if (atomic_load_explicit(&w->state, memory_order_relaxed) !=
			    WAITER_FREE &&
		    !alive(g, ac, w->holder))
			return true;
	}
	return false;
}

/* Wait until no live lane is between its CAS and its held store (SLOW is
 * up, so none can start another successful CAS). False if one stays busy
 * for BUSY_WAIT_NS: its thread is stopped or descheduled mid-operation. */
static bool
lanes_quiet(struct shm_seg *g, struct alive_cache *ac)
{
	int64_t give_up = 0;
	for (unsigned i = 0; i < SHM_LANES; i++) {
		struct shm_lane *l = &g->lane[i];
		if (atomic_load_explicit(&l->state, memory_order_relaxed) !=
			    SLOT_USED ||
		    !alive(g, ac, l->holder))
			continue;
		/* acquire: pairs with the owner's release store of busy = 0,
		 * so its held store is seen. */
		while (atomic_load_explicit(&l->busy, memory_order_acquire) !=
		       0) {
			int64_t now = clock_mono_ns();
			if (give_up == 0)
				give_up = now + BUSY_WAIT_NS;
			else if (now >= give_up)
				return false;
			sched_yield();
		}
	}
	return true;
}

/* Free the slots of dead processes and rebuild word and counters from
 * the slots (mu held). If a live lane stays busy, give up for now: SLOW
 * stays up and dirty is set, so nothing is granted on stale counts until a
 * later recount succeeds. */
static void
recount(struct shm_seg *g, struct alive_cache *ac, struct ration__shm_wake *wk)
{
	g->recounts++;
	(void)settle_orphans(g); /* before the sums: TAKEN weight to holders */
	/* acq_rel: a fast-path CAS ordered before this one released the
	 * owner's busy = 1; we read it below. Any CAS after this fails. */
	atomic_fetch_or_explicit(&g->word, SHM_SLOW, memory_order_acq_rel);
	if (!lanes_quiet(g, ac)) {
		g->dirty = 1;
		return;
	}
	int64_t held = 0, nwait = 0, wweight = 0;
	uint64_t max_ticket = 0;
	for (unsigned i = 0; i < SHM_LANES; i++) {
		struct shm_lane *l = &g->lane[i];
		if (atomic_load_explicit(&l->state, memory_order_relaxed) !=
		    SLOT_USED)
			continue;
		if (!alive(g, ac, l->holder)) {
			g->acquired += atomic_load_explicit(
				&l->acquired, memory_order_relaxed);
			g->consumed += atomic_load_explicit(
				&l->consumed, memory_order_relaxed);
			atomic_store_explicit(&l->consumed, 0,
					      memory_order_relaxed);
			g->reclaimed += (uint64_t)atomic_load_explicit(
				&l->held, memory_order_relaxed);
			atomic_store_explicit(&l->held, 0,
					      memory_order_relaxed);
			atomic_store_explicit(&l->acquired, 0,
					      memory_order_relaxed);
			atomic_store_explicit(
				&l->token, 0,
				memory_order_relaxed); /* see lane_of() */
			atomic_store_explicit(&l->state, SLOT_FREE,
					      memory_order_relaxed);
			continue;
		}
		held += atomic_load_explicit(&l->held, memory_order_relaxed);
	}
	for (unsigned i = 0; i < SHM_HOLDERS; i++) {
		struct shm_holder *h = &g->holder[i];
		if (atomic_load_explicit(&h->state, memory_order_relaxed) !=
		    SLOT_USED)
			continue;
		if (!alive(g, ac, i)) {
			g->reclaimed += (uint64_t)atomic_load_explicit(
				&h->held, memory_order_relaxed);
			atomic_store_explicit(&h->held, 0,
					      memory_order_relaxed);
			memset(h->leases, 0, sizeof(h->leases));
			atomic_store_explicit(&h->state, SLOT_FREE,
					      memory_order_relaxed);
			continue;
		}
		held += atomic_load_explicit(&h->held, memory_order_relaxed);
	}
	for (unsigned i = 0; i < SHM_WAITERS; i++) {
		struct shm_waiter *w = &g->waiter[i];
		int st = atomic_load_explicit(&w->state, memory_order_relaxed);
		if (st == WAITER_FREE)
			continue;
		if (!alive(g, ac, w->holder)) {
			atomic_store_explicit(&w->state, WAITER_FREE,
					      memory_order_relaxed);
			continue;
		}
		if (st == WAITER_GRANTED)
			held += w->n;
		if (st == WAITER_WAITING) {
			nwait++;
			wweight += w->n;
		}
		if (w->ticket > max_ticket)
			max_ticket = w->ticket;
	}
	g->dirty = 0;
	g->nwaiters = nwait;
	g->waiting_weight = wweight;
	if (g->next_ticket <= max_ticket)
		g->next_ticket = max_ticket + 1;
	int64_t avail =
		atomic_load_explicit(&g->size, memory_order_relaxed) - held;
	/* SLOW stays up; grant then clears it if the queue is empty. */
	atomic_store_explicit(&g->word, avail * 2 + SHM_SLOW,
			      memory_order_release);
	if (!atomic_load_explicit(&g->closed, memory_order_relaxed))
		ration__shm_grant(g, wk);
	ration__shm_clear_slow(g);
}

/* One attempt at mu: until @until (absolute, CLOCK_MONOTONIC), or only
 * if free (SHM_TRY), or without limit (RATION_FOREVER). A pthread code. */
static int
lock_once(struct shm_seg *g, int64_t until)
{
	if (until == RATION_FOREVER)
		return pthread_mutex_lock(&g->mu);
	if (until == SHM_TRY)
		return pthread_mutex_trylock(&g->mu);
#if RATION_TSAN
	/* TSan does not intercept pthread_mutex_clocklock, and its
	 * timedlock does not count EOWNERDEAD as locked: either way it would
	 * see our unlock as of a mutex never locked. Its trylock gets both
	 * right, so under TSan only, poll it every 100 us. */
	int rc;
	while ((rc = pthread_mutex_trylock(&g->mu)) == EBUSY &&
	       clock_mono_ns() < until) {
		struct timespec nap = {.tv_nsec = 100000};
		nanosleep(&nap, NULL);
	}
	return rc == EBUSY ? ETIMEDOUT : rc;
#else
	struct timespec ts = ns_to_timespec(until);
	return pthread_mutex_clocklock(&g->mu, CLOCK_MONOTONIC, &ts);
#endif
}

int
ration__shm_lock_until(struct ration__shm *sh, struct ration__shm_wake *wk,
		       ration_ctx_t *ctx, int64_t deadline_ns)
{
	struct shm_seg *g = sh->g;
	/* Without a ctx to poll, one call waits the whole way; with one,
	 * slices of LOCK_SLICE_NS so that a cancel is seen. A free mutex is
	 * taken even past the deadline (the caller's checks come first). */
	int rc =
		lock_once(g, ctx == NULL || deadline_ns == SHM_TRY ? deadline_ns
								   : SHM_TRY);
	while (rc == EBUSY && deadline_ns != SHM_TRY) {
		int err = ration__wait_err(ctx, deadline_ns);
		if (err != 0)
			return err;
		int64_t until = clock_mono_ns() + LOCK_SLICE_NS;
		rc = lock_once(g, until < deadline_ns ? until : deadline_ns);
		if (rc == ETIMEDOUT)
			rc = EBUSY;
	}
	if (RATION_LIKELY(rc == 0)) {
		/* acquire: pairs with the release increment of a waiter
		 * that left its slot without the lock. */
		if (RATION_UNLIKELY(
			    atomic_load_explicit(&g->unsettled,
						 memory_order_acquire) != 0) &&
		    settle_orphans(g) && !g->dirty) {
			if (!atomic_load_explicit(&g->closed,
						  memory_order_relaxed))
				ration__shm_grant(
					g, wk); /* followers may fit now */
			ration__shm_clear_slow(g);
		}
		return 0;
	}
	if (rc == EOWNERDEAD) {
		/* Its owner died inside: whatever it half-updated is
		 * rebuilt from the slots before anyone else looks. */
		struct alive_cache ac;
		alive_cache_init(&ac, sh);
		g->rebuilds++;
		recount(g, &ac, wk);
		atomic_store_explicit(&g->last_scan_ns, clock_mono_ns(),
				      memory_order_relaxed);
		pthread_mutex_consistent(&g->mu);
		return 0;
	}
	if (rc == EBUSY)
		return -EAGAIN;
	if (rc == ETIMEDOUT)
		return -ETIMEDOUT;
	return -EPROTO; /* ENOTRECOVERABLE: nobody made it consistent */
}

void
ration__shm_unlock_wake(struct shm_seg *g, struct ration__shm_wake *wk)
{
	pthread_mutex_unlock(&g->mu);
	for (unsigned i = 0; i < wk->n; i++)
		shm_futex_wake(&g->waiter[wk->idx[i]].futex, 1);
	wk->n = 0;
}

void
ration__shm_maybe_reclaim(struct ration__shm *sh, struct ration__shm_wake *wk)
{
	struct shm_seg *g = sh->g;
	int64_t now = clock_mono_ns();
	if (!g->dirty &&
	    now - atomic_load_explicit(&g->last_scan_ns, memory_order_relaxed) <
		    SCAN_NS)
		return;
	atomic_store_explicit(&g->last_scan_ns, now, memory_order_relaxed);
	struct alive_cache ac;
	alive_cache_init(&ac, sh);
	if (g->dirty || any_dead(g, &ac))
		recount(g, &ac, wk);
}

/* ---- holders ---- */

/* Claim a free holder slot for @sh (mu held): take its OFD lock, then
 * mark it USED with a new token. 0, -EBUSY (none free) or -ENOLCK. */
static int
claim_holder(struct ration__shm *sh)
{
	struct shm_seg *g = sh->g;
	for (uint32_t i = 0; i < SHM_HOLDERS; i++) {
		struct shm_holder *h = &g->holder[i];
		if (atomic_load_explicit(&h->state, memory_order_relaxed) !=
		    SLOT_FREE)
			continue;
		int rc = ration__shm_slot_lock(sh->fd, i);
		if (rc == -EAGAIN)
			continue; /* its last owner is leaving: still has the lock */
		if (rc != 0)
			return rc;
		h->token = ++g->next_token;
		atomic_store_explicit(&h->held, 0, memory_order_relaxed);
		memset(h->leases, 0, sizeof(h->leases));
		atomic_store_explicit(&h->state, SLOT_USED,
				      memory_order_release);
		sh->hi = i;
		sh->token = h->token;
		return 0;
	}
	return -EBUSY;
}

int
ration__shm_lock_bound(struct ration__shm *sh, struct ration__shm_wake *wk,
		       ration_ctx_t *ctx, int64_t deadline_ns)
{
	int rc = ration__shm_lock_until(sh, wk, ctx, deadline_ns);
	if (rc != 0)
		return rc;
	struct shm_seg *g = sh->g;
	unsigned gen = atomic_load_explicit(&ration__shm_fork_gen,
					    memory_order_relaxed);
	if (RATION_UNLIKELY(sh->gen != gen)) {
		if ((rc = claim_holder(sh)) == -EBUSY) {
			ration__shm_maybe_reclaim(sh,
						  wk); /* slots of the dead */
			rc = claim_holder(sh);
		}
		if (rc == 0)
			sh->gen = gen;
	} else if (RATION_UNLIKELY(atomic_load_explicit(
					   &g->holder[sh->hi].state,
					   memory_order_relaxed) != SLOT_USED ||
				   g->holder[sh->hi].token != sh->token)) {
		/* Judged dead and reclaimed (its weight went back): nothing
		 * may be given back or taken through this slot any more. */
		rc = -ESTALE;
	}
	if (rc != 0)
		ration__shm_unlock_wake(g, wk);
	return rc;
}

int64_t
ration__shm_held(struct ration__shm *sh)
{
	struct shm_seg *g = sh->g;
	int64_t held = atomic_load_explicit(&g->holder[sh->hi].held,
					    memory_order_relaxed);
	for (unsigned i = 0; i < SHM_LANES; i++) {
		struct shm_lane *l = &g->lane[i];
		if (atomic_load_explicit(&l->state, memory_order_relaxed) ==
			    SLOT_USED &&
		    l->holder == sh->hi)
			held += atomic_load_explicit(&l->held,
						     memory_order_relaxed);
	}
	return held;
}
