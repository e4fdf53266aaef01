/* stats_clock.c - choosing and calibrating the tick source of
 * internal/stats_clock.h. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal/stats_clock.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

_Atomic bool ration__ticks_tsc;
uint64_t ration__ns_per_tick_q32;

/* Calibration window: the two clock_gettime() reads that bound it are
 * each off by tens of ns, so 200 us gives the rate to ~0.03%. */
#define CALIBRATE_NS 200000

static pthread_once_t ticks_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static bool
tsc_is_clock(void)
{
	unsigned a, b, c, d;
	/* CPUID 0x80000007 EDX bit 8: invariant TSC (constant rate in every
	 * P-, C- and T-state). */
	if (!__get_cpuid(0x80000007, &a, &b, &c, &d) || !(d & (1u << 8)))
		return false;
	char src[32] = "";
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
			"current_clocksource",
			"re");
	if (f == NULL)
		return false;
	bool ok =
		fgets(src, sizeof(src), f) != NULL && strcmp(src, "tsc\n") == 0;
	fclose(f);
	return ok;
}
#endif

static void
ticks_decide(void)
{
#if defined(__x86_64__)
	if (!tsc_is_clock())
		return;
	int64_t t0 = clock_mono_ns();
	uint64_t c0 = __rdtsc();
	int64_t t1;
	do
		t1 = clock_mono_ns();
	while (t1 - t0 < CALIBRATE_NS);
	uint64_t c1 = __rdtsc();
	if (c1 <= c0)
		return;
	uint64_t q32 = ((uint64_t)(t1 - t0) << 32) / (c1 - c0);
	if (q32 == 0 || q32 >= (uint64_t)1 << 32)
		return; /* a TSC slower than 1 GHz: keep the ns clock */
	ration__ns_per_tick_q32 = q32;
	/* pthread_once orders this store before every caller's return. */
	atomic_store_explicit(&ration__ticks_tsc, true, memory_order_relaxed);
#endif
}

void
ration__ticks_init(void)
{
	pthread_once(&ticks_once, ticks_decide);
}
