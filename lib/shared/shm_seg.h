/* shm_seg.h (internal) - what the files of the shared backend share: the
 * handle, making and checking the segment, the robust lock with its
 * recount and holder slots (shm_seg.c); liveness locks (shm_alive.c);
 * granting from the queue (shm_queue.c); a queued caller's wait
 * (shm_wait.c); the lanes and the registry (shm_lanes.c); consume
 * (shm_consume.c); the operations and the ops table (shm_sem.c). */
#ifndef RATION_INTERNAL_SHM_SEG_H
#define RATION_INTERNAL_SHM_SEG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ration/ctx.h"
#include "shm.h"

/* A handle: this process's view of one segment. */
struct ration__shm {
	struct shm_seg *g; /* immutable */
	uint64_t id;       /* immutable; unique in the process, never reused */
	uint32_t hi;       /* g->mu; our holder slot */
	unsigned gen;      /* g->mu; fork generation hi was claimed in */
	uint64_t token;    /* g->mu; the token of our claim of hi */
	int fd;            /* the shm object, an open file description of
				  * our own (reopened in a fork child): holds
				  * the OFD lock of our holder slot; -1 if a
				  * fork child could not reopen it */
	struct ration__shm *reg_next; /* registry lock (shm_seg.c) */
};

/* Waiter slots to wake once mu is dropped. */
struct ration__shm_wake {
	unsigned n;
	uint16_t idx[SHM_WAITERS];
};

/* The lanes a thread has bound, per handle id: a few, looked up by the
 * fast path. gen is the fork generation they were bound in; a fork child
 * starts over (its parent's lanes are not its own). */
#define SHM_LANE_CACHE 4
struct ration__shm_lane_ref {
	uint64_t id;           /* handle id; 0 = empty */
	uint32_t li;           /* index in g->lane */
	struct shm_lane *lane; /* &g->lane[li] */
	struct shm_seg *g;     /* the handle's segment: kept here so that the
				* fast path needs no load through the handle */
};
struct ration__shm_lanes {
	unsigned gen;
	bool keyed; /* the thread-exit destructor is armed */
	struct ration__shm_lane_ref e[SHM_LANE_CACHE];
};

/* Moves in every fork child: a handle or lane cache whose gen differs was
 * made by an ancestor process. */
extern _Atomic unsigned ration__shm_fork_gen;

/* "/name" from @name; -EINVAL if it cannot be a shm object name. */
int ration__shm_path(const char *name, char *buf, size_t cap);
/* Size @fd and fill a new segment in; then mark it READY. */
int ration__shm_create(int fd, int64_t size, struct shm_seg **out);
/* Map an existing segment and check it is ours and complete: -EPROTO. */
int ration__shm_attach(int fd, struct shm_seg **out);
/* Once per process: the atfork handler and the thread-exit key. */
void ration__shm_init(void);

/* Liveness (shm_alive.c): the OFD lock of holder slot @i through @fd.
 * Take it: 0, -EAGAIN (another description holds it) or -ENOLCK (no OFD
 * locks here). */
int ration__shm_slot_lock(int fd, uint32_t i);
void ration__shm_slot_unlock(int fd, uint32_t i);
/* Whether another open file description holds the lock of slot @i (a
 * probe through @fd, which sees only others' locks); true when it cannot
 * tell: a slot is never judged dead on doubt. */
bool ration__shm_slot_locked(int fd, uint32_t i);
/* Give descriptor @fd an open file description of its own, of the same
 * file (in a fork child, the inherited one is shared with the parent, and
 * with it the parent's locks): @fd, or -1 (and @fd closed) if impossible
 * (/proc not mounted) or if @fd < 0. */
int ration__shm_reopen(int fd);

/* A lock deadline: take g->mu only if it is free now. */
#define SHM_TRY INT64_MIN

/* Lock g->mu, waiting at most until @deadline_ns (RATION_FOREVER: no
 * limit; SHM_TRY: not at all) and only while @ctx (may be NULL) is not
 * done: a process stopped while it owns mu must not hold callers past
 * their deadlines. EOWNERDEAD is answered by a recount; waiter slots left
 * without the lock are settled. Return 0, the wait's error (-ETIMEDOUT,
 * @ctx's), -EAGAIN (SHM_TRY and busy) or -EPROTO (unrecoverable). */
int ration__shm_lock_until(struct ration__shm *sh, struct ration__shm_wake *wk,
			   ration_ctx_t *ctx, int64_t deadline_ns);
/* Lock g->mu with no deadline (calls that have none: release, resize...). */
static inline int
ration__shm_lock(struct ration__shm *sh, struct ration__shm_wake *wk)
{
	return ration__shm_lock_until(sh, wk, NULL, RATION_FOREVER);
}
/* Unlock, then wake the waiters collected in @wk. */
void ration__shm_unlock_wake(struct shm_seg *g, struct ration__shm_wake *wk);
/* Lock as ration__shm_lock_until(), and bind @sh's holder slot to this
 * process (a fork child claims its own on first use). 0, an error of
 * ration__shm_lock_until(), -EBUSY (no holder slot), -ENOLCK (no lock to
 * prove we live: no OFD locks, or a fork child could not reopen the
 * object) or -ESTALE (our slot was reclaimed: we were judged dead, which
 * takes closing the handle's descriptor behind its back). */
int ration__shm_lock_bound(struct ration__shm *sh, struct ration__shm_wake *wk,
			   ration_ctx_t *ctx, int64_t deadline_ns);
/* Look for dead processes if nobody has for a while, or if a recount is
 * owed; recount when one is found (mu held). */
void ration__shm_maybe_reclaim(struct ration__shm *sh,
			       struct ration__shm_wake *wk);
/* Weight @sh holds: its holder's held plus its lanes' (mu held). */
int64_t ration__shm_held(struct ration__shm *sh);

/* Grant from the head, in ticket order, while it fits (mu held). */
void ration__shm_grant(struct shm_seg *g, struct ration__shm_wake *wk);
/* Decide waiter @w's outcome (mu held): it leaves the queue now. False
 * if it had already left on its own (ABANDONED): nothing changed. */
bool ration__shm_decide(struct shm_seg *g, struct shm_waiter *w, int outcome,
			struct ration__shm_wake *wk);
/* Clear SLOW if nothing needs it any more (mu held). */
void ration__shm_clear_slow(struct shm_seg *g);

/* A queued caller (shm_wait.c). Queue the caller for @n (mu held, bound):
 * a free waiter slot, a ticket, SLOW up; NULL when every slot is taken. */
struct shm_waiter *ration__shm_enqueue(struct ration__shm *sh, int64_t n,
				       struct ration__shm_wake *wk);
/* Wait in slot @w (mu not held) until its outcome is decided or the wait
 * must end by @ctx or @deadline_ns; then settle the slot, under mu if it
 * can be had soon. Return 0 (weight is ours) or an error. */
int ration__shm_wait(struct ration__shm *sh, struct shm_waiter *w,
		     ration_ctx_t *ctx, int64_t deadline_ns);
/* Raise max_in_use to size - @avail_after if that is higher. */
void ration__shm_note_in_use(struct shm_seg *g, int64_t avail_after);

/* shm_lanes.c's part of ration__shm_init() and of the atfork child (which
 * also reopens every registered handle's descriptor). */
void ration__shm_lanes_init(void);
void ration__shm_lanes_atfork_child(void);
/* The ops of a shared handle (shm_sem.c). */
struct ration__sem_ops;
extern const struct ration__sem_ops ration__shm_ops;

/* The handle registry: handles alive in this process, by id. */
void ration__shm_register(struct ration__shm *sh);
/* Bind a lane of @sh to the calling thread, recorded in @lc: return it,
 * or NULL (no free lane or cache entry: this thread stays on the slow
 * path for @sh, which is correct, only slower). */
struct ration__shm_lane_ref *ration__shm_lane_bind(
	struct ration__shm *sh, struct ration__shm_lanes *lc);
/* The calling thread's lane for @sh, binding one if mu is free; NULL =
 * the slow path (shm_sem.c). */
struct ration__shm_lane_ref *ration__shm_lane_get(struct ration__shm *sh);
/* ration_sem_consume() on a shared semaphore (shm_consume.c). */
struct ration_sem;
int ration__shm_consume(struct ration_sem *s, int64_t n);

/* ration_sem_free(): -EBUSY if @sh holds weight or has a caller queued;
 * else fold and free its lanes and holder slot, unregister it. */
int ration__shm_release_handle(struct ration__shm *sh);

#endif
