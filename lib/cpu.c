/* cpu.c - the CPU count of internal/cpu.h. */
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "internal/compiler.h"
#include "internal/cpu.h"

/* About 1 us where a pause takes ~30 ns; how 32 was chosen is in
 * docs/performance.md ("Constants in the code"). */
#define BACKOFF_PAUSES 32

static _Atomic unsigned ncpu_cached; /* 0 = not read yet */

unsigned
ration__ncpu(void)
{
	/* Relaxed: every thread computes the same value; a race only makes
	 * two of them read the mask. */
	unsigned n = atomic_load_explicit(&ncpu_cached, memory_order_relaxed);
	if (n != 0)
		return n;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		n = (unsigned)CPU_COUNT(&set);
	} else {
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		n = online > 0 ? (unsigned)online : 1;
	}
	if (n == 0)
		n = 1;
	atomic_store_explicit(&ncpu_cached, n, memory_order_relaxed);
	return n;
}

RATION_NOINLINE __attribute__((cold)) void
ration__backoff(void)
{
	if (!ration__may_spin())
		return;
	for (int i = 0; i < BACKOFF_PAUSES; i++)
		ration__cpu_relax();
}
