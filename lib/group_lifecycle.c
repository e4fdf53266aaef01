/* group_lifecycle.c - the spawner's life cycle: new (the default limit,
 * the elastic claim state, the group ctx), ctx, wait (errgroup's: until
 * the group is idle, then no more go), the stats snapshot and free. go is
 * in group.c, whose header comment has the design and the state word.
 *
 * Locking: g->mu guards the list of sleeping wait() callers and the
 * SLEEPER bit's meaning (group.c); a wait() sleeps without it. Stats read
 * relaxed atomics: exact when the group is idle.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/account.h"
#include "internal/compiler.h"
#include "internal/elastic.h"
#include "internal/group_impl.h"
#include "internal/hist.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/stats_clock.h"
#include "ration/account.h"
#include "ration/ctx.h"
#include "ration/group.h"
#include "ration/pool.h"
#include "ration/sem.h"

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
	    (o.elastic && o.budget == NULL) || (o.backpressure && !o.elastic))
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
	 * with the release RMWs in ration__group_finish()). */
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
