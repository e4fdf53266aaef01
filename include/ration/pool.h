/* ration/pool.h - bounded thread pool; nothing lost at shutdown.
 *
 * Threads start on demand up to opts.threads; tasks wait in a bounded FIFO
 * queue. Every accepted task's fn is called exactly once: with status 0
 * when it runs, or with -ECANCELED when a DISCARD shutdown drops it (so fn
 * can still free its arg).
 *
 *	static void task(void *arg, int status) {
 *		if (status == 0)
 *			work(arg);
 *		free(arg);
 *	}
 *	ration_pool_t *p;
 *	ration_pool_new(NULL, &p);                  // nproc threads
 *	ration_pool_submit(p, NULL, task, job);     // blocks while queue full
 *	ration_pool_shutdown(p, RATION_DRAIN, NULL);
 *	ration_pool_free(p);
 *
 * All functions are thread-safe; a task may submit to its own pool.
 */
#ifndef RATION_POOL_H
#define RATION_POOL_H

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ration_pool ration_pool_t;

/* status 0: run it; -ECANCELED: discarded at shutdown, never run. */
typedef void (*ration_task_fn)(void *arg, int status);

typedef struct {
	unsigned threads;     /* max threads; 0 = usable CPUs (affinity mask) */
	unsigned min_threads; /* kept when idle; 0 = none; capped at threads */
	int64_t idle_timeout_ns; /* idle threads above min exit; 0 = 10 s */
	size_t queue_cap;        /* 0 = 1024 per thread; SIZE_MAX = unbounded */
	const char *name; /* thread names "<name>-<i>"; NULL = "ration" */
	void (*thread_init)(
		void *udata); /* run first on each new thread; NULL = none */
	void (*thread_fini)(
		void *udata); /* run last on each exiting thread; NULL = none */
	void *udata;          /* passed to thread_init/thread_fini */
} ration_pool_opts_t;

enum ration_shutdown {
	RATION_DRAIN,   /* run everything already queued, then stop */
	RATION_DISCARD, /* call every queued fn with -ECANCELED, then stop */
};

typedef struct {
	uint64_t threads;     /* threads alive */
	uint64_t idle;        /* of those, waiting for work */
	uint64_t running;     /* tasks running now */
	uint64_t queued;      /* tasks waiting in the queue */
	uint64_t submitted;   /* tasks accepted */
	uint64_t completed;   /* fns called with status 0 that returned */
	uint64_t discarded;   /* fns called with -ECANCELED */
	uint64_t max_running; /* high-water mark of running */
	uint64_t max_queued;  /* high-water mark of queued */
	uint64_t rejected;    /* try_submit -EAGAIN */
	uint64_t
		max_threads; /* the thread limit (opts.threads, or as resized) */
} ration_pool_stats_t;

/**
 * ration_pool_new() - make a pool; no thread starts until work arrives
 * (except min_threads, started at once).
 * @opts: NULL or zeroed = defaults (see the field comments).
 * @out:  receives the pool, owned by the caller (ration_pool_free()).
 *
 * Return: 0, -EINVAL (@out NULL, min_threads > threads, negative
 * idle_timeout_ns), -ENOMEM, or -EAGAIN (min_threads could not be started:
 * nothing is left running).
 *
 * Blocks: no. Allocates: yes, and starts min_threads threads. Calls user
 * code: never in the caller (thread_init runs on each new thread).
 */
RATION_API int ration_pool_new(const ration_pool_opts_t *opts,
			       ration_pool_t **out);

/**
 * ration_pool_default() - the process-wide pool, made on first use.
 *
 * Usable-CPU threads (the affinity mask), default queue. Shared by every module in the process;
 * never shut down or freed by users (calls to do so return -EINVAL/ignored).
 *
 * Return: the pool, or NULL if it could not be made (-ENOMEM).
 *
 * Blocks: only while another thread is making the default pool.
 * Allocates: on the first call. Calls user code: never.
 */
RATION_API ration_pool_t *ration_pool_default(void);

/**
 * ration_pool_submit() - queue @fn(@arg, status) to run on @p.
 * @ctx: bounds the wait while the queue is full; NULL = wait as long as it
 *       takes.
 *
 * Blocks while the queue is full (back-pressure).
 *
 * Return: 0 (accepted: fn will be called exactly once), or the first that
 * applies: -EINVAL (@p or @fn NULL), -EPIPE (shut down, also while
 * waiting), ctx error (even if there is room), -ENOMEM (the queue could
 * not grow), -EAGAIN (the pool has no thread and none could be started).
 * On error fn is never called and the caller keeps @arg.
 *
 * Blocks: while full. Allocates: only when the queue grows past its
 * previous high-water mark (chunks of 254 tasks of 16 bytes; a few spare
 * chunks are kept). Calls user code: never.
 */
RATION_API int ration_pool_submit(ration_pool_t *p, ration_ctx_t *ctx,
				  ration_task_fn fn, void *arg);

/**
 * ration_pool_try_submit() - ration_pool_submit() that never waits.
 *
 * Return: 0, -EINVAL, -EPIPE, -EAGAIN (queue full, or no thread could be
 * started), or -ENOMEM (the queue could not grow). On error fn is never
 * called.
 *
 * Blocks: no. Allocates: as ration_pool_submit(). Calls user code: never.
 */
RATION_API int ration_pool_try_submit(ration_pool_t *p, ration_task_fn fn,
				      void *arg);

/**
 * ration_pool_resize() - change the maximum thread count to @threads.
 *
 * Growing starts threads as needed for queued work; shrinking lets the
 * extra threads exit after their current task. Queued tasks are kept.
 * min_threads is capped at the new maximum.
 *
 * Return: 0, -EINVAL (@threads == 0) or -EPIPE (shut down).
 *
 * Blocks: no. Allocates: the threads it starts for queued work. Calls user
 * code: never in the caller.
 */
RATION_API int ration_pool_resize(ration_pool_t *p, unsigned threads);

/**
 * ration_pool_stats() - fill @out with a snapshot of @p's counters.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API void ration_pool_stats(const ration_pool_t *p,
				  ration_pool_stats_t *out);

/**
 * ration_pool_shutdown() - stop accepting work and finish the queue.
 * @mode: RATION_DRAIN runs every queued task; RATION_DISCARD calls each
 *        queued fn with -ECANCELED (in the calling thread).
 * @ctx:  bounds how long to wait for running tasks; NULL = until done.
 *
 * Blocked submitters fail with -EPIPE. Idempotent: a second call waits
 * again (and may switch DRAIN to DISCARD for what is still queued).
 *
 * Return: 0 when every task has finished and every thread has exited, or
 * the ctx error if it ends first (workers go on draining; free() waits),
 * or -EINVAL for the default pool.
 *
 * Blocks: yes, until every task has finished or @ctx ends. Allocates:
 * never. Calls user code: with RATION_DISCARD, each queued fn (with
 * -ECANCELED) in the calling thread; otherwise never in the caller.
 */
RATION_API int ration_pool_shutdown(ration_pool_t *p, enum ration_shutdown mode,
				    ration_ctx_t *ctx);

/**
 * ration_pool_free() - shut down (DRAIN, if not already), wait for every
 * thread, and free @p. Must not be called from one of @p's own tasks.
 * NULL and the default pool are ignored.
 *
 * Blocks: yes, until every task has run and every thread has exited.
 * Allocates: never. Calls user code: never in the caller (queued tasks run
 * on the pool's threads).
 */
RATION_API void ration_pool_free(ration_pool_t *p);

#ifdef __cplusplus
}
#endif

#endif /* RATION_POOL_H */
