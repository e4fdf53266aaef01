/* futex_mutex.c - the sleeping half of internal/futex_mutex.h. */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal/cpu.h"
#include "internal/futex_mutex.h"

/* Spins before sleeping: about 6 us where a pause takes ~30 ns (less
 * where it is shorter), the order of a futex wake on a VM, and far longer
 * than any critical section under such a lock unless its holder was
 * preempted. */
#define LOCK_SPINS 200

void
ration__lock_slow(struct ration__lock *l)
{
	for (int i = ration__may_spin() ? 0 : LOCK_SPINS; i < LOCK_SPINS; i++) {
		ration__cpu_relax();
		uint32_t w =
			atomic_load_explicit(&l->word, memory_order_relaxed);
		if (w == 2)
			break; /* others already sleep: queue behind them */
		if (w == 0 && atomic_compare_exchange_weak_explicit(
				      &l->word, &w, 1, memory_order_acquire,
				      memory_order_relaxed))
			return;
	}
	/* Take it as "held, maybe with sleepers", so our unlock wakes the
	 * next sleeper; acquire as in ration__lock(). */
	while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
		(void)syscall(SYS_futex, &l->word,
			      FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 2, NULL, NULL,
			      0);
}

void
ration__unlock_wake(struct ration__lock *l)
{
	(void)syscall(SYS_futex, &l->word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1,
		      NULL, NULL, 0);
}
