/* tools/run_expand.c - ration-run: GNU parallel's replacement strings.
 *
 * A command template is the command words joined by spaces, as parallel
 * joins them. These are replaced, as parallel (20221122) defines them:
 *
 *   {}    the argument(s)          {.}   without its extension
 *   {/}   basename                 {//}  dirname (Perl File::Basename)
 *   {/.}  basename, no extension   {#}   the job's sequence number
 *   {N}, {N.}, {N/}, {N//}, {N/.}  the same for the Nth argument only
 *
 * Each value is shell-quoted as parallel quotes it (no quotes when only
 * [-_.+a-zA-Z0-9/] occur, else '...' with ' as '"'"'), so a file called
 * "a b" or "x;rm -rf ~" is one word. With several arguments (-N, several
 * sources) {} is all of them, each quoted, joined by spaces; {N} past the
 * last argument is empty. A template with no replacement string gets the
 * arguments appended, as parallel does. Anything else between braces is
 * copied as is.
 *
 * --weight expressions (weight_eval()) use the same strings, unquoted.
 */
#include "run.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* sbuf_add() - append @n bytes of @s to @b; on failure @b->err = -ENOMEM. */
void
sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->err != 0)
		return;
	if (b->cap - b->len <= n) {
		size_t ncap = b->cap ? b->cap : 64;
		while (ncap - b->len <= n)
			ncap *= 2;
		char *nb = realloc(b->buf, ncap);
		if (nb == NULL) {
			b->err = -ENOMEM;
			return;
		}
		b->buf = nb;
		b->cap = ncap;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

/* Shell-quote @s (@n bytes) onto @b as parallel's shell_quote_scalar. */
static void
add_quoted(struct sbuf *b, const char *s, size_t n)
{
	bool plain = n > 0;

	for (size_t i = 0; i < n && plain; i++) {
		unsigned char c = (unsigned char)s[i];
		plain = (c < 128 && isalnum(c)) ||
			(c != '\0' && strchr("-_.+/", c) != NULL);
	}
	if (plain) {
		sbuf_add(b, s, n);
		return;
	}
	/* '...' around it, each ' as '"'"'; parallel then drops the ''
	 * this leaves at either end ('x' -> "'"'"'x' not ''"'"'x'). */
	struct sbuf q = {0};
	sbuf_add(&q, "'", 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\'')
			sbuf_add(&q, "'\"'\"'", 5);
		else
			sbuf_add(&q, &s[i], 1);
	}
	sbuf_add(&q, "'", 1);
	if (q.err != 0) {
		b->err = q.err;
		free(q.buf);
		return;
	}
	const char *p = q.buf;
	size_t len = q.len;
	if (len > 2 && memcmp(p, "''", 2) == 0) {
		p += 2;
		len -= 2;
	}
	if (len > 2 && memcmp(p + len - 2, "''", 2) == 0)
		len -= 2;
	sbuf_add(b, p, len);
	free(q.buf);
}

/* Perl's s:\.[^/.]*$:: - cut at the last dot if no slash follows it. */
static size_t
cut_ext(const char *s, size_t n)
{
	for (size_t i = n; i > 0; i--) {
		if (s[i - 1] == '/')
			return n;
		if (s[i - 1] == '.')
			return i - 1;
	}
	return n;
}

/* Perl's s:.*[/]:: without /s: the first line that has a slash loses
 * everything up to its last slash. Writes the result to @b. */
static void
add_basename(struct sbuf *b, const char *s, size_t n, bool noext)
{
	size_t start = 0, cut = 0;
	bool found = false;

	while (start <= n && !found) {
		const char *nl = memchr(s + start, '\n', n - start);
		size_t end = nl != NULL ? (size_t)(nl - s) : n;
		for (size_t i = start; i < end; i++)
			if (s[i] == '/') {
				cut = i + 1;
				found = true;
			}
		if (!found)
			start = end + 1;
	}
	if (!found) {
		sbuf_add(b, s, noext ? cut_ext(s, n) : n);
		return;
	}
	/* Kept: the lines before the match, then what follows the slash. */
	struct sbuf t = {0};
	sbuf_add(&t, s, start);
	sbuf_add(&t, s + cut, n - cut);
	if (t.err == 0)
		sbuf_add(b, t.buf, noext ? cut_ext(t.buf, t.len) : t.len);
	else
		b->err = t.err;
	free(t.buf);
}

/* Perl File::Basename::fileparse: split after the last slash; no slash
 * gives the directory "./". */
static void
fileparse(const char *s, size_t n, const char **dir, size_t *dlen, size_t *blen)
{
	const char *slash = NULL;

	for (size_t i = 0; i < n; i++)
		if (s[i] == '/')
			slash = s + i;
	if (slash == NULL) {
		*dir = "./";
		*dlen = 2;
		*blen = n;
	} else {
		*dir = s;
		*dlen = (size_t)(slash - s) + 1;
		*blen = n - *dlen;
	}
}

/* Trailing slashes off, but never the first character. */
static size_t
strip_seps(const char *s, size_t n)
{
	while (n > 1 && s[n - 1] == '/')
		n--;
	return n;
}

/* Perl File::Basename::dirname on Unix. */
static void
add_dirname(struct sbuf *b, const char *s, size_t n)
{
	const char *dir;
	size_t dlen, blen;

	fileparse(s, n, &dir, &dlen, &blen);
	dlen = strip_seps(dir, dlen);
	if (blen == 0) {
		fileparse(dir, dlen, &dir, &dlen, &blen);
		dlen = strip_seps(dir, dlen);
	}
	sbuf_add(b, dir, dlen);
}

enum mod { MOD_NONE, MOD_EXT, MOD_BASE, MOD_DIR, MOD_BASE_EXT };

/* One argument through @mod onto @b, quoted if @quote. */
static void
add_arg(struct sbuf *b, const char *arg, enum mod mod, bool quote)
{
	struct sbuf v = {0};
	size_t n = strlen(arg);

	switch (mod) {
	case MOD_NONE:
		sbuf_add(&v, arg, n);
		break;
	case MOD_EXT:
		sbuf_add(&v, arg, cut_ext(arg, n));
		break;
	case MOD_BASE:
		add_basename(&v, arg, n, false);
		break;
	case MOD_BASE_EXT:
		add_basename(&v, arg, n, true);
		break;
	case MOD_DIR:
		add_dirname(&v, arg, n);
		break;
	}
	if (v.err != 0)
		b->err = v.err;
	else if (quote)
		add_quoted(b, v.buf != NULL ? v.buf : "", v.len);
	else
		sbuf_add(b, v.buf != NULL ? v.buf : "", v.len);
	free(v.buf);
}

/* A replacement string at @p ('{'): its length, 0 if none. *@pos is the
 * argument number (0 = all), *@mod the modifier, *@seq set for {#}. */
static size_t
match_rpl(const char *p, unsigned long *pos, enum mod *mod, bool *seq)
{
	static const struct {
		const char *s;
		enum mod m;
	} mods[] = {
		{"}", MOD_NONE},  {".}", MOD_EXT},       {"/}", MOD_BASE},
		{"//}", MOD_DIR}, {"/.}", MOD_BASE_EXT},
	};
	const char *q = p + 1;

	*seq = false;
	*pos = 0;
	if (strncmp(q, "#}", 2) == 0) {
		*seq = true;
		return 3;
	}
	if (isdigit((unsigned char)*q)) {
		char *end;
		errno = 0;
		*pos = strtoul(q, &end, 10);
		if (*pos == 0 || errno != 0)
			return 0;
		q = end;
	}
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		size_t l = strlen(mods[i].s);
		if (strncmp(q, mods[i].s, l) == 0) {
			*mod = mods[i].m;
			return (size_t)(q - p) + l;
		}
	}
	return 0;
}

/* expand() - see run.h. */
void
expand(const char *tmpl, size_t tlen, char *const *args, size_t nargs,
       unsigned seq, bool quote, struct sbuf *out, bool *replaced)
{
	const char *p = tmpl, *end = tmpl + tlen;

	*replaced = false;
	while (p < end) {
		const char *brace = memchr(p, '{', (size_t)(end - p));
		if (brace == NULL) {
			sbuf_add(out, p, (size_t)(end - p));
			break;
		}
		sbuf_add(out, p, (size_t)(brace - p));
		unsigned long pos;
		enum mod mod = MOD_NONE;
		bool is_seq;
		size_t len = match_rpl(brace, &pos, &mod, &is_seq);
		if (len == 0 || brace + len > end) {
			sbuf_add(out, "{", 1);
			p = brace + 1;
			continue;
		}
		*replaced = true;
		if (is_seq) {
			char num[16];
			int n = snprintf(num, sizeof(num), "%u", seq);
			sbuf_add(out, num, (size_t)n);
		} else if (pos > 0) {
			if (pos <= nargs)
				add_arg(out, args[pos - 1], mod, quote);
		} else {
			for (size_t i = 0; i < nargs; i++) {
				if (i > 0)
					sbuf_add(out, " ", 1);
				add_arg(out, args[i], mod, quote);
			}
		}
		p = brace + len;
	}
}

/* expand_command() - see run.h. */
int
expand_command(const char *tmpl, char *const *args, size_t nargs, unsigned seq,
	       char **out)
{
	struct sbuf b = {0};
	bool replaced;

	expand(tmpl, strlen(tmpl), args, nargs, seq, true, &b, &replaced);
	if (!replaced) {
		for (size_t i = 0; i < nargs; i++) {
			sbuf_add(&b, " ", 1);
			add_arg(&b, args[i], MOD_NONE, true);
		}
	}
	if (b.err != 0) {
		free(b.buf);
		return b.err;
	}
	*out = b.buf != NULL ? b.buf : strdup("");
	return *out != NULL ? 0 : -ENOMEM;
}
