/* shm_object.c - ration_sem_open_shared() and ration_sem_unlink_shared():
 * the POSIX shm object behind a shared semaphore, created with O_EXCL by
 * exactly one process (the others wait for it to be READY), checked on
 * every open (shm_seg.c), mapped, and bound to a holder slot. No lock of
 * ours is held across shm_open/mmap; see shm_seg.c for the segment's. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/sem.h"
#include "ration/shared.h"
#include "shm.h"
#include "shm_seg.h"

#define OPEN_LOCK_NS ((int64_t)2 * 1000000000) /* longest wait for the mutex */

typedef struct ration__shm shared_t;
typedef struct ration__shm_wake wake_t;

/* Open or create the object at @path, map it into @sh->g, and keep in
 * @sh->fd a descriptor of a second open file description of it, which
 * will hold our holder slot's lock (shm_alive.c): not the mapped one,
 * since a mapping keeps its description alive, and a fork child inherits
 * the mapping. *@created says whether this call made the object (so a
 * later failure unlinks it). */
static int
map_object(const char *path, bool create, mode_t mode, int64_t size,
	   shared_t *sh, bool *created)
{
	int rc = -ENOENT;
	int fd = -1;
	for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
		if (create) {
			fd = shm_open(path,
				      O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
				      mode);
			if (fd >= 0) {
				(void)fchmod(
					fd,
					mode); /* exactly @mode, whatever the umask */
				rc = ration__shm_create(fd, size, &sh->g);
				if (rc != 0)
					shm_unlink(path);
				*created = rc == 0;
				break;
			}
			if (errno != EEXIST) {
				rc = errno ? -errno : -EIO;
				break;
			}
		}
		fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
		if (fd >= 0) {
			rc = ration__shm_attach(fd, &sh->g);
			break;
		}
		int e = errno;
		rc = e ? -e : -EIO;
		if (!create || e != ENOENT)
			break; /* with create: unlinked in between, try again */
	}
	if (rc == 0 &&
	    (sh->fd = ration__shm_reopen(fcntl(fd, F_DUPFD_CLOEXEC, 0))) < 0) {
		munmap(sh->g, sizeof(*sh->g));
		rc = -ENOLCK;
	}
	if (fd >= 0)
		close(fd); /* the mapping keeps the object */
	return rc;
}

int
ration_sem_open_shared(const char *name, int64_t size,
		       const ration_shared_opts_t *opts, ration_sem_t **out)
{
	char path[256];
	if (ration__shm_path(name, path, sizeof(path)) != 0 || out == NULL)
		return -EINVAL;
	bool create = opts != NULL && opts->create;
	mode_t mode =
		opts != NULL && opts->mode != 0 ? (mode_t)opts->mode : 0600;
	if ((create && (size < 1 || size > RATION_SEM_MAX)) ||
	    (mode & ~(mode_t)0777) != 0)
		return -EINVAL; /* permission bits only: never setuid/setgid/sticky */
	ration__shm_init();

	shared_t *sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return -ENOMEM;
	sh->fd = -1;
	bool created = false;
	int rc = map_object(path, create, mode, size, sh, &created);
	if (rc == 0) {
		wake_t wk = {.n = 0};
		/* gen 0 is never current: lock_bound claims our holder slot.
		 * Bounded: the mutex's owner may be a stopped process. */
		rc = ration__shm_lock_bound(sh, &wk, NULL,
					    clock_mono_ns() + OPEN_LOCK_NS);
		if (rc == 0)
			ration__shm_unlock_wake(sh->g, &wk);
		if (rc == 0 &&
		    (rc = ration__sem_new_backend(&ration__shm_ops, sh,
						  path + 1, out)) != 0) {
			if (ration__shm_lock(sh, &wk) == 0) {
				ration__shm_slot_unlock(sh->fd, sh->hi);
				atomic_store_explicit(
					&sh->g->holder[sh->hi].state, SLOT_FREE,
					memory_order_relaxed);
				ration__shm_unlock_wake(sh->g, &wk);
			}
		}
		if (rc == 0) {
			ration__shm_register(sh);
		} else {
			munmap(sh->g, sizeof(*sh->g));
			close(sh->fd);
			/* State unchanged on error: a create that fails takes its
			 * name away again (an opener that raced in keeps its
			 * mapping; later opens start afresh). */
			if (created)
				shm_unlink(path);
		}
	}
	if (rc != 0)
		free(sh);
	return rc;
}

int
ration_sem_unlink_shared(const char *name)
{
	char path[256];
	if (ration__shm_path(name, path, sizeof(path)) != 0)
		return -EINVAL;
	if (shm_unlink(path) == 0)
		return 0;
	return errno ? -errno : -EIO;
}
