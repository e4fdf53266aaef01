/* group.c - the spawner: errgroup semantics plus weights from a budget.
 *
 * go(g, weight, fn, arg):
 *   1. checks, in the documented order: -EINVAL, -EPIPE (after wait, or a
 *      closed budget), -E2BIG (weight > budget size: at once, before any
 *      wait), the group ctx's error;
 *   2. a limit slot from g->slots (an internal ration_sem of `limit`
 *      units), FIFO, bounded by the group ctx;
 *   3. @weight units of the budget, FIFO, bounded by the group ctx;
 *   4. a task record from the group's free list, counted in g->started;
 *   5. ration_pool_submit() with the group ctx (blocks while the pool
 *      queue is full). Any failure gives back everything taken so far, in
 *      reverse order; fn never runs and the caller keeps arg.
 *   Slot before budget: a caller waiting for a slot holds no budget, so
 *   units shared with other groups are never idle while this group is at
 *   its limit; the slot held while waiting for budget is this group's own
 *   and could not run a task anyway. Both queues are FIFO, so callers of
 *   one group reach the budget in the order they got slots.
 *
 * The task wrapper (task_main) runs on a pool thread: it measures only if
 * someone reads the figures (on_report or budget_bytes), calls fn with the
 * group ctx, records the first error before cancelling the ctx (so wait()
 * returns the cause, not a sibling's -ECANCELED), gives back weight and
 * slot, calls on_report with no lock held, and finally, under g->mu,
 * updates the stats, recycles its record and counts itself finished. That
 * locked section is its last touch of the group: wait() returns only after
 * it, so free() after wait() cannot race a finishing task.
 *
 * Locking: g->mu guards the free list, started/finished, waited, the
 * waiter list of wait() and the statistics. It is a leaf lock: nothing
 * else is locked inside it, and no user code, semaphore or pool call runs
 * under it. first_error and running are atomics read without it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/compiler.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/sem.h"
#include "ration/account.h"
#include "ration/ctx.h"
#include "ration/group.h"
#include "ration/pool.h"
#include "ration/sem.h"

/* One go()'s task from submit to finish; recycled through g->free. */
struct gtask {
	struct gtask *next; /* g->mu: free list link */
	ration_group_t *g;
	ration_group_fn fn;
	void *arg;
	int64_t weight;
	int64_t go_ns; /* when go() was called, for wait_ns */
};

/* A caller of ration_group_wait(); lives on its stack while linked. */
struct group_waiter {
	struct ration__list node; /* g->mu */
	struct ration__parker *pk;
};

struct ration_group {
	ration_ctx_t *ctx;     /* immutable; one reference, dropped by free */
	ration_pool_t *pool;   /* immutable, borrowed */
	ration_sem_t *budget;  /* immutable, borrowed; NULL = no budget */
	ration_sem_t *slots;   /* immutable, owned; NULL = no limit */
	bool keep_going;       /* immutable */
	bool budget_bytes;     /* immutable */
	bool measure;          /* immutable: on_report or budget_bytes */
	void (*on_report)(const ration_task_report_t *r, void *udata); /* immutable */
	void *udata;           /* immutable */

	_Atomic int first_error;   /* atomic; 0 until a task fails */
	_Atomic bool waited;       /* written under mu; read lock-free by go */
	_Atomic uint64_t running;  /* atomic: fns executing now */

	pthread_mutex_t mu;
	struct gtask *free;        /* mu */
	uint64_t started;          /* mu */
	uint64_t finished;         /* mu */
	struct ration__list waiters; /* mu: struct group_waiter */
	/* statistics, mu */
	uint64_t failed;
	uint64_t over_declared;
	int64_t max_peak_bytes;
	int64_t run_ns_total;
	int64_t cpu_ns_total;
	uint64_t wait_hist[RATION_HIST_BUCKETS];
};

/* ---- helpers ----------------------------------------------------------- */

static unsigned
hist_bucket(int64_t ns)
{
	unsigned b = 0;

	while (ns > 1 && b < RATION_HIST_BUCKETS - 1) {
		ns >>= 1;
		b++;
	}
	return b;
}

/* The budget's -EPIPE/-E2BIG verdict for @n, without waiting. Reads the
 * size of an in-process semaphore directly (stats would take its lock on
 * every go); a backend semaphore answers through its stats. */
static int
budget_check(ration_sem_t *s, int64_t n)
{
	int64_t size;
	bool closed;

	if (s->ops == NULL) {
		closed = atomic_load_explicit(&s->closed, memory_order_relaxed);
		size = atomic_load_explicit(&s->size, memory_order_relaxed);
	} else {
		ration_sem_stats_t st;
		ration_sem_stats(s, &st);
		closed = st.closed;
		size = st.size;
	}
	if (closed)
		return -EPIPE;
	return n > size ? -E2BIG : 0;
}

/* Collect every wait() caller; g->mu held. */
static void
wake_waiters_locked(ration_group_t *g, struct ration__wake_list *wl)
{
	while (!list_empty(&g->waiters)) {
		struct ration__list *n = list_first(&g->waiters);
		list_remove(n);
		wake_list_add(wl, RATION_CONTAINER_OF(n, struct group_waiter, node)->pk);
	}
}

/* Give back what a go() or a finished task holds. */
static void
release_room(ration_group_t *g, int64_t weight)
{
	if (g->budget != NULL)
		(void)ration_sem_release(g->budget, weight);
	if (g->slots != NULL)
		(void)ration_sem_release(g->slots, 1);
}

/* Undo a start whose task will never reach task_main: recycle @t and
 * uncount it, waking wait() if that makes the group idle. */
static void
unstart(ration_group_t *g, struct gtask *t)
{
	struct ration__wake_list wl;

	wake_list_init(&wl);
	pthread_mutex_lock(&g->mu);
	if (t != NULL) {
		t->next = g->free;
		g->free = t;
	}
	g->started--;
	if (g->started == g->finished)
		wake_waiters_locked(g, &wl);
	pthread_mutex_unlock(&g->mu);
	wake_list_wake(&wl);
}

/* ---- the task ---------------------------------------------------------- */

static void
task_main(void *arg, int status)
{
	struct gtask *t = arg;
	ration_group_t *g = t->g;
	ration_task_report_t r = {.declared = t->weight, .status = status};
	ration_account_t acc;

	atomic_fetch_add_explicit(&g->running, 1, memory_order_relaxed);
	if (status == 0) {
		int64_t start;
		if (g->measure) {
			ration_account_begin(&acc);
			start = acc.t0_ns;
		} else {
			start = ration_now();
		}
		r.wait_ns = start - t->go_ns;
		r.status = t->fn(g->ctx, t->arg);
		if (g->measure) {
			ration_account_end(&acc, &r);
		} else {
			r.run_ns = ration_now() - start;
			r.cpu_ns = -1;
			r.peak_bytes = -1;
			r.allocated_bytes = -1;
		}
	} else {
		/* Discarded by a pool shutdown: fn never ran, nothing used. */
		r.status = -ECANCELED;
		r.wait_ns = ration_now() - t->go_ns;
		int64_t none = ration_account_available() ? 0 : -1;
		r.peak_bytes = r.allocated_bytes = none;
	}
	if (r.wait_ns < 0)
		r.wait_ns = 0;
	atomic_fetch_sub_explicit(&g->running, 1, memory_order_relaxed);

	if (r.status != 0) {
		/* First error before the cancel: a sibling can only see the
		 * ctx done (acquire load in ration_ctx_err, pairing with the
		 * release store in cancel) after this CAS, so its -ECANCELED
		 * comes later in first_error's modification order and loses.
		 * Relaxed suffices: wait() reads first_error under g->mu
		 * after this task's final locked section. */
		int zero = 0;
		atomic_compare_exchange_strong_explicit(&g->first_error, &zero, r.status,
							memory_order_relaxed,
							memory_order_relaxed);
		if (!g->keep_going)
			ration_ctx_cancel(g->ctx);
	}
	release_room(g, t->weight);

	if (g->on_report != NULL)
		g->on_report(&r, g->udata);

	struct ration__wake_list wl;
	wake_list_init(&wl);
	pthread_mutex_lock(&g->mu);
	if (r.status != 0)
		g->failed++;
	g->wait_hist[hist_bucket(r.wait_ns)]++;
	g->run_ns_total += r.run_ns;
	if (r.cpu_ns > 0)
		g->cpu_ns_total += r.cpu_ns;
	if (r.peak_bytes > g->max_peak_bytes)
		g->max_peak_bytes = r.peak_bytes;
	if (g->budget_bytes && r.peak_bytes > t->weight)
		g->over_declared++;
	t->next = g->free;
	g->free = t;
	g->finished++;
	if (g->finished == g->started)
		wake_waiters_locked(g, &wl);
	pthread_mutex_unlock(&g->mu);
	/* g may be freed from here on: only parkers (never freed) are used. */
	wake_list_wake(&wl);
}

/* ---- go ---------------------------------------------------------------- */

/* After a failed wait for room: a group that wait() has finished says
 * -EPIPE, whatever ended the wait (its ctx is cancelled by wait()). */
static int
go_err(ration_group_t *g, int rc)
{
	if (atomic_load_explicit(&g->waited, memory_order_relaxed))
		return -EPIPE;
	return rc;
}

static int
go_common(ration_group_t *g, int64_t weight, ration_group_fn fn, void *arg, bool try)
{
	int64_t go_ns = ration_now();
	int rc;

	if (g == NULL || fn == NULL || weight <= 0)
		return -EINVAL;
	if (atomic_load_explicit(&g->waited, memory_order_relaxed))
		return -EPIPE;
	if (g->budget != NULL && (rc = budget_check(g->budget, weight)) != 0)
		return rc;
	if ((rc = ration_ctx_err(g->ctx)) != 0)
		return go_err(g, rc);

	if (g->slots != NULL) {
		rc = try ? ration_sem_try_acquire(g->slots, 1)
			 : ration_sem_acquire(g->slots, g->ctx, 1);
		if (rc != 0)
			return go_err(g, rc);
	}
	if (g->budget != NULL) {
		rc = try ? ration_sem_try_acquire(g->budget, weight)
			 : ration_sem_acquire(g->budget, g->ctx, weight);
		if (rc != 0) {
			if (g->slots != NULL)
				(void)ration_sem_release(g->slots, 1);
			return go_err(g, rc);
		}
	}

	/* Count the start under mu, where wait() decides the group is idle:
	 * either wait() sees this start and waits for it, or this go sees
	 * waited and backs out. */
	struct gtask *t = NULL;
	pthread_mutex_lock(&g->mu);
	bool waited = atomic_load_explicit(&g->waited, memory_order_relaxed);
	if (!waited) {
		g->started++;
		t = g->free;
		if (t != NULL)
			g->free = t->next;
	}
	pthread_mutex_unlock(&g->mu);
	if (waited) {
		release_room(g, weight);
		return -EPIPE;
	}
	if (t == NULL && (t = malloc(sizeof(*t))) == NULL) {
		release_room(g, weight);
		unstart(g, NULL);
		return -ENOMEM;
	}
	t->g = g;
	t->fn = fn;
	t->arg = arg;
	t->weight = weight;
	t->go_ns = go_ns;

	rc = try ? ration_pool_try_submit(g->pool, task_main, t)
		 : ration_pool_submit(g->pool, g->ctx, task_main, t);
	if (rc != 0) {
		release_room(g, weight);
		unstart(g, t);
		return go_err(g, rc);
	}
	return 0;
}

int
ration_group_go(ration_group_t *g, int64_t weight, ration_group_fn fn, void *arg)
{
	return go_common(g, weight, fn, arg, false);
}

int
ration_group_try_go(ration_group_t *g, int64_t weight, ration_group_fn fn, void *arg)
{
	return go_common(g, weight, fn, arg, true);
}

/* ---- life cycle -------------------------------------------------------- */

int
ration_group_new(ration_ctx_t *parent, const ration_group_opts_t *opts, ration_group_t **out)
{
	ration_group_opts_t o = {0};

	if (out == NULL)
		return -EINVAL;
	if (opts != NULL)
		o = *opts;
	if (o.limit < 0 || o.limit > RATION_SEM_MAX)
		return -EINVAL;
	if (o.pool == NULL && (o.pool = ration_pool_default()) == NULL)
		return -ENOMEM;

	ration_group_t *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	int rc = ration_ctx_with_cancel(parent, &g->ctx);
	if (rc != 0) {
		free(g);
		return rc;
	}
	if (o.limit > 0) {
		rc = ration_sem_new(o.limit, &(ration_sem_opts_t){.name = "group.limit"},
				    &g->slots);
		if (rc != 0) {
			ration_ctx_unref(g->ctx);
			free(g);
			return rc;
		}
	}
	g->pool = o.pool;
	g->budget = o.budget;
	g->keep_going = o.keep_going;
	g->budget_bytes = o.budget_bytes;
	g->measure = o.on_report != NULL || o.budget_bytes;
	g->on_report = o.on_report;
	g->udata = o.udata;
	g->max_peak_bytes = -1;
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
	 * group is idle; from that moment, under mu, none can. */
	while (g->started != g->finished) {
		list_push_back(&g->waiters, &me.node);
		pthread_mutex_unlock(&g->mu);
		ration__park(me.pk, RATION_FOREVER);
		pthread_mutex_lock(&g->mu);
		if (list_linked(&me.node))
			list_remove(&me.node); /* spurious wake */
	}
	atomic_store_explicit(&g->waited, true, memory_order_relaxed);
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

	uint64_t hist[RATION_HIST_BUCKETS];
	pthread_mutex_lock(&g->mu);
	out->started = g->started;
	out->tasks = g->finished;
	out->failed = g->failed;
	out->over_declared = g->over_declared;
	out->max_peak_bytes = g->max_peak_bytes;
	out->run_ns_total = g->run_ns_total;
	out->cpu_ns_total = g->cpu_ns_total;
	memcpy(hist, g->wait_hist, sizeof(hist));
	pthread_mutex_unlock(&g->mu);
	out->running = atomic_load_explicit(&g->running, memory_order_relaxed);
	out->first_error = atomic_load_explicit(&g->first_error, memory_order_relaxed);

	/* Percentiles from the log2 histogram: the upper bound of the bucket
	 * holding the rank (the last, open bucket reports its lower bound). */
	uint64_t total = 0;
	for (unsigned i = 0; i < RATION_HIST_BUCKETS; i++)
		total += hist[i];
	if (total == 0)
		return;
	uint64_t rank50 = (total * 50 + 99) / 100, rank99 = (total * 99 + 99) / 100;
	uint64_t seen = 0;
	for (unsigned i = 0; i < RATION_HIST_BUCKETS; i++) {
		if (hist[i] == 0)
			continue;
		int64_t bound = i + 1 < RATION_HIST_BUCKETS ? (int64_t)1 << (i + 1)
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
	for (struct gtask *t = g->free, *next; t != NULL; t = next) {
		next = t->next;
		free(t);
	}
	if (g->slots != NULL)
		(void)ration_sem_free(g->slots);
	ration_ctx_unref(g->ctx);
	pthread_mutex_destroy(&g->mu);
	free(g);
}
