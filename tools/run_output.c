/* tools/run_output.c - ration-run: job output capture and pass-through,
 * the progress line.
 *
 * By default each job writes into two unlinked temp files; when it ends,
 * the supervisor copies them whole to our stdout and stderr, so outputs of
 * jobs never interleave and a chatty job never blocks on a full pipe.
 * --line-buffer uses pipes instead and passes complete lines as they come.
 * Only the supervisor thread writes to stdout/stderr once jobs run, so no
 * lock is needed to keep lines whole.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tmpfile_fd() - an unlinked temp file in $TMPDIR or /tmp.
 * Return: the fd, or a negative errno. */
static int
tmpfile_fd(void)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	if (dir == NULL || dir[0] == '\0')
		dir = "/tmp";
	/* O_TMPFILE: never visible in the directory, gone when closed. */
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	char path[4096];
	snprintf(path, sizeof(path), "%s/ration-run.XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* Makes j->out_fd/err_fd (ours) and child_fds (to dup2 onto 1 and 2 in
 * the child; for pipes, the caller closes them after the spawn). */
int
out_open(struct runner *r, struct job *j, int child_fds[2])
{
	if (r->o->line_buffer) {
		int po[2], pe[2];
		if (pipe2(po, O_CLOEXEC) < 0)
			return -errno;
		if (pipe2(pe, O_CLOEXEC) < 0) {
			int err = -errno;
			close(po[0]);
			close(po[1]);
			return err;
		}
		fcntl(po[0], F_SETFL, O_NONBLOCK);
		fcntl(pe[0], F_SETFL, O_NONBLOCK);
		j->out_fd = po[0];
		j->err_fd = pe[0];
		child_fds[0] = po[1];
		child_fds[1] = pe[1];
		return 0;
	}
	j->out_fd = tmpfile_fd();
	if (j->out_fd < 0)
		return j->out_fd;
	j->err_fd = tmpfile_fd();
	if (j->err_fd < 0) {
		int err = j->err_fd;
		close(j->out_fd);
		j->out_fd = -1;
		return err;
	}
	child_fds[0] = j->out_fd;
	child_fds[1] = j->err_fd;
	return 0;
}

/* out_write() - see run.h. Only the supervisor writes, so lines
 * stay whole without a lock. */
void
out_write(struct runner *r, int fd, const char *buf, size_t len)
{
	if (fd == STDOUT_FILENO && r->stdout_broken)
		return;
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* A closed stdout (| head) is the reader's choice, not
			 * a failure of the jobs: stop copying, keep running. */
			if (fd == STDOUT_FILENO)
				r->stdout_broken = true;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* lb_reserve() - room for @more bytes in @lb. Return: 0 or -ENOMEM. */
static int
lb_reserve(struct linebuf *lb, size_t more)
{
	if (lb->buf != NULL && lb->len + more <= lb->cap)
		return 0;
	size_t ncap = lb->cap ? lb->cap : 4096;
	while (ncap < lb->len + more)
		ncap *= 2;
	char *nb = realloc(lb->buf, ncap);
	if (nb == NULL)
		return -ENOMEM;
	lb->buf = nb;
	lb->cap = ncap;
	return 0;
}

/* Writes @len bytes of one job's stream, each line prefixed by the tag when
 * --tag is on. *bol says whether we stand at the start of a line. */
static void
emit(struct runner *r, const struct job *j, int to_fd, const char *buf,
     size_t len, bool *bol)
{
	if (!r->o->tag) {
		out_write(r, to_fd, buf, len);
		return;
	}
	char prefix[64];
	int plen = snprintf(prefix, sizeof(prefix), "%u\t", j->seq);
	size_t clen = strlen(j->cmd);
	struct linebuf out = {0};
	while (len > 0) {
		const char *nl = memchr(buf, '\n', len);
		size_t take = nl != NULL ? (size_t)(nl - buf) + 1 : len;
		if (lb_reserve(&out, (size_t)plen + clen + 1 + take) < 0)
			break;
		if (*bol) {
			memcpy(out.buf + out.len, prefix, (size_t)plen);
			memcpy(out.buf + out.len + plen, j->cmd, clen);
			out.buf[out.len + (size_t)plen + clen] = '\t';
			out.len += (size_t)plen + clen + 1;
		}
		memcpy(out.buf + out.len, buf, take);
		out.len += take;
		*bol = nl != NULL;
		buf += take;
		len -= take;
	}
	out_write(r, to_fd, out.buf, out.len);
	free(out.buf);
}

/* copy_file() - copy job @j's captured output @from to @to_fd,
 * tagged with --tag; ends an unterminated last line when tagging. */
static void
copy_file(struct runner *r, const struct job *j, int from, int to_fd)
{
	char buf[65536];
	bool bol = true;
	ssize_t n;

	if (lseek(from, 0, SEEK_SET) < 0)
		return;
	while ((n = read(from, buf, sizeof(buf))) > 0)
		emit(r, j, to_fd, buf, (size_t)n, &bol);
	/* An unterminated last line would glue the next job's first line
	 * (and its tag) onto it. */
	if (!bol && r->o->tag)
		out_write(r, to_fd, "\n", 1);
}

/* --line-buffer: read what is there; pass on complete lines, or
 * everything when @eof. */
void
out_pump(struct runner *r, struct job *j, int *fd, struct linebuf *lb,
	 int to_fd, bool eof)
{
	char buf[65536];
	ssize_t n = -1;

	if (*fd < 0 && lb->len == 0)
		return;
	while (*fd >= 0 && (n = read(*fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* EAGAIN: all there is for now */
		}
		if (lb_reserve(lb, (size_t)n) < 0)
			break;
		memcpy(lb->buf + lb->len, buf, (size_t)n);
		lb->len += (size_t)n;
	}
	if (*fd >= 0 && n == 0) {
		/* EOF: the job closed it. Closing ours keeps poll from
		 * reporting the hang-up again and again. */
		close(*fd);
		*fd = -1;
		eof = true;
	}
	size_t upto = lb->len;
	if (!eof) {
		while (upto > 0 && lb->buf[upto - 1] != '\n')
			upto--;
	}
	if (upto == 0)
		return;
	if (to_fd == STDERR_FILENO)
		progress_clear(r);
	bool bol = true;
	emit(r, j, to_fd, lb->buf, upto, &bol);
	if (!bol && r->o->tag)
		out_write(r, to_fd, "\n", 1);
	memmove(lb->buf, lb->buf + upto, lb->len - upto);
	lb->len -= upto;
}

/* The job has been reaped: pass on what is left and close its files. */
void
out_finish(struct runner *r, struct job *j)
{
	if (r->o->line_buffer) {
		out_pump(r, j, &j->out_fd, &j->out_lb, STDOUT_FILENO, true);
		out_pump(r, j, &j->err_fd, &j->err_lb, STDERR_FILENO, true);
	} else {
		if (j->out_fd >= 0)
			copy_file(r, j, j->out_fd, STDOUT_FILENO);
		if (j->err_fd >= 0) {
			progress_clear(r);
			copy_file(r, j, j->err_fd, STDERR_FILENO);
		}
	}
	if (j->out_fd >= 0)
		close(j->out_fd);
	if (j->err_fd >= 0)
		close(j->err_fd);
	j->out_fd = j->err_fd = -1;
}

static bool progress_shown;

/* progress_clear() - see run.h. */
void
progress_clear(struct runner *r)
{
	if (r->progress_tty && progress_shown) {
		out_write(r, STDERR_FILENO, "\r\033[K", 4);
		progress_shown = false;
	}
}

/* format_eta() - @ns as "42s", "3m05s" or "2h10m". */
static void
format_eta(int64_t ns, char *buf, size_t len)
{
	long long s = (long long)(ns / 1000000000);

	if (s >= 3600)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
}

/* progress_draw() - see run.h. On a terminal the line is redrawn in
 * place ("\r\033[K"); otherwise one line per second. */
void
progress_draw(struct runner *r, bool final)
{
	char line[256], eta[32] = "?";

	if (!r->o->progress)
		return;
	pthread_mutex_lock(&r->mu);
	size_t dispatched = r->dispatched;
	bool ddone = r->dispatch_done;
	size_t njobs = r->njobs; /* grows while input streams */
	pthread_mutex_unlock(&r->mu);
	size_t queued = ddone ? 0 : njobs - dispatched;
	int64_t elapsed = ration_now() - r->t0_ns;
	if (r->done > 0) {
		size_t left = njobs - r->done;
		format_eta(elapsed / (int64_t)r->done * (int64_t)left, eta,
			   sizeof(eta));
	}
	if (final)
		format_eta(elapsed, eta, sizeof(eta));
	int n = snprintf(line, sizeof(line), "%s%s: %zu/%zu done",
			 r->progress_tty ? "\r\033[K" : "", RUN_NAME, r->done,
			 njobs);
	if (r->failed > 0)
		n += snprintf(line + n, sizeof(line) - (size_t)n,
			      " (%zu failed)", r->failed);
	n += snprintf(line + n, sizeof(line) - (size_t)n,
		      ", %zu running, %zu queued", r->running, queued);
	if (r->budget != NULL) {
		char used[16], total[16];
		format_size(r->o->budget_bytes -
				    ration_sem_available(r->budget),
			    used, sizeof(used));
		format_size(r->o->budget_bytes, total, sizeof(total));
		n += snprintf(line + n, sizeof(line) - (size_t)n,
			      " | mem %s/%s", used, total);
	}
	n += snprintf(line + n, sizeof(line) - (size_t)n, " | %s %s",
		      final ? "took" : "ETA", eta);
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	if (final || !r->progress_tty)
		line[n++] = '\n';
	out_write(r, STDERR_FILENO, line, (size_t)n);
	progress_shown = r->progress_tty && !final;
}
