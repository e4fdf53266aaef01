/* atomic_max.h (internal) - high-water marks kept without a lock. */
#ifndef RATION_INTERNAL_ATOMIC_MAX_H
#define RATION_INTERNAL_ATOMIC_MAX_H

#include <stdatomic.h>
#include <stdint.h>

/* Raise *@max to @v if @v is larger. Relaxed: a high-water mark is a
 * statistic that publishes nothing; concurrent callers only retry. */
static inline void
ration__atomic_max(_Atomic int64_t *max, int64_t v)
{
	int64_t m = atomic_load_explicit(max, memory_order_relaxed);
	while (v > m &&
	       !atomic_compare_exchange_weak_explicit(
		       max, &m, v, memory_order_relaxed, memory_order_relaxed))
		;
}

#endif
