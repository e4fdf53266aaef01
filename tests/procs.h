/* procs.h - forked children for the cross-process suites (shared memory,
 * Redis): scratch memory both sides see, and bounded reaping, so that a
 * child that hangs fails its test instead of hanging the run. */
#ifndef RATION_TESTS_PROCS_H
#define RATION_TESTS_PROCS_H

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* Shared scratch memory for parent and children (never the semaphore). */
struct scratch {
	_Atomic int ready;
	_Atomic int go;
	_Atomic int64_t occupancy;
	_Atomic int violations;
	_Atomic int nclaimed; /* order[] slots taken */
	_Atomic int norder;   /* order[] slots written */
	_Atomic int order[16];
	_Atomic uint64_t fence[16];
};

static inline struct scratch *
scratch_new(void)
{
	void *p = mmap(NULL, sizeof(struct scratch), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 0, sizeof(struct scratch));
	return p;
}

/* Log a grant to @index. The slot is claimed first and counted in norder only
 * once written, so a parent that waits for norder == k reads k written slots
 * (as long as no (k+1)th grant can have happened yet). */
static inline void
log_grant(struct scratch *sc, int index)
{
	int k = atomic_fetch_add(&sc->nclaimed, 1);
	atomic_store(&sc->order[k], index);
	atomic_fetch_add(&sc->norder, 1);
}

/* Fork a child that exits with -@fn(@arg) (a ration code as exit status). */
static inline pid_t
spawn(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = fn(arg);
		_exit(rc < 0 ? -rc : rc);
	}
	return pid;
}

/* Wait for @pid at most @timeout_ns (then kill it and fail the test);
 * return its result as a ration code (0 or -errno), or 1000 + signal if
 * it was killed. */
static inline int
reap_within(pid_t pid, int64_t timeout_ns)
{
	int status;
	int64_t deadline = ration_now() + timeout_ns;
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (ration_now() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			ck_abort_msg("child %d did not finish", (int)pid);
		}
		sleep_ns(1000000);
	}
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	return -WEXITSTATUS(status);
}

static inline int
reap(pid_t pid)
{
	return reap_within(pid, TEST_WAIT_NS);
}

#endif
