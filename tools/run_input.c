/* tools/run_input.c - ration-run: where jobs come from.
 *
 * Two ways to give jobs, told apart by whether the command line has a
 * command (words after the options):
 *
 *   job lines      ration-run [--job-file FILE]        no command: each
 *                  record is a command for sh -c, "WEIGHT<TAB>" allowed
 *                  in front (ration-run's own format; GNU parallel runs
 *                  input lines as commands the same way)
 *   template       ration-run CMD... [::: ARGS | :::: FILES]...  [-a FILE]
 *                  each record is an argument put into CMD's replacement
 *                  strings (run_expand.c), as GNU parallel does
 *
 * Records are lines (-0: NUL-terminated strings) of stdin, of -a FILE and
 * :::: FILE, or the words after :::. Several sources combine as parallel
 * combines them: every combination, the first source varying slowest.
 * -N n puts n records of a single source into each job.
 */
#include "run.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One source's records, read whole. */
struct records {
	char **v;
	unsigned *line; /* 1-based record number in the source */
	size_t n, cap;
	const char *name; /* for messages */
};

static int
records_add(struct records *r, char *s, unsigned line)
{
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 64;
		char **nv = realloc(r->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		r->v = nv;
		unsigned *nl = realloc(r->line, ncap * sizeof(*nl));
		if (nl == NULL)
			return -ENOMEM;
		r->line = nl;
		r->cap = ncap;
	}
	r->v[r->n] = s;
	r->line[r->n++] = line;
	return 0;
}

static void
records_free(struct records *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	free(r->line);
}

/* Read @file ("-" or NULL = stdin) into @r: records end at a newline
 * (-0: a NUL), the last one may lack it. A newline-ended record with a
 * NUL in it is reported (a shell word cannot hold one). @job_lines:
 * a trailing CR is dropped too. Return: 0, or a negative errno after a
 * message. */
static int
read_records(const char *file, const struct input_spec *in, bool job_lines,
	     struct records *r)
{
	FILE *f = stdin;
	int sep = in->null_sep ? '\0' : '\n';
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0;
	int rc = 0;

	r->name = file == NULL || strcmp(file, "-") == 0 ? "stdin" : file;
	if (file != NULL && strcmp(file, "-") != 0) {
		f = fopen(file, "re");
		if (f == NULL) {
			int err = errno;
			fprintf(stderr, RUN_NAME ": cannot open '%s': %s\n",
				file, strerror(err));
			return -err;
		}
	}
	while ((len = getdelim(&line, &cap, sep, f)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == sep)
			line[--len] = '\0';
		if (job_lines && !in->null_sep)
			while (len > 0 && line[len - 1] == '\r')
				line[--len] = '\0';
		if (!in->null_sep && strlen(line) != (size_t)len) {
			fprintf(stderr,
				RUN_NAME ": %s: line %u: contains a "
					 "NUL byte\n",
				r->name, lineno);
			rc = -EINVAL;
			continue;
		}
		char *copy = strdup(line);
		if (copy == NULL || records_add(r, copy, lineno) < 0) {
			free(copy);
			rc = -ENOMEM;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, RUN_NAME ": %s: read error\n", r->name);
		rc = -EIO;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

/* The words of a ::: source as records. */
static int
word_records(const struct arg_source *s, struct records *r)
{
	r->name = "::: arguments";
	for (size_t i = 0; i < s->nwords; i++) {
		char *copy = strdup(s->words[i]);
		if (copy == NULL || records_add(r, copy, (unsigned)i + 1) < 0) {
			free(copy);
			return -ENOMEM;
		}
	}
	return 0;
}

/* blank() - whether @s is empty or only white space. */
static bool
blank(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return *s == '\0';
}

/* "4G echo hi": a weight, then a space where the TAB belongs. Run as is,
 * the shell would look for a program called 4G. */
static bool
weight_before_space(const char *text)
{
	size_t len = strcspn(text, " \t");

	return text[len] == ' ' && looks_like_weight(text, len);
}

/* A line is "WEIGHT<TAB>command" when the text before its first TAB
 * starts with a digit: that is never a useful shell command on its own,
 * so a typo there ("4X") is reported instead of being run as a program. */
static int
parse_line(char *text, const char *src, unsigned lineno, struct job *j)
{
	char *tab = strchr(text, '\t');
	char *cmd = text;

	j->line = lineno;
	j->weight = 0;
	j->wsrc = W_NONE;
	if (weight_before_space(text)) {
		fprintf(stderr,
			RUN_NAME ": %s: line %u: '%.*s' looks like a "
				 "weight: put a TAB between the weight and the "
				 "command\n",
			src, lineno, (int)strcspn(text, " "), text);
		return -EINVAL;
	}
	if (tab != NULL && isdigit((unsigned char)text[0])) {
		*tab = '\0';
		char *end = tab;
		while (end > text && isspace((unsigned char)end[-1]))
			*--end = '\0';
		int rc = parse_size(text, &j->weight);
		if (rc < 0) {
			fprintf(stderr,
				RUN_NAME
				": %s: line %u: cannot parse weight "
				"'%s' (expected e.g. 512M, 4G, 1.5G)\n",
				src, lineno, text);
			return rc;
		}
		j->wsrc = j->weight > 0 ? W_DECLARED : W_NONE;
		cmd = tab + 1;
		while (isspace((unsigned char)*cmd))
			cmd++;
		if (*cmd == '\0') {
			fprintf(stderr,
				RUN_NAME ": %s: line %u: empty command after "
					 "weight '%s'\n",
				src, lineno, text);
			return -EINVAL;
		}
	}
	j->cmd = strdup(cmd);
	return j->cmd == NULL ? -ENOMEM : 0;
}

/* make_job() - see run.h. */
int
make_job(const struct input_spec *in, char *const *args, size_t n,
	 const char *src, unsigned lineno, unsigned seq, struct job *j)
{
	int rc;

	if (in->command == NULL) {
		struct sbuf line = {0};
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				sbuf_add(&line, " ", 1);
			sbuf_add(&line, args[i], strlen(args[i]));
		}
		if (line.err != 0 || line.buf == NULL || blank(line.buf)) {
			free(line.buf);
			return line.err != 0 ? line.err : 1;
		}
		rc = parse_line(line.buf, src, lineno, j);
		free(line.buf);
	} else {
		j->line = lineno;
		rc = expand_command(in->command, args, n, seq, &j->cmd);
	}
	if (rc < 0 || in->weight_expr == NULL || j->wsrc == W_DECLARED)
		return rc;
	char why[256];
	rc = weight_eval(in->weight_expr, args, n, seq, false, &j->weight, why,
			 sizeof(why));
	if (rc < 0) {
		fprintf(stderr,
			RUN_NAME ": job %u (%s line %u): --weight "
				 "'%s': %s\n",
			seq, src, lineno, in->weight_expr, why);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	j->wsrc = j->weight > 0 ? W_DEFAULT : W_NONE;
	return 0;
}

/* Read every source of @in (stdin or the job file if none) into @recs
 * (*@nrecs of them). Return: 0 or a negative errno after a message. */
static int
read_sources(const struct input_spec *in, struct records **recs, size_t *nrecs)
{
	size_t n = in->nsrc > 0 ? in->nsrc : 1;
	struct records *r = calloc(n, sizeof(*r));
	int rc = 0;

	if (r == NULL)
		return -ENOMEM;
	*recs = r;
	*nrecs = n;
	if (in->nsrc == 0)
		return read_records(in->job_file, in, in->command == NULL, r);
	for (size_t i = 0; i < in->nsrc && rc != -ENOMEM; i++) {
		const struct arg_source *s = &in->src[i];
		int src_rc = s->file != NULL
				     ? read_records(s->file, in,
						    in->command == NULL, &r[i])
				     : word_records(s, &r[i]);
		if (src_rc < 0)
			rc = src_rc;
	}
	return rc;
}

/* job_new() - see run.h. */
struct job *
job_new(struct runner *r)
{
	size_t c = r->njobs / JOB_CHUNK;

	if (c >= JOB_CHUNKS_MAX)
		return NULL;
	if (r->jobs == NULL) {
		r->jobs = calloc(JOB_CHUNKS_MAX, sizeof(*r->jobs));
		if (r->jobs == NULL)
			return NULL;
	}
	if (r->jobs[c] == NULL) {
		/* Published to the supervisor by job_commit()'s lock. */
		r->jobs[c] = calloc(JOB_CHUNK, sizeof(struct job));
		if (r->jobs[c] == NULL)
			return NULL;
	}
	struct job *j = job_at(r, r->njobs);
	memset(j, 0, sizeof(*j));
	j->out_fd = j->err_fd = j->cg_fd = -1;
	return j;
}

/* job_commit() - see run.h. */
void
job_commit(struct runner *r)
{
	pthread_mutex_lock(&r->mu);
	r->njobs++;
	pthread_mutex_unlock(&r->mu);
}

/* jobs_seen() - see run.h. */
size_t
jobs_seen(struct runner *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->njobs;
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* job_weigh() - see run.h: the declared weight first, then what --learn
 * measured before (its peak plus the learn table's margin), then -w. */
void
job_weigh(struct runner *r, struct job *j)
{
	if (j->wsrc == W_DECLARED)
		return;
	int64_t learned = ration_learn_weight(r->learn, j->cmd, -1);
	if (learned > 0) {
		j->weight = learned;
		j->wsrc = W_LEARNED;
	} else if (r->o->default_weight > 0) {
		j->weight = r->o->default_weight;
		j->wsrc = W_DEFAULT;
	}
}

/* read_jobs() - see run.h. Every bad record is reported, not only the
 * first, so one run shows the user all of them. */
int
read_jobs(struct runner *r)
{
	const struct input_spec *in = &r->o->in;
	struct records *recs = NULL;
	size_t nrecs = 0;
	size_t per_job = in->max_args > 0 ? in->max_args : 1;
	unsigned seq = 0; /* numbers bad jobs too, for messages */

	/* The whole input is read before anything runs: a bad record then
	 * stops the run before any job has side effects, and the progress
	 * line knows the total for its ETA. */
	int rc = read_sources(in, &recs, &nrecs);
	size_t *idx = calloc(nrecs, sizeof(*idx));
	char **args = calloc(nrecs > per_job ? nrecs : per_job, sizeof(*args));
	bool more = rc == 0;
	if (idx == NULL || args == NULL)
		rc = -ENOMEM;
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].n == 0)
			more = false;
	/* An odometer over the sources, the last one turning fastest; with
	 * one source, -N records per turn. */
	while (more && rc != -ENOMEM) {
		size_t nargs = 0, first = idx[0];
		if (nrecs == 1) {
			while (nargs < per_job && idx[0] < recs[0].n)
				args[nargs++] = recs[0].v[idx[0]++];
			more = idx[0] < recs[0].n;
		} else {
			for (size_t i = 0; i < nrecs; i++)
				args[nargs++] = recs[i].v[idx[i]];
			size_t k = nrecs;
			while (k > 0 && ++idx[k - 1] == recs[k - 1].n)
				idx[--k] = 0;
			more = k > 0;
		}
		struct job *j = job_new(r);
		if (j == NULL) {
			rc = -ENOMEM;
			break;
		}
		int jrc = make_job(in, args, nargs, recs[0].name,
				   recs[0].line[first], seq + 1, j);
		if (jrc <= 0)
			seq++;
		if (jrc == 0) {
			j->seq = (unsigned)r->njobs + 1;
			job_weigh(r, j);
			job_commit(r);
		} else {
			free(j->cmd);
			if (jrc < 0)
				rc = jrc;
		}
	}
	free(idx);
	for (size_t i = 0; i < nrecs; i++)
		records_free(&recs[i]);
	free(recs);
	free(args);
	return rc;
}

/* free_jobs() - see run.h. */
void
free_jobs(struct runner *r)
{
	for (size_t i = 0; i < r->njobs; i++) {
		struct job *j = job_at(r, i);
		free(j->cmd);
		free(j->out_lb.buf);
		free(j->err_lb.buf);
	}
	for (size_t c = 0;
	     r->jobs != NULL && c < JOB_CHUNKS_MAX && r->jobs[c] != NULL; c++)
		free(r->jobs[c]);
	free(r->jobs);
	r->jobs = NULL;
	r->njobs = 0;
}

/* Grow @in's source list by one; NULL when out of memory. */
static struct arg_source *
add_source(struct input_spec *in)
{
	struct arg_source *ns = realloc(in->src, (in->nsrc + 1) * sizeof(*ns));

	if (ns == NULL)
		return NULL;
	in->src = ns;
	ns = &in->src[in->nsrc++];
	memset(ns, 0, sizeof(*ns));
	return ns;
}

/* input_add_file() - see run.h. */
int
input_add_file(struct input_spec *in, const char *file)
{
	struct arg_source *s = add_source(in);

	if (s == NULL)
		return -ENOMEM;
	s->file = file;
	return 0;
}

static bool
is_sep(const char *w)
{
	return strcmp(w, ":::") == 0 || strcmp(w, "::::") == 0;
}

/* input_parse_words() - see run.h. */
int
input_parse_words(struct input_spec *in, int argc, char **argv, char *why,
		  size_t whylen)
{
	int i = 0;
	struct sbuf cmd = {0};

	if (argc > 0 && !is_sep(argv[0]) &&
	    looks_like_weight(argv[0], strlen(argv[0]))) {
		snprintf(why, whylen,
			 "'%s' looks like a weight, not a command:"
			 " give it as -w %s",
			 argv[0], argv[0]);
		return -EINVAL;
	}
	for (; i < argc && !is_sep(argv[i]); i++) {
		if (strncmp(argv[i], ":::", 3) == 0 &&
		    strspn(argv[i], ":+") == strlen(argv[i])) {
			snprintf(why, whylen,
				 "'%s' is not supported (only ::: "
				 "and ::::)",
				 argv[i]);
			free(cmd.buf);
			return -EINVAL;
		}
		if (i > 0)
			sbuf_add(&cmd, " ", 1);
		sbuf_add(&cmd, argv[i], strlen(argv[i]));
	}
	if (cmd.err != 0)
		return cmd.err;
	in->command = cmd.buf;
	while (i < argc) {
		bool files = strcmp(argv[i], "::::") == 0;
		int start = ++i;
		while (i < argc && !is_sep(argv[i]))
			i++;
		if (!files) {
			struct arg_source *s = add_source(in);
			if (s == NULL)
				return -ENOMEM;
			s->words = argv + start;
			s->nwords = (size_t)(i - start);
			continue;
		}
		for (int k = start; k < i; k++)
			if (input_add_file(in, argv[k]) < 0)
				return -ENOMEM;
	}
	if (in->job_file != NULL && (in->command != NULL || in->nsrc > 0)) {
		snprintf(why, whylen,
			 "--job-file lines are whole commands: "
			 "with a command or an argument source, give arguments "
			 "with -a FILE or :::: FILE");
		return -EINVAL;
	}
	if (in->max_args > 1 && in->nsrc > 1) {
		snprintf(why, whylen,
			 "-N with more than one argument source "
			 "is not supported");
		return -EINVAL;
	}
	return 0;
}

/* input_free() - see run.h. */
void
input_free(struct input_spec *in)
{
	free(in->command);
	free(in->src);
	memset(in, 0, sizeof(*in));
}
