/* pool_impl.h (internal) - the pool object and what the three files of
 * the pool share, and nobody else includes:
 *   lib/pool.c            submit, try_submit, the wake policy a submit
 *                         applies, and the group's helping entry points
 *   lib/pool_worker.c     the workers: waiting, spinning and parking for
 *                         work, starting and waking them, the watchdog
 *   lib/pool_lifecycle.c  new, the default pool, resize, stats, shutdown,
 *                         free
 * What the group asks of the pool is in internal/pool.h. pool.c's header
 * comment has the design, the wake policy and the locking rules.
 */
#ifndef RATION_INTERNAL_POOL_IMPL_H
#define RATION_INTERNAL_POOL_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal/compiler.h"
#include "internal/futex_mutex.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/taskq.h"
#include "internal/timer.h"
#include "ration/pool.h"
#include "ration/sem.h"

/* A parked worker: lives on the worker's stack while it is in p->idle. */
struct idle_worker {
	struct ration__list node; /* p->mu */
	struct ration__parker *pk;
};

struct ration_pool {
	/* Written on every task, by the submitter and by the worker that
	 * takes it, always under mu: all on the lock word's cache line, so
	 * a hand-over of the lock moves one line (plus the task's slot). */
	struct ration__lock mu RATION_ALIGNED;
	struct queue q;     /* mu */
	uint64_t taken;     /* mu: tasks taken from the queue */
	uint64_t running;   /* mu */
	uint64_t completed; /* mu */

	/* Polled by a spinning worker, read by every submit (kick). */
	_Atomic size_t queued_hint RATION_ALIGNED; /* atomic mirror of q.len */
	_Atomic unsigned spinning; /* atomic: workers spinning for work */
	/* atomic: short tasks a submitter ran itself; see step_back() */
	_Atomic uint64_t short_helps;

	/* Read on every task, written rarely (state changes, high-water
	 * marks): shared in every CPU's cache while nothing changes. */
	ration_sem_t *slots
		RATION_ALIGNED; /* immutable; NULL = unbounded queue */
	int64_t slot_batch;   /* immutable: slots a worker gives back at once */
	unsigned ncpu;        /* immutable */
	unsigned max_threads; /* mu */
	unsigned min_threads; /* mu */
	unsigned nthreads;    /* mu: alive, until after thread_fini */
	unsigned nleaving;    /* mu: of nthreads, those on their way out */
	unsigned nidle;       /* mu */
	bool shutdown;        /* mu */
	bool watchdog_armed;  /* mu: so a submit arms it at most once */
	uint64_t max_running; /* mu: high-water mark */
	uint64_t max_queued;  /* mu: high-water mark */

	struct ration__list idle; /* mu: struct idle_worker */
	struct ration__list
		drainers;      /* mu: struct idle_worker waiting in shutdown */
	unsigned next_index;   /* mu: for thread names */
	struct spares spares;  /* mu: emptied chunks kept for reuse */
	uint64_t unqueued;     /* mu: tasks taken out by run_queued_here() */
	uint64_t taken_at_arm; /* mu: taken when the watchdog was armed */
	uint64_t submitted_at_arm; /* mu: submitted, likewise */
	struct ration__timer watchdog;
	int64_t idle_ns;             /* immutable */
	bool is_default;             /* immutable */
	char name[16];               /* immutable */
	void (*thread_init)(void *); /* immutable */
	void (*thread_fini)(void *); /* immutable */
	void *udata;                 /* immutable */
	uint64_t discarded;          /* mu */
	_Atomic uint64_t rejected;   /* atomic */
};

/* Tasks accepted: each is queued, taken by a worker, or taken out by a
 * shutdown. Derived so that a submit writes no counter of its own. */
static inline uint64_t
submitted_locked(const ration_pool_t *p)
{
	return p->taken + p->q.len + p->unqueued;
}

/* Take the oldest task to run it; the queue is not empty; p->mu held. */
static inline struct task
take_locked(ration_pool_t *p)
{
	struct task t = queue_pop(&p->q, &p->spares);
	p->taken++;
	atomic_store_explicit(&p->queued_hint, p->q.len, memory_order_relaxed);
	if (++p->running > p->max_running)
		p->max_running = p->running;
	return t;
}

/* How many workers may be awake at once: one per CPU, up to the thread
 * limit; when the submitter is not one of our workers it is running on a
 * CPU itself, so one fewer (at least one). Waking a worker for the
 * submitter's CPU only makes the two take turns on it, and each turn is a
 * context switch (W3 with a group: 3 threads on 2 CPUs). If the submitter
 * then stops submitting (it waits, or blocks), the watchdog brings the
 * missing worker (watchdog_fire). p->mu held. */
static inline unsigned
awake_target(const ration_pool_t *p, bool foreign_submitter)
{
	unsigned want = p->ncpu < p->max_threads ? p->ncpu : p->max_threads;
	if (foreign_submitter && want == p->ncpu && want > 1)
		want--;
	return want;
}

/* The pool whose worker this thread is, or NULL: a submit from one of the
 * pool's own tasks does not occupy an extra CPU (awake_target()). Set by
 * each worker as it starts (pool_worker.c). Hidden, so a reference from
 * the shared library's other files needs no symbol look-up, as when it
 * was one file's static. */
extern _Thread_local ration_pool_t *ration__pool_worker_of RATION_HIDDEN;

/* pool.c: after a push, wake or start a worker, or arm the watchdog, by
 * the wake policy (pool.c's header comment); p->mu held. */
void ration__pool_kick_locked(ration_pool_t *p, struct ration__wake_list *wl);

/* pool_worker.c: start one worker; p->mu held. Return 0 or -EAGAIN. */
int ration__pool_start_worker_locked(ration_pool_t *p);

/* pool_worker.c: wake one parked worker, or start one; p->mu held.
 * Return false if neither was possible. */
bool ration__pool_wake_one_locked(ration_pool_t *p,
				  struct ration__wake_list *wl);

/* pool_worker.c: move every parked worker of @list (struct idle_worker)
 * to @wl; the caller's lock guards @list. */
void ration__pool_wake_all_locked(struct ration__list *list,
				  struct ration__wake_list *wl);

/* pool_worker.c: arm the watchdog for queued work nobody was woken for,
 * if it is not armed and a thread could be woken or started; p->mu held. */
void ration__pool_watchdog_arm_locked(ration_pool_t *p,
				      struct ration__wake_list *wl);

/* pool_worker.c: set up @p's watchdog timer (not armed); by new. */
void ration__pool_watchdog_init(ration_pool_t *p);

#endif
