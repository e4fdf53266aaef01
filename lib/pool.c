/* pool.c - bounded thread pool; nothing lost at shutdown.
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
 *    queue for WATCHDOG_NS, it wakes or starts as many workers as there
 *    are queued tasks (up to the thread limit). So a queued task waits at
 *    most about WATCHDOG_NS for a worker while one could be had.
 *
 * Locking: p->mu guards the queue, the idle list, thread counts, shutdown
 * state and the counters not marked atomic. Order: p->mu, then the slot
 * semaphore's mu (close under p->mu); sem acquire/release of slots happen
 * without p->mu. No user code (task fns, thread_init/fini) runs under mu.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/cpu.h"
#include "internal/ctx.h"
#include "internal/futex_mutex.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/pool.h"
#include "internal/taskq.h"
#include "internal/timer.h"
#include "ration/pool.h"
#include "ration/sem.h"

#define DEFAULT_IDLE_NS          ((int64_t)10 * 1000000000)
#define DEFAULT_QUEUE_PER_THREAD 1024
/* How long an idle worker spins for new work before parking: long enough
 * to cover the gap between two submits of a busy producer, short enough
 * not to steal a CPU from it for long. */
#define IDLE_SPIN_NS 20000
/* With one usable CPU, how often an idle worker yields before parking
 * (spin_for_work()). */
#define IDLE_YIELDS 4
/* Longest a queued task waits while workers exist that could take it. */
#define WATCHDOG_NS 1000000
/* How long a worker leaves queued tasks to a submitter that runs short
 * ones itself before it looks again (step_back()): the extra wait of a
 * task queued just as that submitter stops, against two context switches
 * per nap while it goes on. */
#define STEP_BACK_NS 100000

/* A parked worker: lives on the worker's stack while it is in p->idle. */
struct idle_worker {
	struct ration__list node; /* p->mu */
	struct ration__parker *pk;
};

struct ration_pool {
	/* Written on every task, by the submitter and by the worker that
	 * takes it, always under mu: all on the lock word's cache line, so
	 * a hand-over of the lock moves one line (plus the task's slot). */
	struct ration__lock mu RATION_ALIGNED;
	struct queue q;     /* mu */
	uint64_t taken;     /* mu: tasks taken from the queue */
	uint64_t running;   /* mu */
	uint64_t completed; /* mu */

	/* Polled by a spinning worker, read by every submit (kick). */
	_Atomic size_t queued_hint RATION_ALIGNED; /* atomic mirror of q.len */
	_Atomic unsigned spinning; /* atomic: workers spinning for work */
	/* atomic: short tasks a submitter ran itself; see step_back() */
	_Atomic uint64_t short_helps;

	/* Read on every task, written rarely (state changes, high-water
	 * marks): shared in every CPU's cache while nothing changes. */
	ration_sem_t *slots
		RATION_ALIGNED; /* immutable; NULL = unbounded queue */
	int64_t slot_batch;   /* immutable: slots a worker gives back at once */
	unsigned ncpu;        /* immutable */
	unsigned max_threads; /* mu */
	unsigned min_threads; /* mu */
	unsigned nthreads;    /* mu: alive, until after thread_fini */
	unsigned nleaving;    /* mu: of nthreads, those on their way out */
	unsigned nidle;       /* mu */
	bool shutdown;        /* mu */
	bool watchdog_armed;  /* mu: so a submit arms it at most once */
	uint64_t max_running; /* mu: high-water mark */
	uint64_t max_queued;  /* mu: high-water mark */

	struct ration__list idle; /* mu: struct idle_worker */
	struct ration__list
		drainers;      /* mu: struct idle_worker waiting in shutdown */
	unsigned next_index;   /* mu: for thread names */
	struct spares spares;  /* mu: emptied chunks kept for reuse */
	uint64_t unqueued;     /* mu: tasks taken out by run_queued_here() */
	uint64_t taken_at_arm; /* mu: taken when the watchdog was armed */
	uint64_t submitted_at_arm; /* mu: submitted, likewise */
	struct ration__timer watchdog;
	int64_t idle_ns;             /* immutable */
	bool is_default;             /* immutable */
	char name[16];               /* immutable */
	void (*thread_init)(void *); /* immutable */
	void (*thread_fini)(void *); /* immutable */
	void *udata;                 /* immutable */
	uint64_t discarded;          /* mu */
	_Atomic uint64_t rejected;   /* atomic */
};

/* Tasks accepted: each is queued, taken by a worker, or taken out by a
 * shutdown. Derived so that a submit writes no counter of its own. */
static uint64_t
submitted_locked(const ration_pool_t *p)
{
	return p->taken + p->q.len + p->unqueued;
}

/* ---- workers ----------------------------------------------------------- */

/* The pool whose worker this thread is, or NULL: a submit from one of the
 * pool's own tasks does not occupy an extra CPU (awake_target()). */
static _Thread_local ration_pool_t *tl_worker_of;

static void kick_locked(ration_pool_t *p, struct ration__wake_list *wl);

static void
wake_all_locked(struct ration__list *list, struct ration__wake_list *wl)
{
	while (!list_empty(list)) {
		struct ration__list *n = list_first(list);
		list_remove(n);
		wake_list_add(
			wl,
			RATION_CONTAINER_OF(n, struct idle_worker, node)->pk);
	}
}

/* Give back the queue slots of the tasks this worker took. One release
 * per batch keeps the slot semaphore's word from bouncing between the
 * producer and every worker on every task; the batch is small against
 * the capacity (slot_batch), and a worker flushes before it parks. */
static void
slots_flush(ration_pool_t *p, int64_t *owed)
{
	if (*owed != 0) {
		ration_sem_release(p->slots, *owed);
		*owed = 0;
	}
}

/* Spin for new work, if no other worker is already doing so. With one
 * usable CPU a spin cannot see work arrive (the submitter is not
 * running while we are), so yield the CPU instead, a few times: if the
 * submitter is runnable it gets the CPU and queues more, and we take it
 * without a wake-up; parking at once instead made every later submit
 * wake us, and the woken worker preempts the submitter (two context
 * switches per wake). When nothing else is runnable a yield returns at
 * once, so an idle pool still parks within microseconds. */
static void
spin_for_work(ration_pool_t *p)
{
	unsigned zero = 0;
	if (!atomic_compare_exchange_strong_explicit(&p->spinning, &zero, 1,
						     memory_order_relaxed,
						     memory_order_relaxed))
		return;
	if (!ration__may_spin()) {
		for (int i = 0; i < IDLE_YIELDS &&
				atomic_load_explicit(&p->queued_hint,
						     memory_order_relaxed) == 0;
		     i++)
			sched_yield();
		goto out;
	}
	int64_t until = clock_mono_ns() + IDLE_SPIN_NS;
	do {
		for (int i = 0; i < 64; i++) {
			if (atomic_load_explicit(&p->queued_hint,
						 memory_order_relaxed) != 0)
				goto out;
			ration__cpu_relax();
		}
	} while (clock_mono_ns() < until);
out:
	atomic_store_explicit(&p->spinning, 0, memory_order_relaxed);
}

/* Whether a worker that finds tasks queued should leave them to the
 * submitter running short tasks itself (ration__pool_helped_short(), a
 * group's go() that found no room), because one did so since this worker
 * last took a task or looked (*@seen). Each task a worker takes moves the
 * queue's, the task's and the group's cache lines to its CPU and back,
 * which costs the submitter more than a short task (docs/performance.md,
 * W3 and W4 on 2 CPUs: the worker's few tasks made the group 2-3 times
 * slower than on one CPU). With one usable CPU a worker runs only while
 * the submitter does not: it takes the work. p->mu held. */
static bool
step_back(ration_pool_t *p, uint64_t *seen)
{
	/* Relaxed: a hint; a stale value costs one nap or one task. */
	uint64_t h =
		atomic_load_explicit(&p->short_helps, memory_order_relaxed);
	if (h == *seen || !ration__may_spin())
		return false;
	*seen = h;
	return true;
}

/* Wait for a task; p->mu held (and held again on return). Return false
 * when this worker should exit. *@seen: step_back(). */
static bool
worker_wait(ration_pool_t *p, int64_t *owed, uint64_t *seen)
{
	struct idle_worker me = {.pk = ration__parker_self()};

	for (;;) {
		/* Shrunk by resize: the extra threads leave between tasks,
		 * and idle ones when resize wakes them. Threads already
		 * leaving do not count, or every worker that sees the
		 * excess at once would leave (and strand the queue). */
		if (p->nthreads - p->nleaving > p->max_threads)
			goto leave;
		if (p->q.len != 0 && !p->shutdown && step_back(p, seen)) {
			/* Not on the idle list: submits count this worker
			 * as awake and wake nobody for it. If the submitter
			 * stops running tasks, the nap ends and the next look
			 * takes them: a queued task waits STEP_BACK_NS more
			 * at most. */
			ration__unlock(&p->mu);
			if (p->slots != NULL)
				slots_flush(p, owed);
			ration__park(me.pk,
				     ration_deadline_after(STEP_BACK_NS));
			ration__lock(&p->mu);
			continue;
		}
		if (p->q.len != 0)
			break;
		if (p->shutdown)
			goto leave;
		ration__unlock(&p->mu);
		if (p->slots != NULL)
			slots_flush(p, owed);
		spin_for_work(p);
		ration__lock(&p->mu);
		if (p->q.len != 0 || p->shutdown)
			continue;
		bool may_expire = p->nthreads - p->nleaving > p->min_threads;
		int64_t deadline = may_expire
					   ? ration_deadline_after(p->idle_ns)
					   : RATION_FOREVER;
		list_push_back(&p->idle, &me.node);
		p->nidle++;
		ration__unlock(&p->mu);
		ration__park(me.pk, deadline);
		ration__lock(&p->mu);
		/* Woken for new work: take it, whatever ran before. */
		*seen = atomic_load_explicit(&p->short_helps,
					     memory_order_relaxed);
		if (list_linked(&me.node)) {
			/* Not woken by a submit: a timeout or a spurious wake. */
			list_remove(&me.node);
			p->nidle--;
			if (p->q.len == 0 &&
			    p->nthreads - p->nleaving > p->min_threads &&
			    clock_mono_ns() >= deadline)
				goto leave;
		}
	}
	return true;
leave:
	p->nleaving++;
	if (p->slots != NULL && *owed != 0) {
		ration__unlock(&p->mu);
		slots_flush(p, owed);
		ration__lock(&p->mu);
	}
	return false;
}

/* Take the oldest task to run it; the queue is not empty; p->mu held. */
static struct task
take_locked(ration_pool_t *p)
{
	struct task t = queue_pop(&p->q, &p->spares);
	p->taken++;
	atomic_store_explicit(&p->queued_hint, p->q.len, memory_order_relaxed);
	if (++p->running > p->max_running)
		p->max_running = p->running;
	return t;
}

static void *
worker_main(void *arg)
{
	ration_pool_t *p = arg;
	int64_t owed = 0;
	uint64_t seen =
		atomic_load_explicit(&p->short_helps, memory_order_relaxed);

	tl_worker_of = p;
	if (p->thread_init != NULL)
		p->thread_init(p->udata);
	ration__lock(&p->mu);
	while (worker_wait(p, &owed, &seen)) {
		struct task t = take_locked(p);
		ration__unlock(&p->mu);

		if (p->slots != NULL && ++owed >= p->slot_batch)
			slots_flush(p, &owed);
		t.fn(t.arg, 0);

		ration__lock(&p->mu);
		p->running--;
		p->completed++;
	}
	ration__unlock(&p->mu);

	if (p->thread_fini != NULL)
		p->thread_fini(p->udata);

	struct ration__wake_list wl;
	wake_list_init(&wl);
	ration__lock(&p->mu);
	p->nleaving--;
	if (--p->nthreads == 0)
		wake_all_locked(&p->drainers, &wl);
	/* While this thread was leaving it still counted against
	 * max_threads, so a submit meanwhile may have found no thread to
	 * start and no reason to arm the watchdog: look again. */
	if (!p->shutdown && p->q.len != 0)
		kick_locked(p, &wl);
	ration__unlock(&p->mu);
	/* p may be freed from here on: only our own memory is touched. */
	wake_list_wake(&wl);
	return NULL;
}

/* Start one worker; p->mu held. Return 0 or -EAGAIN. */
static int
start_worker_locked(ration_pool_t *p)
{
	pthread_attr_t attr;
	pthread_t tid;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&tid, &attr, worker_main, p);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return -EAGAIN;
	char tname[16];
	snprintf(tname, sizeof(tname), "%.10s-%u", p->name, p->next_index++);
	pthread_setname_np(tid, tname);
	p->nthreads++;
	return 0;
}

/* Wake one parked worker, or start one; p->mu held. Return false if
 * neither was possible. */
static bool
wake_one_locked(ration_pool_t *p, struct ration__wake_list *wl)
{
	if (!list_empty(&p->idle)) {
		struct ration__list *n = list_first(&p->idle);
		list_remove(n);
		p->nidle--;
		wake_list_add(
			wl,
			RATION_CONTAINER_OF(n, struct idle_worker, node)->pk);
		return true;
	}
	return p->nthreads < p->max_threads && start_worker_locked(p) == 0;
}

/* Queued work that nobody was woken for: arm the watchdog, if it is not
 * armed and there is a thread it could wake or start; p->mu held. */
static void
watchdog_arm_locked(ration_pool_t *p, struct ration__wake_list *wl)
{
	if (!p->watchdog_armed &&
	    (!list_empty(&p->idle) || p->nthreads < p->max_threads)) {
		p->taken_at_arm = p->taken;
		p->submitted_at_arm = submitted_locked(p);
		/* If the timer cannot be armed, wake now rather than risk a
		 * task waiting behind blocked workers. */
		if (ration__timer_arm(&p->watchdog,
				      ration_deadline_after(WATCHDOG_NS)) == 0)
			p->watchdog_armed = true;
		else
			(void)wake_one_locked(p, wl);
	}
}

/* How many workers may be awake at once: one per CPU, up to the thread
 * limit; when the submitter is not one of our workers it is running on a
 * CPU itself, so one fewer (at least one). Waking a worker for the
 * submitter's CPU only makes the two take turns on it, and each turn is a
 * context switch (W3 with a group: 3 threads on 2 CPUs). If the submitter
 * then stops submitting (it waits, or blocks), the watchdog brings the
 * missing worker (watchdog_fire). p->mu held. */
static unsigned
awake_target(const ration_pool_t *p, bool foreign_submitter)
{
	unsigned want = p->ncpu < p->max_threads ? p->ncpu : p->max_threads;
	if (foreign_submitter && want == p->ncpu && want > 1)
		want--;
	return want;
}

/* After a push: see the wake policy at the top; p->mu held. */
static void
kick_locked(ration_pool_t *p, struct ration__wake_list *wl)
{
	/* A spinning worker takes the next task by itself; but only one:
	 * with more queued, the watchdog must still be armed, or tasks
	 * pushed during the spin wait behind whatever the spinner runs. */
	if (atomic_load_explicit(&p->spinning, memory_order_relaxed) != 0) {
		if (p->q.len > 1)
			watchdog_arm_locked(p, wl);
		return;
	}
	unsigned awake = p->nthreads - p->nidle;
	if (awake < awake_target(p, tl_worker_of != p) &&
	    wake_one_locked(p, wl))
		return;
	watchdog_arm_locked(p, wl);
}

static bool
watchdog_claim(struct ration__timer *t)
{
	(void)t; /* ration_pool_free() disarms, waiting for a running fire */
	return true;
}

/* No task taken for WATCHDOG_NS while some were queued: the awake workers
 * are stuck in long tasks. Bring one worker per queued task. */
static void
watchdog_fire(struct ration__timer *t)
{
	ration_pool_t *p = RATION_CONTAINER_OF(t, ration_pool_t, watchdog);
	struct ration__wake_list wl;

	wake_list_init(&wl);
	ration__lock(&p->mu);
	p->watchdog_armed = false;
	if (p->q.len != 0) {
		if (p->taken == p->taken_at_arm) {
			size_t n = p->q.len;
			while (n-- > 0 && wake_one_locked(p, &wl))
				;
		} else if (submitted_locked(p) == p->submitted_at_arm) {
			/* Progress, but nobody submitted for a whole period:
			 * the submitter no longer holds a CPU (it waits or
			 * sleeps), so the backlog gets the worker that
			 * awake_target() kept back for it. */
			unsigned awake = p->nthreads - p->nidle;
			if (awake < awake_target(p, false))
				(void)wake_one_locked(p, &wl);
		}
		p->taken_at_arm = p->taken;
		p->submitted_at_arm = submitted_locked(p);
		if ((!list_empty(&p->idle) || p->nthreads < p->max_threads) &&
		    ration__timer_arm(&p->watchdog,
				      ration_deadline_after(WATCHDOG_NS)) == 0)
			p->watchdog_armed = true;
	}
	ration__unlock(&p->mu);
	wake_list_wake(&wl);
}

/* ---- submit ------------------------------------------------------------ */

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
	} else if (p->nthreads == 0 && start_worker_locked(p) != 0) {
		rc = -EAGAIN; /* nothing could ever run it */
	} else if (!queue_push(&p->q, &p->spares, fn, arg)) {
		rc = -ENOMEM;
	} else {
		atomic_store_explicit(&p->queued_hint, p->q.len,
				      memory_order_relaxed);
		if (p->q.len > p->max_queued)
			p->max_queued = p->q.len;
		kick_locked(p, &wl);
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

/* ---- life cycle -------------------------------------------------------- */

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
	ration__timer_init(&p->watchdog, watchdog_claim, watchdog_fire);
	snprintf(p->name, sizeof(p->name), "%s",
		 o.name != NULL ? o.name : "ration");
	p->thread_init = o.thread_init;
	p->thread_fini = o.thread_fini;
	p->udata = o.udata;

	ration__lock(&p->mu);
	int rc = 0;
	while (rc == 0 && p->nthreads < p->min_threads)
		rc = start_worker_locked(p);
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
		wake_all_locked(&p->idle, &wl);
		p->nidle = 0;
	}
	/* Growing: queued tasks may now get threads of their own. */
	while (p->nthreads < threads && p->q.len > p->nthreads - p->nidle &&
	       start_worker_locked(p) == 0)
		;
	/* The busy workers counted above may be blocked in long tasks: let
	 * the watchdog bring more if the queue makes no progress (no push
	 * follows to arm it). */
	if (p->q.len != 0)
		watchdog_arm_locked(p, &wl);
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
	wake_all_locked(&p->idle, &wl);
	p->nidle = 0;
	/* DRAIN with queued work and no thread left to run it: start one. */
	if (mode == RATION_DRAIN && p->q.len != 0 && p->nthreads == 0)
		(void)start_worker_locked(p);
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
