/* stats_clock.h - a cheap clock for the durations in statistics.
 *
 * A group reads the time three times per task (go, start, end) for its
 * wait and run statistics. clock_gettime(CLOCK_MONOTONIC) goes through
 * the vDSO, and its ordered TSC read (lfence; rdtsc) also waits for every
 * cache miss in flight, of which a task hand-off has many; a plain rdtsc
 * is cheaper and waits for nothing (the costs measured: docs/group.md). Ticks are used only for differences between two
 * readings (never deadlines, never compared with ration_now()), so their
 * origin does not matter, only their rate.
 *
 * TSC only where it is a clock: x86-64 with an invariant TSC, and the
 * kernel itself using it as its clocksource (the kernel has then checked
 * that the CPUs' counters agree). Anywhere else a tick is a
 * CLOCK_MONOTONIC nanosecond. Which one is fixed by ration__ticks_init(),
 * before the first reading, and never changes.
 */
#ifndef RATION_INTERNAL_STATS_CLOCK_H
#define RATION_INTERNAL_STATS_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal/clock.h"
#include "internal/compiler.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* Set once by ration__ticks_init(): whether ticks are TSC cycles, and
 * ns per tick as a 32.32 fixed-point number. */
extern _Atomic bool ration__ticks_tsc;
extern uint64_t ration__ns_per_tick_q32;

/* Decide the tick source (once per process; a few hundred us the first
 * time, when the TSC is calibrated). Call before the first ration__ticks()
 * whose value will be compared with another. Thread-safe. */
void ration__ticks_init(void);

static inline int64_t
ration__ticks(void)
{
#if defined(__x86_64__)
	/* Relaxed: written once, before any reading that depends on it
	 * (ration__ticks_init() completes under pthread_once first). */
	if (RATION_LIKELY(atomic_load_explicit(&ration__ticks_tsc,
					       memory_order_relaxed)))
		return (int64_t)__rdtsc();
#endif
	return clock_mono_ns();
}

/* A difference of two ticks (>= 0) in ns. */
static inline int64_t
ration__ticks_to_ns(int64_t d)
{
	if (!atomic_load_explicit(&ration__ticks_tsc, memory_order_relaxed) ||
	    d <= 0)
		return d;
	/* 32.32 multiply in two halves: no overflow for d < 2^63 since a
	 * tick is under 1 ns (ration__ticks_init() keeps the ns clock for
	 * a TSC under 1 GHz). */
	uint64_t u = (uint64_t)d, m = ration__ns_per_tick_q32;
	return (int64_t)((u >> 32) * m + (((u & 0xffffffffu) * m) >> 32));
}

#endif
