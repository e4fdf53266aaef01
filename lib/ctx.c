/* ctx.c - cancellation and deadlines, parent -> child (nsync's note).
 *
 * Locking:
 *  - ctx->mu guards children, watchers, afters, next_id, fd and the
 *    transition of err from 0 to an error (err is read lock-free).
 *  - Cancel propagates down one ctx at a time, never holding two ctx locks:
 *    under a ctx's mu it marks the ctx done and takes a reference on each
 *    linked child (onto the canceller's worklist, ctx->done_next); then it
 *    drops that mu and does the children. So propagation needs neither
 *    recursion nor nested locks, and a chain of any depth is cancelled in
 *    constant stack (the timer thread's stack is small). A child made
 *    after its parent was marked done is born done (ctx_new checks under
 *    the parent's mu); one made before is on the parent's list and reached.
 *  - The timer lock (timer.c) is taken inside a ctx mu when arming; the
 *    timer thread takes no ctx lock while holding it (timer_claim only
 *    touches refs), so the two never nest the other way round.
 *  - No user code (after-funcs) runs under any lock: cancel collects them,
 *    with the parkers to wake, in a local batch and runs them afterwards.
 *
 * Lifetime: a child holds a reference on its parent, so a parent is never
 * freed before its children; freeing a child first unlinks it from its
 * parent under the parent's lock, after which no cancel can reach it. A
 * canceller only takes a child whose count is still above zero (one whose
 * last reference is going away is skipped: it is about to be freed).
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
#include "internal/timer.h"
#include "ration/ctx.h"

struct after {
	struct after *next;
	void (*fn)(void *arg);
	void *arg;
	uint64_t id;
};

struct ration_ctx {
	_Atomic int err;      /* 0 until done; set once, under mu */
	_Atomic long refs;    /* background: unused */
	int64_t deadline;     /* effective (min over ancestors); immutable */
	ration_ctx_t *parent; /* holds a reference; NULL for roots */
	pthread_mutex_t mu;
	struct ration__list children; /* mu: child->sibling */
	struct ration__list
		sibling; /* parent->mu; self-linked when not a child */
	struct ration__list watchers; /* mu: struct ration__ctx_watch */
	struct after *afters;         /* mu; pending after-funcs */
	uint64_t next_id;             /* mu */
	int fd;                       /* mu; -1 until ration_ctx_fd() */
	struct ration__timer timer;  /* armed while an after-func or fd waits */
	ration_ctx_t *done_next;     /* owned by the one canceller that marked
				       * the parent done: its worklist link */
	struct ration__ctx_sig *sig; /* immutable once published; NULL
				       * unless made by with_signals */
};

static ration_ctx_t background = {.deadline = RATION_FOREVER, .fd = -1};

/* What one cancel collected under locks, to be done after them. */
struct done_batch {
	struct ration__wake_list wake;
	struct after *afters;
	ration_ctx_t *work; /* children still to mark done, each holding a
			       * reference taken for the canceller */
};

/* Test-only hook: see internal/ctx.h. */
_Atomic(ration__ctx_hook_fn) ration__ctx_done_hook;

/* @ctx was just seen done with @err by a caller about to act on it. */
static inline void
observed_done(const ration_ctx_t *ctx, int err)
{
	ration__ctx_hook_fn hook = atomic_load_explicit(&ration__ctx_done_hook,
							memory_order_relaxed);
	if (RATION_UNLIKELY(hook != NULL))
		hook(ctx, err);
}

/* Take a reference unless the count is already zero (the ctx is being
 * freed, its last unref waiting for a lock we may hold). */
bool
ration__ctx_ref_if_live(ration_ctx_t *c)
{
	long r = atomic_load_explicit(&c->refs, memory_order_relaxed);
	while (r > 0 && !atomic_compare_exchange_weak_explicit(
				&c->refs, &r, r + 1, memory_order_relaxed,
				memory_order_relaxed))
		;
	return r > 0;
}

/* ---- deadline timer (internal/timer.h) --------------------------------- */

static void cancel_err(ration_ctx_t *ctx, int err);

/* Under the timer lock: a ctx whose last reference is gone is being
 * freed and waits in disarm; leave it alone. Else keep it alive for fire. */
static bool
timer_claim(struct ration__timer *t)
{
	return ration__ctx_ref_if_live(
		RATION_CONTAINER_OF(t, ration_ctx_t, timer));
}

static void
timer_fire(struct ration__timer *t)
{
	ration_ctx_t *c = RATION_CONTAINER_OF(t, ration_ctx_t, timer);
	cancel_err(c, -ETIMEDOUT);
	ration_ctx_unref(c);
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
 * then came first), put its live children on @b's worklist (each with a
 * reference) and collect what must happen outside the locks into @b.
 * c->mu held. */
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

	for (struct ration__list *n = c->children.next; n != &c->children;
	     n = n->next) {
		ration_ctx_t *child =
			RATION_CONTAINER_OF(n, ration_ctx_t, sibling);
		if (!ration__ctx_ref_if_live(child))
			continue;
		child->done_next = b->work;
		b->work = child;
	}
	while (!list_empty(&c->watchers)) {
		struct ration__list *n = list_first(&c->watchers);
		list_remove(n);
		wake_list_add(
			&b->wake,
			RATION_CONTAINER_OF(n, struct ration__ctx_watch, node)
				->pk);
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
	b.work = NULL;
	pthread_mutex_lock(&ctx->mu);
	done_locked(ctx, err, &b);
	pthread_mutex_unlock(&ctx->mu);
	/* The descendants, one lock at a time; each takes its parent's error
	 * (set, and so stable, before the child was put on the worklist). */
	while (b.work != NULL) {
		ration_ctx_t *c = b.work;
		b.work = c->done_next;
		pthread_mutex_lock(&c->mu);
		done_locked(c,
			    atomic_load_explicit(&c->parent->err,
						 memory_order_relaxed),
			    &b);
		pthread_mutex_unlock(&c->mu);
		ration_ctx_unref(c); /* may free it: no lock is held here */
	}
	run_batch(&b);
	/* A done ctx needs no timer; drop it now rather than at free. */
	if (ctx->deadline != RATION_FOREVER)
		ration__timer_disarm(&ctx->timer);
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
	ration__timer_init(&c->timer, timer_claim, timer_fire);
	c->deadline = deadline_ns;
	if (parent != NULL) {
		c->parent = ration_ctx_ref(parent);
		if (parent->deadline < c->deadline)
			c->deadline = parent->deadline;
		pthread_mutex_lock(&parent->mu);
		int perr = atomic_load_explicit(&parent->err,
						memory_order_relaxed);
		if (perr != 0)
			atomic_store_explicit(
				&c->err, deadline_passed(c) ? -ETIMEDOUT : perr,
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
ration_ctx_with_deadline(ration_ctx_t *parent, int64_t deadline_ns,
			 ration_ctx_t **out)
{
	return ctx_new(parent, deadline_ns, out);
}

int
ration_ctx_with_timeout(ration_ctx_t *parent, int64_t timeout_ns,
			ration_ctx_t **out)
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
		if (atomic_fetch_sub_explicit(&ctx->refs, 1,
					      memory_order_acq_rel) != 1)
			return;
		ration_ctx_t *parent = ctx->parent;
		if (parent != NULL) {
			pthread_mutex_lock(&parent->mu);
			list_remove(&ctx->sibling);
			pthread_mutex_unlock(&parent->mu);
		}
		if (ctx->deadline != RATION_FOREVER)
			ration__timer_disarm(&ctx->timer);
		RATION_ASSERT(list_empty(&ctx->watchers));
		RATION_ASSERT(list_empty(&ctx->children));
		while (ctx->afters != NULL) {
			struct after *a = ctx->afters;
			ctx->afters = a->next;
			free(a);
		}
		if (ctx->fd >= 0)
			close(ctx->fd);
		if (ctx->sig != NULL)
			ration__ctx_sig_free(ctx->sig);
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
	if (err == 0 && deadline_passed(ctx))
		err = -ETIMEDOUT;
	if (err != 0)
		observed_done(ctx, err);
	return err;
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
	if (err != 0)
		observed_done(ctx, err);
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
ration_ctx_sleep(ration_ctx_t *ctx, int64_t ns)
{
	int64_t until = ns_add_sat(clock_mono_ns(), ns > 0 ? ns : 0);
	struct ration__ctx_watch w = {.pk = ration__parker_self()};
	int err = ration__ctx_watch(ctx, &w);
	while (err == 0 && (err = ration_ctx_err(ctx)) == 0 &&
	       clock_mono_ns() < until)
		ration__park(w.pk, until < ration_ctx_deadline(ctx)
					   ? until
					   : ration_ctx_deadline(ctx));
	ration__ctx_unwatch(ctx, &w);
	return err;
}

void
ration__ctx_set_sig(ration_ctx_t *ctx, struct ration__ctx_sig *sig)
{
	ctx->sig = sig;
}

struct ration__ctx_sig *
ration__ctx_sig(const ration_ctx_t *ctx)
{
	return ration__ctx_is_background(ctx) ? NULL : ctx->sig;
}

const ration_ctx_t *
ration__ctx_parent(const ration_ctx_t *ctx)
{
	return ration__ctx_is_background(ctx) ? NULL : ctx->parent;
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
	if (atomic_load_explicit(&ctx->err, memory_order_relaxed) != 0 ||
	    deadline_passed(ctx)) {
		uint64_t one = 1;
		(void)!write(rc, &one, sizeof(one));
	} else if (ctx->deadline != RATION_FOREVER) {
		int arm = ration__timer_arm(&ctx->timer, ctx->deadline);
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
ration_ctx_after(ration_ctx_t *ctx, void (*fn)(void *arg), void *arg,
		 uint64_t *id)
{
	if (ration__ctx_is_background(ctx) || fn == NULL)
		return -EINVAL;
	struct after *a = malloc(sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&ctx->mu);
	if (atomic_load_explicit(&ctx->err, memory_order_relaxed) == 0 &&
	    deadline_passed(ctx)) {
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
		int rc = ration__timer_arm(&ctx->timer, ctx->deadline);
		if (rc != 0) {
			pthread_mutex_unlock(&ctx->mu);
			free(a);
			return rc;
		}
	}
	*a = (struct after){.next = ctx->afters,
			    .fn = fn,
			    .arg = arg,
			    .id = ++ctx->next_id};
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
