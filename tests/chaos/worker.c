/* worker.c - a chaos worker: a process with a few threads that take and
 * give back random weights of one budget through its own handle, writing
 * the ledger right after each grant and right before each release, and
 * timing every call against its deadline. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"
#include "internal/atomic_max.h"

struct thread_arg {
	struct chaos_run *run;
	ration_sem_t *s;
	int index; /* worker */
	int t;     /* thread */
	pthread_t id;
};

static uint64_t
next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Time this thread has spent runnable but not running (ns), from
 * /proc/thread-self/schedstat; 0 if the kernel does not say. */
static int64_t
run_delay(int fd)
{
	char buf[96];
	ssize_t len = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;
	if (len <= 0)
		return 0;
	buf[len] = '\0';
	const char *p = strchr(buf, ' ');
	return p != NULL ? strtoll(p + 1, NULL, 10) : 0;
}

/* Held first, then occupancy: a kill between the two makes the runner's
 * clean-up (occupancy -= held) subtract more than was added, so the
 * ledger errs low, never high. */
static void
ledger_grant(struct chaos_ledger *led, struct chaos_worker *w, int64_t n)
{
	atomic_fetch_add(&w->held, n);
	int64_t occ = atomic_fetch_add(&led->occupancy, n) + n;
	atomic_fetch_add(&led->snapshots, 1);
	atomic_fetch_add(&led->grants, 1);
	ration__atomic_max(&led->max_occupancy, occ);
	if (occ > led->size)
		atomic_fetch_add(&led->overgrants, 1);
}

/* Occupancy first, then held: the mirror image of ledger_grant(). */
static void
ledger_release(struct chaos_ledger *led, struct chaos_worker *w, int64_t n)
{
	atomic_fetch_sub(&led->occupancy, n);
	atomic_fetch_sub(&w->held, n);
	atomic_fetch_add(&led->snapshots, 1);
}

static void
unexpected(struct chaos_run *run, int rc, int op)
{
	struct chaos_ledger *led = run->led;
	if (atomic_fetch_add(&led->unexpected, 1) == 0) {
		atomic_store(&led->first_unexpected, rc);
		atomic_store(&led->first_unexpected_op, op);
	}
}

static bool
allowed(struct chaos_run *run, int rc, int op)
{
	if (rc == 0 || (op == OP_ACQUIRE && rc == -ETIMEDOUT) ||
	    (op == OP_TRY && rc == -EAGAIN))
		return true;
	return run->sc->allowed != NULL && run->sc->allowed(rc, op);
}

static void *
thread_main(void *arg)
{
	struct thread_arg *ta = arg;
	struct chaos_run *run = ta->run;
	struct chaos_ledger *led = run->led;
	struct chaos_worker *w = &led->w[ta->index];
	uint64_t x =
		(uint64_t)getpid() * 2654435761u + (uint64_t)ta->t * 40503u + 1;
	int sched = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);

	while (!atomic_load(&led->stop)) {
		int64_t n =
			1 + (int64_t)(next_rand(&x) % (uint64_t)run->sc->max_n);
		int op = next_rand(&x) % 4 == 0 ? OP_TRY : OP_ACQUIRE;
		int64_t budget = (int64_t)(1 + next_rand(&x) % 60) * CHAOS_MS;
		atomic_store(&w->doing[ta->t], DOING_WAIT);
		uint32_t stops = atomic_load(&w->stops);
		int64_t queued = run_delay(sched);
		int64_t t0 = ration_now();
		int64_t deadline = op == OP_TRY ? t0 : t0 + budget;
		int rc = op == OP_TRY
				 ? ration_sem_try_acquire(ta->s, n)
				 : ration_sem_acquire_until(ta->s, deadline, n);
		int64_t late = ration_now() - deadline;
		queued = run_delay(sched) - queued;
		atomic_store(&w->doing[ta->t], DOING_NOTHING);
		atomic_fetch_add(&led->calls, 1);
		/* Even and unchanged: this worker was never stopped during
		 * the call (see struct chaos_worker). */
		if (stops % 2 == 0 && atomic_load(&w->stops) == stops) {
			ration__atomic_max(&led->max_late_raw_ns, late);
			/* Waiting for a CPU is the machine's doing, not the
			 * library's: a call blocked on a lock, a futex or a
			 * sleep is not runnable and is not excused. */
			late -= queued;
			ration__atomic_max(&led->max_late_ns, late);
			if (late > CHAOS_LATE_NS)
				atomic_fetch_add(&led->late_calls, 1);
		}
		if (rc == -ETIMEDOUT)
			atomic_fetch_add(&led->timeouts, 1);
		else if (rc == -EAGAIN)
			atomic_fetch_add(&led->tries_failed, 1);
		if (!allowed(run, rc, op))
			unexpected(run, rc, op);
		if (rc != 0)
			continue;
		ledger_grant(led, w, n);
		atomic_store(&w->doing[ta->t], DOING_HOLD);
		uint64_t hold_ms = run->sc->flags & CHAOS_LEASES_HOLD ? 1500
				   : run->sc->flags & CHAOS_LONG_HOLD ? 400
								      : 4;
		int64_t hold_ns = (int64_t)(next_rand(&x) % hold_ms) * CHAOS_MS;
		struct timespec hold = {.tv_sec = hold_ns / 1000000000,
					.tv_nsec = hold_ns % 1000000000};
		nanosleep(&hold, NULL);
		atomic_store(&w->doing[ta->t], DOING_NOTHING);
		ledger_release(led, w, n);
		rc = ration_sem_release(ta->s, n);
		if (!allowed(run, rc, OP_RELEASE))
			unexpected(run, rc, OP_RELEASE);
	}
	if (sched >= 0)
		close(sched);
	return NULL;
}

void
chaos_worker_main(struct chaos_run *run_on_stack, int index)
{
	/* The threads outlive this frame when the main thread exits. */
	static struct chaos_run run_copy;
	static struct thread_arg ta[CHAOS_MAX_THREADS];
	run_copy = *run_on_stack;
	struct chaos_run *run = &run_copy;
	ration_sem_t *s = NULL;
	int rc = run->sc->backend->open(run, &s);
	if (rc != 0) {
		unexpected(run, rc, OP_OPEN);
		_exit(2);
	}
	atomic_store(&run->led->w[index].ready, true);
	unsigned nt = run->sc->threads;
	for (unsigned t = 0; t < nt; t++) {
		ta[t] = (struct thread_arg){
			.run = run, .s = s, .index = index, .t = (int)t};
		if (pthread_create(&ta[t].id, NULL, thread_main, &ta[t]) != 0)
			_exit(3);
	}
	if (run->sc->flags & CHAOS_MAIN_EXIT)
		pthread_exit(NULL); /* the process lives on in its threads */
	for (unsigned t = 0; t < nt; t++)
		pthread_join(ta[t].id, NULL);
	_exit(ration_sem_free(s) == 0 ? 0 : 4);
}
