/* group_impl.h (internal) - the group object and what the three files of
 * the spawner share, and nobody else includes:
 *   lib/group.c            go and try_go, and helping while go() waits
 *   lib/group_task.c       the task body on a pool thread, its finish and
 *                          its statistics
 *   lib/group_lifecycle.c  new, ctx, wait, stats, free
 * group.c's header comment has the design, the state word and the
 * locking rules.
 */
#ifndef RATION_INTERNAL_GROUP_IMPL_H
#define RATION_INTERNAL_GROUP_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal/compiler.h"
#include "internal/elastic.h"
#include "internal/hist.h"
#include "internal/list.h"
#include "internal/park.h"
#include "ration/group.h"
#include "ration/pool.h"
#include "ration/sem.h"

#define WAITED    ((uint64_t)1) /* wait() found the group idle: no more go */
#define SLEEPER   ((uint64_t)2) /* a wait() caller sleeps on g->waiters */
#define STATE_ONE ((uint64_t)4) /* one pending task */

/* One go()'s task from submit to finish; recycled through the cache. */
struct gtask {
	struct gtask *next; /* cache_mu, or the returned stack */
	ration_group_t *g;
	ration_group_fn fn;
	void *arg;
	int64_t weight;
	uint64_t seq; /* the report's seq */
	int64_t go_tick; /* when go() was called (internal/stats_clock.h), for wait_ns */
	bool slot;                  /* holds a limit slot */
	struct ration__claim claim; /* while fn runs (budget groups) */
};

/* A caller of ration_group_wait(); lives on its stack while linked. */
struct group_waiter {
	struct ration__list node; /* g->mu */
	struct ration__parker *pk;
};

struct ration_group {
	ration_ctx_t *ctx;    /* immutable; one reference, dropped by free */
	ration_pool_t *pool;  /* immutable, borrowed */
	ration_sem_t *budget; /* immutable, borrowed; NULL = no budget */
	ration_sem_t *slots;  /* immutable, owned; NULL = no limit */
	struct ration__elastic *el; /* immutable, owned; NULL = no budget */
	int64_t limit;              /* immutable: units of slots, 0 = none */
	bool default_limit;         /* immutable: opts.limit was 0 */
	bool keep_going;            /* immutable */
	bool budget_bytes;          /* immutable */
	double tolerance;      /* immutable: opts.tolerance or its default */
	int64_t give_back_min; /* immutable: budget_bytes, a task peak from which
				* its freed memory is handed back (1/64 of the
				* budget's size at group_new) */
	bool measure;          /* immutable: on_report or budget_bytes */
	unsigned
		account_what; /* immutable: ration_account_begin_with() flags */
	void (*on_report)(const ration_task_report_t *r,
			  void *udata); /* immutable */
	void *udata;                    /* immutable */

	/* go side */
	pthread_mutex_t cache_mu RATION_ALIGNED;
	struct gtask *cache; /* cache_mu: records ready for go() */
	_Atomic unsigned
		long_helps; /* atomic: tasks run by go() in a row that were long */

	/* shared by go, tasks and wait */
	_Atomic uint64_t state RATION_ALIGNED; /* atomic; see above */
	struct gtask *_Atomic returned; /* atomic stack: push one, pop all */
	_Atomic int first_error;        /* atomic; 0 until a task or go fails */
	_Atomic uint64_t seqs;          /* atomic: seq of the last go */

	/* statistics, written by tasks (relaxed atomics: exact when idle) */
	_Atomic uint64_t begun RATION_ALIGNED; /* the task body entered */
	_Atomic uint64_t failed;
	_Atomic uint64_t under_declared;
	_Atomic uint64_t over_reserved;
	_Atomic uint64_t fit_hist[RATION_FIT_BUCKETS];
	_Atomic int64_t max_peak_bytes;
	_Atomic int64_t run_ns_total;
	_Atomic int64_t cpu_ns_total;
	_Atomic uint64_t
		wait_hist[RATION_HIST_BUCKETS]; /* sum = tasks finished */

	pthread_mutex_t mu;
	struct ration__list waiters; /* mu: struct group_waiter */
};

/* The group whose task this thread is running (innermost), for nested go.
 * Set by the task body (group_task.c). Hidden, as for the pool's
 * ration__pool_worker_of. */
extern _Thread_local ration_group_t *ration__group_task_of RATION_HIDDEN;

/* The run time (ns) of the last task this thread ran: acquire_room()
 * reads it after running a queued task itself rather than time that task
 * once more (a clock read costs ~20 ns on a VM, against ~5 ns for an
 * uncontended atomic add; docs/performance.md). Set by the task body. */
extern _Thread_local int64_t ration__group_last_run_ns RATION_HIDDEN;

/* Give back what a go() or a finished task holds. */
static inline void
release_room(ration_group_t *g, int64_t weight, bool slot)
{
	if (g->budget != NULL)
		(void)ration_sem_release(g->budget, weight);
	if (slot)
		(void)ration_sem_release(g->slots, 1);
}

/* Return a record: push it on the lock-free stack. release: the record's
 * last writes happen before the go() that pops it reuses it; pairs with
 * the acquire exchange in take_record(). */
static inline void
give_record(ration_group_t *g, struct gtask *t)
{
	struct gtask *head =
		atomic_load_explicit(&g->returned, memory_order_relaxed);
	do
		t->next = head;
	while (!atomic_compare_exchange_weak_explicit(&g->returned, &head, t,
						      memory_order_release,
						      memory_order_relaxed));
}

/* Record @err as the group's first error unless one is recorded. */
static inline void
note_error(ration_group_t *g, int err)
{
	int zero = 0;
	atomic_compare_exchange_strong_explicit(&g->first_error, &zero, err,
						memory_order_relaxed,
						memory_order_relaxed);
}

/* group_task.c: the pool task of every go(): runs the record @arg's fn
 * (or reports it discarded when @status is not 0), then gives back its
 * room and record and finishes it. */
void ration__group_task_main(void *arg, int status);

/* group_task.c: count one task finished (or a start undone). */
void ration__group_finish(ration_group_t *g);

#endif
