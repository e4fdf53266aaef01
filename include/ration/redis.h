/* ration/redis.h - one budget across machines: a semaphore held in Redis.
 *
 * ration_sem_open_redis() returns an ordinary ration_sem_t whose state lives
 * in a Redis 7 server, so every process on every machine that opens the same
 * key draws on the same budget. Every function of ration/sem.h works on it
 * with the same contract (weights, strict FIFO across clients, ctx
 * deadline/cancel, try, resize, close, stats); release gives back weight held
 * through this handle. Each operation is one Lua script run atomically by the
 * server; a waiter blocks on a list of its own (BLPOP), so no wake-up is lost.
 *
 * Holders can vanish (a machine dies, a process stalls), so weight is leased:
 * while the handle holds or waits, a background thread renews it; a handle
 * that stops renewing for opts.lease_ns loses its weight and its queue places
 * (judged by the server's clock), and every grant carries a fence that
 * increases strictly, so a store downstream can refuse an expired holder.
 *
 *	ration_remote_opts_t o = {.lease_ns = 5000000000};    // 5 s
 *	ration_sem_t *gpus;
 *	if (ration_sem_open_redis("redis://10.0.0.5:6379/0", "gpus", 16, &o,
 *				  &gpus) == 0) {
 *		ration_lease_t l;
 *		if (ration_sem_acquire_lease(gpus, ctx, 4, &l) == 0) {
 *			train(l.fence);              // the store checks the fence
 *			ration_lease_release(gpus, &l); // -ESTALE: we lost it
 *		}
 *		ration_sem_free(gpus);
 *	}
 *
 * Design notes, data model and failure behaviour: docs/redis.md.
 */
#ifndef RATION_REDIS_H
#define RATION_REDIS_H

#include "common.h"
#include "ctx.h"
#include "lease.h"
#include "sem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest size (and weight) a Redis semaphore takes: Redis runs Lua with
 * double-precision numbers, exact up to 2^53. */
#define RATION_REMOTE_SEM_MAX ((int64_t)((UINT64_C(1) << 53) - 1))

typedef struct {
	int64_t lease_ns;           /* a holder that stops renewing loses its
				     * weight after this; 0 = 10 s, >= 100 ms */
	int64_t connect_timeout_ns; /* per connection attempt; 0 = 1 s */
	int64_t io_timeout_ns;      /* longest wait for one reply; 0 = 2 s */
} ration_remote_opts_t;

/**
 * ration_sem_open_redis() - open (or create) the semaphore @key on a Redis server.
 * @uri:  "redis://[[user]:password@]host[:port][/db]"; NULL =
 *        "redis://127.0.0.1:6379/0". Port 6379 and db 0 by default.
 * @key:  the semaphore's name, 1..200 bytes, no '{' or '}'. Its keys are
 *        "ration:{@key}:*", one hash tag, so Redis Cluster keeps them in one
 *        slot.
 * @size: 1..RATION_REMOTE_SEM_MAX, used only if the semaphore does not
 *        exist yet (then it is created with it); 0 = open an existing one.
 * @opts: NULL or zeroed = defaults (see ration_remote_opts_t).
 * @out:  receives the handle; pair with ration_sem_free().
 *
 * Connects, loads the scripts and creates the semaphore if needed, all
 * before returning. A handle is one holder: ration_sem_release() gives back
 * weight acquired through it (-EOVERFLOW if it holds less), and its weight
 * is renewed by a background thread of the handle while it holds or waits.
 * Calls on one handle may come from any threads; a handle must not be used
 * in a fork() child (open another there: -EINVAL otherwise).
 *
 * Every call on the handle may also fail with -ECONNREFUSED (nobody
 * listens), -EIO (connection lost, or no reply within io_timeout_ns) or
 * -EPROTO (an error reply, e.g. a wrong type at the key); an acquire whose
 * reply was cut short by its ctx's deadline returns the ctx's error. No call
 * waits past its deadline (a queued caller by at most 250 ms more) nor past
 * connect_timeout_ns + io_timeout_ns. The next call reconnects. If the
 * connection broke after the server had acted, the handle repairs the
 * difference at its next successful call (weight granted in that moment is
 * given back; weight released in it is not counted twice). SIGPIPE is
 * held off while the handle talks to the server.
 * If the server loses the semaphore (restart without persistence, FLUSHALL)
 * the next call re-creates it with the size this handle last saw; weight
 * held before is gone, and its release returns -ESTALE.
 *
 * Return: 0, or
 *   -EINVAL       @key invalid, @uri malformed, @out NULL, @size out of range,
 *                 opts->lease_ns below 100 ms
 *   -ENOENT       @size == 0 and no such semaphore on the server
 *   -ECONNREFUSED the server refused the connection
 *   -EIO          no connection or reply within the timeouts
 *   -EPROTO       the server answered with an error (auth, wrong type, ...)
 *   -ENOMEM       no memory for the handle, or its thread could not start
 *   -ENOTSUP      ration was built without hiredis (meson -Dredis=disabled
 *                 or libhiredis missing)
 *
 * Blocks: yes, up to connect_timeout_ns + io_timeout_ns.
 * Allocates: yes. Calls user code: never.
 */
RATION_API int ration_sem_open_redis(const char *uri, const char *key, int64_t size,
				     const ration_remote_opts_t *opts, ration_sem_t **out);

/* On a Redis handle the lease functions (ration/lease.h) fill expires_ns
 * with the local time at which the lease lapses if renewal stopped at the
 * grant; ration_lease_release() returns -ESTALE when the lease's weight was
 * reclaimed (the handle stalled past lease_ns, the server lost its data) or
 * the lease is unknown (already released, another handle's). */

#ifdef __cplusplus
}
#endif

#endif /* RATION_REDIS_H */
