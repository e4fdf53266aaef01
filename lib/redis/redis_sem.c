/* redis_sem.c - ration_sem_t over a Redis server (ration/redis.h): the
 * operations and the ops table.
 *
 * The server holds the truth (redis_scripts.c, docs/redis.md): each
 * operation is one Lua script, run atomically, that first expires stale
 * sessions by the server's TIME and then grants from the head of the FIFO
 * queue while the head fits. A handle is one session (a random id): the
 * server counts the weight each session holds; a session not renewed for
 * lease_ns is reclaimed with everything it held and queued.
 *
 * The handle (struct redis_handle) is in redis_sem.h; its open, free and
 * stats in redis_lifecycle.c; its session with the server (round trips,
 * repairs, recovery, the renewer) in redis_session.c; a queued caller's
 * wait in redis_wait.c.
 *
 * Locking: r->mu guards the main connection and every local counter in
 * struct redis_handle; it is held across a main-connection round trip (one
 * script), and every caller takes it by its deadline (or a bound of its
 * own), never waiting for another caller's round trip past it. Waiters
 * block on wait connections of their own (BLPOP on their ticket's wake
 * list, in slices of at most SLICE_NS so a cancel is seen) and take mu only
 * to book their outcome. No other lock is taken under mu.
 *
 * What the handle believes (held) and what the server counts for the
 * session can part when a reply is lost (connection broken after the
 * server ran the script), when a release could not be told, or when the
 * server lost or rolled back its data. Then `unsure` (or `resync`, on a
 * recovery) is set, and the sync script makes the server count what the
 * handle holds (redis_session.c). A session the server reclaimed outside a
 * recovery comes back with a new incarnation: `held` moves to `stale`, and
 * releases of it answer -ESTALE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/sem.h"
#include "ration/redis.h"
#include "redis_sem.h"

int
ration__redis_code_err(int code)
{
	switch (code) {
	case RC_CLOSED:
		return -EPIPE;
	case RC_TOOBIG:
		return -E2BIG;
	case RC_AGAIN:
		return -EAGAIN;
	case RC_OVERFLOW:
		return -EOVERFLOW;
	case RC_STALE:
		return -ESTALE;
	case RC_NOENT:
		return -ENOENT;
	default:
		return -EPROTO;
	}
}

/* How long a reply to a call made for a caller with @deadline_ns may take:
 * up to LEAVE_NS past the deadline (as a BLPOP's may), and io_timeout. A
 * round trip that merely straddles the deadline is read, not taken for a
 * failure: a reply dropped there leaves the server's outcome (a ticket
 * queued, or weight granted) unknown to the handle. */
static int64_t
reply_deadline(int64_t deadline_ns)
{
	int64_t now = clock_mono_ns();
	return ns_add_sat(deadline_ns > now ? deadline_ns : now, LEAVE_NS);
}

void
ration__redis_granted(struct redis_handle *r, uint64_t fence, int64_t n,
		      ration_lease_t *out)
{
	r->held += n;
	if (fence > r->fence)
		r->fence = fence;
	if (out == NULL)
		return;
	*out = (ration_lease_t){
		.n = n,
		.fence = fence,
		.expires_ns = ns_add_sat(clock_mono_ns(), r->lease_ns)};
	if (r->nlease < LEASES) /* beyond: not re-asserted in a recovery */
		r->lease[r->nlease++] =
			(struct held_lease){.fence = fence, .n = n};
}

/* Forget lease @fence (released, or going to be). */
static void
drop_lease(struct redis_handle *r, uint64_t fence)
{
	for (unsigned i = 0; i < r->nlease; i++)
		if (r->lease[i].fence == fence) {
			r->lease[i] = r->lease[--r->nlease];
			return;
		}
}

/* Take @n or queue for it (mu held). Return 0 (granted), 1 (queued as
 * *tk, counted in waiting) or an error. */
int
ration__redis_enqueue(struct redis_handle *r, int64_t deadline_ns,
		      const char *ns, int64_t n, bool lease, uint64_t *tk,
		      ration_lease_t *out)
{
	struct reply rp;
	const char *x[] = {ns, "0", lease ? "1" : "0"};
	r->waiting++; /* before the script: sync must not drop our ticket */
	/* Once the script is sent, its reply is read even if it comes after
	 * the deadline (reply_deadline): a ticket it queued is then left at
	 * once by the wait (a grant that raced it is given back), and weight
	 * it granted at once is the caller's (a grant wins). Cut short, the
	 * reply would leave the ticket queued unknown to us, to be granted to
	 * nobody (contract §7.3). */
	int rc = ration__redis_call(r, RS_ACQUIRE, reply_deadline(deadline_ns),
				    3, x, &rp);
	if (rc != 0) {
		r->waiting--;
		if (rc != -EPROTO && rc != -EAGAIN)
			r->unsure = true;
		return rc == -EAGAIN ? -EIO : rc;
	}
	if (rp.code == RC_QUEUED) {
		*tk = (uint64_t)rp.a;
		return 1;
	}
	r->waiting--;
	if (rp.code != RC_OK)
		return ration__redis_code_err(rp.code);
	ration__redis_granted(r, (uint64_t)rp.a, n, out);
	return 0;
}

static int
acquire_common(struct redis_handle *r, ration_ctx_t *ctx, int64_t deadline_ns,
	       int64_t n, bool lease, ration_lease_t *out)
{
	if (getpid() != r->pid)
		return -EINVAL;
	char ns[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)n);
	int err = ration__wait_err(ctx, deadline_ns);
	struct reply rp;
	if (err != 0) {
		/* Closed and too big come before the ctx (contract §4), when the
		 * server can say so at once; otherwise the ctx error stands. */
		const char *x[] = {ns, "2", "0"};
		int64_t dl = clock_mono_ns() + LEAVE_NS;
		if (ration__redis_lock_until(r, dl) != 0)
			return err;
		if (r->c != NULL &&
		    ration__redis_call(r, RS_ACQUIRE, dl, 3, x, &rp) == 0 &&
		    rp.code < 0)
			err = ration__redis_code_err(rp.code);
		unlock(r);
		return err;
	}
	if (ration__redis_lock_until(r, deadline_ns) != 0) {
		/* The lock's realtime bound may run out a little before the
		 * monotonic deadline: never report that as a grant. */
		err = ration__wait_err(ctx, deadline_ns);
		return err != 0 ? err : -ETIMEDOUT;
	}
	/* The connection (and repairs) by the deadline; the acquire's reply
	 * may come a little later (reply_deadline). */
	ration__redis_repair(r, deadline_ns);
	uint64_t tk = 0;
	int rc = clock_mono_ns() < deadline_ns
			 ? ration__redis_enqueue(r, deadline_ns, ns, n, lease,
						 &tk, out)
			 : -ETIMEDOUT;
	unsigned gen = r->gen;
	unlock(r);
	if (rc == 1)
		return ration__redis_wait_ticket(r, ctx, deadline_ns, ns, n,
						 lease, tk, gen, out);
	if ((rc == -EIO || rc == -ETIMEDOUT) &&
	    (err = ration__wait_err(ctx, deadline_ns)) != 0)
		rc = err; /* the deadline cut the call short */
	return rc;
}

static int
rd_acquire(ration_sem_t *s, ration_ctx_t *ctx, int64_t deadline_ns, int64_t n)
{
	return acquire_common(s->impl, ctx, deadline_ns, n, false, NULL);
}

static int
rd_acquire_lease(ration_sem_t *s, ration_ctx_t *ctx, int64_t n,
		 ration_lease_t *out)
{
	return acquire_common(s->impl, ctx, ration_ctx_deadline(ctx), n, true,
			      out);
}

/* Lock and run a short script for a caller without a deadline of its
 * own, bounded by @budget_ns in all. mu is held on 0 only. */
static int
call_now(struct redis_handle *r, int64_t budget_ns, enum redis_script script,
	 int nx, const char *const *x, struct reply *rp)
{
	int64_t dl = ns_add_sat(clock_mono_ns(), budget_ns);
	if (ration__redis_lock_until(r, dl) != 0)
		return -ETIMEDOUT;
	ration__redis_repair(r, dl);
	int rc = ration__redis_call(r, script, dl, nx, x, rp);
	if (rc != 0 && rc != -EPROTO && rc != -EAGAIN)
		r->unsure =
			true; /* the server may have acted: sync repairs it */
	return rc;
}

/* try_acquire and consume never wait long: TRY_NS (or io_timeout if
 * shorter) bounds them in all; a handle busy with another caller's round
 * trip or a loading server is "not now" (-EAGAIN), a server that does not
 * answer -EIO. */
static int
call_short(struct redis_handle *r, enum redis_script script, int nx,
	   const char *const *x, struct reply *rp)
{
	int64_t budget =
		r->cf.io_timeout_ns < TRY_NS ? r->cf.io_timeout_ns : TRY_NS;
	int rc = call_now(r, budget, script, nx, x, rp);
	if (rc == -ETIMEDOUT)
		return -EAGAIN;
	if (rc == -EAGAIN)
		unlock(r);
	return rc;
}

/* Take @n now through @script (try: "1" = never queue; consume): the
 * units are the handle's on 0. */
static int
take_now(ration_sem_t *s, enum redis_script script, int64_t n)
{
	struct redis_handle *r = s->impl;
	if (getpid() != r->pid)
		return -EINVAL;
	char ns[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)n);
	const char *x[] = {ns, "1", "0"};
	struct reply rp;
	int rc = call_short(r, script, script == RS_ACQUIRE ? 3 : 1, x, &rp);
	if (rc == -EAGAIN)
		return rc;
	if (rc == 0 && rp.code == RC_OK)
		ration__redis_granted(r, (uint64_t)rp.a, n, NULL);
	else if (rc == 0)
		rc = ration__redis_code_err(rp.code);
	unlock(r);
	return rc;
}

static int
rd_try_acquire(ration_sem_t *s, int64_t n)
{
	return take_now(s, RS_ACQUIRE, n);
}

/* No limit check here: the script answers "closed" before "overflow",
 * and an @n past 2^53 becomes a double at least that large, which is
 * past the limit there too. */
static int
rd_consume(ration_sem_t *s, int64_t n)
{
	return take_now(s, RS_CONSUME, n);
}

/* A release the server could not be told of (no connection, no reply):
 * the caller has given the weight up, so the handle no longer counts it
 * and finishes the release itself when the server answers again (a lease
 * by its record, plain weight by the sync of what it holds). */
static void
release_later(struct redis_handle *r, int64_t n, uint64_t fence)
{
	r->held = r->held > n ? r->held - n : 0;
	r->unsure = true;
	if (fence != 0) {
		drop_lease(r, fence);
		if (r->nunrel < ORPHANS)
			r->unrel[r->nunrel++] =
				(struct held_lease){.fence = fence, .n = n};
	}
	pthread_cond_signal(&r->cv); /* the renewer retries within lease/4 */
}

static int
release_common(struct redis_handle *r, int64_t n, uint64_t fence)
{
	if (getpid() != r->pid)
		return -EINVAL;
	char ns[24], fs[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)n);
	snprintf(fs, sizeof(fs), "%llu", (unsigned long long)fence);
	const char *x[] = {ns, fs};
	struct reply rp;
	/* Bounded by io_timeout; a release that cannot be told now is still
	 * a release (release_later), never left to the caller to retry. */
	int64_t dl = ns_add_sat(clock_mono_ns(), r->cf.io_timeout_ns);
	lock(r);
	ration__redis_repair(r, dl);
	int rc = ration__redis_call(r, RS_RELEASE, dl, 2, x, &rp);
	if (rc == 0 && (rp.code == RC_OVERFLOW || rp.code == RC_STALE) &&
	    r->resync) {
		/* The reply says a recovery began (a rollback or a restart
		 * lost what we hold): re-assert it, then release. */
		ration__redis_repair(r, dl);
		rc = ration__redis_call(r, RS_RELEASE, dl, 2, x, &rp);
	}
	if (rc != 0 && rc != -EPROTO) {
		release_later(r, n, fence);
		rc = 0;
	} else if (rc == 0 && rp.code == RC_OK) {
		r->held = r->held > n ? r->held - n : 0;
		drop_lease(r, fence);
	} else if (rc == 0 && rp.code == RC_OVERFLOW && r->stale >= n) {
		r->stale -= n; /* it went with a lost session */
		rc = -ESTALE;
	} else if (rc == 0) {
		if (rp.code == RC_STALE) {
			r->stale = r->stale > n ? r->stale - n : 0;
			drop_lease(r, fence);
		}
		rc = ration__redis_code_err(rp.code);
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
	struct redis_handle *r = s->impl;
	if (new_size > RATION_REMOTE_SEM_MAX)
		return -EINVAL;
	char ns[24];
	snprintf(ns, sizeof(ns), "%lld", (long long)new_size);
	const char *x[] = {ns};
	struct reply rp;
	int rc = call_now(r, r->cf.io_timeout_ns, RS_RESIZE, 1, x, &rp);
	if (rc == -ETIMEDOUT)
		return -EIO;
	unlock(r);
	return rc != 0            ? (rc == -EAGAIN ? -EIO : rc)
	       : rp.code != RC_OK ? ration__redis_code_err(rp.code)
				  : 0;
}

static void
rd_close(ration_sem_t *s)
{
	struct redis_handle *r = s->impl;
	struct reply rp;
	if (call_now(r, r->cf.io_timeout_ns, RS_CLOSE, 0, NULL, &rp) !=
	    -ETIMEDOUT)
		unlock(r);
}

const struct ration__sem_ops ration__redis_ops = {
	.acquire = rd_acquire,
	.try_acquire = rd_try_acquire,
	.release = rd_release,
	.consume = rd_consume,
	.resize = rd_resize,
	.close = rd_close,
	.available = ration__redis_available,
	.stats = ration__redis_stats,
	.free = ration__redis_free,
	.acquire_lease = rd_acquire_lease,
	.lease_release = rd_lease_release,
};

int
ration_lease_live_redis(ration_sem_t *s, uint64_t fence)
{
	if (s == NULL || s->ops != &ration__redis_ops || fence == 0)
		return -EINVAL;
	struct redis_handle *r = s->impl;
	if (getpid() != r->pid)
		return -EINVAL;
	char fs[24];
	snprintf(fs, sizeof(fs), "%llu", (unsigned long long)fence);
	const char *x[] = {fs};
	struct reply rp;
	int64_t dl = ns_add_sat(clock_mono_ns(), r->cf.io_timeout_ns);
	if (ration__redis_lock_until(r, dl) != 0)
		return -EIO;
	int rc = ration__redis_call_raw(r, RS_LIVE, false, dl, 1, x, &rp, NULL);
	unlock(r);
	if (rc != 0)
		return rc;
	return rp.code != RC_OK ? ration__redis_code_err(rp.code) : rp.a != 0;
}
