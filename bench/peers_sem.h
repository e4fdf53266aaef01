/* peers_sem.h - the semaphores of W1/W2, each as init/acquire(1)/release(1).
 *
 *   ration       ration_sem_acquire(s, NULL, 1) / ration_sem_release(s, 1)
 *   c-posix-sem  sem_wait / sem_post (weight 1 only, not FIFO)
 *   c-wsem       wsem.h, the naive mutex + condvar FIFO
 *
 * Static inline and selected once, outside the timed loop, so W1 measures
 * the semaphore and not an indirect call.
 */
#ifndef RATION_BENCH_PEERS_SEM_H
#define RATION_BENCH_PEERS_SEM_H

#include <semaphore.h>
#include <string.h>

#include <ration.h>

#include "bench.h"
#include "wsem.h"

enum sem_peer { SEM_RATION, SEM_POSIX, SEM_WSEM };

extern ration_sem_t *bench_rsem;
extern sem_t bench_psem;
extern wsem_t bench_wsem;

/* Set up the semaphore named by bench_peer with @size units. */
static inline enum sem_peer
sem_peer_init(int64_t size)
{
	if (!strcmp(bench_peer, "ration")) {
		if (ration_sem_new(size, NULL, &bench_rsem) != 0)
			die("ration_sem_new");
		return SEM_RATION;
	}
	if (!strcmp(bench_peer, "c-posix-sem")) {
		if (sem_init(&bench_psem, 0, (unsigned)size) != 0)
			die("sem_init");
		return SEM_POSIX;
	}
	if (!strcmp(bench_peer, "c-wsem")) {
		wsem_init(&bench_wsem, size);
		return SEM_WSEM;
	}
	die("unknown peer");
}

static inline void
ration_acq1(void)
{
	if (ration_sem_acquire(bench_rsem, NULL, 1) != 0)
		die("ration_sem_acquire");
}

static inline void
ration_rel1(void)
{
	if (ration_sem_release(bench_rsem, 1) != 0)
		die("ration_sem_release");
}

static inline void
posix_acq1(void)
{
	while (sem_wait(&bench_psem) != 0)
		;
}

static inline void
posix_rel1(void)
{
	sem_post(&bench_psem);
}

static inline void
wsem_acq1(void)
{
	wsem_acquire(&bench_wsem, 1);
}

static inline void
wsem_rel1(void)
{
	wsem_release(&bench_wsem, 1);
}

#endif
