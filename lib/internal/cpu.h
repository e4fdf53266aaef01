/* cpu.h - how many CPUs this process may run on, and so whether spinning
 * can ever pay off. */
#ifndef RATION_INTERNAL_CPU_H
#define RATION_INTERNAL_CPU_H

#include <stdbool.h>

/* CPUs in the calling process's affinity mask (sched_getaffinity), as Go
 * sizes GOMAXPROCS; read once, on first use; at least 1. Not the online
 * count: under taskset or a cpuset of one CPU, a waiter spinning for
 * another thread only delays that thread until the spin ends. */
unsigned ration__ncpu(void);

/* Whether a bounded spin can see another thread make progress. */
static inline bool
ration__may_spin(void)
{
	return ration__ncpu() > 1;
}

/* Stands back about a microsecond after losing a CAS to another taker on a
 * word other CPUs keep hitting (the semaphore's fast path). Retrying at
 * once pulls the cache line back while the winner still needs it, so the
 * line crosses CPUs on every operation; waiting lets the winner finish a
 * few operations in its own cache (docs/sem.md; the W2 figures in
 * docs/performance.md). A no-op with one
 * usable CPU: there the CAS was lost to a thread that preempted us and is
 * not running now. Out of line, so the fast paths keep their registers. */
void ration__backoff(void);

#endif
