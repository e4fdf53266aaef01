/* ration/lease.h - grants that can be checked later, for the backends whose
 * holders can vanish.
 *
 * A semaphore from ration_sem_open_shared() (ration/shared.h) or
 * ration_sem_open_redis() (ration/redis.h) can hand out its weight as a
 * lease: the weight, plus a fence that increases strictly with every lease
 * of that semaphore, so a store downstream can refuse writes from a holder
 * that has since lost its weight (a process that died, a client that
 * stalled). In-process semaphores have no leases.
 */
#ifndef RATION_LEASE_H
#define RATION_LEASE_H

#include "common.h"
#include "ctx.h"
#include "sem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A grant that can be checked later: the weight, a fence that increases
 * strictly with every lease of the semaphore (so a store downstream can
 * refuse writes from an older holder), and when it stops being valid.
 *
 *	ration_lease_t l;
 *	if (ration_sem_acquire_lease(s, ctx, 4, &l) == 0) {
 *		store_write(data, l.fence);  // the store rejects fences < last
 *		ration_lease_release(s, &l);
 *	}
 */
typedef struct {
	int64_t n;          /* weight held */
	uint64_t fence;     /* > every fence handed out before, per semaphore */
	int64_t expires_ns; /* RATION_FOREVER on the shared backend */
} ration_lease_t;

/**
 * ration_sem_acquire_lease() - ration_sem_acquire() that also returns a fence.
 * @s:   a semaphore from ration_sem_open_shared() or ration_sem_open_redis().
 * @ctx: as for ration_sem_acquire(); NULL = never ends.
 * @n:   units wanted, 1..size.
 * @out: receives the lease: @n, a fence strictly greater than any earlier
 *       lease's on this semaphore (all processes, all clients), and
 *       expires_ns: RATION_FOREVER on a shared semaphore (its holders do
 *       not expire: they are reclaimed when their process dies); on a
 *       Redis one, the local CLOCK_MONOTONIC time at which the lease
 *       lapses if renewal stopped at the moment of the grant (grant +
 *       lease_ns; the handle keeps renewing it while it is held).
 *
 * In-process semaphores (ration_sem_new/ration_sem_open) have no leases:
 * their holders cannot vanish while the semaphore exists, so a fence would
 * have no one to protect; they return -EINVAL.
 *
 * Return: 0, or -EINVAL (@s not a shared or Redis semaphore, @out NULL,
 * @n <= 0), any error of ration_sem_acquire(), or -EBUSY when a shared
 * handle already has 32 outstanding leases (nothing is then held).
 *
 * Blocks: yes. Allocates: never on a shared semaphore; a Redis one's
 * requests and replies. Calls user code: never.
 */
RATION_API int ration_sem_acquire_lease(ration_sem_t *s, ration_ctx_t *ctx,
					int64_t n, ration_lease_t *out);

/**
 * ration_lease_release() - give back the weight of @lease.
 * @s:     the semaphore the lease came from, through the same handle.
 * @lease: as filled by ration_sem_acquire_lease().
 *
 * Return: 0, -EINVAL (@s or @lease NULL, @s has no leases), or -ESTALE
 * when the lease is unknown to this handle: already released, from
 * another handle or process (a fork child does not own its parent's
 * leases), or its weight was reclaimed (a Redis handle that stalled past
 * lease_ns, a server that lost its data). Nothing changes on error.
 *
 * Blocks: no on a shared semaphore; for one round trip to the server on
 * a Redis one. Allocates: never on a shared semaphore; a Redis one's
 * request and reply. Calls user code: never.
 */
RATION_API int ration_lease_release(ration_sem_t *s,
				    const ration_lease_t *lease);

#ifdef __cplusplus
}
#endif

#endif /* RATION_LEASE_H */
