/* sem.h (internal) - the semaphore object, shared by the lib/sem*.c files. */
#ifndef RATION_INTERNAL_SEM_H
#define RATION_INTERNAL_SEM_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "internal/compiler.h"
#include "internal/list.h"
#include "internal/tslot.h"
#include "ration/lease.h"
#include "ration/sem.h"

/* The fast-path word: available * 2 + SLOW. SLOW forces every acquire and
 * release through the locked slow path; it is set exactly while someone
 * is queued, the semaphore is closed, or a resize is in progress. */
#define SEM_SLOW ((int64_t)1)

/* A backend other than this process's memory (shared memory, Redis): the
 * semaphore keeps SLOW set forever, so every call leaves the fast path and
 * is routed here. Each op has the contract of the public function it
 * serves (acquire gets the effective deadline of its ctx, or the _until
 * deadline). free returns like ration_sem_free and, on 0, has freed impl;
 * the ration_sem_t itself is then freed by sem_lifecycle.c. */
struct ration__sem_ops {
	int (*acquire)(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns,
		       int64_t n);
	int (*try_acquire)(ration_sem_t *s, int64_t n);
	int (*release)(ration_sem_t *s, int64_t n);
	int (*consume)(ration_sem_t *s, int64_t n); /* NULL: -ENOTSUP */
	int (*resize)(ration_sem_t *s, int64_t new_size);
	void (*close)(ration_sem_t *s);
	int64_t (*available)(const ration_sem_t *s);
	void (*stats)(const ration_sem_t *s, ration_sem_stats_t *out);
	int (*free)(ration_sem_t *s);
	/* Leases (ration/shared.h): NULL when the backend has none. */
	int (*acquire_lease)(ration_sem_t *s, ration_ctx_t *ctx, int64_t n,
			     ration_lease_t *out);
	int (*lease_release)(ration_sem_t *s, const ration_lease_t *lease);
};

struct ration_sem {
	/* Everything the fast path touches shares the word's cache line,
	 * so a fast acquire or release moves one line between CPUs; the
	 * one exception, a thread's own counter slot (acquired_by_slot),
	 * is written by that thread alone and stays in its cache. */
	_Atomic int64_t word RATION_ALIGNED; /* atomic; see above */
	_Atomic int64_t size;       /* written under mu with SLOW set */
	_Atomic int64_t max_in_use; /* atomic high-water mark */
	/* Fast acquires of threads without a slot (internal/tslot.h). */
	_Atomic uint64_t acquired_fast; /* atomic counter */
	/* Backends: NULL for an in-process semaphore. Immutable; here so the
	 * entry points test it on the line they are about to touch anyway. */
	const struct ration__sem_ops *ops;

	pthread_mutex_t mu RATION_ALIGNED;
	struct ration__list queue; /* mu: struct waiter, FIFO */
	int64_t nwaiters;          /* mu */
	int64_t waiting_weight;    /* mu */
	int64_t max_waiters_seen;  /* mu */
	/* Callers that queued and have not yet made their last access to the
	 * semaphore (they may still lock mu in leave() after close or a
	 * shrink settled and unlinked them): incremented under mu, dropped
	 * (release) as each one's last touch; free refuses while non-zero. */
	_Atomic int64_t inside;
	/* How long a head waiter spins for its grant before it parks, in ns:
	 * halved after a spin that ran out, doubled after one that won
	 * (sem_queue.c, spin_for_grant). Relaxed: a heuristic. */
	_Atomic int32_t spin_ns;
	_Atomic uint32_t spinners; /* atomic: waiters spinning now */
	size_t max_waiters;        /* immutable; 0 = unlimited */
	_Atomic bool closed;       /* written under mu */
	uint64_t acquired_slow;    /* mu */
	uint64_t contended;        /* mu */
	uint64_t timeouts;         /* mu */
	uint64_t cancels;          /* mu */
	uint64_t rejected;         /* mu */
	_Atomic uint64_t consumed; /* atomic counter */
	uint64_t wait_ns_total;    /* mu */
	uint64_t wait_hist[RATION_HIST_BUCKETS]; /* mu */

	/* Named semaphores (ration_sem_open): registry lock in sem_named.c. */
	bool named;
	long refs;
	struct ration__list reg_node;
	char *full_name; /* the name as opened */
	char name[48];   /* opts.name, truncated, for stats */

	void *impl; /* the backend's state; immutable */

	/* Fast acquires of the threads with a slot, one counter per slot,
	 * each written by the slot's owner alone (internal/tslot.h). */
	struct ration__tslot_count acquired_by_slot[RATION_TSLOTS];
};

/* Make a semaphore handle served by @ops/@impl (word = SLOW for ever).
 * Return 0, -EINVAL or -ENOMEM. */
int ration__sem_new_backend(const struct ration__sem_ops *ops, void *impl,
			    const char *name, ration_sem_t **out);

/* Take @n units of an in-process @s (ops == NULL) if they are free and
 * nobody is queued (the lock-free fast path alone): no lock, no wait, and
 * a miss is not counted as a rejection, unlike try_acquire. */
bool ration__sem_take(ration_sem_t *s, int64_t n);

/* Whether @s is served by a backend (shared memory, Redis) rather than
 * this process's memory. */
static inline bool
ration__sem_is_backend(const ration_sem_t *s)
{
	return s->ops != NULL;
}

/* What an acquire of @n on @s would answer at once, without waiting and
 * without the lock: -EPIPE (closed), -E2BIG (@n past the size) or 0. Only
 * an in-process semaphore can tell here; a backend's state is elsewhere,
 * so for one this returns -ENOTSUP and its acquire checks for itself. */
static inline int
ration__sem_verdict(const ration_sem_t *s, int64_t n)
{
	if (ration__sem_is_backend(s))
		return -ENOTSUP;
	if (atomic_load_explicit(&s->closed, memory_order_relaxed))
		return -EPIPE;
	return n > atomic_load_explicit(&s->size, memory_order_relaxed) ? -E2BIG
									: 0;
}

/* Whether @s is held or waited on; takes s->mu. */
bool ration__sem_busy(ration_sem_t *s);
/* Free an idle @s (no check). */
void ration__sem_destroy(ration_sem_t *s);
/* sem_free() of a named semaphore: drop a reference or free the last. */
int ration__sem_free_named(ration_sem_t *s);

#endif
