/* shm_alive.c - who is alive, without pids: each holder slot of a segment
 * has a byte of the shm object, and the handle that claims the slot holds
 * an OFD lock (fcntl F_OFD_SETLK) on it through an open file description
 * of its own. The kernel drops the lock when the last descriptor of that
 * description closes, i.e. when the process dies (a SIGKILL included),
 * and not before: a main thread that has exited (the process shows as a
 * zombie while other threads run) keeps it, and so does a process in
 * another PID namespace (containers sharing /dev/shm), whose pid would
 * mean nothing here. Another process asks the kernel whether anyone holds
 * the byte (F_OFD_GETLK): nobody = the slot's process is dead.
 *
 * The description is one of its own, never mapped: a mapping keeps its
 * description (and so its locks) alive, and a fork child inherits the
 * mappings. A fork child also inherits the descriptor, and with it the
 * parent's description, until ration__shm_reopen() gives it its own (the
 * atfork handler does), else the parent would look alive for as long as
 * the child lives. What the kernel cannot tell us: a process that closes
 * the handle's descriptor itself (close_range, closefrom) looks dead; its
 * slot is reclaimed and the handle answers -ESTALE (see shm_seg.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "shm_seg.h"

static struct flock
byte_of(uint32_t i, short type)
{
	/* l_pid must be 0 for OFD locks. */
	return (struct flock){.l_type = type,
			      .l_whence = SEEK_SET,
			      .l_start = (off_t)i,
			      .l_len = 1,
			      .l_pid = 0};
}

int
ration__shm_slot_lock(int fd, uint32_t i)
{
	if (fd < 0)
		return -ENOLCK;
	struct flock fl = byte_of(i, F_WRLCK);
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EAGAIN || errno == EACCES ? -EAGAIN : -ENOLCK;
}

void
ration__shm_slot_unlock(int fd, uint32_t i)
{
	struct flock fl = byte_of(i, F_UNLCK);
	if (fd >= 0)
		(void)fcntl(fd, F_OFD_SETLK, &fl);
}

bool
ration__shm_slot_locked(int fd, uint32_t i)
{
	struct flock fl = byte_of(i, F_WRLCK);
	if (fd < 0 || fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return true; /* cannot tell: never reclaim on doubt */
	return fl.l_type != F_UNLCK;
}

int
ration__shm_reopen(int fd)
{
	if (fd < 0)
		return -1;
	/* thread-self, not self: once the main thread has exited, the
	 * leader's /proc/self/fd can no longer be read. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/thread-self/fd/%d", fd);
	int nfd = open(path, O_RDWR | O_CLOEXEC);
	if (nfd < 0) {
		close(fd);
		return -1;
	}
	/* Same number, new description; the inherited one is let go. */
	if (dup3(nfd, fd, O_CLOEXEC) < 0) {
		close(nfd);
		close(fd);
		return -1;
	}
	close(nfd);
	return fd;
}
