/* hist.h (internal) - the log2 wait-time histograms of the stats. */
#ifndef RATION_INTERNAL_HIST_H
#define RATION_INTERNAL_HIST_H

#include <stdint.h>

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

#endif
