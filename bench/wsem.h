/* wsem.h - the naive weighted FIFO semaphore the peers call c-wsem: one
 * mutex, one condition variable, a ticket queue. ration-bench and the peer
 * program bench/peers/c/bench.c both include this file, so their c-wsem
 * numbers compare.
 *
 * Strict FIFO, no barging: a caller is admitted only when its ticket is
 * the head and its weight fits. Every change that might admit someone
 * broadcasts, so all waiters wake and all but the head sleep again.
 * Weights must be 1..size (a larger one would wait forever).
 */
#ifndef RATION_BENCH_WSEM_H
#define RATION_BENCH_WSEM_H

#include <pthread.h>
#include <stdint.h>

typedef struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t avail; /* mu: free units */
	uint64_t next,
		head; /* mu: next ticket to hand out, ticket served now */
} wsem_t;

static inline void
wsem_init(wsem_t *s, int64_t size)
{
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->avail = size;
	s->next = s->head = 0;
}

static inline void
wsem_acquire(wsem_t *s, int64_t w)
{
	pthread_mutex_lock(&s->mu);
	uint64_t me = s->next++;
	while (me != s->head || s->avail < w)
		pthread_cond_wait(&s->cv, &s->mu);
	s->avail -= w;
	s->head++;
	/* The next ticket may fit too; it went back to sleep before we
	 * advanced the head, so tell it. */
	if (s->head != s->next && s->avail > 0)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static inline void
wsem_release(wsem_t *s, int64_t w)
{
	pthread_mutex_lock(&s->mu);
	s->avail += w;
	if (s->head != s->next)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

#endif
