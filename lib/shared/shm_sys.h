/* shm_sys.h (internal) - the system calls the shared backend sleeps and
 * judges liveness with: shared futexes and /proc start times. */
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

/* /proc/<pid>/stat field 22 (start time, clock ticks after boot).
 * Return the start time; 0 if the process is gone or a zombie (state Z or
 * X: it can hold nothing any more); UINT64_MAX if /proc cannot tell
 * (unreadable, e.g. hidepid), in which case the caller trusts kill(). */
static inline uint64_t
shm_proc_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? 0 : UINT64_MAX;
	ssize_t len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return 0; /* reaped between open and read */
	buf[len] = '\0';
	/* comm (field 2) may hold spaces and parentheses: parse after the
	 * last ')'. Then field 3 is the state, field 22 the start time. */
	char *p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return UINT64_MAX;
	p += 2;
	if (*p == 'Z' || *p == 'X' || *p == 'x')
		return 0;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return UINT64_MAX;
		p++;
	}
	return strtoull(p, NULL, 10);
}

#endif
