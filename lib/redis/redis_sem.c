/* redis_sem.c - ration_sem_t over a Redis server (ration/redis.h).
 *
 * The server holds the truth (redis_scripts.c, docs/redis.md): each
 * operation is one Lua script, run atomically, that first expires stale
 * sessions by the server's TIME and then grants from the head of the FIFO
 * queue while the head fits. A handle is one session (a random id): the
 * server counts the weight each session holds; a session not renewed for
 * lease_ns is reclaimed with everything it held and queued.
 *
 * The handle (struct remote) is in redis_sem.h; a queued caller's
 * wait is in redis_wait.c.
 *
 * Locking: r->mu guards the main connection and every local counter below
 * it in struct remote; it is held across a main-connection round trip (one
 * script). Waiters block on wait connections of their own (BLPOP on their
 * ticket's wake list, in slices of at most SLICE_NS so a cancel is seen) and
 * take mu only to book their outcome. No other lock is taken under mu.
 *
 * What the handle believes (held) and what the server counts for the
 * session can part when a reply is lost (connection broken after the
 * server ran the script). Then `unsure` is set, and the next call made when
 * no caller of this handle is queued runs the sync script, which drops the
 * session's queue places and gives back what it holds beyond `held`. A
 * waiter that cannot leave its ticket leaves it as an orphan, left by the
 * next call or by the renewer. A session the server lost (expired, or the
 * server lost its data) comes back with a new incarnation: `held` moves to
 * `stale`, and releases of it answer -ESTALE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/sem.h"
#include "ration/redis.h"
#include "redis_sem.h"

static int64_t
num(const redisReply *e)
{
	if (e->type == REDIS_REPLY_INTEGER)
		return e->integer;
	if (e->type == REDIS_REPLY_STRING)
		return strtoll(e->str, NULL, 10);
	return 0;
}

static int
code_err(int code)
{
	switch (code) {
	case RC_CLOSED: return -EPIPE;
	case RC_TOOBIG: return -E2BIG;
	case RC_AGAIN: return -EAGAIN;
	case RC_OVERFLOW: return -EOVERFLOW;
	case RC_STALE: return -ESTALE;
	case RC_NOENT: return -ENOENT;
	default: return -EPROTO;
	}
}

static void
conn_down(struct remote *r)
{
	redisFree(r->c);
	r->c = NULL;
}

/* Make sure the main connection is up (mu held). */
static int
conn_up(struct remote *r, int64_t deadline_ns)
{
	if (r->c != NULL)
		return 0;
	int rc = ration__redis_connect(&r->cf, deadline_ns, &r->c);
	if (rc == 0 && (rc = ration__redis_load(r->c, r->shas)) != 0)
		conn_down(r);
	return rc;
}

/* A reply's incarnation differs from ours: the server lost our session
 * (reclaimed it, or lost its data) and what we held went with it. */
void
ration__redis_note_inc(struct remote *r, int64_t inc)
{
	if (inc == 0 || inc == r->inc)
		return;
	if (r->inc != 0 && inc > r->inc) {
		r->stale += r->held;
		r->held = 0;
		r->gen++;
	}
	if (inc > r->inc)
		r->inc = inc;
}

/* Run @script (mu held) with our session unless !with_sid. On 0 the
 * reply's code, size and a are in @out; @keep receives the raw reply. */
static int
call_raw(struct remote *r, enum redis_script script, bool with_sid, int64_t deadline_ns,
	 int nx, const char *const *x, struct reply *out, redisReply **keep)
{
	int rc = conn_up(r, deadline_ns);
	if (rc != 0)
		return rc;
	char size[24], fence[24];
	snprintf(size, sizeof(size), "%lld", (long long)r->size);
	snprintf(fence, sizeof(fence), "%llu", (unsigned long long)r->fence);
	const char *args[12] = {with_sid ? r->sid : "", r->lease_us, size, fence};
	for (int i = 0; i < nx; i++)
		args[4 + i] = x[i];
	int64_t left = deadline_ns - clock_mono_ns();
	ration__redis_timeout(r->c, left < r->cf.io_timeout_ns ? left : r->cf.io_timeout_ns);
	redisReply *rep;
	rc = ration__redis_eval(r->c, r->shas, script, r->key, 4 + nx, args, &rep);
	if (rc != 0) {
		if (rc != -EPROTO)
			conn_down(r); /* a late reply would put us out of step */
		return rc;
	}
	out->code = (int)num(rep->element[0]);
	out->size = num(rep->element[2]);
	out->a = num(rep->element[3]);
	if (out->code != RC_NOENT && out->size > 0)
		r->size = out->size;
	if (with_sid)
		ration__redis_note_inc(r, num(rep->element[1]));
	if (keep != NULL)
		*keep = rep;
	else
		freeReplyObject(rep);
	return 0;
}

int
ration__redis_call(struct remote *r, enum redis_script script, int64_t deadline_ns, int nx,
     const char *const *x, struct reply *out)
{
	return call_raw(r, script, true, deadline_ns, nx, x, out, NULL);
}

/* Settle what earlier failures left open (mu held): leave orphaned
 * tickets; when none of our callers is queued, sync held with the server. */
void
ration__redis_repair(struct remote *r, int64_t deadline_ns)
{
	struct reply rp;
	while (r->norphan > 0) {
		char tk[24];
		snprintf(tk, sizeof(tk), "%llu", (unsigned long long)r->orphan[r->norphan - 1]);
		const char *x[] = {tk, "o"};
		if (ration__redis_call(r, RS_LEAVE, deadline_ns, 2, x, &rp) != 0)
			return;
		r->norphan--;
	}
	if (r->unsure && r->waiting == 0) {
		char held[24];
		snprintf(held, sizeof(held), "%lld", (long long)r->held);
		const char *x[] = {held};
		if (ration__redis_call(r, RS_SYNC, deadline_ns, 1, x, &rp) != 0)
			return;
		if (rp.a < r->held) { /* released after all, or lost */
			r->stale += r->held - rp.a;
			r->held = rp.a;
		}
		r->unsure = false;
	}
}

/* How long a reply to a call made for a caller with @deadline_ns may take:
 * up to LEAVE_NS past the deadline (as a BLPOP's may), and io_timeout (in
 * call_raw). A round trip that merely straddles the deadline is read, not
 * taken for a failure: a reply dropped there leaves the server's outcome
 * (a ticket queued, or weight granted) unknown to the handle. */
static int64_t
reply_deadline(int64_t deadline_ns)
{
	int64_t now = clock_mono_ns();
	return ns_add_sat(deadline_ns > now ? deadline_ns : now, LEAVE_NS);
}

void
ration__redis_granted(struct remote *r, uint64_t fence, int64_t n, ration_lease_t *out)
{
	r->held += n;
	if (fence > r->fence)
		r->fence = fence;
	if (out != NULL)
		*out = (ration_lease_t){.n = n, .fence = fence,
					.expires_ns = ns_add_sat(clock_mono_ns(), r->lease_ns)};
}

/* Take @n or queue for it (mu held). Return 0 (granted), 1 (queued as
 * *tk, counted in waiting) or an error. */
int
ration__redis_enqueue(struct remote *r, int64_t deadline_ns, const char *ns, int64_t n, bool lease,
	uint64_t *tk, ration_lease_t *out)
{
	struct reply rp;
	const char *x[] = {ns, "0", lease ? "1" : "0"};
	r->waiting++; /* before the script: sync must not drop our ticket */
	/* Connect by the deadline; but once the script is sent, its reply is
	 * read even if it comes after the deadline (reply_deadline): a ticket
	 * it queued is then left at once by the wait (a grant that raced it
	 * is given back), and weight it granted at once is the caller's (a
	 * grant wins). Cut short, the reply would leave the ticket queued
	 * unknown to us, to be granted to nobody (DESIGN §7.3). */
	int rc = conn_up(r, deadline_ns);
	if (rc == 0)
		rc = ration__redis_call(r, RS_ACQUIRE, reply_deadline(deadline_ns), 3, x, &rp);
	if (rc != 0) {
		r->waiting--;
		if (rc != -EPROTO)
			r->unsure = true;
		return rc;
	}
	if (rp.code == RC_QUEUED) {
		*tk = (uint64_t)rp.a;
		return 1;
	}
	r->waiting--;
	if (rp.code != RC_OK)
		return code_err(rp.code);
	ration__redis_granted(r, (uint64_t)rp.a, n, out);
	return 0;
}

static int
acquire_common(struct remote *r, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n,
	       bool lease, ration_lease_t *out)
{
	if (getpid() != r->pid)
		return -EINVAL;
	char ns[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)n);
	int err = ration__wait_err(ctx, deadline_ns);
	struct reply rp;
	lock(r);
	if (err != 0) {
		/* Closed and too big come before the ctx (DESIGN §4), when the
		 * server can say so at once; otherwise the ctx error stands. */
		const char *x[] = {ns, "2", "0"};
		if (r->c != NULL &&
		    ration__redis_call(r, RS_ACQUIRE, clock_mono_ns() + LEAVE_NS, 3, x, &rp) == 0 &&
		    rp.code < 0)
			err = code_err(rp.code);
		unlock(r);
		return err;
	}
	ration__redis_repair(r, reply_deadline(deadline_ns));
	uint64_t tk = 0;
	int rc = ration__redis_enqueue(r, deadline_ns, ns, n, lease, &tk, out);
	unsigned gen = r->gen;
	unlock(r);
	if (rc == 1)
		return ration__redis_wait_ticket(r, ctx, deadline_ns, ns, n, lease, tk, gen, out);
	if (rc == -EIO && (err = ration__wait_err(ctx, deadline_ns)) != 0)
		rc = err; /* the deadline cut the reply short */
	return rc;
}

static int
rd_acquire(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n)
{
	return acquire_common(s->impl, ctx, deadline_ns, n, false, NULL);
}

static int
rd_acquire_lease(ration_sem_t *s, ration_ctx_t *ctx, int64_t n, ration_lease_t *out)
{
	return acquire_common(s->impl, ctx, ration_ctx_deadline(ctx), n, true, out);
}

/* Run a short script for the caller (mu held), bounded by io_timeout. */
static int
call_now(struct remote *r, enum redis_script script, int nx, const char *const *x,
	 struct reply *rp)
{
	int64_t dl = clock_mono_ns() + r->cf.io_timeout_ns;
	ration__redis_repair(r, dl);
	return ration__redis_call(r, script, dl, nx, x, rp);
}

static int
rd_try_acquire(ration_sem_t *s, int64_t n)
{
	struct remote *r = s->impl;
	if (getpid() != r->pid)
		return -EINVAL;
	char ns[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)n);
	const char *x[] = {ns, "1", "0"};
	struct reply rp;
	lock(r);
	int rc = call_now(r, RS_ACQUIRE, 3, x, &rp);
	if (rc != 0) {
		if (rc != -EPROTO)
			r->unsure = true;
	} else if (rp.code == RC_OK) {
		ration__redis_granted(r, (uint64_t)rp.a, n, NULL);
	} else {
		rc = code_err(rp.code);
	}
	unlock(r);
	return rc;
}

static int
release_common(struct remote *r, int64_t n, uint64_t fence)
{
	if (getpid() != r->pid)
		return -EINVAL;
	char ns[24], fs[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)n);
	snprintf(fs, sizeof(fs), "%llu", (unsigned long long)fence);
	const char *x[] = {ns, fs};
	struct reply rp;
	lock(r);
	int rc = call_now(r, RS_RELEASE, 2, x, &rp);
	if (rc != 0) {
		if (rc != -EPROTO)
			r->unsure = true; /* sync repairs either outcome */
	} else if (rp.code == RC_OK) {
		r->held = r->held > n ? r->held - n : 0;
	} else if (rp.code == RC_OVERFLOW && r->stale >= n) {
		r->stale -= n; /* it went with a lost session */
		rc = -ESTALE;
	} else {
		if (rp.code == RC_STALE)
			r->stale = r->stale > n ? r->stale - n : 0;
		rc = code_err(rp.code);
	}
	unlock(r);
	return rc;
}

static int
rd_release(ration_sem_t *s, int64_t n)
{
	return release_common(s->impl, n, 0);
}

static int
rd_lease_release(ration_sem_t *s, const ration_lease_t *lease)
{
	if (lease->n <= 0 || lease->fence == 0)
		return -ESTALE; /* never handed out: unknown to us */
	return release_common(s->impl, lease->n, lease->fence);
}

static int
rd_resize(ration_sem_t *s, int64_t new_size)
{
	struct remote *r = s->impl;
	if (new_size > RATION_REMOTE_SEM_MAX)
		return -EINVAL;
	char ns[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)new_size);
	const char *x[] = {ns};
	struct reply rp;
	lock(r);
	int rc = call_now(r, RS_RESIZE, 1, x, &rp);
	unlock(r);
	return rc != 0 ? rc : rp.code != RC_OK ? code_err(rp.code) : 0;
}

static void
rd_close(ration_sem_t *s)
{
	struct remote *r = s->impl;
	struct reply rp;
	lock(r);
	(void)call_now(r, RS_CLOSE, 0, NULL, &rp);
	unlock(r);
}

/* The stats script's reply, by position. */
enum { ST_SIZE = 2, ST_IN_USE, ST_WAITERS, ST_WWEIGHT, ST_MAX_IN_USE, ST_MAX_WAITERS,
       ST_ACQUIRED, ST_CONTENDED, ST_TIMEOUTS, ST_CANCELS, ST_REJECTED, ST_WAIT_NS,
       ST_CLOSED, ST_RECLAIMED, ST_FENCE, ST_HIST, ST_LEN = ST_HIST + RATION_HIST_BUCKETS };

static int
read_stats(struct remote *r, redisReply **rep)
{
	struct reply rp;
	lock(r);
	int rc = call_raw(r, RS_STATS, false, clock_mono_ns() + r->cf.io_timeout_ns, 0, NULL,
			  &rp, rep);
	if (rc == 0 && (*rep)->elements < ST_LEN) {
		freeReplyObject(*rep);
		rc = -EPROTO;
	}
	if (rc == 0)
		r->last_avail = num((*rep)->element[ST_SIZE]) - num((*rep)->element[ST_IN_USE]);
	unlock(r);
	return rc;
}

static int64_t
rd_available(const ration_sem_t *s)
{
	struct remote *r = s->impl;
	redisReply *rep;
	if (read_stats(r, &rep) == 0)
		freeReplyObject(rep);
	lock(r);
	int64_t v = r->last_avail;
	unlock(r);
	return v;
}

static void
rd_stats(const ration_sem_t *s, ration_sem_stats_t *out)
{
	struct remote *r = s->impl;
	redisReply *rep;
	memcpy(out->name, s->name, sizeof(out->name));
	if (read_stats(r, &rep) != 0) {
		lock(r);
		out->size = r->size;
		out->available = r->last_avail;
		out->in_use = out->size - out->available;
		unlock(r);
		return;
	}
	redisReply **e = rep->element;
	out->size = num(e[ST_SIZE]);
	out->in_use = num(e[ST_IN_USE]);
	out->available = out->size - out->in_use;
	out->waiters = num(e[ST_WAITERS]);
	out->waiting_weight = num(e[ST_WWEIGHT]);
	out->max_in_use = num(e[ST_MAX_IN_USE]);
	out->max_waiters_seen = num(e[ST_MAX_WAITERS]);
	out->acquired = (uint64_t)num(e[ST_ACQUIRED]);
	out->contended = (uint64_t)num(e[ST_CONTENDED]);
	out->timeouts = (uint64_t)num(e[ST_TIMEOUTS]);
	out->cancels = (uint64_t)num(e[ST_CANCELS]);
	out->rejected = (uint64_t)num(e[ST_REJECTED]);
	out->wait_ns_total = (uint64_t)num(e[ST_WAIT_NS]);
	out->closed = num(e[ST_CLOSED]) != 0;
	for (unsigned i = 0; i < RATION_HIST_BUCKETS; i++)
		out->wait_hist[i] = (uint64_t)num(e[ST_HIST + i]);
	freeReplyObject(rep);
}

/* Renew the session every lease/4 while the handle holds, waits or has
 * something to repair; each call renews it too. */
static void *
renewer_main(void *arg)
{
	struct remote *r = arg;
	lock(r);
	while (!r->stop) {
		struct timespec ts = ns_to_timespec(clock_mono_ns() + r->lease_ns / 4);
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (r->stop)
			break;
		if (r->held > 0 || r->waiting > 0 || r->norphan > 0 || r->unsure) {
			struct reply rp;
			const char *x[] = {""};
			(void)call_now(r, RS_RENEW, 1, x, &rp);
		}
	}
	unlock(r);
	return NULL;
}

static void
destroy(struct remote *r)
{
	if (r->c != NULL)
		redisFree(r->c);
	for (unsigned i = 0; i < r->nidle; i++)
		redisFree(r->idle[i]);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* -EBUSY while the handle holds weight or has a caller queued. Otherwise
 * end the session on the server (anything it still has goes back). */
static int
rd_free(ration_sem_t *s)
{
	struct remote *r = s->impl;
	if (getpid() != r->pid)
		return -EINVAL;
	lock(r);
	if (r->held > 0 || r->waiting > 0) {
		unlock(r);
		return -EBUSY;
	}
	r->stop = true;
	pthread_cond_signal(&r->cv);
	unlock(r);
	pthread_join(r->renewer, NULL);
	struct reply rp;
	lock(r);
	if (r->c != NULL)
		(void)ration__redis_call(r, RS_BYE, clock_mono_ns() + r->cf.io_timeout_ns, 0, NULL, &rp);
	unlock(r);
	destroy(r);
	return 0;
}

static const struct ration__sem_ops redis_ops = {
	.acquire = rd_acquire,
	.try_acquire = rd_try_acquire,
	.release = rd_release,
	.resize = rd_resize,
	.close = rd_close,
	.available = rd_available,
	.stats = rd_stats,
	.free = rd_free,
	.acquire_lease = rd_acquire_lease,
	.lease_release = rd_lease_release,
};

static bool
opts_ok(const ration_remote_opts_t *o)
{
	return o == NULL || ((o->lease_ns == 0 || o->lease_ns >= LEASE_MIN_NS) &&
			     o->connect_timeout_ns >= 0 && o->io_timeout_ns >= 0);
}

static bool
key_ok(const char *key)
{
	size_t len = key != NULL ? strlen(key) : 0;
	return len >= 1 && len <= 200 && strpbrk(key, "{}") == NULL;
}

static int
remote_new(const char *uri, const char *key, int64_t size, const ration_remote_opts_t *opts,
	   struct remote **out)
{
	struct remote *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	if (ration__redis_parse_uri(uri != NULL ? uri : "redis://127.0.0.1:6379/0", &r->cf) != 0) {
		free(r);
		return -EINVAL;
	}
	r->cf.connect_timeout_ns = opts && opts->connect_timeout_ns > 0 ? opts->connect_timeout_ns
									 : 1000 * MS;
	r->cf.io_timeout_ns = opts && opts->io_timeout_ns > 0 ? opts->io_timeout_ns : 2000 * MS;
	r->lease_ns = opts && opts->lease_ns > 0 ? opts->lease_ns : 10000 * MS;
	snprintf(r->key, sizeof(r->key), "ration:{%s}", key);
	snprintf(r->lease_us, sizeof(r->lease_us), "%lld", (long long)(r->lease_ns / 1000));
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)clock_mono_ns() * 0x9E3779B97F4A7C15ull;
	r->pid = getpid();
	snprintf(r->sid, sizeof(r->sid), "%d.%016llx", (int)r->pid, (unsigned long long)rnd);
	r->size = size;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	return 0;
}

int
ration_sem_open_redis(const char *uri, const char *key, int64_t size,
		      const ration_remote_opts_t *opts, ration_sem_t **out)
{
	if (out == NULL || !key_ok(key) || size < 0 || size > RATION_REMOTE_SEM_MAX ||
	    !opts_ok(opts))
		return -EINVAL;
	struct remote *r;
	int rc = remote_new(uri, key, size, opts, &r);
	if (rc != 0)
		return rc;
	struct reply rp;
	const char *x[] = {""};
	lock(r);
	int64_t deadline_ns = clock_mono_ns() + r->cf.connect_timeout_ns + r->cf.io_timeout_ns;
	rc = ration__redis_call(r, RS_RENEW, deadline_ns, 1, x, &rp);
	if (rc == 0 && rp.code != RC_OK)
		rc = code_err(rp.code);
	r->last_avail = r->size;
	unlock(r);
	if (rc == 0 && pthread_create(&r->renewer, NULL, renewer_main, r) != 0)
		rc = -ENOMEM;
	if (rc == 0 && (rc = ration__sem_new_backend(&redis_ops, r, key, out)) != 0) {
		lock(r);
		r->stop = true;
		pthread_cond_signal(&r->cv);
		unlock(r);
		pthread_join(r->renewer, NULL);
	}
	if (rc != 0)
		destroy(r);
	return rc;
}
