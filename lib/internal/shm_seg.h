/* shm_seg.h (internal) - making, and checking on open, the shm segment of
 * a shared semaphore. Included by sem_shared.c only. */
#ifndef RATION_INTERNAL_SHM_SEG_H
#define RATION_INTERNAL_SHM_SEG_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/shm.h"
#include "internal/shm_sys.h"

#define INIT_WAIT_NS ((int64_t)2 * 1000000000)
#define INIT_POLL_NS ((int64_t)10 * 1000000)

/* "/name" from @name; -EINVAL if it cannot be a shm object name. */
static int
shm_path(const char *name, char *buf, size_t cap)
{
	if (name == NULL)
		return -EINVAL;
	const char *base = name[0] == '/' ? name + 1 : name;
	size_t len = strlen(base);
	if (len == 0 || len > 200 || strchr(base, '/') != NULL)
		return -EINVAL;
	snprintf(buf, cap, "/%s", base);
	return 0;
}

static int
seg_create(int fd, int64_t size, struct shm_seg **out)
{
	if (ftruncate(fd, (off_t)sizeof(struct shm_seg)) != 0)
		return -errno;
	struct shm_seg *g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g == MAP_FAILED)
		return -errno;
	g->init_pid = getpid();
	g->magic = SHM_MAGIC;
	g->version = SHM_VERSION;
	g->seg_size = (uint32_t)sizeof(*g);
	g->holders = SHM_HOLDERS;
	g->waiters = SHM_WAITERS;
	g->leases = SHM_LEASES;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(&g->mu, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc != 0) {
		munmap(g, sizeof(*g));
		return -rc;
	}
	atomic_init(&g->size, size);
	atomic_init(&g->avail, size);
	g->next_ticket = 1;
	for (unsigned i = 0; i < SHM_WAITERS; i++)
		atomic_init(&g->waiter[i].state, WAITER_FREE);
	/* release: everything above is visible to whoever sees READY. */
	atomic_store_explicit(&g->init, SHM_INIT_READY, memory_order_release);
	shm_futex_wake(&g->init, INT32_MAX);
	*out = g;
	return 0;
}

/* Map an existing segment and check that it is one of ours, complete and
 * initialised (waiting up to INIT_WAIT_NS for a creator still at work). */
static int
seg_attach(int fd, struct shm_seg **out)
{
	int64_t give_up = clock_mono_ns() + INIT_WAIT_NS;
	struct stat st;
	const size_t hdr = offsetof(struct shm_seg, mu);

	for (;;) {
		if (fstat(fd, &st) != 0)
			return -errno;
		if ((size_t)st.st_size >= hdr)
			break;
		if (st.st_size != 0 || clock_mono_ns() >= give_up)
			return -EPROTO; /* truncated, or a creator that died */
		usleep(1000);       /* the creator is between open and ftruncate */
	}
	size_t len = (size_t)st.st_size < sizeof(struct shm_seg) ? (size_t)st.st_size
								 : sizeof(struct shm_seg);
	struct shm_seg *g = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g == MAP_FAILED)
		return -errno;
	int rc = 0;
	for (;;) {
		uint32_t init = atomic_load_explicit(&g->init, memory_order_acquire);
		if (g->magic != 0 && (g->magic != SHM_MAGIC || g->version != SHM_VERSION ||
				      g->seg_size != sizeof(struct shm_seg) ||
				      g->holders != SHM_HOLDERS || g->waiters != SHM_WAITERS ||
				      g->leases != SHM_LEASES)) {
			rc = -EPROTO; /* another layout: another build or version */
			break;
		}
		if (init == SHM_INIT_READY) {
			if (len < sizeof(struct shm_seg))
				rc = -EPROTO; /* truncated after creation */
			break;
		}
		int64_t now = clock_mono_ns();
		if (now >= give_up) {
			rc = -EPROTO; /* never initialised: its creator died */
			break;
		}
		shm_futex_wait(&g->init, init, now + INIT_POLL_NS);
	}
	if (rc != 0) {
		munmap(g, len);
		return rc;
	}
	*out = g;
	return 0;
}

#endif
