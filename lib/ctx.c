/* ctx.c - cancellation and deadlines, parent -> child (nsync's note).
 *
 * Locking:
 *  - ctx->mu guards children, watchers, afters, next_id, fd and the
 *    transition of err from 0 to an error (err is read lock-free).
 *  - Cancel propagates down while holding each ancestor's lock: parent mu
 *    is taken before child mu, never the reverse.
 *  - timer_mu guards the deadline heap; it is taken inside a ctx mu (when
 *    arming) or alone (timer thread, free), never the other way round.
 *  - No user code (after-funcs) runs under any lock: cancel collects them,
 *    with the parkers to wake, in a local batch and runs them afterwards.
 *
 * Lifetime: a child holds a reference on its parent, so a parent is never
 * freed before its children; freeing a child first unlinks it from its
 * parent under the parent's lock, after which no cancel can reach it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/ctx.h"
#include "internal/list.h"
#include "internal/park.h"
#include "ration/ctx.h"

struct after {
	struct after *next;
	void (*fn)(void *arg);
	void *arg;
	uint64_t id;
};

struct ration_ctx {
	_Atomic int err;          /* 0 until done; set once, under mu */
	_Atomic long refs;        /* background: unused */
	int64_t deadline;         /* effective (min over ancestors); immutable */
	ration_ctx_t *parent;     /* holds a reference; NULL for roots */
	pthread_mutex_t mu;
	struct ration__list children; /* mu: child->sibling */
	struct ration__list sibling;  /* parent->mu; self-linked when not a child */
	struct ration__list watchers; /* mu: struct ration__ctx_watch */
	struct after *afters;         /* mu; pending after-funcs */
	uint64_t next_id;             /* mu */
	int fd;                       /* mu; -1 until ration_ctx_fd() */
	size_t heap_idx;              /* timer_mu; NOT_ARMED when not in the heap */
};

#define NOT_ARMED SIZE_MAX

static ration_ctx_t background = {.deadline = RATION_FOREVER, .fd = -1};

/* What one cancel collected under locks, to be done after them. */
struct done_batch {
	struct ration__wake_list wake;
	struct after *afters;
};

/* ---- the process-wide deadline timer ---------------------------------- */

static pthread_mutex_t timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cv;
static ration_ctx_t **heap;        /* timer_mu: min-heap on deadline */
static size_t heap_n, heap_cap;    /* timer_mu */
static bool timer_running;         /* timer_mu */

static void cancel_err(ration_ctx_t *ctx, int err);

static void
heap_set(size_t i, ration_ctx_t *c)
{
	heap[i] = c;
	c->heap_idx = i;
}

static void
heap_sift_up(size_t i)
{
	ration_ctx_t *c = heap[i];
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (heap[up]->deadline <= c->deadline)
			break;
		heap_set(i, heap[up]);
		i = up;
	}
	heap_set(i, c);
}

static void
heap_sift_down(size_t i)
{
	ration_ctx_t *c = heap[i];
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		int64_t best = c->deadline;
		if (l < heap_n && heap[l]->deadline < best)
			m = l, best = heap[l]->deadline;
		if (l + 1 < heap_n && heap[l + 1]->deadline < best)
			m = l + 1;
		if (m == i)
			break;
		heap_set(i, heap[m]);
		i = m;
	}
	heap_set(i, c);
}

/* timer_mu held. */
static void
heap_remove(ration_ctx_t *c)
{
	size_t i = c->heap_idx;
	c->heap_idx = NOT_ARMED;
	ration_ctx_t *last = heap[--heap_n];
	if (i == heap_n)
		return;
	heap_set(i, last);
	heap_sift_up(i);
	heap_sift_down(last->heap_idx);
}

static void *
timer_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&timer_mu);
	for (;;) {
		if (heap_n == 0) {
			pthread_cond_wait(&timer_cv, &timer_mu);
			continue;
		}
		ration_ctx_t *c = heap[0];
		if (clock_mono_ns() < c->deadline) {
			struct timespec ts = ns_to_timespec(c->deadline);
			pthread_cond_timedwait(&timer_cv, &timer_mu, &ts);
			continue;
		}
		heap_remove(c);
		/* A ctx whose last reference is gone is being freed and waits
		 * for timer_mu to unarm: leave it alone. */
		long r = atomic_load_explicit(&c->refs, memory_order_relaxed);
		while (r > 0 && !atomic_compare_exchange_weak_explicit(
					&c->refs, &r, r + 1, memory_order_relaxed,
					memory_order_relaxed))
			;
		if (r <= 0)
			continue;
		pthread_mutex_unlock(&timer_mu);
		cancel_err(c, -ETIMEDOUT);
		ration_ctx_unref(c);
		pthread_mutex_lock(&timer_mu);
	}
	return NULL;
}

/* Start the timer thread once; timer_mu held. Return 0 or -ENOMEM. */
static int
timer_start_locked(void)
{
	if (timer_running)
		return 0;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&timer_cv, &ca);
	pthread_condattr_destroy(&ca);

	pthread_attr_t attr;
	pthread_t tid;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	int rc = pthread_create(&tid, &attr, timer_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_cond_destroy(&timer_cv);
		return -ENOMEM;
	}
	pthread_setname_np(tid, "ration-timer");
	timer_running = true;
	return 0;
}

/* Put @c (not done, with a deadline) in the timer heap; c->mu held.
 * Return 0 or -ENOMEM (nothing changed). */
static int
timer_arm(ration_ctx_t *c)
{
	int rc = 0;

	pthread_mutex_lock(&timer_mu);
	if (c->heap_idx != NOT_ARMED)
		goto out;
	if ((rc = timer_start_locked()) != 0)
		goto out;
	if (heap_n == heap_cap) {
		size_t cap = heap_cap ? heap_cap * 2 : 64;
		ration_ctx_t **h = realloc(heap, cap * sizeof(*h));
		if (h == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		heap = h;
		heap_cap = cap;
	}
	heap_set(heap_n++, c);
	heap_sift_up(c->heap_idx);
	if (heap[0] == c)
		pthread_cond_signal(&timer_cv);
out:
	pthread_mutex_unlock(&timer_mu);
	return rc;
}

static void
timer_unarm(ration_ctx_t *c)
{
	pthread_mutex_lock(&timer_mu);
	if (c->heap_idx != NOT_ARMED)
		heap_remove(c);
	pthread_mutex_unlock(&timer_mu);
}

/* ---- cancel ------------------------------------------------------------ */

bool
ration__ctx_is_background(const ration_ctx_t *ctx)
{
	return ctx == NULL || ctx == &background;
}

static bool
deadline_passed(const ration_ctx_t *c)
{
	return c->deadline != RATION_FOREVER && clock_mono_ns() >= c->deadline;
}

/* Make @c done with @err (or -ETIMEDOUT if its deadline has passed, which
 * then came first) and do the same to its descendants, collecting what
 * must happen outside the locks into @b. c->mu held. */
static void
done_locked(ration_ctx_t *c, int err, struct done_batch *b)
{
	if (atomic_load_explicit(&c->err, memory_order_relaxed) != 0)
		return;
	if (deadline_passed(c))
		err = -ETIMEDOUT;
	/* release: a thread that sees err (acquire in ration_ctx_err) also
	 * sees everything the canceller did before cancelling. */
	atomic_store_explicit(&c->err, err, memory_order_release);

	for (struct ration__list *n = c->children.next; n != &c->children; n = n->next) {
		ration_ctx_t *child = RATION_CONTAINER_OF(n, ration_ctx_t, sibling);
		pthread_mutex_lock(&child->mu);
		done_locked(child, err, b);
		pthread_mutex_unlock(&child->mu);
	}
	while (!list_empty(&c->watchers)) {
		struct ration__list *n = list_first(&c->watchers);
		list_remove(n);
		wake_list_add(&b->wake,
			      RATION_CONTAINER_OF(n, struct ration__ctx_watch, node)->pk);
	}
	if (c->afters != NULL) {
		struct after *last = c->afters;
		while (last->next != NULL)
			last = last->next;
		last->next = b->afters;
		b->afters = c->afters;
		c->afters = NULL;
	}
	if (c->fd >= 0) {
		uint64_t one = 1;
		(void)!write(c->fd, &one, sizeof(one));
	}
}

static void
run_batch(struct done_batch *b)
{
	wake_list_wake(&b->wake);
	while (b->afters != NULL) {
		struct after *a = b->afters;
		b->afters = a->next;
		a->fn(a->arg);
		free(a);
	}
}

static void
cancel_err(ration_ctx_t *ctx, int err)
{
	struct done_batch b = {.afters = NULL};

	if (ration__ctx_is_background(ctx))
		return;
	wake_list_init(&b.wake);
	pthread_mutex_lock(&ctx->mu);
	done_locked(ctx, err, &b);
	pthread_mutex_unlock(&ctx->mu);
	run_batch(&b);
	/* A done ctx needs no timer; drop it now rather than at free. */
	if (ctx->deadline != RATION_FOREVER)
		timer_unarm(ctx);
}

void
ration_ctx_cancel(ration_ctx_t *ctx)
{
	cancel_err(ctx, -ECANCELED);
}

void
ration_ctx_cancel_with(ration_ctx_t *ctx, int cause)
{
	cancel_err(ctx, cause < 0 ? cause : -ECANCELED);
}

/* ---- creation and lifetime --------------------------------------------- */

ration_ctx_t *
ration_ctx_background(void)
{
	return &background;
}

static int
ctx_new(ration_ctx_t *parent, int64_t deadline_ns, ration_ctx_t **out)
{
	if (out == NULL)
		return -EINVAL;
	ration_ctx_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	if (ration__ctx_is_background(parent))
		parent = NULL;
	atomic_init(&c->refs, 1);
	atomic_init(&c->err, 0);
	pthread_mutex_init(&c->mu, NULL);
	list_init(&c->children);
	list_init(&c->sibling);
	list_init(&c->watchers);
	c->fd = -1;
	c->heap_idx = NOT_ARMED;
	c->deadline = deadline_ns;
	if (parent != NULL) {
		c->parent = ration_ctx_ref(parent);
		if (parent->deadline < c->deadline)
			c->deadline = parent->deadline;
		pthread_mutex_lock(&parent->mu);
		int perr = atomic_load_explicit(&parent->err, memory_order_relaxed);
		if (perr != 0)
			atomic_store_explicit(&c->err, deadline_passed(c) ? -ETIMEDOUT : perr,
					      memory_order_relaxed);
		else
			list_push_back(&parent->children, &c->sibling);
		pthread_mutex_unlock(&parent->mu);
	}
	*out = c;
	return 0;
}

int
ration_ctx_with_cancel(ration_ctx_t *parent, ration_ctx_t **out)
{
	return ctx_new(parent, RATION_FOREVER, out);
}

int
ration_ctx_with_deadline(ration_ctx_t *parent, int64_t deadline_ns, ration_ctx_t **out)
{
	return ctx_new(parent, deadline_ns, out);
}

int
ration_ctx_with_timeout(ration_ctx_t *parent, int64_t timeout_ns, ration_ctx_t **out)
{
	return ctx_new(parent, ration_deadline_after(timeout_ns), out);
}

ration_ctx_t *
ration_ctx_ref(ration_ctx_t *ctx)
{
	if (!ration__ctx_is_background(ctx))
		atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	return ctx;
}

void
ration_ctx_unref(ration_ctx_t *ctx)
{
	while (!ration__ctx_is_background(ctx)) {
		/* acq_rel: the freeing thread must see every other holder's
		 * writes, which they published with this release. */
		if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
			return;
		ration_ctx_t *parent = ctx->parent;
		if (parent != NULL) {
			pthread_mutex_lock(&parent->mu);
			list_remove(&ctx->sibling);
			pthread_mutex_unlock(&parent->mu);
		}
		if (ctx->deadline != RATION_FOREVER)
			timer_unarm(ctx);
		RATION_ASSERT(list_empty(&ctx->watchers));
		RATION_ASSERT(list_empty(&ctx->children));
		while (ctx->afters != NULL) {
			struct after *a = ctx->afters;
			ctx->afters = a->next;
			free(a);
		}
		if (ctx->fd >= 0)
			close(ctx->fd);
		pthread_mutex_destroy(&ctx->mu);
		free(ctx);
		ctx = parent; /* drop the child's reference, iteratively */
	}
}

/* ---- queries and waiting ----------------------------------------------- */

int
ration_ctx_err(const ration_ctx_t *ctx)
{
	if (ration__ctx_is_background(ctx))
		return 0;
	/* acquire: pairs with the release store in done_locked(). */
	int err = atomic_load_explicit(&ctx->err, memory_order_acquire);
	if (err != 0)
		return err;
	return deadline_passed(ctx) ? -ETIMEDOUT : 0;
}

int64_t
ration_ctx_deadline(const ration_ctx_t *ctx)
{
	return ration__ctx_is_background(ctx) ? RATION_FOREVER : ctx->deadline;
}

int
ration__ctx_watch(ration_ctx_t *ctx, struct ration__ctx_watch *w)
{
	list_init(&w->node);
	if (ration__ctx_is_background(ctx))
		return 0;
	pthread_mutex_lock(&ctx->mu);
	int err = atomic_load_explicit(&ctx->err, memory_order_relaxed);
	if (err == 0)
		list_push_back(&ctx->watchers, &w->node);
	pthread_mutex_unlock(&ctx->mu);
	return err;
}

void
ration__ctx_unwatch(ration_ctx_t *ctx, struct ration__ctx_watch *w)
{
	if (ration__ctx_is_background(ctx))
		return;
	pthread_mutex_lock(&ctx->mu);
	list_remove(&w->node);
	pthread_mutex_unlock(&ctx->mu);
}

int
ration_ctx_wait(ration_ctx_t *ctx)
{
	if (ration__ctx_is_background(ctx))
		return -EINVAL;
	struct ration__ctx_watch w = {.pk = ration__parker_self()};
	int err = ration__ctx_watch(ctx, &w);
	while (err == 0 && (err = ration_ctx_err(ctx)) == 0)
		ration__park(w.pk, ctx->deadline);
	ration__ctx_unwatch(ctx, &w);
	return err;
}

int
ration_ctx_fd(ration_ctx_t *ctx)
{
	if (ration__ctx_is_background(ctx))
		return -EINVAL;
	pthread_mutex_lock(&ctx->mu);
	int rc = ctx->fd;
	if (rc >= 0)
		goto out;
	rc = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rc < 0) {
		rc = errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
		goto out;
	}
	if (atomic_load_explicit(&ctx->err, memory_order_relaxed) != 0 || deadline_passed(ctx)) {
		uint64_t one = 1;
		(void)!write(rc, &one, sizeof(one));
	} else if (ctx->deadline != RATION_FOREVER) {
		int arm = timer_arm(ctx);
		if (arm != 0) {
			close(rc);
			rc = arm;
			goto out;
		}
	}
	ctx->fd = rc;
out:
	pthread_mutex_unlock(&ctx->mu);
	return rc;
}

int
ration_ctx_after(ration_ctx_t *ctx, void (*fn)(void *arg), void *arg, uint64_t *id)
{
	if (ration__ctx_is_background(ctx) || fn == NULL)
		return -EINVAL;
	struct after *a = malloc(sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&ctx->mu);
	if (atomic_load_explicit(&ctx->err, memory_order_relaxed) == 0 && deadline_passed(ctx)) {
		/* Nobody has noticed the deadline yet: make it official, so the
		 * after-func runs below as for any done ctx. */
		pthread_mutex_unlock(&ctx->mu);
		cancel_err(ctx, -ETIMEDOUT);
		pthread_mutex_lock(&ctx->mu);
	}
	if (atomic_load_explicit(&ctx->err, memory_order_relaxed) != 0) {
		uint64_t my_id = ++ctx->next_id;
		pthread_mutex_unlock(&ctx->mu);
		free(a);
		if (id != NULL)
			*id = my_id;
		fn(arg);
		return 0;
	}
	if (ctx->deadline != RATION_FOREVER) {
		int rc = timer_arm(ctx);
		if (rc != 0) {
			pthread_mutex_unlock(&ctx->mu);
			free(a);
			return rc;
		}
	}
	*a = (struct after){.next = ctx->afters, .fn = fn, .arg = arg, .id = ++ctx->next_id};
	ctx->afters = a;
	if (id != NULL)
		*id = a->id;
	pthread_mutex_unlock(&ctx->mu);
	return 0;
}

bool
ration_ctx_stop_after(ration_ctx_t *ctx, uint64_t id)
{
	if (ration__ctx_is_background(ctx))
		return false;
	struct after *found = NULL;
	pthread_mutex_lock(&ctx->mu);
	for (struct after **pp = &ctx->afters; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			found = *pp;
			*pp = found->next;
			break;
		}
	}
	pthread_mutex_unlock(&ctx->mu);
	free(found);
	return found != NULL;
}
