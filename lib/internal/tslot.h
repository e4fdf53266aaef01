/* tslot.h (internal) - a small per-thread index for single-writer counters.
 *
 * A statistic bumped on a lock-free fast path costs a locked instruction
 * if every thread adds to one shared atomic: as much as the fast path's
 * own CAS (docs/performance.md, W1). Instead an object keeps one counter
 * per slot, each on a line of its own; a thread owns one slot at a time,
 * so it adds with a plain load and store, and a reader sums the slots.
 * At most RATION_TSLOTS threads own a slot at a time, the first to ask (a
 * slot goes back when its thread exits, and passes to the next thread that
 * asks); the others get RATION_TSLOTS and count on a shared atomic
 * instead.
 */
#ifndef RATION_INTERNAL_TSLOT_H
#define RATION_INTERNAL_TSLOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal/compiler.h"

#define RATION_TSLOTS 8

/* One slot's counter, alone on its line: slots of threads on different
 * CPUs never share a line. */
struct ration__tslot_count {
	_Atomic uint64_t n;
} RATION_ALIGNED;

/* The calling thread's slot + 1; 0 until it first asks; RATION_TSLOTS + 1
 * once it has none. Read on every fast acquire, hence RATION_TLS_IE. */
extern _Thread_local unsigned ration__tslot_tl RATION_TLS_IE;

/* Give the calling thread a slot if one is free; return ration__tslot(). */
unsigned ration__tslot_take(void);

/* The calling thread's slot, 0..RATION_TSLOTS - 1, or RATION_TSLOTS when
 * it has none. Stable until the thread exits. */
static inline unsigned
ration__tslot(void)
{
	unsigned t = ration__tslot_tl;
	if (RATION_UNLIKELY(t == 0))
		return ration__tslot_take();
	return t - 1;
}

/* Add 1 to the calling thread's @slot counter (@slot < RATION_TSLOTS, from
 * ration__tslot()). Relaxed load and store, no RMW: the slot has one
 * writer, its owner; a slot passes to another thread only through the
 * slot lock, which orders the old owner's last store before the new
 * owner's first load. Readers load each counter relaxed. */
static inline void
ration__tslot_inc(struct ration__tslot_count *c)
{
	atomic_store_explicit(
		&c->n, atomic_load_explicit(&c->n, memory_order_relaxed) + 1,
		memory_order_relaxed);
}

#endif
