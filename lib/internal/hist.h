/* hist.h (internal) - the log2 wait-time histograms of the stats. */
#ifndef RATION_INTERNAL_HIST_H
#define RATION_INTERNAL_HIST_H

#include <stdint.h>

#include "internal/clock.h"
#include "ration/common.h"

/* The bucket of a wait of @ns: floor(log2 ns), 0 for 0-1 ns, the last
 * bucket open-ended (RATION_HIST_BUCKETS in ration/common.h). */
static inline unsigned
ration__hist_bucket(int64_t ns)
{
	if (ns <= 1)
		return 0;
	unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)ns);
	return b < RATION_HIST_BUCKETS ? b : RATION_HIST_BUCKETS - 1;
}

/* Count a grant to a waiter queued at @t0 in the wait statistics @total
 * and @hist, under the lock that guards them. A grant loop keeps *@now at
 * 0 until the first grant, which reads the clock once for the whole loop. */
static inline void
ration__hist_note_wait(uint64_t *total, uint64_t *hist, int64_t *now,
		       int64_t t0)
{
	if (*now == 0)
		*now = clock_mono_ns();
	int64_t waited = *now > t0 ? *now - t0 : 0;
	*total += (uint64_t)waited;
	hist[ration__hist_bucket(waited)]++;
}

#endif
