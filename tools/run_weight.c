/* tools/run_weight.c - ration-run: --weight expressions.
 *
 *     ration-run --weight '8*size({})' xz -9 ::: *.tar
 *     ration-run --weight 'max(64M, 3*size({1}) + 100M)' ...
 *
 * A weight computed from each job's arguments. The grammar, on numbers
 * that are bytes (double precision, rounded up at the end):
 *
 *   expr   := term   { ('+' | '-') term }
 *   term   := factor { ('*' | '/') factor }
 *   factor := SIZE                 512M, 1.5G, 100 (as -m, binary units)
 *           | size(TEXT)           bytes of the file TEXT names, after
 *                                  replacement strings ({}, {1}, {.}, ...)
 *           | {...}                a replacement string whose text is a
 *                                  SIZE ("4G" in an argument)
 *           | max(expr, ...)  | min(expr, ...)  | ( expr )
 *
 * White space between tokens is ignored. A result below 0, above the
 * semaphore maximum, a division by 0, or a size() of something that is
 * not a readable regular file is an error for that job: the run stops
 * before anything starts, naming the job (a missing weight would let the
 * job run unaccounted, which is what the budget is there to prevent).
 */
#include "run.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct eval {
	const char *p; /* next character */
	char *const *args;
	size_t nargs;
	unsigned seq;
	bool check; /* syntax only: no files, no arguments */
	int err;    /* first error; why says what */
	char *why;
	size_t whylen;
};

static double expr(struct eval *e);

static void
fail(struct eval *e, int err, const char *fmt, ...)
{
	va_list ap;

	if (e->err != 0)
		return;
	e->err = err;
	va_start(ap, fmt);
	vsnprintf(e->why, e->whylen, fmt, ap);
	va_end(ap);
}

static void
skip_space(struct eval *e)
{
	while (isspace((unsigned char)*e->p))
		e->p++;
}

/* Consume @c (after white space) if it is next. */
static bool
accept(struct eval *e, char c)
{
	skip_space(e);
	if (*e->p != c)
		return false;
	e->p++;
	return true;
}

/* Expand [@s, @s+@n) with the job's arguments, unquoted, into a new
 * string (NULL on error, e->err set). */
static char *
expand_text(struct eval *e, const char *s, size_t n)
{
	struct sbuf b = {0};
	bool replaced;

	expand(s, n, e->args, e->nargs, e->seq, false, &b, &replaced);
	if (b.err != 0) {
		fail(e, b.err, "out of memory");
		free(b.buf);
		return NULL;
	}
	return b.buf != NULL ? b.buf : strdup("");
}

/* size(TEXT): the argument runs to the ')' that closes it. */
static double
file_size(struct eval *e)
{
	const char *start = e->p;
	int depth = 0;

	while (*e->p != '\0' && (*e->p != ')' || depth > 0)) {
		depth += *e->p == '(' ? 1 : *e->p == ')' ? -1 : 0;
		e->p++;
	}
	if (*e->p != ')') {
		fail(e, -EINVAL, "size( without its )");
		return 0;
	}
	const char *end = e->p++;
	if (e->check)
		return 1;
	char *path = expand_text(e, start, (size_t)(end - start));
	if (path == NULL)
		return 0;
	struct stat st;
	if (stat(path, &st) != 0)
		fail(e, -errno, "size(%s): %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		fail(e, -EINVAL, "size(%s): not a regular file", path);
	free(path);
	return e->err == 0 ? (double)st.st_size : 0;
}

/* A SIZE, or a replacement string whose text is one. */
static double
size_value(struct eval *e)
{
	const char *start = e->p;
	int64_t v;

	if (*e->p == '{') {
		const char *close = strchr(e->p, '}');
		if (close == NULL) {
			fail(e, -EINVAL, "'{' without its '}'");
			return 0;
		}
		e->p = close + 1;
		if (e->check)
			return 1;
		char *text = expand_text(e, start, (size_t)(e->p - start));
		if (text == NULL)
			return 0;
		if (parse_size(text, &v) < 0)
			fail(e, -EINVAL, "'%s' (from %.*s) is not a size", text,
			     (int)(e->p - start), start);
		free(text);
		return e->err == 0 ? (double)v : 0;
	}
	while (isalnum((unsigned char)*e->p) || *e->p == '.')
		e->p++;
	char word[32];
	size_t n = (size_t)(e->p - start);
	if (n == 0 || n >= sizeof(word)) {
		fail(e, -EINVAL,
		     "expected a size, size(FILE), {...}, max(), "
		     "min() or ( at '%s'",
		     start);
		return 0;
	}
	memcpy(word, start, n);
	word[n] = '\0';
	if (parse_size(word, &v) < 0) {
		fail(e, -EINVAL, "'%s' is not a size", word);
		return 0;
	}
	return (double)v;
}

/* max(a, b, ...) / min(...), after the name and its '('. */
static double
extreme(struct eval *e, bool want_max)
{
	double v = expr(e);

	while (e->err == 0 && accept(e, ',')) {
		double w = expr(e);
		v = want_max ? fmax(v, w) : fmin(v, w);
	}
	if (e->err == 0 && !accept(e, ')'))
		fail(e, -EINVAL, "expected ',' or ')' at '%s'", e->p);
	return v;
}

static double
factor(struct eval *e)
{
	skip_space(e);
	if (accept(e, '(')) {
		double v = expr(e);
		if (e->err == 0 && !accept(e, ')'))
			fail(e, -EINVAL, "expected ')' at '%s'", e->p);
		return v;
	}
	if (strncmp(e->p, "size(", 5) == 0) {
		e->p += 5;
		return file_size(e);
	}
	if (strncmp(e->p, "max(", 4) == 0 || strncmp(e->p, "min(", 4) == 0) {
		bool want_max = e->p[1] == 'a';
		e->p += 4;
		return extreme(e, want_max);
	}
	return size_value(e);
}

static double
term(struct eval *e)
{
	double v = factor(e);

	while (e->err == 0) {
		if (accept(e, '*')) {
			v *= factor(e);
		} else if (accept(e, '/')) {
			double d = factor(e);
			if (d == 0 && e->err == 0)
				fail(e, -EINVAL, "division by 0");
			v = d != 0 ? v / d : 0;
		} else {
			break;
		}
	}
	return v;
}

static double
expr(struct eval *e)
{
	double v = term(e);

	while (e->err == 0) {
		if (accept(e, '+'))
			v += term(e);
		else if (accept(e, '-'))
			v -= term(e);
		else
			break;
	}
	return v;
}

/* weight_is_expr() - see run.h. */
bool
weight_is_expr(const char *s)
{
	int64_t v;

	return parse_size(s, &v) < 0;
}

/* weight_eval() - see run.h. */
int
weight_eval(const char *text, char *const *args, size_t nargs, unsigned seq,
	    bool check, int64_t *out, char *why, size_t whylen)
{
	struct eval e = {.p = text,
			 .args = args,
			 .nargs = nargs,
			 .seq = seq,
			 .check = check,
			 .why = why,
			 .whylen = whylen};

	double v = expr(&e);
	skip_space(&e);
	if (e.err == 0 && *e.p != '\0')
		fail(&e, -EINVAL, "unexpected '%s'", e.p);
	if (e.err == 0 && !(v >= 0))
		fail(&e, -ERANGE, "negative weight %.0f", v);
	if (e.err == 0 && ceil(v) > (double)RATION_SEM_MAX)
		fail(&e, -ERANGE, "weight %.0f is too large", v);
	if (e.err != 0)
		return e.err;
	*out = (int64_t)ceil(v);
	return 0;
}
