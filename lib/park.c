/* park.c - per-thread parkers on futexes.
 *
 * Locking: registry_mu guards the free list and the static slab index.
 * Parkers are never freed (see internal/park.h for why); the first
 * STATIC_PARKERS come from .bss, so a process with few threads never
 * allocates for them.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/compiler.h"
#include "internal/park.h"

enum { EMPTY = 0, NOTIFIED = 1, PARKED = 2 };

#define STATIC_PARKERS 256
/* A thread without a parker (allocation failed) polls at this period. */
#define POLL_NS 50000

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ration__parker static_parkers[STATIC_PARKERS];
static unsigned static_used;                /* registry_mu */
static struct ration__parker *free_parkers; /* registry_mu */
static pthread_key_t parker_key;
static pthread_once_t parker_once = PTHREAD_ONCE_INIT;
static _Thread_local struct ration__parker *self;

static void
parker_release(void *arg)
{
	struct ration__parker *p = arg;

	pthread_mutex_lock(&registry_mu);
	p->free_next = free_parkers;
	free_parkers = p;
	pthread_mutex_unlock(&registry_mu);
}

static void
parker_key_make(void)
{
	/* If no key can be made, parkers are simply not recycled. */
	(void)pthread_key_create(&parker_key, parker_release);
}

static struct ration__parker *
parker_get(void)
{
	struct ration__parker *p;

	pthread_mutex_lock(&registry_mu);
	if ((p = free_parkers) != NULL)
		free_parkers = p->free_next;
	else if (static_used < STATIC_PARKERS)
		p = &static_parkers[static_used++];
	pthread_mutex_unlock(&registry_mu);
	if (p == NULL)
		p = calloc(1, sizeof(*p));
	return p;
}

struct ration__parker *
ration__parker_self(void)
{
	if (RATION_LIKELY(self != NULL))
		return self;
	pthread_once(&parker_once, parker_key_make);
	self = parker_get();
	if (self != NULL)
		(void)pthread_setspecific(parker_key, self);
	return self;
}

static void
futex_wait_until(_Atomic uint32_t *word, uint32_t val, int64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;

	if (deadline_ns != RATION_FOREVER) {
		ts = ns_to_timespec(deadline_ns);
		tsp = &ts;
	}
	/* FUTEX_WAIT_BITSET takes an absolute timeout, on CLOCK_MONOTONIC
	 * unless FUTEX_CLOCK_REALTIME is given. */
	(void)syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
		      val, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}

void
ration__park(struct ration__parker *p, int64_t deadline_ns)
{
	if (RATION_UNLIKELY(p == NULL)) {
		int64_t now = clock_mono_ns();
		int64_t until = deadline_ns - now < POLL_NS ? deadline_ns
							    : now + POLL_NS;
		struct timespec ts = ns_to_timespec(until);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		return;
	}
	/* acquire: pairs with the release exchange in ration__unpark(), so
	 * whatever the waker wrote before unparking is visible on return. */
	if (atomic_exchange_explicit(&p->word, EMPTY, memory_order_acquire) ==
	    NOTIFIED)
		return;
	uint32_t expect = EMPTY;
	if (!atomic_compare_exchange_strong_explicit(&p->word, &expect, PARKED,
						     memory_order_acquire,
						     memory_order_relaxed)) {
		/* A wake slipped in between: consume it. */
		atomic_exchange_explicit(&p->word, EMPTY, memory_order_acquire);
		return;
	}
	if (deadline_ns > clock_mono_ns())
		futex_wait_until(&p->word, PARKED, deadline_ns);
	atomic_exchange_explicit(&p->word, EMPTY, memory_order_acquire);
}

void
ration__unpark(struct ration__parker *p)
{
	if (RATION_UNLIKELY(p == NULL))
		return; /* a polling thread notices by itself */
	/* release: publishes the waker's writes (a grant, a cancel) to the
	 * parked thread; pairs with the acquire exchanges in ration__park(). */
	if (atomic_exchange_explicit(&p->word, NOTIFIED,
				     memory_order_release) == PARKED)
		(void)syscall(SYS_futex, &p->word,
			      FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL,
			      0);
}
