/* pool.h - what the group asks of the pool beyond the public API. */
#ifndef RATION_INTERNAL_POOL_H
#define RATION_INTERNAL_POOL_H

#include <stdbool.h>

#include "ration/pool.h"

/* Run the oldest queued task of @p on the calling thread, if it is
 * @fn(arg) with @mine(arg, @key) true, the pool is not shutting down and
 * has no thread_init/thread_fini (its tasks may rely on them). The task
 * counts as taken and completed as if a worker had run it, and its queue
 * slot goes back before it runs. Return whether a task ran. Takes p->mu;
 * calls @mine under it (it must only read @arg) and @fn without it. */
bool ration__pool_help(ration_pool_t *p, ration_task_fn fn,
		       bool (*mine)(void *arg, void *key), void *key);

/* Say that the caller, a submitter of @p, has just run a short task of
 * its own with ration__pool_help() and will go on doing so while it finds
 * no room: awake workers on other CPUs leave the queue to it (for
 * STEP_BACK_NS at a time, lib/pool_worker.c) instead of pulling the queue's and
 * the tasks' cache lines to their CPUs. No lock. */
void ration__pool_helped_short(ration_pool_t *p);

#endif
