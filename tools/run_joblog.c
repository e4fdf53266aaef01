/* tools/run_joblog.c - ration-run: --joblog, --resume, --resume-failed.
 *
 * One line per finished attempt, flushed at once, in one of two formats:
 *   ration    Seq Start Runtime Exitval Signal Declared Measured Command
 *   parallel  Seq Host Starttime JobRuntime Send Receive Exitval Signal
 *             Command (GNU parallel's columns: Host ":", Send/Receive 0)
 * Seq is the job's position in the input, so it is the same in every run
 * over the same input: --resume skips the Seqs a log already has,
 * --resume-failed those whose last line says the job succeeded. A
 * resumed run appends to the log; any other run starts it afresh, as
 * parallel does. A newline in a command is written as a NUL, as parallel
 * writes it, so every attempt stays one line.
 *
 * Supervisor thread only, once jobs run; main() opens and filters.
 */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const header[] = {
	[JOBLOG_RATION] = "Seq\tStart\tRuntime\tExitval\tSignal\tDeclared\t"
			  "Measured\tCommand\n",
	[JOBLOG_PARALLEL] = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\t"
			    "Exitval\tSignal\tCommand\n",
};

/* The outcome of each Seq in an existing log (index Seq - 1). */
enum logged { NOT_LOGGED, LOGGED_OK, LOGGED_FAILED };

/* parse_joblog() - the lines of the log @f, in @fmt, into @seen (@n
 * entries, for Seq 1..@n; a later line of a Seq wins). A line that is
 * not a log line is reported and ends the reading: a resumed run must
 * not guess. Return: 0 or -EINVAL. */
static int
parse_joblog(FILE *f, const char *path, enum joblog_format fmt,
	     enum logged *seen, size_t n)
{
	int exit_col = fmt == JOBLOG_PARALLEL ? 6 : 3;
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 1;
	int rc = 0;

	while (rc == 0 && getline(&line, &cap, f) >= 0) {
		lineno++;
		char *field[8] = {0}, *p = line, *end;
		int k;
		for (k = 0; k < 8 && p != NULL; k++) {
			field[k] = p;
			p = strchr(p, '\t');
			if (p != NULL)
				*p++ = '\0';
		}
		errno = 0;
		unsigned long seq = strtoul(field[0], &end, 10);
		if (k <= exit_col + 1 || *end != '\0' || seq == 0 ||
		    errno != 0) {
			fprintf(stderr,
				RUN_NAME ": %s: line %u: not a joblog "
					 "line; cannot resume from it\n",
				path, lineno);
			rc = -EINVAL;
			break;
		}
		if (seq > n)
			continue;
		bool ok = strcmp(field[exit_col], "0") == 0 &&
			  strcmp(field[exit_col + 1], "0") == 0;
		seen[seq - 1] = ok ? LOGGED_OK : LOGGED_FAILED;
	}
	free(line);
	return rc;
}

/* drop_logged() - remove from r->jobs the jobs @seen says to skip,
 * keeping the others' order and Seq. */
static void
drop_logged(struct runner *r, const enum logged *seen, size_t n)
{
	size_t w = 0;

	for (size_t i = 0; i < r->njobs; i++) {
		struct job *j = job_at(r, i);
		enum logged l = j->seq <= n ? seen[j->seq - 1] : NOT_LOGGED;
		bool skip = l == LOGGED_OK ||
			    (l == LOGGED_FAILED && !r->o->resume_failed);
		if (skip) {
			free(j->cmd);
			r->resumed_skipped++;
			continue;
		}
		*job_at(r, w++) = *j;
	}
	r->njobs = w;
}

/* joblog_open() - see run.h. */
int
joblog_open(struct runner *r)
{
	const struct run_opts *o = r->o;
	bool resume = o->resume || o->resume_failed;
	size_t n = r->njobs > 0 ? job_at(r, r->njobs - 1)->seq : 0;

	if (o->joblog == NULL)
		return 0;
	FILE *f = resume ? fopen(o->joblog, "re") : NULL;
	if (f != NULL) {
		char *first = NULL;
		size_t cap = 0;
		int rc = 0;
		if (getline(&first, &cap, f) >= 0 &&
		    strcmp(first, header[o->joblog_format]) != 0) {
			fprintf(stderr,
				RUN_NAME ": %s: not a joblog in the "
					 "%s format (--joblog-format)\n",
				o->joblog,
				o->joblog_format == JOBLOG_PARALLEL ? "parallel"
								    : "ration");
			rc = -EINVAL;
		}
		free(first);
		enum logged *seen = calloc(n > 0 ? n : 1, sizeof(*seen));
		if (rc == 0 && seen == NULL)
			rc = -ENOMEM;
		if (rc == 0)
			rc = parse_joblog(f, o->joblog, o->joblog_format, seen,
					  n);
		fclose(f);
		if (rc == 0)
			drop_logged(r, seen, n);
		free(seen);
		if (rc < 0)
			return rc;
	}
	r->joblog = fopen(o->joblog, resume ? "ae" : "we");
	if (r->joblog == NULL) {
		int err = errno;
		fprintf(stderr, RUN_NAME ": cannot open --joblog file %s: %s\n",
			o->joblog, strerror(err));
		return -err;
	}
	if (fseek(r->joblog, 0, SEEK_END) == 0 && ftell(r->joblog) == 0)
		fputs(header[o->joblog_format], r->joblog);
	fflush(r->joblog);
	return 0;
}

/* joblog_line() - see run.h. */
void
joblog_line(struct runner *r, const struct job *j, double runtime, int exitval,
	    int sig)
{
	FILE *f = r->joblog;

	if (f == NULL)
		return;
	if (r->o->joblog_format == JOBLOG_PARALLEL)
		fprintf(f, "%u\t:\t%.3f\t%10.3f\t0\t0\t%d\t%d\t", j->seq,
			j->start_wall, runtime, exitval, sig);
	else
		fprintf(f, "%u\t%.6f\t%.6f\t%d\t%d\t%lld\t%lld\t", j->seq,
			j->start_wall, runtime, exitval, sig,
			(long long)j->weight,
			(long long)(j->peak_bytes < 0 ? 0 : j->peak_bytes));
	for (const char *c = j->cmd; *c != '\0'; c++)
		putc(*c == '\n' ? '\0' : *c, f);
	putc('\n', f);
	/* Line by line, so `tail -f` and a crash both see every job. */
	fflush(f);
}
