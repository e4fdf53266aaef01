/* redis_wait.c - a queued caller of the Redis backend waits for its
 * ticket: BLPOP on the ticket's wake list, on a wait connection of its own,
 * in slices short enough to notice a cancel; leaves the queue on deadline,
 * cancel or failure (giving back a grant that raced it); queues again when
 * its session was reclaimed meanwhile. See redis_sem.c and docs/redis.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_sem.h"

/* Leave ticket @tk after @err (mu not held); the result is @err. */
static int
leave(struct redis_handle *r, uint64_t tk, int err)
{
	struct reply rp;
	char t[24];
	snprintf(t, sizeof(t), "%llu", (unsigned long long)tk);
	const char *x[] = {t, err == -ETIMEDOUT   ? "t"
			      : err == -ECANCELED ? "c"
						  : "o"};
	int64_t dl = clock_mono_ns() + LEAVE_NS;
	if (ration__redis_lock_until(r, dl) != 0) {
		/* Another caller's round trip holds the handle: hand the ticket
		 * to the next repair rather than wait past the deadline. */
		for (unsigned i = 0; i < ORPHANS; i++) {
			uint64_t free_slot = 0;
			if (atomic_compare_exchange_strong_explicit(
				    &r->dropped[i], &free_slot, tk,
				    memory_order_relaxed, memory_order_relaxed))
				break;
		}
		atomic_fetch_add_explicit(&r->gone, 1, memory_order_relaxed);
		return err;
	}
	r->waiting--;
	/* Bounded by LEAVE_NS, not by the caller's deadline (already past):
	 * on failure the ticket is left later, by the next call or renewer. */
	if (r->c == NULL ||
	    ration__redis_call(r, RS_LEAVE, dl, 2, x, &rp) != 0) {
		if (r->norphan < ORPHANS)
			r->orphan[r->norphan++] = tk;
		r->unsure = true;
	} else if (rp.a == 2) {
		/* Neither queued nor a grant in the list: a BLPOP whose reply
		 * we lost may have popped the grant (the server serves a
		 * blocked client in the same step as the script that pushed,
		 * before it notices the connection closed). The session may
		 * hold weight we do not count: sync now, while no other
		 * caller of ours is queued (else at the next call). */
		r->unsure = true;
		ration__redis_repair(r, dl);
	}
	unlock(r);
	return err;
}

/* mu is only tried here and in wait_conn_put(): while another caller's
 * round trip holds it, a new connection (or none kept) does as well. */
static int
wait_conn(struct redis_handle *r, int64_t deadline_ns, redisContext **wc)
{
	*wc = NULL;
	if (pthread_mutex_trylock(&r->mu) == 0) {
		*wc = r->nidle > 0 ? r->idle[--r->nidle] : NULL;
		unlock(r);
	}
	if (*wc != NULL)
		return 0;
	return ration__redis_connect(&r->cf, deadline_ns, wc);
}

static void
wait_conn_put(struct redis_handle *r, redisContext *wc)
{
	if (wc == NULL)
		return;
	if (pthread_mutex_trylock(&r->mu) == 0) {
		if (r->nidle < IDLE_CONNS) {
			r->idle[r->nidle++] = wc;
			wc = NULL;
		}
		unlock(r);
	}
	if (wc != NULL)
		redisFree(wc);
}

/* A grant message, "g <fence> <incarnation> <n>". */
static bool
parse_grant(const char *m, unsigned long long *fence, long long *inc)
{
	char *end;
	if (m[0] != 'g' || m[1] != ' ')
		return false;
	*fence = strtoull(m + 2, &end, 10);
	if (end == m + 2 || *end != ' ')
		return false;
	const char *p = end + 1;
	*inc = strtoll(p, &end, 10);
	return end != p && *end == ' ' && *fence != 0;
}

/* Whether ticket @tk is still queued or has a message (mu not held);
 * on doubt (no answer) say yes: the next check asks again. */
static bool
still_pending(struct redis_handle *r, uint64_t tk)
{
	struct reply rp;
	char t[24];
	snprintf(t, sizeof(t), "%llu", (unsigned long long)tk);
	const char *x[] = {t};
	int64_t deadline_ns = ns_add_sat(clock_mono_ns(), SLICE_NS);
	if (ration__redis_lock_until(r, deadline_ns) != 0)
		return true;
	int rc = ration__redis_call(r, RS_RENEW, deadline_ns, 1, x, &rp);
	unlock(r);
	return rc != 0 || rp.a != 0;
}

/* Block until ticket @tk's outcome, ctx end or failure (mu not held). */
int
ration__redis_wait_ticket(struct redis_handle *r, ration_ctx_t *ctx,
			  int64_t deadline_ns, const char *ns, int64_t n,
			  bool lease, uint64_t tk, unsigned gen,
			  ration_lease_t *out)
{
	redisContext *wc = NULL;
	int64_t last_check = clock_mono_ns();
	char key[256];
	int rc;

	for (;;) {
		snprintf(key, sizeof(key), "%s:w:%llu", r->key,
			 (unsigned long long)tk);
		if ((rc = ration__wait_err(ctx, deadline_ns)) != 0) {
			rc = leave(r, tk, rc);
			break;
		}
		if (wc == NULL && (rc = wait_conn(r, deadline_ns, &wc)) != 0) {
			int err = ration__wait_err(
				ctx,
				deadline_ns); /* it cut the connect short */
			rc = leave(r, tk, err != 0 ? err : rc);
			break;
		}
		int64_t now = clock_mono_ns();
		int64_t slice = deadline_ns - now < SLICE_NS ? deadline_ns - now
							     : SLICE_NS;
		if (slice < MS)
			slice = MS; /* BLPOP 0 would mean "for ever" */
		char secs[24];
		snprintf(secs, sizeof(secs), "%.3f", (double)slice / 1e9);
		/* The reply is due after the slice; allow io_timeout for a busy
		 * server, but not much past the caller's deadline. */
		int64_t tmo = ns_add_sat(slice, r->cf.io_timeout_ns);
		if (deadline_ns != RATION_FOREVER &&
		    deadline_ns - now + WAIT_MARGIN_NS < tmo)
			tmo = deadline_ns - now + WAIT_MARGIN_NS;
		ration__redis_timeout(wc, tmo);
		const char *argv[] = {"BLPOP", key, secs};
		redisReply *rep = ration__redis_command(wc, 3, argv);
		if (rep == NULL) {
			rc = ration__redis_io_err(wc);
			redisFree(wc);
			wc = NULL;
			int err = ration__wait_err(ctx, deadline_ns);
			rc = leave(r, tk, err != 0 ? err : rc);
			break;
		}
		char msg = 0;
		unsigned long long fence = 0;
		long long inc = 0;
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
		    rep->element[1]->type == REDIS_REPLY_STRING) {
			msg = rep->element[1]->str[0];
			if (msg == 'g' &&
			    !parse_grant(rep->element[1]->str, &fence, &inc))
				msg = '?';
		} else if (rep->type == REDIS_REPLY_ERROR &&
			   strncmp(rep->str, "LOADING", 7) == 0) {
			sleep_ns(slice); /* unavailable for now: ask again */
		} else if (rep->type != REDIS_REPLY_NIL) {
			msg = '?';
		}
		freeReplyObject(rep);

		if (msg == 0) { /* the slice ended */
			bool lost = false;
			if (pthread_mutex_trylock(&r->mu) == 0) {
				lost = r->gen != gen;
				gen = r->gen;
				unlock(r);
			}
			now = clock_mono_ns();
			if (!lost && now - last_check < CHECK_NS)
				continue;
			last_check = now;
			if (still_pending(r, tk))
				continue;
			msg = 'x'; /* our ticket went with the session */
		}
		lock(r);
		if (msg == 'g') {
			ration__redis_note_inc(r, inc, false);
			if (inc == r->inc) {
				r->waiting--;
				ration__redis_granted(r, fence, n,
						      lease ? out : NULL);
				unlock(r);
				rc = 0;
				break;
			}
			msg = 'x'; /* granted to a session since reclaimed */
		}
		if (msg == 'p' || msg == 'b') { /* decided: no longer queued */
			r->waiting--;
			unlock(r);
			rc = msg == 'p' ? -EPIPE : -E2BIG;
			break;
		}
		if (msg ==
		    '?') { /* not ours to read: leave, giving back a grant */
			unlock(r);
			rc = leave(r, tk, -EPROTO);
			break;
		}
		/* 'x': the session was reclaimed while we waited (stalled past
		 * the lease, or the server lost its data): queue again, unless
		 * the deadline passed meanwhile (the ticket is gone: nothing to
		 * leave). */
		r->waiting--;
		if ((rc = ration__wait_err(ctx, deadline_ns)) != 0) {
			unlock(r);
			break;
		}
		rc = ration__redis_enqueue(r, deadline_ns, ns, n, lease, &tk,
					   out);
		gen = r->gen;
		unlock(r);
		if (rc != 1)
			break;
	}
	wait_conn_put(r, wc);
	return rc;
}
