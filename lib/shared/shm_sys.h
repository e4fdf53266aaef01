/* shm_sys.h (internal) - the system calls the shared backend sleeps and
 * wakes with: shared futexes. */
#ifndef RATION_INTERNAL_SHM_SYS_H
#define RATION_INTERNAL_SHM_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal/clock.h"

/* Sleep while *@word == @val, until woken or @deadline_ns (absolute,
 * CLOCK_MONOTONIC). Shared futex: the word is in a MAP_SHARED mapping and
 * the waker is another process, so no FUTEX_PRIVATE_FLAG. */
static inline void
shm_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline_ns)
{
	struct timespec ts = ns_to_timespec(deadline_ns);
	(void)syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val, &ts, NULL,
		      FUTEX_BITSET_MATCH_ANY);
}

static inline void
shm_futex_wake(_Atomic uint32_t *word, int n)
{
	(void)syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

#endif
