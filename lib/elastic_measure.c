/* elastic_measure.c - how an elastic group measures its running tasks:
 * one sampler thread per elastic group, started by group_new, which every
 * sample_ns (default 1 ms) while the group has running tasks measures
 * them and lets elastic.c raise (consume) or lower their claims. Idle, it
 * sleeps on a condition variable.
 *
 * With jemalloc as the process allocator each task is measured alone: its
 * thread's live heap above the task's start, thread.allocatedp -
 * thread.deallocatedp read through the pointers jemalloc hands the task
 * thread at begin. The sampler reads another thread's counters: aligned
 * 64-bit words that only their thread writes, through volatile loads, so
 * a read is a value that thread wrote, at most one sample old. Without
 * jemalloc the process's RSS (/proc/self/statm) is read instead and
 * elastic.c charges the growth to the oldest task.
 *
 * Waiting inside malloc (backpressure) is elastic_arena.c's, through
 * per-task arenas. Why not jemalloc 5.3's experimental.hooks.install for
 * it, or for measuring: installing a hook forces every thread's state to
 * "recompute", and 5.3's thread-exit cleanup has no case for that
 * state, so a thread exiting before its next allocation is left in
 * jemalloc's list of threads and a later thread start or exit crashes
 * the process (docs/elastic.md: measured 5 crashes in 120 runs of the main
 * job). Sampling needs nothing from jemalloc but two pointers.
 *
 * Locking: the sampler holds its group's el->mu except while it sleeps
 * (cond wait); the counters' pointers are published under el->mu (the
 * claim is linked under it after they are set).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/elastic.h"
#include "ration/account.h"

#ifndef RATION_HAVE_JEMALLOC
#define RATION_HAVE_JEMALLOC 0
#endif

_Atomic bool ration__elastic_rss_only;

#if RATION_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#if RATION_HAVE_JEMALLOC
/* This thread's counters, looked up once (mallctl by name costs a lookup). */
static _Thread_local uint64_t *tl_allocp, *tl_deallocp;
#endif

bool
ration__heap_counters(const volatile uint64_t **allocp,
		      const volatile uint64_t **deallocp)
{
#if RATION_HAVE_JEMALLOC
	if (!ration_account_available() ||
	    atomic_load_explicit(&ration__elastic_rss_only,
				 memory_order_relaxed))
		return false;
	if (tl_deallocp == NULL) {
		uint64_t *a, *d;
		size_t len = sizeof(a);
		if (mallctl("thread.allocatedp", &a, &len, NULL, 0) != 0 ||
		    mallctl("thread.deallocatedp", &d, &len, NULL, 0) != 0)
			return false;
		tl_allocp = a;
		tl_deallocp = d;
	}
	*allocp = tl_allocp;
	*deallocp = tl_deallocp;
	return true;
#else
	(void)allocp;
	(void)deallocp;
	return false;
#endif
}

int64_t
ration__rss_read(int fd)
{
	char buf[128];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* statm: size resident shared ...; the second field, in pages. */
	char *end;
	errno = 0;
	(void)strtoll(buf, &end, 10);
	if (end == buf || errno != 0)
		return -1;
	char *p = end;
	long long res = strtoll(p, &end, 10);
	if (end == p || errno != 0 || res < 0)
		return -1;
	return (int64_t)res * sysconf(_SC_PAGESIZE);
}

void *
ration__elastic_sampler(void *arg)
{
	struct ration__elastic *el = arg;

	pthread_mutex_lock(&el->mu);
	while (!el->stop) {
		if (list_empty(&el->tracked)) {
			pthread_cond_wait(&el->cv,
					  &el->mu); /* until a task begins */
			continue;
		}
		int64_t at = clock_mono_ns() + el->sample_ns;
		struct timespec ts = {.tv_sec = at / 1000000000,
				      .tv_nsec = at % 1000000000};
		(void)pthread_cond_timedwait(&el->cv, &el->mu, &ts);
		if (!el->stop)
			ration__elastic_sample_locked(el);
	}
	pthread_mutex_unlock(&el->mu);
	return NULL;
}
