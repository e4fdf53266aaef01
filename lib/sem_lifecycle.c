/* sem_lifecycle.c - the in-process semaphore's life cycle: new, free (it
 * refuses while the semaphore is held or waited on), a handle served by a
 * backend's ops, and the stats snapshot. The fast paths are in sem.c, the
 * wait queue in sem_queue.c.
 *
 * Locking: s->mu, to read the queue's counters consistently (stats, busy).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/compiler.h"
#include "internal/list.h"
#include "internal/sem.h"
#include "internal/sem_inproc.h"
#include "internal/tslot.h"
#include "ration/sem.h"

void
ration_sem_stats(const ration_sem_t *cs, ration_sem_stats_t *out)
{
	ration_sem_t *s =
		(ration_sem_t *)cs; /* the lock is not part of the value */

	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return;
	if (s->ops != NULL) {
		s->ops->stats(s, out);
		return;
	}
	pthread_mutex_lock(&s->mu);
	out->size = atomic_load_explicit(&s->size, memory_order_relaxed);
	out->available = ration__sem_avail(
		atomic_load_explicit(&s->word, memory_order_relaxed));
	out->in_use = out->size - out->available;
	out->waiters = s->nwaiters;
	out->waiting_weight = s->waiting_weight;
	out->max_in_use =
		atomic_load_explicit(&s->max_in_use, memory_order_relaxed);
	out->max_waiters_seen = s->max_waiters_seen;
	out->acquired =
		s->acquired_slow +
		atomic_load_explicit(&s->acquired_fast, memory_order_relaxed);
	for (unsigned i = 0; i < RATION_TSLOTS; i++)
		out->acquired += atomic_load_explicit(&s->acquired_by_slot[i].n,
						      memory_order_relaxed);
	out->contended = s->contended;
	out->timeouts = s->timeouts;
	out->cancels = s->cancels;
	out->rejected = s->rejected;
	out->consumed =
		atomic_load_explicit(&s->consumed, memory_order_relaxed);
	out->wait_ns_total = s->wait_ns_total;
	memcpy(out->wait_hist, s->wait_hist, sizeof(out->wait_hist));
	out->closed = atomic_load_explicit(&s->closed, memory_order_relaxed);
	memcpy(out->name, s->name, sizeof(out->name));
	pthread_mutex_unlock(&s->mu);
}

int
ration_sem_new(int64_t size, const ration_sem_opts_t *opts, ration_sem_t **out)
{
	if (out == NULL || size < 1 || size > RATION_SEM_MAX)
		return -EINVAL;
	ration_sem_t *s = aligned_alloc(RATION_CACHELINE, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	atomic_init(&s->word, ration__sem_units(size));
	atomic_init(&s->size, size);
	atomic_init(&s->spin_ns, HEAD_SPIN_NS);
	pthread_mutex_init(&s->mu, NULL);
	list_init(&s->queue);
	list_init(&s->reg_node);
	if (opts != NULL) {
		s->max_waiters = opts->max_waiters;
		if (opts->name != NULL)
			snprintf(s->name, sizeof(s->name), "%s", opts->name);
	}
	*out = s;
	return 0;
}

bool
ration__sem_busy(ration_sem_t *s)
{
	pthread_mutex_lock(&s->mu);
	bool busy =
		s->nwaiters != 0 ||
		atomic_load_explicit(&s->inside, memory_order_acquire) != 0 ||
		ration__sem_avail(
			atomic_load_explicit(&s->word, memory_order_relaxed)) !=
			atomic_load_explicit(&s->size, memory_order_relaxed);
	pthread_mutex_unlock(&s->mu);
	return busy;
}

void
ration__sem_destroy(ration_sem_t *s)
{
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int
ration_sem_free(ration_sem_t *s)
{
	if (s == NULL)
		return -EINVAL;
	if (s->named)
		return ration__sem_free_named(s);
	if (s->ops != NULL) {
		int rc = s->ops->free(s);
		if (rc == 0)
			ration__sem_destroy(s);
		return rc;
	}
	if (ration__sem_busy(s))
		return -EBUSY;
	ration__sem_destroy(s);
	return 0;
}

int
ration__sem_new_backend(const struct ration__sem_ops *ops, void *impl,
			const char *name, ration_sem_t **out)
{
	ration_sem_opts_t opts = {.name = name};
	ration_sem_t *s;
	int rc = ration_sem_new(1, &opts, &s);
	if (rc != 0)
		return rc;
	atomic_store_explicit(&s->word, SEM_SLOW, memory_order_relaxed);
	s->ops = ops;
	s->impl = impl;
	*out = s;
	return 0;
}
