/* group.c - the spawner: errgroup semantics plus weights from a budget.
 * This file: go and try_go, and running the group's own queued tasks
 * while go() waits for room. The task body, its finish and its record
 * are in group_task.c; new, wait, stats and free in group_lifecycle.c;
 * the object and what the three share in internal/group_impl.h.
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
 * The task wrapper (ration__group_task_main, group_task.c) runs on a
 * pool thread: it reads the tick clock (internal/stats_clock.h: wait and
 * run time, for the statistics), measures with account.h only if someone
 * reads the figures (on_report or budget_bytes), calls fn with the group
 * ctx, records the first error before cancelling the ctx (so
 * wait() returns the cause, not a sibling's -ECANCELED), calls on_report
 * with no lock held, gives back weight and slot, adds to the
 * statistics (relaxed atomics), returns its record and finally counts
 * itself finished in g->state. That last RMW is its last touch of the
 * group unless wait() sleeps (see ration__group_finish()).
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

#include "internal/compiler.h"
#include "internal/group_impl.h"
#include "internal/pool.h"
#include "internal/sem.h"
#include "internal/stats_clock.h"
#include "ration/ctx.h"
#include "ration/group.h"
#include "ration/pool.h"
#include "ration/sem.h"

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
	if (!ration__sem_is_backend(s) && ration__group_task_of == NULL &&
	    atomic_load_explicit(&g->long_helps, memory_order_relaxed) <
		    HELP_LONG_RUNS) {
		while (!ration__sem_take(s, n)) {
			if (!ration__pool_help(g->pool, ration__group_task_main,
					       is_ours, g))
				return ration_sem_acquire(s, g->ctx, n);
			if (ration__group_last_run_ns < SHORT_TASK_NS)
				ration__pool_helped_short(g->pool);
			bool long_run = ration__group_last_run_ns > HELP_MAX_NS;
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
	bool slot = g->slots != NULL &&
		    !(g->default_limit && ration__group_task_of == g);
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
		ration__group_finish(g);
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

	rc = try ? ration_pool_try_submit(g->pool, ration__group_task_main, t)
		 : ration_pool_submit(g->pool, g->ctx, ration__group_task_main,
				      t);
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
		ration__group_finish(g);
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
