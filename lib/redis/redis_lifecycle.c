/* redis_lifecycle.c - the Redis semaphore handle's life cycle: open (the
 * handle, its session's first renew, the renewer thread), free (which ends
 * the session on the server, refused while the handle holds weight or has
 * a caller queued), and the stats the server counts. The operations and
 * the ops table are in redis_sem.c, the session in redis_session.c.
 *
 * Locking: see redis_sem.c. The renewer is started once the first renew
 * has answered and joined (after it is told to stop under mu) before the
 * handle is destroyed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal/clock.h"
#include "internal/sem.h"
#include "ration/redis.h"
#include "redis_sem.h"

static void
destroy(struct redis_handle *r)
{
	if (r->c != NULL)
		redisFree(r->c);
	if (r->rc != NULL)
		redisFree(r->rc);
	for (unsigned i = 0; i < r->nidle; i++)
		redisFree(r->idle[i]);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static bool
opts_ok(const ration_remote_opts_t *o)
{
	return o == NULL ||
	       ((o->lease_ns == 0 || (o->lease_ns >= LEASE_MIN_NS &&
				      o->lease_ns <= LEASE_MAX_NS)) &&
		o->connect_timeout_ns >= 0 && o->io_timeout_ns >= 0);
}

static bool
key_ok(const char *key)
{
	size_t len = key != NULL ? strlen(key) : 0;
	return len >= 1 && len <= 200 && strpbrk(key, "{}") == NULL;
}

static int
redis_handle_new(const char *uri, const char *key, int64_t size,
		 const ration_remote_opts_t *opts, struct redis_handle **out)
{
	struct redis_handle *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	if (ration__redis_parse_uri(uri != NULL ? uri
						: "redis://127.0.0.1:6379/0",
				    &r->cf) != 0) {
		free(r);
		return -EINVAL;
	}
	r->cf.connect_timeout_ns = opts && opts->connect_timeout_ns > 0
					   ? opts->connect_timeout_ns
					   : 1000 * MS;
	r->cf.io_timeout_ns = opts && opts->io_timeout_ns > 0
				      ? opts->io_timeout_ns
				      : 2000 * MS;
	r->lease_ns = opts && opts->lease_ns > 0 ? opts->lease_ns : 10000 * MS;
	snprintf(r->key, sizeof(r->key), "ration:{%s}", key);
	snprintf(r->lease_us, sizeof(r->lease_us), "%lld",
		 (long long)(r->lease_ns / 1000));
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)clock_mono_ns() * 0x9E3779B97F4A7C15ull;
	r->pid = getpid();
	snprintf(r->sid, sizeof(r->sid), "%d.%016llx", (int)r->pid,
		 (unsigned long long)rnd);
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
	if (out == NULL || !key_ok(key) || size < 0 ||
	    size > RATION_REMOTE_SEM_MAX || !opts_ok(opts))
		return -EINVAL;
	struct redis_handle *r;
	int rc = redis_handle_new(uri, key, size, opts, &r);
	if (rc != 0)
		return rc;
	struct reply rp;
	const char *x[] = {""};
	lock(r);
	int64_t deadline_ns = ns_add_sat(
		ns_add_sat(clock_mono_ns(), r->cf.connect_timeout_ns),
		r->cf.io_timeout_ns);
	rc = ration__redis_call(r, RS_RENEW, deadline_ns, 1, x, &rp);
	if (rc == 0 && rp.code != RC_OK)
		rc = ration__redis_code_err(rp.code);
	r->last_avail = r->size;
	unlock(r);
	if (rc == 0 &&
	    pthread_create(&r->renewer, NULL, ration__redis_renewer, r) != 0)
		rc = -ENOMEM;
	if (rc == 0 && (rc = ration__sem_new_backend(&ration__redis_ops, r, key,
						     out)) != 0) {
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

/* -EBUSY while the handle holds weight or has a caller queued. Otherwise
 * end the session on the server (anything it still has goes back). */
int
ration__redis_free(ration_sem_t *s)
{
	struct redis_handle *r = s->impl;
	if (getpid() != r->pid)
		return -EINVAL;
	lock(r);
	ration__redis_collect_dropped(r); /* waiters that left without mu */
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
		(void)ration__redis_call(
			r, RS_BYE,
			ns_add_sat(clock_mono_ns(), r->cf.io_timeout_ns), 0,
			NULL, &rp);
	unlock(r);
	destroy(r);
	return 0;
}

/* The stats script's reply, by position. */
enum {
	ST_SIZE = 2,
	ST_IN_USE,
	ST_WAITERS,
	ST_WWEIGHT,
	ST_MAX_IN_USE,
	ST_MAX_WAITERS,
	ST_ACQUIRED,
	ST_CONTENDED,
	ST_TIMEOUTS,
	ST_CANCELS,
	ST_REJECTED,
	ST_WAIT_NS,
	ST_CLOSED,
	ST_RECLAIMED,
	ST_FENCE,
	ST_HIST,
	ST_CONSUMED = ST_HIST + RATION_HIST_BUCKETS,
	ST_LEN
};

static int
read_stats(struct redis_handle *r, redisReply **rep)
{
	struct reply rp;
	int64_t dl = ns_add_sat(clock_mono_ns(), r->cf.io_timeout_ns);
	if (ration__redis_lock_until(r, dl) != 0)
		return -EIO;
	int rc = ration__redis_call_raw(r, RS_STATS, false, dl, 0, NULL, &rp,
					rep);
	if (rc == 0 && (*rep)->elements < ST_LEN) {
		freeReplyObject(*rep);
		rc = -EPROTO;
	}
	if (rc == 0)
		r->last_avail = reply_num((*rep)->element[ST_SIZE]) -
				reply_num((*rep)->element[ST_IN_USE]);
	unlock(r);
	return rc;
}

int64_t
ration__redis_available(const ration_sem_t *s)
{
	struct redis_handle *r = s->impl;
	redisReply *rep;
	if (read_stats(r, &rep) == 0)
		freeReplyObject(rep);
	lock(r);
	int64_t v = r->last_avail;
	unlock(r);
	return v;
}

void
ration__redis_stats(const ration_sem_t *s, ration_sem_stats_t *out)
{
	struct redis_handle *r = s->impl;
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
	out->size = reply_num(e[ST_SIZE]);
	out->in_use = reply_num(e[ST_IN_USE]);
	out->available = out->size - out->in_use;
	out->waiters = reply_num(e[ST_WAITERS]);
	out->waiting_weight = reply_num(e[ST_WWEIGHT]);
	out->max_in_use = reply_num(e[ST_MAX_IN_USE]);
	out->max_waiters_seen = reply_num(e[ST_MAX_WAITERS]);
	out->acquired = (uint64_t)reply_num(e[ST_ACQUIRED]);
	out->contended = (uint64_t)reply_num(e[ST_CONTENDED]);
	out->timeouts = (uint64_t)reply_num(e[ST_TIMEOUTS]);
	out->cancels = (uint64_t)reply_num(e[ST_CANCELS]);
	out->rejected = (uint64_t)reply_num(e[ST_REJECTED]);
	out->wait_ns_total = (uint64_t)reply_num(e[ST_WAIT_NS]);
	out->consumed = (uint64_t)reply_num(e[ST_CONSUMED]);
	out->closed = reply_num(e[ST_CLOSED]) != 0;
	for (unsigned i = 0; i < RATION_HIST_BUCKETS; i++)
		out->wait_hist[i] = (uint64_t)reply_num(e[ST_HIST + i]);
	freeReplyObject(rep);
}
