/* account.c - per-task measured heap (jemalloc), CPU and wall time.
 *
 * Heap figures come from jemalloc's per-thread counters: thread.peak.reset
 * at begin, thread.peak.read at end (the peak of allocated - deallocated
 * since the reset, so already "above the start"), and the thread's
 * allocated-bytes counter read through the pointer thread.allocatedp
 * returns (a plain load, no mallctl). The MIBs are looked up once; the
 * counter pointer is per thread and cached in thread-local storage.
 *
 * Availability is decided once (pthread_once): ration built with jemalloc,
 * mallctl answering, AND a malloc'd probe moving this thread's allocated
 * counter. The last check catches a program that links libration.so (and
 * so libjemalloc.so) but whose malloc still resolves to glibc's: jemalloc's
 * counters would then read 0 for ever, a wrong number; we report -1.
 *
 * Locking: probe_mu serialises the probe. The availability flag and MIBs
 * are written under it before probe_done is set (release), and read only
 * after probe_done is seen (acquire). A probe that cannot decide (its own
 * malloc failed) leaves probe_done false, so a later call asks again
 * instead of reporting "unavailable" for the life of the process. The
 * counter pointers are thread-local.
 *
 * Cost: CLOCK_THREAD_CPUTIME_ID has no vDSO fast path on Linux: each read
 * is a system call (~0.8 us here), ten times everything else a begin/end
 * pair does. It is therefore read only when asked for (RATION_ACCOUNT_CPU);
 * without it a pair costs two vDSO clock reads, two mallctlbymib() calls
 * and two loads (docs/account.md gives the measured figures).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal/account.h"
#include "internal/clock.h"
#include "internal/compiler.h"
#include "ration/account.h"

#ifndef RATION_HAVE_JEMALLOC
#define RATION_HAVE_JEMALLOC 0
#endif

/* ration_account_t.alloc0 when the heap is not measured. */
#define NOT_MEASURED UINT64_MAX

#if RATION_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

/* Filled by probe() under probe_mu; read-only once probe_done is set. */
static bool available;
static size_t peak_reset_mib[3], peak_reset_len = 3;
static size_t peak_read_mib[3], peak_read_len = 3;
static size_t flush_mib[3], flush_len = 3; /* thread.tcache.flush */
static size_t purge_mib[3], purge_len = 3; /* arena.<i>.purge, i filled in */
static size_t arena_mib[2], arena_len = 2; /* thread.arena */

/* This thread's jemalloc allocated-bytes counter; NULL until first used.
 * Read through a volatile pointer: compilers assume malloc() writes no
 * memory the caller can see, and would otherwise reuse a load of the
 * counter from before a malloc for a load after it. */
static _Thread_local volatile uint64_t *allocatedp;

static volatile uint64_t *
thread_allocatedp(void)
{
	volatile uint64_t *p = allocatedp;

	if (RATION_UNLIKELY(p == NULL)) {
		uint64_t *q;
		size_t len = sizeof(q);
		if (mallctl("thread.allocatedp", &q, &len, NULL, 0) != 0)
			return NULL;
		allocatedp = p = q;
	}
	return p;
}

/* Decide `available`. False only if it could not be decided (the probe's
 * allocation failed): then nothing is settled and a later call retries. */
static bool
probe(void)
{
	if (mallctlnametomib("thread.peak.reset", peak_reset_mib,
			     &peak_reset_len) != 0 ||
	    mallctlnametomib("thread.peak.read", peak_read_mib,
			     &peak_read_len) != 0 ||
	    mallctlnametomib("thread.tcache.flush", flush_mib, &flush_len) !=
		    0 ||
	    mallctlnametomib("arena.0.purge", purge_mib, &purge_len) != 0 ||
	    mallctlnametomib("thread.arena", arena_mib, &arena_len) != 0)
		return true;
	volatile uint64_t *counter = thread_allocatedp();
	if (counter == NULL)
		return true;
	/* The store to a volatile object keeps the compiler from dropping the
	 * malloc/free pair: the probe must really call the process's malloc,
	 * whichever library that symbol resolves to. */
	uint64_t before = *counter;
	void *volatile sink = malloc(4096);
	if (sink == NULL)
		return false; /* out of memory now says nothing about jemalloc */
	uint64_t after = *counter;
	free(sink);
	available = after - before >= 4096;
	return true;
}

static pthread_mutex_t probe_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool probe_done;
#endif

bool
ration_account_available(void)
{
#if RATION_HAVE_JEMALLOC
	/* acquire: pairs with the release below; publishes available and
	 * the MIBs. */
	if (RATION_LIKELY(
		    atomic_load_explicit(&probe_done, memory_order_acquire)))
		return available;
	pthread_mutex_lock(&probe_mu);
	if (!atomic_load_explicit(&probe_done, memory_order_relaxed) && probe())
		atomic_store_explicit(&probe_done, true, memory_order_release);
	bool a = available;
	pthread_mutex_unlock(&probe_mu);
	return a;
#else
	return false;
#endif
}

static int64_t
thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return -1;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
ration_account_begin(ration_account_t *a)
{
	ration_account_begin_with(a, 0);
}

void
ration_account_begin_with(ration_account_t *a, unsigned what)
{
	if (a == NULL)
		return;
	/* NOT_MEASURED tells end() to report -1: no jemalloc, or this
	 * thread's counter could not be had (never a made-up 0). */
	a->alloc0 = NOT_MEASURED;
	a->dealloc0 = 0;
#if RATION_HAVE_JEMALLOC
	volatile uint64_t *counter;
	if (ration_account_available() &&
	    (counter = thread_allocatedp()) != NULL) {
		(void)mallctlbymib(peak_reset_mib, peak_reset_len, NULL, NULL,
				   NULL, 0);
		a->alloc0 = *counter;
	}
#endif
	/* -2: not asked for (end reports -1 without a system call); -1:
	 * asked for but the clock failed. */
	a->cpu0_ns = (what & RATION_ACCOUNT_CPU) ? thread_cpu_ns() : -2;
	a->t0_ns = clock_mono_ns();
}

void
ration_account_end(const ration_account_t *a, ration_task_report_t *out)
{
	if (a == NULL || out == NULL)
		return;
	int64_t t1 = clock_mono_ns();
	int64_t cpu1 = a->cpu0_ns >= 0 ? thread_cpu_ns() : -1;

	out->run_ns = t1 - a->t0_ns;
	out->cpu_ns = cpu1 >= 0 ? cpu1 - a->cpu0_ns : -1;
	out->peak_bytes = -1;
	out->allocated_bytes = -1;
#if RATION_HAVE_JEMALLOC
	if (a->alloc0 != NOT_MEASURED) {
		uint64_t peak = 0;
		size_t len = sizeof(peak);
		volatile uint64_t *counter = thread_allocatedp();
		if (counter != NULL &&
		    mallctlbymib(peak_read_mib, peak_read_len, &peak, &len,
				 NULL, 0) == 0) {
			out->peak_bytes = peak > (uint64_t)INT64_MAX
						  ? INT64_MAX
						  : (int64_t)peak;
			uint64_t d = *counter - a->alloc0;
			out->allocated_bytes = d > (uint64_t)INT64_MAX
						       ? INT64_MAX
						       : (int64_t)d;
		}
	}
#endif
}

int64_t
ration_account_round(int64_t bytes)
{
#if RATION_HAVE_JEMALLOC
	if (bytes > 0 && ration_account_available()) {
		size_t n = nallocx((size_t)bytes, 0);
		if (n >= (size_t)bytes && n <= (size_t)INT64_MAX)
			return (int64_t)n;
	}
#endif
	return bytes;
}

void
ration__account_judge(ration_task_report_t *r, double tolerance)
{
	r->under_declared = false;
	r->over_reserved = false;
	if (r->peak_bytes < 0 || r->declared <= 0)
		return;
	/* One size-class step: what a buffer just past the rounded
	 * declaration would add (1 without jemalloc, whose peaks are -1). */
	int64_t rounded = ration_account_round(r->declared);
	int64_t step = rounded < INT64_MAX
			       ? ration_account_round(rounded + 1) - rounded
			       : 0;
	double limit = (double)r->declared * (1.0 + tolerance) + (double)step;
	r->under_declared = (double)r->peak_bytes > limit;
	r->over_reserved = r->peak_bytes < r->declared / 2;
}

unsigned
ration__account_fit_bucket(int64_t peak, int64_t declared)
{
	/* Bucket edges of peak / declared in sixteenths (group.h). */
	static const double edges[RATION_FIT_BUCKETS - 1] = {1,  2,  4,  8, 12,
							     16, 20, 24, 32};
	double ratio16 = (double)peak * 16.0 / (double)declared;
	unsigned b = 0;
	while (b < RATION_FIT_BUCKETS - 1 && ratio16 >= edges[b])
		b++;
	return b;
}

void
ration__account_give_back(void)
{
#if RATION_HAVE_JEMALLOC
	if (!ration_account_available())
		return;
	/* The thread cache keeps freed blocks for this thread's next
	 * allocations; flushed, they return to the arena, whose dirty pages
	 * the purge then hands back to the kernel (MADV_DONTNEED) instead of
	 * keeping them resident until decay (10 s by default). */
	(void)mallctlbymib(flush_mib, flush_len, NULL, NULL, NULL, 0);
	unsigned arena;
	size_t len = sizeof(arena);
	if (mallctlbymib(arena_mib, arena_len, &arena, &len, NULL, 0) != 0)
		return;
	size_t mib[3] = {purge_mib[0], arena, purge_mib[2]};
	(void)mallctlbymib(mib, purge_len, NULL, NULL, NULL, 0);
#endif
}
