/* tools/run_stream.c - ration-run: input read as it arrives.
 *
 *     tail -f queue.txt | ration-run -m 8G xz -9
 *
 * When stdin is the only source and it is a pipe or a terminal, jobs
 * start as lines arrive, as GNU parallel starts them, instead of after
 * the end of the input. The dispatcher asks for the next job when it has
 * none left (stream_more()); the read waits in poll() on stdin and on the
 * dispatch ctx's fd, so a halt or a signal ends the wait at once.
 *
 * A bad record then cannot stop the run before anything started: it stops
 * the input there (no later job starts), the running jobs finish, and the
 * run exits 64. A regular file, --dry-run and --resume still read the
 * whole input first (run_input.c), keeping that guarantee.
 *
 * Dispatcher thread only (and main, to open and close).
 */
#include "run.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct stream {
	char *buf; /* bytes read, not yet a record */
	size_t len, cap;
	bool eof;
	unsigned lineno; /* records taken */
	unsigned seq;    /* jobs made, bad ones included */
	char **args;     /* -N records of the job being made */
	unsigned *args_line;
	size_t nargs, per_job;
};

/* stream_open() - see run.h. */
int
stream_open(struct runner *r)
{
	const struct run_opts *o = r->o;
	const struct input_spec *in = &o->in;
	struct stat st;

	bool stdin_only = (in->nsrc == 0 && in->job_file == NULL) ||
			  (in->nsrc == 1 && in->src[0].file != NULL &&
			   strcmp(in->src[0].file, "-") == 0);
	if (!stdin_only || o->dry_run || o->resume || o->resume_failed ||
	    fstat(STDIN_FILENO, &st) != 0 || S_ISREG(st.st_mode))
		return 0;
	struct stream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->per_job = in->max_args > 0 ? in->max_args : 1;
	s->args = calloc(s->per_job, sizeof(*s->args));
	s->args_line = calloc(s->per_job, sizeof(*s->args_line));
	if (s->args == NULL || s->args_line == NULL) {
		free(s->args);
		free(s->args_line);
		free(s);
		return -ENOMEM;
	}
	r->stream = s;
	return 0;
}

/* Read more of stdin into the buffer, waiting for it but not past the
 * dispatch ctx. Return: 1 read, 0 ctx done, -errno. */
static int
fill(struct runner *r, struct stream *s)
{
	if (s->cap - s->len < 4096) {
		size_t ncap = s->cap ? s->cap * 2 : 65536;
		char *nb = realloc(s->buf, ncap);
		if (nb == NULL)
			return -ENOMEM;
		s->buf = nb;
		s->cap = ncap;
	}
	int cfd = ration_ctx_fd(r->dispatch_ctx);
	struct pollfd pfd[2] = {
		{.fd = STDIN_FILENO, .events = POLLIN},
		{.fd = cfd, .events = POLLIN},
	};
	for (;;) {
		if (ration_ctx_err(r->dispatch_ctx) != 0)
			return 0;
		if (poll(pfd, cfd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents != 0)
			return 0;
		if (pfd[0].revents == 0)
			continue;
		ssize_t got = read(STDIN_FILENO, s->buf + s->len,
				   s->cap - s->len - 1);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			s->eof = true;
		s->len += (size_t)got;
		return 1;
	}
}

/* The next record into a new string (*@out). Return: 1, 0 at the end of
 * input or ctx done, -EINVAL (a NUL in a line; reported), -errno. */
static int
next_record(struct runner *r, struct stream *s, char **out)
{
	const struct input_spec *in = &r->o->in;
	char sep = in->null_sep ? '\0' : '\n';

	for (;;) {
		char *end = s->len > 0 ? memchr(s->buf, sep, s->len) : NULL;
		size_t len = end != NULL ? (size_t)(end - s->buf) : s->len;
		if (end != NULL || (s->eof && s->len > 0)) {
			size_t used = end != NULL ? len + 1 : len;
			s->lineno++;
			if (in->command == NULL && !in->null_sep)
				while (len > 0 && s->buf[len - 1] == '\r')
					len--;
			bool nul = !in->null_sep &&
				   memchr(s->buf, '\0', len) != NULL;
			char *rec = nul ? NULL : strndup(s->buf, len);
			memmove(s->buf, s->buf + used, s->len - used);
			s->len -= used;
			if (nul) {
				fprintf(stderr,
					RUN_NAME ": stdin: line %u: "
						 "contains a NUL byte\n",
					s->lineno);
				return -EINVAL;
			}
			if (rec == NULL)
				return -ENOMEM;
			*out = rec;
			return 1;
		}
		if (s->eof)
			return 0;
		int rc = fill(r, s);
		if (rc <= 0)
			return rc;
	}
}

static void
drop_args(struct stream *s)
{
	for (size_t i = 0; i < s->nargs; i++)
		free(s->args[i]);
	s->nargs = 0;
}

/* stream_more() - see run.h. */
int
stream_more(struct runner *r)
{
	struct stream *s = r->stream;

	while (!r->input_failed) {
		char *rec = NULL;
		int rc = 0;
		while (s->nargs < s->per_job &&
		       (rc = next_record(r, s, &rec)) == 1) {
			s->args_line[s->nargs] = s->lineno;
			s->args[s->nargs++] = rec;
		}
		if (rc < 0 && rc != -EINVAL)
			fprintf(stderr, RUN_NAME ": stdin: %s\n",
				strerror(-rc));
		if (rc < 0 || s->nargs == 0) {
			r->input_failed = rc < 0;
			drop_args(s);
			return rc < 0 ? -EINVAL : 0;
		}
		struct job *j = job_new(r);
		if (j == NULL)
			rc = -ENOMEM;
		else
			rc = make_job(&r->o->in, s->args, s->nargs, "stdin",
				      s->args_line[0], s->seq + 1, j);
		drop_args(s);
		if (rc <= 0)
			s->seq++;
		if (rc == 0) {
			j->seq = (unsigned)r->njobs + 1;
			job_weigh(r, j);
			job_commit(r);
			return 1;
		}
		if (rc < 0) {
			free(j != NULL ? j->cmd : NULL);
			r->input_failed = true;
			fprintf(stderr,
				RUN_NAME ": bad input: starting no more "
					 "jobs\n");
			return -EINVAL;
		}
	}
	return 0;
}

/* stream_close() - see run.h. */
void
stream_close(struct runner *r)
{
	struct stream *s = r->stream;

	if (s == NULL)
		return;
	drop_args(s);
	free(s->args);
	free(s->args_line);
	free(s->buf);
	free(s);
	r->stream = NULL;
}
