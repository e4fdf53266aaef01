/* ration/group.h - the spawner: errgroup semantics plus weights.
 *
 * ration_group_go(g, weight, fn, arg) blocks the caller until @weight units
 * are acquired from opts.budget (FIFO) and a opts.limit slot is free, then
 * runs fn on the pool. The units go back when fn returns. The semaphore is
 * the queue, so memory stays bounded however many tasks are offered.
 *
 *	ration_sem_t *mem;  ration_group_t *g;
 *	ration_sem_new(256 << 20, NULL, &mem);              // 256 MiB
 *	ration_group_opts_t o = { .budget = mem, .limit = 8 };
 *	ration_group_new(NULL, &o, &g);
 *	for (int i = 0; i < njobs; i++)
 *		if (ration_group_go(g, jobs[i].bytes, run_job, &jobs[i]))
 *			break;            // stop feeding; wait() returns why
 *	int err = ration_group_wait(g);   // first task or go error, or 0
 *	ration_group_free(g);
 *
 * go/try_go/wait may be called from several threads, and from the group's
 * own tasks (nested go): see docs/group.md for the one case that can
 * deadlock (a pool whose every thread waits for work it queued itself).
 */
#ifndef RATION_GROUP_H
#define RATION_GROUP_H

#include "account.h"
#include "common.h"
#include "ctx.h"
#include "pool.h"
#include "sem.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ration_group ration_group_t;

/* ration_group_stats_t.fit_hist: tasks by measured peak / declared, in
 * buckets [0, 1/16) [1/16, 1/8) [1/8, 1/4) [1/4, 1/2) [1/2, 3/4)
 * [3/4, 1) [1, 5/4) [5/4, 3/2) [3/2, 2) [2, inf). */
#define RATION_FIT_BUCKETS 10

/* A task: 0 or a negative errno. @ctx is the group ctx (cancelled by the
 * first error unless keep_going); long tasks should watch it. */
typedef int (*ration_group_fn)(ration_ctx_t *ctx, void *arg);

typedef struct {
	ration_pool_t *pool; /* NULL = ration_pool_default() */
	ration_sem_t *
		budget; /* NULL = weights are not counted (still checked > 0) */
	int64_t limit; /* max tasks of this group in flight (queued or running);
	                       * 0 = none without a budget; with a budget, the pool's
	                       * thread limit at group_new, not applied to a go()
	                       * from the group's own tasks (docs/group.md) */
	bool keep_going;   /* false: the first error cancels the group ctx */
	bool budget_bytes; /* budget counts bytes: measure each task's heap
	                       * peak and judge it (under_declared,
	                       * over_reserved, fit_hist); needs jemalloc as the
	                       * process's malloc (group_new: -ENOTSUP) */
	double tolerance;  /* under_declared margin, a fraction of the
	                       * declared bytes; 0 = 0.05 */
	/* NULL = none. Runs on the worker thread that ran fn, right after fn
	 * returns (and after its error, if any, cancelled the group), before
	 * the task's weight and slot are released; once per successful go,
	 * also for a task a pool shutdown discarded (status -ECANCELED). */
	void (*on_report)(const ration_task_report_t *r, void *udata);
	void *udata;      /* passed to on_report */
	bool measure_cpu; /* reports carry cpu_ns (two ~0.8 us system calls per
	                       * task on Linux); false = cpu_ns is -1 */
	bool elastic; /* a running task's claim on the budget (bytes) follows
	                       * its measured memory (docs/elastic.md); needs budget;
	                       * false = the claim is the declared weight */
	double overrun_cancel; /* elastic: > 0 cancels a task's ctx with -ENOMEM once
	                        * its measured memory passes weight x this;
	                        * 0 = never */
	int64_t sample_ns; /* elastic: how often running tasks' memory is
	                       * measured; 0 = 1 ms */
	bool backpressure; /* elastic, with jemalloc: a task (not the oldest)
	                       * allocating past its claim while the budget is
	                       * full waits inside malloc for room, and gets NULL
	                       * if its ctx ends first. It waits holding its
	                       * locks: see docs/elastic.md before allocating
	                       * under a lock other tasks take. false = claims
	                       * are consume-only (counted, never waited for) */
} ration_group_opts_t;

typedef struct {
	uint64_t started; /* go/try_go that succeeded */
	uint64_t running; /* tasks running now */
	uint64_t tasks;   /* tasks finished */
	uint64_t failed;  /* of those, fn returned non-zero (or discarded) */
	uint64_t
		under_declared; /* reports flagged under_declared (budget_bytes) */
	uint64_t
		over_reserved; /* reports flagged over_reserved (budget_bytes) */
	uint64_t fit_hist[RATION_FIT_BUCKETS]; /* measured peak / declared, per
	                         * task with budget_bytes; bucket edges below */
	int64_t wait_p50_ns; /* go() wait, from a log2 histogram: bucket upper bound */
	int64_t wait_p99_ns;
	int64_t max_peak_bytes; /* largest measured task peak; -1 if none measured */
	int64_t run_ns_total; /* summed run time of finished tasks */
	int64_t cpu_ns_total; /* summed thread CPU time of finished tasks */
	int first_error;      /* what wait() will return so far */
	int64_t limit; /* the limit in force (opts.limit, or the default); 0 = none */
	uint64_t
		overrun_tasks; /* finished tasks whose claim passed their weight */
	int64_t max_overrun_bytes; /* largest claim - weight of a finished task */
	int64_t consumed_total; /* units taken past weights (elastic, task_grow), summed */
} ration_group_stats_t;

/**
 * ration_group_new() - make a group whose ctx is a child of @parent.
 * @parent: NULL = background.
 * @opts:   NULL or zeroed = defaults; the pool and budget are borrowed and
 *          must outlive the group.
 * @out:    receives the group (ration_group_free()).
 *
 * With a budget and opts.limit = 0 the group's limit is the pool's thread
 * limit as it is now (ration_pool_stats().max_threads): a task queued
 * behind busy threads would hold its budget weight without using it.
 *
 * With opts.elastic, fn's ctx is the task's own child of the group ctx
 * when opts.overrun_cancel > 0 (so that one task can be cancelled alone),
 * and the group starts one sampler thread (docs/elastic.md).
 *
 * Return: 0, or the first that applies:
 *   -EINVAL    @out NULL, limit < 0, tolerance < 0 or not a number,
 *              elastic without a budget, overrun_cancel < 0 or not a
 *              number (or < 1 and not 0), sample_ns < 0, backpressure
 *              without elastic
 *   -ENOTSUP   budget_bytes, but heap bytes cannot be measured here
 *              (ration_account_available() is false: no jemalloc, or the
 *              process's malloc is not jemalloc's); elastic without
 *              jemalloc and without /proc/self/statm
 *   -ENOMEM    also when the default pool cannot be made
 *   -EAGAIN    elastic: no sampler thread could be started
 *
 * Blocks: no. Allocates: yes (the group, its ctx and limit semaphore; the
 * default pool on first use; with opts.elastic, a sampler thread). Calls
 * user code: never.
 */
RATION_API int ration_group_new(ration_ctx_t *parent,
				const ration_group_opts_t *opts,
				ration_group_t **out);

/**
 * ration_group_ctx() - the group's ctx, done after the first error (unless
 * keep_going), when the parent is done, or after wait(). Borrowed: valid
 * until ration_group_free().
 *
 * Return: the ctx, or NULL for @g NULL.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API ration_ctx_t *ration_group_ctx(ration_group_t *g);

/**
 * ration_group_go() - run @fn(ctx, @arg) on the pool once @weight units of
 * the budget and a limit slot are free.
 * @weight: 1..budget size (any value >= 1 without a budget).
 *
 * Blocks the caller in FIFO order for a limit slot, then on the budget
 * (back-pressure), until the group ctx is done. While it would block and
 * the oldest task queued in the pool is one of this group's, it runs that
 * task on the calling thread instead of sleeping (the room it waits for
 * can only come from such tasks); not from inside a task of the group,
 * not for a pool with thread_init/thread_fini, not on a backend budget,
 * and no more once tasks run that way keep taking over 20 us
 * (docs/group.md). So do not call it while holding a lock that the
 * group's tasks take.
 *
 * Return: 0 (fn will run exactly once), or the first that applies:
 *   -EINVAL    @g or @fn NULL, @weight <= 0
 *   -EPIPE     after wait(), or budget closed, or pool shut down
 *   -E2BIG     @weight > budget size; at once
 *   ctx error  the group ctx's (the group was cancelled)
 *   -ENOMEM    no task record could be allocated, or the pool queue
 *              could not grow
 *   -EAGAIN    the pool has no thread and none could be started
 * On error fn never runs and the caller still owns @arg. Unless @g is NULL
 * or wait() has returned, the error becomes the group's first error if
 * none is recorded yet (wait() returns it): a loop that stops at the
 * first failed go() cannot make wait() report success. When a task's
 * error cancelled the group, that error is already the first.
 *
 * Blocks: yes. Allocates: a 64-byte task record only when the group's
 * cache of returned records is empty (never in steady state). Calls user
 * code: the group's queued tasks, while it would otherwise block (above).
 */
RATION_API int ration_group_go(ration_group_t *g, int64_t weight,
			       ration_group_fn fn, void *arg);

/**
 * ration_group_try_go() - ration_group_go() that never blocks.
 *
 * Return: as ration_group_go(), plus -EAGAIN when the budget, the limit or
 * the pool queue has no room right now. -ENOMEM when no task record can
 * be allocated or the pool queue cannot grow. Errors are recorded as by
 * ration_group_go(), except -EAGAIN, which is not an error of the group.
 *
 * Blocks: no. Allocates: as ration_group_go(). Calls user code: never in
 * the caller (@fn and on_report run on a pool thread).
 */
RATION_API int ration_group_try_go(ration_group_t *g, int64_t weight,
				   ration_group_fn fn, void *arg);

/**
 * ration_group_wait() - wait for every started task, then cancel the ctx.
 *
 * Return: the first error: a non-zero task result (the error that
 * cancelled the group, never a sibling's -ECANCELED) or a failed go()'s
 * (see ration_group_go()), whichever came first; or 0. After wait, go returns
 * -EPIPE; wait may be called again and returns the same value.
 *
 * Blocks: yes. Must not be called from one of the group's own tasks.
 * Allocates: never. Calls user code: the after-funcs of the group's ctx
 * (and its descendants), which it cancels.
 */
RATION_API int ration_group_wait(ration_group_t *g);

/**
 * ration_group_stats() - fill @out with a snapshot of @g's counters.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API void ration_group_stats(const ration_group_t *g,
				   ration_group_stats_t *out);

/**
 * ration_task_grow() - the running group task asks for @n more units of
 * its group's budget.
 * @ctx: ends the wait when done; usually the ctx fn was given.
 * @n:   units wanted on top of what the task holds (its weight and
 *       earlier grows).
 *
 * The calling task is the group task running on this thread. Waits in
 * FIFO order with the budget's other callers, except that the oldest
 * running task of the group never waits: it takes the units at once
 * (ration_sem_consume), and when the oldest ends, the next oldest's
 * pending grow proceeds at once, so grow cannot deadlock even when every
 * running task grows. The units are the task's until fn returns; then
 * they go back with its weight. In an elastic group they raise the floor
 * under its measured claim.
 *
 * Return: 0, or the first that applies:
 *   -EPERM     not called from inside a group task whose group has a
 *              budget
 *   -EINVAL    @n <= 0
 *   -E2BIG     the task's units plus @n exceed the budget's size and it
 *              is not the oldest running task
 *   ctx error  -ECANCELED, -ETIMEDOUT or the cause, even if units are free
 *   -EOVERFLOW the budget's in-use count would pass RATION_SEM_MAX
 *   -EPIPE     the budget was closed
 * On error the task holds what it held before.
 *
 * Blocks: yes (never for the oldest running task). Allocates: a child ctx
 * when it has to wait. Calls user code: never.
 */
RATION_API int ration_task_grow(ration_ctx_t *ctx, int64_t n);

/**
 * ration_group_free() - wait for running tasks (as wait()), then free @g.
 * NULL is ignored.
 *
 * Blocks: yes, as ration_group_wait(). Allocates: never. Calls user code:
 * as ration_group_wait().
 */
RATION_API void ration_group_free(ration_group_t *g);

#ifdef __cplusplus
}
#endif

#endif /* RATION_GROUP_H */
