/* group.c - the spawner: errgroup semantics plus weights from a budget.
 *
 * go(g, weight, fn, arg):
 *   1. checks, in the documented order: -EINVAL, -EPIPE (after wait, or a
 *      closed budget), -E2BIG (weight > budget size: at once, before any
 *      wait), the group ctx's error;
 *   2. a limit slot from g->slots (an internal ration_sem of `limit`
 *      units; see below for limit 0), FIFO, bounded by the group ctx;
 *   3. @weight units of the budget, FIFO, bounded by the group ctx;
 *   4. counts the start in g->state (fails with -EPIPE once wait() has
 *      found the group idle) and takes a task record from the cache;
 *   5. ration_pool_submit() with the group ctx (blocks while the pool
 *      queue is full). Any failure gives back everything taken so far, in
 *      reverse order; fn never runs and the caller keeps arg.
 *   Slot before budget: a caller waiting for a slot holds no budget, so
 *   units shared with other groups are never idle while this group is at
 *   its limit; the slot held while waiting for budget is this group's own
 *   and could not run a task anyway. Both queues are FIFO, so callers of
 *   one group reach the budget in the order they got slots.
 *
 * Default limit: a task queued in the pool behind busy threads would hold
 * its weight without using it. With a budget and opts.limit = 0 the group
 * therefore bounds its tasks by the pool's thread limit (read at
 * group_new), so the weight it holds belongs to tasks that have (or are
 * about to get) a thread. Without a budget a queued task holds nothing
 * but its pool queue slot, and limit 0 means no limit (the producer may
 * run ahead by the pool's queue capacity). A go() from inside one of the
 * group's own tasks (nested) does not take a default slot: the parent
 * already holds one, and making it wait for a slot that only its own
 * children could free would deadlock a tree deeper than the pool. An
 * explicit limit applies to every go().
 * docs/group.md gives the reasoning.
 *
 * The task wrapper (task_main) runs on a pool thread: it reads the tick
 * clock (internal/stats_clock.h: wait and run time, for the statistics),
 * measures with account.h only if someone reads the figures (on_report
 * or budget_bytes), calls fn with
 * the group ctx, records the first error before cancelling the ctx (so
 * wait() returns the cause, not a sibling's -ECANCELED), calls on_report
 * with no lock held, gives back weight and slot, adds to the
 * statistics (relaxed atomics), returns its record and finally counts
 * itself finished in g->state. That last RMW is its last touch of the
 * group unless wait() sleeps (see finish()).
 *
 * g->state = pending * STATE_ONE | WAITED | SLEEPER, where pending =
 * started - finished. go() adds STATE_ONE with a CAS that fails once
 * WAITED is set; a task subtracts it. wait() sets WAITED only with a CAS
 * from "pending 0", so a start and the end of the group are ordered by
 * the one word: either wait() sees the start and waits for it, or go()
 * sees WAITED and backs out.
 *
 * Locking: g->mu guards only the list of sleeping wait() callers and the
 * SLEEPER bit's meaning: a wait() sets SLEEPER (CAS) under mu before it
 * sleeps, and the task whose finish takes pending from 1 to 0 while
 * SLEEPER is set does that RMW under mu and wakes the sleepers. Since a
 * sleeper can only see "pending 0" after that locked section, wait() (and
 * a free() after it) never returns while a finishing task may still touch
 * the group. g->cache_mu guards the go-side record cache; finished tasks
 * return records through a lock-free stack (push one, pop all: no ABA).
 * Both locks are leaves; no user code, semaphore or pool call runs under
 * them.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/account.h"
#include "internal/atomic_max.h"
#include "internal/compiler.h"
#include "internal/elastic.h"
#include "internal/hist.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/pool.h"
#include "internal/sem.h"
#include "internal/stats_clock.h"
#include "ration/account.h"
#include "ration/ctx.h"
#include "ration/group.h"
#include "ration/pool.h"
#include "ration/sem.h"

#define WAITED    ((uint64_t)1) /* wait() found the group idle: no more go */
#define SLEEPER   ((uint64_t)2) /* a wait() caller sleeps on g->waiters */
#define STATE_ONE ((uint64_t)4) /* one pending task */

/* A go() that would block runs the group's own queued tasks itself (see
 * acquire_room()) until HELP_LONG_RUNS of them in a row took longer than
 * HELP_MAX_NS: about what the wake-up and the two context switches it
 * saves cost on a VM. Longer tasks would keep the producer from feeding
 * the pool. In a row, because a short task that was preempted once also
 * looks long. */
#define HELP_MAX_NS    20000
#define HELP_LONG_RUNS 4
/* A task run by go() that took less than this is "short": shorter than
 * what a worker on another CPU pays to take it (the queue's, the task's
 * and the group's lines moving over and back at a cache-line round trip
 * of 90-430 ns here), so the pool's workers leave such tasks to the
 * producer (ration__pool_helped_short()). */
#define SHORT_TASK_NS 500

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
	_Atomic uint64_t begun RATION_ALIGNED; /* task_main entered */
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

/* The group whose task this thread is running (innermost), for nested go. */
static _Thread_local ration_group_t *tl_task_of;

/* The run time (ns) of the last task this thread ran: acquire_room()
 * reads it after running a queued task itself rather than time that task
 * once more (a clock read costs ~20 ns on a VM, against ~5 ns for an
 * uncontended atomic add; docs/performance.md). */
static _Thread_local int64_t tl_last_run_ns;

/* ---- helpers ----------------------------------------------------------- */

/* The budget's -EPIPE/-E2BIG verdict for @n, without waiting. An
 * in-process semaphore answers without its lock (stats would take it on
 * every go); a backend semaphore answers through its stats. */
static int
budget_check(ration_sem_t *s, int64_t n)
{
	int rc = ration__sem_verdict(s, n);
	if (rc != -ENOTSUP)
		return rc;
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	if (st.closed)
		return -EPIPE;
	return n > st.size ? -E2BIG : 0;
}

/* Give back what a go() or a finished task holds. */
static void
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
static void
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

/* A record for go(): from the cache, refilled from the returned stack, or
 * newly allocated. NULL only when allocation fails. */
static struct gtask *
take_record(ration_group_t *g)
{
	pthread_mutex_lock(&g->cache_mu);
	struct gtask *t = g->cache;
	if (t == NULL)
		t = atomic_exchange_explicit(&g->returned, NULL,
					     memory_order_acquire);
	if (t != NULL)
		g->cache = t->next;
	pthread_mutex_unlock(&g->cache_mu);
	if (t == NULL)
		t = malloc(sizeof(*t));
	return t;
}

/* Count one start; false once wait() has found the group idle. Relaxed:
 * only the modification order of g->state matters here (see the top). */
static bool
start_one(ration_group_t *g)
{
	uint64_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
	do {
		if (st & WAITED)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		&g->state, &st, st + STATE_ONE, memory_order_relaxed,
		memory_order_relaxed));
	return true;
}

/* Count one task finished (or a start undone). release: this task's
 * statistics and first error are visible to the wait() that sees pending
 * reach 0 (acquire load there); later RMWs on state continue the release
 * sequence. A finish that would wake a sleeping wait() runs under g->mu,
 * so the sleeper returns (and may free g) only after our unlock. */
static void
finish(ration_group_t *g)
{
	uint64_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
	for (;;) {
		if ((st & SLEEPER) && st / STATE_ONE == 1)
			break;
		if (atomic_compare_exchange_weak_explicit(
			    &g->state, &st, st - STATE_ONE,
			    memory_order_release, memory_order_relaxed))
			return;
	}

	struct ration__wake_list wl;
	wake_list_init(&wl);
	pthread_mutex_lock(&g->mu);
	st = atomic_fetch_sub_explicit(&g->state, STATE_ONE,
				       memory_order_release) -
	     STATE_ONE;
	if (st / STATE_ONE == 0) {
		atomic_fetch_and_explicit(&g->state, ~SLEEPER,
					  memory_order_relaxed);
		while (!list_empty(&g->waiters)) {
			struct ration__list *n = list_first(&g->waiters);
			list_remove(n);
			wake_list_add(&wl, RATION_CONTAINER_OF(
						   n, struct group_waiter, node)
						   ->pk);
		}
	}
	pthread_mutex_unlock(&g->mu);
	/* g may be freed from here on: only parkers (never freed) are used. */
	wake_list_wake(&wl);
}

/* Record @err as the group's first error unless one is recorded. */
static void
note_error(ration_group_t *g, int err)
{
	int zero = 0;
	atomic_compare_exchange_strong_explicit(&g->first_error, &zero, err,
						memory_order_relaxed,
						memory_order_relaxed);
}

/* ---- the task ---------------------------------------------------------- */

static void
task_main(void *arg, int status)
{
	struct gtask *t = arg;
	ration_group_t *g = t->g;
	ration_task_report_t r = {.arg = t->arg,
				  .seq = t->seq,
				  .declared = t->weight,
				  .status = status};
	ration_account_t acc;

	atomic_fetch_add_explicit(&g->begun, 1, memory_order_relaxed);
	int64_t start = ration__ticks();
	r.wait_ns = ration__ticks_to_ns(start - t->go_tick);
	if (status == 0) {
		if (g->measure)
			ration_account_begin_with(&acc, g->account_what);
		ration_ctx_t *ctx = g->ctx;
		if (g->el != NULL)
			ctx = ration__claim_begin(g->el, &t->claim, g->ctx,
						  t->weight, start);
		ration_group_t *outer = tl_task_of;
		tl_task_of = g;
		r.status = t->fn(ctx, t->arg);
		tl_task_of = outer;
		if (g->el != NULL)
			ration__claim_end(&t->claim, &r);
		if (g->measure) {
			ration_account_end(&acc, &r);
			if (g->budget_bytes)
				ration__account_judge(&r, g->tolerance);
		} else {
			r.run_ns = ration__ticks_to_ns(ration__ticks() - start);
			r.cpu_ns = -1;
			r.peak_bytes = -1;
			r.allocated_bytes = -1;
		}
	} else {
		/* Discarded by a pool shutdown: fn never ran, nothing used. */
		r.status = -ECANCELED;
		int64_t none = ration_account_available() ? 0 : -1;
		r.peak_bytes = r.allocated_bytes = none;
		r.cpu_ns = (g->account_what & RATION_ACCOUNT_CPU) ? 0 : -1;
	}
	if (r.wait_ns < 0)
		r.wait_ns = 0;
	tl_last_run_ns = r.run_ns;

	if (r.status != 0) {
		/* First error before the cancel: a sibling can only see the
		 * ctx done (acquire load in ration_ctx_err, pairing with the
		 * release store in cancel) after this CAS, so its -ECANCELED
		 * comes later in first_error's modification order and loses.
		 * Relaxed suffices: wait() reads first_error after an acquire
		 * load of state that follows this task's release in finish(). */
		note_error(g, r.status);
		if (!g->keep_going)
			ration_ctx_cancel(g->ctx);
	}
	/* Before the release (documented): on_report may free what fn left
	 * behind while the task's weight still keeps that room. */
	if (g->on_report != NULL)
		g->on_report(&r, g->udata);
	/* A byte budget is about resident memory: what the task freed
	 * leaves the process before its room goes to the next task. Only
	 * for tasks that used a 64th of the budget or more: the next task
	 * re-faults what a purge returned (a 2 MiB zstd context: hundreds
	 * of us), and what small tasks leave dirty is reused by the next
	 * ones (docs/account.md). */
	if (g->budget_bytes && r.peak_bytes >= g->give_back_min)
		ration__account_give_back();
	release_room(g, t->weight, t->slot);

	if (r.status != 0)
		atomic_fetch_add_explicit(&g->failed, 1, memory_order_relaxed);
	if (r.run_ns > 0)
		atomic_fetch_add_explicit(&g->run_ns_total, r.run_ns,
					  memory_order_relaxed);
	if (r.cpu_ns > 0)
		atomic_fetch_add_explicit(&g->cpu_ns_total, r.cpu_ns,
					  memory_order_relaxed);
	if (r.peak_bytes >= 0) {
		ration__atomic_max(&g->max_peak_bytes, r.peak_bytes);
		if (g->budget_bytes && status == 0) {
			unsigned b = ration__account_fit_bucket(r.peak_bytes,
								r.declared);
			atomic_fetch_add_explicit(&g->fit_hist[b], 1,
						  memory_order_relaxed);
			if (r.under_declared)
				atomic_fetch_add_explicit(&g->under_declared, 1,
							  memory_order_relaxed);
			if (r.over_reserved)
				atomic_fetch_add_explicit(&g->over_reserved, 1,
							  memory_order_relaxed);
		}
	}
	atomic_fetch_add_explicit(&g->wait_hist[ration__hist_bucket(r.wait_ns)],
				  1, memory_order_relaxed);
	give_record(g, t);
	finish(g);
}

/* ---- go ---------------------------------------------------------------- */

/* Whether the queued task @arg is one of group @key's. */
static bool
is_ours(void *arg, void *key)
{
	return ((struct gtask *)arg)->g == key;
}

/* @n units of @s for go(). When they are not free at once, the room can
 * only come from this group's tasks finishing, so while the oldest task
 * queued in the pool is one of ours, run it here instead of sleeping: a
 * sleep costs a wake-up and two context switches per task when the
 * workers are not all running (one CPU: every grant used to preempt the
 * worker, ~1 switch per task; docs/performance.md). Not from inside a
 * task (no recursion), not on a backend semaphore (every try is a round
 * trip), and not once a task run here was long (HELP_MAX_NS). FIFO is
 * kept: the fast path fails while anyone is queued on @s. */
static int
acquire_room(ration_group_t *g, ration_sem_t *s, int64_t n)
{
	/* Relaxed: a heuristic; a stale count costs one task run here or not. */
	if (!ration__sem_is_backend(s) && tl_task_of == NULL &&
	    atomic_load_explicit(&g->long_helps, memory_order_relaxed) <
		    HELP_LONG_RUNS) {
		while (!ration__sem_take(s, n)) {
			if (!ration__pool_help(g->pool, task_main, is_ours, g))
				return ration_sem_acquire(s, g->ctx, n);
			if (tl_last_run_ns < SHORT_TASK_NS)
				ration__pool_helped_short(g->pool);
			bool long_run = tl_last_run_ns > HELP_MAX_NS;
			unsigned runs = atomic_load_explicit(
				&g->long_helps, memory_order_relaxed);
			if (long_run || runs != 0)
				atomic_store_explicit(&g->long_helps,
						      long_run ? runs + 1 : 0,
						      memory_order_relaxed);
			if (runs + long_run >= HELP_LONG_RUNS)
				return ration_sem_acquire(s, g->ctx, n);
		}
		return 0;
	}
	return ration_sem_acquire(s, g->ctx, n);
}

/* A failed go(): a group that wait() has finished says -EPIPE, whatever
 * ended the wait (its ctx is cancelled by wait()), and records nothing,
 * since its result is already delivered. Otherwise the failure becomes the
 * group's first error if none is recorded, so a caller that stops feeding
 * on the first failed go() cannot get 0 from wait() for work that never
 * ran. A ctx cancelled by a task's error already holds that error (the
 * task records it before cancelling), so its -ECANCELED loses here;
 * try_go's -EAGAIN is only "no room right now". */
static int
go_fail(ration_group_t *g, int rc, bool try)
{
	if (!(atomic_load_explicit(&g->state, memory_order_relaxed) & WAITED) &&
	    !(try && rc == -EAGAIN))
		note_error(g, rc);
	return rc;
}

/* go_fail() after a failed wait for room, which wait() may have ended. */
static int
go_err(ration_group_t *g, int rc, bool try)
{
	if (atomic_load_explicit(&g->state, memory_order_relaxed) & WAITED)
		return -EPIPE;
	return go_fail(g, rc, try);
}

static int
go_common(ration_group_t *g, int64_t weight, ration_group_fn fn, void *arg,
	  bool try)
{
	int64_t go_tick = ration__ticks();
	int rc;

	if (g == NULL)
		return -EINVAL;
	if (fn == NULL || weight <= 0)
		return go_fail(g, -EINVAL, try);
	if (atomic_load_explicit(&g->state, memory_order_relaxed) & WAITED)
		return -EPIPE;
	if (g->budget != NULL && (rc = budget_check(g->budget, weight)) != 0)
		return go_fail(g, rc, try);
	if ((rc = ration_ctx_err(g->ctx)) != 0)
		return go_err(g, rc, try);

	/* Nested go under the default limit takes no slot (see the top). */
	bool slot = g->slots != NULL && !(g->default_limit && tl_task_of == g);
	if (slot) {
		rc = try ? ration_sem_try_acquire(g->slots, 1)
			 : acquire_room(g, g->slots, 1);
		if (rc != 0)
			return go_err(g, rc, try);
	}
	if (g->budget != NULL) {
		rc = try ? ration_sem_try_acquire(g->budget, weight)
			 : acquire_room(g, g->budget, weight);
		if (rc != 0) {
			if (slot)
				(void)ration_sem_release(g->slots, 1);
			return go_err(g, rc, try);
		}
	}

	if (!start_one(g)) {
		release_room(g, weight, slot);
		return -EPIPE;
	}
	struct gtask *t = take_record(g);
	if (t == NULL) {
		/* Recorded while this start is pending: wait() cannot
		 * finish in between and return without it. */
		(void)go_fail(g, -ENOMEM, try);
		release_room(g, weight, slot);
		finish(g);
		return -ENOMEM;
	}
	t->g = g;
	t->fn = fn;
	t->arg = arg;
	t->weight = weight;
	t->go_tick = go_tick;
	t->slot = slot;
	/* The number is taken before the submit (the task may run at once)
	 * and given back if the submit fails and no later go() took one, so
	 * seqs stay dense unless go() calls on several threads fail. */
	t->seq = atomic_fetch_add_explicit(&g->seqs, 1, memory_order_relaxed) +
		 1;

	rc = try ? ration_pool_try_submit(g->pool, task_main, t)
		 : ration_pool_submit(g->pool, g->ctx, task_main, t);
	if (rc != 0) {
		/* No wait() can have finished while this start is pending, so
		 * wait() did not end the submit: record before undoing. */
		(void)go_fail(g, rc, try);
		uint64_t mine = t->seq;
		(void)atomic_compare_exchange_strong_explicit(
			&g->seqs, &mine, mine - 1, memory_order_relaxed,
			memory_order_relaxed);
		release_room(g, weight, slot);
		give_record(g, t);
		finish(g);
		return rc;
	}
	return 0;
}

int
ration_group_go(ration_group_t *g, int64_t weight, ration_group_fn fn,
		void *arg)
{
	return go_common(g, weight, fn, arg, false);
}

int
ration_group_try_go(ration_group_t *g, int64_t weight, ration_group_fn fn,
		    void *arg)
{
	return go_common(g, weight, fn, arg, true);
}

/* ---- life cycle -------------------------------------------------------- */

int
ration_group_new(ration_ctx_t *parent, const ration_group_opts_t *opts,
		 ration_group_t **out)
{
	ration_group_opts_t o = {0};

	if (out == NULL)
		return -EINVAL;
	if (opts != NULL)
		o = *opts;
	if (o.limit < 0 || o.limit > RATION_SEM_MAX || !(o.tolerance >= 0) ||
	    (o.elastic && o.budget == NULL))
		return -EINVAL;
	if (o.budget_bytes && !ration_account_available())
		return -ENOTSUP; /* docs/decisions/009-budget-bytes-needs-jemalloc.md */
	if (o.pool == NULL && (o.pool = ration_pool_default()) == NULL)
		return -ENOMEM;

	bool default_limit = o.limit == 0 && o.budget != NULL;
	if (default_limit) {
		ration_pool_stats_t ps;
		ration_pool_stats(o.pool, &ps);
		o.limit = ps.max_threads > 0 ? (int64_t)ps.max_threads : 1;
	}

	ration__ticks_init(); /* before the first go() reads a tick */
	ration_group_t *g = aligned_alloc(RATION_CACHELINE, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	memset(g, 0, sizeof(*g));
	int rc = o.budget != NULL ? ration__elastic_new(&o, &g->el) : 0;
	if (rc == 0 && (rc = ration_ctx_with_cancel(parent, &g->ctx)) != 0)
		ration__elastic_free(g->el);
	if (rc != 0) {
		free(g);
		return rc;
	}
	if (o.limit > 0 &&
	    (rc = ration_sem_new(o.limit,
				 &(ration_sem_opts_t){.name = "group.limit"},
				 &g->slots)) != 0) {
		ration__elastic_free(g->el);
		ration_ctx_unref(g->ctx);
		free(g);
		return rc;
	}
	g->pool = o.pool;
	g->budget = o.budget;
	g->limit = o.limit;
	g->default_limit = default_limit;
	g->keep_going = o.keep_going;
	g->budget_bytes = o.budget_bytes;
	g->tolerance = o.tolerance > 0 ? o.tolerance : 0.05;
	if (o.budget_bytes && o.budget != NULL) {
		ration_sem_stats_t bs;
		ration_sem_stats(o.budget, &bs);
		g->give_back_min = bs.size / 64;
	}
	g->measure = o.on_report != NULL || o.budget_bytes;
	g->account_what = o.measure_cpu ? RATION_ACCOUNT_CPU : 0;
	g->on_report = o.on_report;
	g->udata = o.udata;
	atomic_init(&g->max_peak_bytes, -1);
	pthread_mutex_init(&g->cache_mu, NULL);
	pthread_mutex_init(&g->mu, NULL);
	list_init(&g->waiters);
	*out = g;
	return 0;
}

ration_ctx_t *
ration_group_ctx(ration_group_t *g)
{
	return g != NULL ? g->ctx : NULL;
}

int
ration_group_wait(ration_group_t *g)
{
	if (g == NULL)
		return -EINVAL;

	struct group_waiter me = {.pk = ration__parker_self()};
	list_init(&me.node);
	pthread_mutex_lock(&g->mu);
	/* Tasks may still start (nested go from a running task) until the
	 * group is idle; from the CAS that sets WAITED, none can. acquire:
	 * see the statistics and first error of every finished task (pairs
	 * with the release RMWs in finish()). */
	uint64_t st = atomic_load_explicit(&g->state, memory_order_acquire);
	for (;;) {
		if (st / STATE_ONE == 0) {
			if (atomic_compare_exchange_weak_explicit(
				    &g->state, &st, st | WAITED,
				    memory_order_acquire, memory_order_acquire))
				break;
			continue;
		}
		if (!(st & SLEEPER) &&
		    !atomic_compare_exchange_weak_explicit(
			    &g->state, &st, st | SLEEPER, memory_order_acquire,
			    memory_order_acquire))
			continue;
		list_push_back(&g->waiters, &me.node);
		pthread_mutex_unlock(&g->mu);
		ration__park(me.pk, RATION_FOREVER);
		pthread_mutex_lock(&g->mu);
		if (list_linked(&me.node))
			list_remove(&me.node); /* spurious wake */
		st = atomic_load_explicit(&g->state, memory_order_acquire);
	}
	int err = atomic_load_explicit(&g->first_error, memory_order_relaxed);
	pthread_mutex_unlock(&g->mu);

	/* As errgroup: the ctx ends once the work is done. Also ends any
	 * go() still blocked for room; it returns -EPIPE (go_err). */
	ration_ctx_cancel(g->ctx);
	return err;
}

void
ration_group_stats(const ration_group_t *cg, ration_group_stats_t *out)
{
	ration_group_t *g = (ration_group_t *)cg;

	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	out->max_peak_bytes = -1;
	if (g == NULL)
		return;

	uint64_t hist[RATION_HIST_BUCKETS], total = 0;
	for (unsigned i = 0; i < RATION_HIST_BUCKETS; i++) {
		hist[i] = atomic_load_explicit(&g->wait_hist[i],
					       memory_order_relaxed);
		total += hist[i];
	}
	uint64_t pending =
		atomic_load_explicit(&g->state, memory_order_relaxed) /
		STATE_ONE;
	uint64_t begun = atomic_load_explicit(&g->begun, memory_order_relaxed);
	out->tasks = total;
	out->started = total + pending;
	out->running = begun > total ? begun - total : 0;
	out->failed = atomic_load_explicit(&g->failed, memory_order_relaxed);
	out->under_declared =
		atomic_load_explicit(&g->under_declared, memory_order_relaxed);
	out->over_reserved =
		atomic_load_explicit(&g->over_reserved, memory_order_relaxed);
	for (unsigned i = 0; i < RATION_FIT_BUCKETS; i++)
		out->fit_hist[i] = atomic_load_explicit(&g->fit_hist[i],
							memory_order_relaxed);
	out->max_peak_bytes =
		atomic_load_explicit(&g->max_peak_bytes, memory_order_relaxed);
	out->run_ns_total =
		atomic_load_explicit(&g->run_ns_total, memory_order_relaxed);
	out->cpu_ns_total =
		atomic_load_explicit(&g->cpu_ns_total, memory_order_relaxed);
	out->first_error =
		atomic_load_explicit(&g->first_error, memory_order_relaxed);
	out->limit = g->limit;
	if (g->el != NULL)
		ration__elastic_stats(g->el, out);

	/* Percentiles from the log2 histogram: the upper bound of the bucket
	 * holding the rank (the last, open bucket reports its lower bound). */
	if (total == 0)
		return;
	uint64_t rank50 = (total * 50 + 99) / 100,
		 rank99 = (total * 99 + 99) / 100;
	uint64_t seen = 0;
	for (unsigned i = 0; i < RATION_HIST_BUCKETS; i++) {
		if (hist[i] == 0)
			continue;
		int64_t bound = i + 1 < RATION_HIST_BUCKETS
					? (int64_t)1 << (i + 1)
					: (int64_t)1 << i;
		if (seen < rank50 && seen + hist[i] >= rank50)
			out->wait_p50_ns = bound;
		if (seen < rank99 && seen + hist[i] >= rank99)
			out->wait_p99_ns = bound;
		seen += hist[i];
	}
}

void
ration_group_free(ration_group_t *g)
{
	if (g == NULL)
		return;
	(void)ration_group_wait(g);
	struct gtask *lists[2] = {
		g->cache,
		atomic_load_explicit(&g->returned, memory_order_acquire)};
	for (int i = 0; i < 2; i++) {
		for (struct gtask *t = lists[i], *next; t != NULL; t = next) {
			next = t->next;
			free(t);
		}
	}
	if (g->slots != NULL)
		(void)ration_sem_free(g->slots);
	ration__elastic_free(g->el);
	ration_ctx_unref(g->ctx);
	pthread_mutex_destroy(&g->cache_mu);
	pthread_mutex_destroy(&g->mu);
	free(g);
}
