/* timer.c - one lazily started thread runs every ration timer.
 *
 * Locking: timer_mu guards the heap, each timer's deadline/idx, and
 * `firing`. It may be taken inside an owner's lock (arming under a ctx
 * mu), so the timer thread never takes an owner's lock while holding it:
 * claim() must only touch atomics or the timer itself.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal/clock.h"
#include "internal/nowait.h"
#include "internal/timer.h"

static pthread_mutex_t timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cv;      /* timer thread sleeps here */
static pthread_cond_t fired_cv;      /* disarm waits here for a fire */
static struct ration__timer **heap;  /* timer_mu: min-heap on deadline */
static size_t heap_n, heap_cap;      /* timer_mu */
static bool running;                 /* timer_mu */
static pthread_t timer_tid;          /* written once, before running */
static struct ration__timer *firing; /* timer_mu: fire() in progress */

static void
heap_set(size_t i, struct ration__timer *t)
{
	heap[i] = t;
	t->idx = i;
}

static void
sift_up(size_t i)
{
	struct ration__timer *t = heap[i];
	while (i > 0 && heap[(i - 1) / 2]->deadline > t->deadline) {
		heap_set(i, heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(i, t);
}

static void
sift_down(size_t i)
{
	struct ration__timer *t = heap[i];
	for (;;) {
		size_t m = i, l = 2 * i + 1;
		int64_t best = t->deadline;
		if (l < heap_n && heap[l]->deadline < best)
			m = l, best = heap[l]->deadline;
		if (l + 1 < heap_n && heap[l + 1]->deadline < best)
			m = l + 1;
		if (m == i)
			break;
		heap_set(i, heap[m]);
		i = m;
	}
	heap_set(i, t);
}

static void
heap_remove(struct ration__timer *t)
{
	size_t i = t->idx;
	t->idx = TIMER_IDLE;
	struct ration__timer *last = heap[--heap_n];
	if (i == heap_n)
		return;
	heap_set(i, last);
	sift_up(i);
	sift_down(last->idx);
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
		struct ration__timer *t = heap[0];
		if (clock_mono_ns() < t->deadline) {
			struct timespec ts = ns_to_timespec(t->deadline);
			pthread_cond_timedwait(&timer_cv, &timer_mu, &ts);
			continue;
		}
		heap_remove(t);
		if (!t->claim(t))
			continue;
		firing = t;
		pthread_mutex_unlock(&timer_mu);
		t->fire(t);
		pthread_mutex_lock(&timer_mu);
		firing = NULL;
		pthread_cond_broadcast(&fired_cv);
	}
	return NULL;
}

/* timer_mu held. */
static int
start_locked(void)
{
	if (running)
		return 0;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&timer_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&fired_cv, NULL);

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, (size_t)256 * 1024);
	int rc = pthread_create(&timer_tid, &attr, timer_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_cond_destroy(&timer_cv);
		pthread_cond_destroy(&fired_cv);
		return -ENOMEM;
	}
	pthread_setname_np(timer_tid, "ration-timer");
	running = true;
	return 0;
}

int
ration__timer_arm(struct ration__timer *t, int64_t deadline_ns)
{
	int rc = 0;

	pthread_mutex_lock(&timer_mu);
	ration__nowait_begin(); /* the heap grows under timer_mu */
	if (t->idx != TIMER_IDLE) {
		if (deadline_ns < t->deadline) {
			t->deadline = deadline_ns;
			sift_up(t->idx);
			if (heap[0] == t)
				pthread_cond_signal(&timer_cv);
		}
		goto out;
	}
	if ((rc = start_locked()) != 0)
		goto out;
	if (heap_n == heap_cap) {
		size_t cap = heap_cap ? heap_cap * 2 : 64;
		/* An array of pointers, so sizeof a pointer is meant. */
		struct ration__timer **h = realloc(
			heap,
			cap * sizeof(*h)); /* NOLINT(bugprone-sizeof-expression) */
		if (h == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		heap = h;
		heap_cap = cap;
	}
	t->deadline = deadline_ns;
	heap_set(heap_n++, t);
	sift_up(t->idx);
	if (heap[0] == t)
		pthread_cond_signal(&timer_cv);
out:
	ration__nowait_end();
	pthread_mutex_unlock(&timer_mu);
	return rc;
}

void
ration__timer_disarm(struct ration__timer *t)
{
	pthread_mutex_lock(&timer_mu);
	if (t->idx != TIMER_IDLE)
		heap_remove(t);
	while (firing == t && !pthread_equal(pthread_self(), timer_tid))
		pthread_cond_wait(&fired_cv, &timer_mu);
	pthread_mutex_unlock(&timer_mu);
}
