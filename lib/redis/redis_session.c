/* redis_session.c - the Redis handle's session with the server: the main
 * connection and its round trips, what each reply tells about the session
 * (lost, recovered), repairs after failures, and the renewer thread. The
 * operations are in redis_sem.c; docs/redis.md has the protocol.
 *
 * Locking (redis_sem.h): mu guards the main connection and the
 * local counters; it is held across a main-connection round trip, which is
 * bounded by the caller's deadline, and taken with a deadline by every
 * caller. The renewer renews on a connection of its own without mu, so a
 * frozen server never holds the handle through it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "redis_sem.h"

int
ration__redis_lock_until(struct redis_handle *r, int64_t deadline_ns)
{
	if (deadline_ns == RATION_FOREVER) {
		lock(r);
		return 0;
	}
	/* pthread_mutex_timedlock() takes CLOCK_REALTIME: convert what is
	 * left (a clock step meanwhile only moves this bound). */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t left = deadline_ns - clock_mono_ns();
	if (left < 0)
		left = 0;
	int64_t rt = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	struct timespec ts = ns_to_timespec(ns_add_sat(rt, left));
	return pthread_mutex_timedlock(&r->mu, &ts) == 0 ? 0 : -ETIMEDOUT;
}

static void
conn_down(struct redis_handle *r)
{
	redisFree(r->c);
	r->c = NULL;
}

/* Make sure the main connection is up (mu held). */
static int
conn_up(struct redis_handle *r, int64_t deadline_ns)
{
	if (r->c != NULL)
		return 0;
	int rc = ration__redis_connect(&r->cf, deadline_ns, &r->c);
	if (rc == 0 &&
	    (rc = ration__redis_load(r->c, &r->cf, deadline_ns, r->shas)) != 0)
		conn_down(r);
	r->fresh = rc == 0;
	return rc;
}

/* Our session was lost (expired while we stalled, or its data went and no
 * recovery takes it back): what we counted as held is gone. */
static void
lose_session(struct redis_handle *r)
{
	r->stale += r->held;
	r->held = 0;
	r->nlease = 0;
	r->gen++;
}

void
ration__redis_note_inc(struct redis_handle *r, int64_t inc, bool recovery)
{
	if (inc == 0 || inc <= r->inc)
		return;
	if (r->inc != 0 && !recovery && !r->resync)
		lose_session(r);
	r->inc = inc;
}

/* A reply's recovery marker and epoch: a recovery began (the server was
 * stalled, restarted or rolled back) or the semaphore was re-created; we
 * re-assert what we hold (repair). Return whether this reply says so. */
static bool
note_recovery(struct redis_handle *r, int64_t rec, int64_t epoch)
{
	bool recovery = (r->rec != 0 && rec != 0 && rec != r->rec) ||
			(r->epoch != 0 && epoch != 0 && epoch != r->epoch);
	if (rec != 0)
		r->rec = rec;
	if (epoch != 0)
		r->epoch = epoch;
	if (recovery && (r->held > 0 || r->nlease > 0 || r->waiting > 0)) {
		r->resync = true;
		r->gen++; /* waiters re-check their tickets at once */
	}
	return recovery;
}

/* Book what a script's reply says (mu held). */
static void
book(struct redis_handle *r, const redisReply *rep, bool with_sid,
     struct reply *out)
{
	r->booked++;
	out->code = (int)reply_num(rep->element[0]);
	out->size = reply_num(rep->element[2]);
	out->a = reply_num(rep->element[3]);
	if (out->code != RC_NOENT && out->size > 0)
		r->size = out->size;
	if (!with_sid)
		return;
	bool recovery = false;
	if (rep->elements >= 7)
		recovery = note_recovery(r, reply_num(rep->element[5]),
					 reply_num(rep->element[6]));
	ration__redis_note_inc(r, reply_num(rep->element[1]), recovery);
}

/* The arguments every script takes: sid, lease, size and
 * "fence:epoch:holds:fresh" - the largest fence and the epoch we saw,
 * whether we hold weight, and whether this is the first script on its
 * connection (@fresh: it checks whether the server restarted): what
 * starts a recovery when the semaphore was rolled back or re-created
 * under us. */
static void
common_args(struct redis_handle *r, bool with_sid, bool fresh, char size[24],
	    char fence[48], const char **args)
{
	snprintf(size, 24, "%lld", (long long)r->size);
	bool holds = r->held > 0 || r->nlease > 0;
	snprintf(fence, 48, "%llu:%lld:%d:%d", (unsigned long long)r->fence,
		 (long long)r->epoch, holds, fresh);
	args[0] = with_sid ? r->sid : "";
	args[1] = r->lease_us;
	args[2] = size;
	args[3] = fence;
}

/* EVALSHA on @c, asking a loading server again until @deadline_ns. */
static int
eval_retry(redisContext *c, const struct redis_conf *cf,
	   char shas[RS_COUNT][41], int64_t deadline_ns,
	   enum redis_script script, const char *key, int nargs,
	   const char *const *args, redisReply **rep)
{
	for (;;) {
		int rc = ration__redis_eval(c, cf, deadline_ns, shas, script,
					    key, nargs, args, rep);
		if (rc != -EAGAIN)
			return rc;
		int64_t now = clock_mono_ns();
		if (deadline_ns - now <= LOADING_POLL_NS)
			return -EAGAIN;
		sleep_ns(LOADING_POLL_NS);
	}
}

int
ration__redis_call_raw(struct redis_handle *r, enum redis_script script,
		       bool with_sid, int64_t deadline_ns, int nx,
		       const char *const *x, struct reply *out,
		       redisReply **keep)
{
	/* A connection the server closed since our last call (it restarted)
	 * is made again and the script sent again, except a plain release:
	 * run twice it would give back weight held for something else. If
	 * the first run did happen, what it did is repaired (unsure). */
	bool again = !(script == RS_RELEASE && strcmp(x[1], "0") == 0);
	int rc;
	redisReply *rep;
	for (;;) {
		bool reused = r->c != NULL;
		while ((rc = conn_up(r, deadline_ns)) == -EAGAIN &&
		       deadline_ns - clock_mono_ns() > LOADING_POLL_NS)
			sleep_ns(LOADING_POLL_NS);
		if (rc != 0)
			return rc;
		char size[24], fence[48];
		const char *args[12];
		common_args(r, with_sid, r->fresh, size, fence, args);
		for (int i = 0; i < nx; i++)
			args[4 + i] = x[i];
		rc = eval_retry(r->c, &r->cf, r->shas, deadline_ns, script,
				r->key, 4 + nx, args, &rep);
		if (rc == 0)
			r->fresh = false;
		if (rc == 0 || rc == -EPROTO || rc == -EAGAIN)
			break;
		bool gone = ration__redis_gone(r->c);
		conn_down(r); /* a late reply would put us out of step */
		if (!(gone && reused && again))
			return rc;
		r->unsure = true;
		again = false;
	}
	if (rc != 0)
		return rc;
	book(r, rep, with_sid, out);
	if (keep != NULL)
		*keep = rep;
	else
		freeReplyObject(rep);
	return 0;
}

int
ration__redis_call(struct redis_handle *r, enum redis_script script,
		   int64_t deadline_ns, int nx, const char *const *x,
		   struct reply *out)
{
	return ration__redis_call_raw(r, script, true, deadline_ns, nx, x, out,
				      NULL);
}

void
ration__redis_collect_dropped(struct redis_handle *r)
{
	int64_t gone =
		atomic_exchange_explicit(&r->gone, 0, memory_order_relaxed);
	r->waiting -= gone;
	if (gone > 0)
		r->unsure =
			true; /* a ticket the box had no room for: sync drops it */
	for (unsigned i = 0; i < ORPHANS; i++) {
		uint64_t tk = atomic_exchange_explicit(&r->dropped[i], 0,
						       memory_order_relaxed);
		if (tk == 0)
			continue;
		r->unsure = true;
		if (r->norphan < ORPHANS)
			r->orphan[r->norphan++] = tk;
	}
}

/* The handle's leases as "fence:n,..." for the sync script. */
static void
lease_list(const struct redis_handle *r, char *buf, size_t cap)
{
	size_t o = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < r->nlease && o + 48 < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%llu:%lld,",
				      (unsigned long long)r->lease[i].fence,
				      (long long)r->lease[i].n);
}

/* Make the server's count for our session match ours (mu held): exactly
 * when none of our callers is queued (a grant may be on its way to one),
 * else only by re-asserting a shortfall. Weight the server will not take
 * back (no room) becomes stale. */
static int
sync_held(struct redis_handle *r, int64_t deadline_ns)
{
	bool exact = r->waiting == 0;
	char held[24], leases[LEASES * 48];
	snprintf(held, sizeof(held), "%lld", (long long)r->held);
	lease_list(r, leases, sizeof(leases));
	const char *x[] = {held, exact ? "e" : "r", leases};
	struct reply rp;
	int rc = ration__redis_call(r, RS_SYNC, deadline_ns, 3, x, &rp);
	if (rc != 0)
		return rc;
	if (rp.a < r->held) { /* no room: what is not ours any more is stale */
		int64_t kept = rp.a;
		lose_session(r);
		r->stale -= kept;
		r->held = kept;
	}
	r->resync = false;
	r->unsure =
		!exact; /* if not exact, an exact sync once our waiters are done */
	return 0;
}

void
ration__redis_repair(struct redis_handle *r, int64_t deadline_ns)
{
	struct reply rp;
	ration__redis_collect_dropped(r);
	while (r->norphan > 0) {
		char tk[24];
		snprintf(tk, sizeof(tk), "%llu",
			 (unsigned long long)r->orphan[r->norphan - 1]);
		const char *x[] = {tk, "o"};
		if (ration__redis_call(r, RS_LEAVE, deadline_ns, 2, x, &rp) !=
		    0)
			return;
		r->norphan--;
	}
	/* Lease releases the server was not told of: the record says
	 * whether it took them (gone: it did, or it reclaimed them). */
	while (r->nunrel > 0) {
		struct held_lease *u = &r->unrel[r->nunrel - 1];
		char ns[24], fs[24];
		snprintf(ns, sizeof(ns), "%lld", (long long)u->n);
		snprintf(fs, sizeof(fs), "%llu", (unsigned long long)u->fence);
		const char *x[] = {ns, fs};
		if (ration__redis_call(r, RS_RELEASE, deadline_ns, 2, x, &rp) !=
		    0)
			return;
		r->nunrel--;
	}
	if (r->resync || (r->unsure && r->waiting == 0))
		(void)sync_held(r, deadline_ns);
}

/* Whether the renewer has anything to do (mu held). */
static bool
renewer_needed(struct redis_handle *r)
{
	return r->held > 0 || r->waiting > 0 || r->norphan > 0 ||
	       r->nunrel > 0 || r->unsure || r->resync ||
	       atomic_load_explicit(&r->gone, memory_order_relaxed) != 0;
}

/* One renewal on the renewer's own connection, mu not held: a server that
 * does not answer holds this thread, never the handle. Return whether the
 * next round should follow at once: the reply began a re-assertion (a
 * recovery: it has a lease to happen in), or a connection that had worked
 * failed (the server restarted; a new one is tried once, not in a loop). */
static bool
renew(struct redis_handle *r, int64_t deadline_ns, const char *const *args,
      unsigned booked)
{
	bool reused = r->rc != NULL;
	if (r->rc == NULL) {
		if (ration__redis_connect(&r->cf, deadline_ns, &r->rc) != 0)
			return false;
		if (ration__redis_load(r->rc, &r->cf, deadline_ns, r->rshas) !=
		    0) {
			redisFree(r->rc);
			r->rc = NULL;
			return false;
		}
		r->rfresh = true;
	}
	redisReply *rep;
	int rc = eval_retry(r->rc, &r->cf, r->rshas, deadline_ns, RS_RENEW,
			    r->key, 5, args, &rep);
	if (rc == 0)
		r->rfresh = false;
	if (rc != 0) {
		if (rc == -EPROTO || rc == -EAGAIN)
			return false;
		redisFree(r->rc);
		r->rc = NULL;
		return reused;
	}
	struct reply rp;
	lock(r);
	bool resync = r->resync;
	if (r->booked == booked) /* else a later reply told us more */
		book(r, rep, true, &rp);
	resync = r->resync && !resync;
	unlock(r);
	freeReplyObject(rep);
	return resync;
}

/* Renew the session every lease/4 while the handle holds, waits or has
 * something to repair; each call renews it too. A round trip of the
 * renewer is bounded by half a lease: a later one would be too late. */
void *
ration__redis_renewer(void *arg)
{
	struct redis_handle *r = arg;
	bool at_once = false;
	lock(r);
	while (!r->stop) {
		struct timespec ts = ns_to_timespec(
			ns_add_sat(clock_mono_ns(), r->lease_ns / 4));
		if (!at_once)
			pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		at_once = false;
		if (r->stop || !renewer_needed(r))
			continue;
		int64_t budget = r->lease_ns / 2 < r->cf.io_timeout_ns
					 ? r->lease_ns / 2
					 : r->cf.io_timeout_ns;
		int64_t deadline_ns = clock_mono_ns() + budget;
		ration__redis_repair(r, deadline_ns);
		char size[24], fence[48];
		const char *args[5];
		common_args(r, true, r->rc == NULL || r->rfresh, size, fence,
			    args);
		args[4] = "";
		unsigned booked = r->booked;
		unlock(r);
		at_once = renew(r, deadline_ns, args, booked);
		lock(r);
	}
	unlock(r);
	return NULL;
}
