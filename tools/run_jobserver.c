/* tools/run_jobserver.c - ration-run as a GNU make jobserver client.
 *
 * make -jN hands its children N-1 tokens (bytes) in a pipe or a named
 * FIFO, named in MAKEFLAGS as --jobserver-auth=R,W or =fifo:PATH. Every
 * process that make started owns one implicit token already, so the first
 * job runs on that; every further job reads one byte before it starts and
 * writes the same byte back when it ends. Then recipes that call ration-run
 * inside `make -j8` never run more than 8 things in all.
 *
 * Locking: mu guards implicit_busy only. The dispatcher is the only
 * reader of tokens; the supervisor writes them back.
 */
#include "run.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* is_fifo() - whether @fd is open and a pipe or FIFO. */
static bool
is_fifo(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* A description of the pipe of our own, non-blocking: setting O_NONBLOCK
 * on the one make gave us would change it for make and every sibling too.
 * Opening /proc/self/fd/N of a pipe makes a new open file description. */
static int
reopen_nonblock(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags | O_NONBLOCK | O_CLOEXEC);
}

/* open_fifo() - the fifo:PATH style (make 4.4+): open PATH.
 * Return: 0 or a negative errno (-EINVAL: not a FIFO). */
static int
open_fifo(struct jobserver *js, const char *path)
{
	/* O_RDWR: the open never blocks waiting for a writer, and one
	 * description serves both directions. */
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (!is_fifo(fd)) {
		close(fd);
		return -EINVAL;
	}
	js->rfd = fd;
	js->wfd = fd;
	return 0;
}

/* open_pipe() - the R,W style: check that make passed the fds on (a
 * recipe without '+' gets them closed) and make our own copies.
 * Return: 0 or a negative errno (-EBADF: not passed on). */
static int
open_pipe(struct jobserver *js, int r, int w)
{
	if (fcntl(r, F_GETFD) < 0 || fcntl(w, F_GETFD) < 0 || !is_fifo(r) ||
	    !is_fifo(w))
		return -EBADF;
	js->rfd = reopen_nonblock(r, O_RDONLY);
	if (js->rfd < 0)
		return -errno;
	js->wfd = fcntl(w, F_DUPFD_CLOEXEC, 3);
	if (js->wfd < 0) {
		int err = -errno;
		close(js->rfd);
		return err;
	}
	return 0;
}

/* Returns 0 whether or not a jobserver was found (js->active says), or a
 * negative errno only for failures of our own (no eventfd). */
int
js_init(struct jobserver *js, const char *makeflags)
{
	const char *auth = NULL, *p;

	js->active = false;
	js->unavailable = false;
	js->rfd = js->wfd = js->wake_fd = -1;
	js->implicit_busy = false;
	pthread_mutex_init(&js->mu, NULL);
	if (makeflags == NULL)
		return 0;
	/* make documents that the last option wins; older makes spelled it
	 * --jobserver-fds. */
	for (p = makeflags; (p = strstr(p, "--jobserver-")) != NULL; p++) {
		if (strncmp(p, "--jobserver-auth=", 17) == 0)
			auth = p + 17;
		else if (strncmp(p, "--jobserver-fds=", 16) == 0)
			auth = p + 16;
	}
	if (auth == NULL)
		return 0;
	size_t len = strcspn(auth, " \t");
	if (len >= sizeof(js->desc))
		len = sizeof(js->desc) - 1;
	memcpy(js->desc, auth, len);
	js->desc[len] = '\0';

	int rc;
	char *comma, *end = NULL;
	long r = strtol(js->desc, &comma, 10), w = -1;
	if (comma != js->desc && *comma == ',' &&
	    isdigit((unsigned char)comma[1]))
		w = strtol(comma + 1, &end, 10);
	if (strncmp(js->desc, "fifo:", 5) == 0)
		rc = open_fifo(js, js->desc + 5);
	else if (w >= 0 && *end == '\0' && r >= 0 && r <= INT_MAX &&
		 w <= INT_MAX)
		rc = open_pipe(js, (int)r, (int)w);
	else
		rc = -EINVAL;
	if (rc < 0) {
		/* What make itself does in this spot: it cannot share the
		 * limit, so it takes only the token it already holds. */
		fprintf(stderr,
			RUN_NAME
			": warning: jobserver '%s' "
			"unavailable (%s): running one job at a time; mark "
			"the recipe line with '+' to share make's -j\n",
			js->desc, strerror(-rc));
		js->unavailable = true;
		return 0;
	}
	js->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (js->wake_fd < 0) {
		rc = -errno;
		js_fini(js);
		return rc;
	}
	js->active = true;
	return 0;
}

/* take_implicit() - give @j the token this process got from make
 * for itself, if no other job has it. Return: whether @j got it. */
static bool
take_implicit(struct jobserver *js, struct job *j)
{
	bool took = false;

	pthread_mutex_lock(&js->mu);
	if (!js->implicit_busy) {
		js->implicit_busy = true;
		took = true;
	}
	pthread_mutex_unlock(&js->mu);
	j->js_implicit = took;
	return took;
}

/* Blocks until @j holds the implicit slot or a token, or @ctx is done.
 * Return: 0, the ctx error, or -EPIPE when make went away. */
int
js_acquire(struct jobserver *js, ration_ctx_t *ctx, struct job *j)
{
	int ctx_fd = ration_ctx_fd(ctx);

	if (!js->active)
		return 0;
	for (;;) {
		if (ration_ctx_err(ctx) != 0)
			return ration_ctx_err(ctx);
		if (take_implicit(js, j))
			return 0;
		unsigned char c;
		ssize_t n = read(js->rfd, &c, 1);
		if (n == 1) {
			j->token_held = true;
			j->token = c;
			return 0;
		}
		if (n == 0)
			return -EPIPE;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		/* Sleep until a token arrives, our own implicit slot comes
		 * free (wake_fd), or the run is halted (ctx_fd). */
		struct pollfd pfd[3] = {
			{.fd = js->rfd, .events = POLLIN},
			{.fd = js->wake_fd, .events = POLLIN},
			{.fd = ctx_fd, .events = POLLIN},
		};
		if (poll(pfd, ctx_fd >= 0 ? 3 : 2, -1) < 0 && errno != EINTR)
			return -errno;
		uint64_t v;
		if (pfd[1].revents & POLLIN)
			(void)!read(js->wake_fd, &v, sizeof(v));
	}
}

/* js_release() - see run.h: writes the very byte read back to make
 * (a token's value is make's to choose), or frees the implicit slot and wakes
 * js_acquire(). */
void
js_release(struct jobserver *js, struct job *j)
{
	if (j->token_held) {
		/* The token must go back whatever happens, or make's count
		 * shrinks for the rest of the build: retry on EINTR/EAGAIN. */
		for (int tries = 0; tries < 1000; tries++) {
			ssize_t n = write(js->wfd, &j->token, 1);
			if (n == 1 || (errno != EINTR && errno != EAGAIN))
				break;
			struct pollfd pfd = {.fd = js->wfd, .events = POLLOUT};
			poll(&pfd, 1, 10);
		}
		j->token_held = false;
	}
	if (j->js_implicit) {
		pthread_mutex_lock(&js->mu);
		js->implicit_busy = false;
		pthread_mutex_unlock(&js->mu);
		uint64_t one = 1;
		(void)!write(js->wake_fd, &one, sizeof(one));
		j->js_implicit = false;
	}
}

/* js_fini() - see run.h. */
void
js_fini(struct jobserver *js)
{
	if (js->rfd >= 0)
		close(js->rfd);
	if (js->wfd >= 0 && js->wfd != js->rfd)
		close(js->wfd);
	if (js->wake_fd >= 0)
		close(js->wake_fd);
	js->rfd = js->wfd = js->wake_fd = -1;
	js->active = false;
	pthread_mutex_destroy(&js->mu);
}
