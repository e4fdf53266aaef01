/* learn.c - weights learnt from measured peaks (ration/learn.h).
 *
 * The table is an array of (key, peak) sorted by key, so a lookup is a
 * binary search and the file comes out sorted. Records are rare next to
 * what they measure (one per finished task or job), so an insertion that
 * moves the tail of the array is fine.
 *
 * Reading is all or nothing: the file is read whole, every line checked,
 * and only a file that parses completely becomes a table. The writer ends
 * every file with "end\t<peak lines>", so a file cut short anywhere, even
 * at a line boundary, is told apart from a complete one.
 *
 * Locking: mu guards v, n, cap and margin; held for the whole of weight,
 * record and save (a save writes a consistent snapshot). path is set at
 * open and read-only afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/nowait.h"
#include "ration/learn.h"
#include "ration/sem.h"

#define HEADER        "# ration learn v1"
#define LEGACY_HEADER "# ration-run learn v1"
#define MARGIN_MAX    1000 /* percent; more is a typo, not a margin */

struct entry {
	char *key;
	int64_t peak_bytes;
};

struct ration_learn {
	pthread_mutex_t mu;
	char *path;      /* NULL: in memory only */
	struct entry *v; /* mu; sorted by key, keys unique */
	size_t n, cap;   /* mu */
	int64_t margin;  /* mu; percent */
};

/* Lower bound of @key in @l->v: its index if present, else where it goes. */
static size_t
lower_bound(const struct ration_learn *l, const char *key, bool *found)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->v[mid].key, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Insert (@key, @peak) at @at; the key is copied. Return: 0 or -ENOMEM.
 * gcc's -fanalyzer loses track of the copy once it is stored into the
 * table after the memmove and reports it leaked; clear() frees it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
static int
insert_at(struct ration_learn *l, size_t at, const char *key, size_t keylen,
	  int64_t peak)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		struct entry *nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	char *k = malloc(keylen + 1);
	if (k == NULL)
		return -ENOMEM;
	memcpy(k, key, keylen);
	k[keylen] = '\0';
	memmove(&l->v[at + 1], &l->v[at], (l->n - at) * sizeof(*l->v));
	l->v[at].key = k;
	l->v[at].peak_bytes = peak;
	l->n++;
	return 0;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* Free the entries of @l (not the table). */
static void
clear(struct ration_learn *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].key);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* A decimal number of 1 to 19 digits, nothing else, up to @max, from
 * [@s, @end). Return: 0 or -EPROTO. */
static int
parse_uint(const char *s, const char *end, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (s == end || end - s > 19)
		return -EPROTO;
	for (const char *p = s; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -EPROTO;
		int d = *p - '0';
		if (v > (max - d) / 10)
			return -EPROTO;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Add a "<peak>\t<key>" record of a file being read; the file lists keys
 * in any order, but each once. Return: 0, -EPROTO or -ENOMEM. */
static int
add_peak(struct ration_learn *l, const char *num, const char *num_end,
	 const char *key, const char *key_end)
{
	int64_t peak;
	bool found;

	if (parse_uint(num, num_end, RATION_SEM_MAX, &peak) < 0 || peak == 0 ||
	    key == key_end)
		return -EPROTO;
	/* lower_bound() compares NUL-terminated keys: the line's newline
	 * was replaced by one. */
	size_t at = lower_bound(l, key, &found);
	if (found)
		return -EPROTO;
	return insert_at(l, at, key, (size_t)(key_end - key), peak);
}

/* One line (NUL-terminated, no newline) of a current-format file after
 * its header. *@ended is set by the "end" line, which must be the last.
 * Return: 0, -EPROTO or -ENOMEM. */
static int
parse_record(struct ration_learn *l, char *line, bool *margin_seen, bool *ended)
{
	char *tab = strchr(line, '\t');
	char *eol = line + strlen(line);
	int64_t v;

	if (*ended)
		return -EPROTO;
	if (line[0] == '#')
		return 0;
	if (tab == NULL)
		return -EPROTO;
	if (tab - line == 4 && memcmp(line, "peak", 4) == 0) {
		char *key = strchr(tab + 1, '\t');
		if (key == NULL)
			return -EPROTO;
		return add_peak(l, tab + 1, key, key + 1, eol);
	}
	if (tab - line == 6 && memcmp(line, "margin", 6) == 0) {
		if (*margin_seen ||
		    parse_uint(tab + 1, eol, MARGIN_MAX, &v) < 0)
			return -EPROTO;
		l->margin = v;
		*margin_seen = true;
		return 0;
	}
	if (tab - line == 3 && memcmp(line, "end", 3) == 0) {
		if (parse_uint(tab + 1, eol, INT64_MAX, &v) < 0 ||
		    (uint64_t)v != l->n)
			return -EPROTO;
		*ended = true;
		return 0;
	}
	return -EPROTO;
}

/* One line of a file written by ration-run before this format:
 * "<bytes>\t<command>", comments and blank lines. */
static int
parse_legacy(struct ration_learn *l, char *line)
{
	char *tab = strchr(line, '\t');

	if (line[0] == '#' || line[0] == '\0')
		return 0;
	if (tab == NULL)
		return -EPROTO;
	return add_peak(l, line, tab, tab + 1, line + strlen(line));
}

/* Parse the whole file @buf of @len bytes into the empty table @l.
 * Return: 0, -EPROTO or -ENOMEM; on error @l may hold entries. */
static int
parse_file(struct ration_learn *l, char *buf, size_t len)
{
	bool legacy, margin_seen = false, ended = false;
	int rc = 0;

	/* Every line ends in a newline and no byte is NUL: anything else
	 * is binary, or a file cut short. */
	if (len == 0 || buf[len - 1] != '\n' || memchr(buf, '\0', len) != NULL)
		return -EPROTO;
	char *nl = memchr(buf, '\n', len);
	*nl = '\0';
	if (strcmp(buf, HEADER) == 0)
		legacy = false;
	else if (strcmp(buf, LEGACY_HEADER) == 0)
		legacy = true;
	else
		return -EPROTO;
	for (char *line = nl + 1; rc == 0 && line < buf + len; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(buf + len - line));
		*nl = '\0';
		rc = legacy ? parse_legacy(l, line)
			    : parse_record(l, line, &margin_seen, &ended);
	}
	if (rc == 0 && !legacy && !ended)
		rc = -EPROTO;
	return rc;
}

/* The whole of the open file @fd into a new buffer (*@out, *@len).
 * Return: 0, -ENOMEM or the read's -errno. */
static int
slurp(int fd, char **out, size_t *len)
{
	size_t n = 0, cap = 4096;
	char *buf = malloc(cap);

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			char *nb = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2)
						       : NULL;
			if (nb == NULL) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int err = errno;
			free(buf);
			return -err;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Fill the new table @l from @path; a missing file leaves it empty.
 * Return: 0 or a negative errno (see ration_learn_open). */
static int
load(struct ration_learn *l, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	int rc = slurp(fd, &buf, &len);
	close(fd);
	if (rc < 0)
		return rc;
	rc = parse_file(l, buf, len);
	free(buf);
	return rc;
}

/* ration_learn_open() - see ration/learn.h. */
int
ration_learn_open(const char *path, ration_learn_t **out)
{
	if (out == NULL)
		return -EINVAL;
	struct ration_learn *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->margin = RATION_LEARN_MARGIN_PERCENT;
	int rc = 0;
	if (path != NULL) {
		l->path = strdup(path);
		rc = l->path == NULL ? -ENOMEM : load(l, path);
	}
	if (rc == 0 && pthread_mutex_init(&l->mu, NULL) != 0)
		rc = -ENOMEM;
	if (rc < 0) {
		clear(l);
		free(l->path);
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

/* @peak plus @margin percent of it, rounded up, at most RATION_SEM_MAX. */
static int64_t
with_margin(int64_t peak, int64_t margin)
{
	int64_t q = peak / 100, rem = peak % 100;

	if (margin > 0 && q > (RATION_SEM_MAX - peak) / margin)
		return RATION_SEM_MAX;
	int64_t w = peak + q * margin + (rem * margin + 99) / 100;
	return w < RATION_SEM_MAX ? w : RATION_SEM_MAX;
}

/* ration_learn_weight() - see ration/learn.h. */
int64_t
ration_learn_weight(ration_learn_t *l, const char *key, int64_t fallback)
{
	int64_t w = fallback;
	bool found;

	if (l == NULL || key == NULL)
		return fallback;
	pthread_mutex_lock(&l->mu);
	size_t at = lower_bound(l, key, &found);
	if (found)
		w = with_margin(l->v[at].peak_bytes, l->margin);
	pthread_mutex_unlock(&l->mu);
	return w;
}

/* ration_learn_record() - see ration/learn.h. */
int
ration_learn_record(ration_learn_t *l, const char *key, int64_t peak_bytes)
{
	bool found;
	int rc = 0;

	if (l == NULL || key == NULL || key[0] == '\0' ||
	    strchr(key, '\n') != NULL || peak_bytes <= 0 ||
	    peak_bytes > RATION_SEM_MAX)
		return -EINVAL;
	pthread_mutex_lock(&l->mu);
	ration__nowait_begin(); /* insert_at allocates under l->mu */
	size_t at = lower_bound(l, key, &found);
	if (!found) {
		rc = insert_at(l, at, key, strlen(key), peak_bytes);
	} else if (peak_bytes >= l->v[at].peak_bytes) {
		l->v[at].peak_bytes = peak_bytes;
	} else {
		/* Halfway down, rounded up: see the header's record(). */
		int64_t old = l->v[at].peak_bytes;
		l->v[at].peak_bytes = old - (old - peak_bytes) / 2;
	}
	ration__nowait_end();
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* A growing text buffer for save(); @err sticks at the first -ENOMEM. */
struct text {
	char *buf;
	size_t len, cap;
	int err;
};

static void
text_add(struct text *t, const char *s, size_t n)
{
	if (t->err != 0)
		return;
	if (t->cap - t->len < n) {
		size_t ncap = t->cap ? t->cap : 4096;
		while (ncap - t->len < n)
			ncap *= 2;
		char *nb = realloc(t->buf, ncap);
		if (nb == NULL) {
			t->err = -ENOMEM;
			return;
		}
		t->buf = nb;
		t->cap = ncap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
}

static void
text_printf(struct text *t, const char *fmt, long long v)
{
	char num[64];
	int n = snprintf(num, sizeof(num), fmt, v);

	text_add(t, num, (size_t)n);
}

/* The file's text for @l (mu held) into @t. */
static void
render(const struct ration_learn *l, struct text *t)
{
	text_add(t, HEADER "\n", sizeof(HEADER));
	text_printf(t, "margin\t%lld\n", (long long)l->margin);
	for (size_t i = 0; i < l->n; i++) {
		text_printf(t, "peak\t%lld\t", (long long)l->v[i].peak_bytes);
		text_add(t, l->v[i].key, strlen(l->v[i].key));
		text_add(t, "\n", 1);
	}
	text_printf(t, "end\t%lld\n", (long long)l->n);
}

/* All of @buf to @fd. Return: 0 or -errno. */
static int
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* fsync the directory holding @path, so the rename itself is durable.
 * Best effort: some file systems refuse fsync on a directory, and the
 * new file is already in place. */
static void
sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash == NULL   ? strdup(".")
		    : slash == path ? strdup("/")
				    : strndup(path, (size_t)(slash - path));

	if (dir == NULL)
		return;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

/* Tells temporary files of concurrent saves in one process apart. */
static atomic_uint tmp_counter;

/* Write @t to a temp file beside @path, sync it, rename it over @path.
 * Return: 0 or -errno; on error the temp file is gone, @path untouched. */
static int
replace_file(const char *path, const struct text *t)
{
	size_t tlen = strlen(path) + 48;
	char *tmp = malloc(tlen);

	if (tmp == NULL)
		return -ENOMEM;
	snprintf(tmp, tlen, "%s.tmp.%ld.%u", path, (long)getpid(),
		 atomic_fetch_add_explicit(&tmp_counter, 1,
					   memory_order_relaxed));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0) {
		int err = -errno;
		free(tmp);
		return err;
	}
	int rc = write_all(fd, t->buf, t->len);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	else
		sync_dir(path);
	free(tmp);
	return rc;
}

/* ration_learn_save() - see ration/learn.h. */
int
ration_learn_save(ration_learn_t *l)
{
	struct text t = {0};

	if (l == NULL)
		return -EINVAL;
	if (l->path == NULL)
		return 0;
	pthread_mutex_lock(&l->mu);
	ration__nowait_begin(); /* render allocates under l->mu */
	render(l, &t);
	int rc = t.err != 0 ? t.err : replace_file(l->path, &t);
	ration__nowait_end();
	pthread_mutex_unlock(&l->mu);
	free(t.buf);
	return rc;
}

/* ration_learn_free() - see ration/learn.h. */
void
ration_learn_free(ration_learn_t *l)
{
	if (l == NULL)
		return;
	clear(l);
	pthread_mutex_destroy(&l->mu);
	free(l->path);
	free(l);
}
