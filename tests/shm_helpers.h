/* shm_helpers.h - what the shared-memory suites share: object names that
 * main() can sweep up, creating and opening in a child, a look at the
 * segment itself (lib/shared/shm.h). Each suite defines runner_pid. */
#ifndef RATION_TESTS_SHM_HELPERS_H
#define RATION_TESTS_SHM_HELPERS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ration/shared.h>

#include "../lib/shared/shm.h"
#include "../lib/shared/shm_seg.h"
#include "helpers.h"
#include "internal/sem.h"
#include "procs.h"

/* contract §11: a dead holder's weight is back within this. */
#define RECOVERY_NS (100 * MS)

static pid_t runner_pid; /* set first thing by main() */
static _Atomic int name_seq;

static inline void
new_name(char *buf, size_t cap)
{
	snprintf(buf, cap, "/ration-t-%d-%d-%d", (int)runner_pid, (int)getpid(),
		 atomic_fetch_add(&name_seq, 1));
}

static inline void
kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	ck_assert_int_eq(reap(pid), 1000 + SIGKILL);
}

static inline ration_sem_t *
create(const char *name, int64_t size)
{
	ration_shared_opts_t o = {.create = true};
	ration_sem_t *s = NULL;
	ck_assert_int_eq(ration_sem_open_shared(name, size, &o, &s), 0);
	return s;
}

static inline struct shm_seg *
map_seg(const char *name)
{
	int fd = shm_open(name, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	struct shm_seg *g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
	close(fd);
	ck_assert_ptr_ne(g, MAP_FAILED);
	return g;
}

/* The handle behind @s (lib/shared/shm_seg.h). */
static inline struct ration__shm *
shm_of(ration_sem_t *s)
{
	return s->impl;
}

/* The fast-path lane @s has bound in @g (one thread: one lane), or NULL. */
static inline struct shm_lane *
own_lane(struct shm_seg *g, ration_sem_t *s)
{
	struct ration__shm *sh = shm_of(s);
	for (unsigned i = 0; i < SHM_LANES; i++)
		if (atomic_load(&g->lane[i].state) == SLOT_USED &&
		    g->lane[i].holder == sh->hi &&
		    atomic_load(&g->lane[i].token) == sh->token)
			return &g->lane[i];
	return NULL;
}

/* ---- children ---- */

struct job {
	const char *name;
	struct scratch *sc;
	int64_t n;
	int index;
	int64_t hold_ns;
	int rounds;
	int64_t deadline_ns;
};

static inline ration_sem_t *
child_open(const char *name)
{
	ration_sem_t *s = NULL;
	if (ration_sem_open_shared(name, 0, NULL, &s) != 0)
		_exit(99);
	return s;
}

/* Queue for j->n, log the grant, hold the units until the parent sets
 * bit j->index of sc->go (at most TEST_WAIT_NS after the grant), then
 * release and close. */
static inline int
child_wait_log(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	int rc = ration_sem_acquire(s, NULL, j->n);
	if (rc != 0)
		return rc;
	log_grant(j->sc, j->index);
	int64_t deadline = ration_now() + TEST_WAIT_NS;
	while (!(atomic_load(&j->sc->go) & (1 << j->index)))
		if (ration_now() > deadline)
			return ETIMEDOUT;
		else
			sleep_ns(MS);
	if ((rc = ration_sem_release(s, j->n)) != 0)
		return rc;
	return ration_sem_free(s);
}

static inline void
remove_leftovers(void)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "ration-t-%d-", (int)runner_pid);
	DIR *d = opendir("/dev/shm");
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			shm_unlink(e->d_name);
	closedir(d);
}

#endif
