/* elastic.c - running group tasks' claims on their budget: the declared
 * weight, plus what ration_task_grow() added, plus (elastic groups) what
 * the task was measured to use past both (docs/elastic.md).
 *
 * A claim grows when the task grows, when the sampler measures it over,
 * and (per-task arenas, elastic_arena.c) when its allocator is about to
 * commit pages past it: ration__claim_charge waits there like a grow.
 *
 * A claim only grows by units really taken from the budget: granted by
 * ration_sem_acquire (a task that waits its turn) or taken at once with
 * ration_sem_consume (the oldest running task, which never waits, so that
 * growth cannot deadlock: the oldest always finishes, and when it does the
 * next oldest's pending wait is ended and turned into a consume). A claim
 * never falls below its floor (weight + grown) while the task runs; at the
 * end everything past the weight goes back here and the group gives back
 * the weight.
 *
 * Tracked claims, kept in start order: every task of an elastic group;
 * in a group that is not elastic, every task that starts after the
 * group's first grow, and the task that grows. "Oldest" is the first of
 * them. Tracking takes el->mu twice per task, which a group that never
 * grows does not pay. The cost of that: until a group's first grow, a
 * task that started before it and never grows is not ranked, so a task
 * younger than it may count as the oldest. That keeps the no-deadlock
 * argument (a task that never grows never waits here, so it ends) and
 * gives up some backpressure for that one generation of tasks.
 *
 * Locking: el->mu guards the tracked list and, for tracked claims, floor,
 * claim, max_claim, wake and cancelled (their owner thread writes them
 * under it too, since the sampler reads them). ration_sem_consume and
 * ration_sem_release run under it, so a claim and the units it holds
 * change together; neither blocks nor calls back into the group, so
 * el->mu -> budget lock is the only order. Nothing waits, allocates,
 * cancels a ctx (after-funcs are user code) or calls user code under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "internal/atomic_max.h"
#include "internal/elastic.h"
#include "internal/nowait.h"
#include "ration/group.h"

_Thread_local unsigned ration__nowait_depth;

/* The claim of the group task running on this thread (innermost). */
static _Thread_local struct ration__claim *tl_claim;

#define CLAIM_OF(n) RATION_CONTAINER_OF(n, struct ration__claim, node)

static bool
is_oldest(struct ration__elastic *el, struct ration__claim *c)
{
	return list_first(&el->tracked) == &c->node;
}

static int64_t
round_step(int64_t bytes)
{
	return (bytes + RATION__CLAIM_STEP - 1) / RATION__CLAIM_STEP *
	       RATION__CLAIM_STEP;
}

/* @n units were taken from the budget for @c; el->mu held. */
static void
add_claim(struct ration__elastic *el, struct ration__claim *c, int64_t n)
{
	c->claim += n;
	if (c->claim > c->max_claim)
		c->max_claim = c->claim;
	atomic_fetch_add_explicit(&el->consumed_total, n, memory_order_relaxed);
}

/* Take @n units for @c now, room or not; el->mu held. */
static int
consume_locked(struct ration__elastic *el, struct ration__claim *c, int64_t n)
{
	int rc = ration_sem_consume(el->budget, n);
	if (rc == 0)
		add_claim(el, c, n);
	return rc;
}

/* Lower @c's claim to @target (>= floor); el->mu held. */
static void
lower_locked(struct ration__elastic *el, struct ration__claim *c,
	     int64_t target)
{
	if (target >= c->claim)
		return;
	(void)ration_sem_release(el->budget, c->claim - target);
	c->claim = target;
}

/* Link @c in start order (from the tail: starts arrive nearly in order). */
static void
track_locked(struct ration__elastic *el, struct ration__claim *c)
{
	struct ration__list *at = &el->tracked;
	while (at->prev != &el->tracked &&
	       CLAIM_OF(at->prev)->start_tick > c->start_tick)
		at = at->prev;
	list_insert_before(at, &c->node);
	el->floors += c->floor;
	c->tracked = true;
}

/* Unlink @c. If it was the oldest, the next oldest's pending wait must
 * end now: returns a reference to that wait's ctx, for the caller to
 * cancel once el->mu is dropped, or NULL. */
static ration_ctx_t *
untrack_locked(struct ration__elastic *el, struct ration__claim *c)
{
	bool was_oldest = is_oldest(el, c);
	list_remove(&c->node);
	el->floors -= c->floor;
	if (!was_oldest || list_empty(&el->tracked))
		return NULL;
	struct ration__claim *next = CLAIM_OF(list_first(&el->tracked));
	return next->wake != NULL ? ration_ctx_ref(next->wake) : NULL;
}

static void
cancel_unref(ration_ctx_t *ctx, int cause)
{
	if (ctx == NULL)
		return;
	ration_ctx_cancel_with(ctx, cause);
	ration_ctx_unref(ctx);
}

/* Raise @c's claim by @n, waiting in FIFO order on the budget until the
 * units are granted, @ctx is done, or @c becomes the oldest (then they are
 * taken at once). Return 0 with the units held, or the error that ended
 * the wait (the claim is then unchanged). */
static int
raise_waiting(struct ration__elastic *el, struct ration__claim *c,
	      ration_ctx_t *ctx, int64_t n)
{
	ration_ctx_t *w;
	int rc = ration_ctx_with_cancel(ctx, &w);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&el->mu);
	if (is_oldest(el, c)) {
		rc = consume_locked(el, c, n);
		pthread_mutex_unlock(&el->mu);
		ration_ctx_unref(w);
		return rc;
	}
	c->wake = w;
	pthread_mutex_unlock(&el->mu);

	rc = ration_sem_acquire(el->budget, w, n);
	if (rc == -E2BIG) /* never granted: wait to become the oldest */
		rc = ration_ctx_wait(w);

	pthread_mutex_lock(&el->mu);
	c->wake = NULL;
	if (rc == 0) {
		add_claim(el, c, n);
	} else if (ration_ctx_err(ctx) != 0) {
		rc = ration_ctx_err(ctx);
	} else if (ration_ctx_err(w) != 0) {
		/* Only untrack_locked() cancels w: we became the oldest. */
		rc = consume_locked(el, c, n);
	}
	pthread_mutex_unlock(&el->mu);
	ration_ctx_unref(w);
	return rc;
}

/* ---- measured claims ----------------------------------------------------- */

/* Set @c's claim to follow @measured bytes (never below its floor): raise
 * it at once (consume: the memory is in use whether or not there is room)
 * or lower it. Fires overrun_cancel: returns in *@victim a reference to
 * the ctx to cancel with -ENOMEM once el->mu is dropped. el->mu held. */
static void
measured_locked(struct ration__elastic *el, struct ration__claim *c,
		int64_t measured, ration_ctx_t **victim)
{
	if (el->overrun_cancel > 0 && !c->cancelled && c->own_ctx != NULL &&
	    (double)measured > (double)c->weight * el->overrun_cancel) {
		c->cancelled = true;
		*victim = ration_ctx_ref(c->own_ctx);
	}
	if (measured > c->claim) {
		/* -EPIPE (closed budget) or -EOVERFLOW: nothing to hold back. */
		(void)consume_locked(el, c, round_step(measured) - c->claim);
	} else if (c->claim > c->floor &&
		   measured + RATION__CLAIM_SHRINK <= c->claim) {
		int64_t target = round_step(measured);
		lower_locked(el, c, target > c->floor ? target : c->floor);
	}
}

/* One sample of every running task. With per-task counters each task's
 * live heap above its start; without, the process's RSS growth since the
 * group became busy, past the floors of its running tasks, charged to the
 * oldest task: it is the one that never waits, and the one whose end a
 * queued go() is waiting for. At most one overrun_cancel per pass (the
 * cancel runs unlocked; the next pass sees the rest). */
void
ration__elastic_sample_locked(struct ration__elastic *el)
{
	ration_ctx_t *victim = NULL;
	if (el->per_task) {
		for (struct ration__list *n = el->tracked.next;
		     n != &el->tracked && !victim; n = n->next) {
			struct ration__claim *c = CLAIM_OF(n);
			if (c->allocp != NULL)
				measured_locked(el, c,
						(int64_t)(*c->allocp -
							  *c->deallocp -
							  c->heap0),
						&victim);
		}
	} else if (!list_empty(&el->tracked)) {
		int64_t rss = ration__rss_read(el->rss_fd);
		struct ration__claim *c = CLAIM_OF(list_first(&el->tracked));
		int64_t excess = rss - el->rss_base - el->floors;
		if (rss >= 0)
			measured_locked(el, c,
					c->floor + (excess > 0 ? excess : 0),
					&victim);
	}
	if (victim != NULL) {
		pthread_mutex_unlock(&el->mu);
		cancel_unref(victim, -ENOMEM);
		pthread_mutex_lock(&el->mu);
	}
}

/* ---- around fn ----------------------------------------------------------- */

ration_ctx_t *
ration__claim_begin(struct ration__elastic *el, struct ration__claim *c,
		    ration_ctx_t *group_ctx, int64_t weight, int64_t start_tick)
{
	c->el = el;
	c->weight = c->floor = c->claim = c->max_claim = weight;
	c->start_tick = start_tick;
	c->ctx = group_ctx;
	c->own_ctx = NULL;
	c->wake = NULL;
	c->tracked = c->cancelled = c->in_arena = false;
	list_init(&c->node);
	c->outer = tl_claim;
	tl_claim = c;
	if (!el->elastic) {
		if (RATION_LIKELY(!atomic_load_explicit(&el->track_all,
							memory_order_relaxed)))
			return group_ctx;
		pthread_mutex_lock(&el->mu);
		track_locked(el, c);
		pthread_mutex_unlock(&el->mu);
		return group_ctx;
	}

	if (el->overrun_cancel > 0 &&
	    ration_ctx_with_cancel(group_ctx, &c->own_ctx) == 0)
		c->ctx = c->own_ctx;
	c->allocp = c->deallocp = NULL;
	if (el->per_task && ration__heap_counters(&c->allocp, &c->deallocp)) {
		c->in_arena = el->backpressure &&
			      ration__arena_enter(&c->arena, &c->old_arena);
		c->heap0 = *c->allocp - *c->deallocp;
	}
	pthread_mutex_lock(&el->mu);
	if (list_empty(&el->tracked)) {
		if (!el->per_task)
			el->rss_base = ration__rss_read(el->rss_fd);
		pthread_cond_signal(&el->cv); /* the sampler starts sampling */
	}
	track_locked(el, c);
	pthread_mutex_unlock(&el->mu);
	return c->ctx;
}

void
ration__claim_end(struct ration__claim *c, ration_task_report_t *r)
{
	struct ration__elastic *el = c->el;

	if (c->in_arena) {
		c->in_arena = false;
		ration__arena_leave(c->arena, c->old_arena);
	}
	tl_claim = c->outer;
	if (c->tracked) {
		pthread_mutex_lock(&el->mu);
		ration_ctx_t *next = untrack_locked(el, c);
		if (c->claim > c->weight)
			(void)ration_sem_release(el->budget,
						 c->claim - c->weight);
		pthread_mutex_unlock(&el->mu);
		cancel_unref(next, -ECANCELED);
		c->tracked = false;
	}
	if (c->own_ctx != NULL)
		ration_ctx_unref(c->own_ctx);
	/* max_claim: written under el->mu by this thread or (sampler) read
	 * there; the task is untracked now, so no one else touches it. */
	r->overrun_bytes = c->max_claim - c->weight;
	if (r->overrun_bytes > 0) {
		atomic_fetch_add_explicit(&el->overrun_tasks, 1,
					  memory_order_relaxed);
		ration__atomic_max(&el->max_overrun_bytes, r->overrun_bytes);
	}
}

/* ---- grow ---------------------------------------------------------------- */

int
ration_task_grow(ration_ctx_t *ctx, int64_t n)
{
	struct ration__claim *c = tl_claim;
	if (c == NULL)
		return -EPERM;
	if (n <= 0)
		return -EINVAL;
	struct ration__elastic *el = c->el;
	ration_sem_stats_t st;
	ration_sem_stats(el->budget, &st);

	atomic_store_explicit(&el->track_all, true, memory_order_relaxed);
	pthread_mutex_lock(&el->mu);
	if (!c->tracked)
		track_locked(el, c);
	bool oldest = is_oldest(el, c);
	int rc = 0;
	bool wait = false;
	if (!oldest && n > st.size - c->claim)
		rc = -E2BIG;
	else if ((rc = ration_ctx_err(ctx)) != 0)
		;
	else if (oldest)
		rc = consume_locked(el, c, n);
	else
		wait = true;
	pthread_mutex_unlock(&el->mu);
	if (wait)
		rc = raise_waiting(el, c, ctx, n);
	if (rc == 0) {
		pthread_mutex_lock(&el->mu);
		c->floor += n;
		el->floors += n;
		pthread_mutex_unlock(&el->mu);
	}
	return rc;
}

/* ---- backpressure (elastic_arena.c's hooks) ------------------------------ */

int
ration__claim_charge(unsigned arena, int64_t len)
{
	struct ration__claim *c = tl_claim;
	if (c == NULL || !c->in_arena || c->arena != arena)
		return 0; /* not a task's own arena: pages for someone else */
	if (ration__nowait_depth > 0)
		return 0; /* a ration lock is held (internal/nowait.h) */
	struct ration__elastic *el = c->el;
	int64_t need = (int64_t)(*c->allocp - *c->deallocp - c->heap0) + len;
	/* Within a step of the claim (a size class's padding, a slab) the
	 * sampler's consume follows: an honest task never waits here. */
	pthread_mutex_lock(&el->mu);
	int64_t n = need > c->claim + RATION__CLAIM_STEP
			    ? round_step(need) - c->claim
			    : 0;
	pthread_mutex_unlock(&el->mu);
	if (n <= 0)
		return 0;
	int rc = raise_waiting(el, c, c->ctx, n);
	/* Only the task's ctx refuses memory; a closed or overflowing budget
	 * has nothing to hold back. */
	return rc != 0 && ration_ctx_err(c->ctx) != 0 ? rc : 0;
}

/* ---- life cycle ---------------------------------------------------------- */

int
ration__elastic_new(const ration_group_opts_t *o, struct ration__elastic **out)
{
	if (isnan(o->overrun_cancel) || o->overrun_cancel < 0 ||
	    (o->overrun_cancel > 0 && o->overrun_cancel < 1) ||
	    o->sample_ns < 0)
		return -EINVAL;
	struct ration__elastic *el = calloc(1, sizeof(*el));
	if (el == NULL)
		return -ENOMEM;
	el->budget = o->budget;
	el->elastic = o->elastic;
	el->overrun_cancel = o->elastic ? o->overrun_cancel : 0;
	el->sample_ns = o->sample_ns > 0 ? o->sample_ns : 1000000;
	el->backpressure = o->backpressure;
	el->rss_fd = -1;
	list_init(&el->tracked);
	pthread_mutex_init(&el->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&el->cv, &ca);
	pthread_condattr_destroy(&ca);

	int rc = 0;
	if (el->elastic) {
		const volatile uint64_t *a, *d;
		el->per_task = ration__heap_counters(&a, &d);
		if (!el->per_task &&
		    (el->rss_fd = open("/proc/self/statm",
				       O_RDONLY | O_CLOEXEC)) < 0)
			rc = -ENOTSUP;
		else if (pthread_create(&el->sampler, NULL,
					ration__elastic_sampler, el) != 0)
			rc = -EAGAIN;
		else
			el->has_sampler = true;
	}
	if (rc != 0) {
		ration__elastic_free(el);
		return rc;
	}
	*out = el;
	return 0;
}

void
ration__elastic_free(struct ration__elastic *el)
{
	if (el == NULL)
		return;
	if (el->has_sampler) {
		pthread_mutex_lock(&el->mu);
		el->stop = true;
		pthread_cond_signal(&el->cv);
		pthread_mutex_unlock(&el->mu);
		pthread_join(el->sampler, NULL);
	}
	if (el->rss_fd >= 0)
		close(el->rss_fd);
	pthread_cond_destroy(&el->cv);
	pthread_mutex_destroy(&el->mu);
	free(el);
}

void
ration__elastic_stats(struct ration__elastic *el, ration_group_stats_t *out)
{
	out->overrun_tasks =
		atomic_load_explicit(&el->overrun_tasks, memory_order_relaxed);
	out->max_overrun_bytes = atomic_load_explicit(&el->max_overrun_bytes,
						      memory_order_relaxed);
	out->consumed_total =
		atomic_load_explicit(&el->consumed_total, memory_order_relaxed);
}
