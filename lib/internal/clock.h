/* clock.h - CLOCK_MONOTONIC ns and its conversions. Never CLOCK_REALTIME. */
#ifndef RATION_INTERNAL_CLOCK_H
#define RATION_INTERNAL_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "ration/common.h"

static inline int64_t
clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline struct timespec
ns_to_timespec(int64_t ns)
{
	struct timespec ts;
	if (ns < 0)
		ns = 0;
	ts.tv_sec = (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	return ts;
}

/* a + b for b >= 0, saturating at RATION_FOREVER. */
static inline int64_t
ns_add_sat(int64_t a, int64_t b)
{
	if (b <= 0)
		return a;
	return a > RATION_FOREVER - b ? RATION_FOREVER : a + b;
}

#endif
