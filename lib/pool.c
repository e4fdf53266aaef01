/* pool.c - bounded thread pool; nothing lost at shutdown. This file:
 * submit and try_submit, the wake policy they apply, and the group's
 * helping entry points (internal/pool.h). The workers, their idle
 * spinning and parking and the watchdog are in pool_worker.c; new,
 * resize, stats, shutdown and free in pool_lifecycle.c; the object and
 * what the three share in internal/pool_impl.h.
 *
 * Queue: a FIFO of 16-byte tasks {fn, arg} (internal/taskq.h), under
 * p->mu. Back-pressure for a bounded queue is a ration semaphore of
 * queue_cap slots: submit acquires one (FIFO among blocked submitters,
 * ctx-bounded, -EPIPE once shutdown closes it), the worker that takes the
 * task gives it back.
 *
 * Workers: started on demand (under mu) up to max_threads. A worker with
 * nothing to do first spins briefly if no other worker is spinning (with
 * one usable CPU: yields a few times instead), then parks on its thread's
 * parker with its idle record on its own stack,
 * linked into p->idle (LIFO, so the most recently active threads are
 * reused and the cold ones time out).
 *
 * Wake policy (the decision that sets the cost per task; contract §10):
 *  - A submit wakes (or starts) a worker only when no worker is spinning
 *    and fewer than min(usable CPUs, threads) workers are awake. Waking a
 *    parked thread costs microseconds on a VM; a running worker finishing
 *    its task takes the next one itself, so a stream of short tasks is
 *    carried by about one awake worker per CPU with few wake-ups.
 *  - Workers blocked inside long tasks would then hold queued tasks back,
 *    so when a submit leaves work queued without waking anyone it arms a
 *    watchdog on the shared timer thread: if no task was taken from the
 *    queue for WATCHDOG_NS (pool_worker.c), it wakes or starts as many
 *    workers as there are queued tasks (up to the thread limit). So a
 *    queued task waits at most about WATCHDOG_NS for a worker while one
 *    could be had.
 *
 * Locking: p->mu guards the queue, the idle list, thread counts, shutdown
 * state and the counters not marked atomic. Order: p->mu, then the slot
 * semaphore's mu (close under p->mu); sem acquire/release of slots happen
 * without p->mu. No user code (task fns, thread_init/fini) runs under mu.
 */
#include <stdatomic.h>

#include "internal/compiler.h"
#include "internal/ctx.h"
#include "internal/futex_mutex.h"
#include "internal/park.h"
#include "internal/pool.h"
#include "internal/pool_impl.h"
#include "internal/taskq.h"
#include "ration/pool.h"
#include "ration/sem.h"

/* After a push: see the wake policy at the top; p->mu held. */
void
ration__pool_kick_locked(ration_pool_t *p, struct ration__wake_list *wl)
{
	/* A spinning worker takes the next task by itself; but only one:
	 * with more queued, the watchdog must still be armed, or tasks
	 * pushed during the spin wait behind whatever the spinner runs. */
	if (atomic_load_explicit(&p->spinning, memory_order_relaxed) != 0) {
		if (p->q.len > 1)
			ration__pool_watchdog_arm_locked(p, wl);
		return;
	}
	unsigned awake = p->nthreads - p->nidle;
	if (awake < awake_target(p, ration__pool_worker_of != p) &&
	    ration__pool_wake_one_locked(p, wl))
		return;
	ration__pool_watchdog_arm_locked(p, wl);
}

/* Queue a task whose slot (if bounded) is already held; takes p->mu. */
static int
enqueue(ration_pool_t *p, ration_task_fn fn, void *arg)
{
	struct ration__wake_list wl;
	int rc = 0;

	wake_list_init(&wl);
	ration__lock(&p->mu);
	if (p->shutdown) {
		rc = -EPIPE;
	} else if (p->nthreads == 0 &&
		   ration__pool_start_worker_locked(p) != 0) {
		rc = -EAGAIN; /* nothing could ever run it */
	} else if (!queue_push(&p->q, &p->spares, fn, arg)) {
		rc = -ENOMEM;
	} else {
		atomic_store_explicit(&p->queued_hint, p->q.len,
				      memory_order_relaxed);
		if (p->q.len > p->max_queued)
			p->max_queued = p->q.len;
		ration__pool_kick_locked(p, &wl);
	}
	ration__unlock(&p->mu);
	wake_list_wake(&wl);
	if (rc != 0 && p->slots != NULL)
		ration_sem_release(p->slots, 1);
	return rc;
}

int
ration_pool_submit(ration_pool_t *p, ration_ctx_t *ctx, ration_task_fn fn,
		   void *arg)
{
	if (p == NULL || fn == NULL)
		return -EINVAL;
	if (p->slots != NULL) {
		int rc = ration_sem_acquire(p->slots, ctx, 1);
		if (rc != 0)
			return rc;
	} else {
		int rc = ration_ctx_err(ctx);
		if (rc != 0)
			return rc;
	}
	return enqueue(p, fn, arg);
}

int
ration_pool_try_submit(ration_pool_t *p, ration_task_fn fn, void *arg)
{
	if (p == NULL || fn == NULL)
		return -EINVAL;
	if (p->slots != NULL) {
		int rc = ration_sem_try_acquire(p->slots, 1);
		if (rc != 0) {
			if (rc == -EAGAIN)
				atomic_fetch_add_explicit(&p->rejected, 1,
							  memory_order_relaxed);
			return rc;
		}
	}
	return enqueue(p, fn, arg);
}

void
ration__pool_helped_short(ration_pool_t *p)
{
	/* Relaxed load and store: only a change matters to the workers
	 * (step_back()), and two helpers' stores colliding cost one task
	 * taken by a worker. */
	atomic_store_explicit(
		&p->short_helps,
		atomic_load_explicit(&p->short_helps, memory_order_relaxed) + 1,
		memory_order_relaxed);
}

bool
ration__pool_help(ration_pool_t *p, ration_task_fn fn,
		  bool (*mine)(void *arg, void *key), void *key)
{
	if (p->thread_init != NULL || p->thread_fini != NULL)
		return false;
	ration__lock(&p->mu);
	if (p->q.len == 0 || p->shutdown) {
		ration__unlock(&p->mu);
		return false;
	}
	const struct task *head = &p->q.first->t[p->q.head];
	if (head->fn != fn || !mine(head->arg, key)) {
		ration__unlock(&p->mu);
		return false;
	}
	struct task t = take_locked(p);
	ration__unlock(&p->mu);
	if (p->slots != NULL)
		ration_sem_release(p->slots, 1);
	t.fn(t.arg, 0);
	ration__lock(&p->mu);
	p->running--;
	p->completed++;
	ration__unlock(&p->mu);
	return true;
}
