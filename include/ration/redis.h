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
 * (judged by the server's clock, not counting time in which the server
 * itself was stopped), and every grant carries a fence that increases
 * strictly, even across a server restart or a snapshot restore. A store
 * downstream checks a fence with ration_lease_live_redis() (docs/redis.md:
 * "Fencing with a counting semaphore").
 *
 *	ration_remote_opts_t o = {.lease_ns = 5000000000};    // 5 s
 *	ration_sem_t *gpus;
 *	if (ration_sem_open_redis("redis://10.0.0.5:6379/0", "gpus", 16, &o,
 *				  &gpus) == 0) {
 *		ration_lease_t l;
 *		if (ration_sem_acquire_lease(gpus, ctx, 4, &l) == 0) {
 *			train(l.fence);   // the store asks ration_lease_live_redis()
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
				     * weight after this; 0 = 10 s, 100 ms to
				     * 1 day; use one value for a semaphore */
	int64_t connect_timeout_ns; /* per connection attempt; 0 = 1 s */
	int64_t io_timeout_ns;      /* longest wait for one reply; 0 = 2 s */
} ration_remote_opts_t;

/**
 * ration_sem_open_redis() - open (or create) the semaphore @key on a Redis server.
 * @uri:  "redis://[[user]:password@]host[:port][/db]"; NULL =
 *        "redis://127.0.0.1:6379/0". Port 6379 and db 0 by default. The
 *        user info ends at the last '@', so a password may hold '@'; user
 *        and password may spell any byte but NUL as %XX.
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
 * listens), -EIO (connection lost, or no reply within io_timeout_ns or the
 * call's deadline) or -EPROTO (an error reply, e.g. a wrong type at the
 * key); an acquire cut short by its ctx's deadline returns the ctx's error.
 * A server still loading its data is unavailable: calls ask again until
 * their deadline. No call waits past its deadline - not for another call of
 * the handle, nor to reconnect (AUTH, SELECT, SCRIPT LOAD) - except that an
 * acquire reads a reply and leaves its queue place up to 200 ms past it;
 * calls without a deadline (release, resize, stats, ...) wait at most
 * io_timeout_ns for the server. A connection the server closed (restart) is
 * made again within the call. If the connection broke after the server had
 * acted, the handle repairs the difference at its next successful call
 * (weight granted in that moment is given back; weight released in it is
 * not counted twice). SIGPIPE is held off while the handle talks to the
 * server.
 * try_acquire() and consume() never wait more than 250 ms (or io_timeout_ns
 * if shorter) in all: -EAGAIN when the handle is busy with another call's
 * round trip or the server is loading, -EIO when it does not answer.
 * release() never fails for want of the server: a release it cannot tell
 * the server is finished by the handle once the server answers.
 * If the server loses the semaphore (restart without persistence, FLUSHALL)
 * or rolls back (snapshot restore), or is stopped for longer than half a
 * lease while weight is held, the semaphore goes through a recovery of one
 * lease: nothing is granted while the live holders re-assert what they hold
 * (weight and lease fences); then it grants again. Weight that no longer
 * fits is lost to its handle (its release returns -ESTALE).
 *
 * Return: 0, or
 *   -EINVAL       @key invalid, @uri malformed, @out NULL, @size out of range,
 *                 opts->lease_ns below 100 ms or above a day
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
RATION_API int ration_sem_open_redis(const char *uri, const char *key,
				     int64_t size,
				     const ration_remote_opts_t *opts,
				     ration_sem_t **out);

/* On a Redis handle the lease functions (ration/lease.h) fill expires_ns
 * with the local time at which the lease lapses if renewal stopped at the
 * grant; ration_lease_release() returns -ESTALE when the lease's weight was
 * reclaimed (the handle stalled past lease_ns, the server lost its data) or
 * the lease is unknown (already released, another handle's). */

/**
 * ration_lease_live_redis() - whether the lease with @fence is live now.
 * @s:     any handle of the semaphore (Redis backend).
 * @fence: the fence of a lease from ration_sem_acquire_lease().
 *
 * For a store downstream that guards a write with the writer's fence: with
 * a counting semaphore several fences are valid at once, so "reject fences
 * lower than the last" is wrong; ask whether the writer's lease is still
 * live instead (docs/redis.md, "Fencing with a counting semaphore", also
 * gives the same check as a Lua script a store in Redis can run atomically
 * with its write). A lease is live from its grant until it is released or
 * its holder's session is reclaimed.
 *
 * Return: 1 live, 0 not (released, reclaimed, unknown), or
 *   -EINVAL   @s NULL or not a Redis handle, @fence 0, called in a fork child
 *   -EAGAIN   the semaphore is in a recovery (the answer is not known yet:
 *             ask again within a lease)
 *   -ECONNREFUSED, -EIO, -EPROTO as the other calls
 *   -ENOTSUP  built without hiredis
 *
 * Blocks: yes, one round trip (at most io_timeout_ns). Allocates: hiredis's
 * reply. Calls user code: never.
 */
RATION_API int ration_lease_live_redis(ration_sem_t *s, uint64_t fence);

#ifdef __cplusplus
}
#endif

#endif /* RATION_REDIS_H */
