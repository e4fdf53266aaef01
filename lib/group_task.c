/* group_task.c - the spawner's task body, which runs on a pool thread:
 * it times the task, measures it when someone reads the figures, runs
 * fn with the group ctx (or reports it discarded by a pool shutdown),
 * records the first error before cancelling the ctx, calls on_report,
 * gives back weight and slot, adds to the statistics, returns its record
 * and counts itself finished in g->state. The design and the state word:
 * group.c's header comment.
 *
 * Locking: no lock but g->mu, taken only by the finish that takes
 * pending from 1 to 0 while a wait() sleeps (ration__group_finish());
 * on_report and fn run with no lock held. Statistics are relaxed atomics.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal/account.h"
#include "internal/atomic_max.h"
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

/* internal/group_impl.h */
_Thread_local ration_group_t *ration__group_task_of;
/* internal/group_impl.h */
_Thread_local int64_t ration__group_last_run_ns;

/* Count one task finished (or a start undone). release: this task's
 * statistics and first error are visible to the wait() that sees pending
 * reach 0 (acquire load there); later RMWs on state continue the release
 * sequence. A finish that would wake a sleeping wait() runs under g->mu,
 * so the sleeper returns (and may free g) only after our unlock. */
void
ration__group_finish(ration_group_t *g)
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

void
ration__group_task_main(void *arg, int status)
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
		ration_group_t *outer = ration__group_task_of;
		ration__group_task_of = g;
		r.status = t->fn(ctx, t->arg);
		ration__group_task_of = outer;
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
	ration__group_last_run_ns = r.run_ns;

	if (r.status != 0) {
		/* First error before the cancel: a sibling can only see the
		 * ctx done (acquire load in ration_ctx_err, pairing with the
		 * release store in cancel) after this CAS, so its -ECANCELED
		 * comes later in first_error's modification order and loses.
		 * Relaxed suffices: wait() reads first_error after an acquire
		 * load of state that follows this task's release in
		 * ration__group_finish(). */
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
	ration__group_finish(g);
}
