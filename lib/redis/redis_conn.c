/* redis_conn.c - URI parsing, connecting and EVALSHA for the Redis backend.
 * No shared state: every function works on the context it is given (the
 * caller serialises use of a context). */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "internal/clock.h"
#include "internal/nowait.h"
#include "redis_conn.h"

/* Copy @len bytes of @src into @dst, decoding %XX escapes (a password may
 * hold any byte, '@' and ':' among them). */
static int
copy_part(char *dst, size_t cap, const char *src, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++, o++) {
		if (o + 1 >= cap)
			return -EINVAL;
		char c = src[i];
		if (c == '%') {
			char hex[3] = {0};
			if (i + 2 >= len ||
			    !isxdigit((unsigned char)src[i + 1]) ||
			    !isxdigit((unsigned char)src[i + 2]))
				return -EINVAL;
			memcpy(hex, src + i + 1, 2);
			c = (char)strtol(hex, NULL, 16);
			if (c == '\0')
				return -EINVAL;
			i += 2;
		}
		dst[o] = c;
	}
	dst[o] = '\0';
	return 0;
}

int
ration__redis_parse_uri(const char *uri, struct redis_conf *cf)
{
	static const char scheme[] = "redis://";
	const char *p = uri;

	memset(cf->host, 0, sizeof(cf->host));
	cf->user[0] = cf->pass[0] = '\0';
	cf->port = 6379;
	cf->db = 0;
	if (strncmp(p, scheme, sizeof(scheme) - 1) != 0)
		return -EINVAL;
	p += sizeof(scheme) - 1;
	/* Host, port and db hold no '@': the last one ends the user info,
	 * so a password may contain '@' (or spell it %40). */
	const char *at = strrchr(p, '@');
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL)
			return -EINVAL; /* "user@" alone: a password is required */
		if (copy_part(cf->user, sizeof(cf->user), p,
			      (size_t)(colon - p)) != 0 ||
		    copy_part(cf->pass, sizeof(cf->pass), colon + 1,
			      (size_t)(at - colon - 1)) != 0)
			return -EINVAL;
		p = at + 1;
	}
	size_t hlen = strcspn(p, ":/");
	if (hlen == 0 || hlen >= sizeof(cf->host))
		return -EINVAL;
	memcpy(cf->host, p, hlen);
	p += hlen;
	char *end;
	if (*p == ':') {
		long port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535)
			return -EINVAL;
		cf->port = (int)port;
		p = end;
	}
	if (*p == '/') {
		if (p[1] != '\0') {
			long db = strtol(p + 1, &end, 10);
			if (end == p + 1 || *end != '\0' || db < 0 ||
			    db > 1000000)
				return -EINVAL;
			cf->db = (int)db;
		}
		return 0;
	}
	return *p == '\0' ? 0 : -EINVAL;
}

static struct timeval
to_tv(int64_t ns)
{
	if (ns < 1000000)
		ns = 1000000;
	struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000),
			     .tv_usec = (suseconds_t)(ns % 1000000000 / 1000)};
	return tv;
}

void
ration__redis_timeout(redisContext *c, int64_t ns)
{
	redisSetTimeout(c, to_tv(ns));
}

int
ration__redis_io_err(const redisContext *c)
{
	if (c == NULL)
		return -ENOMEM;
	if (c->err == REDIS_ERR_IO && errno == ECONNREFUSED)
		return -ECONNREFUSED;
	if (c->err == REDIS_ERR_IO && strstr(c->errstr, "refused") != NULL)
		return -ECONNREFUSED;
	if (c->err == REDIS_ERR_OOM)
		return -ENOMEM;
	return -EIO;
}

bool
ration__redis_gone(const redisContext *c)
{
	return c->err == REDIS_ERR_EOF ||
	       (c->err == REDIS_ERR_IO &&
		(strcmp(c->errstr, strerror(ECONNRESET)) == 0 ||
		 strcmp(c->errstr, strerror(EPIPE)) == 0));
}

/* hiredis writes with write(): a server that went away would raise SIGPIPE
 * and kill a process that never asked for sockets. So SIGPIPE is blocked
 * in this thread around each exchange, and one it raised is consumed
 * (unless it was pending already, i.e. someone else's). */
struct nopipe {
	sigset_t old;
	bool pending;
};

static void
nopipe_begin(struct nopipe *g)
{
	sigset_t pipe, pend;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	sigpending(&pend);
	g->pending = sigismember(&pend, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
	ration__nowait_begin(); /* hiredis allocates under the handle's lock */
}

static void
nopipe_end(struct nopipe *g)
{
	ration__nowait_end();
	sigset_t pipe, pend;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	if (!g->pending && sigpending(&pend) == 0 &&
	    sigismember(&pend, SIGPIPE)) {
		struct timespec zero = {0, 0};
		(void)sigtimedwait(&pipe, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

redisReply *
ration__redis_command(redisContext *c, int argc, const char **argv)
{
	struct nopipe g;
	nopipe_begin(&g);
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	nopipe_end(&g);
	return r;
}

/* Bound the next reply by @deadline_ns and io_timeout. -EIO once the
 * deadline has passed. */
static int
bound(redisContext *c, const struct redis_conf *cf, int64_t deadline_ns)
{
	int64_t left = deadline_ns - clock_mono_ns();
	if (left <= 0)
		return -EIO;
	ration__redis_timeout(c, left < cf->io_timeout_ns ? left
							  : cf->io_timeout_ns);
	return 0;
}

/* Whether @r is the error a server gives while it loads its data. */
static bool
loading(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	       strncmp(r->str, "LOADING", 7) == 0;
}

/* One command whose reply must be a status "OK". */
static int
expect_ok(redisContext *c, const struct redis_conf *cf, int64_t deadline_ns,
	  int argc, const char **argv)
{
	int rc = bound(c, cf, deadline_ns);
	if (rc != 0)
		return rc;
	redisReply *r = ration__redis_command(c, argc, argv);
	if (r == NULL)
		return ration__redis_io_err(c);
	rc = r->type == REDIS_REPLY_STATUS ? 0 : loading(r) ? -EAGAIN : -EPROTO;
	freeReplyObject(r);
	return rc;
}

int
ration__redis_connect(const struct redis_conf *cf, int64_t deadline_ns,
		      redisContext **out)
{
	int64_t left = deadline_ns - clock_mono_ns();
	if (left > cf->connect_timeout_ns)
		left = cf->connect_timeout_ns;
	if (left <= 0)
		return -EIO;
	/* hiredis 0.14 (Debian 12) has no redisOptions: connect with a
	 * timeout, then bound each reply with redisSetTimeout(). */
	ration__nowait_begin(); /* callers may hold the handle's lock */
	redisContext *c =
		redisConnectWithTimeout(cf->host, cf->port, to_tv(left));
	ration__nowait_end();
	if (c == NULL)
		return -ENOMEM;
	if (c->err) {
		int rc = ration__redis_io_err(c);
		redisFree(c);
		return rc;
	}
	/* AUTH and SELECT are bounded by the caller's deadline too: a server
	 * that accepts but does not answer (stopped) must not hold the call. */
	int rc = 0;
	if (cf->pass[0] != '\0') {
		const char *a3[] = {"AUTH", cf->user, cf->pass};
		const char *a2[] = {"AUTH", cf->pass};
		rc = cf->user[0] != '\0' ? expect_ok(c, cf, deadline_ns, 3, a3)
					 : expect_ok(c, cf, deadline_ns, 2, a2);
	}
	if (rc == 0 && cf->db != 0) {
		char db[16];
		snprintf(db, sizeof(db), "%d", cf->db);
		const char *a[] = {"SELECT", db};
		rc = expect_ok(c, cf, deadline_ns, 2, a);
	}
	if (rc != 0) {
		redisFree(c);
		return rc;
	}
	ration__redis_timeout(c, cf->io_timeout_ns);
	*out = c;
	return 0;
}

static int
load(redisContext *c, char shas[RS_COUNT][41])
{
	for (int i = 0; i < RS_COUNT; i++)
		if (redisAppendCommand(c, "SCRIPT LOAD %s",
				       ration__redis_script[i]) != REDIS_OK)
			return ration__redis_io_err(c);
	int rc = 0;
	for (int i = 0; i < RS_COUNT; i++) {
		void *v = NULL;
		if (redisGetReply(c, &v) != REDIS_OK)
			return ration__redis_io_err(c);
		redisReply *r = v;
		if (r->type == REDIS_REPLY_STRING && r->len == 40)
			memcpy(shas[i], r->str, 41);
		else if (rc == 0) /* read on: the connection stays in step */
			rc = loading(r) ? -EAGAIN : -EPROTO;
		freeReplyObject(r);
	}
	return rc;
}

int
ration__redis_load(redisContext *c, const struct redis_conf *cf,
		   int64_t deadline_ns, char shas[RS_COUNT][41])
{
	int rc = bound(c, cf, deadline_ns);
	if (rc != 0)
		return rc;
	struct nopipe g;
	nopipe_begin(&g);
	rc = load(c, shas);
	nopipe_end(&g);
	return rc;
}

int
ration__redis_eval(redisContext *c, const struct redis_conf *cf,
		   int64_t deadline_ns, char shas[RS_COUNT][41],
		   enum redis_script script, const char *key, int nargs,
		   const char *const *args, redisReply **out)
{
	const char *argv[16];
	if (nargs > 12)
		return -EINVAL;
	argv[0] = "EVALSHA";
	argv[1] = shas[script];
	argv[2] = "1";
	argv[3] = key;
	for (int i = 0; i < nargs; i++)
		argv[4 + i] = args[i];
	for (int attempt = 0;; attempt++) {
		int rc = bound(c, cf, deadline_ns);
		if (rc != 0)
			return rc;
		redisReply *r = ration__redis_command(c, 4 + nargs, argv);
		if (r == NULL)
			return ration__redis_io_err(c);
		if (r->type == REDIS_REPLY_ERROR && attempt == 0 &&
		    strncmp(r->str, "NOSCRIPT", 8) == 0) {
			/* SCRIPT FLUSH, or a server that restarted under us. */
			freeReplyObject(r);
			if ((rc = ration__redis_load(c, cf, deadline_ns,
						     shas)) != 0)
				return rc;
			continue;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 5) {
			rc = loading(r) ? -EAGAIN : -EPROTO;
			freeReplyObject(r);
			return rc;
		}
		*out = r;
		return 0;
	}
}
