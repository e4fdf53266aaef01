/* pool_worker.c - the pool's workers: the thread body, waiting for work
 * (stepping back for a submitter that runs short tasks itself, spinning,
 * then parking on the idle list), giving queue slots back in batches,
 * starting and waking workers, and the watchdog that brings workers when
 * queued tasks make no progress. The wake policy and the design: pool.c's
 * header comment; the object: internal/pool_impl.h.
 *
 * Locking: p->mu guards the queue, the idle list and the counts (see
 * pool.c). A worker drops it to give slots back, to spin, to park and to
 * run a task; no user code (task fns, thread_init/fini) runs under it.
 * Wake-ups are collected under mu and issued after it is dropped.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/cpu.h"
#include "internal/futex_mutex.h"
#include "internal/list.h"
#include "internal/park.h"
#include "internal/pool_impl.h"
#include "internal/taskq.h"
#include "internal/timer.h"
#include "ration/pool.h"
#include "ration/sem.h"

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

/* internal/pool_impl.h */
_Thread_local ration_pool_t *ration__pool_worker_of;

void
ration__pool_wake_all_locked(struct ration__list *list,
			     struct ration__wake_list *wl)
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

static void *
worker_main(void *arg)
{
	ration_pool_t *p = arg;
	int64_t owed = 0;
	uint64_t seen =
		atomic_load_explicit(&p->short_helps, memory_order_relaxed);

	ration__pool_worker_of = p;
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
		ration__pool_wake_all_locked(&p->drainers, &wl);
	/* While this thread was leaving it still counted against
	 * max_threads, so a submit meanwhile may have found no thread to
	 * start and no reason to arm the watchdog: look again. */
	if (!p->shutdown && p->q.len != 0)
		ration__pool_kick_locked(p, &wl);
	ration__unlock(&p->mu);
	/* p may be freed from here on: only our own memory is touched. */
	wake_list_wake(&wl);
	return NULL;
}

/* Start one worker; p->mu held. Return 0 or -EAGAIN. */
int
ration__pool_start_worker_locked(ration_pool_t *p)
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
bool
ration__pool_wake_one_locked(ration_pool_t *p, struct ration__wake_list *wl)
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
	return p->nthreads < p->max_threads &&
	       ration__pool_start_worker_locked(p) == 0;
}

/* Queued work that nobody was woken for: arm the watchdog, if it is not
 * armed and there is a thread it could wake or start; p->mu held. */
void
ration__pool_watchdog_arm_locked(ration_pool_t *p, struct ration__wake_list *wl)
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
			(void)ration__pool_wake_one_locked(p, wl);
	}
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
			while (n-- > 0 && ration__pool_wake_one_locked(p, &wl))
				;
		} else if (submitted_locked(p) == p->submitted_at_arm) {
			/* Progress, but nobody submitted for a whole period:
			 * the submitter no longer holds a CPU (it waits or
			 * sleeps), so the backlog gets the worker that
			 * awake_target() kept back for it. */
			unsigned awake = p->nthreads - p->nidle;
			if (awake < awake_target(p, false))
				(void)ration__pool_wake_one_locked(p, &wl);
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

void
ration__pool_watchdog_init(ration_pool_t *p)
{
	ration__timer_init(&p->watchdog, watchdog_claim, watchdog_fire);
}
