/* pool_lifecycle.c - the pool's life cycle: new (with its min_threads
 * started), the process-wide default pool, resize, the stats snapshot,
 * shutdown (drain or discard: nothing queued is lost) and free. Submit is
 * in pool.c (whose header comment has the design), the workers in
 * pool_worker.c.
 *
 * Locking: p->mu, as in pool.c; shutdown closes the slot semaphore
 * without it and runs discarded or undrained tasks in the calling thread
 * with no lock held. default_mu guards only the making of the default
 * pool.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/compiler.h"
#include "internal/cpu.h"
#include "internal/ctx.h"
#include "internal/futex_mutex.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/pool_impl.h"
#include "internal/taskq.h"
#include "internal/timer.h"
#include "ration/pool.h"
#include "ration/sem.h"

#define DEFAULT_IDLE_NS          ((int64_t)10 * 1000000000)
#define DEFAULT_QUEUE_PER_THREAD 1024

int
ration_pool_new(const ration_pool_opts_t *opts, ration_pool_t **out)
{
	ration_pool_opts_t o = {0};

	if (out == NULL)
		return -EINVAL;
	if (opts != NULL)
		o = *opts;
	if (o.threads == 0)
		o.threads = ration__ncpu();
	if (o.min_threads > o.threads || o.idle_timeout_ns < 0)
		return -EINVAL;
	if (o.idle_timeout_ns == 0)
		o.idle_timeout_ns = DEFAULT_IDLE_NS;
	if (o.queue_cap == 0)
		o.queue_cap = (size_t)DEFAULT_QUEUE_PER_THREAD * o.threads;

	ration_pool_t *p = aligned_alloc(RATION_CACHELINE, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	memset(p, 0, sizeof(*p));
	if (o.queue_cap != SIZE_MAX) {
		int64_t cap = o.queue_cap > (size_t)RATION_SEM_MAX
				      ? RATION_SEM_MAX
				      : (int64_t)o.queue_cap;
		int rc = ration_sem_new(
			cap, &(ration_sem_opts_t){.name = "pool.slots"},
			&p->slots);
		if (rc != 0) {
			free(p);
			return rc;
		}
		/* Up to 1/64 of the capacity, so try_submit's "full" stays
		 * exact for small queues and within ~1.5% for large ones. */
		p->slot_batch = cap / 64 < 1    ? 1
				: cap / 64 > 32 ? 32
						: cap / 64;
	}
	list_init(&p->idle);
	list_init(&p->drainers);
	p->max_threads = o.threads;
	p->min_threads = o.min_threads;
	p->idle_ns = o.idle_timeout_ns;
	p->ncpu = ration__ncpu();
	ration__pool_watchdog_init(p);
	snprintf(p->name, sizeof(p->name), "%s",
		 o.name != NULL ? o.name : "ration");
	p->thread_init = o.thread_init;
	p->thread_fini = o.thread_fini;
	p->udata = o.udata;

	ration__lock(&p->mu);
	int rc = 0;
	while (rc == 0 && p->nthreads < p->min_threads)
		rc = ration__pool_start_worker_locked(p);
	ration__unlock(&p->mu);
	if (rc != 0) {
		ration_pool_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* Not pthread_once: a default pool that could not be made (no memory)
 * must be tried again by the next caller, not stay NULL for ever. */
static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static ration_pool_t *_Atomic default_pool; /* set once, under default_mu */

ration_pool_t *
ration_pool_default(void)
{
	/* acquire: pairs with the release store below, so the pool is seen
	 * fully made. */
	ration_pool_t *p =
		atomic_load_explicit(&default_pool, memory_order_acquire);
	if (RATION_LIKELY(p != NULL))
		return p;
	pthread_mutex_lock(&default_mu);
	p = atomic_load_explicit(&default_pool, memory_order_relaxed);
	if (p == NULL) {
		if (ration_pool_new(&(ration_pool_opts_t){.name = "ration"},
				    &p) == 0) {
			p->is_default = true;
			atomic_store_explicit(&default_pool, p,
					      memory_order_release);
		} else {
			p = NULL;
		}
	}
	pthread_mutex_unlock(&default_mu);
	return p;
}

int
ration_pool_resize(ration_pool_t *p, unsigned threads)
{
	struct ration__wake_list wl;

	if (p == NULL || threads == 0)
		return -EINVAL;
	wake_list_init(&wl);
	ration__lock(&p->mu);
	if (p->shutdown) {
		ration__unlock(&p->mu);
		return -EPIPE;
	}
	p->max_threads = threads;
	if (p->min_threads > threads)
		p->min_threads = threads;
	/* Idle threads above the new maximum see it when woken and exit. */
	if (p->nthreads > threads) {
		ration__pool_wake_all_locked(&p->idle, &wl);
		p->nidle = 0;
	}
	/* Growing: queued tasks may now get threads of their own. */
	while (p->nthreads < threads && p->q.len > p->nthreads - p->nidle &&
	       ration__pool_start_worker_locked(p) == 0)
		;
	/* The busy workers counted above may be blocked in long tasks: let
	 * the watchdog bring more if the queue makes no progress (no push
	 * follows to arm it). */
	if (p->q.len != 0)
		ration__pool_watchdog_arm_locked(p, &wl);
	ration__unlock(&p->mu);
	wake_list_wake(&wl);
	return 0;
}

void
ration_pool_stats(const ration_pool_t *cp, ration_pool_stats_t *out)
{
	ration_pool_t *p = (ration_pool_t *)cp;

	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (p == NULL)
		return;
	ration__lock(&p->mu);
	out->threads = p->nthreads;
	out->idle = p->nidle;
	out->running = p->running;
	out->queued = p->q.len;
	out->submitted = submitted_locked(p);
	out->completed = p->completed;
	out->discarded = p->discarded;
	out->max_running = p->max_running;
	out->max_queued = p->max_queued;
	out->rejected =
		atomic_load_explicit(&p->rejected, memory_order_relaxed);
	out->max_threads = p->max_threads;
	ration__unlock(&p->mu);
}

/* Take every queued task out and call its fn with @status in the calling
 * thread: -ECANCELED (DISCARD), or 0 (DRAIN when no worker is left). */
static void
run_queued_here(ration_pool_t *p, int status)
{
	ration__lock(&p->mu);
	struct queue q = p->q;
	memset(&p->q, 0, sizeof(p->q));
	p->unqueued += q.len;
	atomic_store_explicit(&p->queued_hint, 0, memory_order_relaxed);
	if (status != 0)
		p->discarded += q.len;
	ration__unlock(&p->mu);

	if (p->slots != NULL && q.len != 0)
		ration_sem_release(p->slots, (int64_t)q.len);
	struct spares none = {0};
	uint64_t ran = q.len;
	while (q.len != 0) {
		struct task t = queue_pop(&q, &none);
		t.fn(t.arg, status);
	}
	queue_free(&q, &none);
	if (status == 0) {
		ration__lock(&p->mu);
		p->completed += ran;
		ration__unlock(&p->mu);
	}
}

int
ration_pool_shutdown(ration_pool_t *p, enum ration_shutdown mode,
		     ration_ctx_t *ctx)
{
	struct ration__wake_list wl;

	if (p == NULL || p->is_default ||
	    (mode != RATION_DRAIN && mode != RATION_DISCARD))
		return -EINVAL;
	wake_list_init(&wl);
	ration__lock(&p->mu);
	p->shutdown = true;
	/* Idle workers wake to drain the queue or exit. */
	ration__pool_wake_all_locked(&p->idle, &wl);
	p->nidle = 0;
	/* DRAIN with queued work and no thread left to run it: start one. */
	if (mode == RATION_DRAIN && p->q.len != 0 && p->nthreads == 0)
		(void)ration__pool_start_worker_locked(p);
	ration__unlock(&p->mu);
	wake_list_wake(&wl);
	/* Blocked submitters fail with -EPIPE from here on. */
	if (p->slots != NULL)
		ration_sem_close(p->slots);
	if (mode == RATION_DISCARD)
		run_queued_here(p, -ECANCELED);

	struct idle_worker me = {.pk = ration__parker_self()};
	struct ration__ctx_watch cw = {.pk = me.pk};
	int err = ration__ctx_watch(ctx, &cw);
	ration__lock(&p->mu);
	while (err == 0 && p->nthreads != 0) {
		list_push_back(&p->drainers, &me.node);
		ration__unlock(&p->mu);
		ration__park(me.pk, ration_ctx_deadline(ctx));
		ration__lock(&p->mu);
		list_remove(&me.node);
		err = ration_ctx_err(ctx);
	}
	if (p->nthreads == 0 && p->q.len != 0) {
		/* No thread could be started to drain: run it here. */
		ration__unlock(&p->mu);
		run_queued_here(p, 0);
		ration__lock(&p->mu);
	}
	if (p->nthreads == 0)
		err = 0;
	ration__unlock(&p->mu);
	ration__ctx_unwatch(ctx, &cw);
	return err;
}

void
ration_pool_free(ration_pool_t *p)
{
	if (p == NULL || p->is_default)
		return;
	(void)ration_pool_shutdown(p, RATION_DRAIN, NULL);
	ration__timer_disarm(&p->watchdog);
	queue_free(&p->q, &p->spares);
	if (p->slots != NULL)
		(void)ration_sem_free(p->slots);
	free(p);
}
