/* elastic_measure.c - how an elastic group measures its running tasks.
 *
 * With jemalloc as the process allocator: jemalloc 5.3's
 * experimental.hooks.install. The alloc and expand hooks run on the
 * allocating thread after each allocation, with no allocator lock held;
 * the dalloc hook runs before each free. On a thread running an elastic
 * task they compare the thread's live heap above the task's start
 * (thread.allocatedp - thread.deallocatedp, two plain loads) with the
 * claim's thresholds, and only past one of them enter elastic.c, which
 * raises the claim (waiting there for room: backpressure) or lowers it.
 * Detection is therefore immediate, not sampled. The hook is installed
 * when the process makes its first elastic group and stays (see
 * hook_installed): from then on jemalloc takes its slower allocation path
 * on every thread (docs/elastic.md has the measured cost). A process
 * that never makes an elastic group installs nothing and pays nothing.
 *
 * Without it (glibc malloc, sanitizer builds, or all four jemalloc hook
 * slots taken): one sampler thread per elastic group reads the process's
 * RSS every sample_ns and elastic.c charges the growth to the oldest task.
 * That path only counts (consume); it cannot make an allocation wait.
 *
 * Locking: hook_mu guards hook_installed. The
 * thread-local watch state is the calling thread's own. The sampler holds
 * its group's el->mu except while it sleeps (cond wait).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/elastic.h"
#include "ration/account.h"

#ifndef RATION_HAVE_JEMALLOC
#define RATION_HAVE_JEMALLOC 0
#endif

_Atomic bool ration__elastic_no_hook;

#if RATION_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

/* jemalloc 5.3's hooks_t (include/jemalloc/internal/hook.h, not
 * installed): the enum arguments are passed as int. */
typedef void (*hook_alloc_fn)(void *extra, int type, void *result, uintptr_t result_raw,
			      uintptr_t args_raw[3]);
typedef void (*hook_dalloc_fn)(void *extra, int type, void *address, uintptr_t args_raw[3]);
typedef void (*hook_expand_fn)(void *extra, int type, void *address, size_t old_usize,
			       size_t new_usize, uintptr_t result_raw, uintptr_t args_raw[4]);
struct je_hooks {
	hook_alloc_fn alloc_hook;
	hook_dalloc_fn dalloc_hook;
	hook_expand_fn expand_hook;
	void *extra;
};

/* The claim whose heap this thread measures; NULL almost always, so that
 * is the hooks' first test. */
static _Thread_local struct ration__claim *tl_watched;
/* This thread's jemalloc counters (volatile: jemalloc writes them inside
 * malloc, which the compiler assumes touches no memory of ours). */
static _Thread_local volatile uint64_t *tl_allocp, *tl_deallocp;
/* Set while this thread is inside elastic.c from a hook: allocations made
 * there (a ctx for a wait) are not measured again. */
static _Thread_local bool tl_in_hook;

static inline int64_t
heap_now(const struct ration__claim *c)
{
	return (int64_t)(*tl_allocp - *tl_deallocp - c->heap0);
}

static void
measured(struct ration__claim *c, int64_t m, bool may_wait)
{
	tl_in_hook = true;
	ration__claim_measured(c, m, may_wait);
	tl_in_hook = false;
}

/* After an allocation on this thread that grew the heap by @grew bytes
 * (0: by the block at @result). */
static void
grown(void *result, size_t grew)
{
	struct ration__claim *c = tl_watched;
	if (RATION_LIKELY(c == NULL) || tl_in_hook)
		return;
	int64_t m = heap_now(c);
	if (RATION_LIKELY(m <= atomic_load_explicit(&c->hi, memory_order_relaxed)))
		return;
	if (result != NULL)
		grew = sallocx(result, 0);
	measured(c, m, grew >= RATION__WAIT_MIN_BYTES);
}

static void
on_alloc(void *extra, int type, void *result, uintptr_t result_raw, uintptr_t args_raw[3])
{
	grown(result, 0);
}

static void
on_expand(void *extra, int type, void *address, size_t old_usize, size_t new_usize,
	  uintptr_t result_raw, uintptr_t args_raw[4])
{
	grown(NULL, new_usize - old_usize);
}

/* Runs before the free: the block still counts, so subtract it. */
static void
on_dalloc(void *extra, int type, void *address, uintptr_t args_raw[3])
{
	struct ration__claim *c = tl_watched;
	if (RATION_LIKELY(c == NULL) || tl_in_hook || address == NULL)
		return;
	int64_t lo = atomic_load_explicit(&c->lo, memory_order_relaxed);
	if (RATION_LIKELY(lo == INT64_MIN))
		return;
	int64_t m = heap_now(c) - (int64_t)sallocx(address, 0);
	if (m < lo)
		measured(c, m, false);
}

/* Installed by the first elastic group and never removed: with jemalloc
 * 5.3, removing the hook and installing it again while threads come and
 * go corrupted jemalloc's list of thread states (a crash in mallctl on a
 * new thread, 9 runs in 12 of `ration-bench -w A1 -peer ration-elastic`;
 * 0 in 20 with the hook left in place). docs/elastic.md has the cost. */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static bool hook_installed; /* hook_mu */

bool
ration__heap_hook_get(void)
{
	if (!ration_account_available() ||
	    atomic_load_explicit(&ration__elastic_no_hook, memory_order_relaxed))
		return false;
	pthread_mutex_lock(&hook_mu);
	if (!hook_installed) {
		struct je_hooks h = {on_alloc, on_dalloc, on_expand, NULL};
		void *handle;
		size_t len = sizeof(handle);
		hook_installed = mallctl("experimental.hooks.install", &handle, &len, &h,
					 sizeof(h)) == 0;
	}
	bool ok = hook_installed;
	pthread_mutex_unlock(&hook_mu);
	return ok;
}

void
ration__heap_watch(struct ration__claim *c)
{
	if (tl_allocp == NULL) {
		uint64_t *a, *d;
		size_t len = sizeof(a);
		if (mallctl("thread.allocatedp", &a, &len, NULL, 0) != 0 ||
		    mallctl("thread.deallocatedp", &d, &len, NULL, 0) != 0)
			return; /* not measured: the claim stays at its floor */
		tl_allocp = a;
		tl_deallocp = d;
	}
	c->heap0 = *tl_allocp - *tl_deallocp;
	tl_watched = c;
}

void
ration__heap_unwatch(struct ration__claim *c)
{
	tl_watched = NULL;
}

#else /* !RATION_HAVE_JEMALLOC */

bool
ration__heap_hook_get(void)
{
	return false;
}

void
ration__heap_watch(struct ration__claim *c)
{
}

void
ration__heap_unwatch(struct ration__claim *c)
{
}

#endif

/* ---- the RSS sampler --------------------------------------------------- */

int64_t
ration__rss_read(int fd)
{
	char buf[128];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long long size, res;
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if (sscanf(buf, "%lld %lld", &size, &res) != 2)
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
			pthread_cond_wait(&el->cv, &el->mu); /* until a task begins */
			continue;
		}
		int64_t at = clock_mono_ns() + el->sample_ns;
		struct timespec ts = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
		(void)pthread_cond_timedwait(&el->cv, &el->mu, &ts);
		int64_t rss;
		if (!el->stop && (rss = ration__rss_read(el->rss_fd)) >= 0)
			ration__elastic_sample_locked(el, rss);
	}
	pthread_mutex_unlock(&el->mu);
	return NULL;
}
