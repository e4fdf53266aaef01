/* tools/run_learn.c - ration-run --learn: measured peaks of earlier runs.
 *
 * The state file is text, one command a line: "<peak bytes>\t<command>",
 * after a "# ration-run learn v1" header. A job with no declared weight
 * whose command is in the file gets its last measured peak as its weight.
 * The file is rewritten whole at the end of a run (write + rename, so a
 * crash leaves the old file), keeping commands this run did not see.
 * Supervisor-only after load; no locking.
 */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEARN_HEADER "# ration-run learn v1\n"

/* cmp_entry() - qsort/bsearch order of entries: by command. */
static int
cmp_entry(const void *a, const void *b)
{
	const struct learn_entry *x = a, *y = b;

	return strcmp(x->cmd, y->cmd);
}

/* find() - the entry of @cmd in @l, or NULL. */
static struct learn_entry *
find(const struct learn *l, const char *cmd)
{
	struct learn_entry key = { .cmd = (char *)cmd };

	if (l->n == 0)
		return NULL;
	return bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_entry);
}

/* append() - add (@cmd, @peak_bytes) at the end of @l, unsorted.
 * Return: 0 or -ENOMEM. */
static int
append(struct learn *l, const char *cmd, int64_t peak_bytes)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 32;
		struct learn_entry *nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n].cmd = strdup(cmd);
	if (l->v[l->n].cmd == NULL)
		return -ENOMEM;
	l->v[l->n].peak_bytes = peak_bytes;
	l->n++;
	return 0;
}

/* A missing file is an empty history, not an error: the first run with
 * --learn creates it. A malformed line is skipped with a warning. */
int
learn_load(struct learn *l, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0;
	int rc = 0;

	memset(l, 0, sizeof(*l));
	if (f == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *end;
		long long peak = strtoll(line, &end, 10);
		if (end == line || *end != '\t' || peak <= 0 ||
		    end[1] == '\0') {
			fprintf(stderr, RUN_NAME ": warning: %s: line %u: "
				"not '<bytes>\\t<command>', ignored\n", path,
				lineno);
			continue;
		}
		rc = append(l, end + 1, peak);
		if (rc < 0)
			break;
	}
	free(line);
	fclose(f);
	if (l->n > 1) {
		qsort(l->v, l->n, sizeof(*l->v), cmp_entry);
		/* Keep the last of duplicates out of a hand-edited file. */
		size_t w = 0;
		for (size_t i = 0; i < l->n; i++) {
			if (w > 0 && strcmp(l->v[w - 1].cmd, l->v[i].cmd) == 0) {
				free(l->v[w - 1].cmd);
				l->v[w - 1] = l->v[i];
				continue;
			}
			l->v[w++] = l->v[i];
		}
		l->n = w;
	}
	return rc;
}

/* learn_lookup() - see run.h. */
int64_t
learn_lookup(const struct learn *l, const char *cmd)
{
	const struct learn_entry *e = find(l, cmd);

	return e != NULL ? e->peak_bytes : 0;
}

/* Keeps the array sorted, so lookups stay O(log n); records are rare
 * (one per finished job) next to the cost of a process. */
int
learn_record(struct learn *l, const char *cmd, int64_t peak_bytes)
{
	struct learn_entry *e = find(l, cmd);

	if (peak_bytes <= 0)
		return 0;
	if (e != NULL) {
		e->peak_bytes = peak_bytes;
		return 0;
	}
	int rc = append(l, cmd, peak_bytes);
	if (rc < 0)
		return rc;
	struct learn_entry added = l->v[l->n - 1];
	size_t i = l->n - 1;
	while (i > 0 && strcmp(l->v[i - 1].cmd, added.cmd) > 0) {
		l->v[i] = l->v[i - 1];
		i--;
	}
	l->v[i] = added;
	return 0;
}

/* learn_save() - see run.h: a header line, then "<bytes>\t<cmd>"
 * per entry, sorted. */
int
learn_save(const struct learn *l, const char *path)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	int rc = 0;

	if (tmp == NULL)
		return -ENOMEM;
	snprintf(tmp, plen + 16, "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "we");
	if (f == NULL) {
		rc = -errno;
		free(tmp);
		return rc;
	}
	fputs(LEARN_HEADER, f);
	for (size_t i = 0; i < l->n; i++)
		fprintf(f, "%lld\t%s\n", (long long)l->v[i].peak_bytes,
			l->v[i].cmd);
	if (fflush(f) != 0 || ferror(f))
		rc = -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* learn_free() - see run.h. */
void
learn_free(struct learn *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].cmd);
	free(l->v);
	memset(l, 0, sizeof(*l));
}
