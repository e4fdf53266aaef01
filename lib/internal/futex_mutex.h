/* futex_mutex.h - a 4-byte mutex for short critical sections on hot objects.
 *
 * Why not pthread_mutex_t: the pool's queue lock is taken by the submitter
 * and by a worker on every task, so the lock word's cache line is the one
 * that moves between CPUs. A 40-byte pthread mutex leaves no room on that
 * line for the fields the critical section writes, and each hand-over
 * moved three or four lines instead of one (docs/pool.md, "The queue lock").
 *
 * Word: 0 free, 1 held, 2 held and someone may sleep on it (Drepper,
 * "Futexes Are Tricky", mutex 3), with a bounded spin before sleeping, as
 * glibc's adaptive mutex does: critical sections are a few dozen
 * instructions, shorter than a futex sleep and wake. Not recursive, no
 * owner check, no priority inheritance; never held across user code.
 */
#ifndef RATION_INTERNAL_FUTEX_MUTEX_H
#define RATION_INTERNAL_FUTEX_MUTEX_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal/compiler.h"

struct ration__lock {
	_Atomic uint32_t word;
};

#define RATION__LOCK_INIT                                                      \
	{                                                                      \
		0                                                              \
	}

void ration__lock_slow(struct ration__lock *l);
void ration__unlock_wake(struct ration__lock *l);

static inline void
ration__lock(struct ration__lock *l)
{
	uint32_t free_word = 0;
	/* acquire: the critical section sees everything the previous holder
	 * wrote in its own (pairs with the release exchange in unlock). */
	if (RATION_LIKELY(atomic_compare_exchange_strong_explicit(
		    &l->word, &free_word, 1, memory_order_acquire,
		    memory_order_relaxed)))
		return;
	ration__lock_slow(l);
}

static inline void
ration__unlock(struct ration__lock *l)
{
	/* release: publishes this critical section to the next holder. */
	if (RATION_UNLIKELY(atomic_exchange_explicit(
				    &l->word, 0, memory_order_release) == 2))
		ration__unlock_wake(l);
}

#endif
