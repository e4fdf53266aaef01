/* tools/run_parse.c - ration-run: sizes, durations, --halt, the job list.
 *
 * Every parser returns 0 or a negative errno and writes *out only on
 * success, so a caller can report the original text in its message.
 */
#include "run.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Splits "1.5G" into the number and the rest; the number is digits with
 * at most one dot, so strtod never sees hex, inf, nan or a sign. */
static int
parse_number(const char *s, double *val, const char **rest)
{
	const char *p = s;
	int digits = 0, dots = 0;

	while (isdigit((unsigned char)*p) || *p == '.') {
		if (*p == '.')
			dots++;
		else
			digits++;
		p++;
	}
	if (digits == 0 || dots > 1)
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end != p || !isfinite(v))
		return -EINVAL;
	*val = v;
	*rest = p;
	return 0;
}

/* parse_size() - see run.h. */
int
parse_size(const char *s, int64_t *out)
{
	double v;
	const char *u;

	if (parse_number(s, &v, &u) < 0)
		return -EINVAL;
	/* Binary units, as free(1) and the kernel count; "4G", "4GB" and
	 * "4GiB" are the same thing, since nobody means 4*10^9 here. */
	double mult = 1;
	const char *p = u;
	switch (toupper((unsigned char)*p)) {
	case 'K': mult = 1024.0; break;
	case 'M': mult = 1024.0 * 1024; break;
	case 'G': mult = 1024.0 * 1024 * 1024; break;
	case 'T': mult = 1024.0 * 1024 * 1024 * 1024; break;
	default: break;
	}
	if (mult > 1) {
		p++;
		if (*p == 'i' || *p == 'I')
			p++;
	}
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p != '\0')
		return -EINVAL;
	double bytes = ceil(v * mult);
	if (bytes > (double)RATION_SEM_MAX)
		return -ERANGE;
	*out = (int64_t)bytes;
	return 0;
}

/* parse_duration() - see run.h. */
int
parse_duration(const char *s, int64_t *out_ns)
{
	double v;
	const char *u;

	if (parse_number(s, &v, &u) < 0)
		return -EINVAL;
	double mult;
	if (strcmp(u, "") == 0 || strcmp(u, "s") == 0)
		mult = 1e9;
	else if (strcmp(u, "ms") == 0)
		mult = 1e6;
	else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
		mult = 60e9;
	else if (strcmp(u, "h") == 0)
		mult = 3600e9;
	else if (strcmp(u, "d") == 0)
		mult = 86400e9;
	else
		return -EINVAL;
	double ns = v * mult;
	if (ns <= 0)
		return -EINVAL;
	if (ns > 9e18)
		return -ERANGE;
	*out_ns = (int64_t)ns;
	return 0;
}

/* "never" | [now|soon,](fail|success)=N[%] | N (= now,fail=N). */
int
parse_halt(const char *s, struct halt_spec *out)
{
	struct halt_spec h = { .when = HALT_NOW, .n = 1 };
	const char *p = s;

	if (strcmp(s, "never") == 0 || strcmp(s, "0") == 0) {
		*out = (struct halt_spec){ .when = HALT_NEVER };
		return 0;
	}
	if (strncmp(p, "now,", 4) == 0) {
		p += 4;
	} else if (strncmp(p, "soon,", 5) == 0) {
		h.when = HALT_SOON;
		p += 5;
	}
	if (strncmp(p, "fail=", 5) == 0) {
		p += 5;
	} else if (strncmp(p, "success=", 8) == 0) {
		h.on_success = true;
		p += 8;
	} else if (p != s) {
		return -EINVAL;
	}
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	unsigned long n = strtoul(p, &end, 10);
	if (errno != 0 || n == 0 || n > 1000000000UL)
		return -EINVAL;
	if (*end == '%') {
		if (n > 100)
			return -EINVAL;
		h.percent = true;
		end++;
	}
	if (*end != '\0')
		return -EINVAL;
	h.n = (unsigned)n;
	*out = h;
	return 0;
}

/* mem_available_bytes() - see run.h. */
int64_t
mem_available_bytes(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	int64_t kib = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "MemAvailable:", 13) == 0) {
			char *end;
			long long v = strtoll(line + 13, &end, 10);
			if (end != line + 13 && v >= 0)
				kib = v;
			break;
		}
	}
	fclose(f);
	return kib < 0 ? -1 : kib * 1024;
}

/* default_slots() - see run.h. */
int64_t
default_slots(void)
{
	cpu_set_t set;
	long n = 0;

	/* nproc(1) counts the affinity mask, not the online CPUs: under
	 * taskset or a container's cpuset, that is what we may use. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n < 1)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n;
}

/* SIZE, N% of MemAvailable, or 0/none for no memory budget. */
int
parse_budget(const char *s, int64_t *out)
{
	size_t len = strlen(s);

	if (strcmp(s, "none") == 0) {
		*out = 0;
		return 0;
	}
	if (len > 1 && s[len - 1] == '%') {
		char num[32];
		double v;
		const char *rest;
		if (len >= sizeof(num))
			return -EINVAL;
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		if (parse_number(num, &v, &rest) < 0 || *rest != '\0' ||
		    v <= 0 || v > 100)
			return -EINVAL;
		int64_t avail = mem_available_bytes();
		if (avail <= 0)
			return -ENOENT;
		*out = (int64_t)((double)avail * v / 100.0);
		return *out > 0 ? 0 : -EINVAL;
	}
	return parse_size(s, out);
}

/* format_size() - see run.h. */
void
format_size(int64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTP";
	double v = (double)bytes;
	int u = 0;

	if (bytes < 0) {
		snprintf(buf, len, "?");
		return;
	}
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lldB", (long long)bytes);
	else if (v >= 100.0 || v == floor(v))
		snprintf(buf, len, "%.0f%c", v, units[u]);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
}

/* blank() - whether @s is empty or only white space. */
static bool
blank(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return *s == '\0';
}

/* looks_like_weight() - whether the first @len bytes of @s are a size
 * ("4G", "512M", "100"): as a program name that is always a mistake. */
bool
looks_like_weight(const char *s, size_t len)
{
	char word[32];
	int64_t v;

	if (len == 0 || len >= sizeof(word) || !isdigit((unsigned char)s[0]))
		return false;
	memcpy(word, s, len);
	word[len] = '\0';
	return parse_size(word, &v) == 0;
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
		fprintf(stderr, RUN_NAME ": %s: line %u: '%.*s' looks like a "
			"weight: put a TAB between the weight and the command\n",
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
				RUN_NAME ": %s: line %u: cannot parse weight "
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
				"weight '%s'\n", src, lineno, text);
			return -EINVAL;
		}
	}
	j->cmd = strdup(cmd);
	return j->cmd == NULL ? -ENOMEM : 0;
}

/* read_jobs() - see run.h. Every bad line is reported, not only the
 * first, so one run shows the user all of them. */
int
read_jobs(const struct run_opts *o, struct job **out, size_t *count)
{
	const char *src = o->arg_file != NULL ? o->arg_file : "stdin";
	FILE *f = stdin;

	if (o->arg_file != NULL && strcmp(o->arg_file, "-") != 0) {
		f = fopen(o->arg_file, "re");
		if (f == NULL) {
			int err = errno;
			fprintf(stderr, RUN_NAME ": cannot open job file '%s': "
				"%s\n", o->arg_file, strerror(err));
			return -err;
		}
	}

	struct job *jobs = NULL;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t len;
	unsigned lineno = 0;
	int rc = 0;

	/* The whole list is read before anything runs: a bad line then
	 * stops the run before any job has side effects, and the progress
	 * line knows the total for its ETA. */
	while ((len = getline(&line, &linecap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' ||
				   line[len - 1] == '\r'))
			line[--len] = '\0';
		if (strlen(line) != (size_t)len) {
			fprintf(stderr, RUN_NAME ": %s: line %u: contains a "
				"NUL byte\n", src, lineno);
			rc = -EINVAL;
			continue;
		}
		if (blank(line))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct job *nj = realloc(jobs, ncap * sizeof(*nj));
			if (nj == NULL) {
				rc = -ENOMEM;
				break;
			}
			jobs = nj;
			cap = ncap;
		}
		struct job *j = &jobs[n];
		memset(j, 0, sizeof(*j));
		j->out_fd = j->err_fd = j->cg_fd = -1;
		int lrc = parse_line(line, src, lineno, j);
		if (lrc == -ENOMEM) {
			rc = lrc;
			break;
		}
		if (lrc < 0) {
			rc = lrc;
			continue;
		}
		j->seq = (unsigned)(n + 1);
		n++;
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, RUN_NAME ": %s: read error\n", src);
		rc = -EIO;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	if (rc < 0) {
		free_jobs(jobs, n);
		return rc;
	}
	*out = jobs;
	*count = n;
	return 0;
}

/* free_jobs() - see run.h. */
void
free_jobs(struct job *jobs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(jobs[i].cmd);
		free(jobs[i].out_lb.buf);
		free(jobs[i].err_lb.buf);
	}
	free(jobs);
}
