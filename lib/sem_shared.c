/* sem_shared.c - ration_sem_t over a POSIX shm segment (ration/shared.h).
 *
 * Layout: lib/internal/shm.h. The holder and waiter slots are the truth;
 * size/avail/nwaiters/waiting_weight are derived from them:
 *	avail = size - sum(held of USED holders) - sum(n of GRANTED waiters)
 * A grant is one store (waiter state = GRANTED); the waiter itself then
 * moves the weight into its holder slot, under mu. So a process killed at
 * any instruction leaves every slot either counted or not, and
 * reclaim_locked() can always recount.
 *
 * Locking: g->mu, a robust process-shared mutex, guards everything in the
 * segment except the futex words, fence and last_scan_ns (atomics). No
 * other lock is taken while it is held. EOWNERDEAD (its owner died inside
 * the critical section) is answered by reclaim_locked(), which frees the
 * dead processes' slots and recounts, then pthread_mutex_consistent().
 * Futex wakes are issued after mu is dropped. Waiters sleep on their slot's
 * futex in slices of at most SLICE_NS and, every SCAN_NS, reclaim the slots
 * of dead processes themselves: no daemon. A process is dead when kill()
 * says ESRCH, or /proc/<pid>/stat shows a zombie or another start time
 * (a recycled pid). See docs/shared.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include "internal/sem.h"
#include "internal/shm.h"
#include "internal/shm_seg.h"
#include "internal/shm_sys.h"
#include "ration/shared.h"

#define SLICE_NS     ((int64_t)10 * 1000000) /* longest sleep between checks */
#define SCAN_NS      ((int64_t)10 * 1000000) /* least time between dead scans */

/* A handle: this process's view of one segment. */
struct shared {
	struct shm_seg *g;
	uint32_t hi;   /* our holder slot */
	unsigned gen;  /* fork generation hi was claimed in */
};

/* Who we are. fork_gen moves in every fork child, so a handle inherited
 * over fork() notices that its holder slot is its parent's. */
static _Atomic unsigned fork_gen = 1;
static pid_t self_pid;
static uint64_t self_start;
static unsigned self_gen;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t self_mu = PTHREAD_MUTEX_INITIALIZER;

static void
atfork_child(void)
{
	pthread_mutex_init(&self_mu, NULL);
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void
self_init(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

/* This process's pid and start time, refreshed after a fork. */
static void
self_get(pid_t *pid, uint64_t *start, unsigned *gen)
{
	unsigned g = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	pthread_mutex_lock(&self_mu);
	if (self_gen != g) {
		self_pid = getpid();
		self_start = shm_proc_start(self_pid);
		self_gen = g;
	}
	*pid = self_pid;
	*start = self_start;
	*gen = g;
	pthread_mutex_unlock(&self_mu);
}

static bool
alive(pid_t pid, uint64_t start)
{
	pid_t me;
	uint64_t my_start;
	unsigned gen;

	if (pid <= 0)
		return false;
	self_get(&me, &my_start, &gen);
	if (pid == me)
		return start == my_start;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	uint64_t st = shm_proc_start(pid);
	return st == UINT64_MAX || (st != 0 && st == start);
}

static unsigned
hist_bucket(int64_t ns)
{
	if (ns <= 1)
		return 0;
	unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)ns);
	return b < RATION_HIST_BUCKETS ? b : RATION_HIST_BUCKETS - 1;
}

/* Waiter slots to wake once mu is dropped. */
struct wake {
	unsigned n;
	uint16_t idx[SHM_WAITERS];
};

static void
wake_all(struct shm_seg *g, struct wake *wk)
{
	for (unsigned i = 0; i < wk->n; i++)
		shm_futex_wake(&g->waiter[wk->idx[i]].futex, 1);
	wk->n = 0;
}

/* Decide waiter @w's outcome (mu held): it is off the queue from now. */
static void
decide(struct shm_seg *g, struct shm_waiter *w, int outcome, struct wake *wk)
{
	g->nwaiters--;
	g->waiting_weight -= w->n;
	/* release: pairs with the acquire load of state by the waiter. */
	atomic_store_explicit(&w->state, outcome, memory_order_release);
	atomic_fetch_add_explicit(&w->futex, 1, memory_order_release);
	wk->idx[wk->n++] = (uint16_t)(w - g->waiter);
}

static void
note_in_use(struct shm_seg *g)
{
	int64_t in_use = atomic_load_explicit(&g->size, memory_order_relaxed) -
			 atomic_load_explicit(&g->avail, memory_order_relaxed);
	if (in_use > g->max_in_use)
		g->max_in_use = in_use;
}

static void
avail_add(struct shm_seg *g, int64_t d)
{
	atomic_store_explicit(&g->avail, atomic_load_explicit(&g->avail, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

static struct shm_waiter *
head(struct shm_seg *g)
{
	struct shm_waiter *best = NULL;
	for (unsigned i = 0; i < SHM_WAITERS; i++) {
		struct shm_waiter *w = &g->waiter[i];
		if (atomic_load_explicit(&w->state, memory_order_relaxed) == WAITER_WAITING &&
		    (best == NULL || w->ticket < best->ticket))
			best = w;
	}
	return best;
}

/* Grant from the head, in ticket order, while the head fits (mu held). */
static void
grant_locked(struct shm_seg *g, struct wake *wk)
{
	int64_t now = 0;
	while (g->nwaiters > 0) {
		struct shm_waiter *w = head(g);
		if (w == NULL || w->n > atomic_load_explicit(&g->avail, memory_order_relaxed))
			break;
		avail_add(g, -w->n);
		note_in_use(g);
		if (now == 0)
			now = clock_mono_ns();
		int64_t waited = now > w->t0 ? now - w->t0 : 0;
		g->acquired++;
		g->wait_ns_total += (uint64_t)waited;
		g->wait_hist[hist_bucket(waited)]++;
		decide(g, w, WAITER_GRANTED, wk);
	}
}

/* Free the slots of dead processes and recount every derived counter from
 * the slots, then grant what now fits (mu held). Correct after any crash:
 * each slot is either complete or not yet USED/WAITING. */
static void
reclaim_locked(struct shm_seg *g, struct wake *wk)
{
	int64_t held = 0, nwait = 0, wweight = 0;
	uint64_t max_ticket = 0;

	for (unsigned i = 0; i < SHM_HOLDERS; i++) {
		struct shm_holder *h = &g->holder[i];
		if (atomic_load_explicit(&h->state, memory_order_relaxed) != HOLDER_USED)
			continue;
		if (!alive(h->pid, h->start)) {
			g->reclaimed += (uint64_t)atomic_load_explicit(&h->held, memory_order_relaxed);
			atomic_store_explicit(&h->held, 0, memory_order_relaxed);
			memset(h->leases, 0, sizeof(h->leases));
			atomic_store_explicit(&h->state, HOLDER_FREE, memory_order_relaxed);
			continue;
		}
		held += atomic_load_explicit(&h->held, memory_order_relaxed);
	}
	for (unsigned i = 0; i < SHM_WAITERS; i++) {
		struct shm_waiter *w = &g->waiter[i];
		int st = atomic_load_explicit(&w->state, memory_order_relaxed);
		if (st == WAITER_FREE)
			continue;
		if (!alive(w->pid, w->start)) {
			atomic_store_explicit(&w->state, WAITER_FREE, memory_order_relaxed);
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
	atomic_store_explicit(&g->avail, atomic_load_explicit(&g->size, memory_order_relaxed) - held,
			      memory_order_relaxed);
	g->nwaiters = nwait;
	g->waiting_weight = wweight;
	if (g->next_ticket <= max_ticket)
		g->next_ticket = max_ticket + 1;
	atomic_store_explicit(&g->last_scan_ns, clock_mono_ns(), memory_order_relaxed);
	if (!atomic_load_explicit(&g->closed, memory_order_relaxed))
		grant_locked(g, wk);
}

/* Lock the segment. A dead owner (EOWNERDEAD) is answered by a recount. */
static int
seg_lock(struct shm_seg *g, struct wake *wk)
{
	int rc = pthread_mutex_lock(&g->mu);
	if (RATION_LIKELY(rc == 0))
		return 0;
	if (rc == EOWNERDEAD) {
		g->rebuilds++;
		reclaim_locked(g, wk);
		pthread_mutex_consistent(&g->mu);
		return 0;
	}
	return -EPROTO; /* ENOTRECOVERABLE: nobody made it consistent */
}

/* Reclaim if nobody has looked for dead processes for SCAN_NS (mu held). */
static void
maybe_reclaim(struct shm_seg *g, struct wake *wk)
{
	int64_t last = atomic_load_explicit(&g->last_scan_ns, memory_order_relaxed);
	if (clock_mono_ns() - last >= SCAN_NS)
		reclaim_locked(g, wk);
}

/* Claim a holder slot for this process (mu held). */
static int
claim_holder(struct shm_seg *g, uint32_t *out)
{
	pid_t pid;
	uint64_t start;
	unsigned gen;

	self_get(&pid, &start, &gen);
	for (unsigned i = 0; i < SHM_HOLDERS; i++) {
		struct shm_holder *h = &g->holder[i];
		if (atomic_load_explicit(&h->state, memory_order_relaxed) != HOLDER_FREE)
			continue;
		h->pid = pid;
		h->start = start;
		atomic_store_explicit(&h->held, 0, memory_order_relaxed);
		memset(h->leases, 0, sizeof(h->leases));
		atomic_store_explicit(&h->state, HOLDER_USED, memory_order_release);
		*out = i;
		return 0;
	}
	return -EBUSY;
}

/* Lock, and make sure the handle's holder slot is this process's: after a
 * fork the child claims its own (an empty one) on first use. */
static int
lock_bound(struct shared *sh, struct wake *wk)
{
	int rc = seg_lock(sh->g, wk);
	if (rc != 0)
		return rc;
	unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	if (RATION_UNLIKELY(sh->gen != gen)) {
		if ((rc = claim_holder(sh->g, &sh->hi)) != 0) {
			pthread_mutex_unlock(&sh->g->mu);
			return rc;
		}
		sh->gen = gen;
	}
	return 0;
}

static void
unlock_wake(struct shm_seg *g, struct wake *wk)
{
	pthread_mutex_unlock(&g->mu);
	wake_all(g, wk);
}

static void
take_locked(struct shared *sh, int64_t n)
{
	struct shm_seg *g = sh->g;
	avail_add(g, -n);
	atomic_fetch_add_explicit(&g->holder[sh->hi].held, n, memory_order_relaxed);
	g->acquired++;
	note_in_use(g);
}

static bool
can_take(struct shm_seg *g, int64_t n)
{
	return g->nwaiters == 0 && atomic_load_explicit(&g->avail, memory_order_relaxed) >= n;
}

static int
wait_err(ration_ctx_t *ctx, int64_t deadline_ns)
{
	int err = ration_ctx_err(ctx);
	if (err == 0 && deadline_ns != RATION_FOREVER && clock_mono_ns() >= deadline_ns)
		err = -ETIMEDOUT;
	return err;
}

/* Wait in slot @w until its outcome is decided or the wait must end; then
 * settle the slot under mu. Return 0 (weight is ours) or an error. */
static int
wait_slot(struct shared *sh, struct shm_waiter *w, ration_ctx_t *ctx, int64_t deadline_ns)
{
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	int err = 0;

	for (;;) {
		uint32_t seq = atomic_load_explicit(&w->futex, memory_order_acquire);
		if (atomic_load_explicit(&w->state, memory_order_acquire) != WAITER_WAITING)
			break;
		if ((err = wait_err(ctx, deadline_ns)) != 0)
			break;
		int64_t now = clock_mono_ns();
		int64_t until = deadline_ns - now < SLICE_NS ? deadline_ns : now + SLICE_NS;
		shm_futex_wait(&w->futex, seq, until);
		/* Still waiting: maybe whoever is ahead of us has died. */
		if (atomic_load_explicit(&w->state, memory_order_relaxed) == WAITER_WAITING &&
		    clock_mono_ns() - atomic_load_explicit(&g->last_scan_ns, memory_order_relaxed) >=
			    SCAN_NS) {
			if (seg_lock(g, &wk) == 0) {
				maybe_reclaim(g, &wk);
				unlock_wake(g, &wk);
			}
		}
	}

	/* Settle: a decision made before we got the lock wins (a grant that
	 * races with cancel is kept, never lost). */
	int rc = seg_lock(g, &wk);
	if (rc != 0)
		return rc;
	int st = atomic_load_explicit(&w->state, memory_order_relaxed);
	if (st == WAITER_WAITING) {
		if (err == -ETIMEDOUT)
			g->timeouts++;
		else
			g->cancels++;
		g->nwaiters--;
		g->waiting_weight -= w->n;
		atomic_store_explicit(&w->state, WAITER_FREE, memory_order_relaxed);
		grant_locked(g, &wk); /* followers may fit now (Go #37852) */
		rc = err;
	} else {
		if (st == WAITER_GRANTED)
			atomic_fetch_add_explicit(&g->holder[sh->hi].held, w->n,
						  memory_order_relaxed);
		atomic_store_explicit(&w->state, WAITER_FREE, memory_order_relaxed);
		rc = st;
	}
	unlock_wake(g, &wk);
	return rc;
}

static int
sh_acquire(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n)
{
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	int err = lock_bound(sh, &wk);
	if (err != 0)
		return err;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed))
		err = -EPIPE;
	else if (n > atomic_load_explicit(&g->size, memory_order_relaxed))
		err = -E2BIG;
	else if ((err = wait_err(ctx, deadline_ns)) != 0)
		;
	else if (can_take(g, n))
		take_locked(sh, n);
	else {
		/* Not enough: before queueing, reclaim from the dead. */
		maybe_reclaim(g, &wk);
		if (can_take(g, n)) {
			take_locked(sh, n);
			goto out;
		}
		struct shm_waiter *w = NULL;
		for (unsigned i = 0; i < SHM_WAITERS && w == NULL; i++)
			if (atomic_load_explicit(&g->waiter[i].state, memory_order_relaxed) ==
			    WAITER_FREE)
				w = &g->waiter[i];
		if (w == NULL) {
			g->rejected++;
			err = -EBUSY;
			goto out;
		}
		pid_t pid;
		unsigned gen;
		self_get(&pid, &w->start, &gen);
		w->pid = pid;
		w->holder = sh->hi;
		w->ticket = g->next_ticket++;
		w->n = n;
		w->t0 = clock_mono_ns();
		atomic_store_explicit(&w->state, WAITER_WAITING, memory_order_release);
		g->contended++;
		g->waiting_weight += n;
		if (++g->nwaiters > g->max_waiters_seen)
			g->max_waiters_seen = g->nwaiters;
		unlock_wake(g, &wk);
		return wait_slot(sh, w, ctx, deadline_ns);
	}
out:
	unlock_wake(g, &wk);
	return err;
}

static int
sh_try_acquire(ration_sem_t *s, int64_t n)
{
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	int err = lock_bound(sh, &wk);
	if (err != 0)
		return err;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed))
		err = -EPIPE;
	else if (n > atomic_load_explicit(&g->size, memory_order_relaxed))
		err = -E2BIG;
	else {
		if (!can_take(g, n))
			maybe_reclaim(g, &wk);
		if (can_take(g, n)) {
			take_locked(sh, n);
		} else {
			g->rejected++;
			err = -EAGAIN;
		}
	}
	unlock_wake(g, &wk);
	return err;
}

/* Give @n back from our holder slot (mu held). */
static int
give_back_locked(struct shared *sh, int64_t n, struct wake *wk)
{
	struct shm_seg *g = sh->g;
	_Atomic int64_t *held = &g->holder[sh->hi].held;
	if (n > atomic_load_explicit(held, memory_order_relaxed))
		return -EOVERFLOW;
	atomic_fetch_sub_explicit(held, n, memory_order_relaxed);
	avail_add(g, n);
	grant_locked(g, wk);
	return 0;
}

static int
sh_release(ration_sem_t *s, int64_t n)
{
	struct shared *sh = s->impl;
	struct wake wk;
	wk.n = 0;
	int err = lock_bound(sh, &wk);
	if (err != 0)
		return err;
	err = give_back_locked(sh, n, &wk);
	unlock_wake(sh->g, &wk);
	return err;
}

static int
sh_resize(ration_sem_t *s, int64_t new_size)
{
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	int err = seg_lock(g, &wk);
	if (err != 0)
		return err;
	if (atomic_load_explicit(&g->closed, memory_order_relaxed)) {
		err = -EPIPE;
		goto out;
	}
	int64_t old = atomic_load_explicit(&g->size, memory_order_relaxed);
	atomic_store_explicit(&g->size, new_size, memory_order_relaxed);
	avail_add(g, new_size - old);
	for (unsigned i = 0; i < SHM_WAITERS && new_size < old; i++) {
		struct shm_waiter *w = &g->waiter[i];
		if (atomic_load_explicit(&w->state, memory_order_relaxed) == WAITER_WAITING &&
		    w->n > new_size)
			decide(g, w, -E2BIG, &wk);
	}
	grant_locked(g, &wk);
out:
	unlock_wake(g, &wk);
	return err;
}

static void
sh_close(ration_sem_t *s)
{
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	if (seg_lock(g, &wk) != 0)
		return;
	atomic_store_explicit(&g->closed, 1, memory_order_relaxed);
	for (unsigned i = 0; i < SHM_WAITERS; i++)
		if (atomic_load_explicit(&g->waiter[i].state, memory_order_relaxed) ==
		    WAITER_WAITING)
			decide(g, &g->waiter[i], -EPIPE, &wk);
	unlock_wake(g, &wk);
}

static int64_t
sh_available(const ration_sem_t *s)
{
	const struct shared *sh = s->impl;
	return atomic_load_explicit(&sh->g->avail, memory_order_relaxed);
}

static void
sh_stats(const ration_sem_t *s, ration_sem_stats_t *out)
{
	const struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	if (seg_lock(g, &wk) != 0)
		return;
	maybe_reclaim(g, &wk);
	out->size = atomic_load_explicit(&g->size, memory_order_relaxed);
	out->available = atomic_load_explicit(&g->avail, memory_order_relaxed);
	out->in_use = out->size - out->available;
	out->waiters = g->nwaiters;
	out->waiting_weight = g->waiting_weight;
	out->max_in_use = g->max_in_use;
	out->max_waiters_seen = g->max_waiters_seen;
	out->acquired = g->acquired;
	out->contended = g->contended;
	out->timeouts = g->timeouts;
	out->cancels = g->cancels;
	out->rejected = g->rejected;
	out->wait_ns_total = g->wait_ns_total;
	memcpy(out->wait_hist, g->wait_hist, sizeof(out->wait_hist));
	out->closed = atomic_load_explicit(&g->closed, memory_order_relaxed) != 0;
	unlock_wake(g, &wk);
	memcpy(out->name, s->name, sizeof(out->name));
}

/* -EBUSY while this handle holds weight or has a caller queued; else give
 * up the holder slot and unmap. */
static int
sh_free(ration_sem_t *s)
{
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	pid_t pid;
	uint64_t start;
	unsigned gen;

	self_get(&pid, &start, &gen);
	if (sh->gen == gen) { /* our slot (not a parent's, over fork) */
		if (seg_lock(g, &wk) != 0)
			return -EPROTO;
		struct shm_holder *h = &g->holder[sh->hi];
		bool busy = atomic_load_explicit(&h->held, memory_order_relaxed) != 0;
		for (unsigned i = 0; i < SHM_WAITERS && !busy; i++) {
			struct shm_waiter *w = &g->waiter[i];
			busy = atomic_load_explicit(&w->state, memory_order_relaxed) != WAITER_FREE &&
			       w->holder == sh->hi && w->pid == pid;
		}
		if (busy) {
			unlock_wake(g, &wk);
			return -EBUSY;
		}
		atomic_store_explicit(&h->state, HOLDER_FREE, memory_order_relaxed);
		unlock_wake(g, &wk);
	}
	munmap(g, sizeof(*g));
	free(sh);
	return 0;
}


static const struct ration__sem_ops shared_ops;

int
ration_sem_open_shared(const char *name, int64_t size, const ration_shared_opts_t *opts,
		       ration_sem_t **out)
{
	char path[256];
	int rc = shm_path(name, path, sizeof(path));
	if (rc != 0 || out == NULL)
		return -EINVAL;
	bool create = opts != NULL && opts->create;
	mode_t mode = opts != NULL && opts->mode != 0 ? (mode_t)opts->mode : 0600;
	if (create && (size < 1 || size > RATION_SEM_MAX))
		return -EINVAL;
	pthread_once(&self_once, self_init);

	struct shared *sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return -ENOMEM;
	int fd = -1;
	for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
		if (create) {
			fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
			if (fd >= 0) {
				(void)fchmod(fd, mode); /* exactly @mode, whatever the umask */
				rc = seg_create(fd, size, &sh->g);
				if (rc != 0)
					shm_unlink(path);
				break;
			}
			if (errno != EEXIST) {
				rc = -errno;
				break;
			}
		}
		fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
		if (fd >= 0) {
			rc = seg_attach(fd, &sh->g);
			break;
		}
		rc = -errno;
		if (!create || errno != ENOENT)
			break; /* with create: unlinked in between, try again */
	}
	if (fd >= 0)
		close(fd); /* the mapping keeps the object */
	if (rc == 0) {
		struct wake wk;
	wk.n = 0;
		unsigned gen;
		pid_t pid;
		uint64_t start;
		self_get(&pid, &start, &gen);
		if ((rc = seg_lock(sh->g, &wk)) == 0) {
			rc = claim_holder(sh->g, &sh->hi);
			if (rc != 0) {
				maybe_reclaim(sh->g, &wk); /* slots of the dead */
				rc = claim_holder(sh->g, &sh->hi);
			}
			sh->gen = gen;
			unlock_wake(sh->g, &wk);
		}
		if (rc == 0 && (rc = ration__sem_new_backend(&shared_ops, sh, path + 1, out)) != 0) {
			seg_lock(sh->g, &wk);
			atomic_store_explicit(&sh->g->holder[sh->hi].state, HOLDER_FREE,
					      memory_order_relaxed);
			unlock_wake(sh->g, &wk);
		}
		if (rc != 0)
			munmap(sh->g, sizeof(*sh->g));
	}
	if (rc != 0)
		free(sh);
	return rc;
}

int
ration_sem_unlink_shared(const char *name)
{
	char path[256];
	if (shm_path(name, path, sizeof(path)) != 0)
		return -EINVAL;
	return shm_unlink(path) == 0 ? 0 : -errno;
}

static int
sh_acquire_lease(ration_sem_t *s, ration_ctx_t *ctx, int64_t n, ration_lease_t *out)
{
	int rc = ration_sem_acquire(s, ctx, n);
	if (rc != 0)
		return rc;
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	if ((rc = lock_bound(sh, &wk)) != 0)
		return rc;
	struct shm_lease *l = NULL, *tab = g->holder[sh->hi].leases;
	for (unsigned i = 0; i < SHM_LEASES && l == NULL; i++)
		if (tab[i].fence == 0)
			l = &tab[i];
	if (l == NULL) {
		(void)give_back_locked(sh, n, &wk);
		rc = -EBUSY;
	} else {
		l->n = n;
		l->fence = atomic_fetch_add_explicit(&g->fence, 1, memory_order_relaxed) + 1;
		*out = (ration_lease_t){.n = n, .fence = l->fence, .expires_ns = RATION_FOREVER};
	}
	unlock_wake(g, &wk);
	return rc;
}

static int
sh_lease_release(ration_sem_t *s, const ration_lease_t *lease)
{
	struct shared *sh = s->impl;
	struct shm_seg *g = sh->g;
	struct wake wk;
	wk.n = 0;
	int rc = lock_bound(sh, &wk);
	if (rc != 0)
		return rc;
	struct shm_lease *tab = g->holder[sh->hi].leases;
	rc = -ESTALE;
	for (unsigned i = 0; i < SHM_LEASES; i++) {
		if (lease->fence != 0 && tab[i].fence == lease->fence && tab[i].n == lease->n) {
			/* -EOVERFLOW: its weight already went back by a plain
			 * release; the lease is stale either way. */
			if (give_back_locked(sh, lease->n, &wk) == 0)
				rc = 0;
			tab[i].fence = 0;
			break;
		}
	}
	unlock_wake(g, &wk);
	return rc;
}

static const struct ration__sem_ops shared_ops = {
	.acquire = sh_acquire,
	.try_acquire = sh_try_acquire,
	.release = sh_release,
	.resize = sh_resize,
	.close = sh_close,
	.available = sh_available,
	.stats = sh_stats,
	.free = sh_free,
	.acquire_lease = sh_acquire_lease,
	.lease_release = sh_lease_release,
};
